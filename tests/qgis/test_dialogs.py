"""The menu's dialogs open for every algorithm and can be rendered (what a user sees)."""

import os

import pytest

from cloudfree.ui.menu import ENTRIES, build_actions


@pytest.mark.parametrize("algorithm_id", [a for a, _ in ENTRIES])
def test_algorithm_dialog_renders(qgis_iface, provider, algorithm_id, tmp_path, monkeypatch):
    import processing
    from qgis.gui import QgsBrowserGuiModel

    # pytest-qgis's stand-in iface lacks the browser model that the dialog's file pickers use
    model = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: model, raising=False)

    dialog = processing.createAlgorithmDialog(algorithm_id)
    assert dialog is not None
    dialog.resize(900, 640)
    dialog.show()
    png = tmp_path / (algorithm_id.replace(":", "_") + ".png")
    assert dialog.grab().save(str(png))
    assert png.stat().st_size > 5000
    if os.environ.get("CLOUDFREE_SCREENSHOTS"):  # keep a copy to look at
        dialog.grab().save(os.path.join(os.environ["CLOUDFREE_SCREENSHOTS"], png.name))
    dialog.close()


def test_menu_has_one_action_per_algorithm(qgis_iface, provider):
    actions = build_actions(qgis_iface, qgis_iface.mainWindow())
    assert [a.objectName() for a in actions] == [a for a, _ in ENTRIES]
    assert all(a.text().endswith("…") for a in actions)
