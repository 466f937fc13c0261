"""cloudfree:segment - classify every pixel of a raster with a segmentation model (class raster, probabilities)."""

from __future__ import annotations

import os
from dataclasses import replace

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
)

from .base import CloudFreeAlgorithm
from .common import (backend_parameter, backend_value, device_parameter, device_value, model_parameter, model_value,
                     shipped_models_help, tile_parameter)
from .scale_out import SCHEDULER_HELP, scaled_out, scheduler_parameter


SEGMENTATION_TASKS = ("segmentation", "fusion_segmentation")


class SegmentAlgorithm(CloudFreeAlgorithm):
    INPUT = "INPUT"
    MODEL = "MODEL"
    TILE_SIZE = "TILE_SIZE"
    OVERLAP = "OVERLAP"
    DEVICE = "DEVICE"
    BACKEND = "BACKEND"
    OUTPUT = "OUTPUT"
    OUTPUT_PROBABILITIES = "OUTPUT_PROBABILITIES"

    NAME = "segment"
    DISPLAY_NAME = "Segment raster (U-Net)"
    GROUP = "Segmentation"
    REQUIRES = ("numpy", "osgeo", "torch", "safetensors")
    HELP = (
        "<p>Labels every pixel with the most probable class of a segmentation model, over the whole raster in "
        "overlapping tiles (the class probabilities of neighbouring tiles are cross-faded, memory stays "
        "bounded).</p>"
        "<p><b>Input rasters</b>: one raster, or several on the same grid whose bands are stacked in order, as "
        "the model was trained (its band count must match).</p>"
        "<p><b>Model</b>: a model from <i>Train segmentation model</i>, or the land-cover network a fusion "
        "training saves beside its model (<tt>*.segmentation.safetensors</tt>; the shipped "
        "<tt>fusion_default.segmentation.safetensors</tt> takes one NDVI band): a file, or a shipped model's "
        "name.</p>"
        "<p><b>Tile size</b>: 0 = the model's; <b>overlap</b>: pixels shared by neighbouring tiles (smaller "
        "than the tile). <b>Device</b>: auto uses a CUDA GPU when there is one (the list says what this machine "
        "has). <b>Inference engine</b> (advanced): auto (the faster of ONNX Runtime and torch), torch or ONNX "
        "Runtime.</p>"
        "<p>Outputs: the <b>class raster</b> (Byte, the model's class values with its colour table and class "
        "names, 255 = nodata wherever an input band has no data; CRS and geotransform of the input) and, "
        "optionally, the <b>class probabilities</b> (Float32, one band per class, named after it).</p>"
    ) + SCHEDULER_HELP

    def help_appendix(self) -> str:
        return shipped_models_help(SEGMENTATION_TASKS, "a model is required")

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterMultipleLayers(self.INPUT, "Input rasters (same grid, bands stacked)",
                                                               QgsProcessing.TypeRaster))
        self.addParameter(model_parameter(self.MODEL, "Segmentation model", SEGMENTATION_TASKS, optional=False))
        self.addParameter(tile_parameter(self.TILE_SIZE))
        self.addParameter(QgsProcessingParameterNumber(self.OVERLAP, "Tile overlap in pixels",
                                                       QgsProcessingParameterNumber.Integer, 32, minValue=0))
        self.addParameter(device_parameter(self.DEVICE))
        self.addParameter(backend_parameter(self.BACKEND))
        self.addParameter(scheduler_parameter())
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Classes"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_PROBABILITIES, "Class probabilities",
                                                                  optional=True, createByDefault=False))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.segmentation import SegmentOptions, segment

        inputs = self.raster_infos(parameters, self.INPUT, context)
        model = model_value(self, parameters, self.MODEL, context)
        out = self.output_path(self.parameterAsOutputLayer(parameters, self.OUTPUT, context))
        probabilities = self.parameterAsOutputLayer(parameters, self.OUTPUT_PROBABILITIES, context) or None
        options = SegmentOptions(tile=self.parameterAsInt(parameters, self.TILE_SIZE, context) or None,
                                 overlap=self.parameterAsInt(parameters, self.OVERLAP, context),
                                 device=device_value(self, parameters, context, self.DEVICE),
                                 backend=backend_value(self, parameters, context, self.BACKEND),
                                 probabilities_path=self.output_path(probabilities) if probabilities else None)
        with scaled_out(self, parameters, context, feedback) as executor:
            summary = segment(inputs, model, out, replace(options, executor=executor), progress, cancelled)
        total = max(sum(summary["pixel_counts"].values()), 1)
        feedback.pushInfo(f"Model {os.path.basename(model)} ({summary['task']}); {summary['seconds']:.1f} s on "
                          f"{summary['device']}, tile {summary['tile']}, overlap {summary['overlap']}")
        for entry in summary["classes"]:
            n = summary["pixel_counts"][str(entry["value"])]
            feedback.pushInfo(f"  class {entry['value']} ({entry['name']}): {n} px ({100.0 * n / total:.1f} %)")
        results = {self.OUTPUT: out}
        if probabilities:
            results[self.OUTPUT_PROBABILITIES] = probabilities
        return results
