"""Tests of the pix2pix cloud-removal engine (models/cloud_removal.py) on real Sentinel-2 data.

Tiny networks (4 levels, 8 filters, 64 px tiles) keep the whole file well under a minute on CPU.
"""

import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from cloudfree.models import cloud_removal as cr  # noqa: E402
from cloudfree.models.errors import Cancelled, InputError, ModelFileError  # noqa: E402
from cloudfree.models.raster import raster_info, write_array  # noqa: E402

torch.set_num_threads(1)

TINY = dict(depth=4, base=8, tile=64, disc_layers=2, batch_size=4, device="cpu", lr=1e-3, lr_decay_start=1.0)


def scene_source(shared_data, **kw):
    d = shared_data / "s2_cloudy_scene"
    return cr.TrainingSource(clear=str(d / "scene.tif"), bands=[1, 2, 3, 4], mask=str(d / "mask.tif"),
                             clear_values=(1, 2, 3), name="s2_cloudy_scene", **kw)


@pytest.fixture(scope="module")
def trained(shared_data, tmp_path_factory):
    """One tiny model trained for 40 steps with synthetic clouds on the clear parts of the scene."""
    folder = tmp_path_factory.mktemp("cloud_removal")
    cfg = cr.TrainConfig(sources=[scene_source(shared_data)], steps=40, val_every=20, checkpoint_every=20,
                         band_names=["blue", "green", "red", "nir"], **TINY)
    lines = []
    calls = []
    result = cr.train_cloud_removal(cfg, str(folder / "model.safetensors"), checkpoint_dir=str(folder / "ckpt"),
                                    log=lines.append, progress=lambda f, m=None: calls.append((f, m)))
    return result, folder, lines, calls


# --------------------------------------------------------------------------- networks


@pytest.mark.parametrize("bands", [3, 4, 6])
@pytest.mark.parametrize("tile", [64, 128])
def test_generator_output_shapes(bands, tile):
    for kind, with_mask in (("plain", False), ("plain", True), ("fill_residual", True), ("unmix_residual", True),
                            ("unmix_blend", True)):
        cin = bands + int(with_mask)
        g = cr.build_generator(cin, bands, "small", kind=kind, depth=5 if tile == 64 else 6, base=8,
                               max_channels=32).eval()
        x = torch.randn(2, cin, tile, tile)
        if with_mask:
            x[:, bands] = (x[:, bands] > 0).float()
        with torch.no_grad():
            y = g(x)
        assert y.shape == (2, bands, tile, tile)
        if kind == "plain":
            assert float(y.abs().max()) <= 1.0  # tanh output
        else:
            assert torch.isfinite(y).all()  # the fill plus a tanh residual


def test_model_sizes_and_tile_check(shared_data):
    assert cr.MODEL_SIZES["full"]["depth"] == 8 and cr.MODEL_SIZES["full"]["base"] == 64
    assert cr.MODEL_SIZES["full"]["tile"] == 256
    assert cr.MODEL_SIZES["small"]["tile"] % 2 ** cr.MODEL_SIZES["small"]["depth"] == 0
    with pytest.raises(InputError, match="divisible"):
        cr.TrainConfig(sources=[], size="small", tile=96).resolved()
    with pytest.raises(InputError, match="size"):
        cr.TrainConfig(sources=[], size="huge").resolved()


# --------------------------------------------------------------------------- normalisation


def test_normalisation_is_scale_invariant_and_invertible():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.02, 0.4, size=(4, 32, 32))
    stats = {"low": list(np.percentile(x.reshape(4, -1), 2, axis=1)),
             "high": list(np.percentile(x.reshape(4, -1), 98, axis=1))}
    n = cr.normalize(x, stats)
    k = 7.5  # the same image stored in other units
    stats_k = {"low": [v * k + 100 for v in stats["low"]], "high": [v * k + 100 for v in stats["high"]]}
    np.testing.assert_allclose(cr.normalize(x * k + 100, stats_k), n, atol=1e-5)
    inside = np.abs(n) < 1.0
    np.testing.assert_allclose(cr.denormalize(n, stats)[inside], x[inside], rtol=1e-5)
    assert n.min() >= -2.0 and n.max() <= 2.0


