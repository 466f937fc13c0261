"""The pickers the workflow dialogs share: dates, bands, mask values, models, device, enum choices.

They read what they show from the project and the files (layer names, GDAL metadata, band
descriptions, a mask's distinct values on a reduced-resolution read, a model file's JSON header)
and hand the dialogs parameter values in the syntax every Processing call takes ("1,2,3",
layer ids). Nothing here computes a result.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from dataclasses import asdict

from qgis.core import QgsMapLayerProxyModel, QgsProject, QgsRasterLayer
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from .styles import MASK_CLASSES, band_description, band_role

# ---------------------------------------------------------------------------------------------- dates

DATE_PATTERNS = (
    re.compile(r"(?<!\d)(\d{4})-(\d{2})-(\d{2})(?!\d)"),         # 2015-07-11
    re.compile(r"(?<!\d)(\d{4}):(\d{2}):(\d{2})(?!\d)"),         # TIFFTAG_DATETIME 2015:07:11 10:00:00
    re.compile(r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)"),           # s2_20150711, ..._20150711T101026
)
LANDSAT_SCENE_ID = re.compile(r"(?<![A-Z0-9])L[CTEOM]\d{7}(\d{4})(\d{3})[A-Z]{3}\d{2}")  # year + day of year
DATE_KEYS = ("ACQUISITION_DATE", "DATE_ACQUIRED", "SENSING_TIME", "DATATAKE_SENSING_START", "PRODUCT_START_TIME",
             "DATETIME", "TIFFTAG_DATETIME", "ACQUISITIONDATE")


def date_in_text(text: str) -> dt.date | None:
    """The first plausible date in a name or a metadata value (YYYYMMDD, YYYY-MM-DD, YYYY:MM:DD, a Landsat
    scene id with year and day of year)."""
    text = text or ""
    for pattern in DATE_PATTERNS:
        for match in pattern.finditer(text):
            try:
                date = dt.date(*(int(g) for g in match.groups()))
            except ValueError:
                continue
            if 1960 <= date.year <= 2100:
                return date
    match = LANDSAT_SCENE_ID.search(text)
    if match and 1 <= int(match.group(2)) <= 366:
        return dt.date(int(match.group(1)), 1, 1) + dt.timedelta(days=int(match.group(2)) - 1)
    return None


def file_path(layer) -> str:
    return layer.source().split("|")[0]


def metadata_date(path: str) -> dt.date | None:
    """An acquisition date from the file's GDAL metadata (default domain), if it records one."""
    from osgeo import gdal

    dataset = gdal.OpenEx(path, gdal.OF_RASTER) if os.path.isfile(path) else None
    if dataset is None:
        return None
    metadata = {k.upper(): v for k, v in (dataset.GetMetadata() or {}).items()}
    dataset = None
    for key in DATE_KEYS:
        date = date_in_text(metadata.get(key, ""))
        if date:
            return date
    return None


def layer_date(layer) -> dt.date | None:
    """The layer's acquisition date: from its name, its file name, then the file's metadata."""
    return (date_in_text(layer.name()) or date_in_text(os.path.basename(file_path(layer)))
            or metadata_date(file_path(layer)))


def time_ordered(layers: list) -> list:
    """``[(date or None, layer)]`` oldest first, undated last (by name)."""
    dated = [(layer_date(layer), layer) for layer in layers]
    return sorted(dated, key=lambda d: (d[0] is None, d[0] or dt.date.min, d[1].name()))


def fit_rows(widget: QListWidget, rows: int) -> None:
    """Make a list as tall as its items, up to ``rows`` rows (it scrolls beyond)."""
    row = widget.sizeHintForRow(0) if widget.count() else widget.fontMetrics().height() + 4
    shown = max(1, min(widget.count(), rows))
    widget.setFixedHeight(shown * row + 2 * widget.frameWidth() + 4)


def raster_layers() -> list:
    return [layer for layer in QgsProject.instance().mapLayers().values() if isinstance(layer, QgsRasterLayer)]


