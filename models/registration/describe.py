"""CNN patch descriptors of keypoints (the CNN half of Ye et al., GRSL 2018).

Ye, Yuanxin et al., "Remote Sensing Image Registration Using Convolutional Neural Network
Features", IEEE Geoscience and Remote Sensing Letters 15(2), 2018, fuse SIFT with features of
a CNN. The network (``networks.DescriptorCNN``, architecture ``descriptor_cnn``) is small enough
for a CPU: 64x64 grey patch in, 128-d L2-normalised vector out. Patches are sampled around
SIFT keypoints, rotated to the keypoint's orientation and scaled to its size
(:func:`extract_patches`), so the descriptor inherits SIFT's rotation and scale invariance;
each patch is standardised to zero mean and unit variance (:func:`standardise`), which removes
brightness and contrast differences.

Descriptor model files use the CloudFree format of :mod:`weights` with
``task = "registration_descriptor"``; :func:`load_descriptor` loads one (by default the shipped
``models/pretrained/registration_descriptor.safetensors``) through ``weights.load_model``.
Training and fine-tuning live in :mod:`.train`.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import ModelFileError
from ..weights import load_model, shipped_model

DESCRIPTOR_TASK = "registration_descriptor"
DESCRIPTOR_ARCHITECTURE = "descriptor_cnn"
PATCH_SIZE = 64
SUPPORT = 6.0  # a patch covers SUPPORT x keypoint size (diameter) image pixels
DEFAULT_MODEL_FILE = "registration_descriptor.safetensors"


def extract_patches(image: np.ndarray, xy: np.ndarray, size: np.ndarray | None = None,
                    angle: np.ndarray | None = None, patch: int = PATCH_SIZE, support: float = SUPPORT,
                    min_side: float = 16.0) -> np.ndarray:
    """Sample one ``patch x patch`` float32 patch per keypoint, oriented and scaled like it.

    ``xy`` is ``(N, 2)`` in array-index pixel coordinates (x = column, y = row, integer = pixel
    centre); ``size`` the keypoint diameters (default: ``patch / support``, i.e. one image pixel
    per patch pixel) and ``angle`` the orientations in degrees (OpenCV's convention, direction
    ``(cos a, sin a)`` in x-right/y-down coordinates; default 0). Outside the image is 0.
    One ``cv2.remap`` call samples all patches (bilinear).
    """
    import cv2

    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(xy)
    if n == 0:
        return np.zeros((0, patch, patch), np.float32)
    size = np.full(n, patch / support) if size is None else np.asarray(size, dtype=np.float64)
    angle = np.zeros(n) if angle is None else np.asarray(angle, dtype=np.float64)
    side = np.maximum(support * size, min_side)
    step = side / patch
    g = (np.arange(patch) - (patch - 1) / 2.0)
    u, v = np.meshgrid(g, g)  # u along x (columns), v along y (rows)
    phi = np.radians(angle)
    c, s = (np.cos(phi) * step)[:, None, None], (np.sin(phi) * step)[:, None, None]
    mx = xy[:, 0, None, None] + c * u - s * v
    my = xy[:, 1, None, None] + s * u + c * v
    out = np.empty((n, patch, patch), np.float32)
    img = np.ascontiguousarray(image, dtype=np.float32)
    chunk = max(1, 30000 // patch)  # remap maps must stay under 32767 rows
    for i in range(0, n, chunk):
        sl = slice(i, i + chunk)
        out[sl] = cv2.remap(img, mx[sl].reshape(-1, patch).astype(np.float32),
                            my[sl].reshape(-1, patch).astype(np.float32), cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0).reshape(-1, patch, patch)
    return out


def standardise(patches: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per patch: brightness and contrast invariance."""
    p = patches.astype(np.float32)
    m = p.mean(axis=(-2, -1), keepdims=True)
    sd = p.std(axis=(-2, -1), keepdims=True)
    return (p - m) / np.maximum(sd, 1e-3)


def default_model_path() -> str:
    """The descriptor model that ships with the plugin."""
    return shipped_model(DEFAULT_MODEL_FILE)


def load_descriptor(path: str | None = None, device: str = "cpu") -> tuple:
    """``(network in eval mode, metadata)`` of a descriptor model file (default: the shipped one).

    Raises :class:`ModelFileError` when the file is missing, is not a descriptor model or does
    not fit its architecture.
    """
    path = path or default_model_path()
    if not os.path.isfile(path):
        raise ModelFileError(
            f"The CNN descriptor model file '{path}' does not exist; method 'sift_cnn' needs it. "
            "Train one with models.registration.train_descriptor(...) or use method 'sift'."
        )
    return load_model(path, task=DESCRIPTOR_TASK, device=device)


def cnn_descriptors(net, image: np.ndarray, xy: np.ndarray, size: np.ndarray, angle: np.ndarray,
                    batch: int = 256, device: str = "cpu") -> np.ndarray:
    """``(N, dim)`` L2-normalised descriptors of the keypoints of a 0..1 stretched ``image``."""
    import torch

    patches = standardise(extract_patches(image, xy, size, angle, PATCH_SIZE))
    out = []
    with torch.no_grad():
        for i in range(0, len(patches), batch):
            t = torch.from_numpy(patches[i:i + batch])[:, None].to(device)
            out.append(net(t).cpu().numpy())
    if not out:
        return np.zeros((0, 128), np.float32)
    d = np.concatenate(out).astype(np.float32)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
