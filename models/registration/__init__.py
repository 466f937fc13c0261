"""Image-to-image registration of a sensed raster onto a reference raster (SIFT + CNN features).

Ye et al., "Remote Sensing Image Registration Using Convolutional Neural Network Features",
IEEE GRSL 15(2), 2018, with sub-pixel phase-correlation refinement. :func:`register` runs the
pipeline; the options of its stages are :class:`MatchOptions`, :class:`RefineOptions`,
:class:`StructureOptions` and :class:`RegistrationOutputs`. Between radar and optical images the
``structure`` method (CFOG, Ye et al. 2019: oriented-gradient channels matched by NCC) replaces
keypoints; ``auto`` picks it when either layer is radar.

Modules: ``sources`` (the images as read: bands, validity, masks, the detection frame),
``detect`` (SIFT keypoints), ``describe`` (CNN patch descriptors and their model file),
``train`` (training and fine-tuning of the descriptor CNN), ``match`` (ratio / mutual matching,
fused distances, rematching), ``transforms`` (the fitted geometric transform, robust fits,
leave-one-out RMS), ``refine`` (phase-correlation refinement), ``structure`` (the CFOG method),
``result`` (figures and
correspondences), ``outputs`` (registered raster, tie points, checkerboard) and ``pipeline``
(:func:`register`).
"""

from .describe import (
    DESCRIPTOR_ARCHITECTURE,
    DESCRIPTOR_TASK,
    PATCH_SIZE,
    cnn_descriptors,
    default_model_path,
    extract_patches,
    load_descriptor,
    standardise,
)
from .detect import Keypoints, detect
from .match import MatchOptions, ratio_mutual
from .outputs import RegistrationOutputs, write_tiepoints
from .pipeline import METHODS, register
from .refine import RefineOptions
from .result import RegistrationResult
from .structure import StructureOptions, cfog, matching_image, similarity_search
from .train import (
    augmented_views,
    fine_tune_on_reference,
    prepare_training_image,
    retrieval_top1,
    train_descriptor,
)
from .transforms import MIN_MATCHES, TRANSFORMS, GeometricTransform, apply_homography, fit_robust, loo_rms

__all__ = [
    "DESCRIPTOR_ARCHITECTURE", "DESCRIPTOR_TASK", "METHODS", "MIN_MATCHES", "PATCH_SIZE", "TRANSFORMS",
    "GeometricTransform", "Keypoints", "MatchOptions", "RefineOptions", "RegistrationOutputs",
    "RegistrationResult", "StructureOptions", "apply_homography", "cfog", "augmented_views", "cnn_descriptors", "default_model_path",
    "detect", "extract_patches", "fine_tune_on_reference", "fit_robust", "load_descriptor", "loo_rms", "matching_image",
    "prepare_training_image", "ratio_mutual", "register", "retrieval_top1", "similarity_search", "standardise", "train_descriptor",
    "write_tiepoints",
]
