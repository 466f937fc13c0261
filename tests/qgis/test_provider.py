"""The plugin shell: provider, algorithm listing, lifecycle, menu (pytest-qgis)."""

from qgis.core import QgsApplication

import cloudfree
from cloudfree.plugin import CloudFreePlugin

from cloudfree.ui.menu import ENTRIES

EXPECTED = {algorithm_id for algorithm_id, _ in ENTRIES}


def test_provider_lists_its_algorithms(provider):
    assert provider.id() == "cloudfree" and provider.name() == "CloudFree"
    ids = {alg.id() for alg in provider.algorithms()}
    assert EXPECTED <= ids
    for alg in provider.algorithms():
        assert alg.shortHelpString() and alg.displayName() and alg.group()


def test_load_algorithms_creates_new_instances(provider):
    for alg in provider.algorithms():
        alg.stale_marker = True  # a Python attribute on this very instance
    provider.refreshAlgorithms()
    assert EXPECTED <= {alg.id() for alg in provider.algorithms()}
    assert not any(hasattr(alg, "stale_marker") for alg in provider.algorithms())
    alg = QgsApplication.processingRegistry().algorithmById("cloudfree:simulateclouds")
    assert alg.create() is not alg


def test_plugin_lifecycle_registers_and_removes_everything(qgis_iface, provider, monkeypatch, reregister):
    registry = QgsApplication.processingRegistry()
    registry.removeProvider(provider)  # start from a QGIS without CloudFree
    menu = []
    monkeypatch.setattr(qgis_iface, "addPluginToRasterMenu", lambda name, a: menu.append(a), raising=False)
    monkeypatch.setattr(qgis_iface, "removePluginRasterMenu", lambda name, a: menu.remove(a), raising=False)
    try:
        plugin = cloudfree.classFactory(qgis_iface)
        assert isinstance(plugin, CloudFreePlugin)
        plugin.initProcessing()
        plugin.initGui()  # calls initProcessing again: must not register twice
        assert registry.providerById("cloudfree") is not None
        assert {a.objectName() for a in menu} == EXPECTED | {"cloudfree:dependencies"}
        plugin.unload()
        assert registry.providerById("cloudfree") is None
        assert menu == []
    finally:
        reregister()


def test_missing_dependency_is_reported_with_install_command(provider, monkeypatch):
    from cloudfree.processing_provider import base

    monkeypatch.setattr(base, "missing_packages", lambda names: ["torch"])
    alg = QgsApplication.processingRegistry().algorithmById("cloudfree:comparerasters").create()
    assert "pip install" in alg.shortHelpString()
    import pytest
    from qgis.core import QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

    with pytest.raises(QgsProcessingException, match=r"torch.*pip install"):
        alg.processAlgorithm({}, QgsProcessingContext(), QgsProcessingFeedback())
