"""The classes of a segmentation: their values in a class raster, names and colours, and the map to indices.

A :class:`ClassTable` travels with a model (``training["classes"]`` of its metadata) and is
written into every class raster the model produces (GDAL colour table and category names), so
QGIS shows the classes in their colours and names. Class values are what the raster stores
(0 .. 254; 255 is the class rasters' nodata); indices ``0 .. n - 1`` are what a network predicts.
"""

from __future__ import annotations

import colorsys
import json
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError, ModelFileError

NODATA_CLASS = 255
MAX_CLASS_VALUE = 254


def default_colours(n: int) -> list:
    """``n`` distinct opaque RGBA colours (golden-angle hues, two lightness levels)."""
    out = []
    for i in range(n):
        h = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hls_to_rgb(h, 0.45 if i % 2 else 0.6, 0.75)
        out.append((int(r * 255), int(g * 255), int(b * 255), 255))
    return out


@dataclass(frozen=True)
class ClassTable:
    """Class values (as stored in class rasters), names and RGBA colours, in the network's index order."""

    values: tuple
    names: tuple
    colours: tuple

    def __post_init__(self):
        if not (len(self.values) == len(self.names) == len(self.colours)):
            raise ValueError("values, names and colours must have one entry per class")

    @classmethod
    def from_values(cls, values: Sequence[int], names: Sequence[str] | None = None,
                    colours: Sequence | None = None) -> "ClassTable":
        values = tuple(int(v) for v in values)
        names = tuple(names) if names is not None else tuple(f"class {v}" for v in values)
        colours = tuple(tuple(int(c) for c in col) for col in (colours or default_colours(len(values))))
        return cls(values, names, colours)

    @property
    def count(self) -> int:
        return len(self.values)

    def to_metadata(self) -> list:
        """The ``classes`` entry of a model file: one ``{"value", "name", "colour"}`` per class."""
        return [{"value": v, "name": n, "colour": list(c)} for v, n, c in zip(self.values, self.names, self.colours)]

    @classmethod
    def from_metadata(cls, entries: Sequence[dict], model: str = "model") -> "ClassTable":
        try:
            return cls.from_values([e["value"] for e in entries], [str(e.get("name", f"class {e['value']}"))
                                                                   for e in entries],
                                   [e.get("colour") or c for e, c in zip(entries, default_colours(len(entries)))])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelFileError(f"Model file '{model}' has an unreadable class table ({exc}).") from exc

    def check_storable(self, layer: str) -> None:
        """Class rasters are uint8 with 255 as nodata: every value must lie in 0 .. 254."""
        bad = [v for v in self.values if not 0 <= v <= MAX_CLASS_VALUE]
        if bad:
            raise InputError(f"Labels '{layer}': class value(s) {bad[:5]} do not fit a class raster (0 to "
                             f"{MAX_CLASS_VALUE}); recode the classes first.")

    def index_lookup(self, labels: np.ndarray, ignore: np.ndarray | None = None) -> np.ndarray:
        """Class values -> indices (int64); -1 for values not in the table and where ``ignore``."""
        table = np.asarray(self.values, dtype=np.float64)
        order = np.argsort(table)
        flat = np.asarray(labels, dtype=np.float64)
        pos = np.clip(np.searchsorted(table[order], flat), 0, len(table) - 1)
        idx = np.where(table[order][pos] == flat, order[pos], -1).astype(np.int64)
        if ignore is not None:
            idx[ignore] = -1
        return idx

    def value_lookup(self) -> np.ndarray:
        """Indices -> class values as uint8 (index ``n`` -> nodata 255)."""
        return np.asarray(list(self.values) + [NODATA_CLASS], dtype=np.uint8)

    def apply_to_band(self, band) -> None:
        """Write the colour table and the class names into a GDAL band of a class raster."""
        from osgeo import gdal

        ct = gdal.ColorTable()
        for v, col in zip(self.values, self.colours):
            ct.SetColorEntry(int(v), tuple(int(c) for c in col))
        band.SetRasterColorTable(ct)
        band.SetRasterColorInterpretation(gdal.GCI_PaletteIndex)
        # category names would go to a .aux.xml side file (lost by the atomic rename); the
        # GeoTIFF's own metadata tag keeps the names inside the file
        band.SetMetadataItem("CLASS_NAMES", json.dumps({str(v): n for v, n in zip(self.values, self.names)}))


def class_names_of(band) -> dict:
    """``{value: name}`` a class raster written by :meth:`ClassTable.apply_to_band` carries (empty otherwise)."""
    text = band.GetMetadataItem("CLASS_NAMES")
    try:
        return {int(k): str(v) for k, v in json.loads(text).items()} if text else {}
    except (ValueError, AttributeError):
        return {}


def table_from_raster(ds, values: Sequence[int]) -> ClassTable:
    """The classes ``values`` named and coloured as the label raster's band 1 says (defaults otherwise)."""
    band = ds.GetRasterBand(1)
    ct, names = band.GetColorTable(), band.GetCategoryNames() or []
    stored = class_names_of(band)
    defaults = default_colours(len(values))
    colours, labels = [], []
    for i, v in enumerate(values):
        colour = ct.GetColorEntry(int(v)) if ct is not None and 0 <= v < ct.GetCount() else None
        colours.append(tuple(colour) if colour is not None else defaults[i])
        name = stored.get(int(v)) or (names[int(v)] if 0 <= v < len(names) and names[int(v)] else f"class {v}")
        labels.append(name)
    return ClassTable.from_values(values, labels, colours)
