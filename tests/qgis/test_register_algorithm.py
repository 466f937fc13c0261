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
    # defaults: auto (SIFT for an optical pair), affine
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


def _check_points(path, points, fields=("sensed_x", "sensed_y")):
    """A GeoPackage of points on the reference (EPSG:32633) with the true sensed map x, y of each."""
    from osgeo import osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(path))
    layer = ds.CreateLayer("check", srs, ogr.wkbPoint)
    for name in fields:
        layer.CreateField(ogr.FieldDefn(name, ogr.OFTReal))
    for x, y, sx, sy in points:
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetGeometry(ogr.CreateGeometryFromWkt(f"POINT ({x} {y})"))
        f.SetField(fields[0], sx)
        f.SetField(fields[1], sy)
        layer.CreateFeature(f)
    ds = None
    return str(path)


def test_register_reports_rms_at_independent_check_points(run_alg, tmp_path, cropped_pair):
    """Check points from AROSICS' independent figure of the pair's shift (about +0.6, -1.8 px, i.e.
    +6 m east and +18 m north on the 10 m grid): RMS_CHECK is small; the same points 30 m off give
    about 3 px; a layer without the fields is refused by name."""
    ref, target = cropped_pair
    g = raster.raster_info(str(ref)).geotransform
    xs = [g[0] + (c + 0.5) * g[1] for c in (200, 500, 800)]
    ys = [g[3] + (r + 0.5) * g[5] for r in (250, 750)]
    exact = [(x, y, x + 6.0, y + 18.0) for x in xs for y in ys]
    params = {"REFERENCE": str(ref), "INPUT": str(target), "TRANSFORM": 2, "METHOD": 1,
              "OUTPUT": str(tmp_path / "reg.tif"), "OUTPUT_TIEPOINTS": str(tmp_path / "tp.gpkg")}
    result = run_alg("cloudfree:register", {**params, "CHECK_POINTS": _check_points(tmp_path / "cp.gpkg", exact)})
    assert result["N_CHECK"] == 6 and result["RMS_CHECK"] < 0.3
    off = [(x, y, sx + 30.0, sy) for x, y, sx, sy in exact]
    result = run_alg("cloudfree:register", {**params, "OUTPUT": str(tmp_path / "reg2.tif"),
                                            "OUTPUT_TIEPOINTS": str(tmp_path / "tp2.gpkg"),
                                            "CHECK_POINTS": _check_points(tmp_path / "off.gpkg", off)})
    assert result["RMS_CHECK"] == pytest.approx(3.0, abs=0.3)
    wrong = _check_points(tmp_path / "wrong.gpkg", exact, fields=("true_x", "true_y"))
    with pytest.raises(QgsProcessingException, match="has no field sensed_x"):
        run_alg("cloudfree:register", {**params, "OUTPUT": str(tmp_path / "reg3.tif"),
                                       "OUTPUT_TIEPOINTS": str(tmp_path / "tp3.gpkg"), "CHECK_POINTS": wrong})
    assert not (tmp_path / "reg3.tif").exists()


def test_register_structure_search_and_no_match_check_are_parameters(run_alg, tmp_path, shared_data):
    """The advanced structure parameters reach the engine: BigEarthNet ben0's radar onto its
    Sentinel-2 registers by default; a no-match check it cannot pass refuses it with a message that
    says how to lower the check, and writes nothing; a search without rotation or scale still registers."""
    folder = shared_data / "s1_s2_pairs"
    params = {"REFERENCE": str(folder / "ben0_s2_bgrn.tif"), "INPUT": str(folder / "ben0_s1_vvvh.tif"),
              "REFERENCE_BAND": 4, "TRANSFORM": 1, "OUTPUT_TIEPOINTS": str(tmp_path / "t.gpkg")}
    result = run_alg("cloudfree:register", {**params, "OUTPUT": str(tmp_path / "default.tif")})
    assert abs(result["ROTATION"]) < 2 and result["N_RED"] >= 6
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(QgsProcessingException, match="lower the no-match check"):
        run_alg("cloudfree:register", {**params, "NO_MATCH_CHECK": 10.0, "OUTPUT": str(tmp_path / "refused.tif"),
                                       "OUTPUT_TIEPOINTS": str(tmp_path / "t2.gpkg")})
    assert sorted(os.listdir(tmp_path)) == before
    fixed = run_alg("cloudfree:register", {**params, "STRUCTURE_ROTATION": 0.0, "STRUCTURE_SCALE": 1.0,
                                           "OUTPUT": str(tmp_path / "fixed.tif"),
                                           "OUTPUT_TIEPOINTS": str(tmp_path / "t3.gpkg")})
    assert fixed["SHIFT_X"] == pytest.approx(result["SHIFT_X"], abs=0.5)
    assert fixed["SHIFT_Y"] == pytest.approx(result["SHIFT_Y"], abs=0.5)


def test_register_takes_a_descriptor_model_and_refuses_one_of_another_task(run_alg, tmp_path, cropped_pair):
    from cloudfree.models.weights import shipped_model

    ref, target = cropped_pair
    common = {"REFERENCE": str(ref), "INPUT": str(target), "METHOD": 0, "TRANSFORM": 1,
              "OUTPUT": str(tmp_path / "r.tif"), "OUTPUT_TIEPOINTS": str(tmp_path / "t.gpkg")}
    result = run_alg("cloudfree:register", {**common, "MODEL": shipped_model("registration_descriptor.safetensors")})
    assert result["SHIFT_X"] == pytest.approx(0.6, abs=0.2) and result["SHIFT_Y"] == pytest.approx(-1.75, abs=0.2)
    other = shipped_model("cloud_removal_small.safetensors")
    with pytest.raises(QgsProcessingException, match="cloud_removal_small"):
        run_alg("cloudfree:register", {**common, "MODEL": other, "OUTPUT": str(tmp_path / "x.tif"),
                                       "OUTPUT_TIEPOINTS": str(tmp_path / "x.gpkg")})
    assert not (tmp_path / "x.tif").exists()
