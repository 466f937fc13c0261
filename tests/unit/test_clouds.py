"""Synthetic clouds on real Sentinel-2 and Landsat 8 data: determinism, calibration, raster I/O."""

import os

import numpy as np
import pytest
from osgeo import gdal

from cloudfree.models import clouds
from cloudfree.models.clouds import (CLEAR, CLOUD, MISSING, SHADOW, CloudField, CloudParams, apply_clouds,
                                     cloud_colour_for, simulate_clouds, simulate_clouds_array)
from cloudfree.models.errors import Cancelled, InputError
from cloudfree.models.raster import open_raster, raster_info, write_array


@pytest.fixture(scope="module")
def s2_path(shared_data):
    return str(shared_data / "s2_cloudy_scene" / "scene.tif")


@pytest.fixture(scope="module")
def l8_path(shared_data):
    return str(shared_data / "l8_cloudy_scene" / "bgrn.tif")


@pytest.fixture(scope="module")
def s2_image(s2_path):
    return open_raster(s2_path).ReadAsArray().astype(np.float32)


@pytest.fixture(scope="module")
def l8_image(l8_path):
    return open_raster(l8_path).ReadAsArray()


def fractions(mask):
    return [float((mask == k).mean()) for k in (CLEAR, CLOUD, SHADOW, MISSING)]


# --------------------------------------------------------------------------- parameters


@pytest.mark.parametrize("kwargs, word", [
    ({"coverage": 1.5}, "coverage"), ({"coverage": -0.1}, "coverage"), ({"coverage": float("nan")}, "coverage"),
    ({"coverage": "lots"}, "coverage"), ({"thickness": 2}, "thickness"), ({"missing_data": -1}, "missing data"),
    ({"scale": 0}, "scale"), ({"seed": 1.5}, "seed"),
])
def test_bad_params_raise_input_error(kwargs, word):
    with pytest.raises(InputError, match=word):
        CloudParams(**kwargs)


def test_empty_raster_is_refused():
    with pytest.raises(InputError, match="empty"):
        CloudField(CloudParams(), 0, 10)


# --------------------------------------------------------------------------- the field


def test_window_evaluation_equals_full_evaluation():
    field = CloudField(CloudParams(seed=11, coverage=0.4, missing_data=0.2), 300, 260)
    full = field.window(0, 0, 300, 260)
    for x0, y0, w, h in [(0, 0, 1, 1), (17, 33, 128, 64), (250, 200, 50, 60), (123, 0, 77, 260)]:
        part = field.window(x0, y0, w, h)
        for a, b in zip(full, part):
            np.testing.assert_array_equal(a[y0:y0 + h, x0:x0 + w], b)
    tex = field.texture(0, 0, 300, 260)
    np.testing.assert_array_equal(tex[40:90, 10:200], field.texture(10, 40, 190, 50))


def test_same_seed_same_field_and_other_seed_differs(s2_image):
    a1, m1 = simulate_clouds_array(s2_image, CloudParams(seed=3, missing_data=0.1))
    a2, m2 = simulate_clouds_array(s2_image, CloudParams(seed=3, missing_data=0.1))
    b, mb = simulate_clouds_array(s2_image, CloudParams(seed=4, missing_data=0.1))
    np.testing.assert_array_equal(a1, a2)
    np.testing.assert_array_equal(m1, m2)
    assert (m1 != mb).mean() > 0.1
    assert not np.array_equal(np.nan_to_num(a1), np.nan_to_num(b))


def test_negative_and_huge_seeds_work():
    for seed in (-1, 2**40 + 7):
        alpha, _, _ = CloudField(CloudParams(seed=seed), 64, 64).window(0, 0, 64, 64)
        assert np.isfinite(alpha).all()


