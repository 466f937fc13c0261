"""The baselines analysts expect: per-pixel mean, median and best available date, with their weight maps.

All honour nodata and masks with the quality network's fallbacks: where every valid date is
flagged by the mask the flags are ignored, and where no date is valid all weights are 0.
``mean``: average of the allowed dates. ``median``: per band median of the allowed dates; its
weight map puts 1 on the median date (0.5 on the two middle dates for an even count), ranked
by the first band. ``best``: per pixel the date with the lowest cloud probability; without
probabilities, a date not flagged by the mask; ties go to the *last* date in input order (the
most recent one when inputs are chronological).

Arrays: ``dates`` (K, C, h, w), ``valid``/``clear``/``cloud``/``probability`` (K, h, w).
"""

from __future__ import annotations

import warnings

import numpy as np


def allowed_dates(valid: np.ndarray, clear: np.ndarray | None) -> np.ndarray:
    """Valid and clear, except where no valid date is clear: there, every valid date."""
    if clear is None:
        return valid
    allowed = valid & clear
    none = ~allowed.any(axis=0)
    return np.where(none[None], valid, allowed)


def mean_weight_maps(valid: np.ndarray, clear: np.ndarray | None) -> np.ndarray:
    allowed = allowed_dates(valid, clear)
    n = allowed.sum(axis=0)
    return (allowed / np.maximum(n, 1)[None]).astype(np.float32)


def median_fusion(dates: np.ndarray, valid: np.ndarray, clear: np.ndarray | None) -> tuple:
    """``(median of the allowed dates (C, h, w), weight maps on the middle date(s) (K, h, w))``."""
    K, _, h, w = dates.shape
    allowed = allowed_dates(valid, clear)
    vals = np.where(allowed[:, None], dates, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fused = np.nanmedian(vals, axis=0)
    key = np.where(allowed, np.nan_to_num(dates[:, 0], nan=0.0), np.inf)
    order = np.argsort(key, axis=0, kind="stable")
    n = allowed.sum(axis=0)
    lo, hi = np.maximum(n - 1, 0) // 2, n // 2
    weight_maps = np.zeros((K, h, w), dtype=np.float32)
    rows, cols = np.indices((h, w))
    ilo = np.take_along_axis(order, lo[None], 0)[0]
    ihi = np.take_along_axis(order, hi[None], 0)[0]
    weight_maps[ilo, rows, cols] += 0.5
    weight_maps[ihi, rows, cols] += 0.5
    weight_maps[:, n == 0] = 0
    return fused, weight_maps


def best_weight_maps(valid: np.ndarray, cloud: np.ndarray | None, probability: np.ndarray | None) -> np.ndarray:
    """1 on the date with the lowest cloud probability (or not flagged), ties to the last date."""
    K, h, w = valid.shape
    if probability is not None:
        score = probability.astype(np.float64)
    elif cloud is not None:
        score = cloud.astype(np.float64)
    else:
        score = np.zeros((K, h, w))
    score = np.where(valid, score, np.inf)
    idx = K - 1 - np.argmin(score[::-1], axis=0)  # ties -> the last date
    weight_maps = np.zeros((K, h, w), dtype=np.float32)
    rows, cols = np.indices((h, w))
    weight_maps[idx, rows, cols] = 1.0
    weight_maps[:, ~valid.any(axis=0)] = 0
    return weight_maps
