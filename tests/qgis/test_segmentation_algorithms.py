"""cloudfree:trainsegmentation, segment, regions, autocluster and comparerasters CLASSES=true on real NDVI dates."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal, ogr
from qgis.core import QgsProcessingException

ROOT = Path(__file__).resolve().parents[2]
DATES = ["20160605T100650", "20160615T100608", "20160625T100617"]


@pytest.fixture()
def data(shared_data):
    d = shared_data / "s2_ndvi_timeseries"
    return [str(d / "ndvi" / f"ndvi_{t}.tif") for t in DATES], str(d / "landcover.tif")


@pytest.fixture()
def model(run_alg, data, tmp_path):
    dates, labels = data
    result = run_alg("cloudfree:trainsegmentation", {
        "INPUT": dates, "LABELS": labels, "IGNORE_VALUE": "0", "TILE_SIZE": 48, "EPOCHS": 3, "STEPS_PER_EPOCH": 2,
        "DEPTH": 2, "WIDTH": 8, "DEVICE": 1, "OUTPUT_MODEL": str(tmp_path / "seg"),
        "OUTPUT_REPORT": str(tmp_path / "report.html")})
    assert result["OUTPUT_MODEL"].endswith(".safetensors") and 0 <= result["MEAN_DICE"] <= 1
    assert "Held-out scores per class" in Path(result["OUTPUT_REPORT"]).read_text()
    return result["OUTPUT_MODEL"]


def test_segment_regions_and_class_comparison(run_alg, data, model, tmp_path):
    dates, labels = data
    seg = run_alg("cloudfree:segment", {"INPUT": dates, "MODEL": model, "OUTPUT": str(tmp_path / "classes.tif"),
                                        "OUTPUT_PROBABILITIES": str(tmp_path / "p.tif"), "DEVICE": 1})
    ds = gdal.Open(seg["OUTPUT"])
    assert ds.GetRasterBand(1).GetColorTable() is not None and gdal.Open(seg["OUTPUT_PROBABILITIES"]).RasterCount == 5
    classes = ds.ReadAsArray()
    value = int(np.bincount(classes.ravel()).argmax())
    reg = run_alg("cloudfree:regions", {"INPUT": seg["OUTPUT"], "CLASSES": str(value), "MIN_AREA": 0,
                                        "OUTPUT": str(tmp_path / "regions.gpkg")})
    vector = ogr.Open(reg["OUTPUT"])
    areas = [f.GetField("area") for f in vector.GetLayer(0)]
    assert reg["REGION_COUNT"] == len(areas) >= 1
    gt = ds.GetGeoTransform()
    assert sum(areas) == pytest.approx((classes == value).sum() * abs(gt[1] * gt[5]))
    cmp = run_alg("cloudfree:comparerasters", {"INPUT": seg["OUTPUT"], "REFERENCE": labels, "CLASSES": True,
                                               "OUTPUT_REPORT": str(tmp_path / "cmp.json")})
    truth = gdal.Open(labels).ReadAsArray()
    assert cmp["OVERALL_ACCURACY"] == pytest.approx((truth == classes).mean())
    report = json.loads(Path(cmp["OUTPUT_REPORT"]).read_text())
    assert np.array(report["confusion_matrix"]["counts"]).sum() == classes.size and report["per_class"]


def test_segment_bad_model_and_band_count_leave_no_output(run_alg, data, model, tmp_path):
    dates, _ = data
    out = tmp_path / "c.tif"
    with pytest.raises(QgsProcessingException, match="expects 3 band"):
        run_alg("cloudfree:segment", {"INPUT": dates[:2], "MODEL": model, "OUTPUT": str(out)})
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"not a model")
    with pytest.raises(QgsProcessingException, match="corrupt"):
        run_alg("cloudfree:segment", {"INPUT": dates, "MODEL": str(corrupt), "OUTPUT": str(out)})
    assert not out.exists()


def test_autocluster_writes_classes_and_centroids(run_alg, data, tmp_path):
    dates, _ = data
    result = run_alg("cloudfree:autocluster", {"INPUT": dates[0], "MIN_SIZE": 200, "SMOOTH": 3,
                                               "OUTPUT": str(tmp_path / "k.tif"), "OUTPUT_CENTROIDS": str(tmp_path / "k.json")})
    saved = json.loads(Path(result["OUTPUT_CENTROIDS"]).read_text())
    assert result["CLASS_COUNT"] == saved["k"] == len(saved["classes"]) >= 2
    assert set(np.unique(gdal.Open(result["OUTPUT"]).ReadAsArray())) <= set(range(1, saved["k"] + 1))


def test_segment_headless(data, model, tmp_path):
    dates, _ = data
    out = tmp_path / "headless.tif"
    proc = subprocess.run([str(ROOT / "scripts" / "qgis_process"), "--json", "run", "cloudfree:segment", "--",
                           *[f"INPUT={d}" for d in dates], f"MODEL={model}", "TILE_SIZE=64", "OVERLAP=16",
                           f"OUTPUT={out}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["results"]["OUTPUT"] == str(out)
    written = gdal.Open(str(out))
    assert written.GetRasterBand(1).GetColorTable() is not None
