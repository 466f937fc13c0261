"""Tests of the multi-date fusion engine (models/fusion.py) on real Sentinel-2 NDVI dates.

A tiny quality network (widths 8, 16, 32) trained for a few dozen self-supervised steps keeps
the file well under a minute on one CPU thread.
"""

import glob
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from cloudfree.models import fusion as fu  # noqa: E402
from cloudfree.models.errors import Cancelled, GridMismatchError, InputError  # noqa: E402
from cloudfree.models.raster import raster_info, write_array  # noqa: E402
from cloudfree.models.weights import read_metadata  # noqa: E402

torch.set_num_threads(1)

TINY = dict(encoder=[8, 16, 32], decoder=[16, 8])


def series(shared_data):
    d = shared_data / "s2_ndvi_timeseries"
    dates = sorted(glob.glob(str(d / "ndvi" / "ndvi_*.tif")))
    masks = [str(d / "cloud_mask" / ("clm_" + os.path.basename(p)[5:])) for p in dates]
    return dates, masks


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    """A tiny quality net after 40 self-supervised steps on the NDVI series (held-out rows untouched)."""
    out = tmp_path_factory.mktemp("fusion") / "tiny.safetensors"
    cfg = fu.ndvi_series_config(str(shared_data / "s2_ndvi_timeseries"), mode="self", steps=40, tile=32,
                                batch_size=4, lr=3e-3, val_every=40, k_min=3, k_max=5, seed=1, **TINY)
    res = fu.train_fusion(cfg, str(out))
    return res, str(out)


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return fu.FusionModel(net=fu.build_quality_net(**TINY).eval())


# --------------------------------------------------------------------------- weights


def test_softmax_weights_sum_to_one_and_masked_dates_get_exact_zero():
    g = torch.Generator().manual_seed(0)
    K, H, W = 5, 6, 7
    logits = torch.randn(K, H, W, generator=g) * 5
    valid = torch.rand(K, H, W, generator=g) > 0.3
    clear = torch.rand(K, H, W, generator=g) > 0.4
    valid[:, 0, 0] = False                  # no date valid
    valid[:, 1, 1] = True
    clear[:, 1, 1] = False                  # every valid date cloudy: fallback to valid dates
    w = fu.masked_softmax(logits, valid, clear)
    total = w.sum(0)
    assert torch.all(w[~valid] == 0)
    allowed = valid & clear
    some = allowed.any(0)
    assert torch.all(w[:, some][~allowed[:, some]] == 0)
    assert total[0, 0] == 0
    anyv = valid.any(0)
    assert torch.allclose(total[anyv], torch.ones_like(total[anyv]), atol=1e-6)
    assert torch.allclose(w[:, 1, 1].sum(), torch.tensor(1.0)) and torch.all(w[:, 1, 1] > 0)


def test_fuse_arrays_quality_weights_and_masks():
    rng = np.random.default_rng(0)
    K, C, H, W = 4, 2, 40, 44
    dates = rng.normal(size=(K, C, H, W)).astype(np.float32)
    valid = rng.random((K, H, W)) > 0.2
    cloud = rng.random((K, H, W)) > 0.7
    valid[:, 3, 3] = False
    fused, w = fu.fuse_arrays(dates, valid, "quality", tiny_model(), cloud_mask=cloud)
    assert fused.shape == (C, H, W) and w.shape == (K, H, W)
    assert np.all(w[~valid] == 0)
    allowed = valid & ~cloud
    some = allowed.any(0)
    assert np.all(w[:, some][~allowed[:, some]] == 0)
    assert np.allclose(w.sum(0)[valid.any(0)], 1, atol=1e-5)
    assert np.isnan(fused[:, 3, 3]).all() and np.all(w[:, 3, 3] == 0)
    expect = np.einsum("khw,kchw->chw", w, np.where(valid[:, None], dates, 0))
    ok = valid.any(0)
    assert np.allclose(fused[:, ok], expect[:, ok], atol=1e-5)


@pytest.mark.parametrize("method", fu.METHODS)
def test_identical_dates_give_that_date(method, shared_data):
    dates, _ = series(shared_data)
    from cloudfree.models.raster import open_raster, read_window
    ds = open_raster(dates[0])
    img = read_window(ds, (0, 0, 100, 101))
    stack = np.repeat(img[None], 3, axis=0)
    fused, w = fu.fuse_arrays(stack, None, method, tiny_model() if method == "quality" else None)
    assert np.allclose(fused, img, atol=1e-6)
    assert np.allclose(w.sum(0), 1, atol=1e-6)