@pytest.mark.parametrize("coverage", [0.1, 0.3, 0.6])
def test_achieved_cloud_fraction_matches_coverage(s2_image, l8_image, coverage):
    _, mask = simulate_clouds_array(s2_image, CloudParams(seed=int(coverage * 10), coverage=coverage))
    assert abs((mask == CLOUD).mean() - coverage) < 0.05
    # the label is alpha > 0 wherever no gap is: check other seeds and the Landsat grid on the field alone
    for seed, (h, w) in ((1, l8_image.shape[1:]), (2, (333, 1000))):
        alpha = CloudField(CloudParams(seed=seed, coverage=coverage), w, h).window(0, 0, w, h)[0]
        assert abs((alpha > 0).mean() - coverage) < 0.05


def test_no_and_full_coverage():
    field = CloudField(CloudParams(coverage=0.0, shadows=True), 128, 96)
    alpha, shadow, missing = field.window(0, 0, 128, 96)
    assert not alpha.any() and not shadow.any() and not missing.any()
    alpha, _, _ = CloudField(CloudParams(coverage=1.0), 128, 96).window(0, 0, 128, 96)
    assert (alpha > 0).all()


@pytest.mark.parametrize("missing", [0.05, 0.2, 0.4])
def test_missing_fraction_and_priority(s2_image, missing):
    cloudy, mask = simulate_clouds_array(s2_image, CloudParams(seed=int(missing * 20), coverage=0.3,
                                                               missing_data=missing))
    assert abs((mask == MISSING).mean() - missing) < 0.03
    # gaps win over clouds, yet clouds still cover about the asked share of all pixels
    assert abs((mask == CLOUD).mean() - 0.3) < 0.05
    assert np.isnan(cloudy[:, mask == MISSING]).all()
    assert np.isfinite(cloudy[:, mask != MISSING]).all()
    kinds = set()
    for seed in range(8):  # wedge, stripes and both, on another grid
        field = CloudField(CloudParams(seed=seed, coverage=0.3, missing_data=missing, shadows=False), 400, 300)
        alpha, _, gaps = field.window(0, 0, 400, 300)
        kinds.add(field.gap_kind)
        assert abs(gaps.mean() - missing) < 0.03
        assert abs(((alpha > 0) & ~gaps).mean() - 0.3) < 0.05
    assert kinds == {"wedge", "stripes", "both"}


def test_thickness_changes_opacity():
    thin = CloudField(CloudParams(seed=2, thickness=0.0), 256, 256).window(0, 0, 256, 256)[0]
    thick = CloudField(CloudParams(seed=2, thickness=1.0), 256, 256).window(0, 0, 256, 256)[0]
    # same clouds (same label), different opacity
    np.testing.assert_array_equal(thin > 0, thick > 0)
    assert thin.max() <= 0.31 and thick.max() > 0.99
    assert thick[thick > 0].mean() > 2 * thin[thin > 0].mean()


def test_soft_edges():
    alpha = CloudField(CloudParams(seed=5, thickness=1.0), 512, 512).window(0, 0, 512, 512)[0]
    cloud = alpha[alpha > 0]
    # a good share of the cloud pixels is partly transparent, so edges are not a hard cut
    assert 0.2 < (cloud < 0.95).mean() < 0.9
    steps = np.abs(np.diff(alpha, axis=1))
    steps = steps[steps > 0]
    assert np.median(steps) < 0.1 and np.percentile(steps, 99) < 0.45


def test_shadows_only_when_asked(s2_image):
    cloudy, mask = simulate_clouds_array(s2_image, CloudParams(seed=1, shadows=True))
    assert (mask == SHADOW).mean() > 0.02
    shadowed = mask == SHADOW
    assert (cloudy[:, shadowed] <= s2_image[:, shadowed] + 1e-6).all()
    assert cloudy[:, shadowed].mean() < 0.9 * s2_image[:, shadowed].mean()
    cloudy, mask = simulate_clouds_array(s2_image, CloudParams(seed=1, shadows=False))
    assert not (mask == SHADOW).any()
    clear = mask == CLEAR
    np.testing.assert_array_equal(cloudy[:, clear], s2_image[:, clear])


