"""Generator kinds and model sizes (models/cloud_removal/generators.py, config.py)."""

import pytest
import torch

from cloudfree.models import cloud_removal as cr
from cloudfree.models.errors import InputError


@pytest.mark.parametrize("bands", [3, 4, 6])
@pytest.mark.parametrize("tile", [64, 128])
def test_generator_output_shapes(bands, tile):
    for kind, with_mask in (("plain", False), ("plain", True), ("unmix_blend", True)):
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


def test_model_sizes_and_tile_check():
    assert cr.MODEL_SIZES["full"]["depth"] == 8 and cr.MODEL_SIZES["full"]["base"] == 64
    assert cr.MODEL_SIZES["full"]["tile"] == 256
    assert cr.MODEL_SIZES["small"]["tile"] % 2 ** cr.MODEL_SIZES["small"]["depth"] == 0
    with pytest.raises(InputError, match="divisible"):
        cr.TrainConfig(sources=[], size="small", tile=96).resolved()
    with pytest.raises(InputError, match="size"):
        cr.TrainConfig(sources=[], size="huge").resolved()


def test_unknown_generator_size_is_an_input_error():
    """build_generator with an unknown size raised a bare KeyError."""
    with pytest.raises(InputError, match="Unknown model size 'huge'"):
        cr.build_generator(5, 4, "huge")


def test_invalid_training_settings_are_input_errors():
    """A negative seed, an empty batch or an unknown norm layer failed deep inside numpy/torch
    (ValueError) once the data and networks were set up; now the configuration says so."""
    with pytest.raises(InputError, match="seed must be at least 0"):
        cr.TrainConfig(sources=[], seed=-1).resolved()
    with pytest.raises(InputError, match="batch_size must be at least 1"):
        cr.TrainConfig(sources=[], batch_size=0).resolved()
    with pytest.raises(InputError, match="norm"):
        cr.TrainConfig(sources=[], norm="group").resolved()


def test_files_of_the_dropped_residual_generators_still_load_and_run(shared_data, tmp_path):
    """``unmix_residual``/``fill_residual`` are no longer offered, but a file carries its architecture and
    hyper-parameters, so a model written with them still loads and removes clouds."""
    from cloudfree.models import networks
    from cloudfree.models.raster import raster_info
    from cloudfree.models.weights import ModelMetadata, save_model

    hp = {"bands": 4, "extra_channels": 1, "depth": 4, "base": 8, "max_channels": 32, "norm": "instance",
          "dropout": 0.5, "dropout_blocks": 3, "upsample": "transpose", "base_fill": "unmix", "unlog_clip": 2.0,
          "head": "residual", "residual_scale": 1.0}
    net = networks.build("fill_residual_generator", hp)
    path = save_model(str(tmp_path / "old.safetensors"), net, ModelMetadata(
        task=cr.TASK, architecture="fill_residual_generator", hyperparameters=hp, bands=["b", "g", "r", "n"],
        extra_channels=["cloud_mask"], normalization=dict(cr.DEFAULT_NORMALIZATION), tile_size=64))
    with pytest.raises(InputError, match="Unknown generator|must be one of"):
        cr.TrainConfig(sources=[], generator="unmix_residual").resolved()
    p = shared_data / "s2_cloud_pair"
    out = tmp_path / "out.tif"
    cr.remove_clouds(raster_info(str(p / "cloudy.tif")), str(out), path, bands="2,3,4,8",
                     mask=raster_info(str(p / "mask.tif")), options=cr.RemovalOptions(tile=64, device="cpu"))
    assert out.exists()
