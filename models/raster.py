"""Raster I/O with GDAL: block reads, atomic writes, grid checks, band selection, scaling.

Conventions used across the engine:

- arrays are ``(bands, rows, cols)``; band numbers given by users are 1-based, as in QGIS;
- a *window* is ``(x0, y0, width, height)`` in pixels of the raster it refers to;
- outputs are written to a hidden temporary file beside the destination and renamed
  into place only when complete, so a failed or cancelled run leaves nothing behind and
  an input can never be overwritten half-way.
"""

from __future__ import annotations

import math
import os
import uuid
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
from osgeo import gdal, gdal_array, osr

from .errors import GridMismatchError, InputError

gdal.UseExceptions()
osr.UseExceptions()

Window = tuple  # (x0, y0, width, height)


# --------------------------------------------------------------------------- metadata


@dataclass(frozen=True)
class RasterInfo:
    """What the engine needs to know about a raster, without its pixels."""

    path: str
    name: str
    width: int
    height: int
    band_count: int
    dtype: str
    geotransform: tuple
    crs_wkt: str
    nodata: tuple  # one value (or None) per band
    descriptions: tuple = field(default=())

    @property
    def pixel_size(self) -> tuple:
        return (abs(self.geotransform[1]), abs(self.geotransform[5]))

    @property
    def bounds(self) -> tuple:
        """(xmin, ymin, xmax, ymax) in the raster's CRS (north-up rasters)."""
        gt = self.geotransform
        xs = (gt[0], gt[0] + gt[1] * self.width)
        ys = (gt[3], gt[3] + gt[5] * self.height)
        return (min(xs), min(ys), max(xs), max(ys))

    @property
    def is_georeferenced(self) -> bool:
        return bool(self.crs_wkt)

    def crs_label(self) -> str:
        return crs_label(self.crs_wkt)


def crs_label(wkt: str) -> str:
    """Short human name of a CRS, e.g. ``EPSG:32633``, for error messages."""
    if not wkt:
        return "no CRS"
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    code = srs.GetAuthorityCode(None)
    name = srs.GetAuthorityName(None)
    return f"{name}:{code}" if code else (srs.GetName() or "unknown CRS")


def open_raster(path: str, name: str | None = None) -> gdal.Dataset:
    """Open a raster read-only, with an error that names the layer when it fails."""
    label = name or os.path.basename(str(path))
    if not path or (not str(path).startswith("/vsi") and not os.path.exists(path)):
        raise InputError(f"Layer '{label}': file not found ({path}).")
    try:
        ds = gdal.Open(str(path), gdal.GA_ReadOnly)
    except RuntimeError as exc:
        raise InputError(f"Layer '{label}': GDAL cannot read it ({exc}).") from exc
    if ds is None or ds.RasterCount == 0:
        raise InputError(f"Layer '{label}': not a raster with at least one band ({path}).")
    return ds


def raster_info(path: str, name: str | None = None) -> RasterInfo:
    ds = open_raster(path, name)
    band1 = ds.GetRasterBand(1)
    dtype = np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(band1.DataType)).name
    srs = ds.GetSpatialRef()
    info = RasterInfo(
        path=str(path),
        name=name or os.path.splitext(os.path.basename(str(path)))[0],
        width=ds.RasterXSize,
        height=ds.RasterYSize,
        band_count=ds.RasterCount,
        dtype=dtype,
        geotransform=tuple(ds.GetGeoTransform()),
        crs_wkt=srs.ExportToWkt() if srs is not None else "",
        nodata=tuple(ds.GetRasterBand(b).GetNoDataValue() for b in range(1, ds.RasterCount + 1)),
        descriptions=tuple(ds.GetRasterBand(b).GetDescription() for b in range(1, ds.RasterCount + 1)),
    )
    ds = None
    return info


# --------------------------------------------------------------------------- bands and scaling