def test_bright_values_are_log_compressed_not_clipped():
    stats = {"low": [0.0], "high": [1.0]}  # 0 -> -0.8, 1 -> +0.8: v -> 1.6 v - 0.8
    x = np.array([0.5, 1.5, 2.0, 4.0, 10.0, -2.0]).reshape(1, 6, 1)
    n = cr.normalize(x, stats)[0, :, 0]
    lin = 1.6 * x[0, :, 0] - 0.8
    np.testing.assert_allclose(n[:2], lin[:2], rtol=1e-6)               # |v| <= 2: linear
    np.testing.assert_allclose(n[2:5], 2.0 + np.log1p(lin[2:5] - 2.0), rtol=1e-6)
    assert np.all(np.diff(n[:5]) > 0)                                   # order kept: thin vs thick clouds differ
    assert n[5] == pytest.approx(-2.0 - np.log1p(-lin[5] - 2.0))
    # files written before the option existed clipped; their metadata says nothing and keeps clipping
    old = cr.normalize(x, stats, {"beyond_clip": "clip"})[0, :, 0]
    assert old.max() == 2.0 and old.min() == -2.0


# --------------------------------------------------------------------------- training data


def test_band_contrast_augmentation_scales_the_ground_about_its_mid_level(shared_data):
    plain = cr.CropSampler([scene_source(shared_data)], 64)
    halved = cr.CropSampler([scene_source(shared_data)], 64, synthetic={"band_contrast": [0.5, 0.5]})
    for seed in range(4):  # one sample per generator: same crop, rotation and flip
        y = plain.sample(np.random.default_rng(seed))[1]
        y_half = halved.sample(np.random.default_rng(seed))[1]
        inside = np.abs(y) < 1.0  # targets are clipped to [-1, 1]
        np.testing.assert_allclose(y_half[inside], 0.5 * y[inside], atol=1e-5)
    # validation crops are never augmented
    np.testing.assert_array_equal(halved.validation_set(2, seed=1)[1], plain.validation_set(2, seed=1)[1])


def test_cloud_tint_varies_the_clouds_colour_and_nothing_else(shared_data):
    plain = cr.CropSampler([scene_source(shared_data)], 64, synthetic={"cloud_tint": [0.0, 0.0]})
    tinted = cr.CropSampler([scene_source(shared_data)], 64, synthetic={"cloud_tint": [0.5, 0.5]})
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


def test_validation_block_disjoint_from_training_crops(shared_data):
    src = scene_source(shared_data)
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


def test_cross_scene_roles_keep_a_whole_scene_out_of_training(shared_data, tmp_path):
    """A 'validation' source is never trained on and validates over its whole raster; a 'train'
    source has no validation block. Statistics of the held-out scene come from all its rows."""
    d = shared_data / "l8_cloudy_scene"
    train = scene_source(shared_data, role="train")
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
        scene_source(shared_data, role="test").split(64)


def test_paired_source_reads_real_mask(shared_data):
    p = shared_data / "s2_cloud_pair"
    src = cr.TrainingSource(clear=str(p / "clean.tif"), cloudy=str(p / "cloudy.tif"), bands=[2, 3, 4, 8],
                            mask=str(p / "mask.tif"), cloud_values=(1, 2), val_fraction=0.25)
    sampler = cr.CropSampler([src], 64)
    x, y, known, mask = sampler.batch(4, np.random.default_rng(0))
    assert x.shape == (4, 5, 64, 64)
    assert known.all()
    np.testing.assert_array_equal(x[:, 4] > 0.5, mask)


# --------------------------------------------------------------------------- training


def test_tiny_pix2pix_training_lowers_l1_on_fixed_validation_batch(shared_data, tmp_path):
    """The plain pix2pix generator starts from random weights: 40 steps must cut the L1 by 20 %."""
    cfg = cr.TrainConfig(sources=[scene_source(shared_data)], steps=40, val_every=20, generator="plain",
                         num_samples=0, **TINY)
    result = cr.train_cloud_removal(cfg, str(tmp_path / "plain.safetensors"))
    val = result.history["val"]
    assert [v["step"] for v in val] == [0, 20, 40]
    assert val[-1]["l1"] < 0.8 * val[0]["l1"]
    assert val[-1]["psnr"] > val[0]["psnr"]


