"""Menu actions: the five main workflows open CloudFree's own dialogs (ui/workflow.py and the dialogs
built on it); every other algorithm opens its Processing dialog.

Both kinds pick project layers and run in the background with progress and cancel; the workflow
dialogs add time-ordered date lists, band and mask-value pickers by name, and style their results.
"""

from __future__ import annotations

import os

from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

ENTRIES = (
    ("cloudfree:detectclouds", "Detect clouds and shadows…"),
    ("cloudfree:removeclouds", "Remove clouds…"),
    ("cloudfree:traincloudremoval", "Train cloud removal model…"),
    ("cloudfree:fusedates", "Fuse dates…"),
    ("cloudfree:trainfusion", "Train fusion model…"),
    ("cloudfree:register", "Register image…"),
    ("cloudfree:simulateclouds", "Simulate clouds…"),
    ("cloudfree:comparerasters", "Compare rasters…"),
    ("cloudfree:trainsegmentation", "Train segmentation model…"),
    ("cloudfree:segment", "Segment (classify) raster…"),
    ("cloudfree:regions", "Regions of classes to polygons…"),
    ("cloudfree:autocluster", "Automatic clustering…"),
)


def _icon() -> QIcon:
    return QIcon(os.path.join(os.path.dirname(os.path.dirname(__file__)), "icon.png"))


def workflow_dialogs() -> dict:
    """``{algorithm id: dialog class}`` of the workflows that have a CloudFree dialog."""
    from .cloud_dialogs import DetectCloudsDialog, RemoveCloudsDialog
    from .date_dialogs import FuseDatesDialog, RegisterDialog
    from .train_dialog import TrainModelDialog

    return {d.ALGORITHM: d for d in (DetectCloudsDialog, RemoveCloudsDialog, TrainModelDialog, FuseDatesDialog,
                                      RegisterDialog)}


def open_algorithm_dialog(algorithm_id: str) -> None:
    import processing

    processing.execAlgorithmDialog(algorithm_id)


def open_workflow_dialog(action: QAction, dialog_class, iface) -> None:
    """Show the action's dialog, made on first use and kept (a run goes on while it is closed)."""
    if getattr(action, "dialog", None) is None:
        action.dialog = dialog_class(iface)
    action.dialog.show()
    action.dialog.raise_()
    action.dialog.activateWindow()


def build_actions(iface, parent) -> list:
    dialogs = workflow_dialogs()
    actions = []
    for algorithm_id, label in ENTRIES:
        action = QAction(_icon(), label, parent)
        action.setObjectName(algorithm_id)
        if algorithm_id in dialogs:
            action.triggered.connect(lambda _checked=False, a=action, d=dialogs[algorithm_id]:
                                     open_workflow_dialog(a, d, iface))
        else:
            action.triggered.connect(lambda _checked=False, a=algorithm_id: open_algorithm_dialog(a))
        actions.append(action)
    return actions
