"""models/stack: other dates registered onto a target and their clouds detected (prepare_dates), and the chain's
report (chain_summary, write_chain_report), on real Sentinel-2 dates of ../shared/data/s2_multidate_stack."""

import json

import numpy as np
import pytest
from osgeo import gdal

from cloudfree.models.detection import BandRoles, DetectionOptions, ReflectanceScaling
from cloudfree.models.errors import Cancelled, InputError
from cloudfree.models.raster import raster_info, write_array
from cloudfree.models.stack import PrepareOptions, chain_summary, prepare_dates, save_summary, write_chain_report

pytest.importorskip("ukis_csmask")
OPTIONS = PrepareOptions(BandRoles(2, 3, 4, 8, 12, 13), ReflectanceScaling.preset("reflectance"),
                         DetectionOptions(device="cpu", dilation=2))


@pytest.fixture(scope="module")
def dates(shared_data):
    folder = shared_data / "s2_multidate_stack"
    return {d: raster_info(str(folder / f"s2_{d}.tif")) for d in ("20150711", "20150731", "20150820", "20150909")}


def test_clear_dates_are_registered_and_an_overcast_one_falls_back(dates, tmp_path):
    prepared = prepare_dates(dates["20150909"], [dates["20150711"], dates["20150820"]], [], str(tmp_path / "p"),
                             OPTIONS)
    clear, overcast = prepared
    assert clear.aligned_by == "registration" and clear.usable and clear.registration["n_red"] >= 6
    assert abs(clear.registration["shift_x"]) < 2 and abs(clear.registration["shift_y"]) < 2
    assert overcast.aligned_by == "georeferencing" and "s2_20150820" in overcast.note and not overcast.usable
    for layer in prepared:  # on the target grid, with a mask
        ds = gdal.Open(layer.path)
        assert ds.GetGeoTransform() == dates["20150909"].geotransform and ds.RasterCount == 13
        assert gdal.Open(layer.mask).RasterXSize == dates["20150909"].width
    summary = json.loads(open(save_summary(str(tmp_path / "p" / "s.json"), dates["20150909"], prepared,
                                           OPTIONS)).read())
    assert [layer["usable"] for layer in summary["layers"]] == [True, False]


def test_strict_mode_stops_and_leaves_nothing(dates, tmp_path):
    folder = tmp_path / "p"
    strict = PrepareOptions(OPTIONS.roles, OPTIONS.scaling, OPTIONS.detection, registration="strict")
    with pytest.raises(InputError, match="s2_20150820"):
        prepare_dates(dates["20150909"], [dates["20150711"], dates["20150820"]], [], str(folder), strict)
    assert not folder.exists()  # the first date's files were removed with the folder it made


def test_cancel_leaves_nothing(dates, tmp_path):
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 3

    with pytest.raises(Cancelled):
        prepare_dates(dates["20150909"], [dates["20150711"], dates["20150731"]], [], str(tmp_path / "p"), OPTIONS,
                      cancelled=cancelled)
    assert list(tmp_path.iterdir()) == []


def test_georeferencing_only_and_bad_inputs(dates, tmp_path):
    geo = PrepareOptions(OPTIONS.roles, OPTIONS.scaling, OPTIONS.detection, registration="georeferencing")
    (layer,) = prepare_dates(dates["20150909"], [dates["20150711"]], [], str(tmp_path / "p"), geo)
    assert layer.aligned_by == "georeferencing" and not layer.registration
    assert np.array_equal(gdal.Open(layer.path).ReadAsArray(), gdal.Open(dates["20150711"].path).ReadAsArray())
    small = raster_info(write_array(str(tmp_path / "small.tif"), np.zeros((1, 10, 10), np.uint8)))
    with pytest.raises(InputError, match="small.*not on the grid"):
        prepare_dates(dates["20150909"], [dates["20150711"]], [], str(tmp_path / "q"), OPTIONS, target_mask=small)
    with pytest.raises(InputError, match="No other date"):
        prepare_dates(dates["20150909"], [], [], str(tmp_path / "q"), OPTIONS)
    with pytest.raises(InputError, match="Unknown registration"):
        PrepareOptions(OPTIONS.roles, OPTIONS.scaling, registration="maybe")


def test_the_report_counts_changes_inside_and_outside_the_mask(dates, tmp_path):
    target = dates["20150711"]
    image = gdal.Open(target.path).ReadAsArray()
    mask = np.zeros((target.height, target.width), np.uint8)
    mask[10:30, 10:40] = 1
    mask[50:52, 0:5] = 2
    changed = image.copy()
    changed[:, mask > 0] += 1.0
    changed[3, 90, 90] += 1.0  # one pixel outside the mask
    cloud_free = raster_info(write_array(str(tmp_path / "free.tif"), changed, like=target))
    mask_info = raster_info(write_array(str(tmp_path / "mask.tif"), mask, like=target))
    summary = chain_summary(target, mask_info, cloud_free, None, "fusion", (1, 2))
    assert summary["result"] == {"path": cloud_free.path, "mask_values": [1, 2], "changed_inside": 610,
                                 "changed_outside": 1, "masked_pixels": 610}
    assert summary["target_clouds"]["cloud_fraction"] == pytest.approx(600 / mask.size)
    write_chain_report(str(tmp_path / "r.json"), summary)
    assert json.loads((tmp_path / "r.json").read_text())["method"] == "fusion"
    html = open(write_chain_report(str(tmp_path / "r.html"), summary, (target, cloud_free, mask_info),
                                   rgb=(4, 3, 2))).read()
    assert "610 of them changed, and 1 pixels outside the mask" in html and "base64" in html
