"""The label parameters trainfusion and trainsegmentation share: a raster of class ids, or polygons
with a numeric class field that the engine rasterises onto the input's grid."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterField,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
)


class LabelParameters:
    """Mixin of a CloudFree algorithm: LABELS, LABEL_POLYGONS and LABEL_FIELD, and their reading."""

    LABELS = "LABELS"
    LABEL_POLYGONS = "LABEL_POLYGONS"
    LABEL_FIELD = "LABEL_FIELD"

    def add_label_parameters(self, raster_label: str = "Labels raster (class values)") -> None:
        self.addParameter(QgsProcessingParameterRasterLayer(self.LABELS, raster_label, optional=True))
        self.addParameter(QgsProcessingParameterVectorLayer(self.LABEL_POLYGONS, "Label polygons",
                                                            [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(QgsProcessingParameterField(self.LABEL_FIELD, "Class field of the polygons", None,
                                                      self.LABEL_POLYGONS, QgsProcessingParameterField.Numeric,
                                                      optional=True))

    def label_polygons(self, parameters, context) -> tuple | None:
        """``(polygon file, class field)`` of LABEL_POLYGONS, or None when no polygons are given."""
        polygons = self.parameterAsVectorLayer(parameters, self.LABEL_POLYGONS, context)
        if polygons is None:
            return None
        field = self.parameterAsString(parameters, self.LABEL_FIELD, context)
        if not field:
            raise QgsProcessingException(f"Give the class field of the label polygons ({self.LABEL_FIELD}).")
        return polygons.source().split("|")[0], field
