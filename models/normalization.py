"""Every mapping between stored values and what a network or a display sees, in one place.

- **Percentile scaling** (cloud removal, fusion): per band, the ``low``/``high`` percentiles of
  the pixels that count (``stats = {"low": [...], "high": [...]}``) are mapped to ``-target`` and
  ``+target``; values beyond ``+-clip`` are clipped, or log-compressed (``beyond="log"``) so
  that bright clouds keep the ground signal under them. :func:`to_network` and
  :func:`from_network` are exact inverses inside ``+-clip``; :func:`compress` /
  :func:`expand` are the same compression on torch tensors, for networks that reason in
  linear units.
- **Display stretch** (quick-looks, reports, feature detection): a linear stretch between two
  percentiles of the valid pixels.

Arrays are ``(C, H, W)`` (one image) or ``(B, C, H, W)`` / ``(K, C, H, W)`` (a batch or a stack
of dates): the channel axis is 0 for three dimensions and 1 otherwise.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

DISPLAY_PERCENTILES = (2.0, 98.0)


# --------------------------------------------------------------------------- percentile scaling


def percentile_limits(values: np.ndarray, low: float = 2.0, high: float = 98.0) -> tuple:
    """``(low, high)`` percentiles of a 1-D array of finite values; ``(0, 1)`` when it is empty."""
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(np.asarray(values, dtype=np.float64), [low, high])
    return float(lo), float(hi)


def mid_half(stats: dict) -> tuple:
    """Per-band centre and half-range of the percentile limits (the half-range never reaches 0)."""
    lo = np.asarray(stats["low"], dtype=np.float64)
    hi = np.asarray(stats["high"], dtype=np.float64)
    mid = 0.5 * (lo + hi)
    half = 0.5 * (hi - lo)
    floor = np.maximum(np.abs(mid) * 1e-3, 1e-6)
    return mid, np.maximum(half, floor)


def _channel_shape(ndim: int) -> tuple:
    return (-1,) + (1,) * (ndim - 1) if ndim == 3 else (1, -1) + (1,) * (ndim - 2)


def to_network(x: np.ndarray, stats: dict, *, target: float, clip: float, beyond: str = "clip") -> np.ndarray:
    """Values -> network space (float32); NaN -> 0. ``beyond``: ``"clip"`` or ``"log"`` past ``+-clip``."""
    mid, half = mid_half(stats)
    shape = _channel_shape(x.ndim)
    y = (x - mid.reshape(shape)) / half.reshape(shape) * target
    if beyond == "log":
        a = np.abs(y)
        y = np.where(a > clip, np.sign(y) * (clip + np.log1p(np.maximum(a - clip, 0.0))), y)
    else:
        y = np.clip(y, -clip, clip)
    return np.nan_to_num(y, nan=0.0).astype(np.float32)


def from_network(y: np.ndarray, stats: dict, *, target: float) -> np.ndarray:
    """Inverse of :func:`to_network` inside ``+-clip`` (no undoing of the clip or compression), float64."""
    mid, half = mid_half(stats)
    shape = _channel_shape(y.ndim)
    return y.astype(np.float64) / target * half.reshape(shape) + mid.reshape(shape)


def compress(y, clip: float):
    """The ``beyond="log"`` compression of :func:`to_network` on a torch tensor (linear inside ``+-clip``)."""
    import torch

    a = y.abs()
    return torch.where(a > clip, torch.sign(y) * (clip + torch.log1p((a - clip).clamp_min(0.0))), y)


def expand(y, clip: float):
    """Undo :func:`compress` on a torch tensor."""
    import torch

    a = y.abs()
    return torch.where(a > clip, torch.sign(y) * (clip + torch.expm1(a - clip)), y)


# --------------------------------------------------------------------------- display stretch


def stretch_limits(values: np.ndarray, percentiles: Sequence[float] = DISPLAY_PERCENTILES) -> tuple:
    """``(lo, hi)`` display limits of the finite ``values``; ``(0, 1)`` when there are none."""
    values = np.asarray(values)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, list(percentiles))
    return float(lo), float(hi)


def stretch(values: np.ndarray, lo: float, hi: float, top: float = 1.0) -> np.ndarray:
    """Linear map of ``[lo, hi]`` onto ``[0, top]``, clipped; NaN -> 0."""
    scaled = (values - lo) / max(hi - lo, 1e-6) * top
    return np.clip(np.nan_to_num(scaled, nan=0.0, posinf=top, neginf=0.0), 0, top)


def stretch_to_uint8(image: np.ndarray, valid: np.ndarray, min_valid: int = 16,
                     percentiles: Sequence[float] = DISPLAY_PERCENTILES) -> np.ndarray:
    """One band stretched to 0-255 between percentiles of its valid pixels; invalid pixels 0.

    With fewer than ``min_valid`` valid pixels there is nothing to stretch: all zeros.
    """
    if valid.sum() < min_valid:
        return np.zeros(image.shape, np.uint8)
    lo, hi = np.percentile(image[valid], list(percentiles))
    out = np.clip((image - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255)
    out[~valid] = 0
    return out.astype(np.uint8)
