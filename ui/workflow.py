"""The base of CloudFree's workflow dialogs: pick inputs, run one Processing algorithm in the background,
show its progress and log, add the results to the project with a fitting style.

A dialog subclass declares the algorithm id, fills the form (:meth:`WorkflowDialog.build_form`), turns
the form into Processing parameters (:meth:`parameters`, the same ids and syntax as a headless call)
and styles what came out (:meth:`add_results`). The run is a ``QgsProcessingAlgRunnerTask`` on QGIS's
task manager, so QGIS stays responsive; *Cancel* cancels the task's feedback (the algorithms then stop
and write nothing: outputs are written atomically); *Open in Processing* opens the algorithm's own
dialog with the same values, for its advanced parameters and batch mode. Dialogs never call the
engine: everything goes through the algorithm, as a headless run would.
"""

from __future__ import annotations

import os
import re

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsProcessing,
    QgsProcessingAlgRunnerTask,
    QgsProcessingParameterBand,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.gui import QgsFileWidget, QgsMessageBar
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QFontDatabase, QIcon, QTextCursor
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

ICON = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "icon.png")


FOLDER = re.compile(r"(?:[A-Za-z]:)?[\\/](?:[^\s;,'\"<>()\\/]+[\\/])+(?=[^\s;,'\"<>()\\/]+)")


def short_paths(text: str) -> str:
    """``/long/folder/cloud_free.tif`` -> ``cloud_free.tif``: a message bar line stays one line."""
    return FOLDER.sub("", text)


class LogFeedback(QgsProcessingFeedback):
    """A feedback whose log lines arrive as a Qt signal (queued into the GUI thread from the task's thread)."""

    line = pyqtSignal(str, str)  # text, kind: info / warning / error / command

    def __init__(self):
        super().__init__()
        self.errors = []

    def pushInfo(self, info):  # noqa: N802 (QGIS API names)
        super().pushInfo(info)
        self.line.emit(info, "info")

    def pushCommandInfo(self, info):  # noqa: N802
        super().pushCommandInfo(info)
        self.line.emit(info, "command")

    def pushWarning(self, warning):  # noqa: N802
        super().pushWarning(warning)
        self.line.emit(warning, "warning")

    def reportError(self, error, fatalError=False):  # noqa: N802, N803
        super().reportError(error, fatalError)
        self.errors.append(error)
        self.line.emit(error, "error")


class OutputFile(QWidget):
    """Where a raster/vector/file output goes: a file, or a temporary file when empty. An optional output has a
    check box and is not written while unchecked."""

    def __init__(self, file_filter: str, optional_label: str | None = None, checked: bool = False):
        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.check = None
        if optional_label:
            self.check = QCheckBox(optional_label)
            self.check.setChecked(checked)
            layout.addWidget(self.check)
        self.file = QgsFileWidget()
        self.file.setStorageMode(QgsFileWidget.SaveFile)
        self.file.setFilter(file_filter)
        self.file.lineEdit().setPlaceholderText("[Save to a temporary file]")
        layout.addWidget(self.file)
        if self.check is not None:
            self.file.setEnabled(checked)
            self.check.toggled.connect(self.file.setEnabled)

    def value(self):
        if self.check is not None and not self.check.isChecked():
            return None
        return self.file.filePath().strip() or QgsProcessing.TEMPORARY_OUTPUT

    def set_path(self, path: str) -> None:
        self.file.setFilePath(path)


