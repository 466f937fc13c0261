"""The CloudFree dependencies dialog and cloudfree:checkdependencies (pytest-qgis): the table of packages, a real
one-click install through the dialog's QProcess, cancelling it, and the Processing check that never installs."""

import importlib.util
import json
import os

import numpy
import pytest
from qgis.PyQt.QtCore import QProcess

from cloudfree import dependencies
from cloudfree.dependencies import Package
from cloudfree.ui.dependencies_dialog import COLUMNS, DependenciesDialog, dependencies_action

SMALL = Package("tomli-w", "tomli_w", "a 10 kB test package")
OFFLINE = ("No matching distribution", "NewConnectionError", "Could not fetch URL", "Network is unreachable")


def rows(dialog) -> dict:
    table = dialog.table
    return {table.item(r, 0).text(): [table.item(r, c).text() for c in range(len(COLUMNS))]
            for r in range(table.rowCount())}


@pytest.fixture()
def with_small_package(monkeypatch):
    """The table plus tomli-w, which this Python lacks: something to install."""
    if importlib.util.find_spec("tomli_w") is not None:
        pytest.skip("tomli-w is already installed in this Python")
    monkeypatch.setattr(dependencies, "PACKAGES", dependencies.PACKAGES + (SMALL,))


def test_dialog_lists_every_package_with_its_installed_version(qgis_iface, tmp_path):
    dialog = DependenciesDialog(qgis_iface.mainWindow(), target=tmp_path / "folder")
    table = rows(dialog)
    assert list(table) == [p.name for p in dependencies.PACKAGES]
    for status in dependencies.check(tmp_path / "folder"):
        assert table[status.package.name][3] == (status.version or "—")
        assert table[status.package.name][4] == status.text
    assert table["numpy"][2:5] == [">=1.24,<2", numpy.__version__, "OK"]
    assert table["torch"][2] == "==2.13.0"
    missing = dependencies.to_install(dependencies.check(tmp_path / "folder"))
    assert dialog.install_button.isEnabled() == bool(missing) and not dialog.cancel_button.isEnabled()
    dialog.show()
    png = tmp_path / "dependencies_dialog.png"
    assert dialog.grab().save(str(png)) and png.stat().st_size > 5000
    if os.environ.get("CLOUDFREE_SCREENSHOTS"):
        dialog.grab().save(os.path.join(os.environ["CLOUDFREE_SCREENSHOTS"], png.name))
    dialog.close()


def test_install_button_installs_into_the_folder_and_says_restart(qgis_iface, qtbot, tmp_path, with_small_package):
    folder = tmp_path / "folder"
    dialog = DependenciesDialog(target=folder)
    qtbot.addWidget(dialog)
    assert rows(dialog)["tomli-w"][4] == "missing" and dialog.install_button.isEnabled()
    assert not folder.exists()  # nothing is installed before the click
    dialog.install_button.click()
    assert dialog.cancel_button.isEnabled() and not dialog.close_button.isEnabled()
    qtbot.waitUntil(lambda: dialog.process is None, timeout=120_000)
    log = dialog.log.toPlainText()
    if "Restart QGIS" not in dialog.message.text() and any(s in log for s in OFFLINE):
        pytest.skip("the package registry is unreachable")
    assert dialog.message.text() == "Installed. Restart QGIS to use the new packages.", log
    assert "imported tomli_w" in log and f"--target {folder}" in log
    assert rows(dialog)["tomli-w"][3][0].isdigit() and rows(dialog)["tomli-w"][4] == "restart QGIS"
    assert not dialog.install_button.isEnabled()  # nothing left to install
    if os.environ.get("CLOUDFREE_SCREENSHOTS"):
        dialog.show()
        dialog.grab().save(os.path.join(os.environ["CLOUDFREE_SCREENSHOTS"], "dependencies_dialog_installed.png"))


def test_cancel_kills_pip_and_installs_nothing(qgis_iface, qtbot, tmp_path, with_small_package):
    folder = tmp_path / "folder"
    dialog = DependenciesDialog(target=folder)
    qtbot.addWidget(dialog)
    dialog.install_button.click()
    qtbot.waitUntil(lambda: dialog.process is not None and dialog.process.state() == QProcess.Running, timeout=10_000)
    dialog.cancel_button.click()
    qtbot.waitUntil(lambda: dialog.process is None, timeout=30_000)
    assert dialog.message.text().startswith("Cancelled")
    assert not list(folder.glob("tomli_w*"))
    assert rows(dialog)["tomli-w"][4] == "missing" and dialog.install_button.isEnabled()


def test_a_failed_install_is_said_in_words(qgis_iface, qtbot, tmp_path, monkeypatch):
    unknown = Package("cloudfree-no-such-package", "cloudfree_no_such_package", "a package no registry has")
    monkeypatch.setattr(dependencies, "PACKAGES", dependencies.PACKAGES + (unknown,))
    dialog = DependenciesDialog(target=tmp_path / "folder")
    qtbot.addWidget(dialog)
    dialog.install_button.click()
    qtbot.waitUntil(lambda: dialog.process is None, timeout=120_000)
    message = dialog.message.text()
    assert message.startswith("pip failed (exit code 1): ERROR: ") and "cloudfree-no-such-package" in message
    assert "Restart" not in message and rows(dialog)[unknown.name][4] == "missing"


def test_menu_action_opens_the_dialog(qgis_iface):
    action = dependencies_action(qgis_iface.mainWindow())
    assert action.objectName() == "cloudfree:dependencies" and action.text() == "CloudFree dependencies…"
    action.trigger()
    assert action.dialog.isVisible() and action.dialog.windowTitle() == "CloudFree dependencies"
    action.dialog.close()


def test_checkdependencies_reports_and_never_installs(run_alg, tmp_path, with_small_package):
    folder = tmp_path / "folder"
    result = run_alg("cloudfree:checkdependencies", {"TARGET": str(folder), "OPTIONAL": True, "TORCH": 1})
    installed = json.loads(result["INSTALLED"])
    assert installed["numpy"] == numpy.__version__ and installed["tomli-w"] is None
    assert "tomli-w" in result["MISSING"].split() and result["MISSING_COUNT"] >= 1
    command = result["COMMAND"]
    assert f"-m pip install --target {folder} --only-binary=:all: --no-input -c {folder}-constraints.txt" in command
    assert command.endswith("tomli-w") and "--install" in result["CLI_COMMAND"]
    assert result["FOLDER"] == str(folder) and not folder.exists()  # reported, not installed
    assert f"numpy=={numpy.__version__}" in (tmp_path / "folder-constraints.txt").read_text()
