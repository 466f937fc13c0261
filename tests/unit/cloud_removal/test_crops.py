"""Training data: sources, their row split, crops and the validation set (models/cloud_removal/sources.py,
crops.py, synthetic.py) on real Sentinel-2 and Landsat 8 data."""

import numpy as np
import pytest

from cloudfree.models import cloud_removal as cr
from cloudfree.models.errors import InputError
from cloudfree.models.raster import raster_info


def test_band_contrast_augmentation_scales_the_ground_about_its_mid_level(scene_source):
    plain = cr.CropSampler([scene_source()], 64)
    halved = cr.CropSampler([scene_source()], 64, synthetic={"band_contrast": [0.5, 0.5]})
    for seed in range(4):  # one sample per generator: same crop, rotation and flip
        y = plain.sample(np.random.default_rng(seed))[1]
        y_half = halved.sample(np.random.default_rng(seed))[1]
        inside = np.abs(y) < 1.0  # targets are clipped to [-1, 1]
        np.testing.assert_allclose(y_half[inside], 0.5 * y[inside], atol=1e-5)
    # validation crops are never augmented
    np.testing.assert_array_equal(halved.validation_set(2, seed=1)[1], plain.validation_set(2, seed=1)[1])


def test_cloud_tint_varies_the_clouds_colour_and_nothing_else(scene_source):
    plain = cr.CropSampler([scene_source()], 64, synthetic={"cloud_tint": [0.0, 0.0]})
    tinted = cr.CropSampler([scene_source()], 64, synthetic={"cloud_tint": [0.5, 0.5]})
    changed = 0
    for seed in range(4):  # one sample per generator: same crop, clouds and augmentation
        x, y, known, mask = plain.sample(np.random.default_rng(seed))
        xt, yt, known_t, mask_t = tinted.sample(np.random.default_rng(seed))
        np.testing.assert_array_equal(y, yt)
        np.testing.assert_array_equal(mask, mask_t)
        np.testing.assert_array_equal(x[:, ~mask], xt[:, ~mask])  # clear pixels untouched
        diff = np.abs(x[:4] - xt[:4])[:, mask]
        changed += int((diff > 1e-3).sum())
        # the change differs between bands: a tint, not a brightness change
        if mask.sum() > 100:
            assert not np.allclose(diff[0], diff[1], atol=1e-3)
    assert changed > 0


def test_validation_block_disjoint_from_training_crops(scene_source):
    src = scene_source()
    (t0, t1), (v0, v1) = src.split(64)
    assert t0 == 0 and t1 == v0 and v1 == 512 and v1 - v0 >= 64
    sampler = cr.CropSampler([src], 64)
    rng = np.random.default_rng(1)
    x, y, known, mask = sampler.batch(16, rng)
    assert x.shape == (16, 5, 64, 64) and y.shape == (16, 4, 64, 64)
    assert known.dtype == bool and mask.any()
    for _, (x0, y0, w, h) in sampler.drawn_windows:
        assert 0 <= y0 and y0 + h <= t1  # training crops end before the validation block
    val = sampler.validation_windows(8)
    assert val
    for _, (x0, y0, w, h) in val:
        assert y0 >= v0 and y0 + h <= v1
    # the crop rejection keeps crops mostly clear according to the real-cloud mask
    assert known.mean() > 0.7
    # mask channel is binary, band channels are bounded
    assert set(np.unique(x[:, 4])) <= {0.0, 1.0}
    # bright clouds beyond +-2 are log-compressed (2 + log(1 + 100) would be a cloud 100 p2-p98 ranges up)
    assert np.abs(x[:, :4]).max() <= 2.0 + np.log1p(100.0) and np.abs(y).max() <= 1.0


def test_cross_scene_roles_keep_a_whole_scene_out_of_training(scene_source, shared_data):
    """A 'validation' source is never trained on and validates over its whole raster; a 'train'
    source has no validation block. Statistics of the held-out scene come from all its rows."""
    d = shared_data / "l8_cloudy_scene"
    train = scene_source(role="train")
    held = cr.TrainingSource(clear=str(d / "bgrn.tif"), bands=[1, 2, 3, 4], name="l8", role="validation")
    assert train.split(64) == ((0, 512), (512, 512))
    assert held.split(64) == ((0, 0), (0, 603))
    sampler = cr.CropSampler([train, held], 64)
    assert sampler.weights.tolist() == [1.0, 0.0]
    sampler.batch(12, np.random.default_rng(3))
    assert {k for k, _ in sampler.drawn_windows} == {0}
    val = sampler.validation_windows(8)
    assert val and {k for k, _ in val} == {1}
    ys = [w[1] for _, w in val]
    assert min(ys) == 0 and max(ys) >= 400  # validation spreads over the whole held-out raster
    full = cr.image_statistics(raster_info(str(d / "bgrn.tif")), [1, 2, 3, 4])
    assert np.allclose(sampler.sources[1].stats["low"], full["low"])
    with pytest.raises(InputError, match="role 'validation'"):
        cr.CropSampler([held], 64)
    with pytest.raises(InputError, match="role 'train'"):
        cr.CropSampler([train], 64)
    with pytest.raises(InputError, match="unknown role"):
        scene_source(role="test").split(64)


def test_paired_source_reads_real_mask(shared_data):
    p = shared_data / "s2_cloud_pair"
    src = cr.TrainingSource(clear=str(p / "clean.tif"), cloudy=str(p / "cloudy.tif"), bands=[2, 3, 4, 8],
                            mask=str(p / "mask.tif"), cloud_values=(1, 2), val_fraction=0.25)
    sampler = cr.CropSampler([src], 64)
    x, y, known, mask = sampler.batch(4, np.random.default_rng(0))
    assert x.shape == (4, 5, 64, 64)
    assert known.all()
    np.testing.assert_array_equal(x[:, 4] > 0.5, mask)


def test_a_source_given_as_a_dict_with_an_unknown_field_is_an_input_error(scene_source, tmp_path):
    """TrainingSource(**dict) raised a bare TypeError for a misspelt field of a source given as a dict."""
    fields = {"clear": scene_source().clear, "bands": [1, 2, 3, 4], "clear_value": (1, 2, 3)}
    cfg = cr.TrainConfig(sources=[fields], steps=1, depth=4, base=8, tile=64, device="cpu")
    with pytest.raises(InputError, match="no field named clear_value"):
        cr.train_cloud_removal(cfg, str(tmp_path / "never.safetensors"))
    assert not (tmp_path / "never.safetensors").exists()
