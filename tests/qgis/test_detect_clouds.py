"""cloudfree:detectclouds through processing.run and headless qgis_process, and without its packages."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsApplication, QgsProcessingException

ROOT = Path(__file__).resolve().parents[2]
LANDSAT_L1 = 4  # SCALING choice: Landsat 8/9 Level-1 (DN x 2e-5 - 0.1)


@pytest.fixture(scope="session")
def l8(shared_data):
    return shared_data / "l8_cloud_labels"


def read(path):
    return gdal.Open(str(path)).ReadAsArray()


def test_detectclouds_writes_a_styled_mask_and_fractions(run_alg, l8, tmp_path):
    out = tmp_path / "mask.tif"
    result = run_alg("cloudfree:detectclouds", {"INPUT": str(l8 / "bgrn.tif"), "BLUE": 1, "GREEN": 2, "RED": 3,
                                                "NIR": 4, "SCALING": LANDSAT_L1, "DILATION": 2,
                                                "OUTPUT": str(out)})
    mask = read(result["OUTPUT"])
    assert mask.shape == (384, 384) and set(np.unique(mask)) <= {0, 1, 2}
    assert result["CLOUD_FRACTION"] == pytest.approx((mask == 1).mean())
    assert result["SHADOW_FRACTION"] == pytest.approx((mask == 2).mean())
    truth = read(l8 / "cloud_mask.tif") == 1
    assert ((mask == 1) & truth).sum() / ((mask == 1) | truth).sum() > 0.8
    ds = gdal.Open(str(out))
    assert ds.GetRasterBand(1).GetColorTable() is not None and ds.GetRasterBand(1).GetNoDataValue() == 255


def test_bad_input_gets_a_clear_message_and_no_output(run_alg, l8, tmp_path):
    three = tmp_path / "three_bands.tif"
    gdal.Translate(str(three), str(l8 / "bgrn.tif"), bandList=[1, 2, 3])
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a model" * 10)
    cases = [({"INPUT": str(three), "SCALING": LANDSAT_L1}, r"three_bands.*3 band\(s\)"),
             ({"INPUT": str(l8 / "bgrn.tif"), "SCALING": 0}, "digital numbers"),
             ({"INPUT": str(l8 / "bgrn.tif"), "SCALING": 5, "GAIN": 0}, "gain"),
             ({"INPUT": str(l8 / "bgrn.tif"), "SCALING": LANDSAT_L1, "SWIR1": 4}, "SWIR1 and SWIR2"),
             ({"INPUT": str(l8 / "bgrn.tif"), "MODEL": str(corrupt)}, "corrupt.safetensors.*corrupt")]
    for params, message in cases:
        out = tmp_path / "mask.tif"
        with pytest.raises(QgsProcessingException, match=message):
            run_alg("cloudfree:detectclouds", {**params, "OUTPUT": str(out)})
        assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["corrupt.safetensors", "three_bands.tif"]


def test_detectclouds_headless(l8, tmp_path):
    out = tmp_path / "mask.tif"
    proc = subprocess.run([str(ROOT / "scripts" / "qgis_process"), "--json", "run", "cloudfree:detectclouds", "--",
                           f"INPUT={l8 / 'bgrn.tif'}", f"SCALING={LANDSAT_L1}", "DILATION=3", f"OUTPUT={out}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads(proc.stdout)["results"]
    mask = read(out)
    assert float(results["CLOUD_FRACTION"]) == pytest.approx((mask == 1).mean())
    assert 0.2 < float(results["CLOUD_FRACTION"]) < 0.5
    assert not list(l8.glob("*.aux.xml"))


def test_help_documents_every_parameter_and_says_how_to_install(provider, monkeypatch):
    from cloudfree.processing_provider import base

    alg = QgsApplication.processingRegistry().algorithmById("cloudfree:detectclouds").create()
    help_text = alg.shortHelpString().lower()
    for word in ("blue", "swir1", "product level", "scaling", "gain", "offset", "dilation", "tile size",
                 "overlap", "device", "cloud fraction", "shadow fraction", "remove clouds"):
        assert word in help_text, word
    monkeypatch.setattr(base, "missing_packages", lambda names: ["onnxruntime", "ukis_csmask"])
    assert 'pip install --user "onnxruntime" "ukis-csmask==1.0.0"' in alg.shortHelpString()


def test_plugin_loads_without_ukis_csmask_and_onnxruntime():
    """A QGIS Python without the detector's packages: the provider loads, the help says how to install them."""
    script = f"""
import sys, importlib.machinery
finder = importlib.machinery.PathFinder.find_spec  # hide the two packages as if they were not installed
importlib.machinery.PathFinder.find_spec = classmethod(
    lambda cls, name, path=None, target=None:
    None if name.split(".")[0] in ("ukis_csmask", "onnxruntime") else finder(name, path, target))
sys.path.insert(0, {str(ROOT / "scripts")!r})
import cloudfree_import
from qgis.core import QgsApplication
app = QgsApplication([], False)
app.initQgis()
from cloudfree.processing_provider.provider import CloudFreeProvider
from cloudfree.processing_provider.detect_clouds import DetectCloudsAlgorithm
alg = DetectCloudsAlgorithm()
alg.initAlgorithm()
assert CloudFreeProvider().id() == "cloudfree"
print("HELP", alg.shortHelpString()[:400])
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Not ready" in proc.stdout and "ukis-csmask==1.0.0" in proc.stdout
