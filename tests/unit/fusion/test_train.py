"""Training on the real NDVI series: self, weak and both supervision, the held-out figures, configuration errors."""

import os

import numpy as np
import pytest

from cloudfree.models import fusion as fu
from cloudfree.models.errors import InputError
from cloudfree.models.raster import open_raster, raster_info, read_window, write_array
from cloudfree.models.weights import read_metadata

# six real dates of spring 2016 with real clouds on every one of them (none is entirely clear);
# the masks call the held-out rows of 2016-03-17, 2016-05-06 and 2016-06-05 clear
PARTLY_CLOUDY = [13, 14, 17, 18, 20, 21]


def test_quality_net_beats_mean_after_short_training(trained, series_dir):
    res, path = trained
    assert res.steps == 40 and len(res.history["val"]) == 1 and res.mode == "self"
    assert res.samples and res.samples[0]["weight_maps"].shape[1:] == res.samples[0]["clean"].shape[1:]
    meta = read_metadata(path)
    assert meta.task == "fusion" and meta.normalization["band_mode"] == "per_band_shared"
    assert meta.normalization["cloud_polarity"] == "low" and meta.training["dates"][0].startswith("ndvi_")
    assert meta.training["holdout_rows"] == [71, 101] and meta.training["mode"] == "self"
    assert meta.metrics["held_out"] == res.metrics and "val_l1_quality" in res.metrics
    # fixed synthetic case on the held-out rows of a clear date, never seen in training
    cfg = fu.ndvi_series_config(str(series_dir), mode="self")
    data = fu.SeriesData(cfg)
    clean = data.dates[data.clear_dates[-1], :, 71:]
    copies, valid, cloud = fu.cloud_copies(clean, 4, np.random.default_rng(123), cfg)
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


def test_weak_training_runs_and_saves_segmentation(series_dir, tmp_path, tiny):
    cfg = fu.ndvi_series_config(str(series_dir), mode="weak", steps=3, tile=32, batch_size=2, val_every=3, k_min=2,
                                k_max=3, **tiny)
    res = fu.train_fusion(cfg, str(tmp_path / "weak.safetensors"))
    assert res.segmentation_path and os.path.isfile(res.segmentation_path)
    assert read_metadata(res.segmentation_path).task == "fusion_segmentation"
    assert 0 <= res.metrics["val_seg_pixel_accuracy"] <= 1 and "val_seg_fwiou" in res.metrics
    assert read_metadata(res.model_path).training["class_values"] == [1, 2, 3, 4, 8]


def test_labels_and_masks_train_when_no_date_is_entirely_clear(series_dir, tmp_path, tiny):
    """Labels + masks on dates that all have some cloud: weak supervision, validated on the clear pixels.

    Before: 'Self-supervised training needs at least one clear date' (mode both), and a
    ZeroDivisionError in the validation cases (mode weak).
    """
    base = fu.ndvi_series_config(str(series_dir))
    cfg = fu.ndvi_series_config(str(series_dir), dates=[base.dates[i] for i in PARTLY_CLOUDY],
                                masks=[base.masks[i] for i in PARTLY_CLOUDY], mode="both", steps=3, tile=32,
                                batch_size=2, val_every=3, **tiny)
    data = fu.SeriesData(cfg)
    assert data.clear_dates == [] and data.cloud.any(axis=(1, 2)).all()
    messages = []
    res = fu.train_fusion(cfg, str(tmp_path / "partly.safetensors"),
                          progress=lambda fraction, message=None: messages.append(message))
    assert res.mode == "weak" and read_metadata(res.model_path).training["mode"] == "weak"
    assert any(m and "No date is entirely clear" in m for m in messages)
    assert res.segmentation_path and 0 <= res.metrics["val_seg_miou"] <= 1
    assert np.isfinite(res.metrics["val_l1_quality"]) and np.isfinite(res.metrics["val_l1_mean_with_masks"])
    # the held-out cases are built on the dates whose held-out rows the masks call clear, and
    # count only the pixels the mask calls clear
    targets, partly_clear = fu.validation_targets(data, cfg)
    assert partly_clear and targets[:3] == [1, 2, 4]
    for case in fu.validation_cases(data, cfg):
        assert case.counted is not None and case.counted.shape == case.clean.shape[1:]


def test_weak_training_with_fewer_dates_than_a_sample(series, series_dir, tmp_path, tiny):
    """Three dates, samples of up to six: all three are fused (before: 'Cannot take a larger sample than
    population'); with six dates or fewer the held-out segmentation fuses them all (before: 'need at least
    one array to concatenate')."""
    dates, masks = series
    for n in (3, 6):
        cfg = fu.ndvi_series_config(str(series_dir), dates=dates[:n], masks=masks[:n], mode="weak", steps=2,
                                    tile=32, batch_size=2, val_every=2, k_min=2, k_max=6, **tiny)
        res = fu.train_fusion(cfg, str(tmp_path / f"few{n}.safetensors"))
        assert 0 <= res.metrics["val_seg_pixel_accuracy"] <= 1


