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
    # parameter and output names (the ids headless calls use)
    REFERENCE = "REFERENCE"
    INPUT = "INPUT"
    REFERENCE_BAND = "REFERENCE_BAND"
    INPUT_BAND = "INPUT_BAND"
    TRANSFORM = "TRANSFORM"
    METHOD = "METHOD"
    REFERENCE_MASK = "REFERENCE_MASK"
    INPUT_MASK = "INPUT_MASK"
    RATIO = "RATIO"
    CNN_WEIGHT = "CNN_WEIGHT"
    FINE_TUNE_STEPS = "FINE_TUNE_STEPS"
    OUTPUT = "OUTPUT"
    OUTPUT_TIEPOINTS = "OUTPUT_TIEPOINTS"
    OUTPUT_CHECKERBOARD = "OUTPUT_CHECKERBOARD"
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
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE, "Reference raster"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Sensed raster (to be registered)"))
        # optional with default 1: QGIS 3.22 rejects an omitted mandatory band instead of using its default
        self.addParameter(QgsProcessingParameterBand(self.REFERENCE_BAND, "Reference band", 1, self.REFERENCE,
                                                    optional=True))
        self.addParameter(QgsProcessingParameterBand(self.INPUT_BAND, "Sensed band", 1, self.INPUT, optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.TRANSFORM, "Transform", [t[1] for t in TRANSFORMS],
                                                     defaultValue=2))
        self.addParameter(QgsProcessingParameterEnum(self.METHOD, "Features", [m[1] for m in METHODS], defaultValue=0))
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE_MASK, "Reference mask (non-zero = clouds)",
                                                            optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT_MASK, "Sensed mask (non-zero = clouds)",
                                                            optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.RATIO, "Nearest-neighbour ratio",
                                                       QgsProcessingParameterNumber.Double, 0.9, minValue=0.1,
                                                       maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(self.CNN_WEIGHT, "CNN weight in the fused distance",
                                                       QgsProcessingParameterNumber.Double, 0.3, minValue=0.0,
                                                       maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(self.FINE_TUNE_STEPS, "Fine-tune the CNN on the reference "
                                                       "(steps, 0 = no)", QgsProcessingParameterNumber.Integer, 0,
                                                       minValue=0))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Registered raster"))
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT_TIEPOINTS, "Tie points"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_CHECKERBOARD, "Checkerboard",
                                                                  optional=True, createByDefault=False))
        for key, _, label in FIGURES:
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.registration import MatchOptions, RegistrationOutputs, fine_tune_on_reference, register

        reference = self.raster_info(parameters, self.REFERENCE, context)
        sensed = self.raster_info(parameters, self.INPUT, context)
        masks = (self.raster_info(parameters, self.REFERENCE_MASK, context, optional=True),
                 self.raster_info(parameters, self.INPUT_MASK, context, optional=True))
        transform = TRANSFORMS[self.parameterAsEnum(parameters, self.TRANSFORM, context)][0]
        method = METHODS[self.parameterAsEnum(parameters, self.METHOD, context)][0]
        bands = (self.parameterAsInt(parameters, self.REFERENCE_BAND, context) or 1,
                 self.parameterAsInt(parameters, self.INPUT_BAND, context) or 1)
        outputs = RegistrationOutputs(
            registered=self.output_path(self.parameterAsOutputLayer(parameters, self.OUTPUT, context)),
            tiepoints=self.output_path(self.parameterAsOutputLayer(parameters, self.OUTPUT_TIEPOINTS, context)),
            checkerboard=self.parameterAsOutputLayer(parameters, self.OUTPUT_CHECKERBOARD, context) or None)
        steps = self.parameterAsInt(parameters, self.FINE_TUNE_STEPS, context)
        with tempfile.TemporaryDirectory(prefix="cloudfree-register-") as tmp:
            descriptor_model_path = None
            if method == "sift_cnn" and steps > 0:
                feedback.pushInfo(f"Fine-tuning the CNN descriptor on '{reference.name}' for {steps} steps")
                descriptor_model_path = fine_tune_on_reference(reference, bands[0], steps,
                                                               os.path.join(tmp, "descriptor.safetensors"),
                                                               cancelled=cancelled)
            match = MatchOptions(ratio=self.parameterAsDouble(parameters, self.RATIO, context),
                                 cnn_weight=self.parameterAsDouble(parameters, self.CNN_WEIGHT, context),
                                 descriptor_model_path=descriptor_model_path)
            feedback.pushInfo(f"Registering '{sensed.name}' onto '{reference.name}' ({method}, {transform})")
            result = register(reference, sensed, outputs, transform=transform, method=method, bands=bands,
                              masks=masks, match=match, progress=progress, cancelled=cancelled)
        feedback.pushInfo(result.summary())
        results = {self.OUTPUT: outputs.registered, self.OUTPUT_TIEPOINTS: outputs.tiepoints}
        if outputs.checkerboard:
            results[self.OUTPUT_CHECKERBOARD] = outputs.checkerboard
        for key, attr, _ in FIGURES:
            value = getattr(result, attr)
            results[key] = int(value) if key == "N_RED" else float(value)
        return results