def test_fill_residual_training_starts_from_the_fill_and_keeps_the_best(trained):
    result, folder, lines, calls = trained
    val = result.history["val"]
    assert [v["step"] for v in val] == [0, 20, 40]
    best = max(val[1:], key=cr.validation_score)
    assert result.metrics == {k: v for k, v in best.items() if k != "step"}
    assert any("Keeping the generator of step" in line for line in lines)
    assert len(result.history["loss_g_l1"]) == 40 == result.steps
    assert result.steps_per_second > 0
    # progress per step with the current losses
    assert len(calls) == 40 and calls[-1][0] == pytest.approx(1.0) and "L1" in calls[-1][1]
    assert any("validation" in line for line in lines)
    # samples for the report
    assert len(result.samples) == 3
    s = result.samples[0]
    assert s["cloudy"].shape == s["generated"].shape == s["clear"].shape == (4, 64, 64)
    assert 0.0 <= s["generated"].min() and s["generated"].max() <= 1.0


def test_model_file_metadata(trained):
    from cloudfree.models.weights import load_model

    result, *_ = trained
    model, meta = load_model(result.model_path, task="cloud_removal", band_count=4)
    assert meta.bands == ["blue", "green", "red", "nir"]
    assert meta.extra_channels == ["cloud_mask"]
    assert meta.normalization["scheme"] == "per_band_clear_percentile"
    assert meta.training["inference_dropout"] is False
    assert meta.training["selected_step"] in (20, 40)
    assert meta.normalization["beyond_clip"] == "log"
    hp = meta.hyperparameters  # the default generator blends an unmixed ground and a fill: 4 bands + the mask
    assert meta.architecture == "fill_residual_generator" and meta.tile_size == 64
    assert hp["bands"] == 4 and hp["extra_channels"] == 1
    assert hp["base_fill"] == "unmix" and hp["unlog_clip"] == meta.normalization["clip"]
    assert hp["head"] == "blend" and hp["residual_scale"] == 0.0
    assert hp["trust_power"] == 2.0 and hp["plausible_range"] == 1.0  # stored, not taken from the code
    assert not model.training


def test_checkpoint_resume_continues_step_count(trained, shared_data, tmp_path):
    result, folder, *_ = trained
    ckpt = folder / "ckpt"
    latest = json.loads((ckpt / "latest.json").read_text())
    assert latest["step"] == 40
    assert (ckpt / latest["checkpoint"] / "generator.safetensors").is_file()
    cfg = cr.TrainConfig(sources=[scene_source(shared_data)], steps=46, val_every=0, checkpoint_every=3,
                         num_samples=1, **TINY)
    out = cr.train_cloud_removal(cfg, str(tmp_path / "resumed.safetensors"), checkpoint_dir=str(tmp_path / "ck2"),
                                 resume_from=str(ckpt))
    assert out.steps == 46
    assert out.history["step"][0] == 1 and out.history["step"][-1] == 46
    assert len(out.history["loss_g_l1"]) == 46
    assert out.history["loss_g_l1"][:40] == result.history["loss_g_l1"]
    assert json.loads((tmp_path / "ck2" / "latest.json").read_text())["step"] == 46
    # the best validation generator of the first run survives the resume (no validation since)
    from cloudfree.models.weights import read_metadata

    first = read_metadata(result.model_path).training["selected_step"]
    assert read_metadata(out.model_path).training["selected_step"] == first


def test_cancel_keeps_last_checkpoint(shared_data, tmp_path):
    cfg = cr.TrainConfig(sources=[scene_source(shared_data)], steps=10, val_every=0, checkpoint_every=2,
                         num_samples=0, **TINY)
    n = {"calls": 0}

    def cancelled():
        n["calls"] += 1
        return n["calls"] > 5  # cancel before step 6

    out_model = tmp_path / "never.safetensors"
    with pytest.raises(Cancelled, match="checkpoint"):
        cr.train_cloud_removal(cfg, str(out_model), checkpoint_dir=str(tmp_path / "ck"), cancelled=cancelled)
    assert not out_model.exists()
    assert json.loads((tmp_path / "ck" / "latest.json").read_text())["step"] == 4
    resumed = cr.train_cloud_removal(cfg, str(out_model), checkpoint_dir=str(tmp_path / "ck"),
                                     resume_from=str(tmp_path / "ck"))
    assert resumed.steps == 10 and len(resumed.history["step"]) == 10 and out_model.exists()


# --------------------------------------------------------------------------- inference


def test_wrong_band_count_is_a_model_file_error(trained, shared_data, tmp_path):
    result, *_ = trained
    p = shared_data / "s2_cloud_pair"
    src = raster_info(str(p / "cloudy.tif"))
    with pytest.raises(ModelFileError, match="4 band"):
        cr.remove_clouds(src, str(tmp_path / "x.tif"), result.model_path, bands=[2, 3, 4],
                         mask=raster_info(str(p / "mask.tif")), device="cpu")
    assert not (tmp_path / "x.tif").exists()


