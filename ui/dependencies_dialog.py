"""The *CloudFree dependencies* dialog: which packages QGIS's Python has, and a one-click install of the rest.

The table comes from :func:`cloudfree.dependencies.check`. **Install** runs the pip command of
:func:`cloudfree.dependencies.make_plan` in a ``QProcess`` (QGIS stays responsive) and streams pip's lines
into the log; **Cancel** kills it. After pip, a fresh QGIS Python imports the new packages from the folder,
as the plugin will, and the dialog says to restart QGIS (or what went wrong). Nothing is installed
without the click.
"""

from __future__ import annotations

import os

from qgis.PyQt.QtCore import QProcess, QProcessEnvironment, Qt
from qgis.PyQt.QtGui import QColor, QFontDatabase, QIcon, QTextCursor
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QAction,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from .. import dependencies

ACTION_NAME = "cloudfree:dependencies"
COLUMNS = ("Package", "Needed for", "Required", "Installed", "Status")
GOOD, BAD, QUIET = QColor("#1b7a2e"), QColor("#b3261e"), QColor("#6b6b6b")
INTRO = ("CloudFree needs these Python packages besides QGIS. <b>Install</b> puts the missing ones into a "
         "folder of CloudFree's own, for this QGIS install; QGIS's own packages (numpy, GDAL...) are never "
         "changed, and pip keeps them at the versions QGIS has.")


