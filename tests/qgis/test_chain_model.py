"""The shipped Processing model "Cloud-free image from a stack" (cloudfree:cloudfreestack): it loads in the provider,
validates, matches its builder, and runs through processing.run and headless qgis_process on real Sentinel-2 dates.

Data: ../shared/data/s2_multidate_stack (five real dates of one place). It has no partly cloudy date, so the target
is the clear 2015-08-30 date with the real overcast of 2015-07-31 over its left 45 columns (real cloud pixels, written
to tmp_path); the other dates are 2015-07-11 and 2015-09-09 (clear) and 2015-08-20 (overcast). The real overcast
2015-07-31 is also run as it is.
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback

ROOT = Path(__file__).resolve().parents[2]
MODEL = "cloudfree:cloudfreestack"
#: Sentinel-2 B02, B03, B04, B08, B11, B12 in the 13-band stack
BANDS = {"BLUE": 2, "GREEN": 3, "RED": 4, "NIR": 8, "SWIR1": 12, "SWIR2": 13}
CLOUDY_COLUMNS = 45


@pytest.fixture(scope="module")
def stack(shared_data, tmp_path_factory):
    folder = shared_data / "s2_multidate_stack"
    tmp = tmp_path_factory.mktemp("stack")
    clear = gdal.Open(str(folder / "s2_20150830.tif"))
    image = clear.ReadAsArray()
    image[:, :, :CLOUDY_COLUMNS] = gdal.Open(str(folder / "s2_20150731.tif")).ReadAsArray()[:, :, :CLOUDY_COLUMNS]
    target = tmp / "s2_20150830_cloudy.tif"
    out = gdal.GetDriverByName("GTiff").CreateCopy(str(target), clear)
    out.WriteArray(image)
    out = None
    return {"target": str(target), "overcast": str(folder / "s2_20150731.tif"),
            "dates": [str(folder / f"s2_{d}.tif") for d in ("20150711", "20150820", "20150909")]}


def outputs(tmp_path, report="report.json"):
    return {"detect:MASK": str(tmp_path / "mask.tif"), "remove:OUTPUT": str(tmp_path / "clean.tif"),
            "remove:OUTPUT_PROVENANCE": str(tmp_path / "provenance.tif"),
            "remove:OUTPUT_UNCERTAINTY": str(tmp_path / "error.tif"), "report:REPORT": str(tmp_path / report)}


OUTPUTS = {"detect:MASK", "remove:OUTPUT", "remove:OUTPUT_PROVENANCE", "remove:OUTPUT_UNCERTAINTY", "report:REPORT"}


def read(path):
    return gdal.Open(str(path)).ReadAsArray().astype(np.float64)


def check_outputs(target, tmp_path, report):
    """The three outputs exist on the target's grid and the image changed inside the mask only."""
    ref = gdal.Open(target)
    for name in ("mask.tif", "clean.tif"):
        ds = gdal.Open(str(tmp_path / name))
        assert ds.GetGeoTransform() == ref.GetGeoTransform() and ds.GetProjection() == ref.GetProjection()
        assert (ds.RasterXSize, ds.RasterYSize) == (ref.RasterXSize, ref.RasterYSize)
    mask = read(tmp_path / "mask.tif")
    masked = np.isin(mask, (1, 2))
    changed = (read(tmp_path / "clean.tif") != read(target)).any(axis=0)
    assert not changed[~masked].any()          # clear pixels bit-identical
    assert changed[masked].mean() > 0.9        # the clouds were replaced
    assert (tmp_path / report).stat().st_size > 0
    return masked, changed


