"""What the workflow dialog tests share: real layers in the project, copies to run on, waiting for a run."""

from __future__ import annotations

from pathlib import Path

import pytest
from osgeo import gdal
from qgis.core import QgsProject, QgsRasterLayer

DATA = (Path(__file__).resolve().parents[2].parent / "shared" / "data").resolve()
STACK = DATA / "s2_multidate_stack"
DATES = ("20150711", "20150731", "20150820", "20150830", "20150909")
REGISTRATION = DATA / "s2_registration_pair"


def need(folder: Path) -> Path:
    if not folder.is_dir():
        pytest.skip(f"the real data {folder} is not here")
    return folder


def load(paths) -> list:
    """Add rasters to the project under their file stems (opened read-only by GDAL)."""
    layers = []
    for path in paths:
        layer = QgsRasterLayer(str(path), Path(path).stem, "gdal")
        assert layer.isValid(), path
        layers.append(layer)
    QgsProject.instance().addMapLayers(layers)
    return layers


def copy_to(folder: Path, source: Path, **options) -> Path:
    """A GeoTIFF copy (or crop, with gdal.Translate's options) of ``source`` in ``folder``, to run on."""
    target = folder / source.name
    assert gdal.Translate(str(target), str(source), **options) is not None
    return target


def stack_paths(folder: Path, dates=DATES) -> list:
    return [folder / f"s2_{d}.tif" for d in dates] + [folder / f"clm_{d}.tif" for d in dates]


def registration_crops(folder: Path, size: int = 300) -> tuple:
    """The same ground window (``size`` pixels) of the real registration pair's reference and target."""
    need(REGISTRATION)
    reference = REGISTRATION / "reference_20160608.tif"
    gt = gdal.Open(str(reference)).GetGeoTransform()
    x0, y0 = gt[0] + 1000 * gt[1], gt[3] + 1200 * gt[5]
    window = [x0, y0, x0 + size * gt[1], y0 + size * gt[5]]
    return (copy_to(folder, reference, projWin=window),
            copy_to(folder, REGISTRATION / "target_20160529.tif", projWin=window))


def by_name(name: str):
    found = QgsProject.instance().mapLayersByName(name)
    assert found, f"no layer '{name}' in the project"
    return found[0]


def run_dialog(qtbot, dialog, timeout: int = 180_000) -> bool:
    """Click Run and process events until the task ends; True when it succeeded."""
    with qtbot.waitSignal(dialog.finished_run, timeout=timeout) as blocker:
        dialog.run_button.click()
        assert dialog.running(), dialog.bar.items()[0].text() if dialog.bar.items() else "the run did not start"
    return blocker.args[0]


def bar_text(dialog) -> str:
    items = dialog.bar.items()
    return items[-1].text() if items else ""
