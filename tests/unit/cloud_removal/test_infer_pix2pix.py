"""Removing clouds with or without a mask, with fixed or per-image scaling, on any raster size
(models/cloud_removal/infer.py, scaling.py, feathering.py).

The pix2pix models here are built by hand (a tiny ``unet_generator`` without a mask channel, its
:class:`FixedScaling` learned from real Landsat 8 digital numbers or Sentinel-2 values) so the
expected output is known by construction; training such models end to end is tested with training.
"""

import numpy as np
import pytest
import torch
from osgeo import gdal

from cloudfree.models import cloud_removal as cr
from cloudfree.models import networks
from cloudfree.models.errors import InputError, ModelFileError
from cloudfree.models.normalization import FIXED_SCHEME, FixedScaling
from cloudfree.models.raster import raster_info, read_decimated, write_array
from cloudfree.models.weights import ModelMetadata, save_model, shipped_model

TINY_UNET = {"in_channels": 4, "out_channels": 4, "depth": 4, "base": 8, "max_channels": 32, "norm": "instance",
             "dropout": 0.5, "dropout_blocks": 3, "upsample": "transpose"}
BANDS = ["blue", "green", "red", "nir"]
CONSTANT = np.array([0.5, -0.25, 0.0, 0.75])  # network-space output of the constant model, per band


def save_unet(path, network, normalization, **meta):
    save_model(str(path), network, ModelMetadata(task=cr.TASK, architecture="unet_generator",
                                                 hyperparameters=dict(TINY_UNET), bands=list(BANDS), extra_channels=[],
                                                 normalization=normalization, tile_size=128,
                                                 training={"data_summary": "hand-built test model"}, **meta))
    return str(path)


def random_unet(seed=0):
    torch.manual_seed(seed)
    return networks.build("unet_generator", TINY_UNET).eval()


