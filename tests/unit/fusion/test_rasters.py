"""Fusion of rasters block by block: real NDVI dates, masks, grids, cancelling, the shipped model."""

import os

import numpy as np
import pytest
from osgeo import gdal

from cloudfree.models import fusion as fu
from cloudfree.models.backends import prepare
from cloudfree.models.errors import Cancelled, GridMismatchError, InputError
from cloudfree.models.raster import raster_info, write_array
from cloudfree.models.weights import read_metadata


def test_fuse_rasters_real_ndvi_dates(trained, series, tmp_path):
    _, model = trained
    dates, masks = series
    pick = [20, 21, 22, 23, 24]
    out, wpath = str(tmp_path / "fused.tif"), str(tmp_path / "weight_maps.tif")
    summary = fu.fuse_rasters([raster_info(dates[i]) for i in pick], out,
                              masks=[raster_info(masks[i]) for i in pick], weight_map_path=wpath,
                              options=fu.FuseRasterOptions("quality", model_path=model, tile=48, overlap=16,
                                                           device="cpu", backend="torch"))
    assert summary["dates"] == 5 and summary["pixels_without_data"] == 0 and summary["weight_maps"] == wpath
    ref, fi, wi = raster_info(dates[pick[0]]), raster_info(out), raster_info(wpath)
    assert fi.geotransform == ref.geotransform and fi.crs_label() == ref.crs_label() == "EPSG:32633"
    assert (fi.width, fi.height, fi.band_count) == (100, 101, 1)
    assert wi.band_count == 5 and wi.geotransform == ref.geotransform
    w = gdal.Open(wpath).ReadAsArray()
    f = gdal.Open(out).ReadAsArray()
    assert np.allclose(w.sum(0), 1, atol=1e-5)
    m = np.stack([gdal.Open(masks[i]).ReadAsArray() for i in pick]) == 1
    some_clear = (~m).any(0)
    assert np.all(w[:, some_clear][m[:, some_clear]] == 0)      # cloudy dates get exactly 0 where possible
    d = np.stack([gdal.Open(dates[i]).ReadAsArray() for i in pick])
    assert np.allclose(f, (w * d).sum(0), atol=1e-5)
    # block-wise raster fusion equals the tiled array version (same windows, halo and statistics; both on torch)
    same_engine = fu.FusionModel.load(model)
    same_engine.runner = prepare(same_engine.net, "cpu", "torch")
    fa, wa = fu.fuse_arrays(d[:, None], None, "quality", same_engine, cloud_mask=m, tile=48, overlap=16)
    assert np.allclose(f, fa[0], atol=1e-5) and np.allclose(w, wa, atol=1e-5)
    # the mean baseline through rasters equals the array version
    fm_path = str(tmp_path / "mean.tif")
    fu.fuse_rasters([dates[i] for i in pick], fm_path, masks=[masks[i] for i in pick],
                    options=fu.FuseRasterOptions("mean", tile=40))
    fm, _ = fu.fuse_arrays(d[:, None], None, "mean", cloud_mask=m)
    assert np.allclose(gdal.Open(fm_path).ReadAsArray(), fm[0], atol=1e-6)


def test_raster_statistics_equal_the_array_statistics_on_small_rasters(series):
    dates, masks = series
    pick = [13, 14, 17]
    infos, minfos = [raster_info(dates[i]) for i in pick], [raster_info(masks[i]) for i in pick]
    d = np.stack([gdal.Open(dates[i]).ReadAsArray() for i in pick])[:, None].astype(np.float64)
    m = np.stack([gdal.Open(masks[i]).ReadAsArray() for i in pick]) == 1
    stats = fu.raster_statistics(infos, [1], minfos, np.asarray([1]), fu.NORMALIZATION)
    assert stats == fu.band_statistics(d, ~m & np.isfinite(d[:, 0]))


def test_grid_mismatch_unless_align(series, tmp_path):
    dates, _ = series
    a, b = raster_info(dates[0]), raster_info(dates[1])
    arr = gdal.Open(b.path).ReadAsArray()
    gt = list(b.geotransform)
    gt[0] += 3 * gt[1]                        # shifted by 3 pixels
    shifted = write_array(str(tmp_path / "shifted.tif"), arr[None], geotransform=tuple(gt), crs_wkt=b.crs_wkt)
    with pytest.raises(GridMismatchError):
        fu.fuse_rasters([a, raster_info(shifted)], str(tmp_path / "x.tif"), options=fu.FuseRasterOptions("mean"))
    assert not os.path.exists(tmp_path / "x.tif")
    s = fu.fuse_rasters([a, raster_info(shifted)], str(tmp_path / "y.tif"),
                        options=fu.FuseRasterOptions("mean", align=True))
    out = gdal.Open(s["output"]).ReadAsArray()
    assert out.shape == (101, 100) and np.isfinite(out).all()
    # the shifted date lands 3 pixels east; outside it only the first date counts
    a0 = gdal.Open(a.path).ReadAsArray()
    assert np.allclose(out[:, 5:-5], 0.5 * (a0[:, 5:-5] + arr[:, 2:-8]), atol=1e-5)


def test_one_mask_per_date(series, tmp_path):
    dates, masks = series
    with pytest.raises(InputError, match="one raster of cloud masks per date: 2 for 3 dates"):
        fu.fuse_rasters(dates[:3], str(tmp_path / "m.tif"), masks=masks[:2], options=fu.FuseRasterOptions("mean"))


def test_cancel_leaves_nothing(series, tmp_path):
    dates, _ = series
    with pytest.raises(Cancelled):
        fu.fuse_rasters(dates[:3], str(tmp_path / "c.tif"), weight_map_path=str(tmp_path / "w.tif"),
                        options=fu.FuseRasterOptions("median"), cancelled=lambda: True)
    assert os.listdir(tmp_path) == []


def test_shipped_default_model_fuses_real_dates(series, tmp_path):
    from cloudfree.models.weights import shipped_model

    path = shipped_model(fu.DEFAULT_MODEL_FILE)
    if not os.path.isfile(path):
        pytest.skip("no shipped fusion model")
    meta = read_metadata(path)
    assert meta.task == "fusion" and meta.bands == ["ndvi"] and meta.training["holdout_rows"] == [71, 101]
    assert meta.metrics["held_out"]["val_l1_quality"] < meta.metrics["held_out"]["val_l1_mean_with_masks"]
    dates, _ = series
    s = fu.fuse_rasters(dates[26:30], str(tmp_path / "f.tif"), weight_map_path=str(tmp_path / "w.tif"),
                        options=fu.FuseRasterOptions(device="cpu"))
    assert s["model"] == fu.DEFAULT_MODEL_FILE and raster_info(s["weight_maps"]).band_count == 4
