"""Tests of models/metrics.py and models/comparison.py: values checked against independent numpy / skimage maths."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from osgeo import gdal, osr
from skimage.metrics import structural_similarity

from cloudfree.models import metrics
from cloudfree.models.errors import Cancelled, GridMismatchError, InputError
from cloudfree.models.comparison import compare_rasters, report_to_json
from cloudfree.models.raster import raster_info, write_array

GT = (500000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)


def _wkt(epsg: int = 32633) -> str:
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


def _raster(tmp_path, name, array, nodata=None, gt=GT):
    path = tmp_path / f"{name}.tif"
    write_array(str(path), np.asarray(array), geotransform=gt, crs_wkt=_wkt(), nodata=nodata)
    return raster_info(str(path), name)


def _skimage_map(x, y, data_range):
    _, smap = structural_similarity(x, y, data_range=data_range, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, full=True)
    return smap


def _angles_arccos(a, b):
    """Spectral angles the textbook way (arccos of the cosine), independent of the module."""
    dot = (a * b).sum(axis=0)
    na, nb = np.sqrt((a * a).sum(axis=0)), np.sqrt((b * b).sum(axis=0))
    return np.degrees(np.arccos(np.clip(dot / (na * nb), -1.0, 1.0)))


@pytest.fixture
def rng():
    return np.random.default_rng(42)


@pytest.fixture
def textured(rng):
    """A 3-band, 40x50 image with structure (smooth ramps + noise), integer-valued floats."""
    yy, xx = np.mgrid[0:40, 0:50]
    base = np.stack([100 + 2 * xx + yy, 300 + 3 * yy, 200 + xx * yy / 10.0])
    return np.round(base + rng.integers(0, 20, base.shape)).astype(np.float32)


# --------------------------------------------------------------------------- ground truths


def test_identical_rasters_are_perfect(tmp_path, textured):
    a = _raster(tmp_path, "a", textured)
    b = _raster(tmp_path, "b", textured)
    rep = compare_rasters(a, b)
    assert rep["image"] == "a" and rep["reference"] == "b"
    assert rep["bands"] == [1, 2, 3] and rep["n_pixels"] == 40 * 50 and rep["mask"] is None
    for p in rep["per_band"]:
        assert p["psnr"] == float("inf")
        assert p["ssim"] == pytest.approx(1.0, abs=1e-12)
        assert p["mae"] == 0.0 and p["rmse"] == 0.0
    ov = rep["overall"]
    assert ov["psnr"] == float("inf") and ov["mae"] == 0.0 and ov["rmse"] == 0.0
    assert ov["ssim"] == pytest.approx(1.0, abs=1e-12)
    assert ov["sam_degrees"] == pytest.approx(0.0, abs=1e-9)

    text = report_to_json(rep)
    back = json.loads(text)  # strict JSON: no bare Infinity
    assert "Infinity" not in text
    assert back["overall"]["psnr"] == "inf" and back["per_band"][0]["psnr"] == "inf"


def test_constant_offset(tmp_path, textured):
    c = 3.0
    ref = _raster(tmp_path, "ref", textured)
    img = _raster(tmp_path, "img", textured + c)  # integer-valued: the offset is exact in float32
    rep = compare_rasters(img, ref)
    ranges = [float(textured[i].max() - textured[i].min()) for i in range(3)]
    assert rep["data_range"]["method"] == "reference_min_max"
    assert rep["data_range"]["per_band"] == pytest.approx(ranges)
    for p, r in zip(rep["per_band"], ranges):
        assert p["mae"] == pytest.approx(c, abs=1e-12)
        assert p["rmse"] == pytest.approx(c, abs=1e-12)
        assert p["psnr"] == pytest.approx(20 * math.log10(r / c), abs=1e-9)
        assert p["ssim"] < 1.0  # the luminance term sees the shift
    ov = rep["overall"]
    assert ov["mae"] == pytest.approx(c) and ov["rmse"] == pytest.approx(c)
    assert ov["psnr"] == pytest.approx(20 * math.log10(max(ranges) / c), abs=1e-9)
    assert rep["data_range"]["overall"] == pytest.approx(max(ranges))

    explicit = compare_rasters(img, ref, data_range=1000.0)
    assert explicit["data_range"]["method"] == "explicit"
    assert explicit["data_range"]["per_band"] == [1000.0] * 3
    for p in explicit["per_band"]:
        assert p["psnr"] == pytest.approx(20 * math.log10(1000.0 / c), abs=1e-9)
    assert explicit["overall"]["psnr"] == pytest.approx(20 * math.log10(1000.0 / c), abs=1e-9)


def test_scaled_spectrum_has_zero_angle_but_errors(tmp_path, textured):
    ref = _raster(tmp_path, "ref", textured)
    img = _raster(tmp_path, "img", textured * 2)
    rep = compare_rasters(img, ref)
    assert rep["overall"]["sam_degrees"] == pytest.approx(0.0, abs=1e-9)
    assert rep["overall"]["mae"] == pytest.approx(float(np.abs(textured.astype(np.float64)).mean()))
    assert rep["overall"]["mae"] > 0


def test_rotated_two_band_vectors(tmp_path, rng):
    alpha = 17.0
    phi = rng.uniform(0, math.radians(90 - alpha), (30, 30))
    r = rng.uniform(0.5, 2.0, (30, 30))
    ref = np.stack([r * np.cos(phi), r * np.sin(phi)])
    rot = phi + math.radians(alpha)
    img = np.stack([r * np.cos(rot), r * np.sin(rot)])
    img[:, 0, :5] = 0.0  # all-zero vectors: no angle, skipped by SAM but still in MAE
    rep = compare_rasters(_raster(tmp_path, "img", img), _raster(tmp_path, "ref", ref))
    assert rep["overall"]["sam_degrees"] == pytest.approx(alpha, abs=1e-9)
    assert rep["overall"]["sam_n_pixels"] == 30 * 30 - 5
    assert rep["n_pixels"] == 30 * 30
    assert rep["overall"]["mae"] == pytest.approx(float(np.abs(img - ref).mean()), rel=1e-12)


def test_single_band_has_no_sam(tmp_path, textured):
    rep = compare_rasters(_raster(tmp_path, "img", textured + 1), _raster(tmp_path, "ref", textured), bands=[2])
    assert rep["bands"] == [2] and len(rep["per_band"]) == 1
    assert rep["overall"]["sam_degrees"] is None
    assert json.loads(report_to_json(rep))["overall"]["sam_degrees"] is None


def test_different_reference_bands(tmp_path, textured):
    stacked = np.concatenate([textured, textured + 5])  # bands 4-6 = bands 1-3 + 5
    img = _raster(tmp_path, "img", textured)
    ref = _raster(tmp_path, "ref", stacked)
    rep = compare_rasters(img, ref, bands="1,2", reference_bands="4,5")
    assert rep["reference_bands"] == [4, 5]
    assert rep["overall"]["mae"] == pytest.approx(5.0)
    assert [p["reference_band"] for p in rep["per_band"]] == [4, 5]


def test_constant_reference_falls_back_to_unit_range(tmp_path):
    ref = np.full((1, 20, 20), 7.0, np.float32)
    rep = compare_rasters(_raster(tmp_path, "img", ref + 0.5), _raster(tmp_path, "ref", ref))
    assert rep["data_range"]["per_band"] == [1.0]
    assert rep["data_range"]["fallback_bands"] == [1]
    assert rep["per_band"][0]["psnr"] == pytest.approx(20 * math.log10(1.0 / 0.5))


# --------------------------------------------------------------------------- nodata and mask


def test_nodata_pixels_are_excluded(tmp_path, textured, rng):
    ref = textured.copy()
    img = textured + rng.normal(0, 4, textured.shape).astype(np.float32)
    ref[:, 5:9, 10:30] = -9999  # reference nodata
    img[1, 20:25, 3:8] = np.nan  # NaN in one band of the image drops the whole pixel
    valid = (ref[0] != -9999) & np.isfinite(img).all(axis=0)

    rep = compare_rasters(_raster(tmp_path, "img", img), _raster(tmp_path, "ref", ref, nodata=-9999))
    n = int(valid.sum())
    assert rep["n_pixels"] == n and rep["n_valid_pixels"] == n
    a, b = img[:, valid].astype(np.float64), ref[:, valid].astype(np.float64)
    ranges = b.max(axis=1) - b.min(axis=1)
    for i, p in enumerate(rep["per_band"]):
        d = a[i] - b[i]
        assert p["mae"] == pytest.approx(np.abs(d).mean(), rel=1e-12)
        assert p["rmse"] == pytest.approx(np.sqrt((d * d).mean()), rel=1e-12)
        assert p["psnr"] == pytest.approx(10 * np.log10(ranges[i] ** 2 / (d * d).mean()), rel=1e-12)
    assert rep["overall"]["sam_degrees"] == pytest.approx(_angles_arccos(a, b).mean(), rel=1e-9)

    # whatever lies under nodata changes nothing, SSIM included (nodata neighbours are filled)
    img2 = img.copy()
    img2[:, 5:9, 10:30] = 1e6
    rep2 = compare_rasters(_raster(tmp_path, "img2", img2), _raster(tmp_path, "ref2", ref, nodata=-9999))
    for p, q in zip(rep["per_band"], rep2["per_band"]):
        for key in ("psnr", "ssim", "mae", "rmse"):
            assert p[key] == pytest.approx(q[key], abs=1e-12)

    # the array helper gives the same SSIM when nodata is NaN
    ref_nan = ref.astype(np.float64)
    ref_nan[ref_nan == -9999] = np.nan
    assert metrics.ssim(img, ref_nan, ranges) == pytest.approx(rep["overall"]["ssim"], abs=1e-12)


def test_mask_selects_pixels(tmp_path, textured, rng):
    img = textured + rng.normal(0, 3, textured.shape).astype(np.float32)
    mask = np.zeros((40, 50), np.uint8)
    mask[10:20, 10:40] = 1
    mask[30:35, :] = 2
    m = _raster(tmp_path, "mask", mask)
    i, r = _raster(tmp_path, "img", img), _raster(tmp_path, "ref", textured)
    for values in [(1,), (1, 2)]:
        rep = compare_rasters(i, r, mask=m, mask_values=values)
        sel = np.isin(mask, values)
        assert rep["n_pixels"] == int(sel.sum())
        assert rep["mask"] == {"layer": "mask", "band": 1, "values": list(values), "n_selected": int(sel.sum())}
        d = (img - textured).astype(np.float64)[:, sel]
        assert rep["overall"]["mae"] == pytest.approx(np.abs(d).mean(), rel=1e-12)
        assert rep["overall"]["rmse"] == pytest.approx(np.sqrt((d * d).mean()), rel=1e-12)


def test_nothing_left_to_compare(tmp_path, textured):
    i, r = _raster(tmp_path, "img", textured), _raster(tmp_path, "ref", textured)
    m = _raster(tmp_path, "mask", np.zeros((40, 50), np.uint8))
    with pytest.raises(InputError, match="selects no pixel"):
        compare_rasters(i, r, mask=m, mask_values=(1,))
    empty = _raster(tmp_path, "empty", np.full_like(textured, -1), nodata=-1)
    with pytest.raises(InputError, match="no pixel with data in both"):
        compare_rasters(i, empty)


# --------------------------------------------------------------------------- errors, progress


def test_grid_mismatch(tmp_path, textured):
    i = _raster(tmp_path, "img", textured)
    shifted = _raster(tmp_path, "shifted", textured, gt=(500100.0, 10.0, 0.0, 5000000.0, 0.0, -10.0))
    with pytest.raises(GridMismatchError, match="shifted"):
        compare_rasters(i, shifted)
    small_mask = _raster(tmp_path, "small_mask", np.ones((20, 50), np.uint8))
    with pytest.raises(GridMismatchError, match="small_mask"):
        compare_rasters(i, _raster(tmp_path, "ref", textured), mask=small_mask)


def test_band_errors(tmp_path, textured):
    i = _raster(tmp_path, "img", textured)
    r = _raster(tmp_path, "ref", textured[:2])
    with pytest.raises(InputError, match="'img'.*5"):
        compare_rasters(i, r, bands=[1, 5])
    with pytest.raises(InputError, match="'ref'"):
        compare_rasters(i, r)  # reference bands default to the image's 1,2,3; ref has 2
    with pytest.raises(InputError, match="'img'.*'ref'"):
        compare_rasters(i, r, bands="1,2,3", reference_bands="1,2")
    with pytest.raises(InputError, match="data range"):
        compare_rasters(i, r, bands="1,2", data_range=0)


def test_progress_and_cancel(tmp_path, textured):
    i, r = _raster(tmp_path, "img", textured), _raster(tmp_path, "ref", textured)
    seen = []
    compare_rasters(i, r, block=16, progress=lambda f, msg=None: seen.append(f))
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) > 4
    calls = []

    def cancel_later():
        calls.append(1)
        return len(calls) > 5  # cancel during pass 2

    with pytest.raises(Cancelled):
        compare_rasters(i, r, block=16, cancelled=cancel_later)
    with pytest.raises(Cancelled):
        compare_rasters(i, r, cancelled=lambda: True)


# --------------------------------------------------------------------------- array helpers


def test_array_helpers(rng):
    b = rng.uniform(0, 1, (3, 32, 32))
    a = b + 0.1
    assert metrics.mae(a, b) == pytest.approx(0.1)
    assert metrics.rmse(a, b) == pytest.approx(0.1)
    assert metrics.psnr(a, b, 1.0) == pytest.approx(20.0)
    assert metrics.psnr(b, b, 1.0) == float("inf")
    assert metrics.ssim(b, b, 1.0) == pytest.approx(1.0, abs=1e-12)
    assert metrics.sam_degrees(b, 3 * b) == pytest.approx(0.0, abs=1e-9)
    assert metrics.sam_degrees(b[:1], a[:1]) is None
    # 2-D input and a mask
    mask = np.zeros((32, 32), bool)
    mask[:8] = True
    c = b[0].copy()
    c[8:] += 5.0  # outside the mask: must not count
    assert metrics.mae(c, b[0], mask=mask) == 0.0
    with pytest.raises(InputError):
        metrics.mae(a, b[:2])
    with pytest.raises(InputError):
        metrics.mae(a, b, mask=np.zeros((32, 32), bool))


def test_array_ssim_matches_skimage(rng):
    """Our map is skimage's full map; skimage's scalar is its mean without a 5-px border."""
    yy, xx = np.mgrid[0:60, 0:70]
    b = np.sin(xx / 6.0) + np.cos(yy / 9.0) + rng.normal(0, 0.2, (60, 70))
    a = b + rng.normal(0, 0.3, b.shape)
    mssim, smap = structural_similarity(a, b, data_range=4.0, gaussian_weights=True, sigma=1.5,
                                        use_sample_covariance=False, full=True)
    assert metrics.ssim(a, b, 4.0) == pytest.approx(smap.mean(), abs=1e-12)
    interior = np.zeros(a.shape, bool)
    interior[5:-5, 5:-5] = True
    assert metrics.ssim(a, b, 4.0, mask=interior) == pytest.approx(mssim, abs=1e-12)
    # (C, H, W): mean of the per-channel values, one range per channel allowed
    stack_a, stack_b = np.stack([a, 2 * a]), np.stack([b, 2 * b])
    expected = (smap.mean() + _skimage_map(2 * a, 2 * b, 8.0).mean()) / 2
    assert metrics.ssim(stack_a, stack_b, [4.0, 8.0]) == pytest.approx(expected, abs=1e-12)


def test_report_to_json_handles_non_finite():
    text = report_to_json({"a": float("inf"), "b": [float("-inf"), float("nan")], "c": np.float32(0.5),
                           "d": np.int64(3)})
    assert json.loads(text) == {"a": "inf", "b": ["-inf", None], "c": 0.5, "d": 3}


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def cloud_pair(shared_data):
    folder = shared_data / "s2_cloud_pair"
    read = lambda name: gdal.Open(str(folder / name)).ReadAsArray().astype(np.float64)  # noqa: E731
    return {
        "infos": (raster_info(str(folder / "cloudy.tif")), raster_info(str(folder / "clean.tif")),
                  raster_info(str(folder / "mask.tif"))),
        "cloudy": read("cloudy.tif")[[1, 2, 3, 7]],
        "clean": read("clean.tif")[[1, 2, 3, 7]],
        "mask": read("mask.tif"),
    }


@pytest.mark.parametrize("mask_values", [None, (1,), (0,)])
def test_real_pair_blockwise_equals_whole_and_ground_truth(cloud_pair, mask_values):
    img, ref, mask = cloud_pair["infos"]
    kwargs = dict(bands="2,3,4,8", mask=mask if mask_values else None, mask_values=mask_values or (1,))
    whole = compare_rasters(img, ref, block=4096, **kwargs)
    for block in (64, 100):  # 100 leaves ragged blocks at the right and bottom edges
        part = compare_rasters(img, ref, block=block, **kwargs)
        assert part["n_pixels"] == whole["n_pixels"]
        for p, q in zip(part["per_band"], whole["per_band"]):
            for key in ("psnr", "ssim", "mae", "rmse"):
                assert p[key] == pytest.approx(q[key], abs=1e-6)
        for key in ("psnr", "ssim", "mae", "rmse", "sam_degrees"):
            assert part["overall"][key] == pytest.approx(whole["overall"][key], abs=1e-6)

    # independent ground truth on the whole arrays
    a, b = cloud_pair["cloudy"], cloud_pair["clean"]
    sel = np.ones(a.shape[1:], bool) if mask_values is None else np.isin(cloud_pair["mask"], mask_values)
    assert whole["n_pixels"] == int(sel.sum())
    ranges = b[:, sel].max(axis=1) - b[:, sel].min(axis=1)
    ssims = []
    for i, p in enumerate(whole["per_band"]):
        d = a[i][sel] - b[i][sel]
        assert p["data_range"] == pytest.approx(ranges[i], rel=1e-12)
        assert p["mae"] == pytest.approx(np.abs(d).mean(), rel=1e-9)
        assert p["rmse"] == pytest.approx(np.sqrt((d * d).mean()), rel=1e-9)
        assert p["psnr"] == pytest.approx(10 * np.log10(ranges[i] ** 2 / (d * d).mean()), rel=1e-9)
        ssims.append(_skimage_map(a[i], b[i], ranges[i])[sel].mean())
        assert p["ssim"] == pytest.approx(ssims[-1], abs=1e-9)
    d = a[:, sel] - b[:, sel]
    ov = whole["overall"]
    assert ov["psnr"] == pytest.approx(10 * np.log10(ranges.max() ** 2 / (d * d).mean()), rel=1e-9)
    assert ov["ssim"] == pytest.approx(np.mean(ssims), abs=1e-9)
    assert ov["mae"] == pytest.approx(np.abs(d).mean(), rel=1e-9)
    assert ov["sam_degrees"] == pytest.approx(_angles_arccos(a[:, sel], b[:, sel]).mean(), rel=1e-7)
    if mask_values is None:
        # skimage's own whole-image scalar is the map mean without a 5-px border
        mssim = structural_similarity(a[0], b[0], data_range=ranges[0], gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False)
        interior = np.zeros(sel.shape, bool)
        interior[5:-5, 5:-5] = True
        assert metrics.ssim(a[0], b[0], ranges[0], mask=interior) == pytest.approx(mssim, abs=1e-12)
    json.loads(report_to_json(whole))


def test_real_pair_cloud_worse_than_clear(cloud_pair):
    img, ref, mask = cloud_pair["infos"]
    cloud = compare_rasters(img, ref, bands="2,3,4,8", mask=mask, mask_values=(1,))
    clear = compare_rasters(img, ref, bands="2,3,4,8", mask=mask, mask_values=(0,))
    assert cloud["overall"]["mae"] > 3 * clear["overall"]["mae"]
    assert cloud["overall"]["ssim"] < clear["overall"]["ssim"]
    assert cloud["overall"]["sam_degrees"] > clear["overall"]["sam_degrees"]
