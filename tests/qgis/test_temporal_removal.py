"""removeclouds with other dates through Processing: the default method with dates and a mask is the temporal
regression, with provenance, predicted error, report and self-check; the other methods' provenance; headless.

Data: three real dates of ../shared/data/sen12mscr_ts/series (2018-07-20, 2018-08-09, 2018-08-24: nearly clear)
as guides of the real 2018-07-30, over which the real cloud pixels of 2018-07-05 are laid in a band of rows
(written to tmp_path; the mask marks them)."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal
from qgis.core import QgsProcessingException

from cloudfree.models.cloud_removal import provenance
from cloudfree.models.raster import raster_info, write_array
from cloudfree.processing_provider.remove_clouds import RemoveCloudsAlgorithm as Remove

ROOT = Path(__file__).resolve().parents[2]
ROWS = slice(60, 140)


@pytest.fixture(scope="module")
def dates(shared_data, tmp_path_factory):
    series = shared_data / "sen12mscr_ts" / "series"
    folder = tmp_path_factory.mktemp("temporal")
    clear = gdal.Open(str(series / "s2_20180730.tif")).ReadAsArray()
    image = clear.copy()
    image[:, ROWS] = gdal.Open(str(series / "s2_20180705.tif")).ReadAsArray()[:, ROWS]
    info = raster_info(str(series / "s2_20180730.tif"))
    target = write_array(str(folder / "S2_20180730_cloudy.tif"), image, like=info)
    mask = np.zeros(clear.shape[1:], np.uint8)
    mask[ROWS] = 1
    return {"target": target, "mask": write_array(str(folder / "mask.tif"), mask[None], like=info),
            "clear": clear, "cloud": mask == 1,
            "guides": [str(series / f"s2_{d}.tif") for d in ("20180720", "20180809", "20180824")]}


def base(dates, tmp_path, **extra):
    return {Remove.INPUT: dates["target"], Remove.BANDS: "2,3,4,8", Remove.MASK: dates["mask"],
            Remove.MASK_VALUES: "1", Remove.GUIDES: dates["guides"], Remove.OUTPUT: str(tmp_path / "out.tif"),
            **extra}


def test_the_default_with_dates_and_a_mask_is_the_temporal_regression_with_its_side_outputs(run_logged, dates,
                                                                                            tmp_path):
    results, log = run_logged("cloudfree:removeclouds", base(
        dates, tmp_path, OUTPUT_PROVENANCE=str(tmp_path / "prov.tif"), OUTPUT_UNCERTAINTY=str(tmp_path / "err.tif"),
        REPORT=str(tmp_path / "report.json")))
    assert "the temporal regression from the 3 other date(s)" in log and "Self-check on" in log
    got = gdal.Open(results[Remove.OUTPUT]).ReadAsArray()
    src = gdal.Open(dates["target"]).ReadAsArray()[[1, 2, 3, 7]]
    cloud = dates["cloud"]
    assert np.array_equal(got[:, ~cloud], src[:, ~cloud])
    truth = dates["clear"][[1, 2, 3, 7]].astype(float)
    err = np.abs(got[:, cloud] - truth[:, cloud]).mean()
    assert err < 0.05 * truth[:, cloud].mean(), err              # real dates 10 days apart: close
    prov = gdal.Open(results[Remove.OUTPUT_PROVENANCE]).ReadAsArray()
    assert (prov[~cloud] == provenance.CLEAR).all() and set(np.unique(prov[cloud])) <= {1, 2, 3}
    assert (prov[cloud] == 1).mean() > 0.3                        # 2018-07-20 and 08-09 are 10 days away
    predicted = gdal.Open(results[Remove.OUTPUT_UNCERTAINTY]).ReadAsArray()
    assert predicted.shape == got.shape and (predicted[:, ~cloud] == 0).all() and (predicted[:, cloud] > 0).all()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["method"] == "temporal" and report["legend"]["1"].startswith("guide 1: s2_20180720 (2018-07-20)")
    assert report["self_check"]["temporal"]["psnr"] == pytest.approx(results[Remove.SELF_CHECK_PSNR])
    assert results[Remove.SELF_CHECK_PSNR] > 25


def test_without_self_check_the_outputs_are_the_same(run_alg, dates, tmp_path):
    a = run_alg("cloudfree:removeclouds", base(dates, tmp_path / "a", OUTPUT=str(tmp_path / "a.tif")))
    b = run_alg("cloudfree:removeclouds", base(dates, tmp_path, OUTPUT=str(tmp_path / "b.tif"), SELF_CHECK=False))
    assert np.array_equal(gdal.Open(a[Remove.OUTPUT]).ReadAsArray(), gdal.Open(b[Remove.OUTPUT]).ReadAsArray())
    assert b[Remove.SELF_CHECK_PSNR] == -1


def test_the_matched_copy_traces_its_pixels_to_the_nearest_date_and_has_no_error_model(run_logged, dates, tmp_path):
    results, log = run_logged("cloudfree:removeclouds", base(
        dates, tmp_path, METHOD=1, OUTPUT_PROVENANCE=str(tmp_path / "prov.tif"),
        OUTPUT_UNCERTAINTY=str(tmp_path / "err.tif")))
    prov = gdal.Open(results[Remove.OUTPUT_PROVENANCE]).ReadAsArray()
    cloud = dates["cloud"]
    assert (prov[~cloud] == 0).all() and (prov[cloud] == 1).mean() > 0.9   # 2018-07-20 first where clear
    assert "Only the temporal method predicts its error" in log
    err = gdal.Open(results[Remove.OUTPUT_UNCERTAINTY]).ReadAsArray()
    assert np.isnan(err[:, cloud]).all() and (err[:, ~cloud] == 0).all()


def test_the_temporal_method_needs_a_mask_and_dates(run_alg, dates, tmp_path):
    with pytest.raises(QgsProcessingException, match="cloud mask"):
        run_alg("cloudfree:removeclouds", {**base(dates, tmp_path, METHOD=4), Remove.MASK: None})
    with pytest.raises(QgsProcessingException, match="other date"):
        run_alg("cloudfree:removeclouds", {**base(dates, tmp_path, METHOD=4), Remove.GUIDES: None})
    assert not (tmp_path / "out.tif").exists()


def test_headless_temporal_run_writes_its_provenance(dates, tmp_path):
    proc = subprocess.run([str(ROOT / "scripts" / "qgis_process"), "--json", "run", "cloudfree:removeclouds", "--",
                           f"INPUT={dates['target']}", "BANDS=2,3,4,8", f"MASK={dates['mask']}", "MASK_VALUES=1",
                           *[f"GUIDES={g}" for g in dates["guides"]], "SELF_CHECK=false",
                           f"OUTPUT={tmp_path / 'h.tif'}", f"OUTPUT_PROVENANCE={tmp_path / 'hp.tif'}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(proc.stdout)["results"]
    assert results["OUTPUT_PROVENANCE"] == str(tmp_path / "hp.tif")
    assert provenance.read_legend(str(tmp_path / "hp.tif"))[3].startswith("guide 3: s2_20180824")
