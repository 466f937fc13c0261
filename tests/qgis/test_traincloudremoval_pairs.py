"""cloudfree:traincloudremoval on several cloudy/clear pairs (two multiple-layer inputs or a pairs file), with the
advanced knobs, then cloudfree:removeclouds with the trained model and no mask (processing.run)."""

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException

from cloudfree.models.normalization import FIXED_SCHEME, FixedScaling
from cloudfree.models.raster import write_array
from cloudfree.models.weights import read_metadata
from cloudfree.processing_provider.train_cloud_removal import TrainCloudRemovalAlgorithm as Train

FAST = {Train.TILE_SIZE: 64, Train.STEPS: 3, Train.BATCH_SIZE: 2, Train.DEVICE: 1, Train.VALIDATION_EVERY: 3}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, shared_data):
    """Three real Sentinel-2 patches (UInt16 digital numbers) as cloudy rasters and a radiometric change of each
    (0.8 x DN + 1000, Float32) as its clear raster, each pair on its own grid."""
    folder = tmp_path_factory.mktemp("pairs")
    cloudy, clear = [], []
    for k in range(3):
        ds = gdal.Open(str(shared_data / "s1_s2_pairs" / f"ben{k}_s2_bgrn.tif"))
        dn = ds.ReadAsArray()
        grid = dict(geotransform=ds.GetGeoTransform(), crs_wkt=ds.GetProjection())
        cloudy.append(write_array(str(folder / f"cloudy_{k}.tif"), dn, dtype="uint16", **grid))
        clear.append(write_array(str(folder / f"clear_{k}.tif"), (0.8 * dn + 1000).astype(np.float32), **grid))
    return folder, cloudy, clear


def test_train_on_two_multiple_layer_inputs_then_remove_clouds_without_a_mask(run_alg, tmp_path, pairs, shared_data):
    folder, cloudy, clear = pairs
    result = run_alg("cloudfree:traincloudremoval", {
        Train.CLOUDY_LAYERS: cloudy, Train.CLEAR_LAYERS: clear, **FAST,
        Train.OUTPUT_MODEL: str(tmp_path / "pix2pix.safetensors"), Train.OUTPUT_REPORT: str(tmp_path / "r.html")})
    meta = read_metadata(result[Train.OUTPUT_MODEL])
    assert meta.architecture == "unet_generator" and meta.extra_channels == []  # pix2pix, no mask needed
    assert meta.normalization["scheme"] == FIXED_SCHEME and meta.training["scaling"] == "learned"
    assert len(meta.training["held_out"]) == 1 and len(meta.training["sources"]) == 3  # one whole pair held out
    assert meta.metrics["held_out_pairs"][0]["pair"] == meta.training["held_out"][0]
    report = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Held-out figures per pair" in report and "D real" in report
    # the trained model clears another place without a mask: every pixel is generated
    unseen = shared_data / "s1_s2_pairs" / "ben4_s2_bgrn.tif"
    removed = run_alg("cloudfree:removeclouds", {"INPUT": str(unseen), "MODEL": result[Train.OUTPUT_MODEL],
                                                 "OUTPUT": str(tmp_path / "clear_ben4.tif")})
    out = removed["OUTPUT"]
    assert 0 <= removed["OUTSIDE_TRAINING_RANGE"] <= 1  # the model records the range of its training inputs
    src, got = gdal.Open(str(unseen)).ReadAsArray(), gdal.Open(out).ReadAsArray()
    assert got.shape == src.shape and (got != src).mean() > 0.99


@pytest.mark.parametrize("listing", ["csv", "folder"])
def test_pairs_file_and_the_advanced_knobs(run_alg, tmp_path, pairs, listing):
    folder, cloudy, clear = pairs
    if listing == "csv":
        where = folder / "pairs.csv"
        where.write_text("cloudy,clear\n" + "".join(f"cloudy_{k}.tif,clear_{k}.tif\n" for k in range(3)))
    else:  # cloudy/ and clear/ subfolders, rasters matched by file name
        where = tmp_path / "pairs"
        for sub, paths in (("cloudy", cloudy), ("clear", clear)):
            (where / sub).mkdir(parents=True)
            for k, path in enumerate(paths):
                (where / sub / f"cloudy_{k}.tif").write_bytes(open(path, "rb").read())
    result = run_alg("cloudfree:traincloudremoval", {
        Train.PAIRS_FILE if listing == "csv" else Train.PAIRS_FOLDER: str(where), **FAST, Train.GENERATOR: 1,
        Train.SCALING: 2, Train.LAMBDA_L1: 50.0, Train.GAN_MODE: 1, Train.DISC_LAYERS: 2, Train.LR_DECAY: 0.25, Train.LEARNING_RATE: 1e-3,
        Train.OUTPUT_MODEL: str(tmp_path / "m.safetensors")})
    meta = read_metadata(result[Train.OUTPUT_MODEL])
    assert meta.normalization == FixedScaling.preset("sentinel2_l1c", 4).to_dict()
    config = meta.training["config"]
    assert (config["lambda_l1"], config["gan_mode"], config["disc_layers"], config["lr"]) == (50.0, "lsgan", 2, 1e-3)
    assert config["lr_decay_start"] == pytest.approx(0.75) and meta.training["generator"] == "pix2pix"
    assert sorted(meta.training["sources"]) == ["cloudy_0", "cloudy_1", "cloudy_2"]


@pytest.mark.parametrize("extra, message", [
    ({Train.CLEAR_LAYERS: "first"}, r"2 cloudy raster\(s\) and 1 clear raster\(s\)"),
    ({Train.CLEAR_LAYERS: "all", Train.GENERATOR: 2}, "unmix_blend generator needs a cloud mask for every"),
    ({}, "Nothing to train on"),
])
def test_bad_pair_inputs_are_clear_errors(run_alg, tmp_path, pairs, extra, message):
    folder, cloudy, clear = pairs
    params = {**FAST, Train.OUTPUT_MODEL: str(tmp_path / "never.safetensors")}
    if extra:
        params.update(extra, **{Train.CLOUDY_LAYERS: cloudy[:2]})
        params[Train.CLEAR_LAYERS] = clear[:1] if extra[Train.CLEAR_LAYERS] == "first" else clear[:2]
    with pytest.raises(QgsProcessingException, match=message):
        run_alg("cloudfree:traincloudremoval", params)
    assert not (tmp_path / "never.safetensors").exists()
