"""The Processing model "Cloud-free image from a stack" (cloud_free_stack.model3): how it is built and loaded.

The chain, four CloudFree algorithms wired in a ``QgsProcessingModelAlgorithm``:

1. ``detect`` (cloudfree:detectclouds): the target date's clouds -> the model output MASK;
2. ``prepare`` (cloudfree:preparedates): every other date and radar layer registered onto the target (its
   clouds give no tie points) and the dates' clouds detected on the target grid. A model cannot loop over
   a list of layers, so this one algorithm does the "for every date" part;
3. ``remove`` (cloudfree:removeclouds): the target's clouds removed, guided by the prepared dates (GUIDES,
   GUIDE_MASKS) and radar (RADAR_GUIDES), with the METHOD the analyst picks -> OUTPUT;
4. ``report`` (cloudfree:stackreport): what each step did -> REPORT.

:func:`build_model` makes the model with the QGIS API (``scripts/build_chain_model.py`` saves it as the
shipped .model3; a test checks that the file and this code agree). :func:`shipped_models` loads the shipped
files as :class:`ShippedModel`, which the provider adds: their ids are ``cloudfree:<file stem>``.
"""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)
from qgis.PyQt.QtCore import QPointF
from qgis.PyQt.QtGui import QIcon

FOLDER = os.path.dirname(os.path.abspath(__file__))
NAME = "cloudfreestack"
FILE = os.path.join(FOLDER, "cloud_free_stack.model3")
DISPLAY_NAME = "Cloud-free image from a stack"
GROUP = "Cloud removal"
MASK_VALUES = "1,2"  # detectclouds' cloud and shadow codes

HELP = {
    "ALG_DESC": "The whole chain from a cloudy stack to a clean image, in the modeler and headless: the clouds of "
                "the target date are detected (Detect clouds and shadows), every other date and radar layer is "
                "registered onto the target and its own clouds detected (Prepare other dates), the target's clouds "
                "are removed guided by them (Remove clouds, with the method you pick) and a report says what each "
                "step did. Clear pixels of the target are kept as they are. Open the model in the graphical "
                "modeler to change any step (Processing > Graphical Modeler > Open model, "
                "processing_provider/chains/cloud_free_stack.model3 in the plugin folder).",
    "TARGET": "The date whose clouds are removed (a multispectral raster: blue, green, red, NIR at least).",
    "DATES": "Other dates of the same place, same band layout (any grid: they are registered onto the target).",
    "RADAR": "Optional Sentinel-1 radar (VV, VH, dB or linear), registered with image structure. The shipped guided "
             "model uses other dates when there are any, and the radar model when only radar is given.",
    "METHOD": "Automatic (default): the temporal regression from every clear other date (co-registered, "
              "weighted by fit and time), or without other dates the shipped model; or a colour-matched copy of "
              "the nearest clear date, the fusion composite (per-pixel median of the clear other dates inside the "
              "clouds), a fill from the surrounding pixels (ignores the other dates), the temporal regression, or "
              "the model (MODEL, or the shipped guided one).",
    "BLUE": "Band roles of the target and the other dates, for the cloud detector (as in Detect clouds).",
    "SWIR1": "Optional, with SWIR2: the more accurate 6-band detector runs (Sentinel-2 B11, Landsat 8/9 band 6).",
    "SWIR2": "Optional, with SWIR1 (Sentinel-2 B12, Landsat 8/9 band 7).",
    "PRODUCT": "Top of atmosphere (L1C) or surface reflectance (L2A): each has its own detector.",
    "SCALING": "How stored values become reflectance 0-1 (as in Detect clouds); GAIN and OFFSET for custom.",
    "DILATION": "Grow clouds and shadows by this many pixels before removal (2-5 px suits removal).",
    "REGISTRATION": "Register every layer; where that is impossible (overcast target or date) place it by its "
                    "georeferencing and say so in the report (default); or stop; or never register.",
    "MODEL": "A cloud removal model of your own for the model method (empty = the shipped one for the guides).",
    "detect:MASK": "The target's cloud mask: 0 clear, 1 cloud, 2 shadow, 255 nodata.",
    "remove:OUTPUT": "The cloud-free image on the target's grid.",
    "remove:OUTPUT_PROVENANCE": "Where each pixel came from: 0 the target's own clear pixel, 1..N the other date "
                                "that contributed most, 250 median, 251 fill, 252 generator, 253 radar generator, "
                                "255 nodata (colour table and legend with the dates in the raster).",
    "remove:OUTPUT_UNCERTAINTY": "The predicted absolute error per band (temporal method; other methods: unknown "
                                 "on replaced pixels), 0 on the target's clear pixels.",
    "report:REPORT": "HTML (or JSON when the name ends in .json): the target's clouds, how each other layer was "
                     "aligned (shift, RMS) and its clouds, the method, where the pixels came from, the self-check "
                     "of the reconstruction on this scene, and the pixels changed inside and outside the mask.",
}


