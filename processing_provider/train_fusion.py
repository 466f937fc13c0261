"""cloudfree:trainfusion - train the fusion quality network (weakly supervised or self-supervised)."""

from __future__ import annotations

import os
import tempfile

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .base import CloudFreeAlgorithm
from .common import device_parameter, device_value, parse_values, values_parameter
from .labels import LabelParameters

DEFAULT_STEPS_PER_EPOCH = 100


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


def held_out_summary(metrics: dict) -> str:
    """The held-out validation figures of a training result as one line."""
    figures = [f"{k} {v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float))]
    return ", ".join(figures) if figures else "none (no held-out case)"


class TrainFusionAlgorithm(LabelParameters, CloudFreeAlgorithm):
    # parameter and output names (the ids headless calls use)
    INPUTS = "INPUTS"
    MASKS = "MASKS"
    MASK_VALUES = "MASK_VALUES"
    CLASS_WEIGHTS = "CLASS_WEIGHTS"
    TILE_SIZE = "TILE_SIZE"
    EPOCHS = "EPOCHS"
    STEPS_PER_EPOCH = "STEPS_PER_EPOCH"
    LEARNING_RATE = "LEARNING_RATE"
    DEVICE = "DEVICE"
    SEED = "SEED"
    OUTPUT_MODEL = "OUTPUT_MODEL"
    OUTPUT_REPORT = "OUTPUT_REPORT"
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
        "losses are used when clear dates exist; when the masks flag some cloud on every date, the labels "
        "alone train and the validation counts only the pixels the masks call clear.</p>"
        "<p>The bottom 30 rows are kept apart for validation. Adam, learning rate halved every 5 epochs "
        "(an epoch is 100 steps unless set otherwise in the advanced parameters). The report shows losses, "
        "validation figures, sample fused images and per-date weight maps; the log ends with the held-out "
        "validation figures.</p>"
        "<p><b>Dates</b>: the rasters (same grid) in any order; <b>cloud masks</b>, one per date in the same order, "
        "with the <b>mask values</b> that mark clouds. <b>Labels</b>: a labels raster, or <b>label polygons</b> "
        "with their <b>class field</b> (<i>LABEL_FIELD</i>, integer class ids) burnt onto the dates' grid. "
        "<b>Tile size</b> (training tiles in pixels), <b>epochs</b>, <b>steps per epoch</b> (advanced), "
        "<b>learning rate</b>, <b>device</b> (auto uses a CUDA GPU when there is one; the list says what this "
        "machine has) and <b>seed</b> (the same seed gives the same model on the same device).</p>"
        "<p>Outputs: the <b>fusion model</b> (<i>OUTPUT_MODEL</i>; the land-cover network is saved beside it as "
        "<tt>*.segmentation.safetensors</tt>) and the <b>training report</b> (<i>OUTPUT_REPORT</i>, HTML).</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(self.INPUTS, "Dates (rasters, same grid)",
                                                               QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterMultipleLayers(self.MASKS, "Cloud masks (one per date, same order)",
                                                               QgsProcessing.TypeRaster, optional=True))
        self.addParameter(values_parameter(self.MASK_VALUES, "Mask values that mark clouds", "1", self.MASKS))
        self.add_label_parameters("Labels raster (class ids)")
        self.addParameter(QgsProcessingParameterString(self.CLASS_WEIGHTS, "Class weights (class:weight, ...)", "",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.TILE_SIZE, "Tile size",
                                                       QgsProcessingParameterNumber.Integer, 64, minValue=16,
                                                       maxValue=1024))
        self.addParameter(QgsProcessingParameterNumber(self.EPOCHS, "Epochs",
                                                       QgsProcessingParameterNumber.Integer, 5, minValue=1))
        per_epoch = QgsProcessingParameterNumber(self.STEPS_PER_EPOCH, "Steps per epoch",
                                                 QgsProcessingParameterNumber.Integer, DEFAULT_STEPS_PER_EPOCH,
                                                 minValue=1)
        per_epoch.setFlags(per_epoch.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(per_epoch)
        self.addParameter(QgsProcessingParameterNumber(self.LEARNING_RATE, "Learning rate",
                                                       QgsProcessingParameterNumber.Double, 1e-4, minValue=1e-7))
        self.addParameter(device_parameter(self.DEVICE))
        self.addParameter(QgsProcessingParameterNumber(self.SEED, "Random seed", QgsProcessingParameterNumber.Integer,
                                                       0, minValue=0))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_MODEL, "Fusion model",
                                                                "CloudFree model (*.safetensors)"))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_REPORT, "Training report",
                                                                "HTML files (*.html)", optional=True,
                                                                createByDefault=True))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.fusion import FusionTrainConfig, train_fusion, write_training_report

        dates, masks = self.dates_and_masks(parameters, context, "Training", self.INPUTS, self.MASKS)
        epochs = self.parameterAsInt(parameters, self.EPOCHS, context)
        per_epoch = self.parameterAsInt(parameters, self.STEPS_PER_EPOCH, context) or DEFAULT_STEPS_PER_EPOCH
        model_path = self.model_output(parameters, self.OUTPUT_MODEL, context)
        with tempfile.TemporaryDirectory(prefix="cloudfree-trainfusion-") as tmp:
            label_path = self.label_raster(parameters, context, dates[0], os.path.join(tmp, "labels.tif"))
            config = FusionTrainConfig(
                dates=[d.path for d in dates], masks=[m.path for m in masks] if masks else None,
                mask_values=list(parse_values(self.parameterAsString(parameters, self.MASK_VALUES, context) or "1",
                                              self.MASK_VALUES)),
                labels=label_path,
                class_weights=parse_class_weights(self.parameterAsString(parameters, self.CLASS_WEIGHTS, context)),
                band_names=[dates[0].descriptions[b] or f"band {b + 1}" for b in range(dates[0].band_count)],
                # without masks no date is known to be clear: labels alone (weak) then
                mode=("both" if masks else "weak") if label_path else "self",
                tile=self.parameterAsInt(parameters, self.TILE_SIZE, context),
                steps=epochs * per_epoch, steps_per_epoch=per_epoch,
                lr=self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
                seed=self.parameterAsInt(parameters, self.SEED, context),
                device=device_value(self, parameters, context, self.DEVICE))
            feedback.pushInfo(f"Training the fusion quality network ({config.mode} supervision) on {len(dates)} "
                              f"dates for {epochs} epochs")
            result = train_fusion(config, model_path, progress=progress, cancelled=cancelled)
        outputs = {self.OUTPUT_MODEL: result.model_path}
        report = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        if report:
            outputs[self.OUTPUT_REPORT] = write_training_report(result, report)
        feedback.pushInfo(f"Trained {result.steps} steps ({result.mode} supervision) in {result.seconds:.0f} s; "
                          f"held-out validation: {held_out_summary(result.metrics)}")
        return outputs

    def label_raster(self, parameters, context, like, path: str) -> str | None:
        """The labels raster's path, or the label polygons rasterised onto ``like`` at ``path``; None without labels."""
        from ..models.grids import rasterize_labels

        labels = self.raster_info(parameters, self.LABELS, context, optional=True)
        if labels is not None:
            return labels.path
        polygons = self.label_polygons(parameters, context)
        return None if polygons is None else rasterize_labels(*polygons, like, path)