def test_weak_batches_draw_neighbouring_dates(series_dir, tiny):
    cfg = fu.ndvi_series_config(str(series_dir), mode="weak", tile=32, batch_size=3, **tiny)
    data = fu.SeriesData(cfg)
    xn, v, lab = fu.weak_batch(data, cfg, 4, np.random.default_rng(0))
    assert xn.shape == (3, 4, 1, 32, 32) and v.shape == (3, 4, 32, 32) and lab.shape == (3, 32, 32)
    xn, v, tgt = fu.self_supervised_batch(data, cfg, 5, np.random.default_rng(0))
    assert xn.shape == (3, 5, 1, 32, 32) and tgt.shape == (3, 1, 32, 32)


def test_self_supervision_without_a_clear_date_is_an_input_error(series_dir, tmp_path, tiny):
    base = fu.ndvi_series_config(str(series_dir))
    cfg = fu.ndvi_series_config(str(series_dir), dates=[base.dates[i] for i in PARTLY_CLOUDY],
                                masks=[base.masks[i] for i in PARTLY_CLOUDY], mode="self", steps=2, tile=32, **tiny)
    with pytest.raises(InputError, match="at least one clear date"):
        fu.train_fusion(cfg, str(tmp_path / "x.safetensors"))


def test_labels_without_a_class_are_an_input_error(series_dir, tmp_path, tiny):
    like = raster_info(str(series_dir / "landcover.tif"))
    empty = write_array(str(tmp_path / "zeros.tif"), np.zeros((1, like.height, like.width), np.uint8), like=like)
    cfg = fu.ndvi_series_config(str(series_dir), labels=empty, mode="weak", steps=2, tile=32, **tiny)
    with pytest.raises(InputError, match="no class in the training rows"):
        fu.train_fusion(cfg, str(tmp_path / "x.safetensors"))


@pytest.mark.parametrize("change, message", [
    (dict(mode="strong"), "Unknown training mode 'strong'"),
    (dict(k_min=1), "k_min"),
    (dict(k_min=5, k_max=4), "k_min"),
    (dict(val_every=0), "val_every must be at least 1"),
    (dict(steps=0), "steps must be at least 1"),
])
def test_configuration_errors_are_input_errors(series_dir, tmp_path, change, message):
    cfg = fu.ndvi_series_config(str(series_dir), **change)
    with pytest.raises(InputError, match=message):
        fu.train_fusion(cfg, str(tmp_path / "x.safetensors"))


def test_one_mask_per_date_in_training(series_dir, tmp_path):
    cfg = fu.ndvi_series_config(str(series_dir))
    cfg.masks = cfg.masks[:3]
    with pytest.raises(InputError, match="3 cloud mask"):
        fu.train_fusion(cfg, str(tmp_path / "x.safetensors"))


def test_training_report(trained, tmp_path):
    res, _ = trained
    path = fu.write_training_report(res, str(tmp_path / "report.html"))
    text = open(path, encoding="utf-8").read()
    assert path == str(tmp_path / "report.html") and os.listdir(tmp_path) == ["report.html"]
    assert text.count("<img") == 1 + len(res.samples) and "val_l1_quality" in text and "self supervision" in text


def test_tiles_larger_than_the_training_block_are_an_input_error(series, series_dir, tmp_path):
    # 100 x 101 px with 30 held-out rows: 71 training rows for tiles of 80
    cfg = fu.ndvi_series_config(str(series_dir), mode="self", tile=80)
    with pytest.raises(InputError, match="training tiles of 80 px"):
        fu.train_fusion(cfg, str(tmp_path / "x.safetensors"))
    # 40 columns for tiles of 64 (before: numpy's 'high <= 0' from the crop position draw)
    dates, _ = series
    narrow = []
    for i in (0, 3, 4):
        info = raster_info(dates[i])
        arr = read_window(open_raster(info.path), (0, 0, 40, info.height))
        gt = info.geotransform
        narrow.append(write_array(str(tmp_path / f"narrow{i}.tif"), arr, geotransform=gt, crs_wkt=info.crs_wkt))
    cfg = fu.FusionTrainConfig(dates=narrow, mode="self", tile=64, steps=2)
    with pytest.raises(InputError, match="is 40 x 101 px: training tiles of 64 px"):
        fu.train_fusion(cfg, str(tmp_path / "y.safetensors"))
