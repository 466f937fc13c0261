"""Both foundation algorithms through processing.run on real Sentinel-2 data, and bad inputs."""

import hashlib
import json
import os

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException

from cloudfree.models import raster



def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture()
def pair(shared_data):
    return shared_data / "s2_cloud_pair"


def test_simulateclouds_on_real_scene(run_alg, tmp_path, pair):
    src = str(pair / "clean.tif")
    before = digest(src)
    result = run_alg("cloudfree:simulateclouds", {
        "INPUT": src, "SEED": 7, "COVERAGE": 0.3, "THICKNESS": 0.8, "SHADOWS": True, "MISSING_DATA": 0.05,
        "OUTPUT": str(tmp_path / "cloudy.tif"), "OUTPUT_MASK": str(tmp_path / "mask.tif")})
    assert digest(src) == before  # input untouched
    out, mask = raster.raster_info(result["OUTPUT"]), raster.raster_info(result["OUTPUT_MASK"])
    inp = raster.raster_info(src)
    assert (out.width, out.height, out.band_count, out.dtype) == (inp.width, inp.height, 12, "float32")
    assert out.geotransform == inp.geotransform and out.crs_label() == "EPSG:4326"
    m = gdal.Open(result["OUTPUT_MASK"]).ReadAsArray()
    assert mask.dtype == "uint8" and set(np.unique(m)) <= {0, 1, 2, 3}
    assert abs((m == 1).mean() - result["CLOUD_FRACTION"]) < 1e-6
    assert 0.2 < result["CLOUD_FRACTION"] < 0.4
    assert result["SHADOW_FRACTION"] > 0 and result["MISSING_FRACTION"] > 0.02


def test_comparerasters_on_real_pair(run_alg, tmp_path, pair):
    report_path = tmp_path / "report.json"
    result = run_alg("cloudfree:comparerasters", {
        "INPUT": str(pair / "cloudy.tif"), "REFERENCE": str(pair / "clean.tif"), "MASK": str(pair / "mask.tif"),
        "MASK_VALUES": "0", "BANDS": "2,3,4,8", "DATA_RANGE": 0, "OUTPUT_REPORT": str(report_path)})
    # independent check of MAE and RMSE over clear pixels
    a = gdal.Open(str(pair / "cloudy.tif")).ReadAsArray()[[1, 2, 3, 7]].astype(np.float64)
    b = gdal.Open(str(pair / "clean.tif")).ReadAsArray()[[1, 2, 3, 7]].astype(np.float64)
    sel = gdal.Open(str(pair / "mask.tif")).ReadAsArray() == 0
    diff = (a - b)[:, sel]
    assert result["MAE"] == pytest.approx(np.abs(diff).mean(), rel=1e-6)
    assert result["RMSE"] == pytest.approx(np.sqrt((diff ** 2).mean()), rel=1e-6)
    report = json.loads(report_path.read_text())
    assert report["n_pixels"] == int(sel.sum())
    assert [e["band"] for e in report["per_band"]] == [2, 3, 4, 8]
    assert 0 < result["SSIM"] < 1 and result["SAM"] > 0 and np.isfinite(result["PSNR"])


def test_different_grids_give_a_clear_error_and_no_output(run_alg, tmp_path, pair, shared_data):
    report_path = tmp_path / "report.json"
    with pytest.raises(QgsProcessingException, match="grid"):
        run_alg("cloudfree:comparerasters", {
            "INPUT": str(pair / "clean.tif"), "BANDS": "1",
            "REFERENCE": str(shared_data / "s2_registration_pair" / "reference_20160608.tif"),
            "OUTPUT_REPORT": str(report_path)})
    assert not report_path.exists()


def test_wrong_band_index_gives_a_clear_error_and_no_output(run_alg, tmp_path, pair):
    report_path = tmp_path / "report.json"
    with pytest.raises(QgsProcessingException, match=r"band number\(s\) \[99\] do not exist"):
        run_alg("cloudfree:comparerasters", {
            "INPUT": str(pair / "cloudy.tif"), "REFERENCE": str(pair / "clean.tif"), "BANDS": "2,99",
            "OUTPUT_REPORT": str(report_path)})
    assert os.listdir(tmp_path) == []


def test_missing_file_gives_a_clear_error_and_no_output(run_alg, tmp_path, pair):
    with pytest.raises(QgsProcessingException):
        run_alg("cloudfree:simulateclouds", {
            "INPUT": str(tmp_path / "does_not_exist.tif"),
            "OUTPUT": str(tmp_path / "o.tif"), "OUTPUT_MASK": str(tmp_path / "m.tif")})
    assert os.listdir(tmp_path) == []


def test_cancelled_run_leaves_no_output(provider, tmp_path, pair):
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    feedback.cancel()
    alg = QgsApplication.processingRegistry().algorithmById("cloudfree:simulateclouds").create()
    alg.initAlgorithm()
    params = {"INPUT": str(pair / "clean.tif"), "SEED": 1, "COVERAGE": 0.3, "THICKNESS": 0.5, "SHADOWS": True,
              "MISSING_DATA": 0.0, "OUTPUT": str(tmp_path / "o.tif"), "OUTPUT_MASK": str(tmp_path / "m.tif")}
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        alg.processAlgorithm(params, QgsProcessingContext(), feedback)
    assert os.listdir(tmp_path) == []
