"""Parameters several algorithms share (DEVICE, BACKEND, TILE_SIZE, band and value lists)."""

from __future__ import annotations

from qgis.core import QgsProcessingParameterDefinition, QgsProcessingParameterEnum, QgsProcessingParameterNumber

from ..models.backends import BACKENDS  # auto, torch, onnxruntime (the engine imports no torch to say so)

DEVICES = ("auto", "cpu", "cuda")


def device_parameter(name: str = "DEVICE") -> QgsProcessingParameterEnum:
    return QgsProcessingParameterEnum(name, "Device (auto = CUDA GPU when available, else CPU)", list(DEVICES),
                                      defaultValue=0)


def device_value(alg, parameters, context, name: str = "DEVICE") -> str:
    return DEVICES[alg.parameterAsEnum(parameters, name, context)]


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


def parse_values(text: str, name: str) -> tuple:
    """``"1, 2"`` -> ``(1, 2)``; an engine InputError for anything else."""
    from ..models.errors import InputError

    try:
        return tuple(int(v) for v in str(text or "").replace(";", ",").split(",") if v.strip())
    except ValueError as exc:
        raise InputError(f"{name} '{text}' must be comma-separated integers, e.g. 1,2.") from exc
