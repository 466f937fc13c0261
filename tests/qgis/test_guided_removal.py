"""Guided cloud removal through Processing: traincloudremoval with guides (self-supervised), removeclouds with
two guide dates and one radar layer headless, the matched-copy and fusion methods, bad guide input."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException

from cloudfree.models.clouds import CloudParams, simulate_clouds
from cloudfree.models.raster import raster_info, write_array
from cloudfree.models.weights import read_metadata
from cloudfree.processing_provider.remove_clouds import RemoveCloudsAlgorithm as Remove
from cloudfree.processing_provider.train_cloud_removal import TrainCloudRemovalAlgorithm as Train

ROOT = Path(__file__).resolve().parents[2]
FAST = {Train.TILE_SIZE: 64, Train.STEPS: 3, Train.BATCH_SIZE: 2, Train.DEVICE: 1, Train.VALIDATION_EVERY: 3}


@pytest.fixture(scope="module")
def place(shared_data, tmp_path_factory):
    """ben0 (Sentinel-2 L2A, 4 bands) with thick synthetic clouds, two other 'dates' of it (the real patch with a
    change of brightness, as another season gives) and its real Sentinel-1 VV/VH patch as radar."""
    folder = tmp_path_factory.mktemp("guided_place")
    b = shared_data / "s1_s2_pairs"
    src = raster_info(str(b / "ben0_s2_bgrn.tif"))
    dn = gdal.Open(src.path).ReadAsArray().astype(np.float32)
    dates = [write_array(str(folder / f"S2_2018060{k}.tif"), gain * dn, like=src, dtype="float32")
             for k, gain in ((1, 0.9), (5, 1.15))]
    cloudy, mask = str(folder / "S2_20180603.tif"), str(folder / "mask.tif")
    simulate_clouds(src, cloudy, mask, CloudParams(seed=2, coverage=0.3, thickness=1.0, shadows=False, scale=30))
    return {"target": src.path, "cloudy": cloudy, "mask": mask, "dates": dates, "radar": str(b / "ben0_s1_vvvh.tif")}


@pytest.fixture()
def guided_model(run_alg, place, tmp_path):
    out = tmp_path / "guided.safetensors"
    result = run_alg("cloudfree:traincloudremoval", {
        Train.CLEAR: place["target"], Train.GUIDES: place["dates"] + [place["radar"]], **FAST,
        Train.OUTPUT_MODEL: str(out)})
    return result[Train.OUTPUT_MODEL]


def test_training_with_guides_gives_a_guided_model_that_expects_dates_and_radar(guided_model):
    meta = read_metadata(guided_model)
    assert meta.architecture == "guided_generator"
    assert meta.training["guide_kinds"] == {"optical": True, "radar": 2}  # the S1 layer was recognised as radar


def test_headless_removal_with_two_guide_dates_and_one_radar_layer(place, guided_model, tmp_path):
    out = tmp_path / "guided.tif"
    proc = subprocess.run([str(ROOT / "scripts" / "qgis_process"), "--json", "run", "cloudfree:removeclouds", "--",
                           f"INPUT={place['cloudy']}", f"MASK={place['mask']}", "MASK_VALUES=1",
                           f"MODEL={guided_model}", *[f"GUIDES={d}" for d in place["dates"]],
                           f"RADAR_GUIDES={place['radar']}", f"OUTPUT={out}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["results"]["OUTPUT"] == str(out)
    got, cloudy = gdal.Open(str(out)).ReadAsArray(), gdal.Open(place["cloudy"]).ReadAsArray()
    clear = gdal.Open(place["mask"]).ReadAsArray() != 1
    assert np.array_equal(got[:, clear], cloudy[:, clear])


def test_without_its_radar_the_guided_model_says_what_is_missing(run_alg, place, guided_model, tmp_path):
    with pytest.raises(QgsProcessingException, match="Sentinel-1 radar"):
        run_alg("cloudfree:removeclouds", {Remove.INPUT: place["cloudy"], Remove.MASK: place["mask"],
                                           Remove.MASK_VALUES: "1", Remove.MODEL: guided_model,
                                           Remove.GUIDES: place["dates"], Remove.OUTPUT: str(tmp_path / "x.tif")})
    assert not (tmp_path / "x.tif").exists()


@pytest.mark.parametrize("method", [1, 2])  # matched copy, fusion composite
def test_baseline_methods_fill_the_clouds_from_the_guide_dates(run_alg, place, tmp_path, method):
    out = run_alg("cloudfree:removeclouds", {Remove.INPUT: place["cloudy"], Remove.MASK: place["mask"],
                                             Remove.MASK_VALUES: "1", Remove.METHOD: method,
                                             Remove.GUIDES: place["dates"], Remove.OUTPUT: str(tmp_path / "b.tif")})
    got = gdal.Open(out[Remove.OUTPUT]).ReadAsArray().astype(np.float64)
    truth = gdal.Open(place["target"]).ReadAsArray().astype(np.float64)
    cloud = gdal.Open(place["mask"]).ReadAsArray() == 1
    # the guide dates are the target up to a gain: a matched copy is nearly exact, the median close
    err = np.abs(got[:, cloud] - truth[:, cloud]).mean() / truth[:, cloud].mean()
    assert err < (0.05 if method == 1 else 0.2), err


def test_guide_masks_must_match_the_optical_guides(run_alg, place, tmp_path):
    with pytest.raises(QgsProcessingException, match="1 guide mask.* for 2 optical guide"):
        run_alg("cloudfree:removeclouds", {Remove.INPUT: place["cloudy"], Remove.MASK: place["mask"],
                                           Remove.METHOD: 1, Remove.GUIDES: place["dates"],
                                           Remove.GUIDE_MASKS: [place["mask"]], Remove.OUTPUT: str(tmp_path / "y.tif")})


def test_the_fill_method_needs_no_guide_and_takes_any_band_count(run_alg, place, tmp_path):
    """METHOD fill: the unguided unmixing fill, here on three of the four bands (no shipped model has three)."""
    three = str(tmp_path / "three.tif")
    gdal.Translate(three, place["cloudy"], bandList=[1, 2, 3])
    out = run_alg("cloudfree:removeclouds", {Remove.INPUT: three, Remove.MASK: place["mask"], Remove.MASK_VALUES: "1",
                                             Remove.METHOD: 3, Remove.OUTPUT: str(tmp_path / "f.tif")})
    got, src = gdal.Open(out[Remove.OUTPUT]).ReadAsArray(), gdal.Open(three).ReadAsArray()
    cloud = gdal.Open(place["mask"]).ReadAsArray() == 1
    assert got.shape == src.shape and np.array_equal(got[:, ~cloud], src[:, ~cloud])
    truth = gdal.Open(place["target"]).ReadAsArray()[:3].astype(np.float64)
    assert np.abs(got[:, cloud] - truth[:, cloud]).mean() < np.abs(src[:, cloud] - truth[:, cloud]).mean() / 3
