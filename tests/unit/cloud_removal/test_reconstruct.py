"""reconstruct_from_dates on a constructed case with known dates (a real Sentinel-2 patch and two 'other dates'
made from it by known gains): provenance codes match the date used, clear pixels stay bit-identical with code 0,
the predicted error lies on the input's grid with nodata where the input has nodata, blocks do not show, the
self-check never changes the outputs, cancel and bad paths leave no output; and the provenance of the other
methods (provenance_map)."""

import os

import numpy as np
import pytest
from osgeo import gdal

from cloudfree.models.cloud_removal import provenance
from cloudfree.models.cloud_removal.guides import Guide
from cloudfree.models.cloud_removal.provenance_map import NEAREST, write_provenance
from cloudfree.models.cloud_removal.reconstruct import TemporalOptions, reconstruct_from_dates
from cloudfree.models.cloud_removal.selfcheck import SelfCheckOptions
from cloudfree.models.errors import Cancelled, InputError
from cloudfree.models.raster import raster_info, write_array

SIZE = 128


def read(path) -> np.ndarray:
    arr = gdal.Open(str(path)).ReadAsArray()
    return arr[None] if arr.ndim == 2 else arr


@pytest.fixture(scope="module")
def case(shared_data, tmp_path_factory):
    """Target S2_20180730 (B2, B3, B4, B8 of a real date, UInt16, nodata 0 in one corner) with a cloud; guide A
    (S2_20180725, 5 days) = 0.9 x target, its own mask over the cloud's left part; guide B (S2_20180824, 25 days)
    = 1.1 x target + 100, its own mask over a strip where A is masked too (no date sees it: the fill)."""
    folder = tmp_path_factory.mktemp("dates")
    crop = str(folder / "crop.tif")
    gdal.Translate(crop, str(shared_data / "sen12mscr_ts" / "series" / "s2_20180730.tif"), bandList=[2, 3, 4, 8],
                   srcWin=[40, 60, SIZE, SIZE])
    info = raster_info(crop)
    truth = read(crop).astype(np.float64)
    truth[:, :6, :6] = 0                                      # nodata corner
    target = str(folder / "S2_20180730.tif")
    write_array(target, truth.astype(np.uint16), like=info, nodata=0)
    cloud = np.zeros((SIZE, SIZE), np.uint8)
    cloud[30:90, 20:100] = 1
    mask = write_array(str(folder / "mask.tif"), cloud[None], like=info)
    a_mask = np.zeros_like(cloud)
    a_mask[25:95, 10:50] = 1
    b_mask = np.zeros_like(cloud)
    b_mask[50:60, 10:50] = 1
    dates = {"a": (0.9 * truth, a_mask, "S2_20180725"), "b": (1.1 * truth + 100, b_mask, "S2_20180824")}
    guides = []
    for key, (values, m, name) in dates.items():
        path = write_array(str(folder / f"{name}.tif"), values.astype(np.float32), like=info, dtype="float32")
        mpath = write_array(str(folder / f"{name}_mask.tif"), m[None], like=info)
        guides.append(Guide(path, mask=mpath, mask_values=(1,), name=name))
    return {"target": target, "mask": mask, "guides": guides, "truth": truth, "cloud": cloud == 1,
            "a_mask": a_mask == 1, "b_mask": b_mask == 1, "folder": folder}


def run(case, tmp_path, name="out", **options):
    opts = TemporalOptions(provenance=str(tmp_path / f"{name}_prov.tif"),
                           uncertainty=str(tmp_path / f"{name}_err.tif"), **options)
    out = str(tmp_path / f"{name}.tif")
    summary = reconstruct_from_dates(raster_info(case["target"]), out, case["guides"], mask=raster_info(case["mask"]),
                                     mask_values=(1,), options=opts)
    return out, opts, summary


def test_provenance_names_the_date_used_and_clear_pixels_stay_bit_identical(case, tmp_path):
    out, opts, summary = run(case, tmp_path)
    got, prov, src = read(out), read(opts.provenance)[0], read(case["target"])
    cloud, valid = case["cloud"], (src != 0).all(axis=0)
    only_b = cloud & case["a_mask"] & ~case["b_mask"]
    neither = cloud & case["a_mask"] & case["b_mask"]
    with_a = cloud & ~case["a_mask"]
    assert (prov[with_a] == 1).all()                       # the nearer date weighs most where it is clear
    assert (prov[only_b] == 2).all()
    assert (prov[neither] == provenance.FILL).all()
    assert (prov[~cloud & valid] == provenance.CLEAR).all() and (prov[~valid] == provenance.NODATA).all()
    assert np.array_equal(got[:, ~cloud], src[:, ~cloud])  # bit for bit, nodata included
    truth = case["truth"]
    for zone in (with_a, only_b):                          # both dates are exact lines of the target
        assert np.abs(got[:, zone].astype(float) - truth[:, zone]).mean() < 2.0
    assert summary["counts"][provenance.FILL] == int(neither.sum())
    legend = provenance.read_legend(opts.provenance)
    assert legend[1].startswith("guide 1: S2_20180725 (2018-07-25)") and legend[provenance.FILL].startswith("unmixing")
    assert gdal.Open(opts.provenance).GetRasterBand(1).GetColorTable() is not None


