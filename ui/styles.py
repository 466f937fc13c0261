"""How the dialogs style the layers they add, so that results read at a glance.

- **Images** (cloud-free, fused, registered): multiband colour (or grey for one band) with a
  cumulative-cut stretch (2-98 %) computed once and applied, the same minimum and maximum per
  band, to the input and to the result: before and after then compare pixel for pixel instead of
  each being stretched to its own histogram. A registered image takes the stretch of its input;
  a cloud-free or fused image sets it (on a cloudy input the clouds would set the maximum and the
  cleaned ground would show dark).
- **Masks**: paletted, one readable colour and label per class (clear is transparent, so the
  image shows through; cloud yellow, shadow purple, missing red; nodata transparent).
- **Weight and quality maps**: pseudocolour (viridis) from 0 to 1.
- **Tie points**: graduated by their residual (pixels), green (small) to red (large).

Only QGIS renderers are built here; the values come from the layers' data providers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from qgis.core import (
    QgsClassificationQuantile,
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsGradientColorRamp,
    QgsGraduatedSymbolRenderer,
    QgsMarkerSymbol,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandGrayRenderer,
    QgsSingleBandPseudoColorRenderer,
    QgsStyle,
)
from qgis.PyQt.QtGui import QColor

CUT = (0.02, 0.98)      # cumulative-cut stretch, the QGIS default
SAMPLE = 250_000        # pixels sampled for the stretch (QGIS's own default sample size)

#: (value, colour, label) of CloudFree's masks (detectclouds: 0/1/2/255; simulateclouds adds 3)
MASK_CLASSES = (
    (0, QColor(0, 0, 0, 0), "clear"),
    (1, QColor("#ffd400"), "cloud"),
    (2, QColor("#7b3294"), "cloud shadow"),
    (3, QColor("#e31a1c"), "missing data"),
    (255, QColor(0, 0, 0, 0), "no data"),
)

#: band roles recognised in band descriptions, e.g. "red (B04)", "B04", "SR_B4", "nir"
ROLE_PATTERNS = {
    "blue": r"\bblue\b|\bB0?2\b", "green": r"\bgreen\b|\bB0?3\b", "red": r"\bred\b|\bB0?4\b",
    "nir": r"\bnir\b|\bnear.?infra|\bB0?8\b", "swir1": r"\bswir.?1\b|\bB11\b", "swir2": r"\bswir.?2\b|\bB12\b",
}


@dataclass
class Stretch:
    """A multiband colour look: the input's band for red, green and blue and each one's min and max."""

    bands: tuple          # (red band, green band, blue band) of the layer it was computed on
    limits: tuple         # ((min, max) of red, (min, max) of green, (min, max) of blue)


def band_description(layer: QgsRasterLayer, band: int) -> str:
    """The band's description (GDAL's, e.g. "B04" or "red (B04)"), '' without one. QGIS 3.22 shows it only in the
    display name, "Band 04: B04"."""
    provider = layer.dataProvider()
    name = provider.displayBandName(band)
    description = name.split(": ", 1)[1] if ": " in name else ""
    suffix = f" ({provider.colorInterpretationName(band)})"  # QGIS appends e.g. " (Gray)"
    return description[: -len(suffix)] if description.endswith(suffix) else description


def band_role(description: str) -> str | None:
    """'red', 'nir'… when a band description names a role (case-insensitive), else None."""
    for role, pattern in ROLE_PATTERNS.items():
        if re.search(pattern, description or "", re.IGNORECASE):
            return role
    return None


def find_roles(layer: QgsRasterLayer) -> dict:
    """``{role: band number}`` for the roles the layer's band descriptions name (first match wins)."""
    roles = {}
    for band in range(1, layer.bandCount() + 1):
        role = band_role(band_description(layer, band))
        if role and role not in roles:
            roles[role] = band
    return roles


def colour_bands(layer: QgsRasterLayer) -> tuple:
    """Red, green and blue display bands: named by the descriptions, else blue-green-red-NIR order (CloudFree's
    convention: bands 3, 2, 1), else the first three; one band shows alone."""
    count = layer.bandCount()
    roles = find_roles(layer)
    if all(r in roles for r in ("red", "green", "blue")):
        return roles["red"], roles["green"], roles["blue"]
    if count == 4:
        return 3, 2, 1
    if count >= 3:
        return 1, 2, 3
    return (1,)


def compute_stretch(layer: QgsRasterLayer, bands: tuple | None = None) -> Stretch:
    """The 2-98 % cumulative cut of the display bands, on a sample of the whole layer."""
    bands = tuple(bands or colour_bands(layer))
    provider = layer.dataProvider()
    limits = tuple(provider.cumulativeCut(b, CUT[0], CUT[1], layer.extent(), SAMPLE) for b in bands)
    return Stretch(bands, limits)


def _enhancement(layer: QgsRasterLayer, band: int, low: float, high: float) -> QgsContrastEnhancement:
    enhancement = QgsContrastEnhancement(layer.dataProvider().dataType(band))
    enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
    enhancement.setMinimumValue(low)
    enhancement.setMaximumValue(high)
    return enhancement


