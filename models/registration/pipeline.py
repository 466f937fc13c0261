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
from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..errors import InputError
from ..grids import overlap_fraction
from ..normalization import stretch_to_uint8
from ..raster import RasterInfo
from ..runtime import check_cancelled, log, report
from .describe import cnn_descriptors, load_descriptor
from .detect import detect
from .match import MatchOptions, fused_distances, ratio_mutual, rematch
from .outputs import RegistrationOutputs, write_checkerboard, write_registered, write_tiepoints
from .refine import RefineOptions, refine_transform
from .result import RegistrationResult
from .sources import BandSource, detection_frame, detection_images, sensed_in_reference_crs
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

METHODS = ("sift", "sift_cnn")


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
             method: str = "sift", bands: tuple = (1, 1), masks=(None, None), match: Optional[MatchOptions] = None,
             refine: Optional[RefineOptions] = None, tps_smoothing: float = 1e-3, progress=None,
             cancelled=None) -> RegistrationResult:
    """Register ``sensed`` onto ``reference`` and write it on the reference grid.

    ``outputs``: a :class:`RegistrationOutputs`, or just the path of the registered raster, or
    ``None`` to only estimate the transform. ``transform``: one of :data:`TRANSFORMS`;
    ``method``: one of :data:`METHODS`; ``bands``: (reference band, sensed band); ``masks`` =
    (reference mask, sensed mask): each ``None``, a boolean array of the raster's shape or a
    raster (path or RasterInfo, same size) where True / non-zero marks pixels to ignore
    (clouds, shadows...). Raises :class:`InputError` (nothing written) for no overlap, too few
    matches or a degenerate fit, and :class:`ModelFileError` for ``sift_cnn`` without a
    descriptor model.
    """
    t_start = time.time()
    outputs = outputs if isinstance(outputs, RegistrationOutputs) else RegistrationOutputs(registered=outputs)
    match, refine = match or MatchOptions(), refine or RefineOptions()
    check_arguments(reference, sensed, transform, method, outputs)
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
        found = match_keypoints(sources, grid_to_sensed, transform, net, match, tps_smoothing, progress, cancelled)
        refined = refine.enabled and refine_correspondences(found, sources, grid_to_sensed, transform, refine,
                                                            progress, cancelled)
        result = final_fit(found, refined, grid_to_sensed, reference, transform, method, tps_smoothing, progress)
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
    ia, ib = ratio_mutual(dist, match.ratio)
    if len(ia) < MIN_MATCHES:
        raise InputError(f"Only {len(ia)} keypoint matches passed the ratio test (at least {MIN_MATCHES} "
                         "are needed); the images may not show the same place.")
    check_cancelled(cancelled)
    h0, inl0 = fit_ransac(pa[ia], pb[ib], transform, 3.0 * f)
    check_linear(h0[:2, :2], "initial")
    report(progress, 0.4, "Rematching with position, scale and orientation")
    ja, jb, jscore = rematch(pa, pb, kpa, kpb, dist, h0, (ia[inl0], ib[inl0]), f, match.ratio)
    fit_kind = "affine" if transform == "tps" else transform
    fitted, inl, _res = fit_robust(pa[ja], pb[jb], fit_kind, floor=max(1.0, 0.5 * f), tps_smoothing=tps_smoothing)
    _require_inliers(inl)
    reference = sources[0].info
    check_transform(fitted, reference.width, reference.height)
    stages = {"ratio_matches": int(len(ia)), "ransac_inliers": int(inl0.sum()), "rematched": int(len(ja)),
              "rematch_inliers": int(inl.sum()), "refined_windows": 0}
    check_cancelled(cancelled)
    return Correspondences(pa[ja], pb[jb], inl, jscore, fitted, f, (len(kpa), len(kpb)), stages)


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