class DateList(QListWidget):
    """The project's raster layers as a checkable list in time order (date shown), undated last."""

    changed = pyqtSignal()

    def __init__(self, parent=None, accept=None, rows: int = 6):
        super().__init__(parent)
        self.rows = rows
        self.accepts = accept or (lambda layer: True)  # which layers belong in the list (e.g. masks only)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.itemChanged.connect(lambda _item: self.changed.emit())
        project = QgsProject.instance()
        project.layersAdded.connect(self.refresh)
        project.layersRemoved.connect(self.refresh)
        self.refresh()

    def refresh(self, *_args):
        checked = set(self.checked_ids())
        self.blockSignals(True)
        self.clear()
        for date, layer in time_ordered([lay for lay in raster_layers() if self.accepts(lay)]):
            item = QListWidgetItem(f"{date.isoformat() if date else 'no date'}   {layer.name()}")
            item.setData(Qt.ItemDataRole.UserRole, layer.id())
            item.setToolTip(file_path(layer))
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if layer.id() in checked else Qt.CheckState.Unchecked)
            self.addItem(item)
        self.blockSignals(False)
        fit_rows(self, self.rows)
        self.changed.emit()

    def items(self) -> list:
        return [self.item(i) for i in range(self.count())]

    def checked_ids(self) -> list:
        """Ids of the checked layers, oldest first."""
        return [i.data(Qt.ItemDataRole.UserRole) for i in self.items() if i.checkState() == Qt.CheckState.Checked]

    def checked_layers(self) -> list:
        project = QgsProject.instance()
        return [project.mapLayer(i) for i in self.checked_ids()]

    def set_checked(self, layer_ids) -> None:
        wanted = set(layer_ids)
        for item in self.items():
            item.setCheckState(Qt.CheckState.Checked if item.data(Qt.ItemDataRole.UserRole) in wanted else Qt.CheckState.Unchecked)


def looks_like_mask(layer) -> bool:
    """One band of integers whose name or file says mask (mask, clm, fmask, cloud, scl, qa)."""
    name = f"{layer.name()} {os.path.basename(file_path(layer))}".lower()
    return layer.bandCount() == 1 and bool(re.search(r"mask|clm|cloud|scl|qa|label", name))


def image_layers(layer) -> bool:
    return not looks_like_mask(layer)


def compact(combo: QComboBox) -> QComboBox:
    """A combo that does not widen the dialog to its longest item (the full text is in its list and tooltip)."""
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(24)
    combo.currentTextChanged.connect(combo.setToolTip)
    return combo


def raster_combo(allow_empty: bool = False, prefer=None) -> QgsMapLayerComboBox:
    """A project raster picker; ``prefer(layer)`` picks the first matching layer at the start."""
    combo = compact(QgsMapLayerComboBox())
    combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
    combo.setAllowEmptyLayer(allow_empty)
    if allow_empty:
        combo.setLayer(None)
    if prefer is not None:
        match = next((lay for _d, lay in time_ordered(raster_layers()) if prefer(lay)), None)
        if match is not None:
            combo.setLayer(match)
    return combo


# ---------------------------------------------------------------------------------------------- bands


def band_name(layer, band: int) -> str:
    description = band_description(layer, band)
    return f"{band}: {description}" if description else f"Band {band}"


class BandList(QListWidget):
    """The bands of a layer by name, checkable; nothing checked = the algorithm's default."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setFlow(QListWidget.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.setFixedHeight(3 * (self.fontMetrics().height() + 6) + 2 * self.frameWidth())

    def set_layer(self, layer, roles: tuple = ()) -> None:
        """List ``layer``'s bands and check those whose description names one of ``roles`` (e.g. the model's)."""
        self.clear()
        if layer is None:
            return
        named = {band_role(band_description(layer, b)): b for b in range(layer.bandCount(), 0, -1)}
        wanted = {named[r] for r in roles if r in named} if all(r in named for r in roles) else set()
        for band in range(1, layer.bandCount() + 1):
            item = QListWidgetItem(band_name(layer, band))
            item.setData(Qt.ItemDataRole.UserRole, band)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if band in wanted else Qt.CheckState.Unchecked)
            self.addItem(item)

    def checked(self) -> list:
        return [self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.count())
                if self.item(i).checkState() == Qt.CheckState.Checked]

    def value(self) -> str | None:
        """'2,3,4,8', or None for the algorithm's default."""
        return ",".join(map(str, self.checked())) or None


# ---------------------------------------------------------------------------------------------- mask values