def test_clouds_are_bright(s2_image, l8_image):
    for image in (s2_image[:, :256, :256], l8_image[:, :256, :256].astype(np.float32)):
        params = CloudParams(seed=0, thickness=1.0, shadows=False)
        cloudy, mask = simulate_clouds_array(image, params)
        alpha = CloudField(params, 256, 256).window(0, 0, 256, 256)[0]
        core = alpha > 0.99
        p99 = np.percentile(image.reshape(image.shape[0], -1), 99, axis=1)
        assert (cloudy[:, core].mean(axis=1) > 0.9 * p99).all()


def test_cloud_colour_scales_with_units(s2_image, l8_image):
    refl = cloud_colour_for(s2_image, seed=0)
    dn = cloud_colour_for(l8_image, seed=0)
    assert refl.shape == (6,) and dn.shape == (4,)
    assert 0.3 < refl.min() and refl.max() < 3
    assert 10000 < dn.min() and dn.max() < 40000
    assert not np.array_equal(cloud_colour_for(s2_image, seed=1), refl)
    with pytest.raises(InputError, match="nodata"):
        cloud_colour_for(s2_image, valid=np.zeros(s2_image.shape[1:], bool))


def test_apply_clouds_leaves_nodata_pixels(s2_image):
    block = s2_image[:, :64, :64].copy()
    alpha = np.full((64, 64), 0.5, np.float32)
    shadow = np.zeros((64, 64), np.float32)
    missing = np.zeros((64, 64), bool)
    missing[:, :8] = True
    valid = np.ones((64, 64), bool)
    valid[30:40, 30:40] = False
    cloudy, mask = apply_clouds(block, alpha, shadow, missing, np.ones(6, np.float32), valid, missing_value=-1)
    np.testing.assert_array_equal(cloudy[:, ~valid], block[:, ~valid])
    assert (mask[~valid] == CLEAR).all()
    assert (mask[:, :8] == MISSING).all() and (cloudy[:, :, :8] == -1).all()
    assert (mask[valid & ~missing] == CLOUD).all()


# --------------------------------------------------------------------------- rasters


def test_raster_blockwise_equals_in_memory_float(tmp_path, s2_path, s2_image):
    params = CloudParams(seed=7, coverage=0.35, missing_data=0.1)
    summary = simulate_clouds(raster_info(s2_path), str(tmp_path / "c.tif"), str(tmp_path / "m.tif"), params,
                              block=200)
    out = gdal.Open(summary["output"]).ReadAsArray()
    mask = gdal.Open(summary["mask"]).ReadAsArray()
    ref, ref_mask = simulate_clouds_array(s2_image, params)
    np.testing.assert_array_equal(mask, ref_mask)
    np.testing.assert_array_equal(out, ref)  # NaN == NaN for assert_array_equal
    assert summary["cloud_fraction"] == pytest.approx((ref_mask == CLOUD).mean())
    assert summary["missing_fraction"] == pytest.approx(0.1, abs=0.03)
    assert abs(summary["cloud_fraction"] - 0.35) < 0.05
    assert np.isnan(gdal.Open(summary["output"]).GetRasterBand(1).GetNoDataValue())