def test_baselines_honour_nodata_masks_and_probabilities():
    K, C, H, W = 3, 1, 2, 3
    d = np.zeros((K, C, H, W), dtype=np.float32)
    d[0], d[1], d[2] = 1.0, 2.0, 10.0
    d[2, 0, 0, 0] = np.nan                   # nodata in date 2
    d[:, 0, 1, 2] = np.nan                   # no date valid
    cloud = np.zeros((K, H, W), bool)
    cloud[0, 0, 1] = True                    # date 0 cloudy at (0, 1)
    cloud[:, 1, 0] = True                    # every date cloudy: fallback to all valid
    mean, wm = fu.fuse_arrays(d, None, "mean", cloud_mask=cloud)
    assert mean[0, 0, 0] == pytest.approx(1.5)
    assert mean[0, 0, 1] == pytest.approx(6.0)
    assert mean[0, 1, 0] == pytest.approx(13 / 3)
    assert np.isnan(mean[0, 1, 2]) and np.all(wm[:, 1, 2] == 0)
    assert wm[2, 0, 0] == 0 and wm[0, 0, 1] == 0
    med, wmed = fu.fuse_arrays(d, None, "median", cloud_mask=cloud)
    assert med[0, 0, 0] == pytest.approx(1.5) and med[0, 1, 1] == pytest.approx(2.0)
    assert np.isnan(med[0, 1, 2])
    assert wmed[1, 1, 1] == 1 and np.allclose(wmed.sum(0)[~np.isnan(med[0])], 1)
    best, wb = fu.fuse_arrays(d, None, "best", cloud_mask=cloud)
    assert best[0, 0, 0] == 2.0              # date 2 is nodata; tie between 0 and 1 -> the last one
    assert best[0, 1, 1] == 10.0             # no mask flags: last date
    assert best[0, 0, 1] == 10.0
    assert np.isnan(best[0, 1, 2]) and np.all(wb[:, 1, 2] == 0)
    prob = np.stack([np.full((H, W), 5.0), np.full((H, W), 1.0), np.full((H, W), 3.0)])
    best, _ = fu.fuse_arrays(d, None, "best", cloud_probability=prob)
    assert best[0, 1, 1] == 2.0              # lowest probability wins


def test_inputs_are_checked():
    with pytest.raises(InputError):
        fu.fuse_arrays(np.zeros((1, 1, 4, 4)), None, "mean")
    with pytest.raises(InputError):
        fu.fuse_arrays(np.zeros((2, 1, 4, 4)), None, "max")


# --------------------------------------------------------------------------- training


def test_quality_net_beats_mean_after_short_training(trained, shared_data, tmp_path):
    res, path = trained
    assert res.steps == 40 and len(res.history["val"]) == 1
    assert res.samples and res.samples[0]["weights"].shape[1:] == res.samples[0]["clean"].shape[1:]
    meta = read_metadata(path)
    assert meta.task == "fusion" and meta.normalization["band_mode"] == "per_band_shared"
    assert meta.normalization["cloud_polarity"] == "low" and meta.training["dates"][0].startswith("ndvi_")
    assert meta.training["holdout_rows"] == [71, 101] and meta.training["mode"] == "self"
    # fixed synthetic case on the held-out rows of a clear date, never seen in training
    cfg = fu.ndvi_series_config(str(shared_data / "s2_ndvi_timeseries"), mode="self")
    data = fu.SeriesData(cfg)
    clean = data.dates[data.clear_dates[-1], :, 71:]
    copies, valid, cloud = fu._cloud_copies(clean, 4, np.random.default_rng(123), cfg)
    model = fu.FusionModel.load(path)
    fq, _ = fu.fuse_arrays(copies, valid, "quality", model)
    fm, _ = fu.fuse_arrays(copies, valid, "mean")          # neither gets the masks
    ok = np.isfinite(fq[0]) & np.isfinite(fm[0])
    l1_q = np.abs(fq - clean)[:, ok].mean()
    l1_m = np.abs(fm - clean)[:, ok].mean()
    assert l1_q < 0.8 * l1_m, (l1_q, l1_m)
    # one model for any band count: the same file fuses a 3-band stack
    three = np.repeat(copies, 3, axis=1)
    f3, _ = fu.fuse_arrays(three, valid, "quality", model, cloud_polarity="low")
    assert f3.shape == (3,) + clean.shape[1:]
    assert np.allclose(f3[1][ok], fq[0][ok], atol=1e-4)
    # 'auto' treats 3 bands as reflectance (clouds bright): the network input is negated
    f3h, _ = fu.fuse_arrays(three, valid, "quality", model)
    fneg, _ = fu.fuse_arrays(-copies, valid, "quality", model, cloud_polarity="low")
    assert np.allclose(f3h[0][ok], -fneg[0][ok], atol=1e-4)
    with pytest.raises(InputError):
        fu.fuse_arrays(copies, valid, "quality", model, cloud_polarity="up")


def test_weak_training_runs_and_saves_segmentation(shared_data, tmp_path):
    cfg = fu.ndvi_series_config(str(shared_data / "s2_ndvi_timeseries"), mode="weak", steps=3, tile=32,
                                batch_size=2, val_every=3, k_min=2, k_max=3, seg_encoder=[8, 16], seg_decoder=[8],
                                **TINY)
    res = fu.train_fusion(cfg, str(tmp_path / "weak.safetensors"))
    assert res.segmentation_path and os.path.isfile(res.segmentation_path)
    assert read_metadata(res.segmentation_path).task == "fusion_segmentation"
    assert 0 <= res.metrics["val_seg_pixel_accuracy"] <= 1 and "val_seg_fwiou" in res.metrics
    assert read_metadata(res.model_path).training["class_values"] == [1, 2, 3, 4, 8]


