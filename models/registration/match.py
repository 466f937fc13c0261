"""Matching keypoints of the reference and the sensed image.

Distances are Euclidean between unit descriptors; with a CNN descriptor the distance is
fused, ``(1 - w) d_sift + w d_cnn`` (Ye et al., GRSL 2018). Matches pass the nearest-neighbour
ratio test and are mutual nearest neighbours (:func:`ratio_mutual`). After an initial robust
fit, the paper's *rematching* (:func:`rematch`) scores every pair of keypoints again with a
joint distance that multiplies the descriptor distance by ``(1 + e_pos / t)(1 + e_scale)
(1 + e_orient)`` (position error under the initial transform, log scale ratio and orientation
difference relative to those of the initial inliers) and repeats the ratio test on it
(:func:`ratio_mutual_sparse`, over the pairs close enough under the initial transform).

When few of those matches are right (large rotations, other sensors, other seasons), the first
fit is given more candidates instead (:func:`candidate_matches`: the ``k`` nearest neighbours of
every keypoint under the fused distance), and only the candidates that agree with the dominant
change of orientation and scale between the two images go on (:func:`consistent_matches`, a vote
over SIFT's keypoint orientations and sizes, the seed's position-scale-orientation consistency);
a robust estimator made for low inlier ratios (MAGSAC++) fits them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import InputError
from .detect import Keypoints
from .transforms import MIN_MATCHES, apply_homography


@dataclass(frozen=True)
class MatchOptions:
    """How keypoints are detected, described and matched.

    ``ratio``: nearest-neighbour ratio test threshold (the fused distance is less peaked than
    pure SIFT, so the paper's loose 0.9 keeps enough candidates; mutual nearest neighbours and
    RANSAC remove the extra outliers); ``cnn_weight``: weight of the CNN distance in the fused
    distance (method ``sift_cnn``); ``neighbours``: candidates per keypoint when the ratio test
    keeps too few consistent matches; ``descriptor_model_path``: the descriptor model file
    (default: the shipped one); ``max_keypoints`` per image; ``max_detect_pixels``: larger
    overlaps are detected on a decimated image.
    """

    ratio: float = 0.9
    cnn_weight: float = 0.3
    neighbours: int = 3
    descriptor_model_path: Optional[str] = None
    max_keypoints: int = 4000
    max_detect_pixels: int = 4_000_000

    def __post_init__(self):
        if not 0 < self.ratio <= 1:
            raise InputError(f"The ratio test threshold must be in (0, 1], not {self.ratio}.")
        if not 0 <= self.cnn_weight <= 1:
            raise InputError(f"The CNN weight must be between 0 and 1, not {self.cnn_weight}.")


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between rows of unit vectors."""
    return np.sqrt(np.maximum(2.0 - 2.0 * (a @ b.T), 0.0))


def fused_distances(sift_a: np.ndarray, sift_b: np.ndarray, cnn_a: Optional[np.ndarray] = None,
                    cnn_b: Optional[np.ndarray] = None, cnn_weight: float = 0.3) -> np.ndarray:
    """SIFT distances, fused with CNN descriptor distances when those are given."""
    dist = pairwise_distances(sift_a, sift_b)
    if cnn_a is not None:
        dist = (1.0 - cnn_weight) * dist + cnn_weight * pairwise_distances(cnn_a, cnn_b)
    return dist


def ratio_mutual(d: np.ndarray, ratio: float) -> tuple:
    """Pairs ``(i, j)`` that pass the nearest-neighbour ratio test and are mutual nearest neighbours."""
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


def candidate_matches(d: np.ndarray, k: int) -> tuple:
    """``(rows, cols, rank)`` of the ``k`` nearest columns of every row of the distance matrix ``d``."""
    k = max(1, min(k, d.shape[1]))
    if d.shape[0] == 0 or k == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0, int)
    cols = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.tile(np.arange(d.shape[1]), (len(d), 1))
    order = np.argsort(np.take_along_axis(d, cols, axis=1), axis=1)
    cols = np.take_along_axis(cols, order, axis=1)
    rows = np.repeat(np.arange(d.shape[0]), k)
    return rows, cols.ravel(), np.tile(np.arange(k), d.shape[0])


