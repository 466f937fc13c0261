"""cloudfree:register - co-register a sensed raster onto a reference (SIFT + CNN features, or image
structure between radar and optical), with figures on independent check points."""

from __future__ import annotations

import os
import tempfile

from qgis.core import (
    QgsCoordinateTransform,
    QgsFeatureRequest,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from .base import CloudFreeAlgorithm
from .common import model_parameter, model_value

TRANSFORMS = (("translation", "Translation"), ("similarity", "Similarity (shift, rotation, scale)"),
              ("affine", "Affine"), ("projective", "Projective"), ("tps", "Thin plate spline (local distortions)"))
METHODS = (("sift_cnn", "SIFT + CNN (Ye et al. 2018)"), ("sift", "SIFT only"),
           ("structure", "Image structure (CFOG: radar, other sensors)"),
           ("auto", "Automatic: image structure when a layer is radar, else SIFT (image structure when SIFT fails)"))
DEFAULT_METHOD = 3  # auto: what measured best on each modality pair (README)
FIGURES = (("SHIFT_X", "shift_x", "Shift x (pixels)"), ("SHIFT_Y", "shift_y", "Shift y (pixels)"),
           ("ROTATION", "rotation", "Rotation (degrees)"), ("SCALE", "scale", "Scale"),
           ("RMS_ALL", "rms_all", "RMS_all (pixels)"), ("RMS_LOO", "rms_loo", "RMS_LOO (pixels)"),
           ("N_RED", "n_red", "N_red (correct correspondences)"),
           ("RMS_CHECK", "rms_check", "RMS at the check points (pixels)"), ("N_CHECK", "n_check", "Check points"))


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
    MODEL = "MODEL"
    STRUCTURE_ROTATION = "STRUCTURE_ROTATION"
    STRUCTURE_SCALE = "STRUCTURE_SCALE"
    NO_MATCH_CHECK = "NO_MATCH_CHECK"
    CHECK_POINTS = "CHECK_POINTS"
    CHECK_X_FIELD = "CHECK_X_FIELD"
    CHECK_Y_FIELD = "CHECK_Y_FIELD"
    OUTPUT = "OUTPUT"
    OUTPUT_TIEPOINTS = "OUTPUT_TIEPOINTS"
    OUTPUT_CHECKERBOARD = "OUTPUT_CHECKERBOARD"
    NAME = "register"
    DISPLAY_NAME = "Register image (SIFT + CNN, or image structure for radar)"
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
        "<p><b>Features</b>: <i>Automatic</i> (default) uses image structure when either layer is radar "
        "(Sentinel-1 VV/VH, dB or linear; speckle-filtered for matching) and SIFT otherwise, what measured "
        "best on each pair of modalities (README); when SIFT finds no consistent transform between two "
        "optical images (other seasons), it tries image structure, first over its own search (below), then "
        "over the range SIFT covers (any rotation, scales 0.5-2), and the log says so. "
        "<i>Image structure</i> (CFOG, Ye et al. 2019) matches "
        "oriented-gradient channels that ignore grey values, searching rotations up to 30 degrees and "
        "scales 0.8-1.25, over every band of an optical layer and both polarisations of a radar layer (the "
        "bands chosen above are where SIFT looks). When the best match does not stand out from a search against "
        "the sensed image mirrored, it stops with 'does not match by image structure' rather than return a "
        "guess; SIFT takes any rotation and scales 0.5-2.</p>"
        "<p>Advanced, image structure: the <b>rotation</b> (<i>STRUCTURE_ROTATION</i>, degrees either way, "
        "default 30) and <b>scale change</b> (<i>STRUCTURE_SCALE</i>, default 1.25: 0.8-1.25) searched; a wider "
        "search goes coarse to fine (180 degrees and 2: about 15 s on a small image). The <b>no-match check</b> "
        "(<i>NO_MATCH_CHECK</i>, default 1.45; 0 turns it off) is how far the best match must stand above the "
        "best one against the sensed image mirrored: when you know both images show the same place and the "
        "check refuses them (a winter scene with little structure), lower it or turn it off, and judge the "
        "result on the checkerboard and tie points.</p>"
        "<p><b>Check points</b> (optional): a point layer whose points lie on the reference, with two "
        "fields giving the true position of the same ground point on the sensed image (map x and y in the "
        "layer's CRS; default fields <i>sensed_x</i>, <i>sensed_y</i>). RMS_CHECK is the RMS error of the "
        "fitted mapping at those independent points (reference pixels), beside RMS_ALL and RMS_LOO.</p>"
        "<p><b>Fine-tune steps</b> (<i>FINE_TUNE_STEPS</i>) &gt; 0 first adapts the CNN descriptor to the reference image "
        "(self-supervised, a few seconds per 100 steps on a CPU), starting from <b>MODEL</b>.</p>"
        "<p><b>CNN descriptor model</b> (<i>MODEL</i>, advanced): a descriptor model file of your own (task "
        "registration_descriptor, trained with models.registration.train_descriptor) or a shipped model's name; "
        "empty = the shipped one. Only method SIFT + CNN uses it; a file of another task is refused by name.</p>"
        "<p><b>Reference raster</b> and <b>sensed raster</b> (the one to be registered, <i>INPUT</i>); "
        "<b>reference band</b> and <b>sensed band</b>: the band of each that is matched (default 1; pick one "
        "where both show the same ground, e.g. NIR with NIR). <b>Transform</b>: translation, similarity "
        "(shift, rotation, scale), affine, projective, or a thin plate spline for local distortions. "
        "<b>Reference mask</b> and <b>sensed mask</b>: see Masks. <b>Check points: sensed map x field</b> and "
        "<b>y field</b> (<i>CHECK_X_FIELD</i>, <i>CHECK_Y_FIELD</i>): see Check points.</p>"
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
        self.addParameter(QgsProcessingParameterEnum(self.METHOD, "Features", [m[1] for m in METHODS],
                                                     defaultValue=DEFAULT_METHOD))
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
        model = model_parameter(self.MODEL, "CNN descriptor model (empty = the shipped one)", ("registration_descriptor",))
        model.setFlags(model.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(model)
        self.addParameter(QgsProcessingParameterNumber(self.FINE_TUNE_STEPS, "Fine-tune the CNN on the reference "
                                                       "(steps, 0 = no)", QgsProcessingParameterNumber.Integer, 0,
                                                       minValue=0))
        for parameter in (
                QgsProcessingParameterNumber(self.STRUCTURE_ROTATION, "Image structure: rotation searched "
                                             "either way (degrees)", QgsProcessingParameterNumber.Double, 30.0,
                                             minValue=0.0, maxValue=180.0),
                QgsProcessingParameterNumber(self.STRUCTURE_SCALE, "Image structure: largest scale change "
                                             "searched (factor, both ways)", QgsProcessingParameterNumber.Double,
                                             1.25, minValue=1.0, maxValue=5.0),
                QgsProcessingParameterNumber(self.NO_MATCH_CHECK, "Image structure: no-match check (the best "
                                             "match over the mirrored image's, 0 = off)",
                                             QgsProcessingParameterNumber.Double, 1.45, minValue=0.0, maxValue=10.0)):
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterFeatureSource(
            self.CHECK_POINTS, "Check points (on the reference, with their true sensed map x, y)",
            [QgsProcessing.TypeVectorPoint], optional=True))
        self.addParameter(QgsProcessingParameterField(self.CHECK_X_FIELD, "Check points: sensed map x field",
                                                      "sensed_x", self.CHECK_POINTS,
                                                      QgsProcessingParameterField.Numeric, optional=True))
        self.addParameter(QgsProcessingParameterField(self.CHECK_Y_FIELD, "Check points: sensed map y field",
                                                      "sensed_y", self.CHECK_POINTS,
                                                      QgsProcessingParameterField.Numeric, optional=True))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Registered raster"))
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT_TIEPOINTS, "Tie points"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_CHECKERBOARD, "Checkerboard",
                                                                  optional=True, createByDefault=False))
        for key, _, label in FIGURES:
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.registration import (
            MatchOptions,
            RegistrationOutputs,
            StructureOptions,
            fine_tune_on_reference,
            register,
        )

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
        scale = self.parameterAsDouble(parameters, self.STRUCTURE_SCALE, context)
        structure = StructureOptions(max_rotation=self.parameterAsDouble(parameters, self.STRUCTURE_ROTATION, context),
                                     scale_range=(1.0 / scale, scale),
                                     min_contrast=self.parameterAsDouble(parameters, self.NO_MATCH_CHECK, context))
        model = model_value(self, parameters, self.MODEL, context)
        if model and method != "sift_cnn":
            feedback.pushWarning(f"MODEL is the CNN descriptor of method sift_cnn; method {method} does not use it.")
        with tempfile.TemporaryDirectory(prefix="cloudfree-register-") as tmp:
            descriptor_model_path = model if method == "sift_cnn" else None
            if descriptor_model_path:
                from ..models.registration.describe import load_descriptor

                load_descriptor(descriptor_model_path)   # refused here, by name, when it is not a descriptor model
                feedback.pushInfo(f"CNN descriptor: {os.path.basename(descriptor_model_path)}")
            if method == "sift_cnn" and steps > 0:
                feedback.pushInfo(f"Fine-tuning the CNN descriptor on '{reference.name}' for {steps} steps")
                descriptor_model_path = fine_tune_on_reference(reference, bands[0], steps,
                                                               os.path.join(tmp, "descriptor.safetensors"),
                                                               init_from=descriptor_model_path, cancelled=cancelled)
            match = MatchOptions(ratio=self.parameterAsDouble(parameters, self.RATIO, context),
                                 cnn_weight=self.parameterAsDouble(parameters, self.CNN_WEIGHT, context),
                                 descriptor_model_path=descriptor_model_path)
            feedback.pushInfo(f"Registering '{sensed.name}' onto '{reference.name}' ({method}, {transform})")
            result = register(reference, sensed, outputs, transform=transform, method=method, bands=bands,
                              masks=masks, match=match, structure=structure,
                              check_points=self.check_points(parameters, context),
                              progress=progress, cancelled=cancelled)
        feedback.pushInfo(result.summary())
        results = {self.OUTPUT: outputs.registered, self.OUTPUT_TIEPOINTS: outputs.tiepoints}
        if outputs.checkerboard:
            results[self.OUTPUT_CHECKERBOARD] = outputs.checkerboard
        for key, attr, _ in FIGURES:
            value = getattr(result, attr)
            results[key] = None if value is None else int(value) if key in ("N_RED", "N_CHECK") else float(value)
        return results

    def check_points(self, parameters, context):
        """``(N, 4)`` reference map x, y and true sensed map x, y in the reference raster's CRS, or None."""
        import numpy as np

        source = self.parameterAsSource(parameters, self.CHECK_POINTS, context)
        if source is None:
            return None
        names = [self.parameterAsString(parameters, key, context) or default
                 for key, default in ((self.CHECK_X_FIELD, "sensed_x"), (self.CHECK_Y_FIELD, "sensed_y"))]
        fields = source.fields()
        missing = [n for n in names if fields.indexOf(n) < 0]
        if missing:
            raise QgsProcessingException(f"The check point layer '{source.sourceName()}' has no field "
                                         f"{', '.join(missing)}; choose the fields that hold the sensed map x and y.")
        crs = self.parameterAsRasterLayer(parameters, self.REFERENCE, context).crs()
        to_ref = QgsCoordinateTransform(source.sourceCrs(), crs, context.transformContext())
        rows = []
        for feature in source.getFeatures(QgsFeatureRequest()):
            geometry = feature.geometry()
            sx, sy = feature[names[0]], feature[names[1]]
            if geometry.isEmpty() or sx is None or sy is None:
                continue
            point = to_ref.transform(geometry.asMultiPoint()[0] if geometry.isMultipart() else geometry.asPoint())
            true = to_ref.transform(float(sx), float(sy))
            rows.append((point.x(), point.y(), true.x(), true.y()))
        if not rows:
            raise QgsProcessingException(f"The check point layer '{source.sourceName()}' holds no point with both "
                                         f"'{names[0]}' and '{names[1]}' filled in.")
        return np.array(rows, dtype=np.float64)