def test_remove_clouds_keeps_clear_pixels_bit_identical(trained, shared_data, tmp_path):
    from osgeo import gdal

    result, *_ = trained
    p = shared_data / "s2_cloud_pair"
    src = raster_info(str(p / "cloudy.tif"))
    mask = raster_info(str(p / "mask.tif"))
    out = tmp_path / "clear.tif"
    fractions = []
    summary = cr.remove_clouds(src, str(out), result.model_path, bands="2,3,4,8", mask=mask, tile=64,
                               overlap=16, device="cpu", feather=4, progress=lambda f, m=None: fractions.append(f))
    assert summary["output"] == str(out) and fractions[-1] == pytest.approx(1.0)
    ds = gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) == (256, 256, 4)
    assert ds.GetGeoTransform() == src.geotransform
    assert ds.GetSpatialRef().GetAuthorityCode(None) == "4326"
    got = ds.ReadAsArray()
    assert got.dtype == np.float32
    orig = gdal.Open(str(p / "cloudy.tif")).ReadAsArray()[[1, 2, 3, 7]]
    m = gdal.Open(str(p / "mask.tif")).ReadAsArray()
    masked = np.isin(m, [1, 2])
    assert np.array_equal(got[:, ~masked].view(np.uint32), orig[:, ~masked].view(np.uint32))
    assert summary["masked_pixels"] == int(masked.sum())
    # inside the mask the values changed, and the generated ones are in the image's own range
    assert (got[:, masked] != orig[:, masked]).mean() > 0.99
    assert np.isfinite(got).all()
    clear_mean = orig[:, ~masked].mean(axis=1)
    gen_mean = got[:, masked].mean(axis=1)
    assert np.all(np.abs(gen_mean - clear_mean) < 0.5 * clear_mean)


def test_feather_weights_inside_mask_only():
    m = np.zeros((20, 20), dtype=bool)
    m[5:15, 5:15] = True
    w = cr.feather_weights(m, 4)
    assert (w[~m] == 0).all()
    assert w[5, 10] == pytest.approx(0.25) and w[10, 10] == 1.0
    assert (w[m] > 0).all()
    np.testing.assert_array_equal(cr.feather_weights(m, 0), m.astype(float))


def test_remove_clouds_integer_dns_keep_dtype(trained, shared_data, tmp_path):
    """Landsat 8 DNs (UInt16, other scaling than the training data): dtype kept, clear pixels exact."""
    from osgeo import gdal

    result, *_ = trained
    d = shared_data / "l8_cloudy_scene"
    src = raster_info(str(d / "bgrn.tif"))
    qa = gdal.Open(str(d / "qa.tif")).ReadAsArray()
    cloud = ((qa >> 14) & 3) == 3
    mask_path = tmp_path / "mask.tif"
    write_array(str(mask_path), cloud.astype(np.uint8), like=src)
    out = tmp_path / "l8.tif"
    cr.remove_clouds(src, str(out), result.model_path, mask=raster_info(str(mask_path)), mask_values=(1,),
                     tile=64, overlap=16, device="cpu")
    got = gdal.Open(str(out)).ReadAsArray()
    orig = gdal.Open(str(d / "bgrn.tif")).ReadAsArray()
    assert got.dtype == np.uint16
    assert np.array_equal(got[:, ~cloud], orig[:, ~cloud])
    valid = orig[:, cloud] > 0
    assert np.median(got[:, cloud][valid]) < np.median(orig[:, cloud][valid])  # clouds were bright


def test_model_with_mask_channel_needs_a_mask(trained, shared_data, tmp_path):
    result, *_ = trained
    src = raster_info(str(shared_data / "s2_cloud_pair" / "cloudy.tif"))
    with pytest.raises(InputError, match="mask"):
        cr.remove_clouds(src, str(tmp_path / "y.tif"), result.model_path, bands=[2, 3, 4, 8], device="cpu")


def test_report_html(trained, tmp_path):
    pytest.importorskip("matplotlib")
    result, *_ = trained
    path = cr.report_html(result.history, result.samples, str(tmp_path / "report.html"))
    text = open(path, encoding="utf-8").read()
    assert text.count("data:image/png;base64,") == 2 + len(result.samples)
    assert os.path.getsize(path) > 1000
