"""Sub-pixel refinement of a fitted transform by phase correlation around the tie points.

Around each inlier (thinned to one per half window, best matches first), a window of the
reference is phase-correlated (``skimage.registration.phase_cross_correlation``, upsampled
x100, Hann-apodised) with the sensed image resampled into the reference frame by the current
transform; the measured residual shift corrects the correspondence and the transform is
refitted. Passes repeat until the windows agree with the fit (median shift below
:data:`REFINE_TOLERANCE`), at most :data:`REFINE_MAX_PASSES`. Windows with nodata or masked
pixels are skipped, so clouds do not bias it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from ..runtime import check_cancelled
from .sources import BandSource
from .transforms import MIN_MATCHES, GeometricTransform, apply_homography, fit_robust

REFINE_MAX_PASSES = 5
REFINE_TOLERANCE = 0.01  # pixels: stop refining when the median window shift is below this
MAX_WINDOWS = 400


@dataclass(frozen=True)
class RefineOptions:
    """Sub-pixel refinement: on or off, and the phase-correlation window (reference pixels)."""

    enabled: bool = True
    window: int = 64


@dataclass
class Refinement:
    """The refined transform, the corrected correspondences (sensed positions in the reference
    frame), the windows of the last pass that gave a shift and the passes that improved the fit."""

    transform: GeometricTransform
    ref_points: np.ndarray
    sensed_points: np.ndarray
    windows: int
    passes: int


def refine_transform(sources: tuple, grid_to_sensed: np.ndarray, transform: GeometricTransform, points: tuple,
                     kind: str, decimation: int, window: int, cancelled=None) -> Optional[Refinement]:
    """Refine ``transform`` (fitted on ``points = (ref, sensed, inliers, score)``) towards ``kind``.

    ``sources``: the reference and sensed :class:`BandSource`; ``grid_to_sensed``: reference frame ->
    native sensed pixels; ``decimation``: the detection image's reduction factor (the first
    pass accepts shifts up to 1.5 times it). A ``tps`` is first refined as an affine. Returns
    ``None`` when too few windows give a usable shift.
    """
    ref_pts, sen_pts, inl, score = points
    sel = np.flatnonzero(inl)
    keep = sel[thin(ref_pts[sel], score[sel], window / 2.0, MAX_WINDOWS)]
    p_ref = ref_pts[keep]
    cur = transform
    if kind == "tps":
        cur = GeometricTransform("affine").fit(ref_pts[inl], sen_pts[inl])
    result = None
    # iterate until the windows agree with the fit (median update below 0.01 px): two passes
    # leave a ~0.12 px bias at 180 degrees or scale 2, where SIFT positions are biased most
    for it in range(REFINE_MAX_PASSES):
        to_native = (lambda m: (lambda q: apply_homography(grid_to_sensed, m.apply(q))))(cur)
        ok, shifts = phase_correlate(sources[0], sources[1], to_native, p_ref, window, cancelled=cancelled,
                                     max_shift=max(3.0, 1.5 * decimation) if it == 0 else 3.0)
        if ok.sum() < MIN_MATCHES:
            break
        new_sen = cur.apply(p_ref[ok] - shifts[ok])
        cand_ref = p_ref[ok]
        pass_kind = "affine" if kind == "tps" and it == 0 else kind
        m_new, inl_new, _r = fit_robust(cand_ref, new_sen, pass_kind, floor=0.1 * max(1, decimation) if it else 0.3,
                                        tps_smoothing=transform.tps_smoothing)
        if inl_new.sum() < MIN_MATCHES:
            break
        cur = m_new
        result = Refinement(cur, cand_ref, new_sen, int(ok.sum()), it + 1)
        check_cancelled(cancelled)
        if it >= 1 and float(np.median(np.hypot(shifts[ok, 0], shifts[ok, 1]))) < REFINE_TOLERANCE:
            break
    return result


def thin(pts: np.ndarray, score: np.ndarray, spacing: float, limit: int) -> np.ndarray:
    """Indices of points, best (lowest) score first, at least ``spacing`` apart (at most ``limit``)."""
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


def hann(n: int) -> np.ndarray:
    """2-D Hann window of ``n`` x ``n`` (float32)."""
    w = np.hanning(n)
    return np.outer(w, w).astype(np.float32)


def phase_correlate(ref: BandSource, sen: BandSource, to_native: Callable, pts: np.ndarray, win: int,
                    upsample: int = 100, max_shift: float = 3.0, min_valid: float = 0.95, cancelled=None) -> tuple:
    """Phase-correlate reference windows with the sensed image warped by ``to_native``.

    Returns ``(ok mask, shifts (N, 2))``: the reference window at p matches the sensed image at
    ``to_native(p - shift)``.
    """
    from skimage.registration import phase_cross_correlation

    half = win // 2
    hw = hann(win)
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
        nat = to_native(np.c_[gx.ravel() + x0, gy.ravel() + y0])
        warped = _sensed_window(sen, nat[:, 0].reshape(win, win), nat[:, 1].reshape(win, win), win)
        if warped is None or warped[1].mean() < min_valid:
            continue
        b, vb = warped
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


def _sensed_window(sen: BandSource, u: np.ndarray, v: np.ndarray, win: int) -> Optional[tuple]:
    """The sensed band sampled (cubic) at native positions ``(u, v)`` and its validity; ``None``
    when they reach outside the sensed raster or span more than 64 windows' worth of pixels."""
    import cv2

    sx0 = int(math.floor(u.min())) - 2
    sy0 = int(math.floor(v.min())) - 2
    sx1 = int(math.ceil(u.max())) + 3
    sy1 = int(math.ceil(v.max())) + 3
    if sx0 < 0 or sy0 < 0 or sx1 > sen.info.width or sy1 > sen.info.height:
        return None
    if (sx1 - sx0) * (sy1 - sy0) > 64 * win * win:
        return None
    s_arr, s_ok = sen.read(sx0, sy0, sx1 - sx0, sy1 - sy0)
    mx, my = (u - sx0).astype(np.float32), (v - sy0).astype(np.float32)
    b = cv2.remap(s_arr, mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    vb = cv2.remap(s_ok.astype(np.float32), mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                   borderValue=0) > 0.999
    return b, vb
