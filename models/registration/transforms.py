"""The fitted geometric transform between reference and sensed pixels, and how it is fitted.

A :class:`GeometricTransform` maps reference pixel positions to sensed pixel positions; it is
one of :data:`TRANSFORMS` and is fitted by (weighted) least squares: ``translation``,
``similarity``, ``affine``, ``projective`` (normalised DLT) and ``tps`` (thin-plate spline on
the residuals of an affine part, smoothed, for local distortions). Around it:
:func:`fit_ransac` (the initial OpenCV RANSAC fit of the keypoint matches),
:func:`fit_robust` (least squares with iterative outlier removal), :func:`loo_rms`
(leave-one-out RMS) and the sanity checks of a fit (:func:`check_linear`,
:func:`check_transform`).

Pixel positions are ``(x, y) = (column, row)``, integer values at pixel centres; 3x3
homographies act on them (:func:`apply_homography`), and :func:`pixel_to_map` is the one of a
GDAL geotransform.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import InputError

TRANSFORMS = ("translation", "similarity", "affine", "projective", "tps")
MIN_POINTS = {"translation": 1, "similarity": 2, "affine": 3, "projective": 4, "tps": 3}
MIN_MATCHES = 6  # correspondences any stage needs to go on
SCALE_LIMITS = (0.2, 5.0)


# --------------------------------------------------------------------------- homographies


def pixel_to_map(gt) -> np.ndarray:
    """3x3: pixel position (centre convention) -> map coordinates, from a GDAL geotransform."""
    return np.array([[gt[1], gt[2], gt[0] + 0.5 * gt[1] + 0.5 * gt[2]],
                     [gt[4], gt[5], gt[3] + 0.5 * gt[4] + 0.5 * gt[5]],
                     [0.0, 0.0, 1.0]])


def apply_homography(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """``(N, 2)`` points mapped by the 3x3 homography ``h``."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    q = pts @ h[:2, :2].T + h[:2, 2]
    if h[2, 0] != 0 or h[2, 1] != 0 or h[2, 2] != 1:
        w = pts @ h[2, :2] + h[2, 2]
        q = (pts @ h[:2, :2].T + h[:2, 2]) / w[:, None]
    return q


# --------------------------------------------------------------------------- the transform


class GeometricTransform:
    """A 2-D point mapping of one of :data:`TRANSFORMS`, fitted by least squares.

    ``h`` is the 3x3 homography of the global part (for ``tps``: its affine part); a fitted
    ``tps`` adds a smoothed thin-plate spline of the residuals (``tps_smoothing``).
    """

    def __init__(self, kind: str, tps_smoothing: float = 1e-3):
        self.kind = kind
        self.h = np.eye(3)
        self.tps_smoothing = tps_smoothing
        self._tps = None

    @staticmethod
    def min_points(kind: str) -> int:
        return MIN_POINTS[kind]

    def fit(self, src: np.ndarray, dst: np.ndarray) -> "GeometricTransform":
        src = np.asarray(src, np.float64).reshape(-1, 2)
        dst = np.asarray(dst, np.float64).reshape(-1, 2)
        if len(src) < self.min_points(self.kind):
            raise InputError(f"Too few points ({len(src)}) to fit a {self.kind} transform.")
        if self.kind == "projective":
            h = _fit_homography(src, dst)
        elif self.kind in TRANSFORMS:
            h = _fit_linear(self.kind, src, dst)
        else:
            raise InputError(f"Unknown transform '{self.kind}'; use one of {', '.join(TRANSFORMS)}.")
        self.h = h
        if self.kind == "tps":
            self._tps = _fit_tps(src, dst - apply_homography(self.h, src), self.tps_smoothing)
        return self

    def apply(self, pts: np.ndarray) -> np.ndarray:
        """``(N, 2)`` reference pixel positions -> sensed pixel positions."""
        pts = np.asarray(pts, np.float64).reshape(-1, 2)
        out = apply_homography(self.h, pts)
        if self._tps is not None:
            c, k, p, coef = self._tps
            q = (pts - c) / k
            n = len(p)
            for i in range(0, len(q), 4096):
                qq = q[i:i + 4096]
                out[i:i + 4096] += _tps_kernel(qq, p) @ coef[:n] + np.c_[np.ones(len(qq)), qq] @ coef[n:]
        return out

    def jacobian(self, pt) -> np.ndarray:
        """2x2 local linear part at ``pt`` (central differences over one pixel)."""
        e = 0.5
        x, y = float(pt[0]), float(pt[1])
        q = self.apply(np.array([[x - e, y], [x + e, y], [x, y - e], [x, y + e]]))
        return np.c_[(q[1] - q[0]) / (2 * e), (q[3] - q[2]) / (2 * e)]


