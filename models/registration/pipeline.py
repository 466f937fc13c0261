"""The registration pipeline: :func:`register` as a recipe of named stages.

Method: Ye et al., "Remote Sensing Image Registration Using Convolutional Neural Network
Features", IEEE GRSL 15(2), 2018, with a sub-pixel phase-correlation stage added because real
Sentinel-2 misregistrations are fractions of a pixel.

1. **Keypoints** (:mod:`.sources`, :mod:`.detect`): one band of each image, the sensed one
   resampled into the reference frame over the overlap (decimated for very large overlaps),
   stretched to uint8; SIFT keypoints on the valid, unmasked pixels, spread over a grid.
2. **Descriptors** (:mod:`.detect`, :mod:`.describe`): RootSIFT and, for ``sift_cnn``, the CNN
   descriptor of the patch around each keypoint; fused distance (:mod:`.match`).
3. **Matching** (:mod:`.match`, :mod:`.transforms`): ratio test and mutual nearest neighbours,
   OpenCV RANSAC, Ye et al.'s rematching, least squares with iterative outlier removal.
4. **Refinement** (:mod:`.refine`): phase correlation of windows around the tie points.
5. **Final fit and figures**: RMS of all inliers, leave-one-out RMS, shift, rotation and scale
   at the reference centre (:class:`.RegistrationResult`).
6. **Outputs** (:mod:`.outputs`): registered raster, tie points, checkerboard.

Pure Python (numpy, GDAL, OpenCV, scikit-image; torch only for ``sift_cnn``): no qgis imports.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from ..errors import InputError
from ..grids import overlap_fraction
from ..normalization import stretch_to_uint8
from ..radar import looks_like_radar
from ..raster import RasterInfo
from ..runtime import check_cancelled, log, report
from .describe import cnn_descriptors, load_descriptor
from .detect import detect
from .match import MatchOptions, candidate_matches, consistent_matches, fused_distances, ratio_mutual, rematch
from .outputs import RegistrationOutputs, write_checkerboard, write_registered, write_tiepoints
from .refine import RefineOptions, refine_transform
from .structure import (
    StructureOptions,
    local_tie_points,
    matching_image,
    mirrored_peak,
    similarity_search,
    structure_bands,
)
from .result import RegistrationResult
from .sources import BandSource, detection_frame, detection_image, detection_images, sensed_in_reference_crs
from .transforms import (
    MIN_MATCHES,
    TRANSFORMS,
    GeometricTransform,
    apply_homography,
    check_linear,
    check_transform,
    fit_ransac,
    fit_robust,
    loo_rms,
    pixel_to_map,
)

METHODS = ("sift", "sift_cnn", "structure", "auto")
STRONG_INLIERS = 15  # an initial RANSAC fit with fewer inliers than this is challenged by MAGSAC++ on more candidates


@dataclass
class Correspondences:
    """Keypoint correspondences on their way through the pipeline (sensed positions in the reference frame)."""

    ref_points: np.ndarray
    sensed_points: np.ndarray
    inliers: np.ndarray
    score: np.ndarray
    transform: GeometricTransform
    decimation: int
    n_keypoints: tuple
    stages: dict


def register(reference: RasterInfo, sensed: RasterInfo, outputs=None, *, transform: str = "affine",
             method: str = "auto", bands: tuple = (1, 1), masks=(None, None), match: Optional[MatchOptions] = None,
             refine: Optional[RefineOptions] = None, structure: Optional[StructureOptions] = None,
             check_points: Optional[np.ndarray] = None, tps_smoothing: float = 1e-3, progress=None,
             cancelled=None) -> RegistrationResult:
    """Register ``sensed`` onto ``reference`` and write it on the reference grid.

    ``outputs``: a :class:`RegistrationOutputs`, or just the path of the registered raster, or
    ``None`` to only estimate the transform. ``transform``: one of :data:`TRANSFORMS`;
    ``method``: one of :data:`METHODS` (``auto``: ``structure`` when either layer is radar, else
    ``sift``, what measured best on each modality pair, README; and ``structure`` when SIFT finds
    no consistent transform between two optical images, as between seasons); ``bands``: (reference band, sensed band); ``masks`` =
    (reference mask, sensed mask): each ``None``, a boolean array of the raster's shape or a
    raster (path or RasterInfo, same size) where True / non-zero marks pixels to ignore
    (clouds, shadows...). Raises :class:`InputError` (nothing written) for no overlap, too few
    matches or a degenerate fit, and :class:`ModelFileError` for ``sift_cnn`` without a
    descriptor model. ``structure``: the search space of the ``structure`` method.
    ``check_points``: ``(N, 4)`` independent check points, reference map x, y and the true
    sensed map x, y of the same ground point; their RMS error is ``rms_check``.
    """
    t_start = time.time()
    outputs = outputs if isinstance(outputs, RegistrationOutputs) else RegistrationOutputs(registered=outputs)
    match, refine = match or MatchOptions(), refine or RefineOptions()
    check_arguments(reference, sensed, transform, method, outputs)
    radar = (looks_like_radar(reference), looks_like_radar(sensed))
    requested, method = method, choose_method(method, radar)
    net = load_descriptor(match.descriptor_model_path)[0] if method == "sift_cnn" else None
    report(progress, 0.0, "Checking the overlap")
    if overlap_fraction(sensed, reference) <= 0:
        raise InputError(f"Layer '{sensed.name}' does not overlap '{reference.name}'; nothing to register.")
    # the folder holds a reprojected VRT only; writers are atomic: an error leaves nothing partial behind
    with tempfile.TemporaryDirectory(prefix="cloudfree_reg_") as folder:
        sensed_work = sensed_in_reference_crs(sensed, reference, folder)
        grid_to_sensed = np.linalg.inv(pixel_to_map(sensed_work.geotransform)) @ pixel_to_map(reference.geotransform)
        masks = masks or (None, None)
        sources = (BandSource(reference, bands[0], masks[0], "reference"),
                   BandSource(sensed_work, bands[1], masks[1], "sensed"))
        found, method = correspondences(sources, grid_to_sensed, transform, method, requested, net, match,
                                        structure or StructureOptions(), radar, tps_smoothing, progress, cancelled)
        refined = method == "structure" or (  # structure: dense, sub-pixel tie points already
            refine.enabled and refine_correspondences(found, sources, grid_to_sensed, transform, refine, progress,
                                                      cancelled))
        result = final_fit(found, refined, grid_to_sensed, reference, transform, method, tps_smoothing, progress)
        if check_points is not None:
            result.rms_check, result.n_check = check_point_rms(result, reference, sensed_work, check_points)
        check_cancelled(cancelled)
        write_outputs(result, reference, (sensed, sensed_work), bands, outputs, progress, cancelled)
        result.seconds = time.time() - t_start
    report(progress, 1.0, result.summary())
    log.info("Registration: %s", result.summary())
    return result


def check_arguments(reference: RasterInfo, sensed: RasterInfo, transform: str, method: str,
                    outputs: RegistrationOutputs) -> None:
    """:class:`InputError` for an unknown transform or method, or an output that is one of the inputs."""
    if transform not in TRANSFORMS:
        raise InputError(f"Unknown transform '{transform}'; use one of {', '.join(TRANSFORMS)}.")
    if method not in METHODS:
        raise InputError(f"Unknown method '{method}'; use one of {', '.join(METHODS)}.")
    for p in outputs.paths():
        if any(os.path.abspath(str(p)) == os.path.abspath(x) for x in (reference.path, sensed.path)):
            raise InputError(f"The output {p} is one of the inputs; choose another file, inputs are never modified.")


# --------------------------------------------------------------------------- keypoints and matches


def correspondences(sources: tuple, grid_to_sensed: np.ndarray, transform: str, method: str, requested: str, net,
                    match: MatchOptions, structure: StructureOptions, radar: tuple, tps_smoothing: float,
                    progress=None, cancelled=None) -> tuple:
    """``(correspondences, method that found them)``. With ``auto`` on two optical images, SIFT
    first, and when SIFT finds no consistent transform (other seasons: keypoints that do not
    repeat, contrasts that invert) the ``structure`` method, with a log line: over its own search
    (``structure``, by default rotations up to 30 degrees and scales 0.8-1.25, where georeferenced
    images lie), then over the range SIFT covers (any rotation, scales 0.5-2). When every attempt
    fails, the error gives SIFT's reason and the structure method's last."""
    if method == "structure":
        return structure_correspondences(sources, grid_to_sensed, transform, structure, radar,
                                         match.max_detect_pixels, progress, cancelled), method
    try:
        return match_keypoints(sources, grid_to_sensed, transform, net, match, tps_smoothing, progress,
                               cancelled), method
    except InputError as sift_error:
        if requested != "auto":
            raise
        log.info("SIFT found no transform (%s); trying the structure method.", sift_error)
        report(progress, 0.1, "SIFT found no consistent transform; trying the structure method")
        lo, hi = structure.scale_range
        wide = replace(structure, max_rotation=180.0, scale_range=(min(lo, 0.5), max(hi, 2.0)))
        for k, options in enumerate([structure] + ([wide] if wide != structure else [])):
            if k:
                log.info("The structure search found no match up to %g degrees; searching any rotation and "
                         "scales %g-%g.", structure.max_rotation, *wide.scale_range)
            try:
                found = structure_correspondences(sources, grid_to_sensed, transform, options, radar,
                                                  match.max_detect_pixels, progress, cancelled)
            except InputError as exc:
                structure_error = exc
                continue
            found.stages["fallback_from"] = "sift"
            found.stages["structure_search"] = (options.max_rotation, options.scale_range)
            return found, "structure"
        raise InputError(f"SIFT: {sift_error} Structure method: {structure_error}") from None


def match_keypoints(sources: tuple, grid_to_sensed: np.ndarray, transform: str, net, match: MatchOptions,
                    tps_smoothing: float, progress=None, cancelled=None) -> Correspondences:
    """Keypoints of both images, matched, fitted with RANSAC, rematched and fitted robustly."""
    kpa, kpb, frame, images = _detect_keypoints(sources, grid_to_sensed, match, progress, cancelled)
    f = frame.factor
    pa = apply_homography(frame.to_reference, kpa.xy)
    pb = apply_homography(frame.to_reference, kpb.xy)  # sensed keypoints, reference frame
    report(progress, 0.3, "Matching descriptors")
    cnn = [None, None]
    if net is not None:
        cnn = [cnn_descriptors(net, image.astype(np.float32) / 255.0, kp.xy, kp.size, kp.angle)
               for kp, image in ((kpa, images[0]), (kpb, images[1]))]
    dist = fused_distances(kpa.descriptors, kpb.descriptors, cnn[0], cnn[1], match.cnn_weight)
    h0, (ia, ib), n_ratio = initial_fit(pa, pb, kpa, kpb, dist, transform, f, match)
    check_cancelled(cancelled)
    check_linear(h0[:2, :2], "initial")
    report(progress, 0.4, "Rematching with position, scale and orientation")
    ja, jb, jscore = rematch(pa, pb, kpa, kpb, dist, h0, (ia, ib), f, match.ratio)
    fit_kind = "affine" if transform == "tps" else transform
    fitted, inl, _res = fit_robust(pa[ja], pb[jb], fit_kind, floor=max(1.0, 0.5 * f), tps_smoothing=tps_smoothing)
    _require_inliers(inl)
    reference = sources[0].info
    check_transform(fitted, reference.width, reference.height)
    stages = {"ratio_matches": n_ratio, "ransac_inliers": int(len(ia)), "rematched": int(len(ja)),
              "rematch_inliers": int(inl.sum()), "refined_windows": 0}
    check_cancelled(cancelled)
    return Correspondences(pa[ja], pb[jb], inl, jscore, fitted, f, (len(kpa), len(kpb)), stages)


def initial_fit(pa: np.ndarray, pb: np.ndarray, kpa, kpb, dist: np.ndarray, transform: str, f: int,
                match: MatchOptions) -> tuple:
    """``(3x3 initial transform, (reference, sensed) indices of its inliers, ratio-test matches)``.

    The ratio-test matches with RANSAC first; when that fit is weak (fewer than
    :data:`STRONG_INLIERS` inliers or under a fifth of the matches), the ``k`` nearest candidates
    of every keypoint that agree with the dominant change of orientation and scale are fitted with
    MAGSAC++ as well, and the fit with more inliers is kept.
    """
    ia, ib = ratio_mutual(dist, match.ratio)
    best, failure = None, f"only {len(ia)} keypoint matches passed the ratio test"

    def attempt(a, b, robust):  # a plausible fit (checked like the final one) or the reason there is none
        nonlocal best, failure
        if len(a) < MIN_MATCHES:
            return
        try:
            h, inl = fit_ransac(pa[a], pb[b], transform, 3.0 * f, robust=robust)
            check_linear(h[:2, :2], "initial")
        except InputError as exc:
            failure = failure if best is not None else str(exc)
            return
        if best is None or inl.sum() > len(best[1][0]):
            best = (h, (a[inl], b[inl]))

    attempt(ia, ib, "ransac")
    if best is None or len(best[1][0]) < max(STRONG_INLIERS, 0.2 * len(ia)):
        ca, cb, rank = candidate_matches(dist, match.neighbours)
        ok = consistent_matches(kpa, kpb, ca, cb, 1.0 / (1.0 + rank))
        attempt(ca[ok], cb[ok], "magsac")
    if best is None:
        raise InputError(f"No consistent transform found ({failure}; at least {MIN_MATCHES} consistent "
                         "matches are needed); the images may not show the same place, or may need the "
                         "'structure' method (radar, other sensors).")
    return best[0], best[1], int(len(ia))


def _detect_keypoints(sources: tuple, grid_to_sensed: np.ndarray, match: MatchOptions, progress, cancelled) -> tuple:
    """``(reference keypoints, sensed keypoints, detection frame, (reference, sensed) uint8 images)``."""
    reference, sensed = sources[0].info, sources[1].info
    frame = detection_frame(reference, sensed, grid_to_sensed, match.max_detect_pixels)
    report(progress, 0.05, "Reading the images")
    (a_img, a_ok), (b_img, b_ok) = detection_images(sources, frame, grid_to_sensed)
    if a_ok.sum() < 1024 or b_ok.sum() < 1024 or (a_ok & b_ok).sum() < 1024:
        raise InputError(f"'{sensed.name}' and '{reference.name}' share too few valid, unmasked pixels "
                         "to register.")
    check_cancelled(cancelled)
    a_u8, b_u8 = stretch_to_uint8(a_img, a_ok), stretch_to_uint8(b_img, b_ok)
    report(progress, 0.15, "Detecting SIFT keypoints")
    kpa = detect(a_u8, a_ok, match.max_keypoints)
    kpb = detect(b_u8, b_ok, match.max_keypoints)
    if min(len(kpa), len(kpb)) < MIN_MATCHES:
        raise InputError(f"Too few keypoints ({len(kpa)} in '{reference.name}', {len(kpb)} in "
                         f"'{sensed.name}') over the overlap; check the bands, masks and overlap.")
    check_cancelled(cancelled)
    return kpa, kpb, frame, (a_u8, b_u8)


def _require_inliers(inliers: np.ndarray) -> None:
    if inliers.sum() < MIN_MATCHES:
        raise InputError(f"Only {int(inliers.sum())} correct correspondences after outlier removal "
                         f"(at least {MIN_MATCHES} needed).")


def choose_method(method: str, radar: tuple) -> str:
    """``auto`` -> ``structure`` when either image is radar (SIFT keypoints do not repeat between
    radar and optical), else ``sift`` (the CNN half adds no accuracy on optical pairs, README)."""
    if method != "auto":
        return method
    return "structure" if any(radar) else "sift"


def structure_correspondences(sources: tuple, grid_to_sensed: np.ndarray, transform: str, options: StructureOptions,
                              radar: tuple, max_pixels: int, progress=None, cancelled=None) -> Correspondences:
    """Tie points of the ``structure`` method: a global similarity search over the detection images
    (every band :func:`structure_stacks` fuses), refused when its peak does not stand out from the
    search against the sensed image mirrored, then windows matched locally, twice (the second pass
    around the first pass's robust fit)."""
    reference, sensed = sources[0].info, sources[1].info
    frame = detection_frame(reference, sensed, grid_to_sensed, max_pixels)
    report(progress, 0.05, "Reading the images")
    ref, sen = structure_stacks(sources, frame, grid_to_sensed, radar, options.fuse_bands)
    if ref[1].sum() < 1024 or sen[1].sum() < 1024:
        raise InputError(f"'{sensed.name}' and '{reference.name}' share too few valid, unmasked pixels "
                         "to register.")
    report(progress, 0.15, "Searching rotation, scale and shift by image structure")
    h, peak = similarity_search(ref, sen, options, cancelled)
    null = mirrored_peak(ref, sen, options, cancelled) if options.min_contrast > 0 else 0.0
    if options.min_contrast > 0 and peak < options.min_contrast * null:
        raise InputError(f"'{sensed.name}' does not match '{reference.name}' by image structure: the best "
                         f"correlation ({peak:.3f}) is not {options.min_contrast} times the one against the "
                         f"image mirrored ({null:.3f}); the images may not show the same place. If they do (little "
                         f"structure, as in winter), lower the no-match check (0 turns it off) and judge the result.")
    check_linear(h[:2, :2], "initial")
    fit_kind = "affine" if transform == "tps" else transform
    stages = {"structure_windows": 0, "structure_bands": (len(ref[0]), len(sen[0])),
              "structure_peak": round(float(peak), 4), "structure_mirrored_peak": round(float(null), 4)}
    for radius, label in ((3, 0.35), (2, 0.5)):
        report(progress, label, "Matching windows of image structure")
        rp, sp, cost = local_tie_points(ref, sen, h, options, radius, cancelled)
        if len(rp) < MIN_MATCHES:
            raise InputError(f"Only {len(rp)} windows of '{sensed.name}' matched '{reference.name}' by image "
                             f"structure (at least {MIN_MATCHES} are needed); the images may not show the same "
                             "place, or may share too little texture.")
        fitted, inl, _res = fit_robust(rp, sp, fit_kind, floor=0.5)
        _require_inliers(inl)
        h = fitted.h
        stages["structure_windows"] = int(len(rp))
    to_ref = frame.to_reference
    pa, pb = apply_homography(to_ref, rp), apply_homography(to_ref, sp)
    transform_ref, *_ = fit_robust(pa, pb, fit_kind, floor=0.5 * frame.factor)  # in reference pixels
    return Correspondences(pa, pb, inl, cost, transform_ref, frame.factor, (len(rp), len(rp)),
                           {**stages, "rematch_inliers": int(inl.sum()), "refined_windows": int(len(rp))})


def structure_stacks(sources: tuple, frame, grid_to_sensed: np.ndarray, radar: tuple, fuse_bands: bool) -> tuple:
    """``((reference stack, valid), (sensed stack, valid))`` on the detection frame, as the
    ``structure`` method reads them: each layer's chosen band, with ``fuse_bands`` the other bands
    :func:`.structure.structure_bands` picks, radar made comparable (:func:`.structure.matching_image`);
    a pixel is valid where every band of its layer is."""
    numbers = [structure_bands(s.info, s.band_no, r) if fuse_bands else [s.band_no] for s, r in zip(sources, radar)]
    stacks = []
    for k, source in enumerate(sources):
        images, valid = [], None
        for band in numbers[k]:
            img, ok = detection_image(source.with_band(band), frame, grid_to_sensed if k else None)
            images.append(matching_image(img, ok, radar[k]))
            valid = ok if valid is None else valid & ok
        stacks.append((np.stack(images), valid))
    return tuple(stacks)


def check_point_rms(result: RegistrationResult, reference: RasterInfo, sensed: RasterInfo,
                    points: np.ndarray) -> tuple:
    """``(RMS in reference pixels, count)`` of the fitted mapping's error at independent check
    points ``(N, 4)``: reference map x, y -> where the mapping puts them on the sensed image, against
    the true sensed map x, y, both expressed in reference pixels."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 4)
    if len(pts) == 0:
        raise InputError("The check point layer holds no point.")
    to_ref_px = np.linalg.inv(pixel_to_map(reference.geotransform))
    to_sen_px = np.linalg.inv(pixel_to_map(sensed.geotransform))
    ref_px = apply_homography(to_ref_px, pts[:, :2])
    predicted = result.to_sensed(ref_px)                      # native sensed pixels
    true = apply_homography(to_sen_px, pts[:, 2:])
    # sensed pixels -> reference pixels: the ratio of their pixel sizes
    scale = math.sqrt(abs(np.linalg.det(pixel_matrix(sensed)) / np.linalg.det(pixel_matrix(reference))))
    err = np.linalg.norm(predicted - true, axis=1) * scale
    return float(np.sqrt(np.mean(err ** 2))), int(len(pts))


def pixel_matrix(info: RasterInfo) -> np.ndarray:
    """The 2x2 linear part of a raster's geotransform (map units per pixel)."""
    g = info.geotransform
    return np.array([[g[1], g[2]], [g[4], g[5]]])


# --------------------------------------------------------------------------- refinement and final fit


def refine_correspondences(found: Correspondences, sources: tuple, grid_to_sensed: np.ndarray, transform: str,
                            refine: RefineOptions, progress=None, cancelled=None) -> bool:
    """Phase-correlation refinement of ``found`` in place; False when too few windows were usable."""
    report(progress, 0.5, "Sub-pixel refinement by phase correlation")
    points = (found.ref_points, found.sensed_points, found.inliers, found.score)
    refinement = refine_transform(sources, grid_to_sensed, found.transform, points, transform, found.decimation,
                                  refine.window, cancelled)
    if refinement is None:
        log.warning("Phase-correlation refinement found too few usable windows; keeping keypoint matches.")
        return False
    found.transform = refinement.transform
    found.ref_points, found.sensed_points = refinement.ref_points, refinement.sensed_points
    found.stages["refined_windows"] = refinement.windows
    found.stages["refine_passes"] = refinement.passes
    return True


def final_fit(found: Correspondences, refined: bool, grid_to_sensed: np.ndarray, reference: RasterInfo,
              transform: str, method: str, tps_smoothing: float, progress=None) -> RegistrationResult:
    """The final robust fit of the correspondences and the figures of the misregistration."""
    report(progress, 0.65, "Final fit")
    ref_pts, sen_pts, f = found.ref_points, found.sensed_points, found.decimation
    floor = 0.1 if refined else max(1.0, 0.5 * f)
    fitted, inl, res = fit_robust(ref_pts, sen_pts, transform, floor=floor, tps_smoothing=tps_smoothing)
    _require_inliers(inl)
    check_transform(fitted, reference.width, reference.height)
    centre = np.array([(reference.width - 1) / 2.0, (reference.height - 1) / 2.0])
    shift = fitted.apply(centre[None])[0] - centre
    jac = fitted.jacobian(centre)
    full = grid_to_sensed @ fitted.h
    return RegistrationResult(
        transform=transform, method=method, shift_x=float(shift[0]), shift_y=float(shift[1]),
        rotation=math.degrees(math.atan2(jac[1, 0] - jac[0, 1], jac[0, 0] + jac[1, 1])),
        scale=math.sqrt(abs(np.linalg.det(jac))), rms_all=float(np.sqrt(np.mean(res[inl] ** 2))),
        rms_loo=loo_rms(ref_pts[inl], sen_pts[inl], transform, tps_smoothing), n_red=int(inl.sum()),
        n_matches=len(ref_pts), ref_points=ref_pts, sensed_points=apply_homography(grid_to_sensed, sen_pts),
        inliers=inl, residuals=res, matrix=None if transform == "tps" else full / full[2, 2],
        n_keypoints=found.n_keypoints, refined=refined, stages=found.stages, geometric_transform=fitted,
        grid_to_sensed=grid_to_sensed,
    )


def write_outputs(result: RegistrationResult, reference: RasterInfo, sensed: tuple, bands: tuple,
                  outputs: RegistrationOutputs, progress=None, cancelled=None) -> None:
    """Write the files ``outputs`` asks for; ``sensed``: (the input, the same in the reference CRS)."""
    original, sensed_work = sensed
    if outputs.registered:
        report(progress, 0.7, "Writing the registered image")
        result.out_path = write_registered(result, reference, sensed_work, outputs,
                                           protect=(reference.path, original.path), progress=progress,
                                           cancelled=cancelled)
    if outputs.tiepoints:
        report(progress, 0.9, "Writing tie points")
        result.tiepoints_path = write_tiepoints(outputs.tiepoints, result, reference)
    if outputs.checkerboard:
        report(progress, 0.95, "Writing the checkerboard")
        result.checkerboard_path = write_checkerboard(result, reference, sensed_work, bands, outputs, cancelled)
