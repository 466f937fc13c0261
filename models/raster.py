"""Raster I/O with GDAL: open once, describe, read windows (padded or decimated), write GeoTIFFs.

Conventions used across the engine:

- arrays are ``(bands, rows, cols)``; band numbers given by users are 1-based, as in QGIS;
- a window is a :class:`~.windows.Window` in pixels of the raster it refers to;
- a :class:`RasterInfo` opens its file once (:meth:`RasterInfo.dataset`) and every stage of a
  run reads through that one dataset;
- outputs go through :class:`~.atomic.AtomicFile`: written beside the destination and renamed
  into place only when complete, so a failed or cancelled run leaves nothing behind and an
  input can never be overwritten half-way.

Grid comparisons and warping live in :mod:`.grids`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from osgeo import gdal, gdal_array, osr

from .atomic import AtomicFile
from .errors import InputError
from .windows import Window, iter_windows

gdal.UseExceptions()
osr.UseExceptions()


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

    def dataset(self) -> gdal.Dataset:
        """The raster opened read-only, once: later calls return the same dataset.

        This handle decompresses the blocks of one read on every core (GDAL_NUM_THREADS=ALL_CPUS,
        honoured by GeoTIFF and JPEG 2000): the whole-raster reads made before the tiles run (image
        statistics, coarse prior) have the machine to themselves (4096^2 x 4 bands, ZSTD: 0.88 ->
        0.5 s on two cores). The tiler's own handles, read while the network runs, stay on one thread."""
        ds = self.__dict__.get("_dataset")
        if ds is None:
            ds = open_raster(self.path, self.name, decode_threads="ALL_CPUS")
            object.__setattr__(self, "_dataset", ds)
        return ds

    def close(self) -> None:
        """Drop the open dataset (the file is closed unless something else still holds it)."""
        self.__dict__.pop("_dataset", None)

    def __getstate__(self) -> dict:
        # an open GDAL dataset does not travel (pickling, copies): the copy opens its own
        return {k: v for k, v in self.__dict__.items() if k != "_dataset"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


def crs_label(wkt: str) -> str:
    """Short human name of a CRS, e.g. ``EPSG:32633``, for error messages."""
    if not wkt:
        return "no CRS"
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    code = srs.GetAuthorityCode(None)
    name = srs.GetAuthorityName(None)
    return f"{name}:{code}" if code else (srs.GetName() or "unknown CRS")


def open_raster(path: str, name: str | None = None, decode_threads: str | None = None) -> gdal.Dataset:
    """Open a raster read-only, with an error that names the layer when it fails. ``decode_threads``:
    GDAL_NUM_THREADS for this dataset's block decompression (``"ALL_CPUS"``, a number; None: GDAL's setting)."""
    label = name or os.path.basename(str(path))
    if not path or (not str(path).startswith("/vsi") and not os.path.exists(path)):
        raise InputError(f"Layer '{label}': file not found ({path}).")
    previous = gdal.GetThreadLocalConfigOption("GDAL_NUM_THREADS", None)
    if decode_threads is not None:  # read by the drivers when they open the file
        gdal.SetThreadLocalConfigOption("GDAL_NUM_THREADS", str(decode_threads))
    try:
        ds = gdal.Open(str(path), gdal.GA_ReadOnly)
    except RuntimeError as exc:
        raise InputError(f"Layer '{label}': GDAL cannot read it ({exc}).") from exc
    finally:
        if decode_threads is not None:
            gdal.SetThreadLocalConfigOption("GDAL_NUM_THREADS", previous)
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


# --------------------------------------------------------------------------- bands


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


# --------------------------------------------------------------------------- reading


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


_RESAMPLING = {"nearest": gdal.GRIORA_NearestNeighbour, "average": gdal.GRIORA_Average,
               "bilinear": gdal.GRIORA_Bilinear, "cubic": gdal.GRIORA_Cubic, "mode": gdal.GRIORA_Mode}


def read_decimated(info: RasterInfo, bands: Sequence[int], max_size: int | None = None, *,
                   window: Window | None = None, rows: tuple | None = None, size: tuple | None = None,
                   resample: str | None = None, dtype=np.float64) -> np.ndarray:
    """A raster, or part of it, read at reduced size as ``(bands, h, w)``: the one decimated read.

    The part: the whole raster, a ``window``, or the full-width rows ``rows = (r0, r1)``. The
    size: exactly ``size = (w, h)`` when given, else at most ``max_size`` pixels along each
    axis, each axis reduced on its own. GDAL's decimation (without overviews) takes the nearest
    pixels unless ``resample`` is one of ``"nearest"``, ``"average"``, ``"bilinear"``,
    ``"cubic"``, ``"mode"``. ``dtype=None`` keeps the stored data type.
    """
    if window is None:
        r0, r1 = rows if rows is not None else (0, info.height)
        window = Window(0, r0, info.width, r1 - r0)
    x0, y0, w, h = (int(v) for v in window)
    bw, bh = (int(v) for v in (size if size is not None else (min(max_size, w), min(max_size, h))))
    ds = info.dataset()
    if resample is None and bw < w and bh < h and not _has_overviews(ds, bands):
        data = _nearest_by_rows(ds, Window(x0, y0, w, h), bands, bw, bh)
    else:
        kw = {} if resample is None else {"resample_alg": _RESAMPLING[resample]}
        data = np.stack([ds.GetRasterBand(int(b)).ReadAsArray(x0, y0, w, h, buf_xsize=bw, buf_ysize=bh, **kw)
                         for b in bands])
    return data if dtype is None else data.astype(dtype)


ROWS_READ_BYTES = 32 * 2 ** 20  # at most this much of whole rows read at once by _nearest_by_rows


def nearest_indices(n_src: int, n_buf: int) -> np.ndarray:
    """The source pixels GDAL's nearest-neighbour decimation takes to reduce ``n_src`` pixels to ``n_buf``:
    the one under each output pixel's centre."""
    step = n_src / n_buf
    return np.minimum(np.floor((np.arange(n_buf) + 0.5) * step + 1e-10).astype(int), n_src - 1)


def subsample_nearest(arr: np.ndarray, size: tuple) -> np.ndarray:
    """``arr`` (``(..., h, w)``) reduced to ``size = (w, h)`` by the rule of GDAL's nearest decimation
    (:func:`nearest_indices`): the pixels a decimated read of the same raster at ``size`` returns when
    ``arr`` is the raster itself."""
    h, w = arr.shape[-2:]
    if (int(size[0]), int(size[1])) == (w, h):
        return arr
    return arr[..., nearest_indices(h, int(size[1]))[:, None], nearest_indices(w, int(size[0]))]


def _has_overviews(ds: gdal.Dataset, bands: Sequence[int]) -> bool:
    return any(ds.GetRasterBand(int(b)).GetOverviewCount() > 0 for b in bands)


def _nearest_by_rows(ds: gdal.Dataset, window: Window, bands: Sequence[int], bw: int, bh: int) -> np.ndarray:
    """GDAL's nearest decimation of ``window`` to ``(bw, bh)``, read as chunks of whole rows, one
    dataset-level read per chunk, with the kept rows and columns picked in numpy: the same values
    (tested), about twice as fast on compressed, tiled, pixel-interleaved files, where GDAL's
    decimated read goes band by band and pixel by pixel (4096² × 4 bands to 1024²: 0.51 s against
    0.25 s). Only used without overviews, which GDAL's own read takes when a file has them."""
    x0, y0, w, h = (int(v) for v in window)
    ys, xs = nearest_indices(h, bh), nearest_indices(w, bw)
    out = None
    first = 0
    while first < bh:
        rows = max(1, ROWS_READ_BYTES // max(1, w * len(bands) * 8))
        last = int(np.searchsorted(ys, ys[first] + rows, side="left"))  # output rows of this chunk: [first, last)
        last = max(last, first + 1)
        r0, r1 = int(ys[first]), int(ys[last - 1]) + 1
        chunk = ds.ReadAsArray(x0, y0 + r0, w, r1 - r0, band_list=[int(b) for b in bands])
        chunk = chunk.reshape(len(bands), r1 - r0, w)
        if out is None:
            out = np.empty((len(bands), bh, bw), dtype=chunk.dtype)
        out[:, first:last] = chunk[:, ys[first:last] - r0][:, :, xs]
        first = last
    return out


def has_valid_pixels(info: RasterInfo, bands: Sequence[int] | None = None, sample: int = 512) -> bool:
    """Cheap check on a decimated read (at most ``sample`` x ``sample`` pixels)."""
    bands = list(bands) if bands is not None else list(range(1, info.band_count + 1))
    arr = read_decimated(info, bands, sample, dtype=None)
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

    ZSTD is the faster choice, not the smaller one: on real float32 Sentinel-2 reflectance, level 1
    wrote 1.3-3x faster than DEFLATE level 1, whose files were 11-30 % smaller (see the README); the output's
    compression is still among the tiler's largest costs. Set ``CLOUDFREE_COMPRESSION=DEFLATE`` for
    smaller files, or for outputs that software without ZSTD support (some non-GDAL readers) must open.
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


def refuse_inputs(path: str, inputs: Sequence[str]) -> None:
    """Raise :class:`InputError` when ``path`` is one of ``inputs`` (the same path, or the same file)."""
    for p in inputs:
        if p and (_same_file(str(path), str(p)) or os.path.abspath(str(path)) == os.path.abspath(str(p))):
            raise InputError(f"The output {path} is one of the inputs; choose another file, inputs are never modified.")


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
        refuse_inputs(path, protect)
        self.target = AtomicFile(path, suffix=".tif")
        self.path = path
        self.cog = cog
        self.dtype = np.dtype(dtype)
        self.width = width if width is not None else like.width
        self.height = height if height is not None else like.height
        self.band_count = band_count
        self.tmp_path = self.target.tmp
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
        return self.target.commit(src)

    def abort(self) -> None:
        self.ds = None
        self.target.abort(self.tmp_path + ".cog.tif")

    def __enter__(self) -> "RasterWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if self.target.done:
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
