"""The cloud mask CloudFree writes: class codes, colour table, classes from probabilities, dilation, fractions.

Codes: 0 clear, 1 cloud, 2 cloud shadow, 255 nodata. Detectors hand over per-pixel
probabilities of cloud and shadow quantised to 0..``PROBABILITY_SCALE`` (clear is the rest);
:func:`classes_from_probabilities` takes the most probable class. :func:`dilate_classes` grows
clouds and shadows by N pixels (Euclidean disk) into clear pixels only: cloud wins where both
reach, nodata stays nodata. :class:`MaskCounts` adds up the classes block by block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CLEAR, CLOUD, SHADOW, NODATA = 0, 1, 2, 255
CLASS_NAMES = {CLEAR: "clear", CLOUD: "cloud", SHADOW: "cloud shadow"}
#: RGBA per code (a GeoTIFF palette has no transparency: nodata is hidden by the band's nodata value)
COLOURS = {CLEAR: (40, 140, 60, 255), CLOUD: (255, 255, 255, 255), SHADOW: (60, 60, 60, 255), NODATA: (0, 0, 0, 255)}
#: probabilities are stored as 0..PROBABILITY_SCALE in uint8 (255 stays free for nodata)
PROBABILITY_SCALE = 250


def colour_table():
    """A GDAL colour table of :data:`COLOURS` for a uint8 band."""
    from osgeo import gdal

    table = gdal.ColorTable()
    for code, rgba in COLOURS.items():
        table.SetColorEntry(code, rgba)
    return table


def set_mask_style(band) -> None:
    """Colour table, palette interpretation and description of a mask band (GDAL; no side files)."""
    from osgeo import gdal

    band.SetRasterColorTable(colour_table())
    band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
    band.SetDescription("cloud mask: 0 clear, 1 cloud, 2 cloud shadow, 255 nodata")


def quantise(probabilities: np.ndarray) -> np.ndarray:
    """Probabilities 0..1 -> 0..PROBABILITY_SCALE (float, for the tiler to blend and round)."""
    return probabilities * np.float32(PROBABILITY_SCALE)


def classes_from_probabilities(cloud: np.ndarray, shadow: np.ndarray) -> np.ndarray:
    """uint8 codes from quantised cloud and shadow probabilities (uint8, 255 = nodata); ties go to clear, then cloud."""
    cloud16, shadow16 = cloud.astype(np.int16), shadow.astype(np.int16)
    clear16 = PROBABILITY_SCALE - cloud16 - shadow16
    classes = np.argmax(np.stack([clear16, cloud16, shadow16]), axis=0).astype(np.uint8)
    classes[(cloud == NODATA) | (shadow == NODATA)] = NODATA
    return classes


def _within(mask: np.ndarray, pixels: float) -> np.ndarray:
    """True within ``pixels`` (Euclidean) of any True pixel of ``mask``."""
    from scipy.ndimage import distance_transform_edt

    if not mask.any():
        return mask.copy()
    return distance_transform_edt(~mask) <= pixels


def dilate_classes(classes: np.ndarray, pixels: int) -> np.ndarray:
    """Clouds and shadows grown by ``pixels`` into clear pixels; cloud wins where both reach."""
    if pixels <= 0:
        return classes
    out = classes.copy()
    clear = classes == CLEAR
    out[clear & _within(classes == SHADOW, pixels)] = SHADOW
    out[clear & _within(classes == CLOUD, pixels)] = CLOUD
    return out


@dataclass
class MaskCounts:
    """Pixels of each class, added up block by block."""

    clear: int = 0
    cloud: int = 0
    shadow: int = 0
    nodata: int = 0

    def add(self, classes: np.ndarray) -> None:
        counts = np.bincount(classes.ravel(), minlength=256)
        self.clear += int(counts[CLEAR])
        self.cloud += int(counts[CLOUD])
        self.shadow += int(counts[SHADOW])
        self.nodata += int(counts[NODATA])

    @property
    def valid(self) -> int:
        return self.clear + self.cloud + self.shadow

    @property
    def cloud_fraction(self) -> float:
        """Cloud pixels over valid (not nodata) pixels; 0 when nothing is valid."""
        return self.cloud / self.valid if self.valid else 0.0

    @property
    def shadow_fraction(self) -> float:
        return self.shadow / self.valid if self.valid else 0.0
