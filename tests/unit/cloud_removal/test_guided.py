"""Cloud removal guided by other dates and by radar (models/cloud_removal/guided.py, baselines.py, the guided
paths of sources.py, crops.py, train.py and infer.py), on real Sentinel-2 dates and Sentinel-1 patches."""

import numpy as np
import pytest
from osgeo import gdal

from cloudfree.models import cloud_removal as cr
from cloudfree.models.cloud_removal.baselines import fusion_composite, matched_copy_model
from cloudfree.models.cloud_removal.guides import Guide
from cloudfree.models.clouds import CloudParams, simulate_clouds
from cloudfree.models.errors import InputError
from cloudfree.models.raster import raster_info, write_array
from cloudfree.models.weights import read_metadata

TINY = dict(depth=3, base=8, max_channels=16, tile=32, batch_size=2, val_every=3, checkpoint_every=10 ** 6,
            num_samples=1, device="cpu")
BANDS = [2, 3, 4, 8]


@pytest.fixture(scope="module")
def stack(shared_data, tmp_path_factory):
    """The clear 2015-07-11 date (bands B02, B03, B04, B08) with thick synthetic clouds and its guides."""
    d = shared_data / "s2_multidate_stack"
    folder = tmp_path_factory.mktemp("guided")
    src = raster_info(str(d / "s2_20150711.tif"))
    clear = write_array(str(folder / "clear.tif"), gdal.Open(src.path).ReadAsArray()[[b - 1 for b in BANDS]], like=src)
    cloudy, mask = str(folder / "cloudy.tif"), str(folder / "mask.tif")
    simulate_clouds(raster_info(clear), cloudy, mask, CloudParams(seed=4, coverage=0.4, thickness=1.0, shadows=False,
                                                                  scale=30))
    guides = [Guide(str(d / "s2_20150830.tif"), mask=str(d / "clm_20150830.tif"), mask_values=(1,), name="s2_20150830"),
              Guide(str(d / "s2_20150909.tif"), mask=str(d / "clm_20150909.tif"), mask_values=(1,), name="s2_20150909")]
    return {"folder": folder, "clear": clear, "cloudy": cloudy, "mask": mask, "guides": guides, "dir": d}


def with_bands(guides, bands):
    return [Guide(g.path, g.kind, tuple(bands), g.mask, g.mask_values, name=g.name) for g in guides]


@pytest.fixture(scope="module")
def guided_model(stack, tmp_path_factory):
    """A tiny guided model trained for 6 steps on the 2015-08-30 date guided by 2015-07-11 (self-supervised)."""
    d = stack["dir"]
    source = cr.TrainingSource(clear=str(d / "s2_20150830.tif"), bands=BANDS, mask=str(d / "clm_20150830.tif"),
                               clear_values=(0,), name="s2_20150830",
                               guides=[Guide(str(d / "s2_20150711.tif"), bands=tuple(BANDS), name="s2_20150711")])
    cfg = cr.TrainConfig(sources=[source], steps=6, **TINY)
    return cr.train_cloud_removal(cfg, str(tmp_path_factory.mktemp("gm") / "guided.safetensors"))


def read(path):
    return gdal.Open(str(path)).ReadAsArray().astype(np.float64)


def test_training_with_guides_chooses_the_guided_generator_and_records_the_guides(guided_model):
    meta = read_metadata(guided_model.model_path)
    assert meta.architecture == "guided_generator" and meta.training["generator"] == "guided"
    assert meta.extra_channels == ["cloud_mask", "guide:base", "guide:base_valid"]
    assert meta.training["guide_kinds"] == {"optical": True, "radar": 0} and meta.training["any_band_count"]
    report = meta.training["guides"]["s2_20150830"][0]
    assert report["kind"] == "optical" and 0 < report["coverage"] <= 1


