"""scripts/qgis_process: the plugin runs headless, as in a batch job or on a server."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

ROOT = Path(__file__).resolve().parents[2]


def qgis_process(*args, timeout=300):
    proc = subprocess.run([str(ROOT / "scripts" / "qgis_process"), *args], capture_output=True, text=True,
                          timeout=timeout)
    return proc


def test_provider_is_listed_headless():
    proc = qgis_process("list")
    assert proc.returncode == 0, proc.stderr
    assert "cloudfree:comparerasters" in proc.stdout and "cloudfree:simulateclouds" in proc.stdout


def test_comparerasters_headless_on_real_data(shared_data, tmp_path):
    pair = shared_data / "s2_cloud_pair"
    report = tmp_path / "report.json"
    sidecars_before = set(pair.glob("*.aux.xml"))
    proc = qgis_process("--json", "run", "cloudfree:comparerasters", "--",
                        f"INPUT={pair / 'cloudy.tif'}", f"REFERENCE={pair / 'clean.tif'}",
                        f"MASK={pair / 'mask.tif'}", "MASK_VALUES=1", "BANDS=2,3,4,8", f"OUTPUT_REPORT={report}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(pair.glob("*.aux.xml")) == sidecars_before  # inputs untouched: no new statistics sidecars
    results = json.loads(proc.stdout)["results"]
    a = gdal.Open(str(pair / "cloudy.tif")).ReadAsArray()[[1, 2, 3, 7]].astype(np.float64)
    b = gdal.Open(str(pair / "clean.tif")).ReadAsArray()[[1, 2, 3, 7]].astype(np.float64)
    cloud = gdal.Open(str(pair / "mask.tif")).ReadAsArray() == 1
    assert results["MAE"] == pytest.approx(np.abs(a - b)[:, cloud].mean(), rel=1e-6)
    assert json.loads(report.read_text())["n_pixels"] == int(cloud.sum())


def test_simulateclouds_headless_returns_numbers(shared_data, tmp_path):
    proc = qgis_process("--json", "run", "cloudfree:simulateclouds", "--",
                        f"INPUT={shared_data / 's2_cloudy_scene' / 'scene.tif'}", "SEED=3", "COVERAGE=0.4",
                        f"OUTPUT={tmp_path / 'c.tif'}", f"OUTPUT_MASK={tmp_path / 'm.tif'}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert 0.3 < float(results["CLOUD_FRACTION"]) < 0.5
    mask = gdal.Open(str(tmp_path / "m.tif")).ReadAsArray()
    assert float(results["CLOUD_FRACTION"]) == pytest.approx((mask == 1).mean(), abs=1e-6)
