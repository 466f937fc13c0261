"""cloudfree:trainfusion - train the fusion quality network (weakly supervised or self-supervised)."""

from __future__ import annotations

import os
import tempfile

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorLayer,
)

from .base import CloudFreeAlgorithm
from .common import device_parameter, device_value, parse_values

STEPS_PER_EPOCH = 100


def parse_class_weights(text: str) -> dict | None:
    """``"1:2.0, 3:0.5"`` -> ``{1: 2.0, 3: 0.5}``."""
    from ..models.errors import InputError

    if not text or not text.strip():
        return None
    try:
        pairs = [item.split(":") for item in text.replace(";", ",").split(",") if item.strip()]
        return {int(k): float(v) for k, v in pairs}
    except ValueError as exc:
        raise InputError(f"CLASS_WEIGHTS '{text}' must look like 1:2.0,3:0.5 (class:weight).") from exc


class TrainFusionAlgorithm(CloudFreeAlgorithm):
    NAME = "trainfusion"
    DISPLAY_NAME = "Train fusion model"
    GROUP = "Multi-date fusion"
    REQUIRES = ("numpy", "osgeo", "torch", "safetensors", "matplotlib")
    HELP = (
        "<p>Trains the per-pixel quality network of <i>Fuse dates</i> on your dates.</p>"
        "<p><b>Weakly supervised</b> (Rafique et al. 2019), when <b>labels</b> are given (a raster of class "
        "ids on the dates' grid, or polygons with a class field, rasterised onto it): the fused image goes "
        "through a segmentation U-Net and both networks learn end to end from a class-weighted "
        "cross-entropy; no cloud labels or clean images are needed. Class weights default to median "
        "frequency / frequency; <b>class weights</b> overrides some (e.g. 1:2.0,3:0.5).</p>"
        "<p><b>Self-supervised</b>, without labels: clear dates (those whose mask has no cloud) get "
        "synthetic clouds and gaps and the fused image must match the clear date (L1). With labels, both "
        "losses are used when clear dates exist.</p>"
        "<p>The bottom 30 rows are kept apart for validation. Adam, learning rate halved every 5 epochs "
        "(an epoch is 100 steps unless set otherwise in the advanced parameters). The report shows losses, validation figures, sample fused images and "
        "weight maps.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers("INPUTS", "Dates (rasters, same grid)",
                                                               QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterMultipleLayers("MASKS", "Cloud masks (one per date, same order)",
                                                               QgsProcessing.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterString("MASK_VALUES", "Mask values that mark clouds", "1",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer("LABELS", "Labels raster (class ids)", optional=True))
        self.addParameter(QgsProcessingParameterVectorLayer("LABEL_POLYGONS", "Label polygons",
                                                            [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterField("LABEL_FIELD", "Class field of the polygons", None,
                                                      "LABEL_POLYGONS", QgsProcessingParameterField.Numeric,
                                                      optional=True))
        self.addParameter(QgsProcessingParameterString("CLASS_WEIGHTS", "Class weights (class:weight, ...)", "",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterNumber("TILE_SIZE", "Tile size", QgsProcessingParameterNumber.Integer,
                                                       64, minValue=16, maxValue=1024))
        self.addParameter(QgsProcessingParameterNumber("EPOCHS", "Epochs",
                                                       QgsProcessingParameterNumber.Integer, 5, minValue=1))
        per_epoch = QgsProcessingParameterNumber("STEPS_PER_EPOCH", "Steps per epoch",
                                                 QgsProcessingParameterNumber.Integer, STEPS_PER_EPOCH, minValue=1)
        per_epoch.setFlags(per_epoch.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(per_epoch)
        self.addParameter(QgsProcessingParameterNumber("LEARNING_RATE", "Learning rate",
                                                       QgsProcessingParameterNumber.Double, 1e-4, minValue=1e-7))
        self.addParameter(device_parameter())
        self.addParameter(QgsProcessingParameterNumber("SEED", "Random seed", QgsProcessingParameterNumber.Integer, 0,
                                                       minValue=0))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT_MODEL", "Fusion model",
                                                                "CloudFree model (*.safetensors)"))
        self.addParameter(QgsProcessingParameterFileDestination("OUTPUT_REPORT", "Training report",
                                                                "HTML files (*.html)", optional=True,
                                                                createByDefault=True))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.fusion import FusionTrainConfig, report_html, train_fusion
        from ..models.grids import check_same_grid, rasterize_labels

        dates, masks = self.dates_and_masks(parameters, context, "Training")
        check_same_grid(dates + (masks or []))
        labels = self.raster_info(parameters, "LABELS", context, optional=True)
        polygons = self.parameterAsVectorLayer(parameters, "LABEL_POLYGONS", context)
        epochs = self.parameterAsInt(parameters, "EPOCHS", context)
        per_epoch = self.parameterAsInt(parameters, "STEPS_PER_EPOCH", context) or STEPS_PER_EPOCH
        with tempfile.TemporaryDirectory(prefix="cloudfree-trainfusion-") as tmp:
            label_path = labels.path if labels else None
            if labels is not None:
                check_same_grid([dates[0], labels])
            elif polygons is not None:
                field = self.parameterAsString(parameters, "LABEL_FIELD", context)
                if not field:
                    raise QgsProcessingException("Give the class field of the label polygons (LABEL_FIELD).")
                label_path = rasterize_labels(polygons.source().split("|")[0], field, dates[0],
                                              os.path.join(tmp, "labels.tif"))
            mode = "both" if label_path else "self"
            config = FusionTrainConfig(
                dates=[d.path for d in dates], masks=[m.path for m in masks] if masks else None,
                mask_values=list(parse_values(self.parameterAsString(parameters, "MASK_VALUES", context) or "1",
                                              "MASK_VALUES")),
                labels=label_path, class_weights=parse_class_weights(
                    self.parameterAsString(parameters, "CLASS_WEIGHTS", context)),
                band_names=[dates[0].descriptions[b] or f"band {b + 1}" for b in range(dates[0].band_count)],
                mode=mode, tile=self.parameterAsInt(parameters, "TILE_SIZE", context),
                steps=epochs * per_epoch, steps_per_epoch=per_epoch,
                lr=self.parameterAsDouble(parameters, "LEARNING_RATE", context),
                seed=self.parameterAsInt(parameters, "SEED", context),
                device=device_value(self, parameters, context))
            if mode == "both" and not masks:
                config.mode = "weak"  # without masks no date is known to be clear
            model_path = self.model_output(parameters, "OUTPUT_MODEL", context)
            feedback.pushInfo(f"Training the fusion quality network ({config.mode} supervision) on {len(dates)} "
                              f"dates for {epochs} epochs")
            result = train_fusion(config, model_path, progress=progress, cancelled=cancelled)
        outputs = {"OUTPUT_MODEL": result.model_path}
        report = self.parameterAsFileOutput(parameters, "OUTPUT_REPORT", context)
        if report:
            outputs["OUTPUT_REPORT"] = report_html(result, report)
        feedback.pushInfo(f"Trained {result.steps} steps in {result.seconds:.0f} s; validation: "
                          + ", ".join(f"{k} {v:.4g}" for k, v in (result.metrics.get("held_out") or {}).items()
                                      if isinstance(v, (int, float))))
        return outputs
