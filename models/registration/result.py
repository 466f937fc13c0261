"""The outcome of one registration: figures, correspondences and the fitted mapping.

Coordinates: pixel positions are ``(x, y) = (column, row)`` with integer values at pixel
centres, in the raster they refer to. ``shift_x``/``shift_y`` (reference pixels, at the
reference centre, positive = sensed content lies right/below where its georeferencing puts
it), ``rotation`` (degrees, positive clockwise on screen) and ``scale`` (sensed/reference size)
describe the misregistration relative to the georeferencing of both rasters.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .transforms import GeometricTransform, apply_homography


@dataclass
class RegistrationResult:
    """Figures and correspondences of one registration.

    ``ref_points`` / ``sensed_points`` are ``(N, 2)`` pixel positions (x, y; integer = pixel
    centre) in the reference and in the sensed raster; ``inliers`` flags the correct ones and
    ``residuals`` are their distances (reference pixels) to the fitted transform. ``rms_all``:
    RMS residual of the inliers; ``rms_loo``: leave-one-out RMS; ``n_red``: number of correct
    correspondences (inliers); ``rms_check``: RMS error at ``n_check`` independent check points
    (None without them; the seed's RMS on check points). ``geometric_transform`` maps reference pixels to sensed positions
    in the reference frame and ``grid_to_sensed`` (3x3) those to sensed pixels.
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
    rms_check: Optional[float] = None  # RMS error at independent check points (reference pixels)
    n_check: int = 0
    out_path: Optional[str] = None
    tiepoints_path: Optional[str] = None
    checkerboard_path: Optional[str] = None
    seconds: float = 0.0
    # counts along the pipeline: ratio-test matches, RANSAC inliers, rematched pairs, their inliers,
    # phase-correlation windows that gave a shift
    stages: dict = field(default_factory=dict)
    geometric_transform: Optional[GeometricTransform] = field(default=None, repr=False)
    grid_to_sensed: Optional[np.ndarray] = field(default=None, repr=False)

    def to_sensed(self, ref_xy: np.ndarray) -> np.ndarray:
        """Map ``(N, 2)`` reference pixel positions to sensed pixel positions."""
        positions = self.geometric_transform.apply(np.asarray(ref_xy, dtype=np.float64).reshape(-1, 2))
        return apply_homography(self.grid_to_sensed, positions)

    def summary(self) -> str:
        return (f"{self.method}/{self.transform}: shift ({self.shift_x:+.3f}, {self.shift_y:+.3f}) px, "
                f"rotation {self.rotation:+.4f} deg, scale {self.scale:.5f}, RMS_all {self.rms_all:.3f} px, "
                f"RMS_LOO {self.rms_loo:.3f} px, N_red {self.n_red} of {self.n_matches} matches"
                + (f", RMS at {self.n_check} check points {self.rms_check:.3f} px" if self.rms_check is not None else "")
                + f" ({', '.join(f'{k} {v}' for k, v in self.stages.items())})")
