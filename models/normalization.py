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
- **Fixed scaling** (:class:`FixedScaling`): one map per band, learned once from training data
  or taken from a reflectance preset, stored in the model file and applied to every image alike.

Arrays are ``(C, H, W)`` (one image) or ``(B, C, H, W)`` / ``(K, C, H, W)`` (a batch or a stack
of dates): the channel axis is 0 for three dimensions and 1 otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import InputError

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
    """Values -> network space (float32); NaN -> 0. ``beyond``: ``"clip"`` or ``"log"`` past ``+-clip``.

    float32 values are mapped in float32 (the tiles the tiler cuts: half the memory traffic of
    float64, and the result is float32 anyway); anything else in float64."""
    mid, half = mid_half(stats)
    shape = _channel_shape(x.ndim)
    dtype = np.float32 if x.dtype == np.float32 else np.float64
    y = np.subtract(x, mid.astype(dtype).reshape(shape), dtype=dtype)
    y *= (target / half).astype(dtype).reshape(shape)
    return _limited(y, clip, beyond)


def _limited(y: np.ndarray, clip: float, beyond: str) -> np.ndarray:
    """``y`` (modified in place) clipped to ``+-clip`` or log-compressed past it (``beyond``), NaN -> 0,
    infinities -> the largest float32, as float32.

    The range first (two fast reductions; NaN and infinities show there): most tiles need no clip
    and hold no NaN, and the passes that fix them are skipped."""
    lo, hi = y.min(initial=np.inf), y.max(initial=-np.inf)
    finite = bool(np.isfinite(lo) and np.isfinite(hi))
    if not finite or lo < -clip or hi > clip:
        if beyond == "log":  # only the few values past the clip are compressed
            over = np.abs(y) > clip
            v = y[over]
            y[over] = np.copysign(clip + np.log1p(np.abs(v) - clip), v)
        else:
            np.clip(y, -clip, clip, out=y)
    if not finite:
        big = float(np.finfo(np.float32).max)
        np.nan_to_num(y, nan=0.0, posinf=big, neginf=-big, copy=False)
    return y.astype(np.float32, copy=False)


def from_network(y: np.ndarray, stats: dict, *, target: float) -> np.ndarray:
    """Inverse of :func:`to_network` inside ``+-clip`` (no undoing of the clip or compression).

    float32 network outputs come back as float32, in one multiply and one add (the generated tiles
    of the tiler, which it blends as float32 anyway); anything else as float64."""
    mid, half = mid_half(stats)
    return _affine(y, half / target, mid)


