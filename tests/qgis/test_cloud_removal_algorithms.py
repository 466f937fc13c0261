"""cloudfree:removeclouds and cloudfree:traincloudremoval through processing.run and qgis_process."""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException

from cloudfree.models import cloud_removal as cr
from cloudfree.models import raster, weights

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pair_bgrn(tmp_path_factory, shared_data):
    """The real cloudy date of s2_cloud_pair as blue, green, red, NIR (bands 2, 3, 4, 8 of 12, values
    unchanged; outside every test's tmp_path) and its cloud mask (0 clear, 1 cloud, 2 shadow, 3 other)."""
    pair = shared_data / "s2_cloud_pair"
    cloudy = tmp_path_factory.mktemp("s2_pair") / "cloudy_bgrn.tif"
    gdal.Translate(str(cloudy), str(pair / "cloudy.tif"), bandList=[2, 3, 4, 8])
    return cloudy, pair / "mask.tif"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory, shared_data):
    """A 4-band model trained for a few steps on real clear pixels (fast; quality irrelevant here)."""
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    source = cr.TrainingSource(clear=str(shared_data / "s2_cloudy_scene" / "scene.tif"), bands=[1, 2, 3, 4],
                               mask=str(shared_data / "s2_cloudy_scene" / "mask.tif"), clear_values=(1, 2, 3))
    config = cr.TrainConfig(sources=[source], band_names=["blue", "green", "red", "nir"], depth=4, base=8,
                            max_channels=32, tile=64, steps=4, batch_size=2, val_every=4, val_tiles=2,
                            checkpoint_every=100, device="cpu", num_threads=1)
    cr.train_cloud_removal(config, str(path))
    return str(path)


def read(path):
    return gdal.Open(str(path)).ReadAsArray()


def test_removeclouds_with_mask_keeps_clear_pixels_bit_identical(run_alg, tmp_path, tiny_model, pair_bgrn):
    cloudy, cloud_mask = pair_bgrn
    out = tmp_path / "free.tif"
    result = run_alg("cloudfree:removeclouds", {
        "INPUT": str(cloudy), "MODEL": tiny_model,
        "MASK": str(cloud_mask), "MASK_VALUES": "1,2", "TILE_SIZE": 64, "OVERLAP": 16,
        "OUTPUT": str(out)})
    src, got, mask = read(cloudy), read(result["OUTPUT"]), read(cloud_mask)
    clear = ~np.isin(mask, [1, 2])
    assert np.array_equal(got[:, clear], src[:, clear])
    assert not np.array_equal(got[:, ~clear], src[:, ~clear])
    a, b = raster.raster_info(str(cloudy)), raster.raster_info(result["OUTPUT"])
    assert (b.geotransform, b.crs_label(), b.band_count, b.dtype) == (a.geotransform, a.crs_label(), 4, a.dtype)


def test_removeclouds_picks_bands_of_a_12_band_input(run_alg, tmp_path, tiny_model, shared_data):
    pair = shared_data / "s2_cloud_pair"
    result = run_alg("cloudfree:removeclouds", {
        "INPUT": str(pair / "cloudy.tif"), "BANDS": "2,3,4,8", "MODEL": tiny_model, "MASK": str(pair / "mask.tif"),
        "TILE_SIZE": 64, "OUTPUT": str(tmp_path / "o.tif")})
    assert raster.raster_info(result["OUTPUT"]).band_count == 4


@pytest.mark.parametrize("bands, message", [("1,2,3", r"expects 4 band\(s\)"), ("1,2,3,9", r"band number\(s\) \[9\]")])
def test_band_mismatch_is_a_clear_error_and_writes_nothing(run_alg, tmp_path, tiny_model, pair_bgrn, bands, message):
    cloudy, cloud_mask = pair_bgrn
    with pytest.raises(QgsProcessingException, match=message):
        run_alg("cloudfree:removeclouds", {
            "INPUT": str(cloudy), "BANDS": bands, "MODEL": tiny_model,
            "MASK": str(cloud_mask), "TILE_SIZE": 64, "OUTPUT": str(tmp_path / "o.tif")})
    assert os.listdir(tmp_path) == []


