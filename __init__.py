"""CloudFree QGIS plugin: cloud-free Sentinel-2 imagery with deep learning.

QGIS calls :func:`classFactory`. Nothing heavy is imported here so the engine
(``cloudfree.models``) can be used without QGIS, and the plugin loads even when
torch is missing (each algorithm then explains how to install it).
"""

__version__ = "0.1.0"


def classFactory(iface):  # noqa: N802 (name required by QGIS)
    from .dependencies import add_target_to_path

    add_target_to_path()  # packages the dependencies dialog installed, before anything imports torch
    from .plugin import CloudFreePlugin

    return CloudFreePlugin(iface)