def test_the_model_is_in_the_provider_and_validates(provider):
    alg = QgsApplication.processingRegistry().algorithmById(MODEL)
    assert alg is not None and alg.provider().id() == "cloudfree"
    assert alg.displayName() == "Cloud-free image from a stack" and alg.groupId() == "cloud_removal"
    assert "Prepare other dates" in alg.shortHelpString()
    ok, errors = alg.validate()
    assert ok, errors
    assert [c.algorithmId() for c in (alg.childAlgorithm(i) for i in ("detect", "prepare", "remove", "report"))] == [
        "cloudfree:detectclouds", "cloudfree:preparedates", "cloudfree:removeclouds", "cloudfree:stackreport"]
    for child_id in alg.childAlgorithms():
        assert alg.childAlgorithm(child_id).algorithm() is not None  # every step resolved
        assert alg.validateChildAlgorithm(child_id)[0]
    names = {p.name() for p in alg.parameterDefinitions()}
    assert {"TARGET", "DATES", "RADAR", "METHOD", "BLUE", "NIR", "DILATION", "REGISTRATION"} <= names
    assert {o.name() for o in alg.outputDefinitions()} == OUTPUTS
    assert alg.create().id() == MODEL


def empty_as_none(value):
    """'' and QGIS's NULL read back from a file as None (a file filter left empty comes back as NULL)."""
    return None if value is None or value == "" or (hasattr(value, "isNull") and value.isNull()) else value


def parameter_entry(p) -> tuple:
    """``(key, definition)`` of a model parameter without its help (in helpContent). A model output's destination
    is keyed by its child and output (QGIS 3.40 names the destinations of a model built in code after their
    description, while a loaded file keeps the names it was saved with)."""
    entry = {k: empty_as_none(v) for k, v in p.toVariantMap().items() if k != "help"}
    meta = entry.get("metadata") or {}
    if "_modelChildId" in meta:
        entry.pop("name", None)
        return f"{meta['_modelChildId']}:{meta['_modelChildOutputName']}", entry
    return p.name(), entry


def test_the_shipped_file_is_what_the_builder_makes(provider):
    from cloudfree.processing_provider.chains.stack_model import FILE, build_model
    from qgis.core import QgsProcessingModelAlgorithm

    shipped = QgsProcessingModelAlgorithm()
    assert shipped.fromFile(FILE)
    built = build_model()

    def shape(model):
        children = {}
        for child_id, child in model.childAlgorithms().items():
            # (QGIS 3.40 reads an empty static value back from the file as NULL, 3.22 as "")
            sources = {name: [{k: empty_as_none(v) for k, v in s.toVariant().items()} for s in values]
                       for name, values in child.parameterSources().items()}
            children[child_id] = (child.algorithmId(), sources, sorted(child.modelOutputs()))
        parameters = dict(parameter_entry(p) for p in model.parameterDefinitions())
        return children, parameters, model.helpContent()

    assert shape(shipped) == shape(built), "run scripts/build_chain_model.py to update the shipped .model3"


def test_the_chain_runs_on_real_dates_with_guided_removal(run_logged, stack, tmp_path):
    results, log = run_logged(MODEL, {"TARGET": stack["target"], "DATES": stack["dates"], **BANDS,
                                      **outputs(tmp_path)})
    assert set(results) >= OUTPUTS
    masked, changed = check_outputs(stack["target"], tmp_path, "report.json")
    assert masked[:, :CLOUDY_COLUMNS].mean() > 0.8 and masked[:, CLOUDY_COLUMNS + 10:].mean() < 0.1
    report = json.loads((tmp_path / "report.json").read_text())
    # the default method with other dates: the temporal regression, every replaced pixel traced to a date
    assert report["removal"]["method"] == "temporal" and "Self-check" in log
    provenance = read(tmp_path / "provenance.tif")
    assert set(np.unique(provenance[masked])) <= {1, 2, 251} and (provenance[~masked] == 0).all()
    # a date's pixel is used wherever its own detected mask is clear; elsewhere the fill (here the detector
    # marks most of both dates' left part as shadow, so most of the target's cloud is filled)
    date_masks = [read(m) for m in results["CHILD_INPUTS"]["remove"]["GUIDE_MASKS"]]
    seen = np.zeros(masked.shape, bool)
    for m in date_masks:
        seen |= ~np.isin(m, (1, 2, 255))
    assert (provenance[masked & seen] != 251).mean() > 0.95 and (provenance[masked & ~seen] == 251).all()
    counted = {label: n for label, n in report["removal"]["provenance"].items()}
    assert counted["unmixing fill from the surrounding clear pixels"] == int((provenance == 251).sum())
    error = read(tmp_path / "error.tif")
    assert (error[:, ~masked] == 0).all() and (error[:, masked] > 0).all()
    assert "temporal" in report["removal"]["self_check"] or "skipped" in report["removal"]["self_check"]
    assert report["result"]["changed_outside"] == 0 and report["result"]["changed_inside"] == int(changed.sum())
    assert report["target_clouds"]["cloud_fraction"] == pytest.approx(results["CHILD_RESULTS"]["detect"]
                                                                       ["CLOUD_FRACTION"])
    layers = {layer["name"]: layer for layer in report["other_layers"]}
    for clear in ("s2_20150711", "s2_20150909"):  # registered on the clear half, sub-pixel to a pixel or so
        assert layers[clear]["aligned_by"] == "registration" and layers[clear]["usable"]
        assert abs(layers[clear]["registration"]["shift_x"]) < 2 and abs(layers[clear]["registration"]["shift_y"]) < 2
    overcast = layers["s2_20150820"]  # nothing to match: placed by georeferencing, and no guide
    assert overcast["aligned_by"] == "georeferencing" and "too few" in overcast["note"] and not overcast["usable"]
    assert "left out of DATES_ON_TARGET" in log
    guides = results["CHILD_INPUTS"]["remove"]["GUIDES"]
    assert [Path(g).name for g in guides] == ["01_s2_20150711.tif", "03_s2_20150909.tif"]
    assert results["CHILD_INPUTS"]["detect"]["DILATION"] == 3  # the model's default, also when left out


