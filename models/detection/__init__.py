"""Cloud and cloud shadow detection: a mask (0 clear, 1 cloud, 2 shadow, 255 nodata) from a pretrained detector.

Public API:

- :func:`detect_clouds` with :class:`DetectionOptions` -> :class:`DetectionSummary`: the whole recipe
- :class:`BandRoles`, :class:`ReflectanceScaling` (``PRESETS``, ``PRESET_LABELS``): which bands, what units
- :class:`CsmaskModel`, :class:`CsmaskDetector`: ukis-csmask's ONNX networks as a tile function
- :func:`class_codes`: a trainsegmentation model's classes onto the mask codes (``DetectionOptions.model``)
- mask codes ``CLEAR``, ``CLOUD``, ``SHADOW``, ``NODATA``, ``COLOURS``, :func:`classes_from_probabilities`,
  :func:`dilate_classes`, :class:`MaskCounts`
"""

from .bands import PRESET_LABELS, PRESETS, BandRoles, ReflectanceScaling, check_reflectance
from .csmask import PRODUCTS, CsmaskDetector, CsmaskModel, onnx_providers, package_folder
from .detect import DetectionOptions, DetectionSummary, detect_clouds
from .trained import class_codes
from .masks import (CLASS_NAMES, CLEAR, CLOUD, COLOURS, NODATA, PROBABILITY_SCALE, SHADOW, MaskCounts,
                    classes_from_probabilities, dilate_classes)

__all__ = ["BandRoles", "ReflectanceScaling", "PRESETS", "PRESET_LABELS", "check_reflectance", "PRODUCTS",
           "CsmaskModel", "CsmaskDetector", "onnx_providers", "package_folder", "DetectionOptions",
           "DetectionSummary", "detect_clouds", "CLEAR", "CLOUD", "SHADOW", "NODATA", "COLOURS", "CLASS_NAMES",
           "PROBABILITY_SCALE", "MaskCounts", "classes_from_probabilities", "dilate_classes", "class_codes"]
