"""The workflow dialogs (ui/): they list the project's real layers in their pickers, run a small job through
QGIS's task manager, add the result with its style, and a cancelled run leaves nothing behind.

Real layers come from ../shared/data (read-only; the tests skip without it); runs work on small GeoTIFF
copies in tmp_path."""

from __future__ import annotations

import datetime as dt

import pytest
from osgeo import gdal
from qgis.core import QgsProject
from qgis.PyQt.QtCore import Qt

from cloudfree.ui import styles
from cloudfree.ui.cloud_dialogs import DetectCloudsDialog, RemoveCloudsDialog
from cloudfree.ui.date_dialogs import FuseDatesDialog, RegisterDialog
from cloudfree.ui.menu import ENTRIES, build_actions, workflow_dialogs
from cloudfree.ui.pickers import date_in_text, distinct_values, layer_date, model_metadata, shipped_models
from cloudfree.ui.train_dialog import TrainModelDialog
from test_workflow_dialogs_common import (
    DATES,
    STACK,
    bar_text,
    by_name,
    copy_to,
    load,
    need,
    registration_crops,
    run_dialog,
    stack_paths,
)

DIALOGS = (RemoveCloudsDialog, FuseDatesDialog, RegisterDialog, DetectCloudsDialog, TrainModelDialog)


@pytest.fixture()
def project(qgis_iface, provider):
    """An empty project before and after the test."""
    QgsProject.instance().removeAllMapLayers()
    yield QgsProject.instance()
    QgsProject.instance().removeAllMapLayers()


@pytest.fixture()
def stack(project):
    """The real five-date Sentinel-2 stack and its masks, loaded from the shared data."""
    return load(stack_paths(need(STACK)))


@pytest.fixture()
def copies(project, tmp_path):
    """Copies of the stack in tmp_path (runs write beside nothing of the shared data)."""
    folder = tmp_path / "inputs"
    folder.mkdir()
    return [copy_to(folder, p) for p in stack_paths(need(STACK))]


def texts(widget) -> list:
    return [widget.item(i).text() for i in range(widget.count())]


def checked(widget) -> list:
    return [widget.item(i).text() for i in range(widget.count()) if widget.item(i).checkState() == Qt.Checked]


def check(date_list, names) -> None:
    date_list.set_checked([by_name(n).id() for n in names])


# ---------------------------------------------------------------------------------------------- pickers


def test_dates_come_from_names_and_metadata(tmp_path):
    assert date_in_text("s2_20150711") == dt.date(2015, 7, 11)
    assert date_in_text("S2B_MSIL2A_20210803T102559_N0301") == dt.date(2021, 8, 3)
    assert date_in_text("landsat_2010-07-30_fmask") == dt.date(2010, 7, 30)
    assert date_in_text("LE70350322008118EDC00") == dt.date(2008, 4, 27)  # year 2008, day 118
    assert date_in_text("tile_12345678") is None and date_in_text("scene") is None
    path = tmp_path / "undated.tif"
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), 4, 4, 1)
    dataset.SetMetadataItem("TIFFTAG_DATETIME", "2019:05:03 10:20:30")
    dataset = None

    class Layer:
        def name(self):
            return "undated"

        def source(self):
            return str(path)

    assert layer_date(Layer()) == dt.date(2019, 5, 3)


def test_mask_values_and_model_metadata_are_read_cheaply():
    mask = need(STACK) / "clm_20150731.tif"
    assert distinct_values(str(mask)) == [1]  # the overcast date: cloud everywhere
    models = dict(shipped_models("cloud_removal"))
    assert "cloud_removal_small.safetensors" in models
    assert model_metadata(models["cloud_removal_small.safetensors"])["bands"] == ["blue", "green", "red", "nir"]