def qgis_process(*args, timeout=600):
    return subprocess.run([str(ROOT / "scripts" / "qgis_process"), *args], capture_output=True, text=True,
                          timeout=timeout)


def test_the_chain_runs_headless_with_fusion(stack, tmp_path):
    proc = qgis_process("--json", "run", MODEL, "--", f"TARGET={stack['target']}",
                        *(f"DATES={d}" for d in stack["dates"]), *(f"{k}={v}" for k, v in BANDS.items()),
                        "METHOD=2", *(f"{k}={v}" for k, v in outputs(tmp_path, "report.html").items()))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert results["remove:OUTPUT"] == str(tmp_path / "clean.tif")
    check_outputs(stack["target"], tmp_path, "report.html")
    html = (tmp_path / "report.html").read_text()
    assert "median composite" in html and "0 pixels outside the mask" in html and "data:image/png;base64" in html
    assert "Where the pixels came from" in html and "median composite of the dates" in html


def test_a_real_overcast_target_falls_back_to_georeferencing(run_logged, stack, tmp_path):
    results, log = run_logged(MODEL, {"TARGET": stack["overcast"], "DATES": [stack["dates"][0], stack["dates"][2]],
                                      **BANDS, **outputs(tmp_path)})
    masked, _ = check_outputs(stack["overcast"], tmp_path, "report.json")
    assert masked.mean() > 0.95
    report = json.loads((tmp_path / "report.json").read_text())
    assert {layer["aligned_by"] for layer in report["other_layers"]} == {"georeferencing"}
    assert "placed by its georeferencing" in log


def test_cancelling_the_chain_leaves_no_output(provider, stack, tmp_path):
    import processing

    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda p: feedback.cancel() if p > 30 else None)  # during the dates
    with pytest.raises(QgsProcessingException):
        processing.run(MODEL, {"TARGET": stack["target"], "DATES": stack["dates"], **BANDS, **outputs(tmp_path)},
                       feedback=feedback)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_the_model_opens_in_the_graphical_modeler(qgis_iface, provider, monkeypatch):
    from processing.modeler.ModelerDialog import ModelerDialog
    from qgis.PyQt.QtCore import QSize

    monkeypatch.setattr(qgis_iface, "iconSize", lambda *a: QSize(24, 24), raising=False)  # pytest-qgis' iface lacks it

    from cloudfree.processing_provider.chains.stack_model import FILE

    dialog = ModelerDialog.create()
    try:
        dialog.loadModel(FILE)
        model = dialog.model()
        assert model.displayName() == "Cloud-free image from a stack" and model.validate()[0]
        assert set(model.childAlgorithms()) == {"detect", "prepare", "remove", "report"}
    finally:
        dialog.setDirty(False)
        dialog.close()