def consistent_matches(kpa: Keypoints, kpb: Keypoints, ia: np.ndarray, ib: np.ndarray, weight: np.ndarray,
                       angle_tol: float = 20.0, scale_tol: float = 0.5) -> np.ndarray:
    """Flags of the matches ``(ia, ib)`` whose orientation change and log2 size ratio lie within
    ``angle_tol`` degrees and ``scale_tol`` of the dominant ones (the weighted mode of a 2-D
    histogram of 10-degree and 0.25-octave bins, smoothed over neighbouring bins, angles circular)."""
    if len(ia) == 0:
        return np.zeros(0, bool)
    dtheta = (kpb.angle[ib] - kpa.angle[ia]) % 360.0
    dscale = np.log2(np.maximum(kpb.size[ib], 1e-6) / np.maximum(kpa.size[ia], 1e-6))
    a_bins, s_edges = 36, np.arange(-4.0, 4.01, 0.25)
    ai = np.minimum((dtheta / 10.0).astype(int), a_bins - 1)
    si = np.clip(np.digitize(dscale, s_edges) - 1, 0, len(s_edges) - 2)
    hist = np.zeros((a_bins, len(s_edges) - 1))
    np.add.at(hist, (ai, si), weight)
    smooth = sum(np.roll(np.roll(hist, da, 0), ds, 1) for da in (-1, 0, 1) for ds in (-1, 0, 1))
    pa, ps = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    near = (ai == pa) & (si == ps)
    if not weight[near].sum() > 0:  # the smoothed peak lies between occupied bins: take its neighbourhood
        near = ((ai - pa + 1) % a_bins <= 2) & (np.abs(si - ps) <= 1)
    if not weight[near].sum() > 0:  # no weight anywhere (all distances at the maximum): no consistent subset
        return np.zeros(len(ia), bool)
    mode_a = math.degrees(math.atan2(np.average(np.sin(np.radians(dtheta[near])), weights=weight[near]),
                                     np.average(np.cos(np.radians(dtheta[near])), weights=weight[near])))
    mode_s = float(np.average(dscale[near], weights=weight[near]))
    da = np.abs((dtheta - mode_a + 180.0) % 360.0 - 180.0)
    return (da <= angle_tol) & (np.abs(dscale - mode_s) <= scale_tol)


def ratio_mutual_sparse(ri: np.ndarray, rj: np.ndarray, val: np.ndarray, ratio: float) -> tuple:
    """Ratio test + mutual nearest neighbour on a sparse set of candidate pairs (row, col, distance).

    A row with a single candidate passes the ratio test (its second neighbour is "infinitely"
    far). Returns ``(rows, cols, distances)`` of the pairs kept.
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


def rematch(pa: np.ndarray, pb: np.ndarray, kpa: Keypoints, kpb: Keypoints, dist: np.ndarray, h0: np.ndarray,
            first: tuple, decimation: int, ratio: float) -> tuple:
    """Ye et al.'s rematching under the initial transform ``h0`` (reference -> sensed frame).

    ``pa``/``pb``: keypoint positions of both images in the reference frame; ``first``: the
    initial inlier pairs ``(ia, ib)``; ``decimation``: the detection image's reduction factor.
    Returns ``(ia, ib, distances)`` of the rematched pairs, or the initial inliers when fewer
    than ``MIN_MATCHES`` survive.
    """
    from scipy.spatial import cKDTree

    ia0, ib0 = first
    residuals = np.linalg.norm(apply_homography(h0, pa[ia0]) - pb[ib0], axis=1)
    sa, sb, oa, ob = kpa.size, kpb.size, kpa.angle, kpb.angle
    k_scale = float(np.median(sb[ib0] / sa[ia0]))
    dtheta = np.radians(ob[ib0] - oa[ia0])
    d_orient = math.degrees(math.atan2(np.median(np.sin(dtheta)), np.median(np.cos(dtheta))))
    t_pos = max(3.0 * float(np.sqrt(np.mean(residuals ** 2))), 2.0 * decimation)
    proj = apply_homography(h0, pa)
    pairs = cKDTree(pb).query_ball_point(proj, r=t_pos)
    ri = np.repeat(np.arange(len(pa)), [len(p) for p in pairs])
    rj = np.fromiter((j for p in pairs for j in p), dtype=np.int64, count=len(ri))
    e_pos = np.linalg.norm(proj[ri] - pb[rj], axis=1)
    e_scale = np.abs(np.log(sb[rj] / (sa[ri] * k_scale)))
    e_or = np.abs(((ob[rj] - oa[ri] - d_orient) + 180.0) % 360.0 - 180.0) / 180.0
    jval = dist[ri, rj] * (1.0 + e_pos / t_pos) * (1.0 + e_scale) * (1.0 + e_or)
    ja, jb, jscore = ratio_mutual_sparse(ri, rj, jval, ratio)
    if len(ja) < MIN_MATCHES:  # fall back on the initial inliers
        ja, jb = ia0, ib0
        jscore = dist[ja, jb]
    return ja, jb, jscore
