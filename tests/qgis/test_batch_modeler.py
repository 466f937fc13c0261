"""Batch mode and the graphical modeler work for every algorithm: the batch dialog opens, destinations have
sensible default extensions, rows run the way the batch dialog runs them, every algorithm is a valid child
of a model with static values, enums work as static values and as model inputs, and a small model runs."""

import json

import numpy as np
import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingDestinationParameter,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterRasterLayer,
)

from test_parameters import read, write

EXTENSIONS = {"tif", "gpkg", "json", "html", "safetensors"}


@pytest.fixture()
def inputs(tmp_path):
    rng = np.random.default_rng(1)
    images = [write(tmp_path / f"date{k}.tif", rng.uniform(0.05, 0.4, (3, 40, 40)).astype(np.float32))
              for k in (1, 2)]
    mask = np.zeros((40, 40), np.uint8)
    mask[8:20, 8:20] = 1
    return {"images": images, "mask": write(tmp_path / "mask.tif", mask), "mask_array": mask}


def cloudfree_algorithms():
    from conftest import ensure_provider

    return sorted((a for a in ensure_provider().algorithms() if hasattr(a, "ICON")), key=lambda a: a.id())


def defaults(alg) -> dict:
    """The defaults the modeler's dialog fills in as static values."""
    return {p.name(): p.defaultValue() for p in alg.parameterDefinitions()
            if not isinstance(p, QgsProcessingDestinationParameter) and p.defaultValue() is not None}


def static_values(alg, inputs) -> dict:
    """The defaults, and values for every mandatory parameter without one, as an analyst fills them in."""
    values = defaults(alg)
    for p in alg.parameterDefinitions():
        if isinstance(p, QgsProcessingDestinationParameter) or p.flags() & p.FlagOptional or p.name() in values:
            continue
        if isinstance(p, QgsProcessingParameterRasterLayer):
            values[p.name()] = inputs["images"][0]
        elif isinstance(p, QgsProcessingParameterMultipleLayers):
            values[p.name()] = list(inputs["images"])
        elif isinstance(p, QgsProcessingParameterFile):
            values[p.name()] = "fusion_default.segmentation"  # segment's MODEL: a shipped model by name
        else:
            pytest.fail(f"{alg.id()}: no static value for the mandatory {p.name()} ({p.type()})")
    return values


# --------------------------------------------------------------------------- batch


def test_every_algorithm_opens_in_the_batch_dialog(qgis_iface, provider, monkeypatch):
    from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
    from qgis.gui import QgsBrowserGuiModel

    model = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: model, raising=False)
    for alg in cloudfree_algorithms():
        dialog = BatchAlgorithmDialog(alg.create())
        panel = dialog.mainWidget()
        assert panel.tblParameters.rowCount() >= 1 and panel.tblParameters.columnCount() >= 1, alg.id()
        dialog.close()


def test_destinations_have_sensible_default_extensions(provider):
    for alg in cloudfree_algorithms():
        for p in alg.destinationParameterDefinitions():
            if isinstance(p, QgsProcessingParameterFolderDestination):
                continue  # a folder has no extension
            assert p.defaultFileExtension() in EXTENSIONS, f"{alg.id()} {p.name()}: {p.defaultFileExtension()}"


@pytest.mark.parametrize("algorithm_id, row", [
    ("cloudfree:simulateclouds", lambda image, mask, out: {"INPUT": image, "SEED": 2, "OUTPUT": out("c.tif"),
                                                          "OUTPUT_MASK": out("m.tif")}),
    ("cloudfree:removeclouds", lambda image, mask, out: {"INPUT": image, "MASK": mask, "MASK_VALUES": "1",
                                                        "METHOD": 3, "BANDS": [2, 1], "OUTPUT": out("r.tif")}),
    ("cloudfree:autocluster", lambda image, mask, out: {"INPUT": image, "BANDS": "1", "MIN_SIZE": 50,
                                                       "OUTPUT": out("k.tif"), "OUTPUT_CENTROIDS": out("k.json")}),
    ("cloudfree:regions", lambda image, mask, out: {"INPUT": mask, "CLASSES": "1", "OUTPUT": out("r.gpkg")}),
    ("cloudfree:comparerasters", lambda image, mask, out: {"INPUT": image, "REFERENCE": image, "BANDS": [3, 1],
                                                          "OUTPUT_REPORT": out("c.json")}),
])
def test_rows_run_the_way_the_batch_dialog_runs_them(provider, inputs, tmp_path, algorithm_id, row):
    """One row per input, each with its own destinations: checked, then run."""
    import processing

    alg = QgsApplication.processingRegistry().algorithmById(algorithm_id)
    for k, image in enumerate(inputs["images"]):
        folder = tmp_path / f"row{k}"
        folder.mkdir()
        params = row(image, inputs["mask"], lambda name, folder=folder: str(folder / name))
        ok, message = alg.checkParameterValues(params, QgsProcessingContext())
        assert ok, message
        results = processing.run(algorithm_id, params, feedback=QgsProcessingFeedback())
        for p in alg.destinationParameterDefinitions():
            if p.name() in params:
                assert results[p.name()] == params[p.name()] and (folder / params[p.name()].split("/")[-1]).exists()


