"""cloudfree:trainsegmentation - train a U-Net segmentation (Dice loss) on labelled rasters."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .base import CloudFreeAlgorithm
from .common import device_parameter, device_value
from .labels import LabelParameters

LOSSES = ("dice_ce", "dice")


class TrainSegmentationAlgorithm(LabelParameters, CloudFreeAlgorithm):
    INPUT = "INPUT"
    IGNORE_VALUE = "IGNORE_VALUE"
    CLASS_WEIGHTS = "CLASS_WEIGHTS"
    LOSS = "LOSS"
    TILE_SIZE = "TILE_SIZE"
    EPOCHS = "EPOCHS"
    STEPS_PER_EPOCH = "STEPS_PER_EPOCH"
    DEPTH = "DEPTH"
    WIDTH = "WIDTH"
    VALIDATION_FRACTION = "VALIDATION_FRACTION"
    DEVICE = "DEVICE"
    SEED = "SEED"
    OUTPUT_MODEL = "OUTPUT_MODEL"
    OUTPUT_REPORT = "OUTPUT_REPORT"
    MEAN_DICE = "MEAN_DICE"
    MIOU = "MIOU"
    PIXEL_ACCURACY = "PIXEL_ACCURACY"

    NAME = "trainsegmentation"
    DISPLAY_NAME = "Train segmentation model (U-Net, Dice)"
    GROUP = "Segmentation"
    REQUIRES = ("numpy", "osgeo", "torch", "safetensors", "matplotlib")
    HELP = (
        "<p>Trains a U-Net (two 3x3 convolutions with ReLU per level, max-pooling down, up-convolution and "
        "concatenation up, dropout) to label every pixel with a class, for land cover, clouds or any classes "
        "you have labels for. Use the model with <i>Segment raster</i>.</p>"
        "<p><b>Input rasters</b>: one raster, or several on the same grid whose bands are stacked in the order "
        "given (for example a few dates of NDVI). <i>Segment raster</i> must get the same stack.</p>"
        "<p><b>Labels</b>: a raster of class values on the input's grid (its nodata pixels do not count; its "
        "colour table and class names carry over to the model), or <b>label polygons</b> with an integer "
        "<b>class field</b> (<i>LABEL_FIELD</i>), burnt onto the grid (pixels outside every polygon do not count). Class values must "
        "lie in 0-254. <b>Ignore value</b>: a label value that does not count either (empty = none).</p>"
        "<p><b>Class weights</b>: empty = all 1; <i>auto</i> = inverse square root of each class's share of the "
        "training pixels; or one number per class, in ascending order of the class values.</p>"
        "<p><b>Loss</b>: Dice + cross-entropy (default; steadier at the start) or Dice alone (soft Dice, mean "
        "over the classes).</p>"
        "<p><b>Validation</b>: the last <b>validation fraction</b> of the rows (or of the columns, for a raster "
        "wider than tall) is a separate spatial block: no training tile touches it. After every epoch the "
        "network is scored there; the learning rate is halved when the validation loss has not improved for 3 "
        "epochs, training stops when it has not improved for 8, and the best epoch's network is saved.</p>"
        "<p><b>Tile size</b>: training tiles in pixels (reduced to fit the training block). <b>Epochs</b> and "
        "<b>steps per epoch</b> (advanced; batches of 8 tiles) set the length. <b>Depth</b> (poolings) and "
        "<b>width</b> (filters of the first level, doubled per level) size the network (advanced). "
        "<b>Device</b>: auto uses a CUDA GPU when there is one. <b>Seed</b>: the same seed gives the same "
        "model on the same device.</p>"
        "<p>Outputs: the <b>model file</b> (<i>OUTPUT_MODEL</i>, .safetensors with the class values, names and colours, the input "
        "scaling and the held-out scores), an HTML <b>report</b> (<i>OUTPUT_REPORT</i>; loss and metric curves, "
        "per-class Dice and IoU, sample predictions), and the held-out mean Dice, mIoU and pixel accuracy.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(self.INPUT, "Input rasters (same grid, bands "
                                                               "stacked)", QgsProcessing.TypeRaster))
        self.add_label_parameters()
        self.addParameter(QgsProcessingParameterString(self.IGNORE_VALUE, "Label value to ignore (empty = none)", "",
                                                       optional=True))
        self.addParameter(QgsProcessingParameterString(self.CLASS_WEIGHTS, "Class weights (empty, auto, or one per "
                                                       "class)", "", optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.LOSS, "Loss", ["Dice + cross-entropy", "Dice"],
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.TILE_SIZE, "Tile size", QgsProcessingParameterNumber.Integer,
                                                       128, minValue=16, maxValue=1024))
        self.addParameter(QgsProcessingParameterNumber(self.EPOCHS, "Epochs", QgsProcessingParameterNumber.Integer,
                                                       40, minValue=1))
        for name, label, default in ((self.STEPS_PER_EPOCH, "Steps per epoch", 8), (self.DEPTH, "Depth (poolings)", 3),
                                     (self.WIDTH, "Width (filters of the first level)", 16)):
            p = QgsProcessingParameterNumber(name, label, QgsProcessingParameterNumber.Integer, default, minValue=1)
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(QgsProcessingParameterNumber(self.VALIDATION_FRACTION, "Validation block fraction",
                                                       QgsProcessingParameterNumber.Double, 0.25, minValue=0.05,
                                                       maxValue=0.5))
        self.addParameter(device_parameter(self.DEVICE))
        self.addParameter(QgsProcessingParameterNumber(self.SEED, "Random seed", QgsProcessingParameterNumber.Integer,
                                                       0, minValue=0))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_MODEL, "Segmentation model",
                                                                "CloudFree model (*.safetensors)"))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_REPORT, "Training report",
                                                                "HTML files (*.html)", optional=True,
                                                                createByDefault=True))
        for key, label in ((self.MEAN_DICE, "Held-out mean Dice"), (self.MIOU, "Held-out mIoU"),
                           (self.PIXEL_ACCURACY, "Held-out pixel accuracy")):
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.segmentation import SegmentationTrainConfig, train_segmentation, write_training_report

        inputs = self.raster_infos(parameters, self.INPUT, context)
        config = SegmentationTrainConfig(
            inputs=inputs, labels=self.label_source(parameters, context),
            loss=LOSSES[self.parameterAsEnum(parameters, self.LOSS, context)],
            class_weights=self.parameterAsString(parameters, self.CLASS_WEIGHTS, context) or None,
            tile=self.parameterAsInt(parameters, self.TILE_SIZE, context),
            epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
            steps_per_epoch=self.parameterAsInt(parameters, self.STEPS_PER_EPOCH, context),
            depth=self.parameterAsInt(parameters, self.DEPTH, context),
            width=self.parameterAsInt(parameters, self.WIDTH, context),
            val_fraction=self.parameterAsDouble(parameters, self.VALIDATION_FRACTION, context),
            device=device_value(self, parameters, context, self.DEVICE),
            seed=self.parameterAsInt(parameters, self.SEED, context))
        model_path = self.model_output(parameters, self.OUTPUT_MODEL, context)
        feedback.pushInfo(f"Training on {len(inputs)} raster(s), labels '{config.labels.name}'")
        result = train_segmentation(config, model_path, progress, cancelled)
        m = result.metrics
        feedback.pushInfo(f"{result.epochs_run} epochs in {result.seconds:.0f} s on {result.device}; best epoch "
                          f"{result.best_epoch}; held-out mean Dice {m['mean_dice']:.3f} (before training "
                          f"{result.initial_metrics['mean_dice']:.3f}), mIoU {m['miou']:.3f}, pixel accuracy "
                          f"{m['pixel_accuracy']:.3f}")
        outputs = {self.OUTPUT_MODEL: model_path, self.MEAN_DICE: float(m["mean_dice"]), self.MIOU: float(m["miou"]),
                   self.PIXEL_ACCURACY: float(m["pixel_accuracy"])}
        report_path = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        if report_path:
            outputs[self.OUTPUT_REPORT] = write_training_report(result, self.output_path(report_path))
        return outputs

    def label_source(self, parameters, context):
        """The labels as the engine's ``LabelSource`` (a raster, or polygons and their class field)."""
        from ..models.errors import InputError
        from ..models.segmentation import LabelSource

        text = self.parameterAsString(parameters, self.IGNORE_VALUE, context).strip()
        try:
            ignore = int(text) if text else None
        except ValueError as exc:
            raise InputError(f"{self.IGNORE_VALUE} '{text}' must be an integer class value or empty.") from exc
        labels = self.raster_info(parameters, self.LABELS, context, optional=True)
        if labels is not None:
            return LabelSource(raster=labels, ignore_value=ignore)
        polygons = self.label_polygons(parameters, context)
        if polygons is None:
            raise QgsProcessingException("Give the labels: a labels raster, or label polygons with their class field.")
        return LabelSource(polygons=polygons[0], field=polygons[1], ignore_value=ignore)
