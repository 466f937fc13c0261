"""cloudfree:regions - connected regions of chosen classes as polygons with area and perimeter."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from .base import CloudFreeAlgorithm
from .common import parse_values, values_parameter


class RegionsAlgorithm(CloudFreeAlgorithm):
    INPUT = "INPUT"
    CLASSES = "CLASSES"
    MIN_AREA = "MIN_AREA"
    EIGHT_CONNECTED = "EIGHT_CONNECTED"
    OUTPUT = "OUTPUT"
    REGION_COUNT = "REGION_COUNT"

    NAME = "regions"
    DISPLAY_NAME = "Regions of classes (polygons with area)"
    GROUP = "Segmentation"
    REQUIRES = ("numpy", "osgeo")
    HELP = (
        "<p>Traces the connected regions of chosen classes of a class raster (the output of <i>Segment raster</i>, "
        "<i>Automatic clustering</i>, a cloud mask, a land-cover map) as polygons, to count and measure "
        "objects.</p>"
        "<p><b>Classes</b>: the class values to trace, comma-separated (empty = every class). Each region holds "
        "pixels of one class; with <b>8-connected</b> pixels touching at a corner join, otherwise only through "
        "an edge.</p>"
        "<p><b>Minimum area</b>: regions smaller than this are dropped, in square map units (m2 for a projected "
        "CRS; pixels for a raster without georeferencing). 0 keeps all.</p>"
        "<p>Output: polygons (GeoPackage, GeoJSON, FlatGeobuf, SQLite or KML) with the fields <tt>class</tt>, "
        "<tt>name</tt> (when the raster names its classes), <tt>area</tt>, <tt>perimeter</tt> (map units) and "
        "<tt>pixels</tt>; and the number of regions.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Class raster"))
        self.addParameter(values_parameter(self.CLASSES, "Classes (comma-separated, empty = all)", "", self.INPUT))
        self.addParameter(QgsProcessingParameterNumber(self.MIN_AREA, "Minimum area (square map units)",
                                                       QgsProcessingParameterNumber.Double, 0.0, minValue=0.0))
        self.addParameter(QgsProcessingParameterBoolean(self.EIGHT_CONNECTED, "8-connected (corners join)", True))
        self.addParameter(QgsProcessingParameterVectorDestination(self.OUTPUT, "Regions"))
        self.addOutput(QgsProcessingOutputNumber(self.REGION_COUNT, "Number of regions"))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.segmentation import RegionOptions, regions

        src = self.raster_info(parameters, self.INPUT, context)
        options = RegionOptions(classes=parse_values(self.parameterAsString(parameters, self.CLASSES, context),
                                                     self.CLASSES),
                                min_area=self.parameterAsDouble(parameters, self.MIN_AREA, context),
                                eight_connected=self.parameterAsBool(parameters, self.EIGHT_CONNECTED, context))
        out = self.output_path(self.parameterAsOutputLayer(parameters, self.OUTPUT, context))
        summary = regions(src, out, options, progress, cancelled)
        feedback.pushInfo(f"{summary['regions']} region(s) kept, {summary['dropped']} under the minimum area dropped")
        for value, entry in sorted(summary["per_class"].items(), key=lambda kv: int(kv[0])):
            feedback.pushInfo(f"  class {value}: {entry['regions']} region(s), area {entry['area']:.6g}")
        return {self.OUTPUT: out, self.REGION_COUNT: summary["regions"]}
