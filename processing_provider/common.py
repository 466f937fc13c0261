"""Parameters several algorithms share (DEVICE, BACKEND, TILE_SIZE, bands, models, value lists).

Bands are QGIS band pickers (``QgsProcessingParameterBand``, tied to their layer, several bands where a
list is meant), so the dialog lists the layer's bands by name. Headless callers keep typing numbers:
QGIS 3.22 accepts a text value for an *optional* band picker without looking inside it, and
``parameterAsInts`` only splits on ``;`` (``"1,2,3"`` would read as ``[0]``), so ``band_values`` reads
the raw value itself: ``"1,2,3"``, ``"1;2;3"``, ``[1, 2, 3]`` (processing.run, the dialog, a model),
or the list ``qgis_process`` makes of a repeated ``BANDS=1 BANDS=2``, always in the order given.

Model files are chosen from the shipped models or a file (``model_parameter``); in the dialog a
picker that shows each shipped model's metadata (processing_provider/widgets.py, imported only by the
dialog, never by qgis_process).
"""

from __future__ import annotations

import sys
from functools import lru_cache

from qgis.core import (
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProperty,
)

from ..models.backends import BACKENDS  # auto, torch, onnxruntime (the engine imports no torch to say so)

DEVICES = ("auto", "cpu", "cuda")
#: the dialog's widgets (a Python module path, imported by QGIS's dialogs only when they open)
WIDGETS = __name__.rpartition(".")[0] + ".widgets"
MODEL_FILTER = "CloudFree model (*.safetensors);;All files (*)"

BAND_ORDER_HELP = ("In the dialog, click <i>…</i> beside the bands, tick them and drag them into order: the "
                   "ticked bands are used from top to bottom. Headless: band numbers, e.g. <code>2,3,4,8</code>.")


# --------------------------------------------------------------------------- device


@lru_cache(maxsize=1)
def gpu_found() -> str:
    """What this machine has for ``cuda``: a GPU name, "an NVIDIA GPU", or "" (nothing found).

    Cheap: asks torch only when something has already imported it, else looks for NVIDIA's driver.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
        except Exception:  # a broken CUDA set-up: say nothing was found
            return ""
    from .. import dependencies

    return "an NVIDIA GPU" if dependencies.nvidia_gpu_present() else ""


def device_labels() -> list:
    gpu = gpu_found()
    return [f"auto (here: {'cuda, ' + gpu if gpu else 'cpu, no GPU found'})", "cpu",
            f"cuda ({gpu} found)" if gpu else "cuda (no GPU found here)"]


def device_parameter(name: str = "DEVICE") -> QgsProcessingParameterEnum:
    """auto, cpu, cuda (indices 0, 1, 2 never change); the labels say what this machine has."""
    return QgsProcessingParameterEnum(name, "Device (auto = CUDA GPU when available, else CPU)", device_labels(),
                                      defaultValue=0)


def device_value(alg, parameters, context, name: str = "DEVICE") -> str:
    return DEVICES[alg.parameterAsEnum(parameters, name, context)]


# --------------------------------------------------------------------------- backend and tiles


def backend_parameter(name: str = "BACKEND") -> QgsProcessingParameterEnum:
    """Advanced: what runs the network (auto: the faster of ONNX Runtime and torch, timed when the run starts)."""
    parameter = QgsProcessingParameterEnum(name, "Inference engine (auto = the faster of ONNX Runtime and torch, "
                                           "timed at the start)", list(BACKENDS), defaultValue=0)
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return parameter


def backend_value(alg, parameters, context, name: str = "BACKEND") -> str:
    return BACKENDS[alg.parameterAsEnum(parameters, name, context)]


def tile_parameter(name: str = "TILE_SIZE", default: int = 0) -> QgsProcessingParameterNumber:
    return QgsProcessingParameterNumber(name, "Tile size in pixels (0 = the model's)", QgsProcessingParameterNumber.Integer,
                                        default, minValue=0, maxValue=4096)


# --------------------------------------------------------------------------- bands


def band_parameter(name: str, description: str, layer: str, multiple: bool = True) -> QgsProcessingParameterBand:
    """A band picker of ``layer``; optional (empty = the algorithm's default bands)."""
    return QgsProcessingParameterBand(name, description, None, layer, optional=True, allowMultiple=multiple)


def band_values(alg, parameters, name: str, context) -> list | None:
    """The bands a band parameter holds, as 1-based numbers in the order given; None when empty."""
    from ..models.errors import InputError

    value = parameters.get(name)
    if isinstance(value, QgsProperty):  # a model's expression or static value; Python gets (value, ok)
        value = value.valueAsString(context.expressionContext(), "")[0]
    if value is None or isinstance(value, int):
        return None if value is None else [value]
    items = value if isinstance(value, (list, tuple)) else str(value).replace(";", ",").replace(" ", ",").split(",")
    try:
        bands = [int(str(item).strip()) for item in items if str(item).strip()]
    except ValueError as exc:
        raise InputError(f"{name} '{value}' must be band numbers, e.g. 1,2,3 (bands count from 1).") from exc
    return bands or None


# --------------------------------------------------------------------------- models and values


def model_parameter(name: str, description: str, tasks: tuple, optional: bool = True) -> QgsProcessingParameterFile:
    """A model file, or the name of a shipped model of ``tasks`` (the dialog lists them with their metadata).

    The file filter ends with "All files (*)": with an extension, or QGIS's default filter "*.*", QGIS would
    refuse a shipped model's bare name before the run.
    """
    parameter = QgsProcessingParameterFile(name, description, optional=optional, fileFilter=MODEL_FILTER)
    parameter.setMetadata({"widget_wrapper": {"class": WIDGETS + ".ModelWidgetWrapper", "tasks": list(tasks)}})
    return parameter


def model_value(alg, parameters, name: str, context) -> str | None:
    """The model file a model parameter names (a path or a shipped model's name); None when empty."""
    from ..models.catalogue import resolve_model

    value = alg.parameterAsFile(parameters, name, context)
    return resolve_model(value) if value and value.strip() else None


def shipped_models_help(tasks: tuple, empty: str) -> str:
    """A help paragraph listing the shipped models of ``tasks`` with their metadata."""
    from ..models.catalogue import shipped_models

    models = shipped_models(tasks)
    if not models:
        return ""
    items = "".join(f"<li><b>{m.name}</b>: {m.summary}</li>" for m in models)
    return (f"<p><b>Shipped models</b> (give the name or pick it in the dialog; {empty}):</p><ul>{items}</ul>"
            "<p>Every figure comes from the model file's own metadata "
            "(<code>scripts/model_info.py FILE</code> prints all of it).</p>")


def values_parameter(name: str, description: str, default: str, layer: str) -> QgsProcessingParameterString:
    """Class values of a mask or class layer as text ("1,2"); the dialog can read them from ``layer``."""
    parameter = QgsProcessingParameterString(name, description, default, optional=True)
    parameter.setMetadata({"widget_wrapper": {"class": WIDGETS + ".MaskValuesWidgetWrapper", "layer": layer}})
    return parameter


def parse_values(text: str, name: str) -> tuple:
    """``"1, 2"`` -> ``(1, 2)``; an engine InputError for anything else."""
    from ..models.errors import InputError

    try:
        return tuple(int(v) for v in str(text or "").replace(";", ",").split(",") if v.strip())
    except ValueError as exc:
        raise InputError(f"{name} '{text}' must be comma-separated integers, e.g. 1,2.") from exc
