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
from .prepare_dates import PrepareDatesAlgorithm
from .regions import RegionsAlgorithm
from .register import RegisterAlgorithm
from .remove_clouds import RemoveCloudsAlgorithm
from .segment import SegmentAlgorithm
from .simulate_clouds import SimulateCloudsAlgorithm
from .stack_report import StackReportAlgorithm
from .train_cloud_removal import TrainCloudRemovalAlgorithm
from .train_fusion import TrainFusionAlgorithm
from .train_segmentation import TrainSegmentationAlgorithm

ALGORITHMS = (SimulateCloudsAlgorithm, CompareRastersAlgorithm, RemoveCloudsAlgorithm, TrainCloudRemovalAlgorithm,
              RegisterAlgorithm, FuseDatesAlgorithm, TrainFusionAlgorithm, DetectCloudsAlgorithm,
              TrainSegmentationAlgorithm, SegmentAlgorithm, RegionsAlgorithm, AutoclusterAlgorithm,
              CheckDependenciesAlgorithm, PrepareDatesAlgorithm, StackReportAlgorithm)


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
        self.load_models()

    def load_models(self) -> None:
        """The shipped Processing models (chains/*.model3) as ``cloudfree:<file stem>``, once the registry knows this
        provider: a model finds its steps (cloudfree:detectclouds...) through the registry, and QGIS loads a
        provider's algorithms before it registers the provider, so the first load waits for ``providerAdded``."""
        from qgis.core import QgsApplication

        from .chains.stack_model import shipped_models

        registry = QgsApplication.processingRegistry()
        if registry.providerById(self.id()) is self:
            for model in shipped_models():
                self.addAlgorithm(model)
        else:
            registry.providerAdded.connect(self._registered)

    def _registered(self, provider_id: str) -> None:
        if provider_id == self.id():
            from qgis.core import QgsApplication

            QgsApplication.processingRegistry().providerAdded.disconnect(self._registered)
            self.refreshAlgorithms()