FMASK_LABELS = {0: "clear land", 1: "water", 2: "cloud shadow", 3: "snow", 4: "cloud", 255: "fill"}


def distinct_values(path: str, size: int = 512) -> list:
    """The distinct values of band 1, read at a reduced resolution (nearest neighbour, at most ``size`` pixels a
    side): cheap on a big mask, and a class that covers a few pixels may be missed."""
    import numpy as np
    from osgeo import gdal

    dataset = gdal.Open(path)
    if dataset is None:
        return []
    scale = max(dataset.RasterXSize, dataset.RasterYSize) / size
    width, height = (dataset.RasterXSize, dataset.RasterYSize) if scale <= 1 else \
        (max(1, int(dataset.RasterXSize / scale)), max(1, int(dataset.RasterYSize / scale)))
    values = dataset.GetRasterBand(1).ReadAsArray(buf_xsize=width, buf_ysize=height)
    dataset = None
    return [int(v) for v in np.unique(values) if float(v).is_integer()]


def value_labels(path: str, values: list) -> dict:
    """A name for each mask value: the file's category names, Fmask's classes, or CloudFree's."""
    from osgeo import gdal

    dataset = gdal.Open(path)
    names = (dataset.GetRasterBand(1).GetCategoryNames() or []) if dataset is not None else []
    dataset = None
    if names:
        return {v: names[v] for v in values if 0 <= v < len(names) and names[v]}
    if "fmask" in os.path.basename(path).lower():
        return {v: FMASK_LABELS[v] for v in values if v in FMASK_LABELS}
    known = {v: label for v, _c, label in MASK_CLASSES}
    return {v: known[v] for v in values if v in known} if set(values) <= set(known) else {}


class MaskValues(QListWidget):
    """The mask layer's values with their names, checkable; the checked ones mark clouds."""

    def __init__(self, default: tuple = (1, 2), parent=None):
        super().__init__(parent)
        self.default = default
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setFlow(QListWidget.Flow.LeftToRight)
        self.setWrapping(True)
        self.setResizeMode(QListWidget.ResizeMode.Adjust)
        self.setFixedHeight(int(1.6 * (self.fontMetrics().height() + 6)) + 2 * self.frameWidth())

    def set_layer(self, layer) -> None:
        """List the values of a mask layer, or of several (their union: masks of several dates)."""
        layers = [lay for lay in (layer if isinstance(layer, (list, tuple)) else [layer]) if lay is not None]
        self.clear()
        labels, fmask = {}, False
        for mask in layers:
            path = file_path(mask)
            values = distinct_values(path)
            labels.update({v: "" for v in values if v not in labels})
            labels.update(value_labels(path, values))
            fmask = fmask or "fmask" in os.path.basename(path).lower()
        wanted = {2, 4} if fmask else set(self.default)
        for value in sorted(labels):
            item = QListWidgetItem(f"{value} {labels[value]}".strip())
            item.setData(Qt.ItemDataRole.UserRole, value)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if value in wanted else Qt.CheckState.Unchecked)
            self.addItem(item)

    def value(self) -> str | None:
        values = [self.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.count())
                  if self.item(i).checkState() == Qt.CheckState.Checked]
        return ",".join(map(str, values)) or None


# ---------------------------------------------------------------------------------------------- models

def model_metadata(path: str) -> dict:
    """The CloudFree metadata of a model file as a dict, read from its header without importing torch
    (:func:`..models.weights.read_metadata`); {} when the file has none or cannot be read."""
    from ..models.errors import ModelFileError
    from ..models.weights import read_metadata

    try:
        return asdict(read_metadata(path))
    except (ImportError, ModelFileError):
        return {}


def shipped_models(task: str) -> list:
    """``[(file name, path)]`` of the shipped models of ``task`` (:mod:`..models.catalogue`)."""
    from ..models.catalogue import shipped_models as catalogue_models

    return [(os.path.basename(m.path), m.path) for m in catalogue_models((task,))]


def held_out_lines(metrics: dict, limit: int = 3) -> list:
    """A few held-out figures, 'where - method: PSNR x, SSIM y', the model's own before the baselines'."""
    lines = []

    def walk(node, path):
        if not isinstance(node, dict):
            return
        if "psnr" in node:
            figures = ", ".join(f"{k.upper()} {node[k]:.3g}" for k in ("psnr", "ssim") if k in node)
            lines.append(f"{' - '.join(path)}: {figures}")
            return
        for key, value in node.items():
            walk(value, path + [str(key)])

    walk(metrics.get("held_out", metrics), [])
    return sorted(lines, key=lambda line: "model" not in line.split(":")[0].lower())[:limit]


