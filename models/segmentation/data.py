"""Training data of a segmentation: the input bands and the labels on one grid, split into two spatial blocks.

Inputs are one raster or several on the same grid, their bands stacked in order. Labels are a
raster of class values on that grid, or polygons with an integer class field burnt onto it
(:func:`grids.rasterize_labels`; 0 = unlabelled). Pixels count when every input band holds
data and the label is a class: not the labels' nodata, not the ignore value, not unlabelled.
The validation block is the last ``val_fraction`` of the rows (or of the columns, when the
raster is wider than tall), and training tiles are drawn from the rest, ``gap`` pixels away
from it, so no training tile sees a validation pixel.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import InputError
from ..grids import check_same_grid, rasterize_labels
from ..raster import RasterInfo, raster_info, read_window, unique_values, valid_mask
from ..windows import Window
from .classes import ClassTable, table_from_raster

MAX_VALUES = 400_000_000   # input values held in memory for training (1.6 GB as float32)
MIN_LABELLED = 0.05        # a training tile needs this fraction of counted pixels


@dataclass(frozen=True)
class LabelSource:
    """Where the labels come from: a class raster, or polygons with an integer ``field``."""

    raster: RasterInfo | None = None
    polygons: str | None = None
    field: str | None = None
    ignore_value: int | None = None

    @property
    def name(self) -> str:
        return self.raster.name if self.raster is not None else os.path.basename(str(self.polygons))


@dataclass
class TrainingData:
    """Inputs ``(C, H, W)`` float32, their validity, label indices ``(H, W)`` (-1: not counted), the split."""

    x: np.ndarray
    valid: np.ndarray
    target: np.ndarray
    classes: ClassTable
    band_names: list
    val_axis: int      # 1: the validation block is a band of rows, 2: of columns
    split: int         # first row (or column) of the validation block
    gap: int

    def validation_slices(self) -> tuple:
        """``(rows, cols)`` slices of the validation block."""
        return (slice(self.split, None), slice(None)) if self.val_axis == 1 else (slice(None), slice(self.split, None))

    def validation(self) -> tuple:
        """``(x, target)`` of the validation block."""
        cut = self.validation_slices()
        return self.x[(slice(None),) + cut], self.target[cut]

    def train_extent(self) -> tuple:
        """``(rows, cols)`` of the training area, which starts at (0, 0)."""
        end = max(self.split - self.gap, 0)
        h, w = self.target.shape
        return (end, w) if self.val_axis == 1 else (h, end)


def band_names(infos: Sequence[RasterInfo]) -> list:
    """A name per stacked band: its description, or ``<layer> band N``."""
    return [info.descriptions[b] if b < len(info.descriptions) and info.descriptions[b]
            else f"{info.name} band {b + 1}" for info in infos for b in range(info.band_count)]


def read_stack(infos: Sequence[RasterInfo], window: Window) -> tuple:
    """All bands of every input over ``window``, stacked: ``(values float32, valid)``."""
    arrays, valid = [], np.ones((window.height, window.width), dtype=bool)
    for info in infos:
        a = read_window(info.dataset(), window, None, np.float32)
        valid &= valid_mask(a, info.nodata)
        arrays.append(a)
    return np.concatenate(arrays), valid


def check_inputs(infos: Sequence[RasterInfo]) -> None:
    if not infos:
        raise InputError("Give at least one input raster.")
    check_same_grid(list(infos))
    total = sum(i.band_count for i in infos) * infos[0].width * infos[0].height
    if total > MAX_VALUES:
        raise InputError(f"Inputs '{infos[0].name}'... hold {total:,} values, more than the {MAX_VALUES:,} "
                         "training reads into memory; train on a clipped part of the raster.")


def label_raster(source: LabelSource, like: RasterInfo, folder: str) -> RasterInfo:
    """The labels as a raster on ``like``'s grid (polygons are rasterised into ``folder``)."""
    if source.raster is not None:
        check_same_grid([like, source.raster])
        return source.raster
    if not source.polygons or not source.field:
        raise InputError("Give the labels as a class raster, or as polygons with the name of their class field.")
    path = rasterize_labels(source.polygons, source.field, like, os.path.join(folder, "labels.tif"))
    return raster_info(path, source.name)