def apply_stretch(layer: QgsRasterLayer, stretch: Stretch, bands: tuple | None = None) -> None:
    """Show ``layer`` with ``stretch``'s min and max; ``bands`` are its own bands in the stretch's roles (default:
    the same band numbers)."""
    bands = tuple(bands or stretch.bands)
    provider = layer.dataProvider()
    if len(bands) == 1:
        renderer = QgsSingleBandGrayRenderer(provider, bands[0])
        renderer.setContrastEnhancement(_enhancement(layer, bands[0], *stretch.limits[0]))
    else:
        renderer = QgsMultiBandColorRenderer(provider, *bands)
        renderer.setRedContrastEnhancement(_enhancement(layer, bands[0], *stretch.limits[0]))
        renderer.setGreenContrastEnhancement(_enhancement(layer, bands[1], *stretch.limits[1]))
        renderer.setBlueContrastEnhancement(_enhancement(layer, bands[2], *stretch.limits[2]))
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def input_band(result_band: int, input_bands: list | None) -> int:
    """The input band a result band holds: the same number, or its entry in the bands the run was given."""
    return input_bands[result_band - 1] if input_bands else result_band


def style_before_after(before: QgsRasterLayer, after: QgsRasterLayer, input_bands: list | None = None,
                       from_result: bool = False) -> Stretch:
    """Show ``before`` (the input) and ``after`` (the result) with the same min and max per band.

    The stretch is computed on the input, or with ``from_result`` on the result: a cloud-free result should
    set it, else a cloudy input's bright clouds push the maximum up and the cleaned ground shows dark
    (clouds in the input then saturate to white, as they look). ``input_bands``: the input bands the result
    holds, in order, when it holds only some (the BANDS a run was given)."""
    if input_bands and len(input_bands) != after.bandCount():
        input_bands = None
    if from_result:
        stretch = compute_stretch(after)
        apply_stretch(after, stretch)
        apply_stretch(before, stretch, tuple(input_band(b, input_bands) for b in stretch.bands))
        return stretch
    stretch = compute_stretch(before)
    apply_stretch(before, stretch)
    try:
        bands = tuple(list(input_bands).index(b) + 1 for b in stretch.bands) if input_bands else stretch.bands
    except ValueError:  # the result lacks a display band of the input: it gets its own look
        bands = None
    if bands is None or max(bands) > after.bandCount():
        apply_stretch(after, compute_stretch(after))
    else:
        apply_stretch(after, stretch, bands)
    return stretch


def style_image(layer: QgsRasterLayer) -> Stretch:
    """A result without an input to compare with: its own cumulative-cut stretch."""
    stretch = compute_stretch(layer)
    apply_stretch(layer, stretch)
    return stretch


def style_mask(layer: QgsRasterLayer, classes=MASK_CLASSES) -> None:
    """Paletted classes with readable colours and labels."""
    renderer = QgsPalettedRasterRenderer(layer.dataProvider(), 1,
                                         [QgsPalettedRasterRenderer.Class(v, c, label) for v, c, label in classes])
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def style_provenance(layer: QgsRasterLayer) -> None:
    """Paletted provenance: the colours of :mod:`..models.cloud_removal.provenance`, labelled with the legend
    the raster's metadata carries (code -> 'guide 2: S2_20180725 (2018-07-25)', ...)."""
    from ..models.cloud_removal.provenance import NODATA, colours, read_legend

    legend = read_legend(layer.source())
    rgba = colours(sum(1 for k in legend if 0 < k <= len(legend)))
    style_mask(layer, [(k, QColor(*rgba.get(k, (128, 128, 128, 255))), label)
                       for k, label in sorted(legend.items()) if k != NODATA])


def style_error(layer: QgsRasterLayer) -> None:
    """The predicted error of the first band, viridis from 0 to its largest value."""
    high = layer.dataProvider().bandStatistics(1).maximumValue
    style_weights(layer, 1, 0.0, float(high) if high > 0 else 1.0)


def viridis():
    ramp = QgsStyle.defaultStyle().colorRamp("Viridis")
    return ramp if ramp is not None else QgsGradientColorRamp(QColor("#440154"), QColor("#fde725"))


def style_weights(layer: QgsRasterLayer, band: int = 1, low: float = 0.0, high: float = 1.0) -> None:
    """Pseudocolour from ``low`` to ``high`` (weights and quality scores lie in 0-1)."""
    ramp_shader = QgsColorRampShader(low, high, viridis(), QgsColorRampShader.Interpolated,
                                     QgsColorRampShader.Continuous)
    ramp_shader.classifyColorRamp(5)
    shader = QgsRasterShader(low, high)
    shader.setRasterShaderFunction(ramp_shader)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(low)
    renderer.setClassificationMax(high)
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def style_tiepoints(layer, field: str = "residual", classes: int = 5) -> None:
    """Points graduated by residual (quantiles), green for well-fitting points to red for poor ones."""
    renderer = QgsGraduatedSymbolRenderer(field)
    renderer.setSourceSymbol(QgsMarkerSymbol.createSimple({"name": "circle", "size": "2.6",
                                                           "outline_color": "#222222"}))
    renderer.setSourceColorRamp(QgsGradientColorRamp(QColor("#1a9641"), QColor("#d7191c")))
    renderer.setClassificationMethod(QgsClassificationQuantile())
    renderer.updateClasses(layer, classes)
    layer.setRenderer(renderer)
    layer.triggerRepaint()