# --------------------------------------------------------------------------- rasters


def test_fuse_rasters_real_ndvi_dates(trained, shared_data, tmp_path):
    _, model = trained
    dates, masks = series(shared_data)
    pick = [20, 21, 22, 23, 24]
    out, wpath = str(tmp_path / "fused.tif"), str(tmp_path / "weights.tif")
    summary = fu.fuse_rasters([raster_info(dates[i]) for i in pick], out, method="quality",
                              masks=[raster_info(masks[i]) for i in pick], model_path=model, weights_path=wpath,
                              tile=48, overlap=16, device="cpu")
    assert summary["dates"] == 5 and summary["pixels_without_data"] == 0
    ref, fi, wi = raster_info(dates[pick[0]]), raster_info(out), raster_info(wpath)
    assert fi.geotransform == ref.geotransform and fi.crs_label() == ref.crs_label() == "EPSG:32633"
    assert (fi.width, fi.height, fi.band_count) == (100, 101, 1)
    assert wi.band_count == 5 and wi.geotransform == ref.geotransform
    from osgeo import gdal
    w = gdal.Open(wpath).ReadAsArray()
    f = gdal.Open(out).ReadAsArray()
    assert np.allclose(w.sum(0), 1, atol=1e-5)
    m = np.stack([gdal.Open(masks[i]).ReadAsArray() for i in pick]) == 1
    some_clear = (~m).any(0)
    assert np.all(w[:, some_clear][m[:, some_clear]] == 0)      # cloudy dates get exactly 0 where possible
    d = np.stack([gdal.Open(dates[i]).ReadAsArray() for i in pick])
    assert np.allclose(f, (w * d).sum(0), atol=1e-5)
    # block-wise raster fusion equals the tiled array version (same windows, halo and statistics)
    fa, wa = fu.fuse_arrays(d[:, None], None, "quality", fu.FusionModel.load(model), cloud_mask=m, tile=48, overlap=16)
    assert np.allclose(f, fa[0], atol=1e-5) and np.allclose(w, wa, atol=1e-5)
    # the mean baseline through rasters equals the array version
    fm_path = str(tmp_path / "mean.tif")
    fu.fuse_rasters([dates[i] for i in pick], fm_path, method="mean", masks=[masks[i] for i in pick], tile=40)
    fm, _ = fu.fuse_arrays(d[:, None], None, "mean", cloud_mask=m)
    assert np.allclose(gdal.Open(fm_path).ReadAsArray(), fm[0], atol=1e-6)


def test_grid_mismatch_unless_align(shared_data, tmp_path):
    dates, _ = series(shared_data)
    a, b = raster_info(dates[0]), raster_info(dates[1])
    from osgeo import gdal
    arr = gdal.Open(b.path).ReadAsArray()
    gt = list(b.geotransform)
    gt[0] += 3 * gt[1]                        # shifted by 3 pixels
    shifted = write_array(str(tmp_path / "shifted.tif"), arr[None], geotransform=tuple(gt), crs_wkt=b.crs_wkt)
    with pytest.raises(GridMismatchError):
        fu.fuse_rasters([a, raster_info(shifted)], str(tmp_path / "x.tif"), method="mean")
    assert not os.path.exists(tmp_path / "x.tif")
    s = fu.fuse_rasters([a, raster_info(shifted)], str(tmp_path / "y.tif"), method="mean", align=True)
    out = gdal.Open(s["output"]).ReadAsArray()
    assert out.shape == (101, 100) and np.isfinite(out).all()
    # the shifted date lands 3 pixels east; outside it only the first date counts
    a0 = gdal.Open(a.path).ReadAsArray()
    assert np.allclose(out[:, 5:-5], 0.5 * (a0[:, 5:-5] + arr[:, 2:-8]), atol=1e-5)


def test_cancel_leaves_nothing(shared_data, tmp_path):
    dates, _ = series(shared_data)
    with pytest.raises(Cancelled):
        fu.fuse_rasters(dates[:3], str(tmp_path / "c.tif"), method="median", weights_path=str(tmp_path / "w.tif"),
                        cancelled=lambda: True)
    assert os.listdir(tmp_path) == []


def test_shipped_default_model_fuses_real_dates(shared_data, tmp_path):
    from cloudfree.models.weights import shipped_model
    path = shipped_model(fu.DEFAULT_MODEL_FILE)
    if not os.path.isfile(path):
        pytest.skip("no shipped fusion model")
    meta = read_metadata(path)
    assert meta.task == "fusion" and meta.bands == ["ndvi"] and meta.training["holdout_rows"] == [71, 101]
    assert meta.metrics["held_out"]["val_l1_quality"] < meta.metrics["held_out"]["val_l1_mean_with_masks"]
    dates, _ = series(shared_data)
    s = fu.fuse_rasters(dates[26:30], str(tmp_path / "f.tif"), weights_path=str(tmp_path / "w.tif"), device="cpu")
    assert s["model"] == fu.DEFAULT_MODEL_FILE and raster_info(s["weights"]).band_count == 4