def _advanced(parameter: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return parameter


def model_parameters() -> list:
    """The model's inputs (their names are the ids headless calls use), in the order the dialog shows them."""
    from .. import detector_parameters as dc
    from ..prepare_dates import REGISTRATION_CHOICES
    from ..remove_clouds import RemoveCloudsAlgorithm

    bands = [QgsProcessingParameterBand(name, f"{label} (default {default})", default, "TARGET", optional=True)
             for name, label, default in (("BLUE", "Blue band", 1), ("GREEN", "Green band", 2), ("RED", "Red band", 3),
                                          ("NIR", "NIR band", 4))]
    bands += [QgsProcessingParameterBand(name, label, None, "TARGET", optional=True)
              for name, label in (("SWIR1", "SWIR1 band (1.6 um, optional)"), ("SWIR2", "SWIR2 band (2.2 um, optional)"))]
    from ...models.detection import PRESET_LABELS

    return [
        QgsProcessingParameterRasterLayer("TARGET", "Target date (cloudy)"),
        QgsProcessingParameterMultipleLayers("DATES", "Other dates of the same place", QgsProcessing.TypeRaster,
                                             optional=True),
        QgsProcessingParameterMultipleLayers("RADAR", "Radar (Sentinel-1 VV, VH; optional)", QgsProcessing.TypeRaster,
                                             optional=True),
        QgsProcessingParameterEnum("METHOD", "Method", [label for _, label in RemoveCloudsAlgorithm.METHODS],
                                   defaultValue=0),
        *bands,
        QgsProcessingParameterEnum("PRODUCT", "Product level", ["Top of atmosphere (L1C / Level-1)",
                                                                "Surface reflectance (L2A / Level-2)"], defaultValue=0),
        QgsProcessingParameterEnum("SCALING", "Scaling to reflectance", [PRESET_LABELS[p] for p in dc.SCALING_PRESETS]
                                   + ["Custom: value x gain + offset"], defaultValue=0),
        _advanced(QgsProcessingParameterNumber("GAIN", "Custom gain", QgsProcessingParameterNumber.Double, 1.0,
                                               optional=True)),
        _advanced(QgsProcessingParameterNumber("OFFSET", "Custom offset", QgsProcessingParameterNumber.Double, 0.0,
                                               optional=True)),
        QgsProcessingParameterNumber("DILATION", "Dilation of clouds and shadows in pixels",
                                     QgsProcessingParameterNumber.Integer, 3, minValue=0, maxValue=500),
        _advanced(QgsProcessingParameterEnum("REGISTRATION", "Registration",
                                             [label for _, label in REGISTRATION_CHOICES], defaultValue=0)),
        _advanced(QgsProcessingParameterFile("MODEL", "Cloud removal model (empty = shipped model)",
                                             extension="safetensors", optional=True)),
    ]


def _from_model(*names: str) -> dict:
    return {n: [QgsProcessingModelChildParameterSource.fromModelParameter(n)] for n in names}


def _from_child(child: str, **outputs: str) -> dict:
    return {name: [QgsProcessingModelChildParameterSource.fromChildOutput(child, output)]
            for name, output in outputs.items()}


def _static(**values) -> dict:
    return {name: [QgsProcessingModelChildParameterSource.fromStaticValue(v)] for name, v in values.items()}


DETECTION = ("BLUE", "GREEN", "RED", "NIR", "SWIR1", "SWIR2", "PRODUCT", "SCALING", "GAIN", "OFFSET", "DILATION")


def children() -> list:
    """``(child id, algorithm id, description, parameter sources, {model output: (child output, description)},
    position)`` of each step."""
    return [
        ("detect", "cloudfree:detectclouds", "Detect the target's clouds",
         {**_from_model(*DETECTION), "INPUT": _from_model("TARGET")["TARGET"]},
         {"MASK": ("OUTPUT", "Cloud mask of the target")}, (420, 120)),
        ("prepare", "cloudfree:preparedates", "Register the other dates onto the target, detect their clouds",
         {**_from_model("TARGET", "DATES", "RADAR", "REGISTRATION", *DETECTION),
          **_from_child("detect", TARGET_MASK="OUTPUT")},
         {}, (420, 260)),  # its folder is temporary: QGIS 3.22 makes every model output mandatory headless
        ("remove", "cloudfree:removeclouds", "Remove the target's clouds, guided by the other dates",
         {"INPUT": _from_model("TARGET")["TARGET"], **_from_model("METHOD", "MODEL"),
          **_from_child("detect", MASK="OUTPUT"),
          **_from_child("prepare", GUIDES="DATES_ON_TARGET", GUIDE_MASKS="DATE_MASKS", RADAR_GUIDES="RADAR_ON_TARGET"),
          **_static(MASK_VALUES=MASK_VALUES, GUIDE_MASK_VALUES=MASK_VALUES)},
         {"OUTPUT": ("OUTPUT", "Cloud-free image"), "OUTPUT_PROVENANCE": ("OUTPUT_PROVENANCE", "Provenance"),
          "OUTPUT_UNCERTAINTY": ("OUTPUT_UNCERTAINTY", "Predicted error")}, (420, 400)),
        ("report", "cloudfree:stackreport", "Report what each step did",
         {**_from_model("TARGET", "METHOD", "RED", "GREEN", "BLUE"), **_from_child("detect", MASK="OUTPUT"),
          **_from_child("remove", CLOUD_FREE="OUTPUT", REMOVAL_REPORT="REPORT"),
          **_from_child("prepare", PREPARED="SUMMARY"),
          **_static(MASK_VALUES=MASK_VALUES)},
         {"REPORT": ("OUTPUT", "Report")}, (420, 540)),
    ]


def build_model() -> QgsProcessingModelAlgorithm:
    """The chain as a ``QgsProcessingModelAlgorithm`` (the CloudFree provider must be registered to validate it)."""
    model = QgsProcessingModelAlgorithm(DISPLAY_NAME, GROUP)
    for row, parameter in enumerate(model_parameters()):
        component = QgsProcessingModelParameter(parameter.name())
        component.setPosition(QPointF(120, 60 + 50 * row))
        model.addModelParameter(parameter, component)
    for child_id, algorithm_id, description, sources, outputs, position in children():
        child = QgsProcessingModelChildAlgorithm(algorithm_id)
        child.setChildId(child_id)
        child.setDescription(description)
        child.setPosition(QPointF(*position))
        for name, parameter_sources in {**defaults(algorithm_id, sources), **sources}.items():
            child.addParameterSources(name, parameter_sources)
        model_outputs = {}
        for name, (child_output, label) in outputs.items():
            output = QgsProcessingModelOutput(name, label)
            output.setChildId(child_id)
            output.setChildOutputName(child_output)
            output.setMandatory(True)
            output.setPosition(QPointF(position[0] + 320, position[1]))
            model_outputs[name] = output
        child.setModelOutputs(model_outputs)
        model.addChildAlgorithm(child)
    model.setHelpContent(HELP)
    return model


def defaults(algorithm_id: str, sources: dict) -> dict:
    """Static sources with the algorithm's defaults for its other parameters, as the modeler sets them."""
    from qgis.core import QgsApplication

    algorithm = QgsApplication.processingRegistry().algorithmById(algorithm_id)
    if algorithm is None:
        raise ValueError(f"The algorithm {algorithm_id} is not registered: register the CloudFree provider first.")
    return {p.name(): [QgsProcessingModelChildParameterSource.fromStaticValue(p.defaultValue())]
            for p in algorithm.parameterDefinitions()
            if p.name() not in sources and not p.isDestination() and p.defaultValue() is not None}


class ShippedModel(QgsProcessingModelAlgorithm):
    """A shipped .model3 with a stable id (``cloudfree:<file stem>``) and the model's own name as display name."""

    def __init__(self, path: str):
        super().__init__()
        if not self.fromFile(path):
            raise ValueError(f"The shipped model {path} cannot be read.")
        self._path = path

    def name(self) -> str:
        return os.path.splitext(os.path.basename(self._path))[0].replace("_", "")

    def displayName(self) -> str:  # noqa: N802
        return super().name()

    def groupId(self) -> str:  # noqa: N802
        return self.group().lower().replace(" ", "_")  # the group of the CloudFree algorithms (base.py)

    def icon(self) -> QIcon:
        plugin = os.path.dirname(os.path.dirname(FOLDER))
        path = os.path.join(plugin, "icons", f"{self.groupId()}.svg")
        return QIcon(path if os.path.exists(path) else os.path.join(plugin, "icon.png"))

    def createInstance(self):  # noqa: N802
        return ShippedModel(self._path)

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        # QGIS 3.22 hands a model input that a headless caller left out to the steps as NULL, and each step then
        # uses its own default: the model's defaults (DILATION 3) would hold in the dialog only
        defaults = {p.name(): p.defaultValue() for p in self.parameterDefinitions()
                    if not p.isDestination() and p.defaultValue() is not None}
        given = {name: value for name, value in parameters.items() if value is not None}
        created = self.new_outputs(given, context)
        try:
            results = super().processAlgorithm({**defaults, **given}, context, feedback)
        except BaseException:
            remove_files(created)
            raise
        if feedback is not None and feedback.isCanceled():  # QGIS stops between steps without an error
            remove_files(created)
            raise QgsProcessingException("Cancelled by the user; no output was written.")
        return results

    def new_outputs(self, parameters, context) -> list:
        """The model's output files that do not exist yet: a failed or cancelled run removes them, so that the steps
        done before (the mask) leave nothing behind either."""
        paths = []
        for p in self.destinationParameterDefinitions():
            if p.name() in parameters:
                path = self.parameterAsFileOutput(parameters, p.name(), context)
                if path and not os.path.exists(path):
                    paths.append(path)
        return paths


def remove_files(paths: list) -> None:
    for path in paths:
        if os.path.isfile(path):
            os.remove(path)


def shipped_models() -> list:
    """A fresh :class:`ShippedModel` for each .model3 file in this folder."""
    return [ShippedModel(os.path.join(FOLDER, f)) for f in sorted(os.listdir(FOLDER)) if f.endswith(".model3")]
