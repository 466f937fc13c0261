"""cloudfree:register through processing.run and headless qgis_process on the real pair."""

import json
import os
import subprocess
from pathlib import Path

import pytest
from osgeo import gdal, ogr
from qgis.core import QgsProcessingException

from cloudfree.models import raster

ROOT = Path(__file__).resolve().parents[2]


# 1024 x 1024 px of both dates (EPSG:32633): the window the fine-tuning test was measured on
CROP_WINDOW = [341440, 5859490, 351680, 5849250]  # projWin: ulx, uly, lrx, lry


@pytest.fixture()
def pair(shared_data):
    d = shared_data / "s2_registration_pair"
    return d / "reference_20160608.tif", d / "target_20160529.tif"


@pytest.fixture(scope="module")
def cropped_pair(tmp_path_factory, shared_data):
    """Both dates cropped to CROP_WINDOW (values unchanged), outside every test's tmp_path."""
    d = shared_data / "s2_registration_pair"
    out = tmp_path_factory.mktemp("s2_registration_crop")
    crops = []
    for name in ("reference_20160608", "target_20160529"):
        crop = out / f"{name}_crop.tif"
        ds = gdal.Translate(str(crop), str(d / f"{name}.tif"), projWin=CROP_WINDOW)
        assert (ds.RasterXSize, ds.RasterYSize) == (1024, 1024)
        ds = None  # flushed to disk
        crops.append(crop)
    return tuple(crops)


def test_register_real_pair_outputs_on_reference_grid(run_alg, tmp_path, pair):
    ref, target = pair
    result = run_alg("cloudfree:register", {
        "REFERENCE": str(ref), "INPUT": str(target), "TRANSFORM": 2, "METHOD": 1,
        "OUTPUT": str(tmp_path / "registered.tif"), "OUTPUT_TIEPOINTS": str(tmp_path / "tiepoints.gpkg"),
        "OUTPUT_CHECKERBOARD": str(tmp_path / "checker.tif")})
    # the known real misregistration (AROSICS: about -0.6, +1.8 px with its opposite sign convention)
    assert result["SHIFT_X"] == pytest.approx(0.6, abs=0.2) and result["SHIFT_Y"] == pytest.approx(-1.8, abs=0.2)
    assert result["RMS_ALL"] < 0.5 and result["RMS_LOO"] >= result["RMS_ALL"] * 0.9 and result["N_RED"] >= 20
    r, o = raster.raster_info(str(ref)), raster.raster_info(result["OUTPUT"])
    assert (o.width, o.height, o.geotransform, o.crs_label()) == (r.width, r.height, r.geotransform, "EPSG:32633")
    ds = ogr.Open(result["OUTPUT_TIEPOINTS"])
    layer = ds.GetLayer(0)
    assert layer.GetSpatialRef().GetAuthorityCode(None) == "32633"
    fields = [layer.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(layer.GetLayerDefn().GetFieldCount())]
    assert {"residual", "inlier"} <= set(fields) and layer.GetFeatureCount() >= result["N_RED"]
    assert raster.raster_info(result["OUTPUT_CHECKERBOARD"]).geotransform == r.geotransform


def test_register_no_overlap_is_a_clear_error_and_writes_nothing(run_alg, tmp_path, pair):
    ref, _ = pair
    far = tmp_path / "far.tif"
    gdal.Translate(str(far), str(ref), srcWin=[0, 0, 600, 600])
    ds = gdal.Open(str(far), gdal.GA_Update)
    gt = list(ds.GetGeoTransform())
    gt[0] += 100000  # 100 km east: no overlap
    ds.SetGeoTransform(gt)
    ds = None
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(QgsProcessingException, match="overlap"):
        run_alg("cloudfree:register", {"REFERENCE": str(ref), "INPUT": str(far), "METHOD": 1,
                                       "OUTPUT": str(tmp_path / "o.tif"),
                                       "OUTPUT_TIEPOINTS": str(tmp_path / "t.gpkg")})
    assert sorted(os.listdir(tmp_path)) == before


def test_register_headless_on_the_real_pair(tmp_path, pair):
    ref, target = pair
    # defaults: SIFT + the shipped CNN descriptor, affine
    proc = subprocess.run([str(ROOT / "scripts" / "qgis_process"), "--json", "run", "cloudfree:register", "--",
                           f"REFERENCE={ref}", f"INPUT={target}",
                           f"OUTPUT={tmp_path / 'reg.tif'}", f"OUTPUT_TIEPOINTS={tmp_path / 'tp.gpkg'}"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = json.loads(proc.stdout)["results"]
    assert float(results["SHIFT_Y"]) == pytest.approx(-1.8, abs=0.2)
    assert raster.raster_info(str(tmp_path / "reg.tif")).crs_label() == "EPSG:32633"


def test_register_fine_tunes_the_descriptor_on_the_reference(run_alg, tmp_path, cropped_pair):
    ref, target = cropped_pair
    result = run_alg("cloudfree:register", {
        "REFERENCE": str(ref),
        "INPUT": str(target), "METHOD": 0, "FINE_TUNE_STEPS": 5,
        "TRANSFORM": 1, "OUTPUT": str(tmp_path / "r.tif"), "OUTPUT_TIEPOINTS": str(tmp_path / "t.gpkg")})
    assert result["SHIFT_X"] == pytest.approx(0.6, abs=0.2) and result["SHIFT_Y"] == pytest.approx(-1.75, abs=0.2)
    assert abs(result["ROTATION"]) < 0.05 and result["SCALE"] == pytest.approx(1.0, abs=1e-3)
    assert sorted(os.listdir(tmp_path)) == ["r.tif", "t.gpkg"]  # the fine-tuned model was temporary
