"""Dialog widgets of two kinds of CloudFree parameters: the model picker and the mask-values reader.

QGIS's Processing dialogs (the toolbox dialog and batch mode) build them from a parameter's metadata,
``{"widget_wrapper": {"class": "<this module>.ModelWidgetWrapper", ...}}`` (set in common.py), and
import this module only then: qgis_process and processing.run never load it, so headless runs need no
GUI. In the graphical modeler both parameters keep QGIS's own widgets, so that a model can also feed
them from its inputs.

- ``ModelWidgetWrapper``: a list of the shipped models of the parameter's tasks (each with its metadata:
  bands, training data, held-out figures, shown below the list and as a tooltip) or a file to browse
  for. Its value is what ``MODEL`` takes headless: empty, a shipped model's name, or a path.
- ``MaskValuesWidgetWrapper``: the values as text ("1,2"), and a button that reads the distinct values
  of the mask layer (or layers) chosen in the same dialog into a list of check boxes.
"""

from __future__ import annotations

import os

from processing.gui.wrappers import DIALOG_BATCH, WidgetWrapper
from qgis.core import QgsProcessingContext, QgsProcessingParameters, QgsProject
from qgis.gui import QgsGui
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QApplication,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..models.catalogue import shipped_models
from ..models.errors import CloudFreeError
from .common import MODEL_FILTER


class QgisWidgetInTheModeler:
    """Mixin: in the modeler, QGIS's own widget for the parameter (static value or a model input)."""

    def __new__(cls, param, dialog, row=0, col=0, **kwargs):
        if dialog.__class__.__name__ == "ModelerParametersDialog":
            wrapper = QgsGui.processingGuiRegistry().createModelerParameterWidget(dialog.model, dialog.childId,
                                                                                  param, dialog.context)
            wrapper.setDialog(dialog)
            return wrapper
        return super().__new__(cls)


class ModelWidgetWrapper(QgisWidgetInTheModeler, WidgetWrapper):
    """A shipped model from a list that shows its metadata, or a model file."""

    def createWidget(self, tasks=(), **kwargs):  # noqa: N802 (QGIS's name)
        optional = bool(self.parameterDefinition().flags() & self.parameterDefinition().FlagOptional)
        self.combo = QComboBox()
        self.combo.addItem("Default (shipped model)" if optional else "Choose a model…", "")
        for model in shipped_models(tuple(tasks)):
            self.combo.addItem(f"{model.name} (shipped)", model.name)
            self.combo.setItemData(self.combo.count() - 1, model.summary, Qt.ItemDataRole.ToolTipRole)
        browse = QToolButton()
        browse.setText("…")
        browse.setToolTip("Choose a model file (.safetensors)")
        browse.clicked.connect(self.browse)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.combo, 1)
        row.addWidget(browse)
        widget = QWidget()
        layout = QVBoxLayout(widget)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        self.summary = QLabel()
        self.summary.setWordWrap(True)
        self.summary.setVisible(self.dialogType != DIALOG_BATCH)  # a batch cell has no room for it
        layout.addWidget(self.summary)
        self.combo.currentIndexChanged.connect(self.show_summary)
        self.show_summary()
        return widget

    def show_summary(self, *args) -> None:
        tip = self.combo.currentData(Qt.ItemDataRole.ToolTipRole) or ""
        self.summary.setText(f"<small>{tip}</small>" if tip else "")
        self.combo.setToolTip(tip)
        self.widgetValueHasChanged.emit(self)

    def browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self.widget, "Model file", os.path.dirname(self.value() or ""),
                                              MODEL_FILTER)
        if path:
            self.setValue(path)

    def setValue(self, value):  # noqa: N802
        value = "" if value is None else str(value)
        index = self.combo.findData(value)
        if index < 0:
            self.combo.addItem(os.path.basename(value), value)
            index = self.combo.count() - 1
            self.combo.setItemData(index, value, Qt.ItemDataRole.ToolTipRole)
        self.combo.setCurrentIndex(index)

    def value(self):
        return self.combo.currentData() or ""