def test_remove_clouds_dialog_lists_the_layers(qtbot, stack):
    dialog = RemoveCloudsDialog()
    qtbot.addWidget(dialog)
    assert dialog.input.count() == 10 and dialog.input.currentLayer().name() == "s2_20150711"
    assert dialog.cloud_mask.currentLayer().name() == "clm_20150711"  # the mask of the same date
    assert texts(dialog.guides) == [f"{d[:4]}-{d[4:6]}-{d[6:]}   s2_{d}" for d in DATES[1:]]  # not the input
    assert len(texts(dialog.guide_masks)) == 5
    assert checked(dialog.bands) == ["2: B02", "3: B03", "4: B04", "8: B08"]  # the model's blue, green, red, NIR
    assert dialog.bands.value() == "2,3,4,8"
    assert dialog.model.combo.count() >= 4 and dialog.model.value() is None
    dialog.model.combo.setCurrentIndex(dialog.model.combo.findText("cloud_removal_small.safetensors"))
    assert "blue, green, red, nir" in dialog.model.about.text() and "Held out" in dialog.model.about.text()
    dialog.input.setLayer(by_name("s2_20150731"))
    assert dialog.cloud_mask.currentLayer().name() == "clm_20150731" and texts(dialog.mask_values) == ["1 cloud"]
    assert "s2_20150731" not in " ".join(texts(dialog.guides)) and "s2_20150711" in " ".join(texts(dialog.guides))


def test_the_other_dialogs_list_the_layers(qtbot, stack):
    detect = DetectCloudsDialog()
    qtbot.addWidget(detect)
    bands = {key: combo.currentBand() for key, combo in detect.bands.items()}
    assert bands == {"BLUE": 2, "GREEN": 3, "RED": 4, "NIR": 8, "SWIR1": 12, "SWIR2": 13}  # by description
    fuse = FuseDatesDialog()
    qtbot.addWidget(fuse)
    assert [t.split()[1] for t in texts(fuse.dates)] == [f"s2_{d}" for d in DATES]
    assert [t.split()[1] for t in texts(fuse.masks)] == [f"clm_{d}" for d in DATES]
    check(fuse.dates, ["s2_20150711", "s2_20150830"])
    assert fuse.bands.count() == 13 and fuse.problem() is None
    register = RegisterDialog()
    qtbot.addWidget(register)
    assert register.reference.count() == 10 and register.reference_band.count() == 13
    train = TrainModelDialog()
    qtbot.addWidget(train)
    assert train.clear.currentLayer().name() == "s2_20150711" and train.bands.count() == 13
    train.kind.setCurrentIndex(2)
    assert train.algorithm_id == "cloudfree:trainfusion" and len(texts(train.fusion_dates)) == 5


# ---------------------------------------------------------------------------------------------- runs


def test_remove_clouds_runs_and_shows_the_result_with_the_inputs_stretch(qtbot, copies, tmp_path):
    load(copies)
    dialog = RemoveCloudsDialog()
    qtbot.addWidget(dialog)
    dialog.input.setLayer(by_name("s2_20150731"))  # overcast: every pixel comes from the guides
    check(dialog.guides, ["s2_20150711", "s2_20150830"])
    check(dialog.guide_masks, ["clm_20150711", "clm_20150830"])
    out = tmp_path / "cloud_free.tif"
    dialog.output.set_path(str(out))
    assert run_dialog(qtbot, dialog), dialog.log.toPlainText()
    assert out.exists() and "written to cloud_free.tif" in bar_text(dialog)
    assert f"written to {out}" in dialog.log.toPlainText()  # the full path
    assert "Guide 's2_20150711'" in dialog.log.toPlainText() and dialog.progress.value() == 100
    source, result = by_name("s2_20150731"), by_name("s2_20150731 cloud-free")
    assert result.renderer().type() == "multibandcolor" and source.renderer().type() == "multibandcolor"
    assert (result.renderer().redBand(), result.renderer().greenBand(), result.renderer().blueBand()) == (3, 2, 1)
    assert (source.renderer().redBand(), source.renderer().greenBand(), source.renderer().blueBand()) == (4, 3, 2)
    for colour in ("red", "green", "blue"):
        mine = getattr(result.renderer(), f"{colour}ContrastEnhancement")()
        theirs = getattr(source.renderer(), f"{colour}ContrastEnhancement")()
        assert (mine.minimumValue(), mine.maximumValue()) == (theirs.minimumValue(), theirs.maximumValue())
        assert mine.maximumValue() > mine.minimumValue()
    provenance = by_name("s2_20150731 provenance")         # on by default: where each pixel came from
    assert provenance.renderer().type() == "paletted"
    labels = [c.label for c in provenance.renderer().classes()]
    assert any("s2_20150711 (2015-07-11)" in label for label in labels)
    assert by_name("s2_20150731 predicted error").renderer().type() == "singlebandpseudocolor"


