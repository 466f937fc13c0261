"""SAR backscatter, shared by guided cloud removal and registration: recognising a radar layer, dB
and linear power, and the Lee speckle filter (block by block with a halo, equal to a whole-image filter).

Radar is averaged and filtered in linear power, never in dB: the mean of dB values is not the dB
of the mean backscatter. The Lee filter treats speckle as multiplicative noise whose squared
coefficient of variation ``Cu^2`` (1 / ENL) is estimated from the image itself.
"""

from __future__ import annotations

import re

import numpy as np

from .raster import RasterInfo, read_decimated, read_window, valid_mask
from .windows import Window

NOISE_SAMPLE = 512          # the speckle noise is estimated on a central window of at most this size
DEFAULT_NOISE_CV2 = 1 / 4.4  # 1 / ENL of Sentinel-1 GRD IW, when the image gives no estimate
RADAR_DB_MEDIAN = (-60.0, -1.0)  # a layer whose median lies in this range looks like dB backscatter
_POLARISATION = re.compile(r"(?<![a-z])(vv|vh|hh|hv)(?![a-z])")


def looks_like_radar(info: RasterInfo) -> bool:
    """Whether a layer looks like SAR backscatter: a band description naming VV, VH, HH or HV, or 1-3
    bands whose pooled median valid value (decimated read) lies in :data:`RADAR_DB_MEDIAN` (dB; an
    index in [-1, 1] such as NDVI over water is not taken for radar)."""
    if any(_POLARISATION.search((d or "").lower()) for d in info.descriptions):
        return True
    if not 1 <= info.band_count <= 3:
        return False
    median = median_valid(info, list(range(1, info.band_count + 1)))
    return median is not None and RADAR_DB_MEDIAN[0] < median < RADAR_DB_MEDIAN[1]


def names_polarisation(description: str) -> bool:
    """Whether a band description names a polarisation (VV, VH, HH or HV)."""
    return bool(_POLARISATION.search((description or "").lower()))


def median_valid(info: RasterInfo, bands: list) -> float | None:
    arr = read_decimated(info, bands, 512)
    values = arr[:, valid_mask(arr, [info.nodata[b - 1] for b in bands])]
    return float(np.median(values)) if values.size else None


def local_stats(band: np.ndarray, size: int, mode: str) -> tuple:
    """``(ok, x, mean, var)``: the valid pixels, the band with 0 at invalid ones, and the local mean and
    variance over ``size`` x ``size`` pixels of the valid pixels only."""
    from scipy.ndimage import uniform_filter

    ok = np.isfinite(band)
    x = np.where(ok, band, 0.0).astype(np.float64)
    weight = uniform_filter(ok.astype(np.float64), size, mode=mode)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = uniform_filter(x, size, mode=mode) / weight
        var = np.maximum(uniform_filter(x * x, size, mode=mode) / weight - mean * mean, 0.0)
    return ok, x, mean, var


def lee_filter(power: np.ndarray, size: int, noise_cv2: float, mode: str = "mirror") -> np.ndarray:
    """Lee filter of one band of linear power (NaN = invalid, left out of the local statistics).

    ``out = m + k (x - m)`` with the local mean ``m`` and variance ``v`` over ``size`` x ``size``
    pixels and ``k = clip(1 - Cu^2 / Ci^2, 0, 1)``: ``Ci^2 = v / m^2`` is the local squared
    coefficient of variation, ``Cu^2 = noise_cv2`` the speckle's (1 / ENL; multiplicative noise).
    ``mode="mirror"`` mirrors the image at its edges as the block reads do, so a blocked run with a
    halo of ``size // 2`` pixels gives the whole-image result.
    """
    ok, x, mean, var = local_stats(power, size, mode)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = np.clip(1.0 - noise_cv2 * mean * mean / var, 0.0, 1.0)
    k[~(var > 0)] = 0.0
    return np.where(ok, mean + k * (x - mean), np.nan)


def to_power(raw: np.ndarray, nodata: list, db: bool) -> np.ndarray:
    """``(bands, rows, cols)`` as linear power, NaN where a band is nodata, not finite or not above 0."""
    out = np.empty(raw.shape, np.float64)
    for i in range(raw.shape[0]):
        ok = valid_mask(raw[i:i + 1], nodata[i:i + 1])
        with np.errstate(over="ignore", invalid="ignore"):
            p = np.power(10.0, raw[i] / 10.0) if db else raw[i].astype(np.float64)
            out[i] = np.where(ok & (p > 0), p, np.nan)
    return out


def noise_cv2(source: RasterInfo, bands: list, db: bool, crop: Window, size: int) -> list:
    """Per band, the speckle's ``Cu^2``: the median local ``v / m^2`` over ``size`` x ``size`` windows of
    the central :data:`NOISE_SAMPLE` pixels of the guide's part over the target (so it does not depend
    on the block size); :data:`DEFAULT_NOISE_CV2` when nothing there is valid."""
    w, h = min(crop.width, NOISE_SAMPLE), min(crop.height, NOISE_SAMPLE)
    window = Window(crop.col_off + (crop.width - w) // 2, crop.row_off + (crop.height - h) // 2, w, h)
    power = to_power(read_window(source.dataset(), window, bands, np.float64),
                      [source.nodata[b - 1] for b in bands], db)
    out = []
    for band in power:
        ok, _, mean, var = local_stats(band, size, "mirror")
        with np.errstate(divide="ignore", invalid="ignore"):
            cv2 = var / (mean * mean)
        cv2 = cv2[ok & np.isfinite(cv2)]
        out.append(float(np.median(cv2)) if cv2.size else DEFAULT_NOISE_CV2)
    return out
