"""Menu actions: each opens the Processing dialog of one CloudFree algorithm.

The Processing dialog already offers what analysts expect: pick project layers, run in the
background with progress and cancel, and add the GeoTIFF results to the project.
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


def open_algorithm_dialog(algorithm_id: str) -> None:
    import processing

    processing.execAlgorithmDialog(algorithm_id)


def build_actions(iface, parent) -> list:
    actions = []
    for algorithm_id, label in ENTRIES:
        action = QAction(_icon(), label, parent)
        action.setObjectName(algorithm_id)
        action.triggered.connect(lambda _checked=False, a=algorithm_id: open_algorithm_dialog(a))
        actions.append(action)
    return actions
