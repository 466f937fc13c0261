"""``python -m cloudfree.batch``: many scenes without QGIS, here or on a LocalCluster, the engine's outputs."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from cloudfree import batch
from cloudfree.models import raster

ROOT = Path(__file__).resolve().parents[2]
GT = (300000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)


def make(path, arr):
    return raster.raster_info(raster.write_array(str(path), arr, geotransform=GT, crs_wkt=""))


def scene(rng, bands, height=120, width=150):
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = 0.15 + 0.08 * np.sin(xx / 19.0 + rng.uniform(0, 3)) * np.cos(yy / 13.0)
    return np.stack([base * (1 + 0.2 * b) + 0.01 * rng.standard_normal((height, width)) for b in range(bands)]
                    ).astype(np.float32)


def test_the_entry_point_runs_as_a_module_without_qgis(tmp_path):
    (tmp_path / "cloudfree").symlink_to(ROOT)
    code = "import sys, cloudfree.batch; assert not [m for m in sys.modules if m.split('.')[0] == 'qgis']"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)
    usage = subprocess.run([sys.executable, "-m", "cloudfree.batch", "--help"], check=True, env=env, cwd=tmp_path,
                           capture_output=True, text=True).stdout
    assert "removeclouds" in usage and "--scheduler" in usage


def test_removeclouds_batch_on_two_local_workers_writes_what_the_engine_writes_here(tmp_path):
    pytest.importorskip("distributed")
    from cloudfree.models.cloud_removal import RemovalOptions, remove_clouds
    from cloudfree.models.weights import shipped_model

    rng = np.random.default_rng(7)
    (tmp_path / "scenes").mkdir()
    (tmp_path / "masks").mkdir()
    paths = []
    for k in range(2):
        paths.append(str(tmp_path / "scenes" / f"s{k}.tif"))
        make(paths[-1], scene(rng, 4))
        cloud = np.zeros((1, 120, 150), dtype=np.uint8)
        cloud[0, 30 + 10 * k:80, 40:100] = 1
        make(tmp_path / "masks" / f"s{k}_mask.tif", cloud)
    out = tmp_path / "out"
    masks = str(tmp_path / "masks" / "{stem}_mask.tif")
    status = batch.main(["removeclouds", *paths, "--out", str(out), "--mask", masks, "--mask-values", "1",
                         "--device", "cpu", "--scheduler", "local:2"])
    assert status == 0 and sorted(os.listdir(out)) == ["s0.tif", "s1.tif"]
    for k, path in enumerate(paths):
        here = str(tmp_path / f"here{k}.tif")
        remove_clouds(raster.raster_info(path), here, shipped_model("cloud_removal_small.safetensors"),
                      mask=raster.raster_info(str(tmp_path / "masks" / f"s{k}_mask.tif")), mask_values=(1,),
                      options=RemovalOptions(device="cpu"))
        np.testing.assert_allclose(gdal.Open(str(out / f"s{k}.tif")).ReadAsArray(), gdal.Open(here).ReadAsArray(),
                                   rtol=1e-5, atol=1e-5)


def test_a_scene_that_fails_is_reported_and_the_others_go_on(tmp_path, capsys):
    from cloudfree.models.weights import shipped_model

    rng = np.random.default_rng(8)
    good, bad = str(tmp_path / "good.tif"), str(tmp_path / "bad.tif")
    make(good, scene(rng, 1) * 4 - 0.5)   # one NDVI-like band, as the shipped land-cover model takes
    make(bad, scene(rng, 2))               # two bands: refused by the model
    out = tmp_path / "classes"
    status = batch.main(["segment", bad, good, "--out", str(out),
                         "--model", shipped_model("fusion_default.segmentation.safetensors")])
    assert status == 1 and os.listdir(out) == ["good.tif"]
    log = capsys.readouterr().err
    assert "Executor: in-process" in log and f"FAILED 1/2 {bad}" in log and "1 of 2 scene(s) done" in log


def test_fusedates_batch_fuses_the_inputs_with_their_masks(tmp_path):
    from cloudfree.models.fusion import FuseRasterOptions, fuse_rasters

    rng = np.random.default_rng(9)
    dates, masks = [], []
    for k in range(3):
        dates.append(str(tmp_path / f"d{k}.tif"))
        make(dates[-1], scene(rng, 2, 60, 70))
        m = np.zeros((1, 60, 70), dtype=np.uint8)
        m[0, 10 * k:10 * k + 30, 5:40] = 1
        masks.append(make(tmp_path / f"d{k}_clm.tif", m))
    out = str(tmp_path / "fused.tif")
    assert batch.main(["fusedates", *dates, "--out", out, "--method", "mean",
                       "--mask", str(tmp_path / "{stem}_clm.tif")]) == 0
    fuse_rasters(dates, str(tmp_path / "here.tif"), masks=masks, options=FuseRasterOptions("mean"))
    np.testing.assert_array_equal(gdal.Open(out).ReadAsArray(), gdal.Open(str(tmp_path / "here.tif")).ReadAsArray())


def test_removeclouds_temporal_rebuilds_each_date_from_the_others_with_its_side_outputs(tmp_path):
    """Three dates of one place with clouds in different rows: each is rebuilt from the other two, and its
    provenance, predicted error and report are written beside it, as reconstruct_from_dates writes them."""
    import json

    from cloudfree.models.cloud_removal.reconstruct import TemporalOptions, reconstruct_from_dates
    from cloudfree.models.cloud_removal.guides import Guide

    rng = np.random.default_rng(10)
    truth = scene(rng, 3, 80, 90)
    dates = []
    for k in range(3):
        path = str(tmp_path / f"S2_2018070{k + 1}.tif")
        make(path, truth * (1 + 0.05 * k))
        m = np.zeros((1, 80, 90), dtype=np.uint8)
        m[0, 20 * k + 5:20 * k + 25, 10:60] = 1
        make(tmp_path / f"S2_2018070{k + 1}_clm.tif", m)
        dates.append(path)
    out = tmp_path / "cleared"
    assert batch.main(["removeclouds", *dates, "--out", str(out), "--temporal", "--mask-values", "1",
                       "--mask", str(tmp_path / "{stem}_clm.tif")]) == 0
    names = sorted(os.listdir(out))
    assert names == sorted(f"S2_2018070{k}{suffix}" for k in (1, 2, 3)
                           for suffix in (".tif", "_provenance.tif", "_error.tif", "_report.json"))
    report = json.loads((out / "S2_20180702_report.json").read_text())
    assert report["method"] == "temporal" and len(report["dates"]) == 2 and "temporal" in report["self_check"]
    here = str(tmp_path / "here.tif")
    guides = [Guide(p, mask=p.replace(".tif", "_clm.tif"), mask_values=(1,)) for p in dates if "0702" not in p]
    reconstruct_from_dates(raster.raster_info(dates[1]), here, guides,
                           mask=raster.raster_info(str(tmp_path / "S2_20180702_clm.tif")), mask_values=(1,),
                           options=TemporalOptions())
    np.testing.assert_array_equal(gdal.Open(str(out / "S2_20180702.tif")).ReadAsArray(), gdal.Open(here).ReadAsArray())
    with pytest.raises(SystemExit):
        batch.main(["removeclouds", dates[0], "--out", str(out), "--temporal"])   # no --mask, one date
