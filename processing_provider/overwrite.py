"""No output of a run may be one of its input files (layers, masks, guides, models, pairs files, folders).

:func:`check_outputs_differ` runs before every CloudFree algorithm: it collects the files its input
parameters name (a layer's source file, every layer of a list, a file or folder parameter) and the
paths its destination parameters name, and raises when one output is an input, naming both.
Temporary outputs are left out: they are new files.
"""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessingDestinationParameter,
    QgsProcessingException,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorLayer,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterFeatureSource,
)

TEMPORARY = "TEMPORARY_OUTPUT"
LAYER_PARAMETERS = (QgsProcessingParameterRasterLayer, QgsProcessingParameterVectorLayer,
                    QgsProcessingParameterMapLayer, QgsProcessingParameterFeatureSource)


def check_outputs_differ(algorithm, parameters: dict, context) -> None:
    """Raise :class:`QgsProcessingException` when an output path of ``algorithm`` is one of its inputs."""
    inputs = dict(input_files(algorithm, parameters, context))
    for definition in algorithm.parameterDefinitions():
        if not isinstance(definition, QgsProcessingDestinationParameter):
            continue
        path = _destination(parameters.get(definition.name()), context)
        if not path:
            continue
        key = _key(path)
        if key in inputs:
            raise QgsProcessingException(
                f"{definition.description()} ({definition.name()}) '{path}' is the file of "
                f"{inputs[key]}: writing it would overwrite an input. Choose another output path.")


def input_files(algorithm, parameters: dict, context):
    """``(normalised path, 'NAME (description)')`` for every file the input parameters name."""
    for definition in algorithm.parameterDefinitions():
        if isinstance(definition, QgsProcessingDestinationParameter):
            continue
        name = definition.name()
        if parameters.get(name) in (None, ""):
            continue
        label = f"input {name} ({definition.description()})"
        paths = []
        if isinstance(definition, LAYER_PARAMETERS):
            layer = algorithm.parameterAsLayer(parameters, name, context)
            paths = [layer.source()] if layer is not None else [_as_text(parameters.get(name))]
        elif isinstance(definition, QgsProcessingParameterMultipleLayers):
            layers = algorithm.parameterAsLayerList(parameters, name, context)
            paths = [layer.source() for layer in layers]
            raw = parameters.get(name)
            paths += [str(v) for v in (raw if isinstance(raw, (list, tuple)) else []) if isinstance(v, str)]
        elif isinstance(definition, QgsProcessingParameterFile):
            paths = [algorithm.parameterAsFile(parameters, name, context)]
        for path in paths:
            path = (path or "").split("|")[0]
            if path and os.path.exists(path):
                yield _key(path), f"{label} '{path}'"


def _destination(value, context) -> str:
    if isinstance(value, QgsProcessingOutputLayerDefinition):
        value = value.sink.valueAsString(context.expressionContext())[0]
    text = _as_text(value)
    return "" if not text or text == TEMPORARY or text.startswith("memory:") else text


def _as_text(value) -> str:
    return "" if value is None else str(value).strip()


def _key(path: str) -> str:
    return os.path.normcase(os.path.realpath(os.path.abspath(path)))