def constant_unet():
    """Output ``tanh(bias) = CONSTANT`` everywhere: the last (transposed) convolution's weights are zero."""
    net = random_unet(1)
    last = [m for m in net.final.modules() if isinstance(m, torch.nn.ConvTranspose2d)][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.copy_(torch.from_numpy(np.arctanh(CONSTANT)).float())
    return net


def learned_scaling(path):
    info = raster_info(str(path))
    data = read_decimated(info, [1, 2, 3, 4], 512)
    return FixedScaling.learn([band.ravel() for band in data])


@pytest.fixture(scope="module")
def l8_dns(shared_data, tmp_path_factory):
    """Two crops of the real Landsat 8 scene in digital numbers (UInt16): a 192 x 160 one and a 64 x 64 one of a
    brighter place, and a 100 x 101 one, smaller than one tile of 128."""
    folder = tmp_path_factory.mktemp("l8")
    scene = str(shared_data / "l8_cloudy_scene" / "bgrn.tif")
    crops = {"big": [200, 150, 192, 160], "tile": [300, 300, 64, 64], "small": [20, 400, 100, 101]}
    for name, win in crops.items():
        gdal.Translate(str(folder / f"{name}.tif"), scene, srcWin=win)
    return folder


@pytest.fixture(scope="module")
def dn_models(l8_dns, tmp_path_factory):
    """pix2pix models whose fixed scaling was learned on the DNs: a random one and a constant one."""
    folder = tmp_path_factory.mktemp("dn_models")
    fixed = learned_scaling(l8_dns / "big.tif")
    return {"fixed": fixed,
            "random": save_unet(folder / "random.safetensors", random_unet(), fixed.to_dict()),
            "constant": save_unet(folder / "constant.safetensors", constant_unet(), fixed.to_dict())}


@pytest.fixture(scope="module")
def s2_pair(shared_data, tmp_path_factory):
    """The real cloudy Sentinel-2 date (blue, green, red, NIR; Float32), its mask, a 100 x 101 crop of both, and a
    random pix2pix model with a fixed scaling learned on it."""
    folder = tmp_path_factory.mktemp("s2")
    p = shared_data / "s2_cloud_pair"
    for name, win in (("", None), ("_small", [0, 0, 100, 101])):
        opts = {"srcWin": win} if win else {}
        gdal.Translate(str(folder / f"cloudy{name}.tif"), str(p / "cloudy.tif"), bandList=[2, 3, 4, 8], **opts)
        gdal.Translate(str(folder / f"clean{name}.tif"), str(p / "clean.tif"), bandList=[2, 3, 4, 8], **opts)
        gdal.Translate(str(folder / f"mask{name}.tif"), str(p / "mask.tif"), **opts)
    model = save_unet(folder / "s2.safetensors", random_unet(2), learned_scaling(folder / "cloudy.tif").to_dict())
    return folder, model


def read(path):
    return gdal.Open(str(path)).ReadAsArray()


def run(src, out, model, **kw):
    options = kw.pop("options", None) or cr.RemovalOptions(device="cpu")
    return cr.remove_clouds(raster_info(str(src)), str(out), model, options=options, **kw)


# --------------------------------------------------------------------------- fixed scaling


def test_fixed_scaling_model_maps_dns_back_to_dns_with_no_per_image_statistics(l8_dns, dn_models, tmp_path):
    """A constant network output c maps back to offset + c * scale DNs on every image, whatever its own brightness
    (per-image scaling would give each image its own value), and no pixel is left as it was."""
    fixed = dn_models["fixed"]
    expected = np.asarray(fixed.offset) + CONSTANT * np.asarray(fixed.scale)
    assert 3000 < expected.min() and expected.max() < 30000  # the scaling is in DNs
    for name in ("big", "tile", "small"):
        summary = run(l8_dns / f"{name}.tif", tmp_path / f"{name}.tif", dn_models["constant"])
        got = read(tmp_path / f"{name}.tif")
        assert got.dtype == np.uint16
        assert np.abs(got.reshape(4, -1).astype(np.float64) - expected[:, None]).max() <= 1.0, name
        assert summary["normalization"]["scheme"] == FIXED_SCHEME
        assert summary["masked_pixels"] is None
    means = [read(l8_dns / f"{name}.tif").reshape(4, -1).mean(axis=1) for name in ("big", "tile")]
    assert np.abs(means[0] - means[1]).max() > 1000  # two images of clearly different brightness


def test_fixed_scaling_is_applied_to_the_input_as_in_training(l8_dns, dn_models, tmp_path):
    """One tile covering the raster: the output is exactly ``from_network(net(to_network(DNs)))``, rounded to
    UInt16, and clearly not what the image's own percentile statistics would give."""
    fixed = dn_models["fixed"]
    src = l8_dns / "tile.tif"
    run(src, tmp_path / "o.tif", dn_models["random"], options=cr.RemovalOptions(tile=64, overlap=0, device="cpu"))
    got = read(tmp_path / "o.tif").astype(np.float64)
    x = read(src).astype(np.float64)
    net = random_unet()
    with torch.no_grad():
        y = net(torch.from_numpy(fixed.to_network(x[None]))).numpy()
    expected = np.clip(np.rint(fixed.from_network(y)[0].astype(np.float32)), 0, 65535)
    assert np.abs(got - expected).max() <= 1.0
    assert (got != x).mean() > 0.99  # every pixel generated (integer DNs: a few land on their old value)
    per_image = cr.PercentileMap(cr.image_statistics(raster_info(str(src)), [1, 2, 3, 4]),
                                 dict(cr.DEFAULT_NORMALIZATION))
    with torch.no_grad():
        y_pi = net(torch.from_numpy(per_image.to_network(x[None]))).numpy()
    assert np.abs(per_image.from_network(y_pi)[0] - got).mean() > 100  # DNs: the two schemes differ


def test_model_scaling_reads_both_schemes(dn_models):
    fixed = dn_models["fixed"]
    scaling = cr.model_scaling(fixed.to_dict(), "m.safetensors", 4)
    assert scaling.scheme == FIXED_SCHEME and scaling.fixed == fixed
    old = cr.model_scaling({}, "old.safetensors", 4)  # the oldest files record nothing: per image, clipped
    assert old.scheme == cr.NORMALIZATION_SCHEME and old.fixed is None and old.normalization["beyond_clip"] == "clip"


# --------------------------------------------------------------------------- with and without a mask


def test_no_mask_generates_every_pixel_and_a_mask_keeps_clear_pixels_with_a_feathered_edge(s2_pair, tmp_path):
    folder, model = s2_pair
    src, mask = folder / "cloudy.tif", folder / "mask.tif"
    opts = dict(tile=64, overlap=16, device="cpu")
    run(src, tmp_path / "all.tif", model, options=cr.RemovalOptions(**opts))
    orig, generated = read(src).astype(np.float64), read(tmp_path / "all.tif").astype(np.float64)
    assert (generated != orig).all()
    summary = run(src, tmp_path / "masked.tif", model, mask=raster_info(str(mask)), mask_values=(1, 2),
                  options=cr.RemovalOptions(feather=5, **opts))
    got = read(tmp_path / "masked.tif")
    masked = np.isin(read(mask), [1, 2])
    assert 0.05 < masked.mean() < 0.95
    assert np.array_equal(got[:, ~masked].view(np.uint32), read(src)[:, ~masked].view(np.uint32))
    assert summary["masked_pixels"] == int(masked.sum()) and summary["feather"] == 5
    # inside the mask: the no-mask output cross-faded into the input over 5 pixels (fixed scaling: the generated
    # values do not depend on the mask)
    alpha = cr.feather_weights(masked, 5)
    assert alpha[masked].min() == pytest.approx(0.2) and (alpha == 1).sum() > 0.3 * masked.sum()
    np.testing.assert_allclose(got, alpha * generated + (1 - alpha) * orig, rtol=1e-5, atol=1e-6)


def test_feather_zero_puts_generated_pixels_as_they_are(s2_pair, tmp_path):
    folder, model = s2_pair
    src, mask = folder / "cloudy.tif", folder / "mask.tif"
    opts = dict(tile=64, overlap=16, device="cpu")
    run(src, tmp_path / "all.tif", model, options=cr.RemovalOptions(**opts))
    run(src, tmp_path / "hard.tif", model, mask=raster_info(str(mask)), options=cr.RemovalOptions(feather=0, **opts))
    masked = np.isin(read(mask), [1, 2])
    np.testing.assert_allclose(read(tmp_path / "hard.tif")[:, masked], read(tmp_path / "all.tif")[:, masked],
                               rtol=1e-6)


def test_negative_feather_is_an_input_error(s2_pair, tmp_path):
    folder, model = s2_pair
    with pytest.raises(InputError, match="Feather width -1"):
        run(folder / "cloudy.tif", tmp_path / "o.tif", model, mask=raster_info(str(folder / "mask.tif")),
            options=cr.RemovalOptions(feather=-1, device="cpu"))
    assert not (tmp_path / "o.tif").exists()


def test_mask_guided_model_without_a_mask_says_how_to_get_one(s2_pair, tmp_path):
    folder, _ = s2_pair
    with pytest.raises(InputError, match="needs a cloud mask") as err:
        run(folder / "cloudy_small.tif", tmp_path / "o.tif", shipped_model("cloud_removal_small.safetensors"))
    assert "cloud_removal_small.safetensors" in str(err.value) and "cloudy_small" in str(err.value)
    assert "mask layer" in str(err.value) and "pix2pix model trained on cloudy/clear pairs" in str(err.value)
    assert not (tmp_path / "o.tif").exists()


# --------------------------------------------------------------------------- any raster size


def test_raster_smaller_than_a_tile_with_the_shipped_model(s2_pair, tmp_path):
    """100 x 101 px and the shipped model's 128-px tiles, no tile size set: was an InputError, now processed."""
    folder, _ = s2_pair
    src, mask = folder / "cloudy_small.tif", folder / "mask_small.tif"
    summary = run(src, tmp_path / "o.tif", shipped_model("cloud_removal_small.safetensors"),
                  mask=raster_info(str(mask)), mask_values=(1, 2))
    assert summary["tile"] == 128 and summary["padded"]
    got, orig, clean = read(tmp_path / "o.tif"), read(src), read(folder / "clean_small.tif")
    assert got.shape == (4, 101, 100)
    masked = np.isin(read(mask), [1, 2])
    assert masked.sum() > 1000
    assert np.array_equal(got[:, ~masked].view(np.uint32), orig[:, ~masked].view(np.uint32))
    assert (got[:, masked] != orig[:, masked]).mean() > 0.99 and np.isfinite(got).all()
    # the generated pixels are closer to the clear date than the clouds were, and as close as when the same pixels
    # are cleared in the whole 256 x 256 raster (measured: 0.169 cropped, 0.179 whole, 0.241 the cloudy input)
    run(folder / "cloudy.tif", tmp_path / "whole.tif", shipped_model("cloud_removal_small.safetensors"),
        mask=raster_info(str(folder / "mask.tif")), mask_values=(1, 2))
    whole = read(tmp_path / "whole.tif")[:, :101, :100]
    error = {name: np.abs(a[:, masked] - clean[:, masked]).mean() for name, a in
             (("cropped", got), ("whole", whole), ("cloudy", orig))}
    assert error["cropped"] < 0.8 * error["cloudy"] and error["cropped"] < 1.1 * error["whole"]


def test_raster_smaller_than_a_tile_without_a_mask(l8_dns, dn_models, tmp_path):
    summary = run(l8_dns / "small.tif", tmp_path / "o.tif", dn_models["random"])
    assert summary["padded"] and read(tmp_path / "o.tif").shape == (4, 101, 100)


# --------------------------------------------------------------------------- model files of other versions


def test_model_file_of_a_newer_format_names_the_versions(s2_pair, tmp_path):
    folder, _ = s2_pair
    path = save_unet(tmp_path / "new.safetensors", random_unet(), {}, format="cloudfree-model/2")
    with pytest.raises(ModelFileError, match=r"'new.safetensors' has format 'cloudfree-model/2'.*'cloudfree-model/1'"):
        run(folder / "cloudy_small.tif", tmp_path / "o.tif", path)
    assert not (tmp_path / "o.tif").exists()


def test_unknown_scaling_scheme_names_the_file_and_the_scheme(s2_pair, tmp_path):
    folder, _ = s2_pair
    path = save_unet(tmp_path / "future.safetensors", random_unet(), {"scheme": "per_band_quantile_v3"})
    with pytest.raises(ModelFileError, match=r"'future.safetensors'.*'per_band_quantile_v3'.*newer CloudFree"):
        run(folder / "cloudy_small.tif", tmp_path / "o.tif", path)
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.parametrize("normalization, message", [
    ({"scheme": FIXED_SCHEME, "offset": [0.0] * 4}, "damaged fixed scaling"),
    ({"scheme": FIXED_SCHEME, "offset": [0.0] * 3, "scale": [1.0] * 3}, r"3 band\(s\) for 4 model band"),
    ({"scheme": FIXED_SCHEME, "offset": [0.0] * 4, "scale": [1.0, 0.0, 1.0, 1.0]}, "not positive"),
])
def test_damaged_fixed_scaling_is_a_model_file_error(s2_pair, tmp_path, normalization, message):
    folder, _ = s2_pair
    path = save_unet(tmp_path / "bad.safetensors", random_unet(), normalization)
    with pytest.raises(ModelFileError, match=message):
        run(folder / "cloudy_small.tif", tmp_path / "o.tif", path)


def test_old_per_image_file_without_normalisation_settings_still_runs(s2_pair, tmp_path):
    """A pix2pix file that records no normalisation at all (the oldest files): per-image scaling, clipped."""
    folder, _ = s2_pair
    path = save_unet(tmp_path / "old.safetensors", random_unet(), {})
    summary = run(folder / "cloudy_small.tif", tmp_path / "o.tif", path)
    assert summary["normalization"]["scheme"] == cr.NORMALIZATION_SCHEME and summary["padded"]
    assert np.isfinite(read(tmp_path / "o.tif")).all()


def test_mask_from_any_layer_and_values(l8_dns, dn_models, tmp_path, shared_data):
    """A mask with its own values (here Landsat QA-like codes 0/64/128, cloud = 128) on the input's grid."""
    src = raster_info(str(l8_dns / "tile.tif"))
    codes = np.zeros((64, 64), np.uint8)
    codes[10:30, 20:50] = 128
    codes[40:50] = 64
    write_array(str(tmp_path / "qa.tif"), codes, like=src)
    run(l8_dns / "tile.tif", tmp_path / "o.tif", dn_models["constant"], mask=raster_info(str(tmp_path / "qa.tif")),
        mask_values=(128,), options=cr.RemovalOptions(feather=0, device="cpu"))
    got, orig = read(tmp_path / "o.tif"), read(l8_dns / "tile.tif")
    cloud = codes == 128
    assert np.array_equal(got[:, ~cloud], orig[:, ~cloud])
    fixed = dn_models["fixed"]
    expected = np.asarray(fixed.offset) + CONSTANT * np.asarray(fixed.scale)
    assert np.abs(got[:, cloud].astype(np.float64) - expected[:, None]).max() <= 1.0
