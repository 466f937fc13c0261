"""What a registration writes: the registered raster, the tie points and the checkerboard.

- :func:`write_registered`: the sensed image, all bands, resampled onto the reference grid
  block by block with ``cv2.remap`` (bounded memory), nodata outside;
- :func:`write_tiepoints`: a GeoPackage of the correspondences, points in the reference CRS;
- :func:`write_checkerboard`: one band on the reference grid where squares of the reference
  and of the registered image alternate, for a visual check.

Every block loop uses :func:`~..windows.iter_windows`; every file is written atomically (a
failed or cancelled run leaves nothing behind).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from osgeo import ogr, osr

from ..atomic import atomic_output
from ..errors import InputError
from ..raster import RasterInfo, RasterWriter
from ..runtime import check_cancelled, report
from ..windows import Window, iter_windows
from .transforms import apply_homography, pixel_to_map

ogr.UseExceptions()

RESAMPLINGS = ("nearest", "bilinear", "cubic")
CHECKER_NODATA = -9999.0


@dataclass(frozen=True)
class RegistrationOutputs:
    """The files a registration writes (``None``: not written) and how.

    ``registered``: the sensed image on the reference grid; ``tiepoints``: GeoPackage of the
    correspondences; ``checkerboard``: reference and registered squares of ``checker_size``
    pixels. ``resampling``: nearest, bilinear or cubic; ``block``: block size (reference
    pixels) of the block loops.
    """

    registered: Optional[str] = None
    tiepoints: Optional[str] = None
    checkerboard: Optional[str] = None
    resampling: str = "bilinear"
    checker_size: int = 64
    block: int = 512

    def __post_init__(self):
        if self.resampling not in RESAMPLINGS:
            raise InputError(f"Unknown resampling '{self.resampling}'; use nearest, bilinear or cubic.")

    def paths(self) -> tuple:
        return tuple(p for p in (self.registered, self.tiepoints, self.checkerboard) if p)


def _interpolation(resampling: str) -> int:
    import cv2

    return {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}[resampling]


def block_maps(result, window: Window) -> tuple:
    """Sensed pixel positions ``(map_x, map_y)`` (float64) of the pixels of a reference block."""
    x0, y0, w, h = window
    transform, to_sensed = result.geometric_transform, result.grid_to_sensed
    if transform.kind == "tps":
        import cv2

        step = 8  # the spline on a coarse grid, interpolated bilinearly
        gx = np.arange(0, w + step, step, dtype=np.float64)
        gy = np.arange(0, h + step, step, dtype=np.float64)
        cx, cy = np.meshgrid(gx + x0, gy + y0)
        q = apply_homography(to_sensed, transform.apply(np.c_[cx.ravel(), cy.ravel()]))
        qx = q[:, 0].reshape(cx.shape).astype(np.float32)
        qy = q[:, 1].reshape(cx.shape).astype(np.float32)
        bx, by = np.meshgrid(np.arange(w, dtype=np.float32) / step, np.arange(h, dtype=np.float32) / step)
        mx = cv2.remap(qx, bx, by, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        my = cv2.remap(qy, bx, by, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return mx.astype(np.float64), my.astype(np.float64)
    full = to_sensed @ transform.h
    xs, ys = np.meshgrid(np.arange(x0, x0 + w, dtype=np.float64), np.arange(y0, y0 + h, dtype=np.float64))
    den = full[2, 0] * xs + full[2, 1] * ys + full[2, 2]
    mx = (full[0, 0] * xs + full[0, 1] * ys + full[0, 2]) / den
    my = (full[1, 0] * xs + full[1, 1] * ys + full[1, 2]) / den
    return mx, my


def source_window(mx: np.ndarray, my: np.ndarray, sensed: RasterInfo) -> tuple:
    """Pixels of a block whose source position falls inside the sensed raster, and the sensed
    window ``(x0, y0, x1, y1)`` they need (2 px of margin for bilinear/cubic interpolation)."""
    inside = (mx > -0.5) & (mx < sensed.width - 0.5) & (my > -0.5) & (my < sensed.height - 0.5)
    if not inside.any():
        return inside, (0, 0, 0, 0)
    return inside, (max(0, int(math.floor(mx[inside].min())) - 2), max(0, int(math.floor(my[inside].min())) - 2),
                    min(sensed.width, int(math.ceil(mx[inside].max())) + 3),
                    min(sensed.height, int(math.ceil(my[inside].max())) + 3))


# --------------------------------------------------------------------------- registered raster


def write_registered(result, reference: RasterInfo, sensed: RasterInfo, outputs: RegistrationOutputs,
                     protect=(), progress=None, cancelled=None) -> str:
    """Write ``sensed`` (all bands, its dtype) resampled onto the reference grid to ``outputs.registered``."""
    nd = [sensed.nodata[b] if b < len(sensed.nodata) else None for b in range(sensed.band_count)]
    out_nd = nd[0] if nd[0] is not None else 0
    # blocks of about outputs.block sensed pixels: smaller reference blocks when the sensed image is finer
    linear = result.grid_to_sensed[:2, :2] @ result.geometric_transform.h[:2, :2]
    lin_scale = float(np.sqrt(abs(np.linalg.det(linear))))
    block = max(64, int(outputs.block / max(1.0, lin_scale)))
    n_blocks = math.ceil(reference.width / block) * math.ceil(reference.height / block)
    interp = _interpolation(outputs.resampling)
    with RasterWriter(outputs.registered, like=reference, band_count=sensed.band_count, dtype=sensed.dtype,
                      nodata=out_nd, descriptions=sensed.descriptions, protect=protect) as out:
        for done, window in enumerate(iter_windows(reference.width, reference.height, block), start=1):
            check_cancelled(cancelled)
            out.write(_registered_block(result, sensed, window, nd, out_nd, interp), window.col_off, window.row_off)
            report(progress, 0.7 + 0.2 * done / n_blocks)
    return str(outputs.registered)


def _registered_block(result, sensed: RasterInfo, window: Window, nd: list, out_nd, interp: int) -> np.ndarray:
    """One reference block of the registered image ``(bands, rows, cols)``, ``out_nd`` where nothing maps."""
    import cv2

    dtype = np.dtype(sensed.dtype)
    integer = np.issubdtype(dtype, np.integer)
    lo, hi = (np.iinfo(dtype).min, np.iinfo(dtype).max) if integer else (-np.inf, np.inf)
    nb, (_, _, w, h) = sensed.band_count, window
    mx, my = block_maps(result, window)
    res = np.full((nb, h, w), out_nd, dtype=dtype)
    inside, (sx0, sy0, sx1, sy1) = source_window(mx, my, sensed)
    if not inside.any():
        return res
    mxf, myf = (mx - sx0).astype(np.float32), (my - sy0).astype(np.float32)
    valid_all = inside.copy()
    ds = sensed.dataset()
    for b in range(nb):
        arr = ds.GetRasterBand(b + 1).ReadAsArray(sx0, sy0, sx1 - sx0, sy1 - sy0).astype(np.float32)
        v = np.isfinite(arr)
        if nd[b] is not None:
            v &= arr != nd[b]
        fill = float(arr[v].mean()) if v.any() else 0.0
        vals = cv2.remap(np.where(v, arr, fill), mxf, myf, interp, borderMode=cv2.BORDER_REPLICATE)
        vv = cv2.remap(v.astype(np.float32), mxf, myf, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                       borderValue=0)
        valid_all &= vv > (0.999 if interp != cv2.INTER_NEAREST else 0.5)
        if integer:
            vals = np.clip(np.rint(vals), lo, hi)
        res[b] = vals.astype(dtype)
    res[:, ~valid_all] = out_nd
    return res


# --------------------------------------------------------------------------- tie points


def write_tiepoints(path: str, result, reference: RasterInfo) -> str:
    """GeoPackage of the correspondences: points at the reference positions, in the reference CRS.

    Fields: ref_x, ref_y (reference pixels), sensed_x, sensed_y (sensed pixels), residual
    (reference pixels) and inlier (boolean). Written atomically.
    """
    path = str(path)
    srs = None
    if reference.crs_wkt:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(reference.crs_wkt)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    geo_xy = apply_homography(pixel_to_map(reference.geotransform), result.ref_points)
    with atomic_output(path, suffix=".gpkg") as tmp:
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(tmp)
        layer = ds.CreateLayer("tiepoints", srs, ogr.wkbPoint)
        for name in ("ref_x", "ref_y", "sensed_x", "sensed_y", "residual"):
            layer.CreateField(ogr.FieldDefn(name, ogr.OFTReal))
        fd = ogr.FieldDefn("inlier", ogr.OFTInteger)
        fd.SetSubType(ogr.OFSTBoolean)
        layer.CreateField(fd)
        defn = layer.GetLayerDefn()
        ds.StartTransaction()
        for i in range(len(result.ref_points)):
            feat = ogr.Feature(defn)
            feat.SetField("ref_x", float(result.ref_points[i, 0]))
            feat.SetField("ref_y", float(result.ref_points[i, 1]))
            feat.SetField("sensed_x", float(result.sensed_points[i, 0]))
            feat.SetField("sensed_y", float(result.sensed_points[i, 1]))
            feat.SetField("residual", float(result.residuals[i]))
            feat.SetField("inlier", int(bool(result.inliers[i])))
            pt = ogr.Geometry(ogr.wkbPoint)
            pt.AddPoint_2D(float(geo_xy[i, 0]), float(geo_xy[i, 1]))
            feat.SetGeometry(pt)
            layer.CreateFeature(feat)
        ds.CommitTransaction()
        ds = None
    return path


# --------------------------------------------------------------------------- checkerboard


def write_checkerboard(result, reference: RasterInfo, sensed: RasterInfo, bands: tuple,
                       outputs: RegistrationOutputs, cancelled=None) -> str:
    """One band on the reference grid: reference and registered squares alternate (``checker_size`` px).

    ``bands``: the reference and the sensed band shown.
    """
    interp = _interpolation(outputs.resampling)
    rband = reference.dataset().GetRasterBand(bands[0])
    sband = sensed.dataset().GetRasterBand(bands[1])
    snd = sensed.nodata[bands[1] - 1]
    size = outputs.checker_size
    with RasterWriter(outputs.checkerboard, like=reference, band_count=1, dtype="float32", nodata=CHECKER_NODATA,
                      protect=(reference.path, sensed.path)) as out:
        for window in iter_windows(reference.width, reference.height, outputs.block):
            check_cancelled(cancelled)
            bx, by, w, h = window
            a = rband.ReadAsArray(bx, by, w, h).astype(np.float32)
            b = _checker_sensed(result, sensed, sband, snd, window, interp)
            yy, xx = np.mgrid[by:by + h, bx:bx + w]
            use_b = ((xx // size + yy // size) % 2) == 1
            out.write(np.where(use_b, b, a)[None], bx, by)
    return str(outputs.checkerboard)


def _checker_sensed(result, sensed: RasterInfo, sband, snd, window: Window, interp: int) -> np.ndarray:
    """The registered sensed band over one reference block (float32, ``CHECKER_NODATA`` where none)."""
    import cv2

    mx, my = block_maps(result, window)
    b = np.full((window.height, window.width), CHECKER_NODATA, np.float32)
    inside, (sx0, sy0, sx1, sy1) = source_window(mx, my, sensed)
    if inside.any():
        arr = sband.ReadAsArray(sx0, sy0, sx1 - sx0, sy1 - sy0).astype(np.float32)
        vals = cv2.remap(arr, (mx - sx0).astype(np.float32), (my - sy0).astype(np.float32), interp,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=CHECKER_NODATA)
        ok = inside & (vals != CHECKER_NODATA)
        if snd is not None:
            ok &= vals != snd
        b[ok] = vals[ok]
    return b
