"""Grids: same-grid checks that name the problem, warping onto a reference, overlap (engine only)."""

import numpy as np
import pytest
from osgeo import gdal

from cloudfree.models import grids, raster
from cloudfree.models.errors import GridMismatchError, InputError


@pytest.fixture()
def pair(shared_data):
    return shared_data / "s2_cloud_pair"


def test_grid_check_catches_shift_and_reprojection(tmp_path, pair):
    ref = raster.raster_info(str(pair / "clean.tif"), "clean")
    same = raster.raster_info(str(pair / "cloudy.tif"), "cloudy")
    grids.check_same_grid([ref, same])

    shifted = tmp_path / "shifted.tif"
    gdal.Translate(str(shifted), ref.path)
    ds = gdal.Open(str(shifted), gdal.GA_Update)
    gt = list(ds.GetGeoTransform())
    gt[0] += 0.5 * gt[1]
    ds.SetGeoTransform(gt)
    ds = None
    with pytest.raises(GridMismatchError, match=r"'shifted' has a shifted origin \(\+0.500"):
        grids.check_same_grid([ref, raster.raster_info(str(shifted), "shifted")])

    warped = tmp_path / "utm.tif"
    gdal.Warp(str(warped), ref.path, dstSRS="EPSG:32630")
    with pytest.raises(GridMismatchError, match=r"'utm' has a different CRS \(EPSG:32630 instead of EPSG:4326\)"):
        grids.check_same_grid([ref, raster.raster_info(str(warped), "utm")])

    aligned = grids.align_to_reference([raster.raster_info(str(warped), "utm")], ref, str(tmp_path))
    grids.check_same_grid([ref, aligned[0]])
    back = raster.read_window(raster.open_raster(aligned[0].path), (64, 64, 128, 128), [4])
    orig = raster.read_window(raster.open_raster(ref.path), (64, 64, 128, 128), [4])
    assert np.corrcoef(back.ravel(), orig.ravel())[0, 1] > 0.95


def test_no_overlap_cannot_be_aligned(tmp_path, pair):
    ref = raster.raster_info(str(pair / "clean.tif"), "clean")
    far = tmp_path / "far.tif"
    gdal.Translate(str(far), ref.path, outputBounds=[100.0, 10.0, 100.02, 9.98])
    with pytest.raises(InputError, match="'far' does not overlap 'clean'"):
        grids.align_to_reference([raster.raster_info(str(far), "far")], ref, str(tmp_path))
