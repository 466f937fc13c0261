"""Image-to-image registration of a sensed raster onto a reference raster (CNN + SIFT features).

Method: Ye et al., "Remote Sensing Image Registration Using Convolutional Neural Network
Features", IEEE GRSL 15(2), 2018, with a sub-pixel phase-correlation stage added because real
Sentinel-2 misregistrations are fractions of a pixel.

1. **Keypoints.** One band of each image, contrast-stretched (2-98 percentile of the valid,
   unmasked pixels) to uint8; OpenCV SIFT detects keypoints on the pixels that hold data and
   are not masked (nodata and optional cloud masks are excluded, eroded a little so that the
   edges of nodata or clouds give no keypoints); the strongest responses are kept per cell of
   a grid so that they spread over the overlap. The sensed image is first resampled into the
   reference frame given by both geotransforms (same pixel size, same orientation), over the
   overlap only; very large overlaps are detected on a decimated image (``max_detect_pixels``).
2. **Descriptors.** RootSIFT (L2-normalised) and, for ``method="sift_cnn"``, the 128-d CNN
   descriptor of :mod:`descriptors` of the 64x64 patch around each keypoint (rotated and
   scaled to the keypoint). Distance = ``(1 - cnn_weight) * d_sift + cnn_weight * d_cnn``
   (Euclidean distances between unit vectors; defaults 0.7 / 0.3).
3. **Matching.** Nearest neighbour with the ratio test (``ratio=0.9`` by default: the fused
   distance is less peaked than pure SIFT, so the paper's loose ratio keeps enough candidates;
   mutual nearest neighbours and RANSAC remove the extra outliers), robust fit with OpenCV
   RANSAC (similarity or affine), then the paper's *rematching*: every pair of keypoints is
   scored again with a joint distance that multiplies the descriptor distance by
   ``(1 + e_pos / t)(1 + e_scale)(1 + e_orient)`` (position error under the initial transform,
   log scale ratio and orientation difference relative to those of the initial inliers), the
   ratio test is repeated on it, and outliers are removed by iterating a least-squares fit
   with a residual threshold of ``max(3 sigma_robust, floor)``.
4. **Transforms.** ``translation``, ``similarity``, ``affine``, ``projective`` and ``tps``
   (thin-plate spline with an affine part, smoothed, for local distortions). Then **sub-pixel
   refinement**: around each inlier (thinned to one per half window), a ``refine_window``
   window of the reference is phase-correlated (``skimage.registration.phase_cross_correlation``,
   upsampled x100, Hann-apodised) with the sensed image resampled into the reference frame by
   the current transform; the measured residual shift corrects the correspondence, the model is
   refitted, twice. Windows with nodata or masked pixels are skipped, so clouds do not bias it.
5. **Accuracy.** ``rms_all``: RMS residual of all final inliers; ``rms_loo``: leave-one-out
   RMS (each point's residual under the fit without it); ``n_red``: number of correct
   correspondences (final inliers). ``shift_x``/``shift_y`` (reference pixels, at the reference
   centre, positive = sensed content lies right/below where its georeferencing puts it),
   ``rotation`` (degrees, positive clockwise on screen, i.e. from +x towards +y with rows
   going down) and ``scale`` (sensed/reference size) describe the misregistration relative to
   the georeferencing of both rasters.
6. **Outputs.** The sensed image, all bands, resampled onto the reference grid block by
   block with ``cv2.remap`` (bounded memory), nodata outside, written atomically; optional tie
   points (GeoPackage, points in the reference CRS) and checkerboard raster.

Coordinates: pixel positions are ``(x, y) = (column, row)`` with integer values at pixel
centres (array-index convention), in the raster they refer to. The model maps reference pixel
positions to sensed pixel positions (``RegistrationResult.to_sensed``).

Pure Python (numpy, GDAL, OpenCV, scikit-image; torch only for ``sift_cnn``): no qgis imports.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from osgeo import gdal, ogr, osr

from .errors import InputError
from .grids import overlap_fraction, same_crs
from .raster import RasterInfo, RasterWriter, open_raster, raster_info
from .runtime import check_cancelled, log, report

gdal.UseExceptions()
ogr.UseExceptions()

TRANSFORMS = ("translation", "similarity", "affine", "projective", "tps")
METHODS = ("sift", "sift_cnn")
MIN_MATCHES = 6
REFINE_MAX_PASSES = 5
REFINE_TOLERANCE = 0.01  # pixels: stop refining when the median window shift is below this
SCALE_LIMITS = (0.2, 5.0)


# =========================================================================== result


@dataclass
class RegistrationResult:
    """Figures and correspondences of one registration.

    ``ref_points`` / ``sensed_points`` are ``(N, 2)`` pixel positions (x, y; integer = pixel
    centre) in the reference and in the sensed raster; ``inliers`` flags the correct ones and
    ``residuals`` are their distances (reference pixels) to the fitted model.
    """

    transform: str
    method: str
    shift_x: float
    shift_y: float
    rotation: float
    scale: float
    rms_all: float
    rms_loo: float
    n_red: int
    n_matches: int
    ref_points: np.ndarray
    sensed_points: np.ndarray
    inliers: np.ndarray
    residuals: np.ndarray
    matrix: Optional[np.ndarray]  # 3x3 reference pixel -> sensed pixel (None for tps)
    n_keypoints: tuple = (0, 0)
    refined: bool = False
    out_path: Optional[str] = None
    tiepoints_path: Optional[str] = None
    checkerboard_path: Optional[str] = None
    seconds: float = 0.0
    # counts along the pipeline: ratio-test matches, RANSAC inliers, rematched pairs, their inliers,
    # phase-correlation windows that gave a shift
    stages: dict = field(default_factory=dict)
    _model: object = field(default=None, repr=False)
    _geo: Optional[np.ndarray] = field(default=None, repr=False)

    def to_sensed(self, ref_xy: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` reference pixel positions to sensed pixel positions."""
        return _apply_h(self._geo, self._model.apply(np.asarray(ref_xy, dtype=np.float64).reshape(-1, 2)))

    def summary(self) -> str:
        return (f"{self.method}/{self.transform}: shift ({self.shift_x:+.3f}, {self.shift_y:+.3f}) px, "
                f"rotation {self.rotation:+.4f} deg, scale {self.scale:.5f}, RMS_all {self.rms_all:.3f} px, "
                f"RMS_LOO {self.rms_loo:.3f} px, N_red {self.n_red} of {self.n_matches} matches "
                f"({', '.join(f'{k} {v}' for k, v in self.stages.items())})")


