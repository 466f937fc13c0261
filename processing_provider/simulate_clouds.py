"""cloudfree:simulateclouds - add synthetic clouds, shadows and gaps to a clear raster."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
)

from .base import CloudFreeAlgorithm


class SimulateCloudsAlgorithm(CloudFreeAlgorithm):
    # parameter and output names (the ids headless calls use)
    INPUT = "INPUT"
    SEED = "SEED"
    COVERAGE = "COVERAGE"
    THICKNESS = "THICKNESS"
    SHADOWS = "SHADOWS"
    MISSING_DATA = "MISSING_DATA"
    OUTPUT = "OUTPUT"
    OUTPUT_MASK = "OUTPUT_MASK"
    CLOUD_FRACTION = "CLOUD_FRACTION"
    SHADOW_FRACTION = "SHADOW_FRACTION"
    MISSING_FRACTION = "MISSING_FRACTION"
    NAME = "simulateclouds"
    DISPLAY_NAME = "Simulate clouds"
    GROUP = "Training data"
    HELP = (
        "<p>Adds synthetic clouds, their shadows and missing-data gaps to a raster, for training "
        "cloud-removal and fusion models and for testing them against a known clear image.</p>"
        "<p>Clouds come from multi-octave gradient (Perlin-type) noise used as a transparency mask and "
        "blended towards a bright cloud colour taken from the image's own statistics, with small "
        "per-band variation. Shadows are the cloud mask displaced and darkening the ground. Gaps are "
        "wedges and stripes set to nodata.</p>"
        "<p><b>Coverage</b>: target fraction of pixels labelled cloud. <b>Thickness</b>: 0 gives thin, "
        "translucent clouds, 1 opaque cores. <b>Missing data</b>: fraction of pixels set to nodata. "
        "The same <b>seed</b> always gives the same clouds.</p>"
        "<p>Outputs: the cloudy raster (same grid, CRS, data type and nodata as the input) and a mask "
        "(0 clear, 1 cloud, 2 shadow, 3 missing), and the achieved <b>cloud fraction</b>, <b>shadow fraction</b> "
        "and <b>missing-data fraction</b> of the pixels.</p>"
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(QgsProcessingParameterRasterLayer(self.INPUT, "Clear input raster"))
        self.addParameter(QgsProcessingParameterNumber(self.SEED, "Random seed", QgsProcessingParameterNumber.Integer,
                                                       0, minValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.COVERAGE, "Cloud coverage (fraction 0-1)",
                                                       QgsProcessingParameterNumber.Double, 0.3, minValue=0.0,
                                                       maxValue=1.0))
        self.addParameter(QgsProcessingParameterNumber(self.THICKNESS, "Thickness (0 thin - 1 opaque)",
                                                       QgsProcessingParameterNumber.Double, 0.7, minValue=0.0,
                                                       maxValue=1.0))
        self.addParameter(QgsProcessingParameterBoolean(self.SHADOWS, "Add cloud shadows", True))
        self.addParameter(QgsProcessingParameterNumber(self.MISSING_DATA, "Missing data (fraction 0-1 of gaps)",
                                                       QgsProcessingParameterNumber.Double, 0.0, minValue=0.0,
                                                       maxValue=1.0))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Cloudy raster"))
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT_MASK, "Cloud mask"))
        for key, label in ((self.CLOUD_FRACTION, "Cloud fraction"), (self.SHADOW_FRACTION, "Shadow fraction"),
                           (self.MISSING_FRACTION, "Missing-data fraction")):
            self.addOutput(QgsProcessingOutputNumber(key, label))

    def compute(self, parameters, context, feedback, progress, cancelled):
        from ..models.clouds import CloudParams, simulate_clouds
        from ..models.raster import require_valid_pixels

        src = self.raster_info(parameters, self.INPUT, context)
        require_valid_pixels(src)
        params = CloudParams(
            seed=self.parameterAsInt(parameters, self.SEED, context),
            coverage=self.parameterAsDouble(parameters, self.COVERAGE, context),
            thickness=self.parameterAsDouble(parameters, self.THICKNESS, context),
            shadows=self.parameterAsBool(parameters, self.SHADOWS, context),
            missing_data=self.parameterAsDouble(parameters, self.MISSING_DATA, context),
        )
        out = self.output_path(self.parameterAsOutputLayer(parameters, self.OUTPUT, context))
        mask = self.output_path(self.parameterAsOutputLayer(parameters, self.OUTPUT_MASK, context))
        feedback.pushInfo(f"Simulating clouds on '{src.name}' ({src.width}x{src.height}, {src.band_count} bands): {params}")
        summary = simulate_clouds(src, out, mask, params, progress=progress, cancelled=cancelled)
        feedback.pushInfo(
            "Achieved fractions: cloud {cloud_fraction:.3f}, shadow {shadow_fraction:.3f}, "
            "missing {missing_fraction:.3f}".format(**summary)
        )
        return {
            self.OUTPUT: out,
            self.OUTPUT_MASK: mask,
            # plain floats: numpy scalars do not survive the conversion to QVariant (qgis_process)
            self.CLOUD_FRACTION: float(summary["cloud_fraction"]),
            self.SHADOW_FRACTION: float(summary["shadow_fraction"]),
            self.MISSING_FRACTION: float(summary["missing_fraction"]),
        }
