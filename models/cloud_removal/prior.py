"""The coarse fill prior of fill-based generators: the masked pixels of the whole raster filled at
coarse resolution, served to the tiler as a lazily upsampled raster in GDAL's memory file system.

A fill-based generator fills masked pixels from the known pixels of its tile; a tile inside a
large cloud has none. This prior (values in network space, read decimated to at most ``size`` pixels a
side, filled by :func:`networks.smooth_fill`) gives such tiles the fill of their wider
surroundings. It is upsampled bilinearly block by block when the tiler reads it, so memory stays
bounded.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Iterator

import numpy as np

from ..raster import RasterInfo, raster_info, read_decimated, valid_mask
from .scaling import ValueMap

PRIOR_SIZE = 512        # pixels along the longer side of the coarse fill
PRIOR_ITERATIONS = 64   # smoothing iterations of the fill


def coarse_size(src: RasterInfo, size: int = PRIOR_SIZE) -> tuple:
    """``(w, h)`` of the coarse grid: at most ``size`` pixels a side, the raster's aspect kept."""
    scale = min(1.0, size / max(src.width, src.height))
    return max(1, round(src.width * scale)), max(1, round(src.height * scale))


def coarse_fill(src: RasterInfo, bands, mask: RasterInfo, mask_values, image_map: ValueMap,
                size: tuple, sample=None) -> np.ndarray:
    """``(bands, h, w)`` fill (in network space, through ``image_map``) of the masked and nodata pixels on the
    coarse grid ``size = (w, h)``. ``sample``: an :class:`~.sample.InputSample` of these bands and this mask
    at least that large, reduced instead of reading the raster again."""
    import torch

    from ..unmixing import smooth_fill

    if sample is not None and sample.size[0] >= size[0] and sample.size[1] >= size[1]:
        small = sample.reduced(size)
        img, m = small.values, small.mask
    else:
        img = read_decimated(src, bands, 0, size=size)
        m = read_decimated(mask, [1], 0, size=size, dtype=None)[0]
    valid = valid_mask(img, [src.nodata[b - 1] for b in bands])
    known = valid & ~np.isin(m, mask_values)
    xn = image_map.to_network(img)
    xn[:, ~known] = 0.0
    with torch.no_grad():
        return smooth_fill(torch.from_numpy(xn.astype(np.float32))[None],
                           torch.from_numpy(known.astype(np.float32))[None, None],
                           iterations=PRIOR_ITERATIONS)[0].numpy()


def _write_upsampled(src: RasterInfo, filled: np.ndarray, tif: str, vrt: str) -> None:
    """The coarse fill as a GeoTIFF on a coarse version of ``src``'s grid, and a VRT on ``src``'s grid."""
    from osgeo import gdal

    bands, h, w = filled.shape
    small = gdal.GetDriverByName("GTiff").Create(tif, w, h, bands, gdal.GDT_Float32)
    gt = src.geotransform
    small.SetGeoTransform((gt[0], gt[1] * src.width / w, gt[2], gt[3], gt[4], gt[5] * src.height / h))
    for i in range(bands):
        small.GetRasterBand(i + 1).WriteArray(filled[i])
    small.FlushCache()
    gdal.Translate(vrt, small, format="VRT", width=src.width, height=src.height, resampleAlg="bilinear")


@contextmanager
def coarse_fill_prior(src: RasterInfo, bands, mask: RasterInfo, mask_values,
                      image_map: ValueMap, sample=None) -> Iterator[RasterInfo]:
    """The prior as a raster on ``src``'s grid (one band per selected band), deleted when the block ends
    (``sample``: see :func:`coarse_fill`)."""
    from osgeo import gdal

    filled = coarse_fill(src, bands, mask, mask_values, image_map, coarse_size(src), sample)
    tag = uuid.uuid4().hex[:8]
    tif, vrt = f"/vsimem/cloudfree_prior_{tag}.tif", f"/vsimem/cloudfree_prior_{tag}.vrt"
    try:
        _write_upsampled(src, filled, tif, vrt)
        yield raster_info(vrt, "coarse fill")
    finally:
        for path in (vrt, tif):
            if gdal.VSIStatL(path) is not None:
                gdal.Unlink(path)
