"""Grids: whether rasters share one (CRS, pixel size, origin, size), how much they overlap, warping
onto a reference grid, and burning polygons onto a grid."""

from __future__ import annotations

import os
import uuid
from typing import Sequence

from osgeo import gdal, osr

from .errors import GridMismatchError, InputError
from .raster import RasterInfo, RasterWriter, raster_info



def same_crs(a: str, b: str) -> bool:
    if not a or not b:
        return not a and not b
    sa, sb = osr.SpatialReference(), osr.SpatialReference()
    sa.ImportFromWkt(a)
    sb.ImportFromWkt(b)
    return bool(sa.IsSame(sb))


def grid_difference(info: RasterInfo, ref: RasterInfo, tolerance: float = 1e-3) -> str | None:
    """Why ``info`` is not on ``ref``'s grid, or None if it is. ``tolerance`` is in pixels."""
    if not same_crs(info.crs_wkt, ref.crs_wkt):
        return f"a different CRS ({info.crs_label()} instead of {ref.crs_label()})"
    gi, gr = info.geotransform, ref.geotransform
    if gi[2] != gr[2] or gi[4] != gr[4]:
        return "a different rotation of its geotransform"
    rx, ry = abs(gr[1]), abs(gr[5])
    if abs(gi[1] - gr[1]) > tolerance * rx / max(ref.width, 1) or abs(gi[5] - gr[5]) > tolerance * ry / max(ref.height, 1):
        return f"a different pixel size ({abs(gi[1]):g} x {abs(gi[5]):g} instead of {rx:g} x {ry:g})"
    dx, dy = (gi[0] - gr[0]) / gr[1], (gi[3] - gr[3]) / gr[5]
    if abs(dx) > tolerance or abs(dy) > tolerance:
        return f"a shifted origin ({dx:+.3f}, {dy:+.3f} pixels)"
    if (info.width, info.height) != (ref.width, ref.height):
        return f"a different size ({info.width}x{info.height} instead of {ref.width}x{ref.height})"
    return None


def check_same_grid(infos: Sequence[RasterInfo], tolerance: float = 1e-3) -> None:
    """Raise :class:`GridMismatchError` naming the layers unless all share the first one's grid."""
    ref = infos[0]
    problems = []
    for info in infos[1:]:
        why = grid_difference(info, ref, tolerance)
        if why:
            problems.append(f"layer '{info.name}' has {why}")
    if problems:
        raise GridMismatchError(
            f"Layers must share the grid of '{ref.name}' (CRS, pixel size, origin and size): "
            + "; ".join(problems) + ". Align them first (for example with the ALIGN option or GDAL Warp)."
        )


def overlap_fraction(info: RasterInfo, ref: RasterInfo) -> float:
    """Fraction of ``ref``'s extent covered by ``info``'s extent (after reprojection to ref's CRS)."""
    bx = info.bounds
    if info.crs_wkt and ref.crs_wkt and not same_crs(info.crs_wkt, ref.crs_wkt):
        src, dst = osr.SpatialReference(), osr.SpatialReference()
        src.ImportFromWkt(info.crs_wkt)
        dst.ImportFromWkt(ref.crs_wkt)
        for s in (src, dst):
            s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        bx = osr.CoordinateTransformation(src, dst).TransformBounds(*bx, 21)
    rb = ref.bounds
    w = max(0.0, min(bx[2], rb[2]) - max(bx[0], rb[0]))
    h = max(0.0, min(bx[3], rb[3]) - max(bx[1], rb[1]))
    area = (rb[2] - rb[0]) * (rb[3] - rb[1])
    return (w * h) / area if area > 0 else 0.0


def align_to_reference(infos: Sequence[RasterInfo], ref: RasterInfo, folder: str,
                       resampling: str = "bilinear") -> list:
    """Warp every raster onto ``ref``'s grid as lazy VRT files in ``folder``.

    Rasters already on the grid are returned unchanged. Warped VRTs are computed
    block by block when read, so memory stays bounded.
    """
    out = []
    for i, info in enumerate(infos):
        if grid_difference(info, ref) is None:
            out.append(info)
            continue
        if not info.is_georeferenced or not ref.is_georeferenced:
            raise GridMismatchError(f"Layer '{info.name}' cannot be warped onto '{ref.name}': both need a CRS.")
        if overlap_fraction(info, ref) <= 0:
            raise InputError(f"Layer '{info.name}' does not overlap '{ref.name}'.")
        dst = os.path.join(folder, f"aligned_{i}_{uuid.uuid4().hex[:6]}.vrt")
        nodata = info.nodata[0]
        gdal.Warp(dst, info.path, format="VRT", dstSRS=ref.crs_wkt, outputBounds=ref.bounds,
                  width=ref.width, height=ref.height, resampleAlg=resampling,
                  srcNodata=nodata, dstNodata=nodata if nodata is not None else 0)
        aligned = raster_info(dst, info.name)
        out.append(aligned)
    return out


def rasterize_labels(vector_path: str, field_name: str, like: RasterInfo, out_path: str,
                     layer_name: str | None = None, nodata: int = 0) -> str:
    """Burn a polygon layer's integer ``field_name`` onto ``like``'s grid (0 = unlabelled).

    The vector is reprojected to the raster's CRS by GDAL. Written atomically.
    """
    from osgeo import ogr

    ds = ogr.Open(str(vector_path))
    if ds is None:
        raise InputError(f"Labels '{vector_path}' cannot be opened as a vector layer.")
    layer = ds.GetLayerByName(layer_name) if layer_name else ds.GetLayer(0)
    if layer.GetLayerDefn().GetFieldIndex(field_name) < 0:
        raise InputError(f"Labels layer '{layer.GetName()}' has no field '{field_name}'.")
    with RasterWriter(out_path, like=like, band_count=1, dtype="int32", nodata=None) as out:
        out.ds.GetRasterBand(1).Fill(nodata)
        opts = gdal.RasterizeOptions(attribute=field_name, layers=[layer.GetName()])
        gdal.Rasterize(out.ds, str(vector_path), options=opts)
    return out_path
