"""Which shipped model ``removeclouds`` runs when no model is named (``cloud_removal.choice``)."""

import os

import numpy as np

from cloudfree.models.cloud_removal.choice import (FILL_MODEL, GUIDED_OPTICAL_MODEL, GUIDED_RADAR_MODEL,
                                                   RESIDUAL_MODEL, choose_shipped_model)
from cloudfree.models.cloud_removal.guides import Guide
from cloudfree.models.raster import raster_info, write_array


def _layers(tmp_path, bands=4, scale=1.0):
    rng = np.random.default_rng(0)
    img = (rng.uniform(1000, 3000, (bands, 64, 64)) * scale).astype(np.float32)
    src = raster_info(write_array(str(tmp_path / f"img{bands}_{scale}.tif"), img))
    mask = raster_info(write_array(str(tmp_path / "mask.tif"), (rng.random((64, 64)) < 0.3).astype(np.uint8)))
    return src, mask


def _name(choice):
    return os.path.basename(choice[0])


def test_four_l1c_bands_with_a_mask_get_the_residual_model(tmp_path):
    src, mask = _layers(tmp_path)
    model, guides, why = choose_shipped_model(src, None, mask, [])
    assert os.path.basename(model) == RESIDUAL_MODEL and guides == [] and "without radar" in why
    radar = Guide(str(tmp_path / "s1.tif"), kind="radar")
    model, guides, why = choose_shipped_model(src, None, mask, [radar])
    assert os.path.basename(model) == RESIDUAL_MODEL and guides == [radar] and "with the radar" in why


def test_without_a_mask_or_in_other_units_the_fill_is_kept(tmp_path):
    src, mask = _layers(tmp_path)
    assert _name(choose_shipped_model(src, None, None, [])) == FILL_MODEL
    dn, mask = _layers(tmp_path, scale=20.0)  # 16-bit DNs of another sensor, far outside L1C reflectance
    model, _, why = choose_shipped_model(dn, None, mask, [])
    assert os.path.basename(model) == FILL_MODEL and "outside the Sentinel-2 L1C range" in why


def test_thirteen_bands_need_bands_picked(tmp_path):
    src, mask = _layers(tmp_path, bands=13)
    model, _, why = choose_shipped_model(src, None, mask, [])
    assert os.path.basename(model) == FILL_MODEL and "BANDS" in why
    assert _name(choose_shipped_model(src, [2, 3, 4, 8], mask, [])) == RESIDUAL_MODEL


def test_guides_pick_the_guided_models(tmp_path):
    src, mask = _layers(tmp_path)
    optical, radar = Guide(str(tmp_path / "d2.tif")), Guide(str(tmp_path / "s1.tif"), kind="radar")
    model, guides, why = choose_shipped_model(src, None, mask, [optical, radar])
    assert os.path.basename(model) == GUIDED_OPTICAL_MODEL and guides == [optical] and "left aside" in why
    assert _name(choose_shipped_model(src, None, None, [radar])) == GUIDED_RADAR_MODEL