def test_guided_removal_keeps_clear_pixels_and_beats_no_guide_inside_the_clouds(stack, guided_model, tmp_path):
    out = tmp_path / "guided.tif"
    summary = cr.remove_clouds(raster_info(stack["cloudy"]), str(out), guided_model.model_path,
                               mask=raster_info(stack["mask"]), mask_values=(1,),
                               guides=with_bands(stack["guides"], BANDS), options=cr.RemovalOptions(device="cpu"))
    assert [g["name"] for g in summary["guides"]] == ["s2_20150830", "s2_20150909"]
    got, cloudy, clear = read(out), read(stack["cloudy"]), read(stack["clear"])
    m = read(stack["mask"]) == 1
    assert np.array_equal(got[:, ~m], cloudy[:, ~m])  # clear pixels bit-identical (float32 in, float32 out)
    fill = tmp_path / "fill.tif"
    cr.remove_clouds(raster_info(stack["cloudy"]), str(fill), cr_shipped(), mask=raster_info(stack["mask"]),
                     mask_values=(1,), options=cr.RemovalOptions(device="cpu"))
    err_guided = np.abs(got[:, m] - clear[:, m]).mean()
    err_fill = np.abs(read(fill)[:, m] - clear[:, m]).mean()
    assert err_guided < 0.85 * err_fill, (err_guided, err_fill)


def cr_shipped():
    from cloudfree.models.weights import shipped_model

    return shipped_model("cloud_removal_small.safetensors")


def test_a_guide_on_another_grid_gives_the_result_of_a_pre_aligned_one(stack, tmp_path):
    """The guide reprojected to Web Mercator is warped back onto the target's grid by the algorithm."""
    guide = stack["guides"][1]
    moved = str(tmp_path / "moved.tif")
    gdal.Warp(moved, guide.path, dstSRS="EPSG:3857", resampleAlg="bilinear", xRes=9.0, yRes=9.0)
    aligned = str(tmp_path / "aligned.tif")
    target = raster_info(stack["cloudy"])
    gdal.Warp(aligned, moved, dstSRS=target.crs_wkt, outputBounds=target.bounds, width=target.width,
              height=target.height, resampleAlg="bilinear")
    model = matched_copy_model(str(tmp_path))
    outs = {}
    for name, path in (("warped", moved), ("aligned", aligned)):
        outs[name] = tmp_path / f"{name}.tif"
        cr.remove_clouds(target, str(outs[name]), model, mask=raster_info(stack["mask"]), mask_values=(1,),
                         guides=[Guide(path, bands=tuple(BANDS), name=name)], options=cr.RemovalOptions(device="cpu"))
    a, b = read(outs["warped"]), read(outs["aligned"])
    assert np.abs(a - b).max() < 1e-4