class WorkflowDialog(QDialog):
    """One workflow: a form, Run / Cancel / Open in Processing, progress, log and a message bar."""

    ALGORITHM = ""      # e.g. "cloudfree:removeclouds"
    TITLE = ""
    INTRO = ""
    GEOTIFF = "GeoTIFF (*.tif *.tiff)"

    finished_run = pyqtSignal(bool)  # emitted when a run ends (True = succeeded); tests wait on it

    def __init__(self, iface=None, parent=None):
        super().__init__(parent or (iface.mainWindow() if iface is not None else None))
        self.iface = iface
        self.algorithm = None
        self.set_algorithm(self.ALGORITHM)
        self.task = None
        self.feedback = None
        self.context = None
        self.cancelled = False
        self.added_layers = []
        self.processing_dialog = None
        self.setWindowTitle(f"CloudFree - {self.TITLE}")
        self.setWindowIcon(QIcon(ICON))
        self._build()

    def set_algorithm(self, algorithm_id: str) -> None:
        """The algorithm Run runs (a dialog may offer several, e.g. what to train)."""
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(algorithm_id)
        if algorithm is None:
            raise RuntimeError(f"The Processing algorithm {algorithm_id} is not registered: is the CloudFree "
                               "plugin enabled?")
        self.algorithm_id, self.algorithm = algorithm_id, algorithm

    # ------------------------------------------------------------------ layout

    def _build(self):
        layout = QVBoxLayout(self)
        self.bar = QgsMessageBar()
        self.bar.setSizePolicy(QSizePolicy.Policy.Minimum, QSizePolicy.Policy.Fixed)
        layout.addWidget(self.bar)
        intro = QLabel(self.INTRO)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.body = QWidget()
        column = QVBoxLayout(self.body)
        self.form = QFormLayout()
        column.addLayout(self.form)
        column.addStretch(1)  # spare height goes below the form, not between its rows
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.DontWrapRows)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignTop)
        self.build_form(self.form)
        scroll = QScrollArea()
        scroll.setWidget(self.body)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        layout.addWidget(scroll, 3)
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        layout.addWidget(self.progress)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.log.setPlaceholderText("The algorithm's log appears here while it runs.")
        self.log.setMinimumHeight(70)
        self.log.setMaximumHeight(110)
        layout.addWidget(self.log, 1)
        self.buttons = QDialogButtonBox()
        self.processing_button = QPushButton("Open in Processing…")
        self.processing_button.setToolTip("The algorithm's own dialog with these values: every advanced parameter, "
                                          "and 'Run as Batch Process…' for many inputs.")
        self.run_button = QPushButton("Run")
        self.run_button.setDefault(True)
        self.cancel_button = QPushButton("Cancel")
        self.buttons.addButton(self.processing_button, QDialogButtonBox.ButtonRole.ResetRole)
        self.buttons.addButton(self.run_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.processing_button.clicked.connect(self.open_in_processing)
        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)
        layout.addWidget(self.buttons)
        self.update_buttons()
        self.fit()

    def fit(self, max_height: int = 940) -> None:
        """As tall as the form needs (up to ``max_height``; the form scrolls beyond)."""
        chrome = 330 + (90 if self.bar.items() or self.progress.isVisible() else 0)  # intro, log, buttons, margins
        self.resize(760, min(max_height, self.body.sizeHint().height() + chrome))

    def build_form(self, form: QFormLayout) -> None:
        raise NotImplementedError

    def parameters(self) -> dict:
        """The algorithm's parameters from the form (ids and values as a headless call takes them)."""
        raise NotImplementedError

    def problem(self) -> str | None:
        """What is missing in the form, in words (checked before the run), or None."""
        return None

    def add_results(self, results: dict) -> list:
        """Add and style the outputs; return lines 'what: where' for the message."""
        raise NotImplementedError

    # ------------------------------------------------------------------ running

    def running(self) -> bool:
        return self.task is not None

    def update_buttons(self):
        running = self.running()
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.processing_button.setEnabled(not running)
        self.progress.setVisible(running or self.progress.value() > 0)

    def say(self, text: str, level=Qgis.Info, duration: int = 0):
        """The dialog's message bar with file names; the log gets the text with the full paths."""
        if self.running() or self.log.toPlainText():
            self.log_line(text, "error" if level == Qgis.Critical else "info")
        self.bar.clearWidgets()
        self.bar.pushMessage("", short_paths(text), level, duration)  # the window title names the workflow
        if self.iface is not None and not self.isVisible():  # the dialog was closed while the run went on
            self.iface.messageBar().pushMessage(f"CloudFree {self.TITLE}", text, level, 10)

    def run(self):
        problem = self.problem()
        if problem:
            self.say(problem, Qgis.Warning)
            return
        parameters = {k: v for k, v in self.parameters().items() if v is not None}
        self.context = QgsProcessingContext()
        self.context.setProject(QgsProject.instance())
        ok, message = self.algorithm.checkParameterValues(parameters, self.context)
        if not ok:
            self.say(message, Qgis.Warning)
            return
        self.bar.clearWidgets()
        self.log.clear()
        self.progress.setValue(0)
        self.cancelled = False
        self.feedback = LogFeedback()
        self.feedback.line.connect(self.log_line)
        self.feedback.progressChanged.connect(self.set_progress)
        self.log_line(f"{self.algorithm.displayName()} ({self.algorithm_id})", "command")
        self.task = QgsProcessingAlgRunnerTask(self.algorithm, parameters, self.context, self.feedback)
        self.task.executed.connect(self.executed)
        self.update_buttons()
        QgsApplication.taskManager().addTask(self.task)

    def set_progress(self, value: float):
        self.progress.setValue(int(value))

    def log_line(self, text: str, kind: str = "info"):
        prefix = {"warning": "Warning: ", "error": "Error: "}.get(kind, "")
        self.log.appendPlainText(prefix + text)
        self.log.moveCursor(QTextCursor.MoveOperation.End)

    def cancel(self):
        if self.task is not None:
            self.cancelled = True
            self.log_line("Cancelling…", "warning")
            self.feedback.cancel()
            self.task.cancel()

    def executed(self, successful: bool, results: dict):
        """The task ended (in the GUI thread): add the results, or say what went wrong."""
        self.task = None  # the task manager deletes it
        errors = list(self.feedback.errors) if self.feedback is not None else []
        if self.cancelled:
            self.progress.setValue(0)
            self.say("Cancelled: the run was stopped and nothing was written.", Qgis.Info)
        elif successful:
            self.progress.setValue(100)
            try:
                lines = self.add_results(results)
            except Exception as exc:  # a result that cannot be shown must not hide that it was written
                lines = [f"written, but it could not be added to the map: {exc}"]
            self.say("Done: " + "; ".join(lines) + ".", Qgis.Success)
        else:
            reason = next((e for e in reversed(errors) if e.strip()), "")
            self.say(f"{self.TITLE} failed: {reason or 'see the log below.'} Nothing was written.", Qgis.Critical)
        self.update_buttons()
        self.finished_run.emit(bool(successful) and not self.cancelled)

    # ------------------------------------------------------------------ Processing dialog

    def open_in_processing(self):
        """The algorithm's Processing dialog prefilled with this form (its batch mode runs many inputs)."""
        import processing

        parameters = {k: self.dialog_value(k, v) for k, v in self.parameters().items()
                      if v is not None and v != QgsProcessing.TEMPORARY_OUTPUT}
        self.processing_dialog = processing.createAlgorithmDialog(self.algorithm_id, parameters)
        if self.processing_dialog is not None:
            self.processing_dialog.show()

    def dialog_value(self, name: str, value):
        """A value as the Processing dialog's widget takes it: a multiple band picker wants a list of numbers where
        a run takes "2,3,4"."""
        definition = self.algorithm.parameterDefinition(name)
        if isinstance(definition, QgsProcessingParameterBand) and definition.allowMultiple() and isinstance(value, str):
            return [int(v) for v in value.split(",") if v.strip()]
        return value

    # ------------------------------------------------------------------ results

    @staticmethod
    def add_raster(path: str, name: str) -> QgsRasterLayer:
        """A result raster as a layer (not yet in the project: style it, then :meth:`publish` it)."""
        layer = QgsRasterLayer(path, name, "gdal")
        if not layer.isValid():
            raise RuntimeError(f"'{path}' does not open as a raster")
        return layer

    @staticmethod
    def add_vector(path: str, name: str) -> QgsVectorLayer:
        layer = QgsVectorLayer(path, name, "ogr")
        if not layer.isValid():
            raise RuntimeError(f"'{path}' does not open as a vector layer")
        return layer

    def publish(self, layer) -> None:
        """Add a styled result to the project (the dialog remembers it)."""
        QgsProject.instance().addMapLayer(layer)
        self.added_layers.append(layer.id())
