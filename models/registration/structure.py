"""Registration across modalities by image structure: dense oriented-gradient features that ignore
intensity, matched by normalised cross-correlation (method ``structure``).

Between Sentinel-1 radar and an optical image, or two optical images of very different seasons,
the grey values have no common law and SIFT keypoints rarely repeat, but the *shapes* do: field
edges, roads, rivers, shorelines. Following Ye et al.'s CFOG (channel features of orientated
gradients, "Fast and robust matching for multimodal remote sensing image registration", IEEE TGRS
2019, the same group as the SIFT + CNN method), every pixel gets a small histogram of its gradient
orientations folded to [0, 180) degrees (so a bright-on-dark edge in one image matches a
dark-on-bright edge in the other), smoothed in space and across neighbouring orientations and
normalised to unit length (:func:`cfog`). Two stages use it:

1. **Global search** (:func:`similarity_search`): the sensed image is resampled into the
   reference frame for each rotation and scale of a grid (``StructureOptions``); for each, the
   masked zero-mean normalised cross-correlation of the two feature images over every shift is
   computed at once by FFT (:func:`masked_ncc`, after Padfield 2012); the best peak, then a finer
   grid around it, gives a similarity transform.
2. **Local tie points** (:func:`local_tie_points`): with the sensed image warped by that estimate,
   windows on a regular grid are matched again by NCC over small shifts, with a parabolic
   sub-pixel peak; each window gives a tie point for the pipeline's robust fit of any transform.

A match must stand out (:func:`mirrored_peak`): the best peak is compared with the best peak of
the same search against the sensed image mirrored, which has the same texture but does not show
the same place; unrelated images or noise score about as high mirrored as not, and are refused.

Several bands of a layer (every optical band, both polarisations of a radar layer) are fused: the
features of each band are averaged and normalised again (:func:`fused_cfog`), so an edge that one
band shows weakly and another strongly still counts. Radar is made comparable first
(:func:`matching_image`): linear power or dB in, Lee-filtered speckle, dB out. Works on the
pipeline's detection images (both in the reference frame), as ``(bands, rows, cols)`` stacks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..runtime import check_cancelled

BINS = 9               # orientation channels over [0, 180) degrees
SMOOTHING = 1.2        # Gaussian sigma (pixels) of the feature channels (chosen on the development pairs)
SEARCH_PIXELS = 160    # the global search runs on images of at most about this many pixels a side
MIN_OVERLAP = 0.35     # a shift is scored only when this share of the smaller image overlaps
LEE_WINDOW = 3         # pixels a side of the Lee speckle filter (chosen on the development pairs)
WIDE_GRID = 400        # rotation x scale candidates above which the search goes coarse to fine
COARSE_PIXELS = 64     # the coarse stage's images, about this many pixels a side
SEEDS = 4              # distinct coarse candidates searched again at the search resolution
MAX_WINDOWS = 2500     # local matching windows at most (about): a large image gets a sparser grid, not more windows


@dataclass(frozen=True)
class StructureOptions:
    """The search space and the local matching of the ``structure`` method.

    ``max_rotation``: degrees searched either way (0 = none); ``scale_range``: sensed/reference
    scales searched; ``max_shift``: the largest shift searched, as a share of the image side;
    ``window``: the local matching windows (detection pixels; at most a fifth of the smaller
    image side, at least 16); ``min_ncc``: the lowest local peak
    correlation a tie point is kept at; ``fuse_bands``: fuse the features of the layers' other
    bands with the chosen ones (:func:`structure_bands`); ``min_contrast``: the search's best
    peak must be at least this many times the best peak against the sensed image mirrored
    (:func:`mirrored_peak`), else the images are taken not to match (0: no check).
    """

    max_rotation: float = 30.0
    scale_range: tuple = (0.8, 1.25)
    max_shift: float = 0.15
    window: int = 32
    min_ncc: float = 0.1
    fuse_bands: bool = True
    min_contrast: float = 1.45

    def __post_init__(self):
        if not 0 <= self.max_rotation <= 180:
            raise InputError(f"The rotation searched must be between 0 and 180 degrees, not {self.max_rotation}.")
        lo, hi = self.scale_range
        if not 0.2 <= lo <= 1.0 <= hi <= 5.0:
            raise InputError(f"The scale range searched must contain 1 and lie within 0.2..5, not {self.scale_range}.")


# --------------------------------------------------------------------------- features


def matching_image(values: np.ndarray, valid: np.ndarray, radar: bool) -> np.ndarray:
    """The band as structure matching reads it: radar (dB, or linear power when every valid value
    is positive and the median below 1) is Lee-filtered in power (:data:`LEE_WINDOW`) and returned in dB;
    other bands as they are."""
    if not radar or not valid.any():
        return values
    from ..radar import lee_filter

    v = values.astype(np.float64)
    linear = bool((v[valid] > 0).all() and np.median(v[valid]) < 1.0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        power = np.where(valid, v if linear else np.power(10.0, v / 10.0), np.nan)
    power = np.where(power > 0, power, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN (invalid) pixels stay NaN
        db = 10.0 * np.log10(lee_filter(power, LEE_WINDOW, 0.25))
    return np.where(np.isfinite(db), db, 0.0).astype(np.float32)


def structure_bands(info, band: int, radar: bool) -> list:
    """The bands of a layer whose features are fused, the chosen ``band`` first: every band of an
    optical layer; of a radar layer, the bands named for a polarisation (VV, VH, HH, HV) when any
    is, else the bands whose median looks like dB backscatter when the chosen one does (so a
    VV/VH ratio band is left out), else the chosen band alone."""
    from ..radar import RADAR_DB_MEDIAN, median_valid, names_polarisation

    others = [b for b in range(1, info.band_count + 1) if b != band]
    if not radar:
        return [band] + others
    named = [b for b in range(1, info.band_count + 1)
             if b - 1 < len(info.descriptions) and names_polarisation(info.descriptions[b - 1])]
    if named:
        return [band] + [b for b in others if b in named]

    def db(b):
        median = median_valid(info, [b])
        return median is not None and RADAR_DB_MEDIAN[0] < median < RADAR_DB_MEDIAN[1]

    return [band] + [b for b in others if db(b)] if db(band) else [band]


def cfog(image: np.ndarray, valid: np.ndarray, bins: int = BINS, sigma: float = SMOOTHING) -> np.ndarray:
    """``(H, W, bins)`` float32: per pixel the gradient magnitude spread over orientation channels
    (folded to [0, 180), linear between the two nearest), 0 where a 3x3 neighbourhood is invalid,
    smoothed in space and across orientations, unit length per pixel."""
    import cv2

    img = _stretched(image, valid)
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=3)
    inside = cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    mag = np.where(inside, np.hypot(gx, gy), 0.0).astype(np.float32)
    pos = (np.arctan2(gy, gx) % np.pi) / np.pi * bins
    gap = np.abs(pos[..., None] - np.arange(bins, dtype=np.float32))  # distance to each bin, circular
    feats = mag[..., None] * np.clip(1.0 - np.minimum(gap, bins - gap), 0.0, 1.0)
    for k in range(bins):
        feats[..., k] = cv2.GaussianBlur(feats[..., k], (0, 0), sigma)
    feats = 0.25 * np.roll(feats, 1, axis=2) + 0.5 * feats + 0.25 * np.roll(feats, -1, axis=2)
    norm = np.linalg.norm(feats, axis=2, keepdims=True)
    floor = 0.05 * float(norm[inside].mean()) if inside.any() else 1.0
    return feats / (norm + floor + 1e-12)


def fused_cfog(stack: np.ndarray, valid: np.ndarray, sigma: float = SMOOTHING) -> np.ndarray:
    """:func:`cfog` of a ``(bands, H, W)`` stack (or one ``(H, W)`` band): the mean of the bands'
    features, normalised to unit length per pixel again (with the same floor as :func:`cfog`)."""
    stack = stack[None] if stack.ndim == 2 else stack
    if len(stack) == 1:
        return cfog(stack[0], valid, sigma=sigma)
    feats = np.mean([cfog(band, valid, sigma=sigma) for band in stack], axis=0)
    norm = np.linalg.norm(feats, axis=2, keepdims=True)
    floor = 0.05 * float(norm[valid].mean()) if valid.any() else 1.0
    return feats / (norm + floor + 1e-12)


def _stretched(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The band scaled by its 2-98 % range of valid values, clipped to [0, 1]: gradients comparable
    between images; invalid pixels take the median, so no false edge at a nodata border."""
    if not valid.any():
        return np.zeros(image.shape, np.float32)
    lo, med, hi = np.percentile(image[valid], [2, 50, 98])
    out = np.clip((np.where(valid, image, med) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    return out.astype(np.float32)


# --------------------------------------------------------------------------- correlation


def masked_ncc(fa: np.ndarray, va: np.ndarray, fb: np.ndarray, vb: np.ndarray, max_shift: int) -> np.ndarray:
    """``(2 m + 1, 2 m + 1)`` zero-mean NCC of feature images ``fa`` (reference) and ``fb`` over
    their valid overlaps, for every shift ``(dy, dx)`` in ``-m..m`` (``m = max_shift``): entry
    ``[m + dy, m + dx]`` compares ``fa(p)`` with ``fb(p + (dx, dy))``. Shifts whose overlap is under
    :data:`MIN_OVERLAP` of the smaller valid area score -1. Sums over the channels are taken in the
    Fourier domain (they are linear), on an FFT size with small prime factors."""
    from scipy import fft

    h, w = va.shape
    shape = (fft.next_fast_len(h + max_shift + 1, real=True), fft.next_fast_len(w + max_shift + 1, real=True))
    ma, mb = va.astype(np.float64), vb.astype(np.float64)
    a, b = fa * va[..., None], fb * vb[..., None]

    def spec(x):
        return fft.rfft2(x, s=shape, axes=(0, 1))

    def corr(xy_spec):  # sum_p x(p) y(p + t) for every shift t (wrapped), from conj(X) Y
        return fft.irfft2(xy_spec, s=shape, axes=(0, 1))

    sma, smb = spec(ma), spec(mb)
    sa, sb = spec(a), spec(b)
    n = np.maximum(corr(np.conj(sma) * smb), 0.0)
    sum_a, sum_b = corr(np.conj(sa) * smb[..., None]), corr(np.conj(sma)[..., None] * sb)
    sum_aa = corr(np.conj(spec((a * a).sum(axis=2))) * smb)
    sum_bb = corr(np.conj(sma) * spec((b * b).sum(axis=2)))
    nn = np.maximum(n, 1.0)
    num = corr((np.conj(sa) * sb).sum(axis=2)) - (sum_a * sum_b).sum(axis=2) / nn
    var_a = np.maximum(sum_aa - (sum_a * sum_a).sum(axis=2) / nn, 1e-12)
    var_b = np.maximum(sum_bb - (sum_b * sum_b).sum(axis=2) / nn, 1e-12)
    score = num / np.sqrt(var_a * var_b)
    score[n < MIN_OVERLAP * min(ma.sum(), mb.sum())] = -1.0
    idx = np.r_[shape[0] - max_shift:shape[0], 0:max_shift + 1]
    jdx = np.r_[shape[1] - max_shift:shape[1], 0:max_shift + 1]
    return score[np.ix_(idx, jdx)]


def subpixel_peak(score: np.ndarray) -> tuple:
    """``(dx, dy, peak)`` of a score map centred on shift 0, refined by a parabola along each axis;
    ``None`` when the maximum lies on the border (the true peak may lie outside)."""
    m = score.shape[0] // 2
    iy, ix = np.unravel_index(int(np.argmax(score)), score.shape)
    if not (0 < iy < score.shape[0] - 1 and 0 < ix < score.shape[1] - 1):
        return None

    def vertex(lo, c, hi):
        den = lo - 2.0 * c + hi
        return 0.0 if den >= 0 else float(np.clip(0.5 * (lo - hi) / den, -0.5, 0.5))

    dy = vertex(score[iy - 1, ix], score[iy, ix], score[iy + 1, ix])
    dx = vertex(score[iy, ix - 1], score[iy, ix], score[iy, ix + 1])
    return ix - m + dx, iy - m + dy, float(score[iy, ix])


# --------------------------------------------------------------------------- global search


def similarity(angle: float, scale: float, centre: np.ndarray, shift=(0.0, 0.0)) -> np.ndarray:
    """3x3: reference frame -> sensed frame, a rotation by ``angle`` degrees and ``scale`` about
    ``centre``, then ``shift``."""
    a = math.radians(angle)
    lin = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.vstack([np.c_[lin, centre + np.asarray(shift, float) - lin @ centre], [0.0, 0.0, 1.0]])


def warp_into_reference(image: np.ndarray, valid: np.ndarray, h: np.ndarray, shape: tuple) -> tuple:
    """``(values, valid)`` of the sensed ``image`` (``(H, W)`` or a ``(bands, H, W)`` stack) sampled
    at ``h`` (reference -> sensed frame) of every reference pixel, ``shape`` = (rows, cols)."""
    import cv2

    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP

    def warp(band):
        return cv2.warpAffine(band.astype(np.float32), h[:2], (shape[1], shape[0]), flags=flags, borderValue=0)

    out = warp(image) if image.ndim == 2 else np.stack([warp(band) for band in image])
    return out, warp(valid) > 0.999


def similarity_search(ref: tuple, sen: tuple, options: StructureOptions, cancelled=None) -> tuple:
    """``(3x3 reference -> sensed frame, peak NCC)``: the best similarity transform of the grid
    search, then of a finer grid around it. ``ref``/``sen`` = (image or ``(bands, H, W)`` stack,
    valid) in their frames.

    A wide search (more than :data:`WIDE_GRID` rotation and scale candidates, e.g. any rotation and
    scales 0.5-2) goes coarse to fine: a grid of 6 degree and 12 % steps on images of about
    :data:`COARSE_PIXELS` a side, then a local grid (3 degrees, 6 %) around its :data:`SEEDS` best
    distinct candidates on the search images."""
    lo, hi = options.scale_range
    grid = _grid(options.max_rotation, 3.0, lo, hi, 1.06)
    search = _Reduced(ref, sen, SEARCH_PIXELS, options.max_shift)
    if len(grid) > WIDE_GRID:
        coarse = _Reduced(ref, sen, COARSE_PIXELS, options.max_shift)
        seeds = _distinct(coarse.scores(_grid(options.max_rotation, 6.0, lo, hi, 1.12), cancelled), SEEDS)
        grid = [(a + da, s * math.exp(ds)) for _, a, s, *_ in seeds
                for da in (-6.0, -3.0, 0.0, 3.0, 6.0) for ds in np.linspace(-0.12, 0.12, 5)]
    best = search.best(grid, cancelled)
    a0, s0 = best[1], best[2]
    fine = [(a0 + da, s0 * math.exp(ds)) for da in np.arange(-1.5, 1.51, 0.5) for ds in np.linspace(-0.03, 0.03, 5)]
    best = max(best, search.best(fine, cancelled), key=lambda b: b[0])
    peak, angle, scale, dx, dy = best
    if peak <= 0:
        raise InputError("No common structure found between the images (no positive correlation of "
                         "their oriented gradients); check that they show the same place.")
    # in the reduced frame: ref p <-> warped sensed at p + d, i.e. sensed frame S(p + d)
    f = search.factor
    h_small = similarity(angle, scale, search.centre) @ np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1.0]])
    up = np.array([[f, 0, (f - 1) / 2.0], [0, f, (f - 1) / 2.0], [0, 0, 1.0]])
    return up @ h_small @ np.linalg.inv(up), peak