def test_uint16_output_keeps_dtype_grid_and_nodata(tmp_path, l8_path, l8_image):
    src = raster_info(l8_path)
    params = CloudParams(seed=2, coverage=0.3, missing_data=0.15)
    out_path, mask_path = str(tmp_path / "cloudy.tif"), str(tmp_path / "mask.tif")
    progress = []
    summary = simulate_clouds(src, out_path, mask_path, params, bands="1,2,3,4", block=256,
                              progress=lambda f, msg=None: progress.append(f))
    out, mask = raster_info(out_path), raster_info(mask_path)
    assert out.dtype == "uint16" and mask.dtype == "uint8"
    for info in (out, mask):
        assert (info.width, info.height, info.geotransform) == (src.width, src.height, src.geotransform)
        assert info.crs_label() == src.crs_label() == "EPSG:32616"
    assert out.nodata == (0.0,) * 4  # input has none: 0 declared for an integer type
    data = gdal.Open(out_path).ReadAsArray()
    m = gdal.Open(mask_path).ReadAsArray()
    assert (data[:, m == MISSING] == 0).all()
    clear = m == CLEAR
    np.testing.assert_array_equal(data[:, clear], l8_image[:, clear])
    ref, ref_mask = simulate_clouds_array(l8_image, params, missing_value=0)
    np.testing.assert_array_equal(m, ref_mask)
    np.testing.assert_array_equal(data, np.clip(np.rint(ref), 0, 65535).astype(np.uint16))
    assert abs(summary["missing_fraction"] - 0.15) < 0.03 and abs(summary["cloud_fraction"] - 0.3) < 0.05
    assert progress[-1] == 1.0 and len(progress) >= 9
    assert sorted(os.listdir(tmp_path)) == ["cloudy.tif", "mask.tif"]


def test_input_nodata_and_descriptions_are_kept(tmp_path, s2_image):
    image = s2_image[:3, :128, :128].copy()
    image[:, 50:70, 50:70] = -9999
    src_path = str(tmp_path / "src.tif")
    write_array(src_path, image, nodata=-9999, descriptions=["blue", "green", "red"],
                geotransform=(500000, 10, 0, 4000000, 0, -10), crs_wkt=_utm33())
    summary = simulate_clouds(raster_info(src_path), str(tmp_path / "o.tif"), str(tmp_path / "m.tif"),
                              CloudParams(seed=4, coverage=1.0, missing_data=0.0))
    out = raster_info(summary["output"])
    assert out.descriptions == ("blue", "green", "red") and out.nodata == (-9999.0,) * 3
    data = gdal.Open(summary["output"]).ReadAsArray()
    mask = gdal.Open(summary["mask"]).ReadAsArray()
    assert (data[:, 50:70, 50:70] == -9999).all() and (mask[50:70, 50:70] == CLEAR).all()
    assert (mask == CLOUD).sum() == 128 * 128 - 400


def _utm33():
    from osgeo import osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32633)
    return srs.ExportToWkt()


def test_cancel_leaves_no_output(tmp_path, s2_path):
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled):
        simulate_clouds(raster_info(s2_path), str(tmp_path / "c.tif"), str(tmp_path / "m.tif"), CloudParams(),
                        block=128, cancelled=cancelled)
    assert os.listdir(tmp_path) == []


def test_failed_mask_commit_removes_the_output(tmp_path, s2_path, monkeypatch):
    real = clouds.RasterWriter

    class FailingMask(real):
        def commit(self):
            if self.path.endswith("m.tif"):
                raise OSError("disk full")
            return super().commit()

    monkeypatch.setattr(clouds, "RasterWriter", FailingMask)
    with pytest.raises(OSError):
        simulate_clouds(raster_info(s2_path), str(tmp_path / "c.tif"), str(tmp_path / "m.tif"), CloudParams())
    assert os.listdir(tmp_path) == []


def test_bad_raster_arguments(tmp_path, s2_path):
    src = raster_info(s2_path)
    with pytest.raises(InputError, match="different files"):
        simulate_clouds(src, str(tmp_path / "a.tif"), str(tmp_path / "a.tif"), CloudParams())
    with pytest.raises(InputError, match="inputs"):
        simulate_clouds(src, s2_path, str(tmp_path / "m.tif"), CloudParams())
    with pytest.raises(InputError, match="band"):
        simulate_clouds(src, str(tmp_path / "a.tif"), str(tmp_path / "m.tif"), CloudParams(), bands=[7])
    assert os.listdir(tmp_path) == []