def test_corrupt_model_file_is_a_clear_error(run_alg, tmp_path, pair_bgrn):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(QgsProcessingException, match="corrupt"):
        run_alg("cloudfree:removeclouds", {"INPUT": str(pair_bgrn[0]), "MODEL": str(bad),
                                           "OUTPUT": str(tmp_path / "o.tif")})
    assert os.listdir(tmp_path) == ["bad.safetensors"]


def test_raster_smaller_than_a_tile_is_mirror_padded_and_processed(run_alg, tmp_path, tiny_model, pair_bgrn):
    """Was refused ('40x40 px is smaller than one 64-pixel tile'); issue 12: reflect-padded and processed."""
    cloudy, cloud_mask = pair_bgrn
    small = tmp_path / "small.tif"
    small_mask = tmp_path / "small_mask.tif"
    gdal.Translate(str(small), str(cloudy), srcWin=[0, 0, 40, 40])
    gdal.Translate(str(small_mask), str(cloud_mask), srcWin=[0, 0, 40, 40])
    result = run_alg("cloudfree:removeclouds", {"INPUT": str(small), "MODEL": tiny_model, "TILE_SIZE": 64,
                                                "MASK": str(small_mask), "OUTPUT": str(tmp_path / "o.tif")})
    got, src, clear = read(result["OUTPUT"]), read(small), ~np.isin(read(small_mask), [1, 2])
    assert got.shape == (4, 40, 40) and 0 < clear.sum() < clear.size
    assert np.array_equal(got[:, clear], src[:, clear]) and (got[:, ~clear] != src[:, ~clear]).mean() > 0.99
    assert sorted(os.listdir(tmp_path)) == ["o.tif", "small.tif", "small_mask.tif"]


def test_traincloudremoval_synthetic_mode_writes_model_and_report(run_alg, tmp_path, shared_data):
    scene = shared_data / "s2_cloudy_scene"
    result = run_alg("cloudfree:traincloudremoval", {
        "CLEAR": str(scene / "scene.tif"), "MASK": str(scene / "mask.tif"), "MASK_VALUES": "4,0", "BANDS": "1,2,3,4",
        "TILE_SIZE": 64, "STEPS": 3, "BATCH_SIZE": 2, "MODEL_SIZE": 0, "DEVICE": 1, "SEED": 1,
        "OUTPUT_MODEL": str(tmp_path / "m.safetensors"), "OUTPUT_REPORT": str(tmp_path / "report.html")})
    meta = weights.read_metadata(result["OUTPUT_MODEL"])
    assert meta.task == "cloud_removal" and meta.band_count == 4 and meta.tile_size == 64
    assert (tmp_path / "report.html").stat().st_size > 10000
    assert (tmp_path / "m.safetensors.checkpoints").is_dir()


def test_shipped_model_has_complete_metadata():
    path = weights.shipped_model("cloud_removal_small.safetensors")
    meta = weights.read_metadata(path)
    assert meta.bands == ["blue", "green", "red", "nir"]
    assert "s2_cloud_pair" in json.dumps(meta.training)  # names its held-out test set...
    assert "held_out" in meta.metrics  # ...and carries the figures measured on it
    assert os.path.getsize(path) < 50 * 2 ** 20