def test_the_predicted_error_is_on_the_input_grid_with_nodata_where_the_input_has_none(case, tmp_path):
    out, opts, _ = run(case, tmp_path)
    err_ds, src_ds = gdal.Open(opts.uncertainty), gdal.Open(case["target"])
    assert err_ds.GetGeoTransform() == src_ds.GetGeoTransform()
    assert err_ds.GetProjection() == src_ds.GetProjection()
    assert (err_ds.RasterXSize, err_ds.RasterYSize, err_ds.RasterCount) == (SIZE, SIZE, 4)
    err = read(opts.uncertainty)
    valid = (read(case["target"]) != 0).all(axis=0)
    assert np.isnan(err[:, ~valid]).all() and np.isfinite(err[:, valid]).all()
    assert (err[:, ~case["cloud"] & valid] == 0).all() and (err[:, case["cloud"]] >= 0).all()
    assert err[:, case["cloud"] & case["a_mask"] & case["b_mask"]].min() > 0   # the fill: the scene's spread


def test_blocks_do_not_show_and_the_self_check_changes_nothing(case, tmp_path):
    out, opts, _ = run(case, tmp_path, "whole")
    small, small_opts, summary = run(case, tmp_path, "blocks", block=48, self_check=SelfCheckOptions(chip=64))
    for a, b in ((out, small), (opts.provenance, small_opts.provenance)):
        assert np.array_equal(read(a), read(b))
    np.testing.assert_allclose(read(opts.uncertainty), read(small_opts.uncertainty), rtol=1e-5, atol=1e-3)
    check = summary["self_check"]
    assert check["chips"] >= 1 and check["temporal"]["psnr_interval"][0] <= check["temporal"]["psnr"]
    assert check["temporal"]["psnr"] > 30                  # exact dates: a near-perfect reconstruction


def test_cancel_leaves_no_output(case, tmp_path):
    calls = {"n": 0}

    def cancelled():
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        reconstruct_from_dates(raster_info(case["target"]), str(tmp_path / "c.tif"), case["guides"],
                               mask=raster_info(case["mask"]), mask_values=(1,),
                               options=TemporalOptions(provenance=str(tmp_path / "p.tif"),
                                                       uncertainty=str(tmp_path / "e.tif"), block=32),
                               cancelled=cancelled)
    assert os.listdir(tmp_path) == []


def test_an_output_that_is_an_input_or_a_missing_mask_is_refused(case, tmp_path):
    with pytest.raises(InputError, match="is one of the inputs"):
        reconstruct_from_dates(raster_info(case["target"]), str(tmp_path / "o.tif"), case["guides"],
                               mask=raster_info(case["mask"]), options=TemporalOptions(provenance=case["mask"]))
    with pytest.raises(InputError, match="cloud mask"):
        reconstruct_from_dates(raster_info(case["target"]), str(tmp_path / "o.tif"), case["guides"], mask=None)
    with pytest.raises(InputError, match="other date"):
        reconstruct_from_dates(raster_info(case["target"]), str(tmp_path / "o.tif"), [],
                               mask=raster_info(case["mask"]))
    assert not (tmp_path / "o.tif").exists()


def test_the_provenance_of_other_methods(case, tmp_path):
    src = raster_info(case["target"])
    fixed = write_provenance(src, str(tmp_path / "g.tif"), provenance.GENERATOR, bands=[1, 2, 3, 4],
                             mask=raster_info(case["mask"]), mask_values=(1,))
    prov = read(tmp_path / "g.tif")[0]
    assert (prov[case["cloud"]] == provenance.GENERATOR).all() and fixed["counts"][provenance.GENERATOR] > 0
    write_provenance(src, str(tmp_path / "n.tif"), NEAREST, bands=[1, 2, 3, 4], mask=raster_info(case["mask"]),
                     mask_values=(1,), guides=case["guides"])
    near = read(tmp_path / "n.tif")[0]
    cloud = case["cloud"]
    assert (near[cloud & ~case["a_mask"]] == 1).all() and (near[cloud & case["a_mask"] & ~case["b_mask"]] == 2).all()
    assert (near[cloud & case["a_mask"] & case["b_mask"]] == provenance.FILL).all()
    write_provenance(src, str(tmp_path / "all.tif"), provenance.GENERATOR, bands=[1, 2, 3, 4])   # no mask: all
    assert (read(tmp_path / "all.tif")[0][6:, 6:] == provenance.GENERATOR).all()