class DependenciesDialog(QDialog):
    def __init__(self, parent=None, target=None):
        super().__init__(parent)
        self.setWindowTitle("CloudFree dependencies")
        self.target = str(target or dependencies.target_folder())
        self.process = None
        self.stage = ""
        self.cancelled = False
        self.plan = None
        self.pending = ""  # the start of a line pip has not finished
        self.final = False  # the message says how the last install ended
        self.statuses = []
        self._build()
        self.refresh()

    # ------------------------------------------------------------------ layout

    def _build(self):
        layout = QVBoxLayout(self)
        intro = QLabel(INTRO)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.table.setWordWrap(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)  # "Needed for" takes what is left
        layout.addWidget(self.table, 3)
        folder = QLabel(f"Folder: <tt>{self.target}</tt>")
        folder.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        folder.setWordWrap(True)
        layout.addWidget(folder)
        options = QHBoxLayout()
        self.optional = QCheckBox("Also install the optional packages")
        self.optional.toggled.connect(self.update_buttons)
        options.addWidget(self.optional)
        options.addStretch(1)
        options.addWidget(QLabel("torch build:"))
        self.build = QComboBox()
        gpu = dependencies.torch_build() == "cuda"
        self.build.addItem("CPU", "cpu")
        self.build.addItem("CUDA (NVIDIA GPU found)" if gpu else "CUDA (NVIDIA GPU)", "cuda")
        self.build.setCurrentIndex(1 if gpu else 0)
        self.build.currentIndexChanged.connect(self.update_buttons)
        options.addWidget(self.build)
        layout.addLayout(options)
        self.progress = QProgressBar()
        self.progress.setRange(0, 0)  # pip says what it does, not how far it is
        self.progress.setTextVisible(False)
        self.progress.hide()
        layout.addWidget(self.progress)
        self.step = QLabel("")
        self.step.hide()
        layout.addWidget(self.step)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        layout.addWidget(self.log, 2)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)
        self.buttons = QDialogButtonBox()
        self.install_button = QPushButton("Install missing packages")
        self.cancel_button = QPushButton("Cancel install")
        self.buttons.addButton(self.install_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.install_button.clicked.connect(self.install)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.reject)
        layout.addWidget(self.buttons)
        self.resize(900, 760)

    def refresh(self):
        """Read what is installed again and fill the table."""
        self.statuses = dependencies.check(self.target)
        self.table.setRowCount(len(self.statuses))
        for row, status in enumerate(self.statuses):
            package = status.package
            state = status.text + (" (CloudFree folder)" if status.where == "CloudFree folder" else "")
            cells = (package.name, package.purpose, status.required[len(package.name):] or "any",
                     status.version or "—", state)
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(f"{package.name}: {status.where or 'not found'}")
                if column == 4:
                    item.setForeground(GOOD if not status.missing else QUIET if package.optional else BAD)
                self.table.setItem(row, column, item)
        # every row in view: the table is what the dialog is for
        rows = self.table.rowCount() * self.table.verticalHeader().defaultSectionSize()
        self.table.setMinimumHeight(rows + self.table.horizontalHeader().sizeHint().height() +
                                    2 * self.table.frameWidth())
        self.update_buttons()

    def missing(self) -> list:
        return dependencies.to_install(self.statuses, self.optional.isChecked())

    def update_buttons(self):
        running = self.process is not None
        self.install_button.setEnabled(not running and bool(self.missing()))
        self.cancel_button.setEnabled(running)
        self.close_button.setEnabled(not running)
        self.optional.setEnabled(not running)
        self.build.setEnabled(not running)
        if not running and not self.final:
            names = [s.package.name for s in self.statuses if s.required in self.missing()]
            self.say(f"To install: {', '.join(names)}. Nothing is installed until you click Install."
                     if names else "Every package CloudFree needs is installed.", None)
            self.log.setPlaceholderText(self.preview())

    def preview(self) -> str:
        """What Install would run, shown before the click."""
        if not self.missing():
            return "pip's messages appear here while it installs."
        try:
            plan = dependencies.make_plan(self.missing(), target=self.target, build=self.build.currentData())
        except dependencies.InstallerError as exc:
            return str(exc)
        return "Install will run:\n" + plan.display()

    def say(self, text: str, ok):
        """The dialog's last word: green when done, red on failure, plain otherwise."""
        colour = "" if ok is None else f"color: {(GOOD if ok else BAD).name()}; font-weight: bold;"
        self.message.setStyleSheet(colour)
        self.message.setText(text)

    # ------------------------------------------------------------------ installing

    def install(self):
        """The click: pip, then the import check, each in a QProcess."""
        wanted = self.missing()
        problem = dependencies.python_problem()
        if not wanted or problem:
            self.say(problem or "Nothing to install.", False if problem else None)
            return
        try:
            self.plan = dependencies.make_plan(wanted, target=self.target, build=self.build.currentData())
        except dependencies.InstallerError as exc:
            self.say(str(exc), False)
            return
        dependencies.write_constraints(self.plan)
        self.log.clear()
        self.say("", None)
        self.final = False
        self.cancelled = False
        self.log.appendPlainText("$ " + self.plan.display())
        self.run(self.plan.command("--progress-bar", "off"), "pip")

    def run(self, command: list, stage: str):
        self.stage = stage
        self.pending = ""
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        env = QProcessEnvironment.systemEnvironment()
        env.insert("PYTHONUNBUFFERED", "1")
        env.insert("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        self.process.setProcessEnvironment(env)
        self.process.readyReadStandardOutput.connect(self.read_output)
        self.process.finished.connect(self.finished)
        self.process.errorOccurred.connect(self.failed_to_start)
        self.progress.show()
        self.step.show()
        self.step.setText("Installing with pip…" if stage == "pip" else "Checking that the packages import…")
        self.update_buttons()
        self.process.start(command[0], command[1:])

    def read_output(self, flush: bool = False):
        """pip's output, whole lines only (a line may arrive in pieces)."""
        if self.process is not None:
            self.pending += bytes(self.process.readAllStandardOutput()).decode("utf-8", "replace")
        *lines, self.pending = self.pending.replace("\r", "\n").split("\n")
        if flush:
            lines, self.pending = lines + [self.pending], ""
        for line in lines:
            if line.strip():
                self.log.appendPlainText(line)
                if line.startswith(("Collecting", "Downloading", "Installing", "Processing")):
                    self.step.setText(line.strip()[:120])
        self.log.moveCursor(QTextCursor.MoveOperation.End)

    def cancel(self):
        if self.process is not None:
            self.cancelled = True
            self.process.kill()

    def failed_to_start(self, error):
        if error == QProcess.ProcessError.FailedToStart and self.process is not None:
            reason = f"Could not start {self.process.program()}: {self.process.errorString()}."
            self.process = None  # no finished() follows a failed start
            self.done_with(reason, False)

    def finished(self, code: int, status):
        if self.process is None:  # already reported (failed to start)
            return
        self.read_output()
        self.process = None
        self.read_output(flush=True)
        if self.cancelled:
            self.done_with("Cancelled: pip was stopped before it finished. Click Install to start again.", False)
        elif status != QProcess.ExitStatus.NormalExit or code != 0:
            what = "pip" if self.stage == "pip" else "The import check"
            self.done_with(f"{what} failed (exit code {code}): {self.last_error().rstrip('.')}. Nothing was changed "
                           "in QGIS's own Python; the log above has the details.", False)
        elif self.stage == "pip":
            modules = [s.package.module for s in self.statuses if s.required in self.plan.requirements]
            self.run(self.plan.verify_command(modules), "verify")
        else:
            self.done_with("Installed. Restart QGIS to use the new packages.", True)

    def last_error(self) -> str:
        lines = [line for line in self.log.toPlainText().splitlines() if line.strip()]
        errors = [line for line in lines if line.startswith(("ERROR", "ModuleNotFoundError", "ImportError"))]
        return (errors or lines or ["no message"])[-1].strip()

    def done_with(self, text: str, ok: bool):
        self.progress.hide()
        self.step.hide()
        self.log.appendPlainText(text)
        self.log.moveCursor(QTextCursor.MoveOperation.End)
        self.say(text, ok)
        self.final = True
        self.refresh()

    def reject(self):
        """Close; while installing, the install is cancelled first."""
        process = self.process
        if process is not None:
            self.cancel()
            process.waitForFinished(5000)
        super().reject()


def dependencies_action(parent) -> QAction:
    """The menu action that opens the dialog (QGIS's Raster ▸ CloudFree menu)."""
    icon = QIcon(os.path.join(os.path.dirname(os.path.dirname(__file__)), "icon.png"))
    action = QAction(icon, "CloudFree dependencies…", parent)
    action.setObjectName(ACTION_NAME)

    def show():
        action.dialog = DependenciesDialog(parent)  # kept by the action while it is open
        action.dialog.show()

    action.triggered.connect(show)
    return action