def parse_bands(spec, band_count: int, layer: str = "input", default: Sequence[int] | None = None) -> list:
    """Turn ``"2,3,4,8"``, ``[2, 3]`` or empty into a validated list of 1-based band numbers."""
    if spec is None or (isinstance(spec, str) and not spec.strip()) or (not isinstance(spec, str) and len(spec) == 0):
        bands = list(default) if default is not None else list(range(1, band_count + 1))
    elif isinstance(spec, str):
        try:
            bands = [int(tok) for tok in spec.replace(";", ",").replace(" ", ",").split(",") if tok]
        except ValueError as exc:
            raise InputError(f"Layer '{layer}': band list '{spec}' must be comma-separated band numbers.") from exc
    else:
        bands = [int(b) for b in spec]
    bad = [b for b in bands if b < 1 or b > band_count]
    if bad:
        raise InputError(
            f"Layer '{layer}' has {band_count} band(s); band number(s) {bad} do not exist (bands count from 1)."
        )
    return bands


@dataclass(frozen=True)
class Scaling:
    """Linear map from stored digital numbers to reflectance: ``(DN + offset) * gain``.

    Kept in model metadata so that inference applies exactly the scaling used in training.
    """

    name: str = "identity"
    offset: float = 0.0
    gain: float = 1.0

    def to_reflectance(self, values: np.ndarray) -> np.ndarray:
        return (values.astype(np.float32) + np.float32(self.offset)) * np.float32(self.gain)

    def from_reflectance(self, values: np.ndarray) -> np.ndarray:
        return values / np.float32(self.gain) - np.float32(self.offset)

    def to_dict(self) -> dict:
        return {"name": self.name, "offset": self.offset, "gain": self.gain}

    @classmethod
    def from_dict(cls, d: dict) -> "Scaling":
        return cls(name=str(d.get("name", "custom")), offset=float(d["offset"]), gain=float(d["gain"]))


SCALING_PRESETS = {
    "identity": Scaling("identity", 0.0, 1.0),
    # Sentinel-2 L1C/L2A from processing baseline 04.00 (2022-01-25) on: BOA_ADD_OFFSET = -1000.
    "sentinel2_pb04": Scaling("sentinel2_pb04", -1000.0, 1e-4),
    # Sentinel-2 before processing baseline 04.00: plain quantification value 10000.
    "sentinel2_pre_pb04": Scaling("sentinel2_pre_pb04", 0.0, 1e-4),
    # Landsat 8/9 Level-1 TOA reflectance (MTL REFLECTANCE_MULT 2e-5, ADD -0.1).
    "landsat8_l1_toa": Scaling("landsat8_l1_toa", -5000.0, 2e-5),
    # Landsat Collection 2 Level-2 surface reflectance (x 2.75e-5 - 0.2).
    "landsat_c2_l2": Scaling("landsat_c2_l2", -0.2 / 2.75e-5, 2.75e-5),
}


# --------------------------------------------------------------------------- reading


def iter_windows(width: int, height: int, block: int = 1024) -> Iterator[Window]:
    """Row-major windows of at most ``block`` x ``block`` pixels covering the raster."""
    for y0 in range(0, height, block):
        for x0 in range(0, width, block):
            yield (x0, y0, min(block, width - x0), min(block, height - y0))


def read_window(ds: gdal.Dataset, window: Window, bands: Sequence[int] | None = None, dtype=np.float32) -> np.ndarray:
    """Read ``bands`` (1-based, default all) of a window as ``(bands, rows, cols)``."""
    x0, y0, w, h = (int(v) for v in window)
    bands = list(bands) if bands is not None else list(range(1, ds.RasterCount + 1))
    # one dataset-level read: a pixel-interleaved block is decompressed once, not once per band
    arr = ds.ReadAsArray(x0, y0, w, h, band_list=bands)
    return np.asarray(arr, dtype=dtype).reshape(len(bands), h, w)


