"""The dialog's widgets: band pickers list the layer's bands, the model picker lists the shipped models with their
metadata, "Read values from mask" fills a checkable list, and the modeler keeps QGIS's own widgets."""

import numpy as np
import pytest
from qgis.core import QgsProcessingContext, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import Qt

from test_parameters import write


@pytest.fixture()
def dialog_for(qgis_iface, provider, monkeypatch):
    import processing
    from qgis.gui import QgsBrowserGuiModel

    model = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: model, raising=False)
    opened = []

    def open_dialog(algorithm_id):
        dialog = processing.createAlgorithmDialog(algorithm_id)
        opened.append(dialog)
        return dialog, dialog.mainWidget().wrappers

    yield open_dialog
    for dialog in opened:
        dialog.close()
    QgsProject.instance().removeAllMapLayers()


def test_model_picker_lists_the_shipped_models_with_their_metadata(dialog_for):
    from cloudfree.processing_provider.widgets import ModelWidgetWrapper

    _, wrappers = dialog_for("cloudfree:removeclouds")
    picker = wrappers["MODEL"]
    assert isinstance(picker, ModelWidgetWrapper)
    names = [picker.combo.itemData(i) for i in range(picker.combo.count())]
    assert names == ["", "cloud_removal_guided_optical", "cloud_removal_guided_radar", "cloud_removal_s2_s1",
                     "cloud_removal_small"]
    picker.setValue("cloud_removal_small")
    assert picker.value() == "cloud_removal_small" and "Held-out figures" in picker.summary.text()
    picker.setValue("/some/where/own.safetensors")
    assert picker.value() == "/some/where/own.safetensors"
    assert wrappers["MODEL"].parameterValue() == "/some/where/own.safetensors"


def test_read_values_from_mask_fills_a_checkable_list(dialog_for, tmp_path):
    mask = np.zeros((20, 20), np.uint8)
    mask[2:5, 2:5], mask[10:12, 10:12] = 1, 4
    layer = QgsRasterLayer(write(tmp_path / "mask.tif", mask), "mask")
    QgsProject.instance().addMapLayer(layer)
    _, wrappers = dialog_for("cloudfree:removeclouds")
    wrappers["MASK"].setParameterValue(layer, QgsProcessingContext())
    values = wrappers["MASK_VALUES"]
    values.setValue("1")
    values.read_values()
    items = [values.values.item(i) for i in range(values.values.count())]
    assert [i.data(Qt.UserRole) for i in items] == [0, 1, 4]
    assert [i.checkState() == Qt.Checked for i in items] == [False, True, False]
    items[2].setCheckState(Qt.Checked)
    assert values.value() == "1,4"


def test_band_picker_lists_the_bands_of_the_chosen_layer(dialog_for, tmp_path):
    layer = QgsRasterLayer(write(tmp_path / "image.tif", np.zeros((4, 8, 8), np.float32)), "image")
    QgsProject.instance().addMapLayer(layer)
    _, wrappers = dialog_for("cloudfree:comparerasters")
    assert wrappers["BANDS"].parameterDefinition().type() == "band"
    wrappers["INPUT"].setParameterValue(layer, QgsProcessingContext())
    wrappers["BANDS"].setParameterValue([4, 3], QgsProcessingContext())
    assert wrappers["BANDS"].parameterValue() == [4, 3]


def test_the_modeler_keeps_qgis_widgets_for_models_and_values(qgis_iface, provider):
    from processing.modeler.ModelerParametersDialog import ModelerParametersDialog
    from qgis.core import QgsApplication, QgsProcessingModelAlgorithm
    from qgis.gui import QgsProcessingModelerParameterWidget

    alg = QgsApplication.processingRegistry().algorithmById("cloudfree:removeclouds")
    dialog = ModelerParametersDialog(alg, QgsProcessingModelAlgorithm("m", "g"))
    wrappers = dialog.widget.widget.wrappers
    for name in ("MODEL", "MASK_VALUES", "BANDS"):
        assert isinstance(wrappers[name], QgsProcessingModelerParameterWidget), name
    dialog.close()
