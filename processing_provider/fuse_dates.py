"""cloudfree:fusedates - fuse several dates of one place into one clean image."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterEnum,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterDestination,
)

from .base import CloudFreeAlgorithm
from .common import (BAND_ORDER_HELP, backend_parameter, backend_value, band_parameter, band_values, device_parameter,
                     device_value, model_parameter, parse_values, shipped_models_help, values_parameter)
from .scale_out import SCHEDULER_HELP, scaled_out, scheduler_parameter

METHODS = (("quality", "Quality network (Rafique et al. 2019)"), ("mean", "Mean"), ("median", "Median"),
           ("best", "Best available pixel (mask / cloud probability)"))
ALIGN_CHOICES = ("Fail when the grids differ", "Warp every date onto the first date's grid")
DEFAULT_MODEL = "fusion_default.safetensors"


class FuseDatesAlgorithm(CloudFreeAlgorithm):
    # parameter and output names (the ids headless calls use)
    INPUTS = "INPUTS"
    METHOD = "METHOD"
    MASKS = "MASKS"
    MASK_VALUES = "MASK_VALUES"
    MODEL = "MODEL"
    ALIGN = "ALIGN"
    BANDS = "BANDS"
    DEVICE = "DEVICE"
    BACKEND = "BACKEND"
    OUTPUT = "OUTPUT"
    OUTPUT_WEIGHTS = "OUTPUT_WEIGHTS"
    NAME = "fusedates"
    DISPLAY_NAME = "Fuse dates (quality network)"
    GROUP = "Multi-date fusion"
    REQUIRES = ("numpy", "osgeo", "torch", "safetensors")
    HELP = (
        "<p>Fuses several co-registered dates of the same place into one clean image.</p>"
        "<p><b>Quality network</b> (Rafique, Blanton and Jacobs, CVPRW 2019): a small U-Net scores every "
        "pixel of every date; a softmax across dates turns the scores into weights that sum to 1, and the "
        "fused pixel is the weighted sum of the dates. Nodata pixels, and pixels flagged by a cloud mask "
        "when masks are given, get weight 0. One model works for any band count (bands are scored one at a "
        "time with shared weights).</p>"
        "<p><b>Method</b>: the quality network, or one of the baselines. Baselines: <b>mean</b> and <b>median</b> of the usable dates, and <b>best available pixel</b> "
        "(per pixel the date without a mask flag; ties go to the last date in the list).</p>"
        "<p><b>Masks</b>: one cloud mask per date, in the same order; pixels whose value is in <b>mask "
        "values</b> are cloudy. <b>Align</b>: by default all dates must share the first date's grid; "
        "choose warping to resample them onto it.</p>"
        "<p><b>Per-date weight maps</b>: one band per date, the weight of that date at each pixel, to see "
        "where each fused pixel came from.</p>"
        "<p><b>Bands</b>: the bands to fuse, the same numbers in every date (empty = all); the output keeps "
        "their order. " + BAND_ORDER_HELP + "</p>"
        "<p><b>Fusion model</b> (quality network only): empty = the shipped model, else a model from <i>Train "
        "fusion model</i> or a shipped model's name. <b>Device</b>: auto uses a CUDA GPU when there is one (the "
        "list says what this machine has); <b>inference engine</b> (advanced): auto, torch or ONNX Runtime.</p>"
        "<p>Outputs: the <b>fused raster</b> (first date's grid) and, optionally, the weight maps.</p>"
    ) + SCHEDULER_HELP

    def help_appendix(self) -> str:
        return shipped_models_help(("fusion",), "empty = fusion_default")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(self.INPUTS, "Dates (rasters, same place)",
                                                               QgsProcessing.TypeRaster))
        self.addParameter(QgsProcessingParameterEnum(self.METHOD, "Method", [m[1] for m in METHODS], defaultValue=0))
        self.addParameter(QgsProcessingParameterMultipleLayers(self.MASKS, "Cloud masks (one per date, same order)",
                                                               QgsProcessing.TypeRaster, optional=True))
        self.addParameter(values_parameter(self.MASK_VALUES, "Mask values that mark clouds", "1", self.MASKS))
        self.addParameter(model_parameter(self.MODEL, "Fusion model (empty = shipped model)", ("fusion",)))
        self.addParameter(QgsProcessingParameterEnum(self.ALIGN, "Grids", list(ALIGN_CHOICES), defaultValue=0))
        self.addParameter(band_parameter(self.BANDS, "Bands (empty = all)", self.INPUTS))
        self.addParameter(device_parameter(self.DEVICE))
        self.addParameter(backend_parameter(self.BACKEND))
        self.addParameter(scheduler_parameter())
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Fused raster"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_WEIGHTS,
                                                                  "Per-date weight maps (one band per date)",
                                                                  optional=True, createByDefault=False))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.fusion import FuseRasterOptions, fuse_rasters
        from ..models.raster import parse_bands

        inputs, masks = self.dates_and_masks(parameters, context, "Fusion", self.INPUTS, self.MASKS)
        method = METHODS[self.parameterAsEnum(parameters, self.METHOD, context)][0]
        model = self.model_file(parameters, self.MODEL, context, DEFAULT_MODEL) if method == "quality" else None
        bands = parse_bands(band_values(self, parameters, self.BANDS, context), inputs[0].band_count,
                            inputs[0].name)
        mask_values = parse_values(self.parameterAsString(parameters, self.MASK_VALUES, context) or "1",
                                   self.MASK_VALUES)
        out = self.output_path(self.parameterAsOutputLayer(parameters, self.OUTPUT, context))
        weight_maps = self.parameterAsOutputLayer(parameters, self.OUTPUT_WEIGHTS, context) or None
        feedback.pushInfo(f"Fusing {len(inputs)} dates ({', '.join(i.name for i in inputs)}) with {method}"
                          + (f", masks {', '.join(m.name for m in masks)}" if masks else ""))
        with scaled_out(self, parameters, context, feedback) as executor:
            options = FuseRasterOptions(method=method, model_path=model, bands=bands,
                                        device=device_value(self, parameters, context, self.DEVICE),
                                        backend=backend_value(self, parameters, context, self.BACKEND),
                                        align=self.parameterAsEnum(parameters, self.ALIGN, context) == 1,
                                        executor=executor)
            summary = fuse_rasters(inputs, out, masks=masks, mask_values=mask_values, weight_map_path=weight_maps,
                                   options=options, progress=progress, cancelled=cancelled)
        feedback.pushInfo(f"Done in {summary.get('seconds', 0):.1f} s")
        outputs = {self.OUTPUT: out}
        if weight_maps:
            outputs[self.OUTPUT_WEIGHTS] = weight_maps
        return outputs
