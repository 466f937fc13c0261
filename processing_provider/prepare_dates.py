"""cloudfree:preparedates - the other dates of a stack (and radar) registered onto a target date, their clouds
detected: the "for every date" step of the chain "Cloud-free image from a stack", which a Processing model
cannot loop over itself."""

from __future__ import annotations

import os
from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputMultipleLayers,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterLayer,
)

from ..models.runtime import install_hint, missing_packages
from .base import CloudFreeAlgorithm
from .common import device_parameter, device_value
from .detect_clouds import DetectCloudsAlgorithm
from .detector_parameters import DetectorParameters
from .register import TRANSFORMS

#: REGISTRATION choices: (engine mode, label)
REGISTRATION_CHOICES = (("fallback", "Register; where that is impossible, place by georeferencing (and say so)"),
                        ("strict", "Register, or stop with the error"),
                        ("georeferencing", "Georeferencing only (no registration)"))
SUMMARY_FILE = "prepared_dates.json"


class PrepareDatesAlgorithm(DetectorParameters, CloudFreeAlgorithm):
    """The band roles, product and scaling of detectclouds come from :class:`DetectorParameters`, same ids."""

    TARGET = "TARGET"
    TARGET_MASK = "TARGET_MASK"
    DATES = "DATES"
    RADAR = "RADAR"
    REGISTRATION = "REGISTRATION"
    TRANSFORM = "TRANSFORM"
    REGISTRATION_BAND = "REGISTRATION_BAND"
    DEVICE = "DEVICE"
    OUTPUT_FOLDER = "OUTPUT_FOLDER"
    DATES_ON_TARGET = "DATES_ON_TARGET"
    DATE_MASKS = "DATE_MASKS"
    RADAR_ON_TARGET = "RADAR_ON_TARGET"
    SUMMARY = "SUMMARY"
    REGISTERED = "REGISTERED"

    NAME = "preparedates"
    DISPLAY_NAME = "Prepare other dates: register onto the target, detect their clouds"
    GROUP = "Cloud removal"
    REQUIRES = ("numpy", "osgeo", "scipy", "cv2", "skimage")
    HELP = (
        "<p>Makes the other dates of a stack (and Sentinel-1 radar) ready to guide the removal of the clouds of "
        "one <b>target</b> date: every layer is registered onto the target and written on its grid, and the clouds "
        "of every optical date are detected there. It is the \"for every date\" step of the model <i>Cloud-free "
        "image from a stack</i>; it runs the engines of <i>Register image</i> and <i>Detect clouds and "
        "shadows</i>.</p>"
        "<p><b>Cloud mask of the target</b> (optional, from <i>Detect clouds</i>): the target's clouds give no tie "
        "points. <b>Other dates</b>: optical rasters with the target's band layout (a layer that looks like radar "
        "counts as radar). <b>Radar</b> (optional): registered with image structure (CFOG), no mask.</p>"
        "<p><b>Registration</b>: features chosen automatically (SIFT between optical dates, image structure for "
        "radar) on the <b>registration band</b> (empty = the NIR band) with the <b>transform</b> chosen. An "
        "optical date's own clouds are detected first and kept out of the tie points. Where registration is "
        "impossible (an overcast target or date, too few matches), the default places the layer by its "
        "georeferencing and says so in the log and the summary; or stop with the error; or never register.</p>"
        "<p><b>Blue band, green band, red band, NIR band, SWIR1 band, SWIR2 band, product level, scaling, custom "
        "gain, custom offset, dilation</b>: as in <i>Detect clouds and shadows</i> (bands of the target; every "
        "optical date has the same layout). The masks are 0 clear, 1 cloud, 2 shadow, 255 nodata. Advanced: the "
        "<b>device</b> of the detector.</p>"
        "<p>Outputs, in the <b>output folder</b>: every layer on the target grid (<i>NN_name.tif</i>), the masks "
        "(<i>NN_name_mask.tif</i>) and <i>prepared_dates.json</i> (how each layer was aligned: shift, rotation, "
        "RMS_all, RMS_LOO, N_red, cloud fraction). As outputs: <b>DATES_ON_TARGET</b>, <b>DATE_MASKS</b> (same "
        "order; a date with no clear pixel is left out), <b>RADAR_ON_TARGET</b> (layer lists for <i>Remove "
        "clouds</i>' GUIDES, GUIDE_MASKS, RADAR_GUIDES), "
        "<b>SUMMARY</b> and <b>REGISTERED</b> (how many layers were registered). A failed or cancelled run "
        "removes what it wrote.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.TARGET, "Target date (the cloudy image)"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.TARGET_MASK, "Cloud mask of the target (non-zero: "
                                                            "no tie points)", optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(self.DATES, "Other dates of the same place",
                                                               QgsProcessing.TypeRaster, optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(self.RADAR, "Radar (Sentinel-1 VV, VH)",
                                                               QgsProcessing.TypeRaster, optional=True))
        self.add_detector_parameters(self.TARGET, dilation=3)
        self.addParameter(QgsProcessingParameterEnum(self.REGISTRATION, "Registration",
                                                     [label for _, label in REGISTRATION_CHOICES], defaultValue=0))
        advanced = [QgsProcessingParameterEnum(self.TRANSFORM, "Transform", [t[1] for t in TRANSFORMS],
                                               defaultValue=2),
                    QgsProcessingParameterBand(self.REGISTRATION_BAND, "Registration band (empty = the NIR band)",
                                               None, self.TARGET, optional=True),
                    device_parameter(self.DEVICE)]
        for parameter in advanced:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterFolderDestination(self.OUTPUT_FOLDER, "Prepared dates (folder)"))
        self.addOutput(QgsProcessingOutputMultipleLayers(self.DATES_ON_TARGET, "Other dates on the target grid"))
        self.addOutput(QgsProcessingOutputMultipleLayers(self.DATE_MASKS, "Their cloud masks (same order)"))
        self.addOutput(QgsProcessingOutputMultipleLayers(self.RADAR_ON_TARGET, "Radar on the target grid"))
        self.addOutput(QgsProcessingOutputFile(self.SUMMARY, "What was done to each layer (JSON)"))
        self.addOutput(QgsProcessingOutputNumber(self.REGISTERED, "Layers registered (the others by georeferencing)"))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.stack import prepare_dates, save_summary

        if missing_packages(DetectCloudsAlgorithm.DETECTOR_REQUIRES):
            raise QgsProcessingException(install_hint(missing_packages(DetectCloudsAlgorithm.DETECTOR_REQUIRES)))
        target = self.raster_info(parameters, self.TARGET, context)
        target_mask = self.raster_info(parameters, self.TARGET_MASK, context, optional=True)
        dates = self.raster_infos(parameters, self.DATES, context)
        radar = self.raster_infos(parameters, self.RADAR, context)
        folder = self.parameterAsString(parameters, self.OUTPUT_FOLDER, context)
        options = self.options(parameters, context)
        feedback.pushInfo(f"Target '{target.name}'" + (f", its clouds from '{target_mask.name}'" if target_mask
                                                        else ", no cloud mask") + f"; {len(dates)} other date(s), "
                          f"{len(radar)} radar layer(s); registration: {options.registration}, {options.transform}, "
                          f"band {options.registration_band}")
        prepared = prepare_dates(target, dates, radar, folder, options, target_mask, progress, cancelled)
        for layer in prepared:
            figures = layer.registration
            feedback.pushInfo(f"'{layer.name}' ({layer.kind}): " + (
                f"registered, shift ({figures['shift_x']:+.2f}, {figures['shift_y']:+.2f}) px, RMS_LOO "
                f"{figures['rms_loo']:.2f} px, N_red {figures['n_red']}" if figures else layer.note)
                + (f"; clouds {100 * layer.detection['cloud_fraction']:.1f} %" if layer.detection else ""))
            if not figures and options.registration != "georeferencing":
                feedback.pushWarning(f"'{layer.name}' was placed by its georeferencing: {layer.note}")
            if not layer.usable:
                feedback.pushWarning(f"'{layer.name}' has no clear pixel: it is left out of DATES_ON_TARGET.")
        summary = save_summary(os.path.join(folder, SUMMARY_FILE), target, prepared, options)
        dates = [p for p in prepared if p.kind == "optical" and p.usable]
        if not dates and not any(p.kind == "radar" for p in prepared):
            feedback.pushWarning("No other date has a clear pixel: there is nothing to guide the removal.")
        return {self.OUTPUT_FOLDER: folder, self.SUMMARY: summary,
                self.DATES_ON_TARGET: [p.path for p in dates], self.DATE_MASKS: [p.mask for p in dates],
                self.RADAR_ON_TARGET: [p.path for p in prepared if p.kind == "radar"],
                self.REGISTERED: sum(1 for p in prepared if p.registration)}

    def options(self, parameters, context):
        """The engine's ``PrepareOptions``: detectclouds' band roles and scaling (read as detectclouds reads them),
        detection with the dilation and device, the registration mode, transform and band."""
        from ..models.detection import DetectionOptions
        from ..models.stack import PrepareOptions

        detection = DetectionOptions(product=self.product(parameters, context),
                                     dilation=self.parameterAsInt(parameters, self.DILATION, context),
                                     device=device_value(self, parameters, context, self.DEVICE))
        mode = REGISTRATION_CHOICES[self.parameterAsEnum(parameters, self.REGISTRATION, context)][0]
        return PrepareOptions(roles=self.band_roles(parameters, context),
                              scaling=self.scaling(parameters, context), detection=detection,
                              registration=mode,
                              transform=TRANSFORMS[self.parameterAsEnum(parameters, self.TRANSFORM, context)][0],
                              band=self.parameterAsInt(parameters, self.REGISTRATION_BAND, context) or None)
