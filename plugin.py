"""Plugin lifecycle only: register the Processing provider, add a menu, clean up on unload."""

from __future__ import annotations

import os

from qgis.core import QgsApplication

from .processing_provider.provider import CloudFreeProvider

MENU = "&CloudFree"


class CloudFreePlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions = []

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        """Called by QGIS (also by qgis_process, which has no GUI) before initGui."""
        if self.provider is None:
            self.provider = CloudFreeProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()
        from .ui.dependencies_dialog import dependencies_action
        from .ui.menu import build_actions

        self.actions = build_actions(self.iface, self.iface.mainWindow())
        self.actions.append(dependencies_action(self.iface.mainWindow()))
        for action in self.actions:
            self.iface.addPluginToRasterMenu(MENU, action)

    def unload(self):
        for action in self.actions:
            self.iface.removePluginRasterMenu(MENU, action)
            if getattr(action, "dialog", None) is not None:  # a workflow dialog the action opened
                action.dialog.close()
                action.dialog.deleteLater()
            action.deleteLater()
        self.actions = []
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None


def plugin_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__))