class MaskValuesWidgetWrapper(QgisWidgetInTheModeler, WidgetWrapper):
    """Values as text, and a button that reads the distinct values of the mask layer into check boxes."""

    def createWidget(self, layer="", **kwargs):  # noqa: N802
        self.layer_parameter, self.layer_wrapper = layer, None
        self.text = QLineEdit()
        self.text.setPlaceholderText("e.g. 1,2")
        self.text.textChanged.connect(lambda *args: self.widgetValueHasChanged.emit(self))
        if self.dialogType == DIALOG_BATCH:  # one cell a row: the text only
            return self.text
        button = QPushButton("Read values from mask")
        button.setToolTip("List the distinct values of the layer chosen in this dialog; tick the ones to use.")
        button.clicked.connect(self.read_values)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.text, 1)
        row.addWidget(button)
        self.values = QListWidget()
        self.values.setVisible(False)
        self.values.setMaximumHeight(120)
        self.values.itemChanged.connect(self.ticked)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setVisible(False)
        widget = QWidget()
        layout = QVBoxLayout(widget)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.values)
        layout.addWidget(self.message)
        return widget

    def postInitialize(self, wrappers):  # noqa: N802
        """Find the wrapper of the mask layer parameter among the dialog's wrappers."""
        for wrapper in wrappers:
            if wrapper.parameterDefinition().name() == self.layer_parameter:
                self.layer_wrapper = wrapper

    def layer_paths(self) -> list:
        """Files of the layer(s) chosen for the mask parameter in this dialog."""
        if self.layer_wrapper is None:
            return []
        value = self.layer_wrapper.parameterValue()
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        definition = self.layer_wrapper.parameterDefinition()
        layers = QgsProcessingParameters.parameterAsLayerList(definition, value, context)
        return [layer.source().split("|")[0] for layer in layers if layer is not None]

    def read_values(self) -> None:
        paths = self.layer_paths()
        if not paths:
            return self.say(f"Choose the layer of {self.layer_parameter} first.")
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            found = distinct_values(paths)
        except (CloudFreeError, RuntimeError) as exc:
            return self.say(str(exc))
        finally:
            QApplication.restoreOverrideCursor()
        self.fill(found)

    def fill(self, found: list) -> None:
        """Show ``found`` as ``[(value, name)]`` check boxes, ticked where the text already names them."""
        chosen = set(self.chosen())
        self.values.blockSignals(True)
        self.values.clear()
        for value, name in found:
            item = QListWidgetItem(f"{value}" + (f"  {name}" if name else ""))
            item.setData(Qt.ItemDataRole.UserRole, value)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if value in chosen else Qt.CheckState.Unchecked)
            self.values.addItem(item)
        self.values.blockSignals(False)
        self.values.setVisible(True)
        self.say(f"{len(found)} distinct value(s); tick the ones to use." if found
                 else "The layer has no valid pixels.")

    def ticked(self, *args) -> None:
        items = [self.values.item(i) for i in range(self.values.count())]
        self.text.setText(",".join(str(i.data(Qt.ItemDataRole.UserRole)) for i in items if i.checkState() == Qt.CheckState.Checked))

    def chosen(self) -> list:
        out = []
        for token in self.text.text().replace(";", ",").split(","):
            try:
                out.append(int(token))
            except ValueError:
                continue
        return out

    def say(self, text: str) -> None:
        self.message.setText(f"<small>{text}</small>")
        self.message.setVisible(True)

    def setValue(self, value):  # noqa: N802
        self.text.setText("" if value is None else str(value))

    def value(self):
        return self.text.text()


def distinct_values(paths: list) -> list:
    """``[(value, category name or "")]`` of band 1 of the rasters at ``paths``, in ascending order."""
    from osgeo import gdal

    from ..models.raster import raster_info, unique_values

    values, names = set(), {}
    for path in paths:
        info = raster_info(path)
        try:
            values.update(int(v) for v in unique_values(info))
        finally:
            info.close()
        ds = gdal.Open(path)
        for i, name in enumerate((ds.GetRasterBand(1).GetCategoryNames() or []) if ds else []):
            if name:
                names.setdefault(i, name)
        ds = None
    return [(v, names.get(v, "")) for v in sorted(values)]
