"""cloudfree:traincloudremoval - train a pix2pix cloud-removal model on the analyst's imagery."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from .base import CloudFreeAlgorithm
from .guides import GuideParameters
from .common import (BAND_ORDER_HELP, band_parameter, band_values, device_parameter, device_value, parse_values,
                     tile_parameter, values_parameter)

SIZES = ("small", "full")
#: (engine value, label) of the GENERATOR choice
GENERATOR_CHOICES = (
    ("auto", "auto: pix2pix for cloudy/clear pairs, unmix_blend for synthetic clouds"),
    ("pix2pix", "pix2pix (the paper's U-Net: learns any cloudy-to-clear mapping, needs no mask)"),
    ("unmix_blend", "unmix_blend (mask-guided filling of thick clouds; needs masks)"),
    ("guided", "guided (by other dates and/or radar; chosen when guides are given)"),
)
#: (engine value, label) of the SCALING choice
SCALING_CHOICES = (
    ("auto", "learned from the training rasters (unmix_blend: per image)"),
    ("reflectance", "preset: reflectance 0-1"),
    ("sentinel2_l1c", "preset: Sentinel-2 L1C/L2A digital numbers, before baseline 04.00 (x 1e-4)"),
    ("sentinel2_pb04", "preset: Sentinel-2 L1C/L2A digital numbers from baseline 04.00 ((DN - 1000) x 1e-4)"),
    ("landsat_c2_l2", "preset: Landsat Collection 2 Level-2 digital numbers (DN x 2.75e-5 - 0.2)"),
    ("per_image", "per image: each image's clear-pixel percentiles (for mask-guided filling)"),
)
GAN_MODES = ("vanilla", "lsgan")


class TrainCloudRemovalAlgorithm(GuideParameters, CloudFreeAlgorithm):
    CLOUDY = "CLOUDY"
    CLEAR = "CLEAR"
    MASK = "MASK"
    MASK_VALUES = "MASK_VALUES"
    CLOUDY_LAYERS = "CLOUDY_LAYERS"
    CLEAR_LAYERS = "CLEAR_LAYERS"
    MASK_LAYERS = "MASK_LAYERS"
    PAIRS_FILE = "PAIRS_FILE"
    PAIRS_FOLDER = "PAIRS_FOLDER"
    TRIPLETS_FOLDER = "TRIPLETS_FOLDER"
    CLEAR_FOLDER = "CLEAR_FOLDER"
    AUX = "AUX"
    BANDS = "BANDS"
    TILE_SIZE = "TILE_SIZE"
    STEPS = "STEPS"
    EPOCHS = "EPOCHS"
    BATCH_SIZE = "BATCH_SIZE"
    LEARNING_RATE = "LEARNING_RATE"
    LR_DECAY = "LR_DECAY"
    MODEL_SIZE = "MODEL_SIZE"
    GENERATOR = "GENERATOR"
    SCALING = "SCALING"
    LAMBDA_L1 = "LAMBDA_L1"
    GAN_MODE = "GAN_MODE"
    DISC_LAYERS = "DISC_LAYERS"
    VALIDATION_EVERY = "VALIDATION_EVERY"
    EARLY_STOPPING = "EARLY_STOPPING"
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
        "Adam 2e-4, beta1 0.5) that turns cloudy images into cloud-free ones.</p>"
        "<p><b>Pairs</b> (the pix2pix use): a <b>cloudy</b> and a <b>clear</b> image of the same place on one grid. "
        "Give one pair (cloudy + clear raster), several (<b>cloudy rasters</b> and <b>clear rasters</b>, matched "
        "by order, optionally with <b>masks</b>), a <b>pairs file</b>: a CSV with one line "
        "<i>cloudy,clear[,mask]</i> a pair (paths relative to the CSV), and/or a <b>pairs folder</b> with "
        "<i>cloudy/</i> and <i>clear/</i> subfolders (and optionally <i>mask/</i>) whose rasters are matched by "
        "file name; the folder names of public paired sets (<i>cloud/</i> and <i>label/</i>, <i>hazy/</i> and "
        "<i>gt/</i>...) and PNG or JPEG images work too. Each "
        "pair has its own grid and size. Masks are optional: without them every pixel is learned and the "
        "model needs no mask later (haze and thin clouds over the whole image); pixels whose mask value is "
        "in <b>mask values</b> are clouds.</p>"
        "<p><b>Real clouds: a triplets folder</b> trains the residual generator (DSen2-CR style: a learned "
        "correction of the unmixing fill inside the mask, radar as extra input channels, dropped from half the "
        "crops so the model also runs without radar) on real cloudy/clear pairs in the SEN12MS-CR layout: for "
        "every triplet ID, <i>ID_s2_cloudy.tif</i>, <i>ID_s2_clear.tif</i>, <i>ID_mask.tif</i> (1 = cloud) and, "
        "in every triplet or in none, <i>ID_s1.tif</i> (Sentinel-1 VV, VH in dB), all on one grid; a triplet "
        "with a file missing or off the grid is refused by name. The values must be Sentinel-2 L1C reflectance "
        "x 1e4 (a fixed scaling). A <b>clear rasters folder</b> adds synthetic clouds of the triplets' mask "
        "shapes over its rasters. <b>Training steps</b>, <b>seed</b>, <b>device</b> and <b>bands</b> apply; "
        "the pix2pix settings do not. Cross-validate by whole triplet with benchmarks/real_clouds.py.</p>"
        "<p><b>Synthetic clouds</b>: give only a <b>clear</b> raster; clouds, shadows and gaps are made on the "
        "fly (a mask then marks the clear raster's unusable pixels).</p>"
        "<p><b>Guided by other dates and radar</b> (self-supervised, no cloud-free pair needed): give the "
        "<b>clear</b> raster (a date of your stack, with its <b>mask</b>: its real clouds are left out) and "
        "<b>guides</b> (other dates of the same place with their masks, and/or Sentinel-1 radar). Synthetic "
        "clouds are laid over the clear pixels and the guided generator learns to restore them from the "
        "guides, so it learns your area's seasons and sensors. The model then removes clouds with the same "
        "kinds of guides.</p>"
        "<p><b>Generator</b> (advanced): <i>pix2pix</i>, the paper's U-Net (default for pairs), generates every "
        "pixel; <i>unmix_blend</i> (default for synthetic clouds, the shipped model) fills what a mask marks, "
        "recovering the ground under thin clouds by linear unmixing, and needs masks. <b>Model size</b>: "
        "<i>small</i> (6 levels x 32 filters, trains on a CPU) or <i>full</i> (the paper's 8 levels x 64 "
        "filters, for a GPU).</p>"
        "<p><b>Scaling</b> (advanced): pix2pix maps every image with one per-band scaling, learned from the "
        "training rasters or a reflectance preset, stored in the model and applied identically when clouds "
        "are removed, so the model can learn a change of brightness and colour; the model then expects "
        "images in the units it was trained on. <i>Per image</i> scales each image by its own clear-pixel "
        "percentiles (what mask-guided filling uses).</p>"
        "<p><b>Validation</b> never sees training pixels: with 3 or more pairs, whole pairs (20%, at least "
        "one) are held out; otherwise the last 20% of each raster's rows. The generator is scored as it "
        "trains and the best one is saved; <b>early stopping</b> ends the run after that many validations "
        "without a better score (0 = off). Advanced: <b>lambda L1</b>, <b>GAN mode</b> (vanilla or LSGAN), "
        "<b>discriminator layers</b> (3 = 70x70 PatchGAN), learning rate and its <b>decay</b> (the last "
        "fraction of the steps over which it falls linearly to 0), batch size, <b>epochs</b> (passes over the "
        "training pixels; 0 = use steps).</p>"
        "<p>Checkpoints are written every 200 steps next to the model (<i>MODEL.checkpoints/</i>); a cancelled "
        "run keeps the last one and <b>resume from</b> continues it. The report (HTML) shows the losses (the "
        "discriminator's real and fake halves apart), validation PSNR/SSIM, the held-out figures per pair "
        "(cloudy input and output) and cloudy / generated / clear samples.</p>"
        "<p>Several pairs: <b>cloudy rasters</b>, <b>clear rasters</b> (<i>CLEAR_LAYERS</i>) and their <b>cloud "
        "masks</b> (<i>MASK_LAYERS</i>), one per cloudy raster in the same order. <b>Bands</b>: the bands the "
        "model takes, in that order (empty = all); the same band numbers are read from every raster. "
        + BAND_ORDER_HELP + " <b>Auxiliary conditioning raster</b> (advanced, one pair or clear raster only): "
        "extra input channels, e.g. an elevation model, that <i>Remove clouds</i> then needs too.</p>"
        "<p><b>Tile size</b> in pixels (0 = the model's: 256), <b>training steps</b>, <b>device</b> (auto uses a "
        "CUDA GPU when there is one; the list says what this machine has), <b>seed</b> (the same seed gives the "
        "same model on the same device), and advanced: <b>validate every N steps</b> "
        "(<i>VALIDATION_EVERY</i>), <b>learning-rate decay</b> (<i>LR_DECAY</i>).</p>"
    ) + GuideParameters.TRAINING_GUIDES_HELP + (
        "<p>Outputs: the <b>model file</b> (<i>OUTPUT_MODEL</i>, .safetensors: weights with the bands, scaling, "
        "training data and held-out figures in its metadata) and the <b>training report</b> (<i>OUTPUT_REPORT</i>, "
        "HTML).</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self._input_parameters()
        self.addParameter(tile_parameter(self.TILE_SIZE))
        self.addParameter(QgsProcessingParameterNumber(self.STEPS, "Training steps",
                                                       QgsProcessingParameterNumber.Integer, 2000, minValue=1))
        self.addParameter(QgsProcessingParameterEnum(self.MODEL_SIZE, "Model size", list(SIZES), defaultValue=0))
        self.addParameter(device_parameter(self.DEVICE))
        self.addParameter(QgsProcessingParameterNumber(self.SEED, "Random seed",
                                                       QgsProcessingParameterNumber.Integer, 0, minValue=0))
        self.addParameter(QgsProcessingParameterFile(self.RESUME_FROM, "Resume from checkpoint folder",
                                                     behavior=QgsProcessingParameterFile.Folder, optional=True))
        self._advanced_parameters()
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_MODEL, "Model file",
                                                                "CloudFree model (*.safetensors)"))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_REPORT, "Training report",
                                                                "HTML files (*.html)", optional=True,
                                                                createByDefault=True))

    def _input_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterRasterLayer(self.CLOUDY, "Cloudy raster (one pair)", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(self.CLEAR, "Clear raster (one pair, or synthetic "
                                                            "clouds alone)", optional=True))
        self.addParameter(QgsProcessingParameterRasterLayer(self.MASK, "Cloud mask (of the cloudy raster)",
                                                            optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(self.CLOUDY_LAYERS, "Cloudy rasters (several pairs)",
                                                               QgsProcessing.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(self.CLEAR_LAYERS, "Clear rasters (one per cloudy "
                                                               "raster, same order)", QgsProcessing.TypeRaster,
                                                               optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(self.MASK_LAYERS, "Cloud masks (one per cloudy "
                                                               "raster, same order)", QgsProcessing.TypeRaster,
                                                               optional=True))
        self.addParameter(QgsProcessingParameterFile(self.PAIRS_FILE, "Pairs file (CSV: cloudy,clear[,mask] a line)",
                                                     extension="csv", optional=True))
        self.addParameter(QgsProcessingParameterFile(self.PAIRS_FOLDER, "Pairs folder (cloudy/ and clear/ subfolders, "
                                                     "rasters matched by file name)",
                                                     behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.TRIPLETS_FOLDER, "Triplets folder (real clouds: ID_s2_cloudy.tif, ID_s2_clear.tif, ID_mask.tif "
            "[, ID_s1.tif radar]; trains the residual generator)", behavior=QgsProcessingParameterFile.Folder,
            optional=True))
        self.addParameter(QgsProcessingParameterFile(
            self.CLEAR_FOLDER, "Clear rasters folder (with a triplets folder: synthetic clouds of the triplets' "
            "mask shapes over them)", behavior=QgsProcessingParameterFile.Folder, optional=True))
        self.addParameter(values_parameter(self.MASK_VALUES, "Mask values that mark clouds (comma-separated)", "1,2",
                                           self.MASK))
        self.add_guide_parameters()
        aux = QgsProcessingParameterRasterLayer(self.AUX, "Auxiliary conditioning raster", optional=True)
        aux.setFlags(aux.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(aux)
        self.addParameter(band_parameter(self.BANDS, "Bands, in the order the model will take them (empty = all)",
                                         self.CLEAR))

    def _advanced_parameters(self) -> None:
        number, integer, double = QgsProcessingParameterNumber, QgsProcessingParameterNumber.Integer, \
            QgsProcessingParameterNumber.Double
        advanced = [
            QgsProcessingParameterEnum(self.GENERATOR, "Generator", [label for _, label in GENERATOR_CHOICES],
                                       defaultValue=0),
            QgsProcessingParameterEnum(self.SCALING, "Scaling", [label for _, label in SCALING_CHOICES],
                                       defaultValue=0),
            number(self.EPOCHS, "Epochs: passes over the training pixels (0 = use the training steps)", double, 0.0,
                   minValue=0.0),
            number(self.BATCH_SIZE, "Batch size", integer, 4, minValue=1),
            number(self.LEARNING_RATE, "Learning rate", double, 2e-4, minValue=1e-7),
            number(self.LR_DECAY, "Learning-rate decay: last fraction of the steps over which it falls linearly to 0",
                   double, 0.5, minValue=0.0, maxValue=1.0),
            number(self.LAMBDA_L1, "Lambda L1 (weight of the L1 term)", double, 100.0, minValue=0.0),
            QgsProcessingParameterEnum(self.GAN_MODE, "GAN mode", list(GAN_MODES), defaultValue=0),
            number(self.DISC_LAYERS, "Discriminator layers (3 = 70x70 PatchGAN)", integer, 3, minValue=1,
                   maxValue=6),
            number(self.VALIDATION_EVERY, "Validate every N steps", integer, 200, minValue=1),
            number(self.EARLY_STOPPING, "Early stopping: validations without a better score (0 = off)", integer, 0,
                   minValue=0),
        ]
        for p in advanced:
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)

    # ------------------------------------------------------------------ reading the inputs

    def training_sources(self, parameters, context) -> tuple:
        """``(sources, band names, description)``: the single raster or pair, the matched layer lists and the
        pairs file, as engine training sources."""
        from ..models.cloud_removal import TrainingSource, match_layers, pair_sources, read_pairs
        from ..models.errors import InputError
        from ..models.raster import parse_bands, raster_info, unique_values

        clear = self.raster_info(parameters, self.CLEAR, context, optional=True)
        cloudy = self.raster_info(parameters, self.CLOUDY, context, optional=True)
        mask = self.raster_info(parameters, self.MASK, context, optional=True)
        aux = self.raster_info(parameters, self.AUX, context, optional=True)
        if cloudy is not None and clear is None:
            raise InputError(f"The cloudy raster '{cloudy.name}' has no clear raster: give CLEAR as well.")
        cloudy_layers = self.raster_infos(parameters, self.CLOUDY_LAYERS, context)
        pairs = match_layers([c.path for c in cloudy_layers],
                             [c.path for c in self.raster_infos(parameters, self.CLEAR_LAYERS, context)],
                             [m.path for m in self.raster_infos(parameters, self.MASK_LAYERS, context)],
                             names=[c.name for c in cloudy_layers])
        for name in (self.PAIRS_FILE, self.PAIRS_FOLDER):
            listing = self.parameterAsFile(parameters, name, context)
            if listing:
                pairs += read_pairs(listing)
        if clear is None and not pairs:
            raise InputError("Nothing to train on: give a clear raster (synthetic clouds), a cloudy and a clear "
                             "raster, cloudy and clear rasters (several pairs), a pairs file or a pairs folder.")
        if aux is not None and (pairs or clear is None):
            raise InputError(f"The auxiliary raster '{aux.name}' works with one pair or one clear raster only.")
        guides = self.guides(parameters, context)
        if guides and (pairs or clear is None):
            raise InputError("Guides (other dates, radar) train with one target raster: give CLEAR (and its MASK; "
                             "synthetic clouds are laid over its clear pixels) or one CLOUDY and CLEAR pair.")
        reference = clear or raster_info(pairs[0].clear)
        bands = parse_bands(band_values(self, parameters, self.BANDS, context), reference.band_count,
                            reference.name)
        cloud_values = parse_values(self.parameterAsString(parameters, self.MASK_VALUES, context) or "1,2",
                                    self.MASK_VALUES)
        sources = []
        if clear is not None:
            clear_values = None
            if mask is not None and cloudy is None:
                clear_values = tuple(v for v in unique_values(mask) if int(v) not in cloud_values)
            sources.append(TrainingSource(clear=clear.path, bands=bands, cloudy=cloudy.path if cloudy else None,
                                          mask=mask.path if mask else None, clear_values=clear_values,
                                          cloud_values=cloud_values, aux=[(aux.path, None)] if aux else [],
                                          guides=guides, name=clear.name))
        sources += pair_sources(pairs, bands=bands, cloud_values=cloud_values)
        names = [reference.descriptions[b - 1] or f"band {b}" for b in bands]
        what = (f"{len(sources)} source(s): {sum(s.paired for s in sources)} cloudy/clear pair(s), "
                f"{sum(not s.paired for s in sources)} clear raster(s) for synthetic clouds")
        return sources, names, what

    def training_config(self, parameters, context, sources: list, names: list):
        from ..models.cloud_removal import TrainConfig

        def number(name):
            return self.parameterAsDouble(parameters, name, context)

        def integer(name):
            return self.parameterAsInt(parameters, name, context)

        epochs = number(self.EPOCHS)
        return TrainConfig(
            sources=sources, band_names=names, size=SIZES[self.parameterAsEnum(parameters, self.MODEL_SIZE, context)],
            tile=integer(self.TILE_SIZE) or None, batch_size=integer(self.BATCH_SIZE), steps=integer(self.STEPS),
            epochs=epochs if epochs > 0 else None, lr=number(self.LEARNING_RATE),
            lr_decay_start=1.0 - number(self.LR_DECAY), lambda_l1=number(self.LAMBDA_L1),
            gan_mode=GAN_MODES[self.parameterAsEnum(parameters, self.GAN_MODE, context)],
            disc_layers=integer(self.DISC_LAYERS),
            generator=GENERATOR_CHOICES[self.parameterAsEnum(parameters, self.GENERATOR, context)][0],
            scaling=SCALING_CHOICES[self.parameterAsEnum(parameters, self.SCALING, context)][0],
            val_every=integer(self.VALIDATION_EVERY), early_stopping=integer(self.EARLY_STOPPING),
            seed=integer(self.SEED), device=device_value(self, parameters, context, self.DEVICE))

    # ------------------------------------------------------------------ running

    def train_on_triplets(self, parameters, context, feedback, progress, cancelled) -> dict:
        """The residual generator on a folder of real cloudy/clear(/radar) triplets (``models.cloud_removal.
        residual.train_triplet_folder``): STEPS, SEED, DEVICE and BANDS apply, the pix2pix settings do not."""
        import os

        from ..models.cloud_removal.residual import ResidualConfig, train_triplet_folder
        from ..models.cloud_removal.triplets import CLOUDY, triplet_ids
        from ..models.raster import parse_bands, raster_info

        folder = self.parameterAsFile(parameters, self.TRIPLETS_FOLDER, context)
        first = raster_info(os.path.join(folder, triplet_ids(folder)[0] + CLOUDY))
        bands = parse_bands(band_values(self, parameters, self.BANDS, context), first.band_count, first.name)
        config = ResidualConfig(steps=self.parameterAsInt(parameters, self.STEPS, context),
                                seed=self.parameterAsInt(parameters, self.SEED, context), start="fill",
                                device=device_value(self, parameters, context, self.DEVICE))
        model_path = self.model_output(parameters, self.OUTPUT_MODEL, context)
        result = train_triplet_folder(folder, model_path, bands, config,
                                      clear_folder=self.parameterAsFile(parameters, self.CLEAR_FOLDER, context) or None,
                                      progress=progress, cancelled=cancelled, log=feedback.pushInfo)
        feedback.pushInfo(f"Trained the residual generator {config.steps} steps in {result.seconds:.0f} s "
                          f"({result.cpu_seconds:.0f} CPU s, {result.steps_per_second:.2f} steps/s on "
                          f"{result.device}); cross-validate it by triplet with benchmarks/real_clouds.py")
        return {self.OUTPUT_MODEL: model_path}

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.cloud_removal import report_html, train_cloud_removal

        if self.parameterAsFile(parameters, self.TRIPLETS_FOLDER, context):
            return self.train_on_triplets(parameters, context, feedback, progress, cancelled)

        sources, names, what = self.training_sources(parameters, context)
        config = self.training_config(parameters, context, sources, names)
        model_path = self.model_output(parameters, self.OUTPUT_MODEL, context)
        checkpoints = model_path + ".checkpoints"
        resume = self.parameterAsFile(parameters, self.RESUME_FROM, context) or None
        feedback.pushInfo(f"Training on {what}, bands {sources[0].bands}; checkpoints in {checkpoints}")
        shown = {"percent": -1}

        def step_progress(fraction, message=None):
            feedback.setProgress(100.0 * fraction)
            if message and int(100 * fraction) > shown["percent"]:  # about one line per percent
                shown["percent"] = int(100 * fraction)
                feedback.pushInfo(message)

        result = train_cloud_removal(config, model_path, checkpoint_dir=checkpoints, resume_from=resume,
                                     progress=step_progress, cancelled=cancelled, log=feedback.pushInfo)
        outputs = {self.OUTPUT_MODEL: result.model_path}
        report = self.parameterAsFileOutput(parameters, self.OUTPUT_REPORT, context)
        if report:
            outputs[self.OUTPUT_REPORT] = report_html(result.history, result.samples, report,
                                                      held_out=result.held_out)
        metrics = ", ".join(f"{k} {v:.4g}" for k, v in result.metrics.items() if isinstance(v, (int, float)))
        feedback.pushInfo(f"Trained {result.steps} steps in {result.seconds:.0f} s; validation: {metrics}")
        return outputs
