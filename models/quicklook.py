"""PNG quick-looks of rasters: what an analyst glances at before opening QGIS.

Reads a decimated overview (at most ``max_size`` pixels on the long side), so a
quick-look of a whole scene costs little memory. Colour images get a per-band
percentile stretch; class rasters (masks) get a fixed palette.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from osgeo import gdal

from .raster import open_raster, raster_info, valid_mask

MASK_PALETTE = {0: (40, 40, 40), 1: (255, 255, 255), 2: (60, 60, 200), 3: (220, 30, 30), 4: (250, 200, 0)}


def _decimated(path: str, bands: Sequence[int], max_size: int) -> tuple:
    info = raster_info(path)
    scale = min(1.0, max_size / max(info.width, info.height))
    w, h = max(1, round(info.width * scale)), max(1, round(info.height * scale))
    ds = open_raster(path)
    arr = np.stack([ds.GetRasterBand(b).ReadAsArray(buf_xsize=w, buf_ysize=h,
                                                    resample_alg=gdal.GRIORA_NearestNeighbour).astype(np.float32)
                    for b in bands])
    return arr, valid_mask(arr, [info.nodata[b - 1] for b in bands])


def stretch_to_uint8(arr: np.ndarray, valid: np.ndarray, percentiles=(2, 98), limits=None) -> np.ndarray:
    """Per-band linear stretch between percentiles of the valid pixels (or fixed ``limits``)."""
    out = np.zeros(arr.shape, dtype=np.uint8)
    for i, band in enumerate(arr):
        values = band[valid]
        if values.size == 0:
            continue
        lo, hi = limits[i] if limits is not None else np.percentile(values, percentiles)
        hi = hi if hi > lo else lo + 1e-6
        scaled = np.nan_to_num((band - lo) / (hi - lo) * 255, nan=0.0, posinf=255.0, neginf=0.0)
        out[i] = np.clip(scaled, 0, 255).astype(np.uint8)
    out[:, ~valid] = 0
    return out


def band_limits(path: str, bands: Sequence[int], percentiles=(2, 98), max_size: int = 1024) -> list:
    """Stretch limits of one raster, to show several rasters with the same colours."""
    arr, valid = _decimated(path, bands, max_size)
    return [tuple(np.percentile(b[valid], percentiles)) if valid.any() else (0.0, 1.0) for b in arr]


def save_png(path: str, rgb: np.ndarray) -> str:
    """Write ``(3, H, W)`` or ``(H, W)`` uint8 as PNG through GDAL (no extra imaging library)."""
    if rgb.ndim == 2:
        rgb = rgb[None]
    mem = gdal.GetDriverByName("MEM").Create("", rgb.shape[2], rgb.shape[1], rgb.shape[0], gdal.GDT_Byte)
    for i in range(rgb.shape[0]):
        mem.GetRasterBand(i + 1).WriteArray(rgb[i])
    gdal.GetDriverByName("PNG").CreateCopy(str(path), mem)
    aux = str(path) + ".aux.xml"
    import os

    if os.path.exists(aux):
        os.remove(aux)
    return str(path)


def quicklook(path: str, png_path: str, bands: Sequence[int] = (3, 2, 1), max_size: int = 1024,
              percentiles=(2, 98), limits=None) -> str:
    """Colour (or grey, with one band) quick-look of a raster."""
    arr, valid = _decimated(path, bands, max_size)
    return save_png(png_path, stretch_to_uint8(arr, valid, percentiles, limits))


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