def _fit_linear(kind: str, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares homography of a translation, similarity or affine (also tps's affine part)."""
    c = src.mean(axis=0)
    s = src - c
    h = np.eye(3)
    if kind == "translation":
        h[:2, 2] = (dst - src).mean(axis=0)
    elif kind == "similarity":
        n = len(s)
        a = np.zeros((2 * n, 4))
        a[0::2] = np.c_[s[:, 0], -s[:, 1], np.ones(n), np.zeros(n)]
        a[1::2] = np.c_[s[:, 1], s[:, 0], np.zeros(n), np.ones(n)]
        p = np.linalg.lstsq(a, dst.reshape(-1), rcond=None)[0]
        lin = np.array([[p[0], -p[1]], [p[1], p[0]]])
        h[:2, :2] = lin
        h[:2, 2] = p[2:] - lin @ c
    else:  # affine, tps
        a = np.c_[s, np.ones(len(s))]
        p = np.linalg.lstsq(a, dst, rcond=None)[0]  # (3, 2)
        lin = p[:2].T
        h[:2, :2] = lin
        h[:2, 2] = p[2] - lin @ c
    return h


def _fit_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Normalised direct linear transform (Hartley)."""
    def norm(p):
        c = p.mean(axis=0)
        d = np.sqrt(((p - c) ** 2).sum(axis=1)).mean() or 1.0
        k = math.sqrt(2) / d
        return np.array([[k, 0, -k * c[0]], [0, k, -k * c[1]], [0, 0, 1]])
    ts, td = norm(src), norm(dst)
    a, b = apply_homography(ts, src), apply_homography(td, dst)
    rows = []
    for (x, y), (u, v) in zip(a, b):
        rows.append([-x, -y, -1, 0, 0, 0, u * x, u * y, u])
        rows.append([0, 0, 0, -x, -y, -1, v * x, v * y, v])
    _, _, vt = np.linalg.svd(np.asarray(rows))
    hn = vt[-1].reshape(3, 3)
    h = np.linalg.inv(td) @ hn @ ts
    return h / h[2, 2]


def _fit_tps(src: np.ndarray, resid: np.ndarray, smoothing: float) -> tuple:
    """Thin-plate spline of the residuals ``resid`` at ``src``, coordinates normalised to ~[0, 1]."""
    c = src.mean(axis=0)
    k = max(np.ptp(src, axis=0).max(), 1.0)
    p = (src - c) / k
    n = len(p)
    kmat = _tps_kernel(p, p)
    lam = smoothing * n
    a = np.zeros((n + 3, n + 3))
    a[:n, :n] = kmat + lam * np.eye(n)
    a[:n, n:] = np.c_[np.ones(n), p]
    a[n:, :n] = a[:n, n:].T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = resid
    coef = np.linalg.lstsq(a, rhs, rcond=None)[0]
    return c, k, p, coef


def _tps_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    r2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        k = 0.5 * r2 * np.log(r2)
    k[r2 <= 0] = 0.0
    return k


# --------------------------------------------------------------------------- fitting


def fit_ransac(src: np.ndarray, dst: np.ndarray, kind: str, threshold: float, robust: str = "ransac") -> tuple:
    """Initial robust fit of keypoint matches: ``(3x3 homography, inlier flags)``.

    ``robust``: ``"ransac"`` (OpenCV RANSAC) or ``"magsac"`` (OpenCV's USAC MAGSAC++, made for
    low inlier ratios: it scores a model by all residuals up to ``threshold`` instead of a
    count). With RANSAC, translations and similarities are fitted as partial affines (rotation,
    uniform scale, shift), every other kind as an affine; MAGSAC++ always fits an affine (the
    later robust fit narrows it to the kind asked for). Raises :class:`InputError` with fewer than
    :data:`MIN_MATCHES` inliers.
    """
    import cv2

    src, dst = src.astype(np.float32), dst.astype(np.float32)
    partial = kind in ("translation", "similarity") and robust != "magsac"  # OpenCV's USAC fits affines only
    estimate = cv2.estimateAffinePartial2D if partial else cv2.estimateAffine2D
    method = cv2.USAC_MAGSAC if robust == "magsac" else cv2.RANSAC
    m0, inl0 = estimate(src, dst, method=method, ransacReprojThreshold=threshold, maxIters=20000,
                        confidence=0.999)
    if m0 is None or inl0 is None or int(inl0.sum()) < MIN_MATCHES:
        raise InputError(f"No consistent transform found: {0 if inl0 is None else int(inl0.sum())} "
                         f"RANSAC inliers among {len(src)} matches (at least {MIN_MATCHES} needed).")
    return np.vstack([m0, [0, 0, 1]]), inl0.ravel().astype(bool)


def fit_robust(src, dst, kind: str, floor: float, tps_smoothing: float = 1e-3, max_iter: int = 20) -> tuple:
    """Least-squares fit with iterative outlier removal: drop residuals > max(3 sigma_robust, floor).

    Returns ``(transform, inlier flags, residuals of every point)``.
    """
    n = len(src)
    inl = np.ones(n, bool)
    transform = GeometricTransform(kind, tps_smoothing)
    for _ in range(max_iter):
        if inl.sum() < max(MIN_MATCHES, GeometricTransform.min_points(kind)):
            break
        transform.fit(src[inl], dst[inl])
        res = np.linalg.norm(transform.apply(src) - dst, axis=1)
        sigma = 1.4826 * np.median(res[inl])
        thr = max(3.0 * sigma, floor)
        new = res <= thr
        if np.array_equal(new, inl):
            break
        inl = new
    res = np.linalg.norm(transform.apply(src) - dst, axis=1)
    return transform, inl, res


def loo_rms(src, dst, kind: str, tps_smoothing: float) -> float:
    """Leave-one-out RMS: each point's residual under the fit of all the others (NaN when too few)."""
    n = len(src)
    if n <= GeometricTransform.min_points(kind) + 1:
        return float("nan")
    errs = np.empty(n)
    idx = np.arange(n)
    for i in range(n):
        keep = idx != i
        t = GeometricTransform(kind, tps_smoothing).fit(src[keep], dst[keep])
        errs[i] = np.linalg.norm(t.apply(src[i:i + 1])[0] - dst[i])
    return float(np.sqrt(np.mean(errs ** 2)))


# --------------------------------------------------------------------------- checks


def check_linear(lin: np.ndarray, stage: str) -> None:
    """Reject a singular, mirroring, badly scaled or strongly anisotropic 2x2 linear part."""
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


def check_transform(transform: GeometricTransform, width: int, height: int) -> None:
    """Reject a fitted transform that is not finite or degenerate over a ``width`` x ``height`` reference."""
    if not np.all(np.isfinite(transform.h)):
        raise InputError("The fitted transform is not finite; the matches are not reliable.")
    c = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    check_linear(transform.jacobian(c), "fitted")
    if transform.kind == "projective":
        corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]], float)
        w = corners @ transform.h[2, :2] + transform.h[2, 2]
        if np.any(w <= 0) or w.max() / w.min() > 2.0:
            raise InputError("The projective transform is degenerate over the reference extent.")
