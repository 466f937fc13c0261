"""cloudfree:traincloudremoval - train a pix2pix cloud-removal model on the analyst's imagery."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from .base import CloudFreeAlgorithm
from .common import device_parameter, device_value, parse_values, tile_parameter

SIZES = ("small", "full")


class TrainCloudRemovalAlgorithm(CloudFreeAlgorithm):
    CLOUDY = "CLOUDY"
    CLEAR = "CLEAR"
    MASK = "MASK"
    MASK_VALUES = "MASK_VALUES"
    AUX = "AUX"
    BANDS = "BANDS"
    TILE_SIZE = "TILE_SIZE"
    STEPS = "STEPS"
    BATCH_SIZE = "BATCH_SIZE"
    LEARNING_RATE = "LEARNING_RATE"
    MODEL_SIZE = "MODEL_SIZE"
    DEVICE = "DEVICE"
    SEED = "SEED"
    RESUME_FROM = "RESUME_FROM"
    OUTPUT_MODEL = "OUTPUT_MODEL"
    OUTPUT_REPORT = "OUTPUT_REPORT"

    NAME = "traincloudremoval"
    DISPLAY_NAME = "Train cloud removal model (pix2pix)"
    GROUP = "Cloud removal"
    REQUIRES = ("numpy", "osgeo", "torch", "safetensors", "skimage", "matplotlib")
    HELP = (
        "<p>Trains a pix2pix conditional GAN (U-Net generator, 70x70 PatchGAN, adversarial + 100 x L1 loss, "
        "Adam 2e-4, beta1 0.5) that turns cloudy tiles into cloud-free ones. The generator does not start "
        "blind: under thin clouds and shadows the ground is recovered by linear unmixing, elsewhere the "
        "masked pixels are filled from their surroundings, and the network learns, per pixel, how much to "
        "trust the unmixed ground over the fill.</p>"
        "<p><b>Two modes.</b> <i>Paired</i>: give a <b>cloudy</b> and a <b>clear</b> date of the same place on "
        "one grid (and optionally the cloudy date's mask). <i>Synthetic</i>: give only a <b>clear</b> raster; "
        "synthetic clouds, shadows and gaps are made on the fly. With a <b>mask</b>, pixels whose value is "
        "in <b>mask values</b> are clouds (paired mode) or unusable pixels of the clear raster "
        "(synthetic mode).</p>"
        "<p>Random crops of <b>tile size</b> with rotations and flips train the model; the last 20% of the "
        "rows are kept apart for validation (never trained on). Checkpoints are written every 200 steps "
        "next to the model (<i>MODEL.checkpoints/</i>); a cancelled run keeps the last one and "
        "<b>resume from</b> continues it. The generator is scored on the validation rows as it trains "
        "(PSNR + 20 x SSIM inside the synthetic clouds) and the best one is saved, not merely the last.</p>"
        "<p><b>Model size</b>: <i>small</i> (6 levels x 32 filters, trains on a CPU) or <i>full</i> (the "
        "paper's 8 levels x 64 filters, needs a GPU). The report (HTML) shows loss curves, validation "
        "PSNR/SSIM and cloudy / generated / clear samples.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.CLOUDY, "Cloudy raster (paired mode)", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(self.CLEAR, "Clear raster"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.MASK, "Cloud mask", optional=True))
        self.addParameter(QgsProcessingParameterString(self.MASK_VALUES, "Mask values that mark clouds "
                                                       "(comma-separated)", "1,2", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(self.AUX, "Auxiliary conditioning raster", optional=True))
        self.addParameter(QgsProcessingParameterString(self.BANDS, "Bands (comma-separated, empty = all)", "",
                                                       optional=True))
        self.addParameter(tile_parameter(self.TILE_SIZE))
        self.addParameter(QgsProcessingParameterNumber(self.STEPS, "Training steps",
                                                       QgsProcessingParameterNumber.Integer, 2000, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(self.BATCH_SIZE, "Batch size",
                                                       QgsProcessingParameterNumber.Integer, 4, minValue=1))
        self.addParameter(QgsProcessingParameterNumber(self.LEARNING_RATE, "Learning rate",
                                                       QgsProcessingParameterNumber.Double, 2e-4, minValue=1e-7))
        self.addParameter(QgsProcessingParameterEnum(self.MODEL_SIZE, "Model size", list(SIZES), defaultValue=0))
        self.addParameter(device_parameter(self.DEVICE))
        self.addParameter(QgsProcessingParameterNumber(self.SEED, "Random seed",
                                                       QgsProcessingParameterNumber.Integer, 0, minValue=0))
        self.addParameter(QgsProcessingParameterFile(self.RESUME_FROM, "Resume from checkpoint folder",
                                                     behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_MODEL, "Model file",
                                                                "CloudFree model (*.safetensors)"))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_REPORT, "Training report",
                                                                "HTML files (*.html)", optional=True,
                                                                createByDefault=True))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.cloud_removal import TrainConfig, TrainingSource, report_html, train_cloud_removal
        from ..models.raster import parse_bands, unique_values

        clear = self.raster_info(parameters, self.CLEAR, context)
        cloudy = self.raster_info(parameters, self.CLOUDY, context, optional=True)
        mask = self.raster_info(parameters, self.MASK, context, optional=True)
        aux = self.raster_info(parameters, self.AUX, context, optional=True)
        bands = parse_bands(self.parameterAsString(parameters, self.BANDS, context), clear.band_count, clear.name)
        cloud_values = parse_values(self.parameterAsString(parameters, self.MASK_VALUES, context) or "1,2",
                                    self.MASK_VALUES)
        clear_values = None
        if mask is not None and cloudy is None:
            clear_values = tuple(v for v in unique_values(mask) if int(v) not in cloud_values)
        source = TrainingSource(clear=clear.path, bands=bands, cloudy=cloudy.path if cloudy else None,
                                mask=mask.path if mask else None, clear_values=clear_values,
                                cloud_values=cloud_values, aux=[(aux.path, None)] if aux else [],
                                name=clear.name)
        names = [clear.descriptions[b - 1] or f"band {b}" for b in bands]
        steps = self.parameterAsInt(parameters, self.STEPS, context)
        config = TrainConfig(sources=[source], band_names=names,
                             size=SIZES[self.parameterAsEnum(parameters, self.MODEL_SIZE, context)],
                             tile=self.parameterAsInt(parameters, self.TILE_SIZE, context) or None,
                             batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context), steps=steps,
                             lr=self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
                             seed=self.parameterAsInt(parameters, self.SEED, context),
                             device=device_value(self, parameters, context, self.DEVICE))
        model_path = self.model_output(parameters, self.OUTPUT_MODEL, context)
        checkpoints = model_path + ".checkpoints"
        resume = self.parameterAsFile(parameters, self.RESUME_FROM, context) or None
        feedback.pushInfo(f"{'Paired' if cloudy else 'Synthetic-cloud'} training on '{clear.name}' bands {bands}; "
                          f"checkpoints in {checkpoints}")

        every = max(1, steps // 100)

        def step_progress(fraction, message=None):
            feedback.setProgress(100.0 * fraction)
            step = int(round(fraction * steps))
            if message and (step % every == 0 or step == steps):
                feedback.pushInfo(message)

        result = train_cloud_removal(config, model_path, checkpoint_dir=checkpoints, resume_from=resume,
                                     progress=step_progress, cancelled=cancelled, log=feedback.pushInfo)
        outputs = {self.OUTPUT_MODEL: result.model_path}
        report = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        if report:
            outputs[self.OUTPUT_REPORT] = report_html(result.history, result.samples, report)
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if isinstance(v, (int, float)))
        feedback.pushInfo(f"Trained {result.steps} steps in {result.seconds:.0f} s; validation: {metrics}")
        return outputs