def test_removeclouds_headless_with_the_shipped_model(tmp_path, pair_bgrn):
    cloudy, cloud_mask = pair_bgrn
    out = tmp_path / "free.tif"
    proc = subprocess.run([str(ROOT / "scripts" / "qgis_process"), "--json", "run", "cloudfree:removeclouds", "--",
                           f"INPUT={cloudy}", f"MASK={cloud_mask}",
                           f"OUTPUT={out}"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    info = raster.raster_info(str(out))
    assert info.crs_label() == "EPSG:4326"
    assert info.geotransform == raster.raster_info(str(cloudy)).geotransform


@pytest.mark.parametrize("with_radar", [False, True])
def test_removeclouds_picks_the_residual_model_for_l1c_bands_and_says_why(run_logged, tmp_path, shared_data,
                                                                          with_radar):
    """No MODEL, a real SEN12MS-CR triplet's L1C bands B2/B3/B4/B8 and its mask (optionally its radar): the
    shipped residual generator runs, the log names it and the reason, clear pixels stay as they were, and
    the cloud is closer to the clear date than the input is."""
    folder = shared_data / "sen12mscr_triplets"
    params = {"INPUT": str(folder / "4287_s2_cloudy.tif"), "BANDS": "2,3,4,8", "MASK": str(folder / "4287_mask.tif"),
              "MASK_VALUES": "1", "OUTPUT": str(tmp_path / "free.tif")}
    if with_radar:
        params["RADAR_GUIDES"] = str(folder / "4287_s1.tif")
    result, log = run_logged("cloudfree:removeclouds", params)
    assert "cloud_removal_s2_s1.safetensors" in log
    assert ("with the radar guide" if with_radar else "without radar") in log
    src = read(folder / "4287_s2_cloudy.tif")[[1, 2, 3, 7]].astype(np.float32)
    clear = read(folder / "4287_s2_clear.tif")[[1, 2, 3, 7]].astype(np.float32)
    got, cloud = read(result["OUTPUT"]).astype(np.float32), read(folder / "4287_mask.tif") == 1
    assert np.array_equal(got[:, ~cloud], src[:, ~cloud])
    err = lambda a: np.abs(a[:, cloud] - clear[:, cloud]).mean()  # noqa: E731
    assert err(got) < 0.5 * err(src)


def test_traincloudremoval_learns_from_a_triplet_folder(run_logged, tmp_path, shared_data):
    """TRIPLETS_FOLDER trains the residual generator on real triplets (with their radar) and the model file
    says what it saw; removeclouds then runs it with and without radar."""
    folder = shared_data / "sen12mscr_triplets"
    model = tmp_path / "mine.safetensors"
    result, log = run_logged("cloudfree:traincloudremoval", {
        "TRIPLETS_FOLDER": str(folder), "CLEAR_FOLDER": str(shared_data / "sen12mscr_ts" / "clear_patches"),
        "BANDS": "2,3,4,8", "STEPS": 2, "DEVICE": 1, "OUTPUT_MODEL": str(model)})
    assert "with radar" in log and "clear raster(s) for synthetic clouds" in log
    meta = weights.read_metadata(result["OUTPUT_MODEL"])
    assert meta.architecture == "residual_generator" and meta.training["radar_optional"]
    assert "4287" in meta.training["source"] and meta.training["input_range"]["low"]
    for extra in ({}, {"RADAR_GUIDES": str(folder / "4287_s1.tif")}):
        out, _ = run_logged("cloudfree:removeclouds", {
            "INPUT": str(folder / "4287_s2_cloudy.tif"), "BANDS": "2,3,4,8", "MODEL": str(model),
            "MASK": str(folder / "4287_mask.tif"), "MASK_VALUES": "1", "OUTPUT": str(tmp_path / f"o{len(extra)}.tif"),
            **extra})
        assert np.isfinite(read(out["OUTPUT"])).all()


def test_traincloudremoval_refuses_a_triplet_without_its_radar(run_alg, tmp_path, shared_data):
    folder = tmp_path / "triplets"
    folder.mkdir()
    src = shared_data / "sen12mscr_triplets"
    for tid in ("4287", "581"):
        for suffix in ("_s2_cloudy.tif", "_s2_clear.tif", "_mask.tif") + (("_s1.tif",) if tid == "4287" else ()):
            (folder / f"{tid}{suffix}").symlink_to(src / f"{tid}{suffix}")
    with pytest.raises(QgsProcessingException, match=r"'581'.*radar.*581_s1\.tif"):
        run_alg("cloudfree:traincloudremoval", {"TRIPLETS_FOLDER": str(folder), "BANDS": "2,3,4,8", "STEPS": 2,
                                                "OUTPUT_MODEL": str(tmp_path / "m.safetensors")})
    assert not (tmp_path / "m.safetensors").exists()
