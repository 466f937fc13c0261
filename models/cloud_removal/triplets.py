"""Real cloudy/clear/radar triplets for training and validating the residual generator.

A triplet folder holds, for every triplet ``ID``, four rasters on one pixel grid (the layout of
SEN12MS-CR, Ebel et al. 2020):

- ``ID_s2_cloudy.tif``: the cloudy optical image (e.g. Sentinel-2 L1C, reflectance x 1e4);
- ``ID_s2_clear.tif``: a cloud-free date of the same place, same bands;
- ``ID_s1.tif``: Sentinel-1 backscatter of the cloudy date, VV and VH in dB;
- ``ID_mask.tif``: the cloudy date's cloud mask (1 = cloud, 0 = clear; e.g. s2cloudless).

The radar file may be left out only when the run trains without radar. A triplet with a file
missing, or whose rasters are not on one grid (size, band count of the two optical images), is
refused by its ID and file name. :func:`read_triplets` reads the selected bands into memory: a
triplet is 256 x 256 px, a folder of a few hundred fits easily.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
from osgeo import gdal

from ..errors import InputError
from ..raster import read_window
from ..windows import Window

CLOUDY, CLEAR, RADAR, MASK = "_s2_cloudy.tif", "_s2_clear.tif", "_s1.tif", "_mask.tif"
_ID = re.compile(r"^(.+)" + re.escape(CLOUDY) + "$")


@dataclass
class Triplet:
    """One triplet in memory: ``cloudy`` and ``clear`` ``(C, H, W)`` float32 in stored units, ``radar``
    ``(R, H, W)`` dB (None without), ``mask`` ``(H, W)`` bool (True = cloud)."""

    id: str
    cloudy: np.ndarray
    clear: np.ndarray
    radar: np.ndarray | None
    mask: np.ndarray

    @property
    def cloud_fraction(self) -> float:
        return float(self.mask.mean())


def triplet_ids(folder: str) -> list:
    """The IDs of the triplets in ``folder`` (one per ``ID_s2_cloudy.tif``), sorted."""
    if not os.path.isdir(folder):
        raise InputError(f"Triplet folder '{folder}' does not exist.")
    ids = sorted(m.group(1) for m in map(_ID.match, os.listdir(folder)) if m)
    if not ids:
        raise InputError(f"Triplet folder '{folder}' holds no '<ID>{CLOUDY}' file (see the triplet layout: "
                         f"<ID>{CLOUDY}, <ID>{CLEAR}, <ID>{RADAR}, <ID>{MASK}).")
    return ids


def read_triplets(folder: str, bands, *, radar: bool = True, ids=None) -> list:
    """Every triplet of ``folder`` (or those of ``ids``) with the 1-based optical ``bands``, checked.

    Raises
    ------
    InputError
        A triplet misses a file, or its rasters are not on one grid; the message names the triplet
        and the file.
    """
    return [read_triplet(folder, i, bands, radar=radar) for i in (ids or triplet_ids(folder))]


def read_triplet(folder: str, triplet_id: str, bands, *, radar: bool = True) -> Triplet:
    """One triplet (see :func:`read_triplets`)."""
    paths = {k: os.path.join(folder, triplet_id + k) for k in (CLOUDY, CLEAR, MASK) + ((RADAR,) if radar else ())}
    for suffix, path in paths.items():
        if not os.path.isfile(path):
            what = "radar (Sentinel-1 VV/VH)" if suffix == RADAR else suffix.strip("_.").replace(".tif", "")
            raise InputError(f"Triplet '{triplet_id}' in '{folder}' has no {what} file '{os.path.basename(path)}'.")
    cloudy = _read(paths[CLOUDY], bands, triplet_id)
    clear = _read(paths[CLEAR], bands, triplet_id)
    mask = _read(paths[MASK], [1], triplet_id)[0] > 0
    sar = _read(paths[RADAR], None, triplet_id) if radar else None
    shape = cloudy.shape[1:]
    for name, arr in ((CLEAR, clear), (MASK, mask[None]), (RADAR, sar)):
        if arr is not None and arr.shape[-2:] != shape:
            raise InputError(f"Triplet '{triplet_id}': '{triplet_id}{name}' is {arr.shape[-1]} x {arr.shape[-2]} px, "
                             f"not on the grid of '{triplet_id}{CLOUDY}' ({shape[1]} x {shape[0]} px).")
    return Triplet(triplet_id, cloudy, clear, sar, mask)


def read_raster(path: str, bands) -> np.ndarray:
    """The 1-based ``bands`` (None = all) of one raster as float32 ``(C, H, W)``, nodata as NaN."""
    return _read(path, bands, None)


def _read(path: str, bands, triplet_id: str | None) -> np.ndarray:
    what = f"Triplet '{triplet_id}': " if triplet_id else ""
    ds = gdal.OpenEx(path, gdal.OF_RASTER)
    if ds is None:
        raise InputError(f"{what}'{os.path.basename(path)}' is not a raster GDAL can read.")
    bands = list(bands) if bands is not None else list(range(1, ds.RasterCount + 1))
    if max(bands) > ds.RasterCount:
        raise InputError(f"{what}'{os.path.basename(path)}' has {ds.RasterCount} band(s); "
                         f"band {max(bands)} was asked for.")
    out = read_window(ds, Window(0, 0, ds.RasterXSize, ds.RasterYSize), bands, np.float32)
    for k, b in enumerate(bands):  # nodata as NaN
        nd = ds.GetRasterBand(b).GetNoDataValue()
        if nd is not None:
            out[k][out[k] == nd] = np.nan
    return out


def folds(ids: list, k: int, seed: int = 0) -> list:
    """``k`` disjoint held-out groups of whole triplets covering ``ids`` (shuffled by ``seed``)."""
    if not 2 <= k <= len(ids):
        raise InputError(f"Cross-validation needs between 2 and {len(ids)} folds; {k} were asked for.")
    order = list(np.random.default_rng(seed).permutation(len(ids)))
    return [sorted(ids[i] for i in order[f::k]) for f in range(k)]
