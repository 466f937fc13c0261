"""cloudfree:autocluster - unsupervised classification that finds the number of clusters itself."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from .base import CloudFreeAlgorithm
from .common import band_parameter, band_values


class AutoclusterAlgorithm(CloudFreeAlgorithm):
    INPUT = "INPUT"
    BANDS = "BANDS"
    SIGNIFICANCE = "SIGNIFICANCE"
    MIN_SIZE = "MIN_SIZE"
    MAX_CLUSTERS = "MAX_CLUSTERS"
    SMOOTH = "SMOOTH"
    SEED = "SEED"
    OUTPUT = "OUTPUT"
    OUTPUT_CENTROIDS = "OUTPUT_CENTROIDS"
    CLASS_COUNT = "CLASS_COUNT"

    NAME = "autocluster"
    DISPLAY_NAME = "Automatic clustering (K-histogram)"
    GROUP = "Segmentation"
    REQUIRES = ("numpy", "osgeo", "scipy", "cv2")
    HELP = (
        "<p>Unsupervised classification of the <b>input raster</b> that chooses the number of clusters itself. "
        "Each band is clustered on "
        "its own by k-means on its histogram: a cluster is split in two while its values are not normally "
        "distributed (D'Agostino-Pearson test at the <b>significance</b> level) and both halves keep at least "
        "<b>minimum group size</b> pixels; neighbouring clusters whose values together look normal are merged. "
        "A pixel's class is its combination of per-band clusters; combinations with fewer than the minimum "
        "group size of pixels join the nearest larger one.</p>"
        "<p><b>Bands</b>: the bands to cluster (empty = all; headless: band numbers such as 1,2,3). Every band "
        "multiplies the number of combinations: "
        "use few bands (or an index such as NDVI) and a larger group size for few classes. <b>Maximum clusters "
        "per band</b> (advanced) caps each band. Real imagery is rarely a mixture of normal distributions, so "
        "expect a band to reach that cap unless the significance is small.</p>"
        "<p><b>Smoothing</b>: diameter in pixels of an edge-preserving bilateral filter applied first (0 = "
        "none); it removes speckle inside regions while keeping their edges.</p>"
        "<p>The clusters are found on a random sample of 200,000 valid pixels (the <b>seed</b> draws it), then "
        "every pixel is classified block by block.</p>"
        "<p>Outputs: the <b>class raster</b> (Byte, classes 1..K with a colour table, 255 = nodata), the "
        "<b>centroids</b> (JSON: per band its cluster centroids and boundaries, per class its mean value in "
        "every band and its pixel count) and the number of classes K.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Input raster"))
        self.addParameter(band_parameter(self.BANDS, "Bands (empty = all)", self.INPUT))
        self.addParameter(QgsProcessingParameterNumber(self.SIGNIFICANCE, "Significance level of the normality test",
                                                       QgsProcessingParameterNumber.Double, 0.001, minValue=1e-12,
                                                       maxValue=0.5))
        self.addParameter(QgsProcessingParameterNumber(self.MIN_SIZE, "Minimum group size (pixels)",
                                                       QgsProcessingParameterNumber.Integer, 1000, minValue=1))
        most = QgsProcessingParameterNumber(self.MAX_CLUSTERS, "Maximum clusters per band",
                                            QgsProcessingParameterNumber.Integer, 8, minValue=1, maxValue=64)
        most.setFlags(most.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(most)
        self.addParameter(QgsProcessingParameterNumber(self.SMOOTH, "Bilateral smoothing diameter in pixels (0 = "
                                                       "none)", QgsProcessingParameterNumber.Integer, 0, minValue=0,
                                                       maxValue=31))
        self.addParameter(QgsProcessingParameterNumber(self.SEED, "Random seed", QgsProcessingParameterNumber.Integer,
                                                       0, minValue=0))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Clusters"))
        self.addParameter(QgsProcessingParameterFileDestination(self.OUTPUT_CENTROIDS, "Centroids",
                                                                "JSON files (*.json)", optional=True,
                                                                createByDefault=True))
        self.addOutput(QgsProcessingOutputNumber(self.CLASS_COUNT, "Number of classes"))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.raster import parse_bands
        from ..models.segmentation import AutoclusterOptions, autocluster

        src = self.raster_info(parameters, self.INPUT, context)
        bands = parse_bands(band_values(self, parameters, self.BANDS, context), src.band_count, src.name)
        options = AutoclusterOptions(bands=tuple(bands),
                                     significance=self.parameterAsDouble(parameters, self.SIGNIFICANCE, context),
                                     min_size=self.parameterAsInt(parameters, self.MIN_SIZE, context),
                                     max_clusters=self.parameterAsInt(parameters, self.MAX_CLUSTERS, context),
                                     smooth=self.parameterAsInt(parameters, self.SMOOTH, context),
                                     seed=self.parameterAsInt(parameters, self.SEED, context))
        out = self.output_path(self.parameterAsOutputLayer(parameters, self.OUTPUT, context))
        centroids = self.parameterAsFileOutput(parameters, self.OUTPUT_CENTROIDS, context) or None
        summary = autocluster(src, out, self.output_path(centroids) if centroids else None, options, progress,
                              cancelled)
        feedback.pushInfo(f"{summary['k']} classes from bands {bands}: per band "
                          + ", ".join(f"{p['band']}: {len(p['centroids'])}" for p in summary["per_band"])
                          + f" clusters; {summary['seconds']:.1f} s")
        results = {self.OUTPUT: out, self.CLASS_COUNT: summary["k"]}
        if centroids:
            results[self.OUTPUT_CENTROIDS] = centroids
        return results