def read_padded(ds: gdal.Dataset, window: Window, bands: Sequence[int] | None = None, dtype=np.float32,
                out: np.ndarray | None = None) -> np.ndarray:
    """Read a window that may reach outside the raster; the outside is filled by mirror reflection.

    ``out``: an array of shape ``(bands, rows, cols)`` to read into (and return) instead of a
    new one, so a caller that reads many windows of one size reuses a single buffer.
    """
    x0, y0, w, h = (int(v) for v in window)
    bands = list(bands) if bands is not None else list(range(1, ds.RasterCount + 1))
    if out is not None and out.shape != (len(bands), h, w):
        raise ValueError(f"out has shape {out.shape}, the window needs {(len(bands), h, w)}")
    W, H = ds.RasterXSize, ds.RasterYSize
    ix0, iy0 = max(0, x0), max(0, y0)
    ix1, iy1 = min(W, x0 + w), min(H, y0 + h)
    if ix1 <= ix0 or iy1 <= iy0:
        raise ValueError(f"window {window} does not intersect the {W}x{H} raster")
    iw, ih = ix1 - ix0, iy1 - iy0
    top, bottom, left, right = iy0 - y0, y0 + h - iy1, ix0 - x0, x0 + w - ix1
    if max(top, bottom) < ih and max(left, right) < iw:
        # read straight into the padded array and mirror in place: no full-size copies
        if out is None:
            out = np.empty((len(bands), h, w), dtype=dtype)
        ds.ReadAsArray(ix0, iy0, iw, ih, band_list=bands, buf_obj=out[:, top:top + ih, left:left + iw])
        # mirror without repeating the edge pixel (numpy's "reflect"): rows first, then columns
        if top:
            out[:, :top] = out[:, top + 1:2 * top + 1][:, ::-1]
        if bottom:
            e = h - bottom
            out[:, e:] = out[:, e - 1 - bottom:e - 1][:, ::-1]
        if left:
            out[:, :, :left] = out[:, :, left + 1:2 * left + 1][:, :, ::-1]
        if right:
            e = w - right
            out[:, :, e:] = out[:, :, e - 1 - right:e - 1][:, :, ::-1]
        return out
    inner = read_window(ds, (ix0, iy0, iw, ih), bands, dtype)
    pads = ((0, 0), (top, bottom), (left, right))
    if any(p for pair in pads for p in pair):
        # 'reflect' needs at least two pixels along an axis; 'edge' is the only sensible choice below that.
        mode_y = "reflect" if inner.shape[1] > 1 else "edge"
        mode_x = "reflect" if inner.shape[2] > 1 else "edge"
        inner = np.pad(inner, (pads[0], pads[1], (0, 0)), mode=mode_y)
        inner = np.pad(inner, ((0, 0), (0, 0), pads[2]), mode=mode_x)
    if out is not None:
        out[...] = inner
        return out
    return inner


def valid_mask(array: np.ndarray, nodata: Sequence) -> np.ndarray:
    """True where every band holds data (not the band's nodata value, not NaN)."""
    valid = np.ones(array.shape[1:], dtype=bool)
    for i in range(array.shape[0]):
        band = array[i]
        if np.issubdtype(band.dtype, np.floating):
            valid &= np.isfinite(band)
        nd = nodata[i] if i < len(nodata) else None
        if nd is not None and not (isinstance(nd, float) and math.isnan(nd)):
            valid &= band != nd
    return valid


def has_valid_pixels(info: RasterInfo, bands: Sequence[int] | None = None, sample: int = 512) -> bool:
    """Cheap check on a decimated read (at most ``sample`` x ``sample`` pixels)."""
    ds = open_raster(info.path, info.name)
    bands = list(bands) if bands is not None else list(range(1, info.band_count + 1))
    bw, bh = min(sample, info.width), min(sample, info.height)
    arr = np.stack([ds.GetRasterBand(b).ReadAsArray(buf_xsize=bw, buf_ysize=bh) for b in bands])
    return bool(valid_mask(arr, [info.nodata[b - 1] for b in bands]).any())


def require_valid_pixels(info: RasterInfo, bands: Sequence[int] | None = None) -> None:
    if not has_valid_pixels(info, bands):
        raise InputError(f"Layer '{info.name}' holds only nodata pixels.")


# --------------------------------------------------------------------------- writing