def class_table(labels: RasterInfo, source: LabelSource) -> ClassTable:
    """Every class value the labels hold (less nodata, the ignore value and, for polygons, 0)."""
    skip = {source.ignore_value} if source.ignore_value is not None else set()
    if source.raster is None:
        skip.add(0)
    found = unique_values(labels)
    values = [int(v) for v in found if v not in skip]
    if any(v != int(v) for v in found):
        raise InputError(f"Labels '{source.name}' hold non-integer values; class labels are integers.")
    if len(values) < 2:
        raise InputError(f"Labels '{source.name}' hold {len(values)} class(es) {values}; a segmentation needs "
                         "at least 2.")
    table = table_from_raster(labels.dataset(), values)
    table.check_storable(source.name)
    return table


def load_training_data(infos: Sequence[RasterInfo], source: LabelSource, val_fraction: float,
                       gap: int) -> TrainingData:
    """Read inputs and labels, map labels to class indices and choose the validation block."""
    check_inputs(infos)
    if not 0.05 <= val_fraction <= 0.5:
        raise InputError(f"The validation fraction {val_fraction} must lie between 0.05 and 0.5.")
    like = infos[0]
    with tempfile.TemporaryDirectory(prefix="cloudfree-seg-") as folder:
        labels = label_raster(source, like, folder)
        classes = class_table(labels, source)
        whole = Window(0, 0, like.width, like.height)
        x, valid = read_stack(infos, whole)
        raw = read_window(labels.dataset(), whole, [1], np.float64)[0]
        labels = None
    ignore = ~valid | ~np.isfinite(raw)
    nodata = source.raster.nodata[0] if source.raster is not None else None
    if nodata is not None:
        ignore |= raw == nodata
    target = classes.index_lookup(np.nan_to_num(raw, nan=-1.0), ignore)
    axis = 1 if like.height >= like.width else 2
    length = like.height if axis == 1 else like.width
    split = int(round(length * (1.0 - val_fraction)))
    data = TrainingData(x, valid, target, classes, band_names(infos), axis, split, int(gap))
    _check_split(data, source.name)
    return data


def _check_split(data: TrainingData, name: str) -> None:
    _, val_target = data.validation()
    rows, cols = data.train_extent()
    if (val_target >= 0).sum() == 0:
        raise InputError(f"Labels '{name}': the validation block (the last rows or columns) holds no labelled "
                         "pixel; choose another validation fraction.")
    if rows < 16 or cols < 16 or (data.target[:rows, :cols] >= 0).sum() == 0:
        raise InputError(f"Labels '{name}': the training block holds no labelled pixel or is under 16 pixels "
                         "wide; choose a smaller validation fraction.")


def class_frequencies(data: TrainingData) -> np.ndarray:
    """Fraction of the counted training pixels in each class."""
    rows, cols = data.train_extent()
    t = data.target[:rows, :cols]
    counts = np.bincount(t[t >= 0], minlength=data.classes.count).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def resolve_class_weights(spec, data: TrainingData, name: str = "CLASS_WEIGHTS") -> list:
    """Class weights: ``None``/empty = all 1; ``"auto"`` = inverse square root of the class frequency
    (normalised to mean 1); or one number per class, in the order of the class values."""
    n = data.classes.count
    if spec is None or (isinstance(spec, str) and not spec.strip()):
        return [1.0] * n
    if isinstance(spec, str) and spec.strip().lower() == "auto":
        f = np.maximum(class_frequencies(data), 1e-4)
        w = 1.0 / np.sqrt(f)
        return [float(v) for v in w / w.mean()]
    try:
        values = [float(v) for v in (spec.replace(";", ",").split(",") if isinstance(spec, str) else spec)
                  if str(v).strip()]
    except ValueError as exc:
        raise InputError(f"{name} '{spec}' must be 'auto' or comma-separated numbers, one per class.") from exc
    if len(values) != n or any(v < 0 for v in values) or not any(values):
        raise InputError(f"{name}: {len(values)} weight(s) given for {n} classes {list(data.classes.values)}; "
                         "give one non-negative weight per class, in that order (or 'auto').")
    return values


def sample_tiles(data: TrainingData, tile: int, count: int, rng: np.random.Generator) -> tuple:
    """``count`` random training tiles ``(x (B, C, T, T), target (B, T, T))`` with labelled pixels."""
    rows, cols = data.train_extent()
    xs, ts = [], []
    for _ in range(count):
        for _attempt in range(20):
            y0, x0 = int(rng.integers(0, rows - tile + 1)), int(rng.integers(0, cols - tile + 1))
            t = data.target[y0:y0 + tile, x0:x0 + tile]
            if (t >= 0).mean() >= MIN_LABELLED:
                break
        xs.append(data.x[:, y0:y0 + tile, x0:x0 + tile])
        ts.append(t)
    return np.stack(xs), np.stack(ts)
