"""The two images of a registration, as the pipeline reads them.

:class:`BandSource` is one band of a raster with its validity (nodata, an optional mask of
clouds to ignore), read by windows, at full or reduced resolution, through the raster's one
open dataset (:meth:`RasterInfo.dataset`). :func:`sensed_in_reference_crs` brings a sensed
raster of another CRS into the reference CRS (a lazy VRT),, :func:`warp_sensed` samples the
sensed band on a grid of the reference frame, and :func:`detection_frame` and
:func:`detection_images` give the (decimated) overlap keypoints are detected on.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from osgeo import gdal

from ..errors import InputError
from ..grids import same_crs
from ..raster import RasterInfo, raster_info, read_decimated
from ..windows import Window
from .transforms import apply_homography

gdal.UseExceptions()


class BandSource:
    """One band of a raster plus its validity (nodata, optional mask), read by windows.

    ``mask``: ``None``, a boolean array of the raster's shape, or a raster (path or
    :class:`RasterInfo`, same size) whose non-zero pixels are ignored. Unsigned rasters without
    a nodata value take 0 as nodata (the Sentinel-2 / Landsat convention).
    """

    def __init__(self, info: RasterInfo, band: int, mask, label: str):
        if band < 1 or band > info.band_count:
            raise InputError(f"Layer '{info.name}' has {info.band_count} band(s); band {band} does not exist.")
        self.info = info
        self.band_no = band
        nd = info.nodata[band - 1] if band - 1 < len(info.nodata) else None
        if nd is None and np.issubdtype(np.dtype(info.dtype), np.unsignedinteger):
            nd = 0  # Sentinel-2 / Landsat convention: 0 is "no data" in unsigned digital numbers
        self.nodata = nd
        self.mask_array = None
        self.mask_info = None
        if mask is not None:
            self._open_mask(mask, label)

    def with_band(self, band: int) -> "BandSource":
        """The same raster and mask, another band (its own nodata)."""
        import copy

        other = copy.copy(self)
        other.band_no = band
        nd = self.info.nodata[band - 1] if band - 1 < len(self.info.nodata) else None
        if nd is None and np.issubdtype(np.dtype(self.info.dtype), np.unsignedinteger):
            nd = 0
        other.nodata = nd
        return other

    def _open_mask(self, mask, label: str) -> None:
        info = self.info
        if isinstance(mask, np.ndarray):
            if mask.shape != (info.height, info.width):
                raise InputError(f"The {label} mask has shape {mask.shape}; layer '{info.name}' is "
                                 f"{info.height}x{info.width} (rows x columns).")
            self.mask_array = mask.astype(bool)
            return
        minfo = mask if isinstance(mask, RasterInfo) else raster_info(str(mask))
        if (minfo.width, minfo.height) != (info.width, info.height):
            raise InputError(f"The {label} mask '{minfo.name}' is {minfo.width}x{minfo.height}; "
                             f"layer '{info.name}' is {info.width}x{info.height}.")
        self.mask_info = minfo

    def read(self, x0, y0, w, h, bw=None, bh=None) -> tuple:
        """``(values float32, valid bool)`` of a window, optionally decimated to ``bw x bh`` (average)."""
        bw, bh = bw or w, bh or h
        window, decimated = Window(x0, y0, w, h), (bw, bh) != (w, h)
        arr = read_decimated(self.info, [self.band_no], window=window, size=(bw, bh),
                             resample="average" if decimated else None, dtype=np.float32)[0]
        if decimated and self.nodata is not None:
            # averaging mixes nodata in: re-read validity with nearest neighbour
            raw = read_decimated(self.info, [self.band_no], window=window, size=(bw, bh), dtype=None)[0]
            valid = raw != self.nodata
        else:
            valid = np.isfinite(arr)
            if self.nodata is not None:
                valid &= arr != self.nodata
        if self.mask_array is not None:
            m = self.mask_array[y0:y0 + h, x0:x0 + w]
            if (bw, bh) != (w, h):
                import cv2
                m = cv2.resize(m.astype(np.uint8), (bw, bh), interpolation=cv2.INTER_AREA) > 0
            valid &= ~m
        elif self.mask_info is not None:
            m = read_decimated(self.mask_info, [1], window=window, size=(bw, bh), dtype=None)[0]
            valid &= ~(m > 0)
        return arr, valid


def sensed_in_reference_crs(sensed: RasterInfo, reference: RasterInfo, folder: str) -> RasterInfo:
    """``sensed`` itself, or, in another CRS, a lazy VRT of it in the reference CRS (its own resolution)."""
    if not (sensed.crs_wkt and reference.crs_wkt and not same_crs(sensed.crs_wkt, reference.crs_wkt)):
        return sensed
    vrt = os.path.join(folder, "sensed_reprojected.vrt")
    nd = sensed.nodata[0]
    gdal.Warp(vrt, sensed.path, format="VRT", dstSRS=reference.crs_wkt, resampleAlg="bilinear",
              srcNodata=nd, dstNodata=nd if nd is not None else 0)
    return raster_info(vrt, sensed.name)


def warp_sensed(src: BandSource, h_det_to_native: np.ndarray, shape, interp=None) -> tuple:
    """Sample the sensed band at native positions ``h(det grid)``: ``(values, valid)`` of ``shape``."""
    import cv2

    interp = cv2.INTER_LINEAR if interp is None else interp
    rows, cols = shape
    corners = apply_homography(h_det_to_native,
                               np.array([[0, 0], [cols - 1, 0], [0, rows - 1], [cols - 1, rows - 1]]))
    W, H = src.info.width, src.info.height
    x0 = max(0, int(math.floor(corners[:, 0].min())) - 2)
    y0 = max(0, int(math.floor(corners[:, 1].min())) - 2)
    x1 = min(W, int(math.ceil(corners[:, 0].max())) + 3)
    y1 = min(H, int(math.ceil(corners[:, 1].max())) + 3)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return np.zeros(shape, np.float32), np.zeros(shape, bool)
    # decimate the read when the sensed image is much finer than the grid it is sampled on
    lin = h_det_to_native[:2, :2]
    k = max(1, int(math.floor(min(np.linalg.norm(lin[:, 0]), np.linalg.norm(lin[:, 1])))))
    bw, bh = max(2, (x1 - x0) // k), max(2, (y1 - y0) // k)
    kx, ky = (x1 - x0) / bw, (y1 - y0) / bh
    arr, valid = src.read(x0, y0, x1 - x0, y1 - y0, bw, bh)
    # native position u -> buffer index (u - x0 + 0.5) / kx - 0.5
    to_buf = np.array([[1 / kx, 0, (0.5 - x0) / kx - 0.5], [0, 1 / ky, (0.5 - y0) / ky - 0.5], [0, 0, 1]])
    m = to_buf @ h_det_to_native
    fill = float(arr[valid].mean()) if valid.any() else 0.0
    arr = np.where(valid, arr, fill).astype(np.float32)
    if m[2, 0] == 0 and m[2, 1] == 0:
        warp, matrix = cv2.warpAffine, m[:2]
    else:
        warp, matrix = cv2.warpPerspective, m
    out = warp(arr, matrix, (cols, rows), flags=interp | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT,
               borderValue=fill)
    ok = warp(valid.astype(np.float32), matrix, (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
              borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out, ok > 0.999



@dataclass(frozen=True)
class DetectionFrame:
    """The part of the reference grid keypoints are detected on, reduced by ``factor``.

    Columns ``x0..x1`` and rows ``y0..y1`` of the reference covered by the sensed image;
    the detection image is ``width`` x ``height`` pixels of ``factor`` x ``factor`` reference
    pixels each; ``to_reference`` (3x3) maps its pixel positions to reference positions.
    """

    x0: int
    y0: int
    x1: int
    y1: int
    factor: int

    @property
    def width(self) -> int:
        return (self.x1 - self.x0) // self.factor

    @property
    def height(self) -> int:
        return (self.y1 - self.y0) // self.factor

    @property
    def to_reference(self) -> np.ndarray:
        f = self.factor
        return np.array([[f, 0, self.x0 + (f - 1) / 2], [0, f, self.y0 + (f - 1) / 2], [0, 0, 1.0]])


def detection_frame(reference: RasterInfo, sensed: RasterInfo, grid_to_sensed: np.ndarray,
                    max_pixels: int) -> DetectionFrame:
    """The overlap of ``sensed`` on the reference grid (``grid_to_sensed``: reference grid -> sensed
    pixels), decimated to at most about ``max_pixels``; :class:`InputError` when it is smaller than
    32 x 32 pixels."""
    W, H = reference.width, reference.height
    sc = apply_homography(np.linalg.inv(grid_to_sensed), np.array([[-0.5, -0.5], [sensed.width - 0.5, -0.5],
                                                        [-0.5, sensed.height - 0.5],
                                                        [sensed.width - 0.5, sensed.height - 0.5]]))
    x0 = max(0, int(math.floor(sc[:, 0].min() + 0.5)))
    y0 = max(0, int(math.floor(sc[:, 1].min() + 0.5)))
    x1 = min(W, int(math.ceil(sc[:, 0].max() + 0.5)))
    y1 = min(H, int(math.ceil(sc[:, 1].max() + 0.5)))
    if x1 - x0 < 32 or y1 - y0 < 32:
        raise InputError(f"The overlap of '{sensed.name}' and '{reference.name}' is too small "
                         f"({max(0, x1 - x0)}x{max(0, y1 - y0)} reference pixels) to register.")
    f = max(1, int(math.ceil(math.sqrt((x1 - x0) * (y1 - y0) / max_pixels))))
    return DetectionFrame(x0, y0, x1, y1, f)


def detection_images(sources: tuple, frame: DetectionFrame, grid_to_sensed: np.ndarray) -> tuple:
    """``((reference values, valid), (sensed values, valid))`` on the detection frame.

    The reference is read averaged over ``factor`` x ``factor`` pixels; the sensed image is
    resampled into the frame by the geotransforms.
    """
    return detection_image(sources[0], frame, None), detection_image(sources[1], frame, grid_to_sensed)


def detection_image(source: BandSource, frame: DetectionFrame, grid_to_sensed=None) -> tuple:
    """``(values, valid)`` of one band on the detection frame: the reference (``grid_to_sensed``
    None) averaged over ``factor`` x ``factor`` pixels, or the sensed image resampled into it."""
    f, dw, dh = frame.factor, frame.width, frame.height
    if grid_to_sensed is None:
        return source.read(frame.x0, frame.y0, dw * f, dh * f, dw, dh)
    return warp_sensed(source, grid_to_sensed @ frame.to_reference, (dh, dw))
