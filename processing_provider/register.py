"""cloudfree:register - co-register a sensed raster onto a reference (SIFT + CNN features)."""

from __future__ import annotations

import os
import tempfile

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from .base import CloudFreeAlgorithm

TRANSFORMS = (("translation", "Translation"), ("similarity", "Similarity (shift, rotation, scale)"),
              ("affine", "Affine"), ("projective", "Projective"), ("tps", "Thin plate spline (local distortions)"))
METHODS = (("sift_cnn", "SIFT + CNN (Ye et al. 2018)"), ("sift", "SIFT only"))
FIGURES = (("SHIFT_X", "shift_x", "Shift x (pixels)"), ("SHIFT_Y", "shift_y", "Shift y (pixels)"),
           ("ROTATION", "rotation", "Rotation (degrees)"), ("SCALE", "scale", "Scale"),
           ("RMS_ALL", "rms_all", "RMS_all (pixels)"), ("RMS_LOO", "rms_loo", "RMS_LOO (pixels)"),
           ("N_RED", "n_red", "N_red (correct correspondences)"))


class RegisterAlgorithm(CloudFreeAlgorithm):
    NAME = "register"
    DISPLAY_NAME = "Register image (SIFT + CNN)"
    GROUP = "Registration"
    REQUIRES = ("numpy", "osgeo", "cv2", "skimage", "torch", "safetensors")
    HELP = (
        "<p>Aligns a sensed image onto a reference image: SIFT keypoints on one band of each, descriptors "
        "fused with a CNN patch descriptor (distance = (1 - w) SIFT + w CNN, w = <b>CNN weight</b>, "
        "Ye et al., GRSL 2018), nearest-neighbour <b>ratio</b> test, RANSAC, rematching with position, "
        "scale and orientation, outlier removal, then sub-pixel refinement by phase correlation around the "
        "tie points.</p>"
        "<p>Outputs: the sensed image (all bands) resampled onto the reference grid; the tie points "
        "(GeoPackage, reference CRS) with each point's residual and an inlier flag; optionally a "
        "checkerboard of reference and registered image for a visual check; and the figures SHIFT_X, "
        "SHIFT_Y (reference pixels; positive = the sensed content lies right/below where its "
        "georeferencing puts it), ROTATION (degrees, clockwise), SCALE, RMS_ALL, RMS_LOO (leave one out) "
        "and N_RED (correct correspondences).</p>"
        "<p><b>Masks</b> (optional): rasters on each image's grid; non-zero pixels (clouds) give no tie "
        "points. Works with partial overlap, a different pixel size or CRS, rotations and scale changes. "
        "No overlap, too few matches or a degenerate fit stop with an error and write nothing.</p>"
        "<p><b>Fine-tune steps</b> &gt; 0 first adapts the CNN descriptor to the reference image "
        "(self-supervised, a few seconds per 100 steps on a CPU).</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer("REFERENCE", "Reference raster"))
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Sensed raster (to be registered)"))
        # optional with default 1: QGIS 3.22 rejects an omitted mandatory band instead of using its default
        self.addParameter(QgsProcessingParameterBand("REFERENCE_BAND", "Reference band", 1, "REFERENCE", optional=True))
        self.addParameter(QgsProcessingParameterBand("INPUT_BAND", "Sensed band", 1, "INPUT", optional=True))
        self.addParameter(QgsProcessingParameterEnum("TRANSFORM", "Transform", [t[1] for t in TRANSFORMS],
                                                     defaultValue=2))
        self.addParameter(QgsProcessingParameterEnum("METHOD", "Features", [m[1] for m in METHODS], defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterLayer("REFERENCE_MASK", "Reference mask (non-zero = clouds)",
                                                            optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT_MASK", "Sensed mask (non-zero = clouds)",
                                                            optional=True))
        self.addParameter(QgsProcessingParameterNumber("RATIO", "Nearest-neighbour ratio",
                                                       QgsProcessingParameterNumber.Double, 0.9, minValue=0.1,
                                                       maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber("CNN_WEIGHT", "CNN weight in the fused distance",
                                                       QgsProcessingParameterNumber.Double, 0.3, minValue=0.0,
                                                       maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber("FINE_TUNE_STEPS", "Fine-tune the CNN on the reference "
                                                       "(steps, 0 = no)", QgsProcessingParameterNumber.Integer, 0,
                                                       minValue=0))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT", "Registered raster"))
        self.addParameter(QgsProcessingParameterVectorDestination("OUTPUT_TIEPOINTS", "Tie points"))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_CHECKERBOARD", "Checkerboard",
                                                                  optional=True, createByDefault=False))
        for key, _, label in FIGURES:
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.descriptors import fine_tune_on_reference
        from ..models.registration import register

        reference = self.raster_info(parameters, "REFERENCE", context)
        sensed = self.raster_info(parameters, "INPUT", context)
        ref_mask = self.raster_info(parameters, "REFERENCE_MASK", context, optional=True)
        sen_mask = self.raster_info(parameters, "INPUT_MASK", context, optional=True)
        transform = TRANSFORMS[self.parameterAsEnum(parameters, "TRANSFORM", context)][0]
        method = METHODS[self.parameterAsEnum(parameters, "METHOD", context)][0]
        ref_band = self.parameterAsInt(parameters, "REFERENCE_BAND", context) or 1
        out = self.output_path(self.parameterAsOutputLayer(parameters, "OUTPUT", context))
        tiepoints = self.output_path(self.parameterAsOutputLayer(parameters, "OUTPUT_TIEPOINTS", context))
        checker = self.parameterAsOutputLayer(parameters, "OUTPUT_CHECKERBOARD", context) or None
        with tempfile.TemporaryDirectory(prefix="cloudfree-register-") as tmp:
            cnn_path = None
            steps = self.parameterAsInt(parameters, "FINE_TUNE_STEPS", context)
            if method == "sift_cnn" and steps > 0:
                feedback.pushInfo(f"Fine-tuning the CNN descriptor on '{reference.name}' for {steps} steps")
                cnn_path = fine_tune_on_reference(reference, ref_band, steps, os.path.join(tmp, "cnn.safetensors"),
                                                  cancelled=cancelled)
            feedback.pushInfo(f"Registering '{sensed.name}' onto '{reference.name}' ({method}, {transform})")
            result = register(reference, sensed, out, reference_band=ref_band,
                              sensed_band=self.parameterAsInt(parameters, "INPUT_BAND", context) or 1,
                              transform=transform, method=method, masks=(ref_mask, sen_mask),
                              ratio=self.parameterAsDouble(parameters, "RATIO", context),
                              cnn_weight=self.parameterAsDouble(parameters, "CNN_WEIGHT", context),
                              tiepoints_path=tiepoints, checkerboard_path=checker, cnn_weights_path=cnn_path,
                              progress=progress, cancelled=cancelled)
        feedback.pushInfo(result.summary())
        outputs = {"OUTPUT": out, "OUTPUT_TIEPOINTS": tiepoints}
        if checker:
            outputs["OUTPUT_CHECKERBOARD"] = checker
        for key, attr, _ in FIGURES:
            value = getattr(result, attr)
            outputs[key] = int(value) if key == "N_RED" else float(value)
        return outputs
