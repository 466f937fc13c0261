"""What every CloudFree algorithm shares: naming, dependency checks, feedback, error mapping.

An algorithm subclass declares its parameters in ``initAlgorithm`` and implements
``compute(parameters, context, feedback, progress, cancelled)``, which reads parameters,
calls one engine function and returns the outputs. Engine errors become
``QgsProcessingException`` with the engine's message (it already names the layer).
"""

from __future__ import annotations

import gc
import os

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
)
from qgis.PyQt.QtGui import QIcon

from ..models.errors import CloudFreeError
from ..models.runtime import install_hint, missing_packages


class CloudFreeAlgorithm(QgsProcessingAlgorithm):
    #: algorithm id (without the provider prefix), display name, group, help text
    NAME = ""
    DISPLAY_NAME = ""
    GROUP = "Tools"
    HELP = ""
    #: icons/<ICON>.svg (empty: the group's icon)
    ICON = ""
    #: import names the algorithm needs besides QGIS (checked before running)
    REQUIRES: tuple = ("numpy", "osgeo")

    def name(self) -> str:
        return self.NAME

    def displayName(self) -> str:  # noqa: N802
        return self.DISPLAY_NAME

    def group(self) -> str:
        return self.GROUP

    def groupId(self) -> str:  # noqa: N802
        return self.GROUP.lower().replace(" ", "_")

    def shortHelpString(self) -> str:  # noqa: N802
        missing = missing_packages(self.REQUIRES)
        warning = f"<p><b>Not ready:</b> {install_hint(missing)}</p>" if missing else ""
        return warning + self.HELP + self.help_appendix()

    def help_appendix(self) -> str:
        """Help read when it is shown (e.g. the shipped models' metadata); empty by default."""
        return ""

    def createInstance(self):  # noqa: N802
        return type(self)()

    # ------------------------------------------------------------------ helpers for subclasses

    def raster_info(self, parameters, name: str, context, optional: bool = False):
        """The layer behind a raster parameter as an engine ``RasterInfo`` (None if optional and unset)."""
        from ..models.raster import raster_info

        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            if optional:
                return None
            raise QgsProcessingException(f"Parameter {name}: no raster layer was given or it could not be loaded.")
        if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"Layer '{layer.name()}' is not a file raster (provider '{layer.providerType()}'); "
                "save it as a GeoTIFF first."
            )
        path = layer.source().split("|")[0]
        return self._opened(raster_info(path, layer.name()))

    def raster_infos(self, parameters, name: str, context) -> list:
        """The layers of a multiple-raster parameter, in the order given, as ``RasterInfo``."""
        from ..models.raster import raster_info

        infos = []
        for layer in self.parameterAsLayerList(parameters, name, context):
            if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
                raise QgsProcessingException(f"Layer '{layer.name()}' in {name} is not a file raster; save it as a "
                                             "GeoTIFF first.")
            infos.append(self._opened(raster_info(layer.source().split("|")[0], layer.name())))
        return infos

    def _opened(self, info):
        """Remember ``info`` so that its dataset is closed when the run ends."""
        self.__dict__.setdefault("_infos", []).append(info)
        return info

    def dates_and_masks(self, parameters, context, what: str, inputs: str, masks: str) -> tuple:
        """``(dates, masks or None)`` from the multiple-raster parameters ``inputs`` and ``masks``: 2 dates or
        more, one mask per date."""
        dates = self.raster_infos(parameters, inputs, context)
        masks = self.raster_infos(parameters, masks, context) or None
        if len(dates) < 2:
            raise QgsProcessingException(f"{what} needs at least 2 dates; {len(dates)} given.")
        if masks is not None and len(masks) != len(dates):
            raise QgsProcessingException(f"{len(masks)} mask layer(s) for {len(dates)} dates: give one mask per "
                                         "date, in the same order, or none.")
        return dates, masks

    def model_file(self, parameters, name: str, context, default: str) -> str:
        """The model file a parameter names (a path or a shipped model's name), or the shipped ``default``."""
        from ..models.catalogue import resolve_model

        value = self.parameterAsFile(parameters, name, context)
        return resolve_model(value if value and value.strip() else default)

    def icon(self) -> QIcon:
        """The group's icon (icons/<group id>.svg), else the plugin's."""
        folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        path = os.path.join(folder, "icons", f"{self.ICON or self.groupId()}.svg")
        return QIcon(path if os.path.exists(path) else os.path.join(folder, "icon.png"))

    def model_output(self, parameters, name: str, context) -> str:
        """Destination of a trained model, with the ``.safetensors`` extension the loaders expect."""
        path = self.parameterAsFileOutput(parameters, name, context)
        return path if path.endswith(".safetensors") else path + ".safetensors"

    @staticmethod
    def callbacks(feedback: QgsProcessingFeedback):
        """Engine-style ``progress(fraction, message)`` and ``cancelled()`` bound to ``feedback``."""

        def progress(fraction: float, message: str | None = None) -> None:
            feedback.setProgress(100.0 * fraction)
            if message:
                feedback.pushInfo(message)

        return progress, feedback.isCanceled

    @staticmethod
    def output_path(path: str) -> str:
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        return path

    # ------------------------------------------------------------------ the template method

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        missing = missing_packages(self.REQUIRES)
        if missing:
            raise QgsProcessingException(install_hint(missing))
        from .overwrite import check_outputs_differ

        check_outputs_differ(self, parameters, context)
        progress, cancelled = self.callbacks(feedback)
        try:
            return self.compute(parameters, context, feedback, progress, cancelled)
        except CloudFreeError as exc:
            raise QgsProcessingException(str(exc)) from exc
        finally:
            self.release_files()

    def release_files(self) -> None:
        """Close every raster the run opened, now rather than whenever Python collects it.

        Some objects of a run outlive it in reference cycles (torch keeps frames of a lazy import
        in one), and a GDAL dataset they hold would otherwise be closed by the garbage collector
        after QGIS has shut GDAL down, which crashes Python at exit; an open file also stays
        locked on Windows. So the run's rasters are closed and the cycles collected here.
        """
        for info in self.__dict__.pop("_infos", []):
            info.close()
        gc.collect()

    def compute(self, parameters, context, feedback, progress, cancelled) -> dict:
        raise NotImplementedError
