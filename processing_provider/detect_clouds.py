"""cloudfree:detectclouds - a cloud and cloud shadow mask from a pretrained detector (ukis-csmask)."""

from __future__ import annotations

from dataclasses import replace

from qgis.core import (
    QgsProcessingParameterDefinition,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingException,
    QgsProcessingOutputNumber,
)

from ..models.runtime import install_hint, missing_packages
from .base import CloudFreeAlgorithm
from .detector_parameters import DetectorParameters
from .common import (backend_parameter, backend_value, device_parameter, device_value, model_parameter, model_value,
                     tile_parameter)
from .scale_out import SCHEDULER_HELP, scaled_out, scheduler_parameter

class DetectCloudsAlgorithm(DetectorParameters, CloudFreeAlgorithm):
    INPUT = "INPUT"
    MODEL = "MODEL"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    DEVICE = "DEVICE"
    BACKEND = "BACKEND"
    OUTPUT = "OUTPUT"
    CLOUD_FRACTION = "CLOUD_FRACTION"
    SHADOW_FRACTION = "SHADOW_FRACTION"

    NAME = "detectclouds"
    DISPLAY_NAME = "Detect clouds and shadows"
    GROUP = "Cloud removal"
    REQUIRES = ("numpy", "osgeo", "scipy")
    #: what the default detector needs (a model trained with trainsegmentation needs torch instead)
    DETECTOR_REQUIRES = ("onnxruntime", "ukis_csmask")
    HELP = (
        "<p>Makes a cloud and cloud shadow mask of a multispectral raster with the pretrained networks of "
        "<i>ukis-csmask</i> (DLR, Apache-2.0; trained on CloudSEN12+ and SPARCS; Sentinel-2 and Landsat 5-9), "
        "run tile by tile over the whole raster (overlapping tiles blended, memory bounded).</p>"
        "<p><b>Output</b>: a Byte raster on the input's grid with a colour table: 0 clear, 1 cloud, 2 cloud "
        "shadow, 255 nodata (where any chosen input band is nodata). <b>Cloud fraction</b> and <b>shadow "
        "fraction</b>: the share of valid pixels in each class, as numeric outputs.</p>"
        "<p><b>Blue, green, red, NIR</b>: the input's bands in these roles (default 1, 2, 3, 4). "
        "<b>SWIR1 (1.6 um)</b> and <b>SWIR2 (2.2 um)</b> (optional, both or none): with them the 6-band "
        "network runs, which is more accurate (Sentinel-2 B11/B12, Landsat 8/9 bands 6/7).</p>"
        "<p><b>Product level</b>: top of atmosphere (L1C, Landsat Level-1) or surface reflectance (L2A, Landsat "
        "Level-2); each has its own network.</p>"
        "<p><b>Scaling</b>: how stored values become reflectance 0-1: reflectance as it is; Sentinel-2 digital "
        "numbers x 1e-4 - 0.1 (processing baseline 04.00 and later, from January 2022) or x 1e-4 (earlier); "
        "Landsat Collection 2 Level-2 (x 2.75e-5 - 0.2); Landsat 8/9 Level-1 (x 2e-5 - 0.1, without the "
        "sun-angle correction); or a custom <b>gain</b> and <b>offset</b> (reflectance = value x gain + offset). "
        "Values that are clearly not reflectance after scaling (digital numbers left unscaled) are refused.</p>"
        "<p><b>Dilation</b>: grow clouds and shadows by this many pixels (a disk) into clear pixels; cloud wins "
        "where both reach. Thin cloud edges are where cloud removal fails when the mask is tight: 2-5 px suits "
        "<i>Remove clouds</i>.</p>"
        "<p><b>Model</b> (advanced, optional): a model trained with <i>Train segmentation model</i> on your own "
        "cloud labels, used instead of ukis-csmask. It takes all bands of the input, scaled as in its training "
        "(the band, product and scaling settings above are not used). A class named cloud becomes 1 and one "
        "named shadow 2; without such names the class values 1 and 2 are cloud and shadow.</p>"
        "<p>Advanced: <b>tile size</b> (0 = the network's: 256 px, the only size ukis-csmask takes), <b>tile overlap</b> in "
        "pixels (blended), <b>device</b> (cuda needs the onnxruntime-gpu package), and the <b>inference engine</b> "
        "that runs a trained <b>model</b> (auto: the faster of ONNX Runtime and torch).</p>"
        "<p>The networks work best near 30 m; 10 m and 20 m Sentinel-2 bands work too. Chain: this mask is the "
        "<b>Cloud mask</b> of <i>Remove clouds (pix2pix)</i> with mask values 1,2.</p>"
        "<p>Needs the Python packages ukis-csmask (its networks, about 150 MB) and onnxruntime: "
        "<code>python3 -m pip install --user \"ukis-csmask==1.0.0\" onnxruntime</code>.</p>"
    ) + SCHEDULER_HELP

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Multispectral raster"))
        self.add_detector_parameters(self.INPUT, dilation=0)
        advanced = [tile_parameter(self.TILE_SIZE),
                    QgsProcessingParameterNumber(self.OVERLAP, "Tile overlap in pixels",
                                                 QgsProcessingParameterNumber.Integer, 64, minValue=0),
                    device_parameter(self.DEVICE),
                    model_parameter(self.MODEL, "Trained segmentation model instead of ukis-csmask", ("segmentation",)),
                    backend_parameter(self.BACKEND),
                    scheduler_parameter()]
        for parameter in advanced:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Cloud mask"))
        self.addOutput(QgsProcessingOutputNumber(self.CLOUD_FRACTION, "Cloud fraction of valid pixels"))
        self.addOutput(QgsProcessingOutputNumber(self.SHADOW_FRACTION, "Cloud shadow fraction of valid pixels"))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.detection import DetectionOptions, detect_clouds

        src = self.raster_info(parameters, self.INPUT, context)
        roles, scaling = self.band_roles(parameters, context), self.scaling(parameters, context)
        out = self.output_path(self.parameterAsOutputLayer(parameters, self.OUTPUT, context))
        options = DetectionOptions(product=self.product(parameters, context),
                                   dilation=self.parameterAsInt(parameters, self.DILATION, context),
                                   tile=self.parameterAsInt(parameters, self.TILE_SIZE, context) or None,
                                   overlap=self.parameterAsInt(parameters, self.OVERLAP, context),
                                   device=device_value(self, parameters, context, self.DEVICE),
                                   model=model_value(self, parameters, self.MODEL, context),
                                   backend=backend_value(self, parameters, context, self.BACKEND))
        if options.model is None and missing_packages(self.DETECTOR_REQUIRES):
            raise QgsProcessingException(install_hint(missing_packages(self.DETECTOR_REQUIRES)))
        feedback.pushInfo(f"Input '{src.name}': " + (f"all bands into the model {options.model}" if options.model else
                          f"bands {dict(zip(roles.roles, roles.bands))}, scaling {scaling.describe()}, product "
                          f"{options.product.upper()}"))
        with scaled_out(self, parameters, context, feedback) as executor:
            summary = detect_clouds(src, out, roles, scaling, replace(options, executor=executor), progress=progress,
                                    cancelled=cancelled)
        feedback.pushInfo(f"{summary.detector} on {summary.device}: cloud {100 * summary.cloud_fraction:.1f} %, "
                          f"shadow {100 * summary.shadow_fraction:.1f} % of {summary.counts.valid} valid pixels "
                          f"(dilation {summary.dilation} px) in {summary.seconds:.1f} s")
        return {self.OUTPUT: out, self.CLOUD_FRACTION: summary.cloud_fraction,
                self.SHADOW_FRACTION: summary.shadow_fraction}

    def shortHelpString(self) -> str:  # noqa: N802
        missing = missing_packages(self.DETECTOR_REQUIRES)
        warning = f"<p><b>Not ready:</b> {install_hint(missing)}</p>" if missing else ""
        return warning + super().shortHelpString()
