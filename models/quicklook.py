"""PNG quick-looks of rasters: what an analyst glances at before opening QGIS.

Reads a decimated overview (at most ``max_size`` pixels on the long side), so a
quick-look of a whole scene costs little memory. Colour images get a per-band
percentile stretch; class rasters (masks) get a fixed palette.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
from osgeo import gdal

from .atomic import atomic_output
from .normalization import DISPLAY_PERCENTILES, stretch, stretch_limits
from .raster import raster_info, read_decimated, valid_mask

MASK_PALETTE = {0: (40, 40, 40), 1: (255, 255, 255), 2: (60, 60, 200), 3: (220, 30, 30), 4: (250, 200, 0)}


def _decimated(path: str, bands: Sequence[int], max_size: int) -> tuple:
    info = raster_info(path)
    scale = min(1.0, max_size / max(info.width, info.height))
    size = (max(1, round(info.width * scale)), max(1, round(info.height * scale)))
    arr = read_decimated(info, bands, max_size, size=size, resample="nearest", dtype=np.float32)
    return arr, valid_mask(arr, [info.nodata[b - 1] for b in bands])


def stretch_bands(arr: np.ndarray, valid: np.ndarray, percentiles=DISPLAY_PERCENTILES, limits=None) -> np.ndarray:
    """Per-band linear stretch to 0-255 between percentiles of the valid pixels (or fixed ``limits``)."""
    out = np.zeros(arr.shape, dtype=np.uint8)
    for i, band in enumerate(arr):
        if not valid.any():
            continue
        lo, hi = limits[i] if limits is not None else stretch_limits(band[valid], percentiles)
        out[i] = stretch(band, lo, hi, 255.0).astype(np.uint8)
    out[:, ~valid] = 0
    return out


def band_limits(path: str, bands: Sequence[int], percentiles=DISPLAY_PERCENTILES, max_size: int = 1024) -> list:
    """Stretch limits of one raster, to show several rasters with the same colours."""
    arr, valid = _decimated(path, bands, max_size)
    return [stretch_limits(b[valid], percentiles) if valid.any() else (0.0, 1.0) for b in arr]


def save_png(path: str, rgb: np.ndarray) -> str:
    """Write ``(3, H, W)`` or ``(H, W)`` uint8 as PNG through GDAL (no extra imaging library)."""
    if rgb.ndim == 2:
        rgb = rgb[None]
    mem = gdal.GetDriverByName("MEM").Create("", rgb.shape[2], rgb.shape[1], rgb.shape[0], gdal.GDT_Byte)
    for i in range(rgb.shape[0]):
        mem.GetRasterBand(i + 1).WriteArray(rgb[i])
    with atomic_output(str(path)) as tmp:
        gdal.GetDriverByName("PNG").CreateCopy(tmp, mem)
        if os.path.exists(tmp + ".aux.xml"):
            os.remove(tmp + ".aux.xml")
    return str(path)


def stretched(path: str, bands: Sequence[int] = (3, 2, 1), max_size: int = 1024, percentiles=DISPLAY_PERCENTILES,
              limits=None) -> np.ndarray:
    """A raster decimated to ``max_size`` and stretched to uint8 ``(bands, H, W)`` (for :func:`side_by_side`)."""
    arr, valid = _decimated(path, bands, max_size)
    return stretch_bands(arr, valid, percentiles, limits)


def quicklook(path: str, png_path: str, bands: Sequence[int] = (3, 2, 1), max_size: int = 1024,
              percentiles=DISPLAY_PERCENTILES, limits=None) -> str:
    """Colour (or grey, with one band) quick-look of a raster."""
    return save_png(png_path, stretched(path, bands, max_size, percentiles, limits))


def mask_quicklook(path: str, png_path: str, palette: dict | None = None, max_size: int = 1024) -> str:
    """Class raster (e.g. cloud mask 0 clear, 1 cloud, 2 shadow, 3 missing) with a fixed palette."""
    palette = palette or MASK_PALETTE
    arr, _ = _decimated(path, [1], max_size)
    cls = arr[0].astype(np.int64)
    rgb = np.zeros((3,) + cls.shape, dtype=np.uint8)
    for value, colour in palette.items():
        for c in range(3):
            rgb[c][cls == value] = colour[c]
    return save_png(png_path, rgb)


def side_by_side(pngs_or_arrays: Sequence[np.ndarray], gap: int = 4) -> np.ndarray:
    """Concatenate ``(3, H, W)`` uint8 images horizontally with a white gap (for triptychs)."""
    h = max(a.shape[1] for a in pngs_or_arrays)
    parts = []
    for a in pngs_or_arrays:
        pad = np.full((3, h, a.shape[2]), 255, dtype=np.uint8)
        pad[:, : a.shape[1]] = a
        parts += [pad, np.full((3, h, gap), 255, dtype=np.uint8)]
    return np.concatenate(parts[:-1], axis=2)