class _Reduced:
    """Both images reduced by one integer factor to at most about ``pixels`` a side (area
    averaging), with the reference's features, for scoring rotation and scale candidates."""

    def __init__(self, ref: tuple, sen: tuple, pixels: int, max_shift: float):
        import cv2

        (a_img, a_ok), (b_img, b_ok) = ref, sen
        self.factor = f = max(1, int(math.ceil(max(a_ok.shape) / pixels)))
        small = (max(8, a_ok.shape[1] // f), max(8, a_ok.shape[0] // f))

        def shrink(img, ok):
            bands = img[None] if img.ndim == 2 else img
            return (np.stack([cv2.resize(np.where(ok, b, 0).astype(np.float32), small, interpolation=cv2.INTER_AREA)
                              for b in bands]),
                    cv2.resize(ok.astype(np.uint8), small, interpolation=cv2.INTER_NEAREST) > 0)

        (ra, self.rv), (self.sa, self.sv) = shrink(a_img, a_ok), shrink(b_img, b_ok)
        self.fa = fused_cfog(ra, self.rv)
        self.centre = np.array([(small[0] - 1) / 2.0, (small[1] - 1) / 2.0])
        self.m = max(2, int(round(max_shift * max(small))))

    def scores(self, candidates: list, cancelled=None) -> list:
        """``(peak, angle, scale, dx, dy)`` of every candidate (angle, scale) with enough overlap and
        an inner peak."""
        out = []
        for k, (angle, scale) in enumerate(candidates):
            if k % 8 == 0:
                check_cancelled(cancelled)
            img, ok = warp_into_reference(self.sa, self.sv, similarity(angle, scale, self.centre), self.rv.shape)
            if ok.sum() < MIN_OVERLAP * self.rv.sum():
                continue
            peak = subpixel_peak(masked_ncc(self.fa, self.rv, fused_cfog(img, ok), ok, self.m))
            if peak is not None:
                out.append((peak[2], angle, scale, peak[0], peak[1]))
        return out

    def best(self, candidates: list, cancelled=None) -> tuple:
        """The best of :meth:`scores` (the first of equals), or a peak of -inf when none scored."""
        return max(self.scores(candidates, cancelled), key=lambda b: b[0], default=(-math.inf, 0.0, 1.0, 0.0, 0.0))


def _distinct(scored: list, n: int) -> list:
    """The ``n`` best candidates at least 9 degrees or 17 % of scale apart from every better one."""
    chosen = []
    for cand in sorted(scored, key=lambda b: -b[0]):
        if all(abs((cand[1] - c[1] + 180.0) % 360.0 - 180.0) > 9.0 or abs(math.log(cand[2] / c[2])) > 0.17
               for c in chosen):
            chosen.append(cand)
            if len(chosen) == n:
                break
    return chosen


def mirrored_peak(ref: tuple, sen: tuple, options: StructureOptions, cancelled=None) -> float:
    """The best peak of :func:`similarity_search` against the sensed image mirrored left-right,
    then up-down (the larger): an image of the same texture and statistics that does not show the
    same place, so the peak any match must clearly beat (0 when none is positive)."""
    img, ok = sen
    best = 0.0
    for axis in (-1, -2):
        try:
            best = max(best, similarity_search(ref, (np.flip(img, axis), np.flip(ok, axis)), options, cancelled)[1])
        except InputError:
            continue
    return best


def _grid(max_rotation: float, step: float, lo: float, hi: float, ratio: float) -> list:
    n_a = int(math.floor(max_rotation / step))
    angles = [k * step for k in range(-n_a, n_a + 1)] or [0.0]
    if max_rotation >= 180:
        angles = [a for a in angles if -180 < a <= 180]
    n_lo, n_hi = int(math.floor(math.log(1 / lo) / math.log(ratio))), int(math.floor(math.log(hi) / math.log(ratio)))
    scales = [ratio ** k for k in range(-n_lo, n_hi + 1)]
    return [(a, s) for a in angles for s in scales]


# --------------------------------------------------------------------------- local tie points


def local_tie_points(ref: tuple, sen: tuple, h: np.ndarray, options: StructureOptions, radius: int = 3,
                     cancelled=None) -> tuple:
    """``(reference points, sensed points, 1 - NCC)`` (frame pixels) of windows on a grid matched
    by NCC of their features over shifts up to ``radius`` around the estimate ``h`` (reference ->
    sensed frame). Windows must be at least 90 % valid in both images; the grid's step is a third of
    a window, or wider on a large image so that about :data:`MAX_WINDOWS` at most are matched."""
    (a_img, a_ok) = ref
    w_img, w_ok = warp_into_reference(sen[0], sen[1], h, a_ok.shape)
    fa, fb = fused_cfog(a_img, a_ok), fused_cfog(w_img, w_ok)
    rows, cols = a_ok.shape
    win = min(options.window, max(16, min(rows, cols) // 5))  # small images: smaller windows, more of them
    step = max(4, win // 3, int(math.ceil(math.sqrt(rows * cols / MAX_WINDOWS))))  # large images: a sparser grid
    ref_pts, found, cost = [], [], []
    for k, (y0, x0) in enumerate((y, x) for y in range(radius, rows - win - radius + 1, step)
                                 for x in range(radius, cols - win - radius + 1, step)):
        if k % 32 == 0:
            check_cancelled(cancelled)
        if a_ok[y0:y0 + win, x0:x0 + win].mean() < 0.9:
            continue
        b_ok = w_ok[y0 - radius:y0 + win + radius, x0 - radius:x0 + win + radius]
        if b_ok.mean() < 0.9:
            continue
        score = _window_ncc(fa[y0:y0 + win, x0:x0 + win], fb[y0 - radius:y0 + win + radius,
                                                            x0 - radius:x0 + win + radius], radius)
        peak = subpixel_peak(score)
        if peak is None or peak[2] < options.min_ncc:
            continue
        centre = np.array([x0 + (win - 1) / 2.0, y0 + (win - 1) / 2.0])
        ref_pts.append(centre)
        found.append(centre + np.array(peak[:2]))
        cost.append(1.0 - peak[2])
    if not ref_pts:
        return np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0)
    ref_pts, found = np.array(ref_pts), np.array(found)
    sensed = found @ h[:2, :2].T + h[:2, 2]
    return ref_pts, sensed, np.array(cost)


def _window_ncc(a: np.ndarray, b: np.ndarray, radius: int) -> np.ndarray:
    """NCC of feature window ``a`` with every ``a``-sized window of ``b`` (``a`` plus ``radius`` each side)."""
    win = a.shape[0]
    av = a - a.mean(axis=(0, 1))
    an = float(np.sqrt((av * av).sum())) + 1e-12
    out = np.full((2 * radius + 1, 2 * radius + 1), -1.0)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            bw = b[dy:dy + win, dx:dx + win]
            bv = bw - bw.mean(axis=(0, 1))
            out[dy, dx] = float((av * bv).sum()) / (an * (float(np.sqrt((bv * bv).sum())) + 1e-12))
    return out