def test_cancel_leaves_no_output_and_no_layer(qtbot, project, tmp_path):
    source = need(STACK) / "s2_20150731.tif"
    big = copy_to(tmp_path, source, width=1600, height=1600, bandList=[2, 3, 4, 8])  # a run of several seconds
    mask = copy_to(tmp_path, STACK / "clm_20150731.tif", width=1600, height=1600)
    load([big, mask])
    dialog = RemoveCloudsDialog()
    qtbot.addWidget(dialog)
    dialog.input.setLayer(by_name("s2_20150731"))
    dialog.cloud_mask.setLayer(by_name("clm_20150731"))
    dialog.mask_values.set_layer(by_name("clm_20150731"))
    out = tmp_path / "cancelled.tif"
    dialog.output.set_path(str(out))
    layers_before = set(project.mapLayers())
    with qtbot.waitSignal(dialog.finished_run, timeout=120_000) as blocker:
        dialog.run_button.click()
        qtbot.waitUntil(lambda: dialog.progress.value() > 0 or not dialog.running(), timeout=60_000)
        assert dialog.running(), "the run ended before it could be cancelled"
        dialog.cancel_button.click()
    assert blocker.args == [False]
    assert bar_text(dialog).startswith("Cancelled") and not dialog.running() and dialog.run_button.isEnabled()
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith("cancelled")]
    assert set(project.mapLayers()) == layers_before


def test_detect_clouds_adds_a_paletted_mask(qtbot, copies, tmp_path):
    load(copies)
    dialog = DetectCloudsDialog()
    qtbot.addWidget(dialog)
    dialog.input.setLayer(by_name("s2_20150820"))
    dialog.output.set_path(str(tmp_path / "mask.tif"))
    assert run_dialog(qtbot, dialog), dialog.log.toPlainText()
    layer = by_name("s2_20150820 cloud mask")
    assert layer.renderer().type() == "paletted"
    assert {c.value: c.label for c in layer.renderer().classes()}[1] == "cloud"
    assert "% of valid pixels" in bar_text(dialog)


def test_fuse_dates_adds_the_image_and_its_weight_maps(qtbot, copies, tmp_path):
    load(copies)
    dialog = FuseDatesDialog()
    qtbot.addWidget(dialog)
    names = ["s2_20150711", "s2_20150731", "s2_20150830"]
    check(dialog.dates, names)
    check(dialog.masks, [n.replace("s2", "clm") for n in names])
    assert checked(dialog.mask_values) == ["1 cloud"]
    for i in range(dialog.bands.count()):
        dialog.bands.item(i).setCheckState(Qt.Checked if i + 1 in (2, 3, 4, 8) else Qt.Unchecked)
    dialog.output.set_path(str(tmp_path / "fused.tif"))
    assert run_dialog(qtbot, dialog), dialog.log.toPlainText()
    fused, weights = by_name("fused"), by_name("fusion weights (band n = date n)")
    assert fused.renderer().type() == "multibandcolor" and fused.renderer().redBand() == 3
    first = by_name("s2_20150711").renderer().redContrastEnhancement()
    assert fused.renderer().redContrastEnhancement().maximumValue() == first.maximumValue()
    assert weights.renderer().type() == "singlebandpseudocolor" and weights.bandCount() == 3


