"""The CloudFree Processing provider (id ``cloudfree``)."""

from __future__ import annotations

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .autocluster import AutoclusterAlgorithm
from .check_dependencies import CheckDependenciesAlgorithm
from .compare_rasters import CompareRastersAlgorithm
from .detect_clouds import DetectCloudsAlgorithm
from .fuse_dates import FuseDatesAlgorithm
from .regions import RegionsAlgorithm
from .register import RegisterAlgorithm
from .remove_clouds import RemoveCloudsAlgorithm
from .segment import SegmentAlgorithm
from .simulate_clouds import SimulateCloudsAlgorithm
from .train_cloud_removal import TrainCloudRemovalAlgorithm
from .train_fusion import TrainFusionAlgorithm
from .train_segmentation import TrainSegmentationAlgorithm

ALGORITHMS = (SimulateCloudsAlgorithm, CompareRastersAlgorithm, RemoveCloudsAlgorithm, TrainCloudRemovalAlgorithm,
              RegisterAlgorithm, FuseDatesAlgorithm, TrainFusionAlgorithm, DetectCloudsAlgorithm,
              TrainSegmentationAlgorithm, SegmentAlgorithm, RegionsAlgorithm, AutoclusterAlgorithm,
              CheckDependenciesAlgorithm)


class CloudFreeProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "cloudfree"

    def name(self) -> str:
        return "CloudFree"

    def longName(self) -> str:  # noqa: N802
        from .. import __version__

        return f"CloudFree {__version__}"

    def icon(self) -> QIcon:
        return QIcon(os.path.join(os.path.dirname(os.path.dirname(__file__)), "icon.png"))

    def loadAlgorithms(self):  # noqa: N802
        # a fresh instance every time: QGIS may reload the provider and algorithms keep state
        for cls in ALGORITHMS:
            self.addAlgorithm(cls())
