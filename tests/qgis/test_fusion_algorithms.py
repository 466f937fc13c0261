"""cloudfree:fusedates and cloudfree:trainfusion on the real NDVI series (processing.run, qgis_process)."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException

from cloudfree.models import raster

ROOT = Path(__file__).resolve().parents[2]
# four real dates within five weeks (2016-05-06 .. 2016-06-05), with real clouds on some
DATES = ["20160506T100527", "20160516T100647", "20160526T100611", "20160605T100650"]


@pytest.fixture()
def series(shared_data):
    d = shared_data / "s2_ndvi_timeseries"
    return ([str(d / "ndvi" / f"ndvi_{t}.tif") for t in DATES], [str(d / "cloud_mask" / f"clm_{t}.tif") for t in DATES])


@pytest.mark.parametrize("method", [0, 1, 2, 3])
def test_fusedates_writes_fused_raster_and_weights(run_alg, tmp_path, series, method):
    dates, masks = series
    result = run_alg("cloudfree:fusedates", {"INPUTS": dates, "MASKS": masks, "METHOD": method,
                                             "OUTPUT": str(tmp_path / "fused.tif"),
                                             "OUTPUT_WEIGHTS": str(tmp_path / "weights.tif")})
    fused, ref = raster.raster_info(result["OUTPUT"]), raster.raster_info(dates[0])
    assert (fused.geotransform, fused.crs_label(), fused.band_count) == (ref.geotransform, "EPSG:32633", 1)
    w = gdal.Open(result["OUTPUT_WEIGHTS"]).ReadAsArray()
    assert w.shape == (4, 101, 100)
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-5)
    stack = np.stack([gdal.Open(p).ReadAsArray() for p in dates])
    np.testing.assert_allclose(gdal.Open(result["OUTPUT"]).ReadAsArray(), (w * stack).sum(axis=0), atol=1e-4)


def test_fusedates_grids_must_match_unless_aligned(run_alg, tmp_path, series):
    dates, _ = series
    shifted = tmp_path / "shifted.tif"
    gdal.Translate(str(shifted), dates[1])
    ds = gdal.Open(str(shifted), gdal.GA_Update)
    gt = list(ds.GetGeoTransform())
    gt[0] += 5.0  # half a 10 m pixel
    ds.SetGeoTransform(gt)
    ds = None
    params = {"INPUTS": [dates[0], str(shifted), dates[2]], "METHOD": 1, "OUTPUT": str(tmp_path / "f.tif")}
    with pytest.raises(QgsProcessingException, match="grid"):
        run_alg("cloudfree:fusedates", params)
    assert not (tmp_path / "f.tif").exists()
    result = run_alg("cloudfree:fusedates", dict(params, ALIGN=1))
    assert raster.raster_info(result["OUTPUT"]).geotransform == raster.raster_info(dates[0]).geotransform


def test_fusedates_needs_one_mask_per_date(run_alg, tmp_path, series):
    dates, masks = series
    with pytest.raises(QgsProcessingException, match="one mask per date"):
        run_alg("cloudfree:fusedates", {"INPUTS": dates, "MASKS": masks[:2], "OUTPUT": str(tmp_path / "f.tif")})
    assert os.listdir(tmp_path) == []


def test_fusedates_headless_on_real_ndvi_dates(tmp_path, series):
    dates, masks = series
    args = [str(ROOT / "scripts" / "qgis_process"), "--json", "run", "cloudfree:fusedates", "--"]
    args += [f"INPUTS={p}" for p in dates] + [f"MASKS={p}" for p in masks]
    args += [f"OUTPUT={tmp_path / 'fused.tif'}", f"OUTPUT_WEIGHTS={tmp_path / 'w.tif'}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert raster.raster_info(str(tmp_path / "w.tif")).band_count == 4
    assert raster.raster_info(str(tmp_path / "fused.tif")).crs_label() == "EPSG:32633"


def _series_all(shared_data, n=12):
    d = shared_data / "s2_ndvi_timeseries"
    names = sorted(p.name for p in (d / "ndvi").glob("ndvi_*.tif"))[:n]
    return ([str(d / "ndvi" / p) for p in names], [str(d / "cloud_mask" / ("clm_" + p[5:])) for p in names],
            str(d / "landcover.tif"))


def test_trainfusion_weak_supervision_from_a_label_raster(run_alg, tmp_path, shared_data):
    dates, masks, labels = _series_all(shared_data)
    result = run_alg("cloudfree:trainfusion", {
        "INPUTS": dates, "MASKS": masks, "LABELS": labels, "CLASS_WEIGHTS": "1:2.0", "TILE_SIZE": 32, "EPOCHS": 1,
        "STEPS_PER_EPOCH": 3, "DEVICE": 1, "OUTPUT_MODEL": str(tmp_path / "fusion.safetensors"),
        "OUTPUT_REPORT": str(tmp_path / "report.html")})
    from cloudfree.models import weights

    meta = weights.read_metadata(result["OUTPUT_MODEL"])
    assert meta.task == "fusion" and meta.training["steps"] == 3
    assert (tmp_path / "report.html").stat().st_size > 5000
    fused = run_alg("cloudfree:fusedates", {"INPUTS": dates[:3], "MODEL": result["OUTPUT_MODEL"],
                                            "OUTPUT": str(tmp_path / "f.tif")})
    assert raster.raster_info(fused["OUTPUT"]).band_count == 1


def test_trainfusion_from_label_polygons(run_alg, tmp_path, shared_data):
    from osgeo import ogr, osr

    dates, masks, labels = _series_all(shared_data)
    like = raster.raster_info(labels)
    vds = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp_path / "labels.gpkg"))
    srs = osr.SpatialReference()
    srs.ImportFromWkt(like.crs_wkt)
    layer = vds.CreateLayer("fields", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("cls", ogr.OFTInteger))
    x0, y0, x1, y1 = like.bounds
    for cls, (a, b) in ((1, (x0, (x0 + x1) / 2)), (2, ((x0 + x1) / 2, x1))):
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetField("cls", cls)
        f.SetGeometry(ogr.CreateGeometryFromWkt(f"POLYGON(({a} {y0},{b} {y0},{b} {y1},{a} {y1},{a} {y0}))"))
        layer.CreateFeature(f)
    vds = None
    result = run_alg("cloudfree:trainfusion", {
        "INPUTS": dates, "LABEL_POLYGONS": str(tmp_path / "labels.gpkg"), "LABEL_FIELD": "cls", "TILE_SIZE": 32,
        "EPOCHS": 1, "STEPS_PER_EPOCH": 2, "DEVICE": 1, "OUTPUT_MODEL": str(tmp_path / "m.safetensors")})
    from cloudfree.models import weights

    assert weights.read_metadata(result["OUTPUT_MODEL"]).training["mode"] == "weak"


def test_trainfusion_logs_the_held_out_validation_figures(run_logged, tmp_path, shared_data):
    # before: the log ended with 'validation: ' and nothing after it (it read a key the result never has)
    dates, masks, _ = _series_all(shared_data, 4)
    result, log = run_logged("cloudfree:trainfusion", {
        "INPUTS": dates, "MASKS": masks, "TILE_SIZE": 32, "EPOCHS": 1, "STEPS_PER_EPOCH": 2, "DEVICE": 1,
        "OUTPUT_MODEL": str(tmp_path / "m.safetensors")})
    from cloudfree.models import weights

    held_out = weights.read_metadata(result["OUTPUT_MODEL"]).metrics["held_out"]
    assert set(held_out) == {"val_l1_quality", "val_l1_mean_with_masks"}
    for key, value in held_out.items():
        assert f"{key} {value:.4g}" in log, log


def test_trainfusion_with_labels_and_masks_when_no_date_is_entirely_clear(run_logged, tmp_path, shared_data):
    # six real dates of spring 2016, every one with some cloud in its mask; before: 'Self-supervised
    # training needs at least one clear date that is not held out', contrary to the help
    d = shared_data / "s2_ndvi_timeseries"
    stamps = ["20160206T100203", "20160317T100659", "20160506T100527", "20160516T100647", "20160605T100650",
              "20160615T100608"]
    dates = [str(d / "ndvi" / f"ndvi_{t}.tif") for t in stamps]
    masks = [str(d / "cloud_mask" / f"clm_{t}.tif") for t in stamps]
    assert all((gdal.Open(m).ReadAsArray() == 1).any() for m in masks)
    result, log = run_logged("cloudfree:trainfusion", {
        "INPUTS": dates, "MASKS": masks, "LABELS": str(d / "landcover.tif"), "TILE_SIZE": 32, "EPOCHS": 1,
        "STEPS_PER_EPOCH": 2, "DEVICE": 1, "OUTPUT_MODEL": str(tmp_path / "m.safetensors"),
        "OUTPUT_REPORT": str(tmp_path / "report.html")})
    from cloudfree.models import weights

    meta = weights.read_metadata(result["OUTPUT_MODEL"])
    assert meta.training["mode"] == "weak" and meta.training["clear_dates"] == []
    assert {"val_l1_quality", "val_seg_miou"} <= set(meta.metrics["held_out"])
    assert "No date is entirely clear" in log and "(weak supervision)" in log
    assert (tmp_path / "report.html").stat().st_size > 5000
