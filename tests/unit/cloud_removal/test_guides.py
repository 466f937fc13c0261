"""Guides of guided cloud removal prepared on the target's grid (``cloud_removal.guides``), on real data:
dates from real file names, colour matching, warping, the guides' own clouds, coverage, radar in linear
power with the Lee filter, and the refusals that name the guide."""

import datetime

import numpy as np
import pytest
from osgeo import gdal

from cloudfree.models.cloud_removal.guides import (Guide, acquisition_date, lee_filter, looks_like_radar,
                                                   order_by_time, prepare_guides)
from cloudfree.models.errors import Cancelled, InputError
from cloudfree.models.raster import raster_info

BANDS = [2, 3, 4, 8]


def read(path) -> np.ndarray:
    """A whole (small) raster as float64 ``(bands, rows, cols)``."""
    ds = gdal.Open(str(path))
    arr = ds.ReadAsArray().astype(np.float64)
    return arr[None] if arr.ndim == 2 else arr


def matched(guide: np.ndarray, entry: dict) -> np.ndarray:
    """The guide mapped by the gain and offset its report entry records."""
    return np.asarray(entry["gain"])[:, None, None] * guide + np.asarray(entry["offset"])[:, None, None]


@pytest.fixture
def stack(shared_data):
    return shared_data / "s2_multidate_stack"


@pytest.fixture
def pairs(shared_data):
    return shared_data / "s1_s2_pairs"


# --------------------------------------------------------------------------- dates


def test_dates_parse_from_real_file_names(shared_data):
    s2 = shared_data / "s2_multidate_stack" / "s2_20150711.tif"
    ndvi = shared_data / "s2_ndvi_timeseries" / "ndvi" / "ndvi_20160605T100650.tif"
    landsat = sorted(p for p in (shared_data / "landsat_timeseries").glob("L*.tif") if "fmask" not in p.name)
    assert s2.exists() and ndvi.exists() and len(landsat) > 100
    assert acquisition_date(str(s2)) == datetime.date(2015, 7, 11)
    assert acquisition_date(ndvi.stem) == datetime.date(2016, 6, 5)
    assert landsat[0].name == "LE70350322008118EDC00.tif"
    assert acquisition_date(landsat[0].name) == datetime.date(2008, 4, 27)   # day 118 of leap year 2008
    for p in landsat:   # LXSPPPRRRYYYYDDD...: year and day of year after path and row
        date = acquisition_date(p.name)
        assert (date.year, date.timetuple().tm_yday) == (int(p.name[9:13]), int(p.name[13:16])), p.name
    # Landsat collection ids (acquisition date first, then processing date), ISO dates, nothing
    assert acquisition_date("LT05_L1TP_035032_20080501_20170101_01_T1") == datetime.date(2008, 5, 1)
    assert acquisition_date("s1_2016-01-02_vv") == datetime.date(2016, 1, 2)
    assert acquisition_date("/data/20160101/landcover.tif") is None
    assert acquisition_date("landcover") is None


def test_order_by_time_puts_the_nearest_date_first(stack):
    given = [Guide(str(stack / f"s2_{d}.tif")) for d in ("20150909", "20150830", "20150731")]
    radar = Guide("s1_20150712.tif", kind="radar")
    assert [g.name for g in order_by_time("s2_20150711", given + [radar])] == \
        ["s2_20150731", "s2_20150830", "s2_20150909"]
    undated = given + [Guide("/somewhere/clear_date.tif")]
    assert order_by_time("s2_20150711", undated) == undated      # a guide without a date: as given
    assert order_by_time("target", given) == given               # a target without a date: as given


# --------------------------------------------------------------------------- optical


