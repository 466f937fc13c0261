"""The cloud detector's parameters that detectclouds and preparedates share (band roles, product level,
scaling to reflectance, dilation), defined and read once, with the same ids in both algorithms."""

from __future__ import annotations

from qgis.core import QgsProcessingParameterBand, QgsProcessingParameterEnum, QgsProcessingParameterNumber

#: SCALING choices: the engine's presets in this order, then a custom gain and offset
SCALING_PRESETS = ("reflectance", "sentinel2_pb04", "sentinel2_l1c", "landsat_c2_l2", "landsat_l1_toa")
PRODUCTS = ("l1c", "l2a")


class DetectorParameters:
    """Mixin of a CloudFree algorithm: the detector's parameters and their reading."""

    BLUE = "BLUE"
    GREEN = "GREEN"
    RED = "RED"
    NIR = "NIR"
    SWIR1 = "SWIR1"
    SWIR2 = "SWIR2"
    PRODUCT = "PRODUCT"
    SCALING = "SCALING"
    GAIN = "GAIN"
    OFFSET = "OFFSET"
    DILATION = "DILATION"

    def add_detector_parameters(self, layer: str, dilation: int) -> None:
        """The band pickers of ``layer`` and the detector's settings, ``dilation`` pixels by default."""
        from ..models.detection import PRESET_LABELS

        # optional only so that a headless run may leave them at their defaults (QGIS 3.22 insists otherwise)
        for name, label, default in ((self.BLUE, "Blue band", 1), (self.GREEN, "Green band", 2),
                                     (self.RED, "Red band", 3), (self.NIR, "NIR band", 4)):
            self.addParameter(QgsProcessingParameterBand(name, f"{label} (default {default})", default, layer,
                                                         optional=True))
        for name, label in ((self.SWIR1, "SWIR1 band (1.6 um, optional)"), (self.SWIR2, "SWIR2 band (2.2 um, "
                                                                                       "optional)")):
            self.addParameter(QgsProcessingParameterBand(name, label, None, layer, optional=True))
        self.addParameter(QgsProcessingParameterEnum(self.PRODUCT, "Product level", [
            "Top of atmosphere (L1C / Level-1)", "Surface reflectance (L2A / Level-2)"], defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum(self.SCALING, "Scaling to reflectance", [
            PRESET_LABELS[p] for p in SCALING_PRESETS] + ["Custom: value x gain + offset"], defaultValue=0))
        self.addParameter(QgsProcessingParameterNumber(self.GAIN, "Custom gain", QgsProcessingParameterNumber.Double,
                                                       1.0, optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.OFFSET, "Custom offset",
                                                       QgsProcessingParameterNumber.Double, 0.0, optional=True))
        self.addParameter(QgsProcessingParameterNumber(self.DILATION, "Dilation of clouds and shadows in pixels",
                                                       QgsProcessingParameterNumber.Integer, dilation, minValue=0,
                                                       maxValue=500))

    def band_roles(self, parameters, context):
        """The band pickers as engine ``BandRoles`` (a picker without a value or default is None)."""
        from ..models.detection import BandRoles

        def band(name):
            return self.parameterAsInt(parameters, name, context) or None

        return BandRoles(*(band(n) for n in (self.BLUE, self.GREEN, self.RED, self.NIR, self.SWIR1, self.SWIR2)))

    def scaling(self, parameters, context):
        from ..models.detection import ReflectanceScaling

        choice = self.parameterAsEnum(parameters, self.SCALING, context)
        if choice < len(SCALING_PRESETS):
            return ReflectanceScaling.preset(SCALING_PRESETS[choice])
        return ReflectanceScaling.custom(self.parameterAsDouble(parameters, self.GAIN, context),
                                         self.parameterAsDouble(parameters, self.OFFSET, context))

    def product(self, parameters, context) -> str:
        return PRODUCTS[self.parameterAsEnum(parameters, self.PRODUCT, context)]