# =========================================================================== geometry


def _gt_matrix(gt) -> np.ndarray:
    """3x3: pixel position (centre convention) -> map coordinates."""
    return np.array([[gt[1], gt[2], gt[0] + 0.5 * gt[1] + 0.5 * gt[2]],
                     [gt[4], gt[5], gt[3] + 0.5 * gt[4] + 0.5 * gt[5]],
                     [0.0, 0.0, 1.0]])


def _apply_h(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    q = pts @ h[:2, :2].T + h[:2, 2]
    if h[2, 0] != 0 or h[2, 1] != 0 or h[2, 2] != 1:
        w = pts @ h[2, :2] + h[2, 2]
        q = (pts @ h[:2, :2].T + h[:2, 2]) / w[:, None]
    return q


class _Model:
    """A 2-D point mapping of one of :data:`TRANSFORMS`, fitted by (weighted) least squares."""

    def __init__(self, kind: str, tps_smoothing: float = 1e-3):
        self.kind = kind
        self.h = np.eye(3)
        self.tps_smoothing = tps_smoothing
        self._tps = None

    # ------------------------------------------------------------------ fitting
    @staticmethod
    def min_points(kind: str) -> int:
        return {"translation": 1, "similarity": 2, "affine": 3, "projective": 4, "tps": 3}[kind]

    def fit(self, src: np.ndarray, dst: np.ndarray) -> "_Model":
        src = np.asarray(src, np.float64).reshape(-1, 2)
        dst = np.asarray(dst, np.float64).reshape(-1, 2)
        if len(src) < self.min_points(self.kind):
            raise InputError(f"Too few points ({len(src)}) to fit a {self.kind} transform.")
        c = src.mean(axis=0)
        s = src - c
        h = np.eye(3)
        if self.kind == "translation":
            h[:2, 2] = (dst - src).mean(axis=0)
        elif self.kind == "similarity":
            n = len(s)
            a = np.zeros((2 * n, 4))
            a[0::2] = np.c_[s[:, 0], -s[:, 1], np.ones(n), np.zeros(n)]
            a[1::2] = np.c_[s[:, 1], s[:, 0], np.zeros(n), np.ones(n)]
            p = np.linalg.lstsq(a, dst.reshape(-1), rcond=None)[0]
            lin = np.array([[p[0], -p[1]], [p[1], p[0]]])
            h[:2, :2] = lin
            h[:2, 2] = p[2:] - lin @ c
        elif self.kind in ("affine", "tps"):
            a = np.c_[s, np.ones(len(s))]
            p = np.linalg.lstsq(a, dst, rcond=None)[0]  # (3, 2)
            lin = p[:2].T
            h[:2, :2] = lin
            h[:2, 2] = p[2] - lin @ c
        elif self.kind == "projective":
            h = self._fit_homography(src, dst)
        else:
            raise InputError(f"Unknown transform '{self.kind}'; use one of {', '.join(TRANSFORMS)}.")
        self.h = h
        if self.kind == "tps":
            self._fit_tps(src, dst)
        return self

    @staticmethod
    def _fit_homography(src, dst) -> np.ndarray:
        def norm(p):
            c = p.mean(axis=0)
            d = np.sqrt(((p - c) ** 2).sum(axis=1)).mean() or 1.0
            k = math.sqrt(2) / d
            return np.array([[k, 0, -k * c[0]], [0, k, -k * c[1]], [0, 0, 1]])
        ts, td = norm(src), norm(dst)
        a, b = _apply_h(ts, src), _apply_h(td, dst)
        rows = []
        for (x, y), (u, v) in zip(a, b):
            rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
            rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
        _, _, vt = np.linalg.svd(np.asarray(rows))
        hn = vt[-1].reshape(3, 3)
        h = np.linalg.inv(td) @ hn @ ts
        return h / h[2, 2]

    def _fit_tps(self, src, dst):
        # thin-plate spline on the residuals of the affine part, coordinates normalised to ~[0, 1]
        c = src.mean(axis=0)
        k = max(np.ptp(src, axis=0).max(), 1.0)
        p = (src - c) / k
        resid = dst - _apply_h(self.h, src)
        n = len(p)
        kmat = _tps_kernel(p, p)
        lam = self.tps_smoothing * n
        a = np.zeros((n + 3, n + 3))
        a[:n, :n] = kmat + lam * np.eye(n)
        a[:n, n:] = np.c_[np.ones(n), p]
        a[n:, :n] = a[:n, n:].T
        rhs = np.zeros((n + 3, 2))
        rhs[:n] = resid
        coef = np.linalg.lstsq(a, rhs, rcond=None)[0]
        self._tps = (c, k, p, coef)

    # ------------------------------------------------------------------ applying
    def apply(self, pts: np.ndarray) -> np.ndarray:
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        out = _apply_h(self.h, pts)
        if self._tps is not None:
            c, k, p, coef = self._tps
            q = (pts - c) / k
            n = len(p)
            for i in range(0, len(q), 4096):
                qq = q[i:i + 4096]
                out[i:i + 4096] += _tps_kernel(qq, p) @ coef[:n] + np.c_[np.ones(len(qq)), qq] @ coef[n:]
        return out

    def jacobian(self, pt) -> np.ndarray:
        e = 0.5
        x, y = float(pt[0]), float(pt[1])
        q = self.apply(np.array([[x - e, y], [x + e, y], [x, y - e], [x, y + e]]))
        return np.c_[(q[1] - q[0]) / (2 * e), (q[3] - q[2]) / (2 * e)]


def _tps_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    r2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = 0.5 * r2 * np.log(r2)
    k[r2 <= 0] = 0.0
    return k


def _fit_robust(src, dst, kind: str, floor: float, tps_smoothing: float = 1e-3, max_iter: int = 20):
    """Least-squares fit with iterative outlier removal: drop residuals > max(3 sigma_robust, floor)."""
    n = len(src)
    inl = np.ones(n, bool)
    model = _Model(kind, tps_smoothing)
    for _ in range(max_iter):
        if inl.sum() < max(MIN_MATCHES, _Model.min_points(kind)):
            break
        model.fit(src[inl], dst[inl])
        res = np.linalg.norm(model.apply(src) - dst, axis=1)
        sigma = 1.4826 * np.median(res[inl])
        thr = max(3.0 * sigma, floor)
        new = res <= thr
        if np.array_equal(new, inl):
            break
        inl = new
    res = np.linalg.norm(model.apply(src) - dst, axis=1)
    return model, inl, res


def _loo_rms(src, dst, kind: str, tps_smoothing: float) -> float:
    n = len(src)
    if n <= _Model.min_points(kind) + 1:
        return float("nan")
    errs = np.empty(n)
    idx = np.arange(n)
    for i in range(n):
        keep = idx != i
        m = _Model(kind, tps_smoothing).fit(src[keep], dst[keep])
        errs[i] = np.linalg.norm(m.apply(src[i:i + 1])[0] - dst[i])
    return float(np.sqrt(np.mean(errs ** 2)))


# =========================================================================== images


class _Source:
    """One band of a raster plus its validity (nodata, optional mask), read by windows."""

    def __init__(self, info: RasterInfo, band: int, mask, label: str):
        if band < 1 or band > info.band_count:
            raise InputError(f"Layer '{info.name}' has {info.band_count} band(s); band {band} does not exist.")
        self.info = info
        self.band_no = band
        self.ds = open_raster(info.path, info.name)
        self.band = self.ds.GetRasterBand(band)
        nd = info.nodata[band - 1] if band - 1 < len(info.nodata) else None
        if nd is None and np.issubdtype(np.dtype(info.dtype), np.unsignedinteger):
            nd = 0  # Sentinel-2 / Landsat convention: 0 is "no data" in unsigned digital numbers
        self.nodata = nd
        self.mask_array = None
        self.mask_band = None
        if mask is not None:
            if isinstance(mask, np.ndarray):
                if mask.shape != (info.height, info.width):
                    raise InputError(f"The {label} mask has shape {mask.shape}; layer '{info.name}' is "
                                     f"{info.height}x{info.width} (rows x columns).")
                self.mask_array = mask.astype(bool)
            else:
                minfo = mask if isinstance(mask, RasterInfo) else raster_info(str(mask))
                if (minfo.width, minfo.height) != (info.width, info.height):
                    raise InputError(f"The {label} mask '{minfo.name}' is {minfo.width}x{minfo.height}; "
                                     f"layer '{info.name}' is {info.width}x{info.height}.")
                self._mask_ds = open_raster(minfo.path, minfo.name)
                self.mask_band = self._mask_ds.GetRasterBand(1)

    def read(self, x0, y0, w, h, bw=None, bh=None):
        """(values float32, valid bool) of a window, optionally decimated to bw x bh (average)."""
        bw, bh = bw or w, bh or h
        kw = {} if (bw, bh) == (w, h) else {"buf_xsize": bw, "buf_ysize": bh, "resample_alg": gdal.GRIORA_Average}
        arr = self.band.ReadAsArray(int(x0), int(y0), int(w), int(h), **kw).astype(np.float32)
        if (bw, bh) != (w, h) and self.nodata is not None:
            # averaging mixes nodata in: re-read validity with nearest neighbour
            raw = self.band.ReadAsArray(int(x0), int(y0), int(w), int(h), buf_xsize=bw, buf_ysize=bh)
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
        elif self.mask_band is not None:
            m = self.mask_band.ReadAsArray(int(x0), int(y0), int(w), int(h), buf_xsize=bw, buf_ysize=bh)
            valid &= ~(m > 0)
        return arr, valid


def _stretch(img: np.ndarray, valid: np.ndarray) -> np.ndarray:
    if valid.sum() < 16:
        return np.zeros(img.shape, np.uint8)
    lo, hi = np.percentile(img[valid], [2, 98])
    out = np.clip((img - lo) * (255.0 / max(hi - lo, 1e-6)), 0, 255)
    out[~valid] = 0
    return out.astype(np.uint8)


def _warp_sensed(src: _Source, h_det_to_native: np.ndarray, shape, interp=None):
    """Sample the sensed band at native positions ``h(det grid)``: (values, valid) of ``shape``."""
    import cv2

    interp = cv2.INTER_LINEAR if interp is None else interp
    rows, cols = shape
    corners = _apply_h(h_det_to_native, np.array([[0, 0], [cols - 1, 0], [0, rows - 1], [cols - 1, rows - 1]]))
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
        out = cv2.warpAffine(arr, m[:2], (cols, rows), flags=interp | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
        ok = cv2.warpAffine(valid.astype(np.float32), m[:2], (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    else:
        out = cv2.warpPerspective(arr, m, (cols, rows), flags=interp | cv2.WARP_INVERSE_MAP,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=fill)
        ok = cv2.warpPerspective(valid.astype(np.float32), m, (cols, rows), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out, ok > 0.999


# =========================================================================== keypoints


def detect(image_u8: np.ndarray, mask: Optional[np.ndarray] = None, max_keypoints: int = 4000,
           grid: int = 8, erode: int = 8, contrast_threshold: float = 0.02):
    """SIFT keypoints and RootSIFT descriptors of a uint8 image, spread over a ``grid x grid`` grid.

    ``mask`` (True = usable) excludes nodata and clouds; it is eroded by ``erode`` pixels so
    that the edges of excluded areas produce no keypoints. Returns ``(keypoints, descriptors)``
    with descriptors L2-normalised ``(N, 128)`` float32.
    """
    import cv2

    m = None
    if mask is not None:
        m = mask.astype(np.uint8) * 255
        if erode > 0:
            m = cv2.erode(m, np.ones((2 * erode + 1, 2 * erode + 1), np.uint8))
        if not m.any():
            return [], np.zeros((0, 128), np.float32)
    sift = cv2.SIFT_create(contrastThreshold=contrast_threshold)
    kps, desc = sift.detectAndCompute(image_u8, m)  # one scale-space pyramid for both
    if desc is None or not kps:
        return [], np.zeros((0, 128), np.float32)
    h, w = image_u8.shape
    pts = np.array([k.pt for k in kps])
    resp = np.array([k.response for k in kps])
    cell = np.clip((pts[:, 1] * grid / h).astype(int), 0, grid - 1) * grid + np.clip(
        (pts[:, 0] * grid / w).astype(int), 0, grid - 1)
    per_cell = max(1, max_keypoints // (grid * grid))
    order = np.lexsort((-resp, cell))  # by cell, strongest first
    sorted_cell = cell[order]
    first = np.searchsorted(sorted_cell, sorted_cell, side="left")
    rank = np.arange(len(order)) - first
    keep = np.sort(order[rank < per_cell])
    kps = [kps[i] for i in keep]
    desc = desc[keep]
    desc = desc.astype(np.float32)
    desc /= np.maximum(desc.sum(axis=1, keepdims=True), 1e-12)  # RootSIFT: L1, then sqrt -> unit L2
    desc = np.sqrt(desc)
    desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
    return list(kps), desc


def _ratio_mutual_sparse(ri: np.ndarray, rj: np.ndarray, val: np.ndarray, ratio: float):
    """Ratio test + mutual nearest neighbour on a sparse set of candidate pairs (row, col, distance).

    A row with a single candidate passes the ratio test (its second neighbour is "infinitely" far).
    """
    if len(ri) == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    order = np.lexsort((val, ri))
    r_s, c_s, v_s = ri[order], rj[order], val[order]
    first = np.r_[True, r_s[1:] != r_s[:-1]]
    idx_first = np.flatnonzero(first)
    has_second = np.r_[idx_first[1:], len(r_s)] - idx_first > 1
    second = np.full(len(idx_first), np.inf)
    second[has_second] = v_s[idx_first[has_second] + 1]
    best_r, best_c, best_v = r_s[idx_first], c_s[idx_first], v_s[idx_first]
    ok = best_v < ratio * second
    # column-wise best row
    order_c = np.lexsort((val, rj))
    c2, r2 = rj[order_c], ri[order_c]
    firstc = np.r_[True, c2[1:] != c2[:-1]]
    col_best = dict(zip(c2[firstc].tolist(), r2[firstc].tolist()))
    mutual = np.array([col_best.get(c, -1) == r for r, c in zip(best_r.tolist(), best_c.tolist())], bool)
    ok &= mutual
    return best_r[ok], best_c[ok], best_v[ok]


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows of unit vectors."""
    return np.sqrt(np.maximum(2.0 - 2.0 * (a @ b.T), 0.0))


def _ratio_mutual(d: np.ndarray, ratio: float):
    """Pairs (i, j) that pass the nearest-neighbour ratio test and are mutual nearest neighbours."""
    if d.shape[0] == 0 or d.shape[1] < 2:
        return np.zeros(0, int), np.zeros(0, int)
    j = np.argmin(d, axis=1)
    rows = np.arange(d.shape[0])
    d1 = d[rows, j]
    dd = d.copy()
    dd[rows, j] = np.inf
    d2 = dd.min(axis=1)
    ok = np.isfinite(d1) & (d1 < ratio * d2)
    back = np.argmin(d, axis=0)
    ok &= back[j] == rows
    return rows[ok], j[ok]


# =========================================================================== refinement


def _hann(n: int) -> np.ndarray:
    w = np.hanning(n)
    return np.outer(w, w).astype(np.float32)


def _refine(ref: _Source, sen: _Source, to_native: Callable, pts: np.ndarray, win: int,
            upsample: int = 100, max_shift: float = 3.0, min_valid: float = 0.95, cancelled=None):
    """Phase-correlate reference windows with the sensed image warped by ``to_native``.

    Returns ``(ok mask, shifts (N, 2))``: the reference window at p matches the sensed image at
    ``to_native(p - shift)``.
    """
    import cv2
    from skimage.registration import phase_cross_correlation

    half = win // 2
    hw = _hann(win)
    g = np.arange(win, dtype=np.float64)
    gx, gy = np.meshgrid(g, g)
    W, H = ref.info.width, ref.info.height
    ok = np.zeros(len(pts), bool)
    shifts = np.zeros((len(pts), 2))
    for i, p in enumerate(pts):
        if i % 20 == 0:
            check_cancelled(cancelled)
        x0, y0 = int(round(p[0])) - half, int(round(p[1])) - half
        if x0 < 0 or y0 < 0 or x0 + win > W or y0 + win > H:
            continue
        a, va = ref.read(x0, y0, win, win)
        if va.mean() < min_valid:
            continue
        grid = np.c_[gx.ravel() + x0, gy.ravel() + y0]
        nat = to_native(grid)
        u = nat[:, 0].reshape(win, win)
        v = nat[:, 1].reshape(win, win)
        sx0 = int(math.floor(u.min())) - 2
        sy0 = int(math.floor(v.min())) - 2
        sx1 = int(math.ceil(u.max())) + 3
        sy1 = int(math.ceil(v.max())) + 3
        if sx0 < 0 or sy0 < 0 or sx1 > sen.info.width or sy1 > sen.info.height:
            continue
        if (sx1 - sx0) * (sy1 - sy0) > 64 * win * win:
            continue
        s_arr, s_ok = sen.read(sx0, sy0, sx1 - sx0, sy1 - sy0)
        b = cv2.remap(s_arr, (u - sx0).astype(np.float32), (v - sy0).astype(np.float32), cv2.INTER_CUBIC,
                      borderMode=cv2.BORDER_REPLICATE)
        vb = cv2.remap(s_ok.astype(np.float32), (u - sx0).astype(np.float32), (v - sy0).astype(np.float32),
                       cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0) > 0.999
        if vb.mean() < min_valid:
            continue
        both = va & vb
        a = np.where(both, a, a[both].mean()) - a[both].mean()
        b = np.where(both, b, b[both].mean()) - b[both].mean()
        if a.std() < 1e-6 or b.std() < 1e-6:
            continue
        try:
            s, _err, _ph = phase_cross_correlation(a * hw, b * hw, upsample_factor=upsample)
        except Exception:  # pragma: no cover - degenerate windows
            continue
        sy, sx = float(s[0]), float(s[1])
        if abs(sx) > max_shift or abs(sy) > max_shift:
            continue
        ok[i] = True
        shifts[i] = (sx, sy)
    return ok, shifts


def _thin(pts: np.ndarray, score: np.ndarray, spacing: float, limit: int) -> np.ndarray:
    """Indices of points, best score first, at least ``spacing`` apart (at most ``limit``)."""
    order = np.argsort(score)
    chosen = []
    for i in order:
        if chosen:
            d = np.abs(pts[chosen] - pts[i]).max(axis=1)
            if d.min() < spacing:
                continue
        chosen.append(i)
        if len(chosen) >= limit:
            break
    return np.array(chosen, int)


# =========================================================================== main


def register(reference: RasterInfo, sensed: RasterInfo, out_path: Optional[str], *, reference_band: int = 1,
             sensed_band: int = 1, transform: str = "affine", method: str = "sift", masks=(None, None),
             ratio: float = 0.9, cnn_weight: float = 0.3, tiepoints_path: Optional[str] = None,
             checkerboard_path: Optional[str] = None, progress=None, cancelled=None,
             cnn_weights_path: Optional[str] = None, refine: bool = True, refine_window: int = 64,
             max_keypoints: int = 4000, max_detect_pixels: int = 4_000_000, tps_smoothing: float = 1e-3,
             resampling: str = "bilinear", checker_size: int = 64, block: int = 512) -> RegistrationResult:
    """Register ``sensed`` onto ``reference`` and write it on the reference grid.

    ``masks`` = (reference mask, sensed mask): each ``None``, a boolean array of the raster's
    shape or a raster (path or RasterInfo, same size) where True / non-zero marks pixels to
    ignore (clouds, shadows...). ``out_path`` may be None to only estimate the transform.
    Raises :class:`InputError` (nothing written) for no overlap, too few matches or a
    degenerate fit, and :class:`ModelFileError` for ``sift_cnn`` without a descriptor model.
    """
    import cv2

    t_start = time.time()
    if transform not in TRANSFORMS:
        raise InputError(f"Unknown transform '{transform}'; use one of {', '.join(TRANSFORMS)}.")
    if method not in METHODS:
        raise InputError(f"Unknown method '{method}'; use one of {', '.join(METHODS)}.")
    if not 0 < ratio <= 1:
        raise InputError(f"The ratio test threshold must be in (0, 1], not {ratio}.")
    if not 0 <= cnn_weight <= 1:
        raise InputError(f"The CNN weight must be between 0 and 1, not {cnn_weight}.")
    if resampling not in ("nearest", "bilinear", "cubic"):
        raise InputError(f"Unknown resampling '{resampling}'; use nearest, bilinear or cubic.")
    for p in (out_path, tiepoints_path, checkerboard_path):
        if p and any(os.path.abspath(str(p)) == os.path.abspath(x) for x in (reference.path, sensed.path)):
            raise InputError(f"The output {p} is one of the inputs; choose another file, inputs are never modified.")
    net = None
    if method == "sift_cnn":
        from . import descriptors

        net, _meta = descriptors.load_descriptor(cnn_weights_path)  # ModelFileError when missing
    report(progress, 0.0, "Checking the overlap")
    if overlap_fraction(sensed, reference) <= 0:
        raise InputError(f"Layer '{sensed.name}' does not overlap '{reference.name}'; nothing to register.")

    tmpdir = tempfile.TemporaryDirectory(prefix="cloudfree_reg_")
    try:
        if sensed.crs_wkt and reference.crs_wkt and not same_crs(sensed.crs_wkt, reference.crs_wkt):
            # bring the sensed image into the reference CRS first (lazy VRT, its own resolution)
            vrt = os.path.join(tmpdir.name, "sensed_reprojected.vrt")
            nd = sensed.nodata[0]
            gdal.Warp(vrt, sensed.path, format="VRT", dstSRS=reference.crs_wkt, resampleAlg="bilinear",
                      srcNodata=nd, dstNodata=nd if nd is not None else 0)
            sensed_work = raster_info(vrt, sensed.name)
        else:
            sensed_work = sensed
        geo = np.linalg.inv(_gt_matrix(sensed_work.geotransform)) @ _gt_matrix(reference.geotransform)
        geo_inv = np.linalg.inv(geo)
        ref_src = _Source(reference, reference_band, masks[0] if masks else None, "reference")
        sen_src = _Source(sensed_work, sensed_band, masks[1] if masks else None, "sensed")

        # ---------------------------------------------------------------- detection frame
        W, H = reference.width, reference.height
        sc = _apply_h(geo_inv, np.array([[-0.5, -0.5], [sensed_work.width - 0.5, -0.5],
                                         [-0.5, sensed_work.height - 0.5],
                                         [sensed_work.width - 0.5, sensed_work.height - 0.5]]))
        x0 = max(0, int(math.floor(sc[:, 0].min() + 0.5)))
        y0 = max(0, int(math.floor(sc[:, 1].min() + 0.5)))
        x1 = min(W, int(math.ceil(sc[:, 0].max() + 0.5)))
        y1 = min(H, int(math.ceil(sc[:, 1].max() + 0.5)))
        if x1 - x0 < 32 or y1 - y0 < 32:
            raise InputError(f"The overlap of '{sensed.name}' and '{reference.name}' is too small "
                             f"({max(0, x1 - x0)}x{max(0, y1 - y0)} reference pixels) to register.")
        f = max(1, int(math.ceil(math.sqrt((x1 - x0) * (y1 - y0) / max_detect_pixels))))
        dw, dh = (x1 - x0) // f, (y1 - y0) // f
        # detection index -> reference position
        det_to_ref = np.array([[f, 0, x0 + (f - 1) / 2], [0, f, y0 + (f - 1) / 2], [0, 0, 1.0]])
        report(progress, 0.05, "Reading the images")
        a_img, a_ok = ref_src.read(x0, y0, dw * f, dh * f, dw, dh)
        b_img, b_ok = _warp_sensed(sen_src, geo @ det_to_ref, (dh, dw))
        if a_ok.sum() < 1024 or b_ok.sum() < 1024 or (a_ok & b_ok).sum() < 1024:
            raise InputError(f"'{sensed.name}' and '{reference.name}' share too few valid, unmasked pixels "
                             "to register.")
        check_cancelled(cancelled)
        a_u8, b_u8 = _stretch(a_img, a_ok), _stretch(b_img, b_ok)
        report(progress, 0.15, "Detecting SIFT keypoints")
        kpa, da = detect(a_u8, a_ok, max_keypoints)
        kpb, db = detect(b_u8, b_ok, max_keypoints)
        n_kp = (len(kpa), len(kpb))
        if min(n_kp) < MIN_MATCHES:
            raise InputError(f"Too few keypoints ({n_kp[0]} in '{reference.name}', {n_kp[1]} in "
                             f"'{sensed.name}') over the overlap; check the bands, masks and overlap.")
        check_cancelled(cancelled)
        pa = _apply_h(det_to_ref, np.array([k.pt for k in kpa]))
        pb = _apply_h(det_to_ref, np.array([k.pt for k in kpb]))  # sensed keypoints, reference frame
        sa, sb = np.array([k.size for k in kpa]), np.array([k.size for k in kpb])
        oa, ob = np.array([k.angle for k in kpa]), np.array([k.angle for k in kpb])

        # ---------------------------------------------------------------- descriptor distance
        report(progress, 0.3, "Matching descriptors")
        dist = _pairwise(da, db)
        if net is not None:
            from . import descriptors

            ca = descriptors.cnn_descriptors(net, a_u8.astype(np.float32) / 255.0,
                                             np.array([k.pt for k in kpa]), sa, oa)
            cb = descriptors.cnn_descriptors(net, b_u8.astype(np.float32) / 255.0,
                                             np.array([k.pt for k in kpb]), sb, ob)
            dist = (1.0 - cnn_weight) * dist + cnn_weight * _pairwise(ca, cb)
        ia, ib = _ratio_mutual(dist, ratio)
        if len(ia) < MIN_MATCHES:
            raise InputError(f"Only {len(ia)} keypoint matches passed the ratio test (at least {MIN_MATCHES} "
                             "are needed); the images may not show the same place.")
        check_cancelled(cancelled)

        # ---------------------------------------------------------------- initial robust fit
        thr0 = 3.0 * f
        src0, dst0 = pa[ia].astype(np.float32), pb[ib].astype(np.float32)
        if transform in ("translation", "similarity"):
            m0, inl0 = cv2.estimateAffinePartial2D(src0, dst0, method=cv2.RANSAC, ransacReprojThreshold=thr0,
                                                   maxIters=20000, confidence=0.999)
        else:
            m0, inl0 = cv2.estimateAffine2D(src0, dst0, method=cv2.RANSAC, ransacReprojThreshold=thr0,
                                            maxIters=20000, confidence=0.999)
        if m0 is None or inl0 is None or int(inl0.sum()) < MIN_MATCHES:
            raise InputError(f"No consistent transform found: {0 if inl0 is None else int(inl0.sum())} "
                             f"RANSAC inliers among {len(ia)} matches (at least {MIN_MATCHES} needed).")
        inl0 = inl0.ravel().astype(bool)
        h0 = np.vstack([m0, [0, 0, 1]])
        _check_linear(h0[:2, :2], "initial")
        res0 = np.linalg.norm(_apply_h(h0, pa[ia[inl0]]) - pb[ib[inl0]], axis=1)

        # ---------------------------------------------------------------- rematching (Ye et al.)
        report(progress, 0.4, "Rematching with position, scale and orientation")
        k_scale = float(np.median(sb[ib[inl0]] / sa[ia[inl0]]))
        dtheta = np.radians(ob[ib[inl0]] - oa[ia[inl0]])
        d_orient = math.degrees(math.atan2(np.median(np.sin(dtheta)), np.median(np.cos(dtheta))))
        t_pos = max(3.0 * float(np.sqrt(np.mean(res0 ** 2))), 2.0 * f)
        proj = _apply_h(h0, pa)
        from scipy.spatial import cKDTree

        pairs = cKDTree(pb).query_ball_point(proj, r=t_pos)
        ri = np.repeat(np.arange(len(pa)), [len(p) for p in pairs])
        rj = np.fromiter((j for p in pairs for j in p), dtype=np.int64, count=len(ri))
        e_pos = np.linalg.norm(proj[ri] - pb[rj], axis=1)
        e_scale = np.abs(np.log(sb[rj] / (sa[ri] * k_scale)))
        e_or = np.abs(((ob[rj] - oa[ri] - d_orient) + 180.0) % 360.0 - 180.0) / 180.0
        jval = dist[ri, rj] * (1.0 + e_pos / t_pos) * (1.0 + e_scale) * (1.0 + e_or)
        ja, jb, jscore = _ratio_mutual_sparse(ri, rj, jval, ratio)
        if len(ja) < MIN_MATCHES:  # fall back on the initial inliers
            ja, jb = ia[inl0], ib[inl0]
            jscore = dist[ja, jb]
        fit_kind = "affine" if transform == "tps" else transform
        model, inl, _res = _fit_robust(pa[ja], pb[jb], fit_kind, floor=max(1.0, 0.5 * f), tps_smoothing=tps_smoothing)
        if inl.sum() < MIN_MATCHES:
            raise InputError(f"Only {int(inl.sum())} correct correspondences after outlier removal "
                             f"(at least {MIN_MATCHES} needed).")
        _check_model(model, reference)
        ref_pts, sen_pts = pa[ja], pb[jb]  # sen in reference frame
        stages = {"ratio_matches": int(len(ia)), "ransac_inliers": int(inl0.sum()), "rematched": int(len(ja)),
                  "rematch_inliers": int(inl.sum()), "refined_windows": 0}
        score = jscore
        check_cancelled(cancelled)

        # ---------------------------------------------------------------- sub-pixel refinement
        refined = False
        if refine:
            report(progress, 0.5, "Sub-pixel refinement by phase correlation")
            sel = np.flatnonzero(inl)
            keep = sel[_thin(ref_pts[sel], score[sel], refine_window / 2.0, 400)]
            p_ref = ref_pts[keep]
            cur = model
            if transform == "tps":
                cur = _Model("affine").fit(ref_pts[inl], sen_pts[inl])
            # iterate until the windows agree with the fit (median update below 0.01 px): two passes
            # leave a ~0.12 px bias at 180 degrees or scale 2, where SIFT positions are biased most
            for it in range(REFINE_MAX_PASSES):
                to_native = (lambda m: (lambda q: _apply_h(geo, m.apply(q))))(cur)
                ok, shifts = _refine(ref_src, sen_src, to_native, p_ref, refine_window, cancelled=cancelled,
                                     max_shift=max(3.0, 1.5 * f) if it == 0 else 3.0)
                if ok.sum() < MIN_MATCHES:
                    break
                new_sen = cur.apply(p_ref[ok] - shifts[ok])
                cand_ref = p_ref[ok]
                kind = "affine" if transform == "tps" and it == 0 else transform
                m_new, inl_new, _r = _fit_robust(cand_ref, new_sen, kind, floor=0.1 * max(1, f) if it else 0.3,
                                                 tps_smoothing=tps_smoothing)
                if inl_new.sum() < MIN_MATCHES:
                    break
                cur = m_new
                refined = True
                stages["refined_windows"] = int(ok.sum())
                stages["refine_passes"] = it + 1
                ref_pts, sen_pts = cand_ref, new_sen
                check_cancelled(cancelled)
                if it >= 1 and float(np.median(np.hypot(shifts[ok, 0], shifts[ok, 1]))) < REFINE_TOLERANCE:
                    break
            if refined:
                model = cur
            else:
                log.warning("Phase-correlation refinement found too few usable windows; keeping keypoint matches.")

        # ---------------------------------------------------------------- final fit and figures
        report(progress, 0.65, "Final fit")
        floor = 0.1 if refined else max(1.0, 0.5 * f)
        model, inl, res = _fit_robust(ref_pts, sen_pts, transform, floor=floor, tps_smoothing=tps_smoothing)
        if inl.sum() < MIN_MATCHES:
            raise InputError(f"Only {int(inl.sum())} correct correspondences after outlier removal "
                             f"(at least {MIN_MATCHES} needed).")
        _check_model(model, reference)
        rms_all = float(np.sqrt(np.mean(res[inl] ** 2)))
        rms_loo = _loo_rms(ref_pts[inl], sen_pts[inl], transform, tps_smoothing)
        centre = np.array([(W - 1) / 2.0, (H - 1) / 2.0])
        shift = model.apply(centre[None])[0] - centre
        jac = model.jacobian(centre)
        rotation = math.degrees(math.atan2(jac[1, 0] - jac[0, 1], jac[0, 0] + jac[1, 1]))
        scale = math.sqrt(abs(np.linalg.det(jac)))
        full = geo @ model.h
        result = RegistrationResult(
            transform=transform, method=method, shift_x=float(shift[0]), shift_y=float(shift[1]),
            rotation=rotation, scale=scale, rms_all=rms_all, rms_loo=rms_loo, n_red=int(inl.sum()),
            n_matches=len(ref_pts), ref_points=ref_pts, sensed_points=_apply_h(geo, sen_pts), inliers=inl,
            residuals=res, matrix=None if transform == "tps" else full / full[2, 2], n_keypoints=n_kp,
            refined=refined, stages=stages, _model=model, _geo=geo,
        )
        check_cancelled(cancelled)

        # ---------------------------------------------------------------- outputs
        if out_path:
            report(progress, 0.7, "Writing the registered image")
            _write_registered(result, reference, sensed_work, out_path, resampling, block,
                              protect=(reference.path, sensed.path), progress=progress, cancelled=cancelled)
            result.out_path = str(out_path)
        if tiepoints_path:
            report(progress, 0.9, "Writing tie points")
            result.tiepoints_path = write_tiepoints(tiepoints_path, result, reference)
        if checkerboard_path:
            report(progress, 0.95, "Writing the checkerboard")
            result.checkerboard_path = _write_checkerboard(result, reference, reference_band, sensed_work,
                                                           sensed_band, checkerboard_path, resampling,
                                                           checker_size, block, cancelled)
        result.seconds = time.time() - t_start
        report(progress, 1.0, result.summary())
        log.info("Registration: %s", result.summary())
        return result
    finally:  # writers are atomic: an error leaves nothing partial behind
        tmpdir.cleanup()


def _check_linear(lin: np.ndarray, stage: str) -> None:
    det = float(np.linalg.det(lin))
    if not np.isfinite(det) or abs(det) < 1e-8:
        raise InputError(f"The {stage} transform is degenerate (singular matrix); the matches are not reliable.")
    if det < 0:
        raise InputError(f"The {stage} transform mirrors the image (negative determinant); the matches are wrong.")
    s = math.sqrt(abs(det))
    if not SCALE_LIMITS[0] <= s <= SCALE_LIMITS[1]:
        raise InputError(f"The {stage} transform has scale {s:.3f}, outside {SCALE_LIMITS[0]}-{SCALE_LIMITS[1]}; "
                         "the matches are not reliable.")
    sv = np.linalg.svd(lin, compute_uv=False)
    if sv[1] <= 0 or sv[0] / sv[1] > 3.0:
        raise InputError(f"The {stage} transform is strongly anisotropic (axis ratio {sv[0] / max(sv[1], 1e-12):.2f}); "
                         "the matches are not reliable.")


def _check_model(model: _Model, reference: RasterInfo) -> None:
    if not np.all(np.isfinite(model.h)):
        raise InputError("The fitted transform is not finite; the matches are not reliable.")
    c = np.array([(reference.width - 1) / 2.0, (reference.height - 1) / 2.0])
    _check_linear(model.jacobian(c), "fitted")
    if model.kind == "projective":
        corners = np.array([[0, 0], [reference.width - 1, 0], [0, reference.height - 1],
                            [reference.width - 1, reference.height - 1]], float)
        w = corners @ model.h[2, :2] + model.h[2, 2]
        if np.any(w <= 0) or w.max() / w.min() > 2.0:
            raise InputError("The projective transform is degenerate over the reference extent.")


# =========================================================================== writing


def _block_maps(result: RegistrationResult, x0: int, y0: int, w: int, h: int):
    """Sensed pixel positions (map_x, map_y float64) for a reference block."""
    model, geo = result._model, result._geo
    if model.kind == "tps":
        step = 8
        gx = np.arange(0, w + step, step, dtype=np.float64)
        gy = np.arange(0, h + step, step, dtype=np.float64)
        cx, cy = np.meshgrid(gx + x0, gy + y0)
        q = _apply_h(geo, model.apply(np.c_[cx.ravel(), cy.ravel()]))
        qx = q[:, 0].reshape(cx.shape).astype(np.float32)
        qy = q[:, 1].reshape(cx.shape).astype(np.float32)
        import cv2
        bx, by = np.meshgrid(np.arange(w, dtype=np.float32) / step, np.arange(h, dtype=np.float32) / step)
        mx = cv2.remap(qx, bx, by, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        my = cv2.remap(qy, bx, by, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return mx.astype(np.float64), my.astype(np.float64)
    full = geo @ model.h
    xs, ys = np.meshgrid(np.arange(x0, x0 + w, dtype=np.float64), np.arange(y0, y0 + h, dtype=np.float64))
    den = full[2, 0] * xs + full[2, 1] * ys + full[2, 2]
    mx = (full[0, 0] * xs + full[0, 1] * ys + full[0, 2]) / den
    my = (full[1, 0] * xs + full[1, 1] * ys + full[1, 2]) / den
    return mx, my


def _source_window(mx: np.ndarray, my: np.ndarray, sensed: RasterInfo) -> tuple:
    """Pixels of a block whose source position falls inside the sensed raster, and the sensed
    window ``(x0, y0, x1, y1)`` they need (2 px of margin for bilinear/cubic interpolation)."""
    inside = (mx > -0.5) & (mx < sensed.width - 0.5) & (my > -0.5) & (my < sensed.height - 0.5)
    if not inside.any():
        return inside, (0, 0, 0, 0)
    return inside, (max(0, int(math.floor(mx[inside].min())) - 2), max(0, int(math.floor(my[inside].min())) - 2),
                    min(sensed.width, int(math.ceil(mx[inside].max())) + 3),
                    min(sensed.height, int(math.ceil(my[inside].max())) + 3))


def _write_registered(result, reference: RasterInfo, sensed: RasterInfo, out_path: str, resampling: str,
                      block: int, protect=(), progress=None, cancelled=None) -> str:
    import cv2

    interp = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}[resampling]
    ds = open_raster(sensed.path, sensed.name)
    nb = sensed.band_count
    dtype = np.dtype(sensed.dtype)
    nd = [sensed.nodata[b] if b < len(sensed.nodata) else None for b in range(nb)]
    out_nd = nd[0] if nd[0] is not None else 0
    lin_scale = float(np.sqrt(abs(np.linalg.det(result._geo[:2, :2] @ result._model.h[:2, :2]))))
    block = max(64, int(block / max(1.0, lin_scale)))
    if np.issubdtype(dtype, np.integer):
        lo, hi = np.iinfo(dtype).min, np.iinfo(dtype).max
    else:
        lo, hi = -np.inf, np.inf
    n_blocks = math.ceil(reference.width / block) * math.ceil(reference.height / block)
    done = 0
    with RasterWriter(out_path, like=reference, band_count=nb, dtype=dtype, nodata=out_nd,
                      descriptions=sensed.descriptions, protect=protect) as out:
        for by in range(0, reference.height, block):
            for bx in range(0, reference.width, block):
                check_cancelled(cancelled)
                w, h = min(block, reference.width - bx), min(block, reference.height - by)
                mx, my = _block_maps(result, bx, by, w, h)
                res = np.full((nb, h, w), out_nd, dtype=dtype)
                inside, (sx0, sy0, sx1, sy1) = _source_window(mx, my, sensed)
                if inside.any():
                    mxf, myf = (mx - sx0).astype(np.float32), (my - sy0).astype(np.float32)
                    valid_all = inside.copy()
                    for b in range(nb):
                        arr = ds.GetRasterBand(b + 1).ReadAsArray(sx0, sy0, sx1 - sx0, sy1 - sy0).astype(np.float32)
                        v = np.isfinite(arr)
                        if nd[b] is not None:
                            v &= arr != nd[b]
                        fill = float(arr[v].mean()) if v.any() else 0.0
                        vals = cv2.remap(np.where(v, arr, fill), mxf, myf, interp, borderMode=cv2.BORDER_REPLICATE)
                        vv = cv2.remap(v.astype(np.float32), mxf, myf, cv2.INTER_LINEAR,
                                       borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                        valid_all &= vv > (0.999 if interp != cv2.INTER_NEAREST else 0.5)
                        if np.issubdtype(dtype, np.integer):
                            vals = np.clip(np.rint(vals), lo, hi)
                        res[b] = vals.astype(dtype)
                    res[:, ~valid_all] = out_nd
                out.write(res, bx, by)
                done += 1
                report(progress, 0.7 + 0.2 * done / n_blocks)
    return str(out_path)


def write_tiepoints(path: str, result: RegistrationResult, reference: RasterInfo) -> str:
    """GeoPackage of the correspondences: points at the reference positions, in the reference CRS.

    Fields: ref_x, ref_y (reference pixels), sensed_x, sensed_y (sensed pixels), residual
    (reference pixels) and inlier (boolean). Written to a temporary file, then renamed.
    """
    path = str(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.partial-{uuid.uuid4().hex[:8]}.gpkg")
    srs = None
    if reference.crs_wkt:
        srs = osr.SpatialReference()
        srs.ImportFromWkt(reference.crs_wkt)
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    gtm = _gt_matrix(reference.geotransform)
    geo_xy = _apply_h(gtm, result.ref_points)
    try:
        drv = ogr.GetDriverByName("GPKG")
        ds = drv.CreateDataSource(tmp)
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
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _write_checkerboard(result, reference: RasterInfo, reference_band: int, sensed: RasterInfo, sensed_band: int,
                        path: str, resampling: str, size: int, block: int, cancelled=None) -> str:
    """One band on the reference grid: reference and registered squares alternate (``size`` px)."""
    import cv2

    interp = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}[resampling]
    rds = open_raster(reference.path, reference.name)
    sds = open_raster(sensed.path, sensed.name)
    rband, sband = rds.GetRasterBand(reference_band), sds.GetRasterBand(sensed_band)
    snd = sensed.nodata[sensed_band - 1]
    with RasterWriter(path, like=reference, band_count=1, dtype="float32", nodata=-9999.0,
                      protect=(reference.path, sensed.path)) as out:
        for by in range(0, reference.height, block):
            for bx in range(0, reference.width, block):
                check_cancelled(cancelled)
                w, h = min(block, reference.width - bx), min(block, reference.height - by)
                a = rband.ReadAsArray(bx, by, w, h).astype(np.float32)
                mx, my = _block_maps(result, bx, by, w, h)
                b = np.full((h, w), -9999.0, np.float32)
                inside, (sx0, sy0, sx1, sy1) = _source_window(mx, my, sensed)
                if inside.any():
                    arr = sband.ReadAsArray(sx0, sy0, sx1 - sx0, sy1 - sy0).astype(np.float32)
                    vals = cv2.remap(arr, (mx - sx0).astype(np.float32), (my - sy0).astype(np.float32), interp,
                                     borderMode=cv2.BORDER_CONSTANT, borderValue=-9999.0)
                    ok = inside & (vals != -9999.0)
                    if snd is not None:
                        ok &= vals != snd
                    b[ok] = vals[ok]
                yy, xx = np.mgrid[by:by + h, bx:bx + w]
                use_b = ((xx // size + yy // size) % 2) == 1
                out.write(np.where(use_b, b, a)[None], bx, by)
    return str(path)