def _affine(y: np.ndarray, scale: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``y * scale + offset`` per channel, in float32 for float32 ``y`` (else float64), into one new array."""
    dtype = np.float32 if y.dtype == np.float32 else np.float64
    shape = _channel_shape(y.ndim)
    out = np.multiply(y, np.asarray(scale, dtype=dtype).reshape(shape), dtype=dtype)
    out += np.asarray(offset, dtype=dtype).reshape(shape)
    return out


def compress(y, clip: float):
    """The ``beyond="log"`` compression of :func:`to_network` on a torch tensor (linear inside ``+-clip``).

    Only the values past the clip are computed (:func:`_past_clip`); ``y`` itself comes back when there are
    none."""
    import torch

    return _past_clip(y, clip, lambda v: torch.sign(v) * (clip + torch.log1p((v.abs() - clip).clamp_min(0.0))))


def expand(y, clip: float):
    """Undo :func:`compress` on a torch tensor (``y`` itself when no value is past the clip)."""
    import torch

    return _past_clip(y, clip, lambda v: torch.sign(v) * (clip + torch.expm1(v.abs() - clip)))


def _past_clip(y, clip: float, beyond):
    """``y`` with ``beyond(values)`` in place of its values past ``+-clip``: a copy, or ``y`` itself when none is.

    Clear ground lies within the clip and bright clouds are a few per cent of a tile, so the logarithms are
    taken of those few values, not of every pixel (every pixel's took 2 s of the shipped generator's 13 s prior
    over 4096², profiled)."""
    over = (y > clip) | (y < -clip)
    if not bool(over.any()):
        return y
    out = y.clone()
    out[over] = beyond(y[over])
    return out


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


# --------------------------------------------------------------------------- fixed scaling


FIXED_SCHEME = "fixed_per_band"
#: reflectance = (DN - offset) * gain of common products (DN: the stored integers)
REFLECTANCE_PRESETS = {
    "reflectance": (0.0, 1.0),               # values already reflectance (0-1)
    "sentinel2_l1c": (0.0, 1e-4),            # Sentinel-2 L1C/L2A before processing baseline 04.00
    "sentinel2_pb04": (1000.0, 1e-4),        # Sentinel-2 L1C/L2A from baseline 04.00 (BOA/TOA offset -1000)
    "landsat_c2_l2": (0.2 / 2.75e-5, 2.75e-5),   # Landsat Collection 2 Level-2 surface reflectance
}
FIXED_TARGET = 0.9  # learned limits map to +-0.9: the tanh output keeps room beyond them


@dataclass(frozen=True)
class FixedScaling:
    """One fixed map per band between stored values and network space: ``(x - offset) / scale``.

    Unlike the per-image percentile scaling, it is the same for every image a model sees (it
    is stored in the model file and applied identically at inference), so a model can learn a
    change of brightness and colour, such as the lift of the whole histogram under haze.
    Network inputs beyond ``+-clip`` are clipped; NaN becomes 0.
    """

    offset: tuple
    scale: tuple
    clip: float = 3.0
    source: str = "learned"

    @classmethod
    def learn(cls, band_values: Sequence[np.ndarray], low: float = 0.5, high: float = 99.5) -> "FixedScaling":
        """From the valid values of each band (training inputs and targets together): the
        ``low``..``high`` percentiles map to ``-0.9``..``+0.9``."""
        offsets, scales = [], []
        for values in band_values:
            lo, hi = percentile_limits(np.asarray(values)[np.isfinite(values)], low, high)
            offsets.append(0.5 * (lo + hi))
            scales.append(max(0.5 * (hi - lo) / FIXED_TARGET, max(abs(lo), abs(hi), 1.0) * 1e-6))
        return cls(tuple(offsets), tuple(scales), source=f"learned: percentiles {low:g}-{high:g} -> +-{FIXED_TARGET}")

    @classmethod
    def preset(cls, name: str, band_count: int) -> "FixedScaling":
        """Reflectance 0..1 of a known product mapped to -1..1 in every band."""
        if name not in REFLECTANCE_PRESETS:
            raise InputError(f"Unknown reflectance preset '{name}': use {', '.join(REFLECTANCE_PRESETS)}.")
        dn_offset, gain = REFLECTANCE_PRESETS[name]
        # reflectance 0.5 (the centre of 0..1) -> 0 and a reflectance of 0.5 -> one unit
        return cls((dn_offset + 0.5 / gain,) * band_count, (0.5 / gain,) * band_count, source=f"preset: {name}")

    @property
    def band_count(self) -> int:
        return len(self.offset)

    def to_network(self, x: np.ndarray) -> np.ndarray:
        shape = _channel_shape(x.ndim)
        off = np.asarray(self.offset, dtype=np.float64).reshape(shape)
        sc = np.asarray(self.scale, dtype=np.float64).reshape(shape)
        return _limited((x - off) / sc, self.clip, "clip")  # the same clip and NaN passes as the per-image map

    def from_network(self, y: np.ndarray) -> np.ndarray:
        """Network space -> values (float32 for float32 ``y``, as :func:`from_network`)."""
        return _affine(y, np.asarray(self.scale, dtype=np.float64), np.asarray(self.offset, dtype=np.float64))

    def to_dict(self) -> dict:
        """The ``normalization`` entry of a model file."""
        return {"scheme": FIXED_SCHEME, "offset": [float(v) for v in self.offset],
                "scale": [float(v) for v in self.scale], "clip": float(self.clip), "source": self.source}

    @classmethod
    def from_dict(cls, d: dict) -> "FixedScaling":
        return cls(tuple(float(v) for v in d["offset"]), tuple(float(v) for v in d["scale"]),
                   float(d.get("clip", 3.0)), str(d.get("source", "learned")))