def test_an_optical_guide_on_the_target_grid_is_matched_by_mean_and_std(stack, tmp_path):
    target = raster_info(str(stack / "s2_20150711.tif"))
    out = prepare_guides(target, BANDS, [Guide(str(stack / "s2_20150830.tif"))], str(tmp_path))
    assert out.radar is None and out.base.band_count == 4 and out.base.dtype == "float32"
    assert out.base.geotransform == target.geotransform and (out.base.width, out.base.height) == (100, 101)
    t, g, base = read(target.path)[[b - 1 for b in BANDS]], read(stack / "s2_20150830.tif")[[b - 1 for b in BANDS]], \
        read(out.base.path)
    entry = out.report[0]
    gain = t.std(axis=(1, 2)) / g.std(axis=(1, 2))
    np.testing.assert_allclose(entry["gain"], gain, rtol=1e-6)
    np.testing.assert_allclose(entry["offset"], t.mean(axis=(1, 2)) - gain * g.mean(axis=(1, 2)), atol=1e-7)
    np.testing.assert_allclose(base, matched(g, entry), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(base.mean(axis=(1, 2)), t.mean(axis=(1, 2)), rtol=1e-4)
    np.testing.assert_allclose(base.std(axis=(1, 2)), t.std(axis=(1, 2)), rtol=1e-4)
    assert entry["coverage"] == 1.0 and entry["date"] == "2015-08-30" and entry["days"] == 50
    assert entry["matched_pixels"] == 100 * 101 and entry["kind"] == "optical" and entry["name"] == "s2_20150830"


def _warp_elsewhere(src, target, tmp_path, how: str) -> str:
    """``src`` resampled onto another grid: Web Mercator, or the target's grid shifted by half a pixel."""
    path = str(tmp_path / f"s2_20150830_{how}.tif")
    if how == "3857":
        gdal.Warp(path, str(src), dstSRS="EPSG:3857", resampleAlg="bilinear", dstNodata=float("nan"))
    else:
        (xmin, ymin, xmax, ymax), (px, py) = target.bounds, target.pixel_size
        gdal.Warp(path, str(src), outputBounds=(xmin + px / 2, ymin - py / 2, xmax + px / 2, ymax - py / 2),
                  width=target.width, height=target.height, resampleAlg="bilinear", dstNodata=float("nan"))
    return path


@pytest.mark.parametrize("how", ["3857", "half_pixel"])
def test_a_guide_on_another_grid_is_warped_like_a_prealigned_one(stack, tmp_path, how):
    target = raster_info(str(stack / "s2_20150711.tif"))
    elsewhere = _warp_elsewhere(stack / "s2_20150830.tif", target, tmp_path, how)
    assert raster_info(elsewhere).geotransform != target.geotransform
    prealigned = str(tmp_path / "prealigned.tif")
    gdal.Warp(prealigned, elsewhere, dstSRS=target.crs_wkt, outputBounds=target.bounds, width=target.width,
              height=target.height, resampleAlg="bilinear", dstNodata=float("nan"))
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir(), (tmp_path / "c").mkdir()
    warped = prepare_guides(target, BANDS, [Guide(elsewhere)], str(tmp_path / "a"))
    ready = prepare_guides(target, BANDS, [Guide(prealigned)], str(tmp_path / "b"))
    a, b = read(warped.base.path), read(ready.base.path)
    assert (np.isfinite(a) == np.isfinite(b)).mean() > 0.999
    both = np.isfinite(a) & np.isfinite(b)
    assert both.mean() > 0.95 and warped.report[0]["coverage"] > 0.95
    assert np.abs(a - b)[both].max() < 1e-4
    # and it is the same place as the original date on the target's grid (resampled once or twice)
    on_grid = prepare_guides(target, BANDS, [Guide(str(stack / "s2_20150830.tif"))], str(tmp_path / "c"))
    original = read(on_grid.base.path)
    for i in range(4):
        assert np.corrcoef(a[i][both[i]], original[i][both[i]])[0, 1] > 0.9


def test_the_guides_own_clouds_are_left_out_and_the_next_date_fills_them(shared_data, tmp_path):
    d = shared_data / "s2_ndvi_timeseries"
    target = raster_info(str(d / "ndvi" / "ndvi_20160526T100611.tif"))
    near = Guide(str(d / "ndvi" / "ndvi_20160605T100650.tif"), mask=str(d / "cloud_mask" / "clm_20160605T100650.tif"),
                 mask_values=(1,))
    far = Guide(str(d / "ndvi" / "ndvi_20160804T100613.tif"), mask=str(d / "cloud_mask" / "clm_20160804T100613.tif"),
                mask_values=(1,))
    clouds = read(near.mask)[0] == 1
    assert 0.2 < clouds.mean() < 0.3 and not (read(far.mask)[0] == 1).any()

    (tmp_path / "one").mkdir()
    alone = prepare_guides(target, [1], [near], str(tmp_path / "one"))
    base = read(alone.base.path)[0]
    assert np.isnan(base[clouds]).all() and np.isfinite(base[~clouds]).all()
    assert alone.report[0]["coverage"] == pytest.approx(1 - clouds.mean())

    (tmp_path / "two").mkdir()
    out = prepare_guides(target, [1], [far, near], str(tmp_path / "two"))   # given far first: time decides
    far_entry, near_entry = out.report
    assert (near_entry["order"], far_entry["order"]) == (1, 2) and (near_entry["days"], far_entry["days"]) == (10, 70)
    base = read(out.base.path)[0]
    np.testing.assert_allclose(base[~clouds], matched(read(near.path), near_entry)[0][~clouds], rtol=1e-5)
    np.testing.assert_allclose(base[clouds], matched(read(far.path), far_entry)[0][clouds], rtol=1e-5)


def test_the_target_mask_keeps_its_clouds_out_of_the_matching(shared_data, tmp_path):
    d = shared_data / "s2_ndvi_timeseries"
    target = raster_info(str(d / "ndvi" / "ndvi_20160605T100650.tif"))
    mask = raster_info(str(d / "cloud_mask" / "clm_20160605T100650.tif"))
    guide = Guide(str(d / "ndvi" / "ndvi_20160526T100611.tif"))
    out = prepare_guides(target, [1], [guide], str(tmp_path), target_mask=mask, cloud_values=(1,))
    clear = read(mask.path)[0] == 0
    t, g = read(target.path)[0][clear], read(guide.path)[0][clear]
    gain = t.std() / g.std()
    assert out.report[0]["gain"][0] == pytest.approx(gain, rel=1e-6)
    assert out.report[0]["offset"][0] == pytest.approx(t.mean() - gain * g.mean(), abs=1e-7)
    assert out.report[0]["matched_pixels"] == clear.sum()


def test_a_partial_guide_leaves_nan_elsewhere_and_one_outside_is_refused(stack, tmp_path):
    target = raster_info(str(stack / "s2_20150711.tif"))
    left = str(tmp_path / "s2_20150830_left.tif")
    gdal.Translate(left, str(stack / "s2_20150830.tif"), srcWin=[0, 0, 50, 101])
    out = prepare_guides(target, BANDS, [Guide(left)], str(tmp_path))
    base = read(out.base.path)
    assert np.isfinite(base[:, :, :50]).all() and np.isnan(base[:, :, 50:]).all()
    assert out.report[0]["coverage"] == pytest.approx(0.5)
    g = read(stack / "s2_20150830.tif")[[b - 1 for b in BANDS]]
    np.testing.assert_allclose(base[:, :, :50], matched(g, out.report[0])[:, :, :50], rtol=1e-5, atol=1e-6)

    far = str(tmp_path / "elsewhere.tif")
    xmin, ymin, xmax, ymax = target.bounds
    gdal.Translate(far, str(stack / "s2_20150830.tif"), outputBounds=[xmin + 5e4, ymax, xmax + 5e4, ymin])
    with pytest.raises(InputError, match="Guide 'elsewhere' does not cover the target 's2_20150711'"):
        prepare_guides(target, BANDS, [Guide(left), Guide(far)], str(tmp_path))


def test_a_guide_valid_nowhere_and_bad_guides_are_refused_by_name(stack, pairs, tmp_path):
    target = raster_info(str(stack / "s2_20150711.tif"))
    overcast = Guide(str(stack / "s2_20150731.tif"), mask=str(stack / "clm_20150731.tif"))
    with pytest.raises(InputError, match="Guide 's2_20150731' has no valid pixel"):
        prepare_guides(target, BANDS, [Guide(str(stack / "s2_20150830.tif")), overcast], str(tmp_path))
    assert not (tmp_path / "base.tif").exists()
    s2 = raster_info(str(pairs / "ben0_s2_bgrn.tif"))
    with pytest.raises(InputError, match=r"Guide 'ben0_s1_vvvh' has 2 band\(s\): band\(s\) \[3, 4\]"):
        prepare_guides(s2, [1, 2, 3, 4], [Guide(str(pairs / "ben0_s1_vvvh.tif"))], str(tmp_path))
    with pytest.raises(InputError, match="'ben0_s1_vvvh': the speckle filter window"):
        prepare_guides(s2, [1, 2, 3, 4], [Guide(str(pairs / "ben0_s1_vvvh.tif"), kind="radar", speckle=4)],
                       str(tmp_path))
    with pytest.raises(InputError, match="at least one guide"):
        prepare_guides(s2, [1, 2, 3, 4], [], str(tmp_path))


def test_progress_reaches_one_and_cancelling_leaves_no_output(stack, pairs, tmp_path):
    target = raster_info(str(pairs / "ben0_s2_bgrn.tif"))
    calls = []
    guides = [Guide(str(pairs / "ben1_s2_bgrn.tif")), Guide(str(pairs / "ben0_s1_vvvh.tif"), kind="radar")]
    with pytest.raises(InputError, match="does not cover"):   # another place: refused before anything is written
        prepare_guides(target, [1, 2, 3, 4], guides, str(tmp_path))
    guides[0] = Guide(str(pairs / "ben0_s2_bgrn.tif"), name="same date")
    out = prepare_guides(target, [1, 2, 3, 4], guides, str(tmp_path), block=64,
                         progress=lambda f, m=None: calls.append(f))
    assert out.base is not None and out.radar.band_count == 2
    assert calls == sorted(calls) and calls[-1] == 1.0 and len(calls) > 4
    (tmp_path / "cancelled").mkdir()
    with pytest.raises(Cancelled):
        prepare_guides(target, [1, 2, 3, 4], guides, str(tmp_path / "cancelled"), cancelled=lambda: True)
    assert not {"base.tif", "radar.tif"} & {p.name for p in (tmp_path / "cancelled").iterdir()}


# --------------------------------------------------------------------------- radar


def test_radar_on_the_same_grid_comes_back_in_db(pairs, tmp_path):
    target = raster_info(str(pairs / "ben0_s2_bgrn.tif"))
    out = prepare_guides(target, [1, 2, 3, 4], [Guide(str(pairs / "ben0_s1_vvvh.tif"), kind="radar")], str(tmp_path))
    assert out.base is None and out.radar.band_count == 2 and out.radar.geotransform == target.geotransform
    np.testing.assert_allclose(read(out.radar.path), read(pairs / "ben0_s1_vvvh.tif"), atol=1e-4)
    entry = out.report[0]
    assert entry["units"] == "db" and entry["coverage"] == 1.0 and entry["resampling"] is None
    assert out.radar.descriptions == ("ben0_s1_vvvh VV", "ben0_s1_vvvh VH")


def test_linear_radar_is_recognised_and_gives_the_same_db(pairs, tmp_path):
    db = read(pairs / "ben0_s1_vvvh.tif")
    linear = str(tmp_path / "ben0_s1_linear.tif")
    src = gdal.Open(str(pairs / "ben0_s1_vvvh.tif"))
    ds = gdal.GetDriverByName("GTiff").Create(linear, 120, 120, 2, gdal.GDT_Float32)
    ds.SetGeoTransform(src.GetGeoTransform()), ds.SetProjection(src.GetProjection())
    ds.WriteArray((10.0 ** (db / 10.0)).astype(np.float32))
    ds = None
    target = raster_info(str(pairs / "ben0_s2_bgrn.tif"))
    out = prepare_guides(target, [1, 2, 3, 4], [Guide(linear, kind="radar")], str(tmp_path))
    assert out.report[0]["units"] == "linear"
    np.testing.assert_allclose(read(out.radar.path), db, atol=1e-4)


def test_the_lee_filter_by_blocks_equals_the_whole_image_filter(pairs, tmp_path):
    target = raster_info(str(pairs / "ben0_s2_bgrn.tif"))
    guide = Guide(str(pairs / "ben0_s1_vvvh.tif"), kind="radar", speckle=5)
    runs = {}
    for block in (16, 512):
        (tmp_path / str(block)).mkdir()
        runs[block] = prepare_guides(target, [1, 2, 3, 4], [guide], str(tmp_path / str(block)), block=block)
    small, whole = read(runs[16].radar.path), read(runs[512].radar.path)
    noise = runs[16].report[0]["noise_cv2"]
    assert noise == runs[512].report[0]["noise_cv2"] and all(0 < n < 1 for n in noise)
    np.testing.assert_allclose(small, whole, atol=1e-4)
    power = 10.0 ** (read(guide.path) / 10.0)
    expected = np.stack([10 * np.log10(lee_filter(p, 5, n)) for p, n in zip(power, noise)])
    np.testing.assert_allclose(small, expected, atol=1e-4)
    assert (small.std(axis=(1, 2)) < read(guide.path).std(axis=(1, 2))).all()   # the speckle is smoothed


def test_radar_larger_than_the_target_on_its_pixel_grid_is_cut_without_warping(pairs, tmp_path):
    part = str(tmp_path / "ben0_s2_part.tif")
    gdal.Translate(part, str(pairs / "ben0_s2_bgrn.tif"), srcWin=[20, 30, 64, 50])
    target = raster_info(part)
    guide = Guide(str(pairs / "ben0_s1_vvvh.tif"), kind="radar", speckle=5)
    out = prepare_guides(target, [1, 2, 3, 4], [guide], str(tmp_path), block=16)
    assert out.report[0]["resampling"] is None and (out.radar.width, out.radar.height) == (64, 50)
    # the filter's halo reaches the guide's real pixels beyond the target, as a whole-image filter would
    power = 10.0 ** (read(guide.path) / 10.0)
    whole = np.stack([10 * np.log10(lee_filter(p, 5, n)) for p, n in zip(power, out.report[0]["noise_cv2"])])
    np.testing.assert_allclose(read(out.radar.path), whole[:, 30:80, 20:84], atol=1e-4)


def test_finer_radar_is_averaged_in_linear_power_not_in_db(pairs, tmp_path):
    coarse = str(tmp_path / "ben0_s2_20m.tif")
    gdal.Translate(coarse, str(pairs / "ben0_s2_bgrn.tif"), xRes=20, yRes=20, resampleAlg="average")
    target = raster_info(coarse)
    out = prepare_guides(target, [1, 2, 3, 4], [Guide(str(pairs / "ben0_s1_vvvh.tif"), kind="radar")], str(tmp_path))
    assert out.report[0]["resampling"] == "average" and (out.radar.width, out.radar.height) == (60, 60)
    db = read(pairs / "ben0_s1_vvvh.tif").reshape(2, 60, 2, 60, 2)
    expected = 10 * np.log10((10.0 ** (db / 10.0)).mean(axis=(2, 4)))
    np.testing.assert_allclose(read(out.radar.path), expected, atol=1e-3)
    assert np.abs(db.mean(axis=(2, 4)) - expected).max() > 0.5   # averaging dB would have been wrong


def test_looks_like_radar(pairs, shared_data):
    assert looks_like_radar(raster_info(str(pairs / "ben0_s1_vvvh.tif")))          # VV, VH descriptions
    assert looks_like_radar(raster_info(str(pairs / "skeo_s1_2018.tif")))          # no descriptions: dB values
    assert not looks_like_radar(raster_info(str(pairs / "ben0_s2_bgrn.tif")))
    ndvi = shared_data / "s2_ndvi_timeseries" / "ndvi" / "ndvi_20150711T100008.tif"
    assert not looks_like_radar(raster_info(str(ndvi)))                            # an index in [-1, 1]