# --------------------------------------------------------------------------- modeler


def model_with(alg, values: dict) -> tuple:
    model = QgsProcessingModelAlgorithm("test", "tests")
    child = QgsProcessingModelChildAlgorithm(alg.id())
    child.setChildId("step")
    for name, value in values.items():
        child.addParameterSources(name, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])
    model.addChildAlgorithm(child)
    return model, child


def test_every_algorithm_is_a_valid_child_of_a_model_with_static_values(provider, inputs):
    for alg in cloudfree_algorithms():
        values = static_values(alg, inputs)
        model, _ = model_with(alg, values)
        ok, issues = model.validate()
        assert ok, f"{alg.id()}: {issues}"
        outputs = {p.name(): "TEMPORARY_OUTPUT" for p in alg.destinationParameterDefinitions()}
        ok, message = alg.checkParameterValues({**values, **outputs}, QgsProcessingContext())
        assert ok, f"{alg.id()}: {message}"


def test_every_enum_works_as_a_static_value_and_as_a_model_input(provider, inputs):
    for alg in cloudfree_algorithms():
        for p in alg.parameterDefinitions():
            if not isinstance(p, QgsProcessingParameterEnum):
                continue
            last = len(p.options()) - 1
            model, _ = model_with(alg, {**static_values(alg, inputs), p.name(): last})
            assert model.validate()[0], f"{alg.id()} {p.name()} static"
            model, child = model_with(alg, static_values(alg, inputs))
            model.addModelParameter(p.clone(), QgsProcessingModelParameter(p.name()))
            model.childAlgorithm("step").addParameterSources(
                p.name(), [QgsProcessingModelChildParameterSource.fromModelParameter(p.name())])
            ok, issues = model.validate()
            assert ok, f"{alg.id()} {p.name()} as a model input: {issues}"
            assert model.parameterDefinition(p.name()).options() == p.options()


def test_a_small_model_runs_end_to_end(provider, inputs, tmp_path):
    """simulate clouds -> remove them (METHOD a model input, bands 3,1,2) -> compare with the cloudy input: the
    clear pixels are copied bit for bit, in the chosen band order."""
    import processing

    model = QgsProcessingModelAlgorithm("cloud round trip", "tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("image", "Image"), QgsProcessingModelParameter("image"))
    method = QgsProcessingParameterEnum("method", "Method", ["model", "matched copy", "fusion", "fill"], defaultValue=3)
    model.addModelParameter(method, QgsProcessingModelParameter("method"))
    static, param, out = (QgsProcessingModelChildParameterSource.fromStaticValue,
                          QgsProcessingModelChildParameterSource.fromModelParameter,
                          QgsProcessingModelChildParameterSource.fromChildOutput)

    def child(alg_id, child_id, sources, outputs=()):
        c = QgsProcessingModelChildAlgorithm(alg_id)
        c.setChildId(child_id)
        alg = QgsApplication.processingRegistry().algorithmById(alg_id)
        for name, source in {**{k: static(v) for k, v in defaults(alg).items()}, **sources}.items():
            c.addParameterSources(name, [source])
        if outputs:
            c.setModelOutputs({name: QgsProcessingModelOutput(name) for name in outputs})
            for name in outputs:
                c.modelOutput(name).setChildOutputName(name)
                c.modelOutput(name).setChildId(child_id)
        model.addChildAlgorithm(c)

    child("cloudfree:simulateclouds", "simulate", {"INPUT": param("image"), "SEED": static(4),
                                                   "COVERAGE": static(0.3)})
    child("cloudfree:removeclouds", "remove", {"INPUT": out("simulate", "OUTPUT"), "MASK": out("simulate", "OUTPUT_MASK"),
                                               "MASK_VALUES": static("1,2,3"), "BANDS": static([3, 1, 2]),
                                               "METHOD": param("method")}, outputs=("OUTPUT",))
    child("cloudfree:comparerasters", "compare", {"INPUT": out("remove", "OUTPUT"), "REFERENCE": out("simulate", "OUTPUT"),
                                                  "REFERENCE_BANDS": static("3,1,2"), "MASK": out("simulate", "OUTPUT_MASK"),
                                                  "MASK_VALUES": static("0")}, outputs=("OUTPUT_REPORT",))
    assert model.validate()[0], model.validate()[1]
    report = tmp_path / "report.json"
    results = processing.run(model, {"image": inputs["images"][0], "method": 3, "remove:OUTPUT": str(tmp_path / "clean.tif"),
                                     "compare:OUTPUT_REPORT": str(report)})
    assert read(results["remove:OUTPUT"]).shape == (3, 40, 40)
    assert json.loads(report.read_text())["overall"]["mae"] == 0