def numpy_to_gdal_type(dtype) -> int:
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        dtype = np.dtype(np.uint8)
    return gdal_array.NumericTypeCodeToGDALTypeCode(dtype)


def _codec() -> str:
    """ZSTD when this GDAL has it (GDAL >= 2.3: every QGIS 3), else DEFLATE.

    On imagery, ZSTD level 1 writes about 3x faster than DEFLATE level 1 and reads faster, for
    files of the same size (measured on float32 rasters); compression otherwise dominates the
    tiler's overhead. Set ``CLOUDFREE_COMPRESSION=DEFLATE`` for outputs that software without
    ZSTD support (some non-GDAL readers) must open.
    """
    wanted = os.environ.get("CLOUDFREE_COMPRESSION", "ZSTD").upper()
    options = gdal.GetDriverByName("GTiff").GetMetadataItem("DMD_CREATIONOPTIONLIST") or ""
    return "ZSTD" if wanted == "ZSTD" and "ZSTD" in options else "DEFLATE"


def _predictor(dtype) -> str:
    """Horizontal differencing (2) for integers wider than a byte; none (1) otherwise.

    The floating-point predictor (3) was measured and left off: on real float Sentinel-2
    tiles it made ZSTD files 26 % larger (s2_cloud_pair) or 13 % smaller (s2_cloudy_scene),
    and it costs about 60 % more CPU to write and to read (4096 x 4096 x 4 float32: read
    0.78 vs 0.48 s, write 1.2-1.5 vs 0.8-1.0 s), which the tiler pays on every block.
    """
    dt = np.dtype(dtype)
    return "2" if np.issubdtype(dt, np.integer) and dt.itemsize > 1 else "1"


def default_creation_options(dtype) -> list:
    predictor = _predictor(dtype)
    codec = _codec()
    level = "ZSTD_LEVEL=1" if codec == "ZSTD" else "ZLEVEL=1"
    return ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", f"COMPRESS={codec}", level,
            f"PREDICTOR={predictor}", "BIGTIFF=IF_SAFER", "NUM_THREADS=ALL_CPUS"]


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


class RasterWriter:
    """Write a GeoTIFF block by block into a temporary file; rename it into place on success.

    Use as a context manager: an exception (including :class:`Cancelled`) inside the
    ``with`` block deletes the temporary file and leaves the destination untouched.

    >>> with RasterWriter(path, like=info, band_count=4, dtype="float32") as out:
    ...     out.write(block, x0, y0)
    """

    def __init__(self, path: str, *, like: RasterInfo | None = None, width: int | None = None,
                 height: int | None = None, geotransform: tuple | None = None, crs_wkt: str | None = None,
                 band_count: int = 1, dtype="float32", nodata=None, descriptions: Sequence[str] | None = None,
                 cog: bool = False, protect: Sequence[str] = ()):
        path = str(path)
        for p in protect:
            if p and (_same_file(path, p) or os.path.abspath(path) == os.path.abspath(str(p))):
                raise InputError(f"The output {path} is one of the inputs; choose another file, inputs are never modified.")
        folder = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(folder):
            os.makedirs(folder, exist_ok=True)
        self.path = path
        self.cog = cog
        self.dtype = np.dtype(dtype)
        self.width = width if width is not None else like.width
        self.height = height if height is not None else like.height
        self.band_count = band_count
        self.tmp_path = os.path.join(folder, f".{os.path.basename(path)}.partial-{uuid.uuid4().hex[:8]}.tif")
        driver = gdal.GetDriverByName("GTiff")
        self.ds = driver.Create(self.tmp_path, self.width, self.height, band_count,
                                numpy_to_gdal_type(self.dtype), default_creation_options(self.dtype))
        gt = geotransform if geotransform is not None else (like.geotransform if like else None)
        wkt = crs_wkt if crs_wkt is not None else (like.crs_wkt if like else "")
        if gt is not None:
            self.ds.SetGeoTransform(gt)
        if wkt:
            self.ds.SetProjection(wkt)
        self.nodata = nodata
        for b in range(1, band_count + 1):
            band = self.ds.GetRasterBand(b)
            if nodata is not None:
                band.SetNoDataValue(float(nodata))
            if descriptions and b - 1 < len(descriptions) and descriptions[b - 1]:
                band.SetDescription(str(descriptions[b - 1]))
        self._done = False

    def write(self, array: np.ndarray, x0: int, y0: int) -> None:
        """Write ``(bands, rows, cols)`` (or ``(rows, cols)`` for one band) at pixel (x0, y0)."""
        if array.ndim == 2:
            array = array[None]
        array = np.asarray(array, dtype=self.dtype)
        if array.shape[0] == self.band_count and self.band_count > 1:
            # one dataset-level write: each pixel-interleaved block is assembled and compressed once
            self.ds.WriteArray(array, int(x0), int(y0))
        else:
            for i in range(array.shape[0]):
                self.ds.GetRasterBand(i + 1).WriteArray(array[i], int(x0), int(y0))

    def commit(self) -> str:
        self.ds.FlushCache()
        self.ds = None
        src = self.tmp_path
        if self.cog:
            cog_tmp = self.tmp_path + ".cog.tif"
            pred = "STANDARD" if _predictor(self.dtype) == "2" else "NO"
            opts = [f"COMPRESS={_codec()}", "LEVEL=1", f"PREDICTOR={pred}", "BIGTIFF=IF_SAFER", "NUM_THREADS=ALL_CPUS"]
            gdal.Translate(cog_tmp, src, format="COG", creationOptions=opts)
            os.remove(src)
            src = cog_tmp
        os.replace(src, self.path)
        self._done = True
        return self.path

    def abort(self) -> None:
        self.ds = None
        for p in (self.tmp_path, self.tmp_path + ".cog.tif", self.tmp_path + ".aux.xml"):
            if os.path.exists(p):
                os.remove(p)
        self._done = True

    def __enter__(self) -> "RasterWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self._done:
            return False
        if exc_type is None:
            self.commit()
        else:
            self.abort()
        return False


