"""The fusion normalisation scheme: per-band percentile statistics of a series and the map to network space.

Scheme ``per_band_all_dates_percentile`` (stored in every model's metadata): for every band,
the p2 and p98 percentiles over all dates' valid pixels (not flagged by the mask when masks
are given; for rasters, a decimated read of at most ``sample`` x ``sample`` pixels per date)
map linearly to -0.8 and +0.8, clipped to [-2, 2] (:func:`normalization.to_network`). The map
is linear and the fusion weights sum to one, so fusing in network space and mapping back
equals fusing the original values.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..normalization import percentile_limits, to_network
from ..raster import RasterInfo, read_decimated, valid_mask

NORMALIZATION = {
    "scheme": "per_band_all_dates_percentile",
    "low_percentile": 2.0,
    "high_percentile": 98.0,
    "target": 0.8,
    "clip": 2.0,
    "sample": 512,
    "band_mode": "per_band_shared",
    "features": ["normalised value", "deviation from the per-pixel median of the valid dates"],
    "cloud_polarity": "low",
}

MIN_ALLOWED_PIXELS = 16  # fewer allowed pixels than this in a band: its statistics use every finite pixel


def scheme(norm: dict | None = None) -> dict:
    """The scheme's settings, with ``norm`` (e.g. a model's stored normalisation) overriding the defaults."""
    return {**NORMALIZATION, **(norm or {})}


def _limits(values: np.ndarray, norm: dict) -> tuple:
    return percentile_limits(values, norm["low_percentile"], norm["high_percentile"])


def _as_statistics(limits: Sequence[tuple]) -> dict:
    return {"low": [lo for lo, _ in limits], "high": [hi for _, hi in limits]}


def band_statistics(dates: np.ndarray, allowed: np.ndarray, norm: dict | None = None) -> dict:
    """Per-band ``{"low": [...], "high": [...]}`` over the allowed pixels of all dates; ``dates`` (K, C, H, W)."""
    norm = scheme(norm)
    limits = []
    for c in range(dates.shape[1]):
        finite = np.isfinite(dates[:, c])
        v = dates[:, c][allowed & finite]
        if v.size < MIN_ALLOWED_PIXELS:
            v = dates[:, c][finite]
        limits.append(_limits(v, norm))
    return _as_statistics(limits)


def raster_statistics(infos: Sequence[RasterInfo], bands: Sequence[int], masks: Sequence[RasterInfo] | None,
                      mask_values, norm: dict) -> dict:
    """:func:`band_statistics` of rasters, from a decimated read of every date (and its mask)."""
    sample = int(norm.get("sample", 512))
    per_band = [[] for _ in bands]
    for i, info in enumerate(infos):
        data = read_decimated(info, bands, sample)
        ok = valid_mask(data, [info.nodata[b - 1] for b in bands])
        if masks is not None:
            flags = read_decimated(masks[i], [1], sample, dtype=None)[0]
            ok &= ~np.isin(flags, np.asarray(mask_values))
        for c in range(len(bands)):
            per_band[c].append(data[c][ok])
    return _as_statistics([_limits(np.concatenate(v) if v else np.zeros(0), norm) for v in per_band])


def to_network_space(dates: np.ndarray, stats: dict, norm: dict | None = None) -> np.ndarray:
    """Values ``(K, C, H, W)`` (or ``(C, H, W)``) -> network space (float32); NaN -> 0."""
    norm = scheme(norm)
    return to_network(dates, stats, target=norm["target"], clip=norm["clip"])