def describe_model(meta: dict, width: int = 54) -> tuple:
    """``(short text, full text)`` of a model's metadata: a few lines of at most ``width`` characters for the
    dialog, everything for its tooltip."""
    if not meta:
        return "No CloudFree metadata in this file.", ""
    training = meta.get("training", {})
    lines = [f"{meta.get('architecture', '?')}, bands {', '.join(map(str, meta.get('bands', [])))}"
             + (" (any band count)" if training.get("any_band_count") else "")
             + (f"; also takes {', '.join(meta['extra_channels'])}" if meta.get("extra_channels") else "")]
    if training.get("data_summary"):
        lines.append(f"Trained on: {training['data_summary']}")
    lines += [f"Held out: {line}" for line in held_out_lines(meta.get("metrics", {}), limit=2)]
    short = [line if len(line) <= width else line[: width - 1] + "…" for line in lines]
    return "\n".join(short), "\n".join(lines)


class ModelPicker(QWidget):
    """A shipped model of one task (metadata shown), a file of one's own, or the algorithm's default."""

    def __init__(self, task: str, default_text: str = "Default (the algorithm picks)",
                 parent=None):
        super().__init__(parent)
        self.combo = compact(QComboBox())
        self.combo.addItem(default_text, None)
        for name, path in shipped_models(task):
            self.combo.addItem(name, path)
        self.browse = QPushButton("File…")
        self.browse.clicked.connect(self.choose_file)
        self.about = QLabel()
        self.about.setTextFormat(Qt.TextFormat.PlainText)
        self.about.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)  # long lines never widen the dialog
        row = QHBoxLayout()
        row.addWidget(self.combo, 1)
        row.addWidget(self.browse)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.about)
        self.combo.currentIndexChanged.connect(self.show_metadata)
        self.show_metadata()

    def choose_file(self):
        path, _ = QFileDialog.getOpenFileName(self, "CloudFree model", "", "CloudFree model (*.safetensors)")
        if path:
            self.set_path(path)

    def set_path(self, path: str) -> None:
        index = self.combo.findData(path)
        if index < 0:
            self.combo.addItem(os.path.basename(path), path)
            index = self.combo.count() - 1
        self.combo.setCurrentIndex(index)

    def value(self) -> str | None:
        return self.combo.currentData()

    def show_metadata(self, *_args):
        path = self.value()
        short, full = describe_model(model_metadata(path)) if path else \
            ("The algorithm picks the shipped model that fits the inputs.", "")
        self.about.setText(short)
        self.about.setToolTip(full)
        self.about.setFixedHeight(self.about.fontMetrics().lineSpacing() * (short.count("\n") + 1) + 4)


# ---------------------------------------------------------------------------------------------- device, enums


def gpu_available() -> bool:
    """A CUDA GPU, asked of torch when it is already loaded, else of the driver (torch loads slowly)."""
    if "torch" in sys.modules:
        try:
            return bool(sys.modules["torch"].cuda.is_available())
        except Exception:  # a broken CUDA setup is no GPU
            return False
    from .. import dependencies

    return dependencies.torch_build() == "cuda"


def enum_combo(algorithm, name: str, only=None) -> QComboBox:
    """A combo of an enum parameter's options (its default selected); the value is the option's index.
    ``only(label)`` hides options (e.g. cuda without a GPU)."""
    definition = algorithm.parameterDefinition(name)
    combo = compact(QComboBox())
    for index, label in enumerate(definition.options()):
        if only is None or only(label):
            combo.addItem(label, index)
    default = definition.defaultValue()
    position = combo.findData(int(default) if default is not None else 0)
    combo.setCurrentIndex(max(position, 0))
    return combo


def device_combo(algorithm, name: str = "DEVICE") -> QComboBox:
    """The DEVICE choices this machine can use: cuda only when a GPU is there."""
    gpu = gpu_available()
    return enum_combo(algorithm, name, only=lambda label: gpu or "cuda" not in label.lower())