def write_array(path: str, array: np.ndarray, like: RasterInfo | None = None, **kwargs) -> str:
    """Write a whole (small) array in one go; same options as :class:`RasterWriter`."""
    if array.ndim == 2:
        array = array[None]
    kwargs.setdefault("dtype", array.dtype)
    if like is None:
        kwargs.setdefault("width", array.shape[2])
        kwargs.setdefault("height", array.shape[1])
    with RasterWriter(path, like=like, band_count=array.shape[0], **kwargs) as out:
        out.write(array, 0, 0)
    return path


# --------------------------------------------------------------------------- grids


def _same_crs(a: str, b: str) -> bool:
    if not a or not b:
        return not a and not b
    sa, sb = osr.SpatialReference(), osr.SpatialReference()
    sa.ImportFromWkt(a)
    sb.ImportFromWkt(b)
    return bool(sa.IsSame(sb))


def grid_difference(info: RasterInfo, ref: RasterInfo, tolerance: float = 1e-3) -> str | None:
    """Why ``info`` is not on ``ref``'s grid, or None if it is. ``tolerance`` is in pixels."""
    if not _same_crs(info.crs_wkt, ref.crs_wkt):
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
    if info.crs_wkt and ref.crs_wkt and not _same_crs(info.crs_wkt, ref.crs_wkt):
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


def unique_values(info: RasterInfo, band: int = 1, block: int = 2048, limit: int = 1024) -> list:
    """Distinct values of a class raster (e.g. a mask), read block by block.

    Raises :class:`InputError` past ``limit`` distinct values: that is not a class raster.
    """
    ds = open_raster(info.path, info.name)
    seen: set = set()
    for window in iter_windows(info.width, info.height, block):
        seen.update(np.unique(read_window(ds, window, [band], dtype=np.float64)).tolist())
        if len(seen) > limit:
            raise InputError(f"Layer '{info.name}' has more than {limit} distinct values; a mask layer was expected.")
    nodata = info.nodata[band - 1]
    return sorted(v for v in seen if not (nodata is not None and v == nodata) and not math.isnan(v))


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