def test_register_adds_the_raster_and_tie_points_by_residual(qtbot, project, tmp_path):
    reference, sensed = load(registration_crops(tmp_path))
    dialog = RegisterDialog()
    qtbot.addWidget(dialog)
    dialog.reference.setLayer(reference)
    dialog.sensed.setLayer(sensed)
    dialog.output.set_path(str(tmp_path / "registered.tif"))
    dialog.tiepoints.set_path(str(tmp_path / "tiepoints.gpkg"))
    assert run_dialog(qtbot, dialog), dialog.log.toPlainText()
    points = by_name("tie points (residual, px)")
    assert points.featureCount() > 0 and points.renderer().type() == "graduatedSymbol"
    assert points.renderer().classAttribute() == "residual" and len(points.renderer().ranges()) >= 2
    assert by_name(f"{sensed.name()} registered").renderer().type() == "singlebandgray"
    assert "correct correspondences" in bar_text(dialog)


def test_train_dialog_trains_a_cloud_removal_model(qtbot, copies, tmp_path):
    load(copies)
    dialog = TrainModelDialog()
    qtbot.addWidget(dialog)
    dialog.clear.setLayer(by_name("s2_20150711"))
    for i in range(dialog.bands.count()):
        dialog.bands.item(i).setCheckState(Qt.Checked if i + 1 in (2, 3, 4, 8) else Qt.Unchecked)
    dialog.steps.setValue(3)
    model = tmp_path / "mine.safetensors"
    dialog.output.set_path(str(model))
    assert run_dialog(qtbot, dialog), dialog.log.toPlainText()
    assert model.exists() and model_metadata(str(model))["task"] == "cloud_removal"
    assert "mine.safetensors" in bar_text(dialog) and "report" in bar_text(dialog)
    assert f"model written to {model}" in dialog.log.toPlainText()


def test_problems_are_said_before_running(qtbot, stack):
    dialog = FuseDatesDialog()
    qtbot.addWidget(dialog)
    dialog.run_button.click()
    assert not dialog.running() and "at least 2 dates" in bar_text(dialog)


# ---------------------------------------------------------------------------------------------- wiring


def test_open_in_processing_prefills_the_algorithm_dialog(qtbot, stack, qgis_iface, monkeypatch):
    from qgis.gui import QgsBrowserGuiModel

    model = QgsBrowserGuiModel()  # pytest-qgis's iface lacks the browser model the file pickers use
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: model, raising=False)
    dialog = RemoveCloudsDialog()
    qtbot.addWidget(dialog)
    dialog.processing_button.click()
    opened = dialog.processing_dialog
    assert opened is not None and opened.isVisible()
    values = opened.mainWidget().createProcessingParameters()
    assert values["INPUT"] == by_name("s2_20150711").id() and values["BANDS"] in ([2, 3, 4, 8], "2,3,4,8")
    opened.close()


def test_menu_opens_the_workflow_dialogs(qtbot, stack, qgis_iface):
    actions = {a.objectName(): a for a in build_actions(qgis_iface, qgis_iface.mainWindow())}
    assert list(actions) == [a for a, _ in ENTRIES]
    for algorithm_id, dialog_class in workflow_dialogs().items():
        actions[algorithm_id].trigger()
        assert isinstance(actions[algorithm_id].dialog, dialog_class) and actions[algorithm_id].dialog.isVisible()
        actions[algorithm_id].dialog.close()
    assert set(workflow_dialogs()) == {d.ALGORITHM for d in DIALOGS}
    assert getattr(actions["cloudfree:segment"], "dialog", None) is None  # the others keep Processing's dialog


def test_styles_read_bands_by_description(stack):
    assert styles.colour_bands(by_name("s2_20150711")) == (4, 3, 2)
    assert styles.find_roles(by_name("s2_20150711"))["swir1"] == 12
