"""The guide parameters removeclouds and traincloudremoval share: other dates of the same place
and Sentinel-1 radar, turned into the engine's ``Guide`` list."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
)

from .common import values_parameter

RADAR_UNITS = ("auto", "db", "linear")


class GuideParameters:
    """Mixin of a CloudFree algorithm: the guide parameters and their reading."""

    GUIDES = "GUIDES"
    GUIDE_MASKS = "GUIDE_MASKS"
    GUIDE_MASK_VALUES = "GUIDE_MASK_VALUES"
    RADAR_GUIDES = "RADAR_GUIDES"
    RADAR_UNITS = "RADAR_UNITS"
    SPECKLE = "SPECKLE"

    GUIDES_HELP = (
        "<p><b>Guides</b> (optional): other dates of the same place and/or Sentinel-1 radar, which see what a "
        "thick cloud hides. Any grid or CRS: they are warped onto the input's grid. Optical dates are matched "
        "to the input's colours (per band, on pixels clear in both) and the nearest date in time comes first "
        "(dates are read from layer names such as <i>S2_20150711</i>); give <b>guide masks</b> (one per "
        "optical guide, in the same order, with <b>guide mask values</b>) so a guide's own clouds are not "
        "copied. A layer in <b>guides</b> whose bands say VV/VH or whose values are in dB is taken as radar; "
        "<b>radar guides</b> says it explicitly. <b>Radar units</b> (advanced): auto, dB or linear power; linear "
        "power is converted to dB; an optional "
        "<b>speckle filter</b> (Lee, window in pixels) smooths it. A guided model needs the kinds of guides it "
        "was trained with. With guides and no model, the shipped guided model is used: the one guided by other "
        "dates (any band count), or the radar one when only radar is given. Where no guide date is clear, a "
        "guided model falls back to a fill.</p>"
        "<p><b>Method</b>: the model, or what an analyst does by hand, as a baseline: the <i>matched copy</i> "
        "of the nearest clear guide date, the <i>fusion</i> composite (per-pixel median of the guide dates "
        "without their clouds), or the <i>fill</i> from the surrounding clear pixels with thin clouds unmixed "
        "(no guide, no model, any band count).</p>"
    )

    #: the guide parameters in a training's words
    TRAINING_GUIDES_HELP = (
        "<p>Guide parameters: <b>guides</b> (other dates of the same place), their <b>cloud masks of the optical "
        "guides</b> (<i>GUIDE_MASKS</i>, same order) with the <b>guide mask values</b> that mark clouds and "
        "shadows, <b>radar guides</b> (Sentinel-1 VV, VH) with their <b>radar units</b> (advanced: auto, dB, "
        "linear) and <b>speckle</b> filter window (advanced, Lee, 0 = none). Any grid: they are warped onto the "
        "clear raster's grid.</p>"
    )

    def add_guide_parameters(self) -> None:
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.GUIDES, "Guides: other dates of the same place (and radar)", QgsProcessing.TypeRaster,
            optional=True))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.GUIDE_MASKS, "Cloud masks of the optical guides (same order)", QgsProcessing.TypeRaster,
            optional=True))
        self.addParameter(values_parameter(self.GUIDE_MASK_VALUES, "Guide mask values that mark clouds and shadows",
                                           "1,2", self.GUIDE_MASKS))
        self.addParameter(QgsProcessingParameterMultipleLayers(
            self.RADAR_GUIDES, "Radar guides (Sentinel-1 VV, VH)", QgsProcessing.TypeRaster, optional=True))
        units = QgsProcessingParameterEnum(self.RADAR_UNITS, "Radar units", list(RADAR_UNITS), defaultValue=0)
        speckle = QgsProcessingParameterNumber(self.SPECKLE, "Radar speckle filter window in pixels (0 = none)",
                                               QgsProcessingParameterNumber.Integer, 0, minValue=0, maxValue=31)
        for p in (units, speckle):
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)

    def guides(self, parameters, context) -> list:
        """The guides given, as engine ``Guide`` objects (optical first, in the order given, then radar)."""
        from ..models.cloud_removal.guides import Guide, looks_like_radar
        from ..models.errors import InputError
        from .common import parse_values

        units = RADAR_UNITS[self.parameterAsEnum(parameters, self.RADAR_UNITS, context)]
        speckle = self.parameterAsInt(parameters, self.SPECKLE, context)
        radar_infos = self.raster_infos(parameters, self.RADAR_GUIDES, context)
        optical = []
        for info in self.raster_infos(parameters, self.GUIDES, context):
            (radar_infos if looks_like_radar(info) else optical).append(info)
        radar = [Guide(info.path, kind="radar", radar_units=units, speckle=speckle, name=info.name)
                 for info in radar_infos]
        masks = self.raster_infos(parameters, self.GUIDE_MASKS, context)
        if masks and len(masks) != len(optical):
            raise InputError(f"{len(masks)} guide mask(s) for {len(optical)} optical guide(s): give one mask per "
                             "optical guide, in the same order, or none.")
        values = parse_values(self.parameterAsString(parameters, self.GUIDE_MASK_VALUES, context) or "1,2",
                              self.GUIDE_MASK_VALUES)
        return [Guide(info.path, mask=masks[i].path if masks else None, mask_values=values, name=info.name)
                for i, info in enumerate(optical)] + radar
