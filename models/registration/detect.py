"""SIFT keypoints, spread over the image, with RootSIFT descriptors.

OpenCV SIFT detects keypoints on a uint8 image, on the pixels that hold data and are not
masked (the usable area is eroded a little so that the edges of nodata or clouds give no
keypoints); the strongest responses are kept per cell of a grid so that they spread over the
overlap. Descriptors are RootSIFT (Arandjelovic and Zisserman 2012): L1-normalised, square
root, unit L2 norm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np


@dataclass
class Keypoints:
    """Keypoints of one detection image: positions ``xy`` ``(N, 2)`` (x, y in the image's pixels),
    diameters ``size``, orientations ``angle`` (degrees, OpenCV's convention) and RootSIFT
    ``descriptors`` ``(N, 128)`` float32."""

    xy: np.ndarray
    size: np.ndarray
    angle: np.ndarray
    descriptors: np.ndarray

    def __len__(self) -> int:
        return len(self.xy)


def detect(image_u8: np.ndarray, mask: Optional[np.ndarray] = None, max_keypoints: int = 4000,
           grid: int = 8, erode: int = 8, contrast_threshold: float = 0.02) -> Keypoints:
    """SIFT keypoints and RootSIFT descriptors of a uint8 image, spread over a ``grid x grid`` grid.

    ``mask`` (True = usable) excludes nodata and clouds; it is eroded by ``erode`` pixels so
    that the edges of excluded areas produce no keypoints. At most ``max_keypoints / grid**2``
    keypoints, the strongest, are kept per cell.
    """
    import cv2

    m = None
    if mask is not None:
        m = mask.astype(np.uint8) * 255
        if erode > 0:
            m = cv2.erode(m, np.ones((2 * erode + 1, 2 * erode + 1), np.uint8))
        if not m.any():
            return _keypoints([], None)
    sift = cv2.SIFT_create(contrastThreshold=contrast_threshold)
    kps, desc = sift.detectAndCompute(image_u8, m)  # one scale-space pyramid for both
    if desc is None or not kps:
        return _keypoints([], None)
    keep = _strongest_per_cell(np.array([k.pt for k in kps]), np.array([k.response for k in kps]),
                               image_u8.shape, grid, max_keypoints)
    return _keypoints([kps[i] for i in keep], root_sift(desc[keep]))


def _strongest_per_cell(pts: np.ndarray, resp: np.ndarray, shape: tuple, grid: int, max_keypoints: int) -> np.ndarray:
    """Indices (ascending) of the strongest ``max_keypoints / grid**2`` keypoints of every grid cell."""
    h, w = shape
    cell = np.clip((pts[:, 1] * grid / h).astype(int), 0, grid - 1) * grid + np.clip(
        (pts[:, 0] * grid / w).astype(int), 0, grid - 1)
    per_cell = max(1, max_keypoints // (grid * grid))
    order = np.lexsort((-resp, cell))  # by cell, strongest first
    sorted_cell = cell[order]
    first = np.searchsorted(sorted_cell, sorted_cell, side="left")
    rank = np.arange(len(order)) - first
    return np.sort(order[rank < per_cell])


def root_sift(desc: np.ndarray) -> np.ndarray:
    """RootSIFT of OpenCV SIFT descriptors: L1-normalise, square root, unit L2 norm (float32)."""
    desc = desc.astype(np.float32)
    desc /= np.maximum(desc.sum(axis=1, keepdims=True), 1e-12)
    desc = np.sqrt(desc)
    desc /= np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)
    return desc


def _keypoints(kps: list, desc: Optional[np.ndarray]) -> Keypoints:
    if not kps:
        return Keypoints(np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros((0, 128), np.float32))
    return Keypoints(np.array([k.pt for k in kps]), np.array([k.size for k in kps]),
                     np.array([k.angle for k in kps]), desc)
