"""cloudfree:removeclouds without a mask, with FEATHER, on a raster smaller than a tile (processing.run and
qgis_process)."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from osgeo import gdal
from qgis.core import QgsProcessingException

from cloudfree.models import cloud_removal as cr
from cloudfree.models import networks
from cloudfree.models.normalization import FixedScaling
from cloudfree.models.raster import raster_info, read_decimated
from cloudfree.models.weights import ModelMetadata, save_model
from cloudfree.processing_provider.remove_clouds import RemoveCloudsAlgorithm

ROOT = Path(__file__).resolve().parents[2]
TINY_UNET = {"in_channels": 4, "out_channels": 4, "depth": 4, "base": 8, "max_channels": 32, "norm": "instance",
             "dropout": 0.5, "dropout_blocks": 3, "upsample": "transpose"}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, shared_data):
    """A 100 x 101 crop of the real cloudy Sentinel-2 date (blue, green, red, NIR), its mask, and a hand-built
    pix2pix model (no mask channel) with a fixed scaling learned on the full date."""
    folder = tmp_path_factory.mktemp("pix2pix")
    pair = shared_data / "s2_cloud_pair"
    gdal.Translate(str(folder / "full.tif"), str(pair / "cloudy.tif"), bandList=[2, 3, 4, 8])
    gdal.Translate(str(folder / "small.tif"), str(pair / "cloudy.tif"), bandList=[2, 3, 4, 8], srcWin=[0, 0, 100, 101])
    gdal.Translate(str(folder / "mask.tif"), str(pair / "mask.tif"), srcWin=[0, 0, 100, 101])
    data = read_decimated(raster_info(str(folder / "full.tif")), [1, 2, 3, 4], 256)
    torch.manual_seed(0)
    model = str(folder / "pix2pix.safetensors")
    save_model(model, networks.build("unet_generator", TINY_UNET), ModelMetadata(
        task=cr.TASK, architecture="unet_generator", hyperparameters=dict(TINY_UNET),
        bands=["blue", "green", "red", "nir"], normalization=FixedScaling.learn([b.ravel() for b in data]).to_dict(),
        tile_size=64, training={"data_summary": "hand-built test model"}))
    return folder, model


def read(path):
    return gdal.Open(str(path)).ReadAsArray()


def test_pix2pix_model_without_a_mask_generates_every_pixel(run_alg, tmp_path, inputs):
    folder, model = inputs
    result = run_alg("cloudfree:removeclouds", {"INPUT": str(folder / "small.tif"), "MODEL": model,
                                                "OUTPUT": str(tmp_path / "o.tif")})
    got, orig = read(result["OUTPUT"]), read(folder / "small.tif")
    assert got.shape == orig.shape == (4, 101, 100)
    assert (got != orig).all()


def test_feather_parameter_cross_fades_into_the_mask_edge(run_alg, tmp_path, inputs):
    folder, model = inputs
    base = {"INPUT": str(folder / "small.tif"), "MODEL": model, "TILE_SIZE": 64, "OVERLAP": 16}
    generated = read(run_alg("cloudfree:removeclouds", {**base, "OUTPUT": str(tmp_path / "all.tif")})["OUTPUT"])
    outputs = {}
    for feather in (0, 6):
        outputs[feather] = read(run_alg("cloudfree:removeclouds", {
            **base, "MASK": str(folder / "mask.tif"), "MASK_VALUES": "1,2", "FEATHER": feather,
            "OUTPUT": str(tmp_path / f"f{feather}.tif")})["OUTPUT"])
    orig = read(folder / "small.tif").astype(np.float64)
    masked = np.isin(read(folder / "mask.tif"), [1, 2])
    for feather, got in outputs.items():
        assert np.array_equal(got[:, ~masked].view(np.uint32), orig[:, ~masked].astype(np.float32).view(np.uint32))
        alpha = cr.feather_weights(masked, feather)
        np.testing.assert_allclose(got, alpha * generated + (1 - alpha) * orig, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(outputs[0], outputs[6])


def test_mask_guided_model_without_a_mask_is_a_clear_error(run_alg, tmp_path, inputs):
    folder, _ = inputs
    with pytest.raises(QgsProcessingException, match="needs a cloud mask.*pix2pix model"):
        run_alg("cloudfree:removeclouds", {"INPUT": str(folder / "small.tif"), "OUTPUT": str(tmp_path / "o.tif")})
    assert os.listdir(tmp_path) == []


def test_feather_is_an_advanced_optional_parameter_and_help_names_the_chain(provider):
    alg = provider.algorithm("removeclouds")
    feather = alg.parameterDefinition(RemoveCloudsAlgorithm.FEATHER)
    assert feather.flags() & feather.FlagAdvanced and feather.flags() & feather.FlagOptional
    assert alg.parameterDefinition(RemoveCloudsAlgorithm.MASK).flags() & feather.FlagOptional
    help_text = alg.shortHelpString()
    assert "Without a mask" in help_text and "pix2pix" in help_text and "Fmask" in help_text


def test_headless_small_raster_with_the_shipped_model_and_no_tile_size(tmp_path, inputs):
    """100 x 101 px with the shipped model (128-px tiles): was 'smaller than one tile', now processed."""
    folder, _ = inputs
    out = tmp_path / "free.tif"
    proc = subprocess.run([str(ROOT / "scripts" / "qgis_process"), "--json", "run", "cloudfree:removeclouds", "--",
                           f"INPUT={folder / 'small.tif'}", f"MASK={folder / 'mask.tif'}", "FEATHER=3",
                           f"OUTPUT={out}"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert json.loads(proc.stdout)["results"]["OUTPUT"] == str(out)
    got, orig = read(out), read(folder / "small.tif")
    masked = np.isin(read(folder / "mask.tif"), [1, 2])
    assert got.shape == (4, 101, 100)
    assert np.array_equal(got[:, ~masked], orig[:, ~masked])
    assert (got[:, masked] != orig[:, masked]).mean() > 0.99