def test_where_no_guide_sees_the_target_the_model_falls_back_to_a_fill(stack, tmp_path):
    """A guide cut to the left half: inside the clouds of the right half the output is the unguided fill."""
    guide = stack["guides"][0]
    half = str(tmp_path / "half.tif")
    ds = gdal.Open(guide.path)
    gdal.Translate(half, ds, srcWin=[0, 0, ds.RasterXSize // 2, ds.RasterYSize])
    out = tmp_path / "o.tif"
    summary = cr.remove_clouds(raster_info(stack["cloudy"]), str(out), matched_copy_model(str(tmp_path)),
                               mask=raster_info(stack["mask"]), mask_values=(1,),
                               guides=[Guide(half, bands=tuple(BANDS), name="half")],
                               options=cr.RemovalOptions(device="cpu"))
    assert 0.4 < summary["guides"][0]["coverage"] < 0.6
    got = read(out)
    assert np.isfinite(got).all()
    m = read(stack["mask"]) == 1
    right = np.zeros_like(m)
    right[:, 60:] = True
    assert (m & right).any()
    inside = got[:, m & right]
    assert np.all(inside > 0) and np.all(inside < 1)  # a fill of the clear surroundings, in range


def test_a_guided_model_refuses_an_unguided_call_and_names_the_missing_guide(stack, guided_model, tmp_path):
    with pytest.raises(InputError, match="another date of the same place"):
        cr.remove_clouds(raster_info(stack["cloudy"]), str(tmp_path / "x.tif"), guided_model.model_path,
                         mask=raster_info(stack["mask"]), mask_values=(1,), options=cr.RemovalOptions(device="cpu"))
    with pytest.raises(InputError, match="uses no guides"):
        cr.remove_clouds(raster_info(stack["cloudy"]), str(tmp_path / "x.tif"), cr_shipped(),
                         mask=raster_info(stack["mask"]), mask_values=(1,), guides=stack["guides"],
                         options=cr.RemovalOptions(device="cpu"))
    assert not (tmp_path / "x.tif").exists()


def test_one_guided_model_serves_another_band_count(stack, guided_model, tmp_path):
    """Trained on four bands, applied to three (the model treats bands one at a time)."""
    three = str(tmp_path / "three.tif")
    gdal.Translate(three, stack["cloudy"], bandList=[1, 2, 3])
    out = tmp_path / "o3.tif"
    cr.remove_clouds(raster_info(three), str(out), guided_model.model_path, mask=raster_info(stack["mask"]),
                     mask_values=(1,), guides=with_bands(stack["guides"], [2, 3, 4]),
                     options=cr.RemovalOptions(device="cpu"))
    assert gdal.Open(str(out)).RasterCount == 3


def test_radar_guided_training_and_removal(shared_data, tmp_path):
    b = shared_data / "s1_s2_pairs"
    source = cr.TrainingSource(clear=str(b / "ben0_s2_bgrn.tif"), name="ben0",
                               guides=[Guide(str(b / "ben0_s1_vvvh.tif"), kind="radar", name="ben0_s1")])
    result = cr.train_cloud_removal(cr.TrainConfig(sources=[source], steps=4, **TINY),
                                    str(tmp_path / "radar.safetensors"))
    meta = read_metadata(result.model_path)
    assert meta.training["guide_kinds"] == {"optical": False, "radar": 2}
    assert meta.extra_channels[-2:] == ["guide:radar:1", "guide:radar:2"]
    target = raster_info(str(b / "ben4_s2_bgrn.tif"))
    cloudy, mask = str(tmp_path / "c.tif"), str(tmp_path / "m.tif")
    simulate_clouds(target, cloudy, mask, CloudParams(seed=1, coverage=0.3, thickness=1.0, shadows=False, scale=30))
    with pytest.raises(InputError, match="Sentinel-1 radar"):
        cr.remove_clouds(raster_info(cloudy), str(tmp_path / "o.tif"), result.model_path, mask=raster_info(mask),
                         mask_values=(1,), options=cr.RemovalOptions(device="cpu"))
    cr.remove_clouds(raster_info(cloudy), str(tmp_path / "o.tif"), result.model_path, mask=raster_info(mask),
                     mask_values=(1,), guides=[Guide(str(b / "ben4_s1_vvvh.tif"), kind="radar")],
                     options=cr.RemovalOptions(device="cpu"))
    got, src = read(tmp_path / "o.tif"), read(cloudy)
    m = read(mask) == 1
    assert np.array_equal(got[:, ~m], src[:, ~m]) and np.isfinite(got).all()


def test_fusion_composite_is_the_median_of_the_dates_in_the_clouds(stack, tmp_path):
    out = tmp_path / "fused.tif"
    fusion_composite(raster_info(stack["cloudy"]), str(out), with_bands(stack["guides"], BANDS),
                     mask=raster_info(stack["mask"]), mask_values=(1,))
    got, cloudy = read(out), read(stack["cloudy"])
    m = read(stack["mask"]) == 1
    assert np.array_equal(got[:, ~m], cloudy[:, ~m])
    g0 = read(stack["guides"][0].path)[[b - 1 for b in BANDS]]
    g1 = read(stack["guides"][1].path)[[b - 1 for b in BANDS]]
    c0, c1 = read(stack["guides"][0].mask) == 1, read(stack["guides"][1].mask) == 1
    both = m & ~c0 & ~c1
    assert both.any()
    assert np.allclose(got[:, both], 0.5 * (g0[:, both] + g1[:, both]), atol=1e-5)


def test_an_overcast_target_is_scaled_by_its_guides_not_by_its_clouds(stack, tmp_path):
    """With (almost) no clear pixel, the per-image statistics come from the colour-matched guides, so a guided
    model sees the ground's range, not the clouds' (the real overcast S2 dates came out pale before)."""
    from cloudfree.models.cloud_removal.scaling import image_statistics

    cloudy = raster_info(stack["cloudy"])
    everything = write_array(str(tmp_path / "all.tif"), np.ones((1, cloudy.height, cloudy.width), np.uint8),
                             like=cloudy, dtype="uint8")
    guide = raster_info(stack["clear"])
    fallen = image_statistics(cloudy, [1, 2, 3, 4], mask=raster_info(everything), mask_values=(1,), fallback=guide)
    assert fallen == image_statistics(guide, [1, 2, 3, 4])
    assert image_statistics(cloudy, [1, 2, 3, 4], mask=raster_info(everything), mask_values=(1,)) != fallen
