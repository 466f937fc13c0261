"""Fusion of arrays by every method: weight maps, masks, nodata, baselines."""

import numpy as np
import pytest

from cloudfree.models import fusion as fu
from cloudfree.models.errors import InputError
from cloudfree.models.raster import open_raster, read_window


def test_fuse_arrays_quality_weight_maps_and_masks(tiny_model):
    rng = np.random.default_rng(0)
    K, C, H, W = 4, 2, 40, 44
    dates = rng.normal(size=(K, C, H, W)).astype(np.float32)
    valid = rng.random((K, H, W)) > 0.2
    cloud = rng.random((K, H, W)) > 0.7
    valid[:, 3, 3] = False
    fused, w = fu.fuse_arrays(dates, valid, "quality", tiny_model(), cloud_mask=cloud)
    assert fused.shape == (C, H, W) and w.shape == (K, H, W)
    assert np.all(w[~valid] == 0)
    allowed = valid & ~cloud
    some = allowed.any(0)
    assert np.all(w[:, some][~allowed[:, some]] == 0)
    assert np.allclose(w.sum(0)[valid.any(0)], 1, atol=1e-5)
    assert np.isnan(fused[:, 3, 3]).all() and np.all(w[:, 3, 3] == 0)
    expect = np.einsum("khw,kchw->chw", w, np.where(valid[:, None], dates, 0))
    ok = valid.any(0)
    assert np.allclose(fused[:, ok], expect[:, ok], atol=1e-5)


@pytest.mark.parametrize("method", fu.METHODS)
def test_identical_dates_give_that_date(method, series, tiny_model):
    dates, _ = series
    img = read_window(open_raster(dates[0]), (0, 0, 100, 101))
    stack = np.repeat(img[None], 3, axis=0)
    fused, w = fu.fuse_arrays(stack, None, method, tiny_model() if method == "quality" else None)
    assert np.allclose(fused, img, atol=1e-6)
    assert np.allclose(w.sum(0), 1, atol=1e-6)


def test_baselines_honour_nodata_masks_and_probabilities():
    K, C, H, W = 3, 1, 2, 3
    d = np.zeros((K, C, H, W), dtype=np.float32)
    d[0], d[1], d[2] = 1.0, 2.0, 10.0
    d[2, 0, 0, 0] = np.nan                   # nodata in date 2
    d[:, 0, 1, 2] = np.nan                   # no date valid
    cloud = np.zeros((K, H, W), bool)
    cloud[0, 0, 1] = True                    # date 0 cloudy at (0, 1)
    cloud[:, 1, 0] = True                    # every date cloudy: fallback to all valid
    mean, wm = fu.fuse_arrays(d, None, "mean", cloud_mask=cloud)
    assert mean[0, 0, 0] == pytest.approx(1.5)
    assert mean[0, 0, 1] == pytest.approx(6.0)
    assert mean[0, 1, 0] == pytest.approx(13 / 3)
    assert np.isnan(mean[0, 1, 2]) and np.all(wm[:, 1, 2] == 0)
    assert wm[2, 0, 0] == 0 and wm[0, 0, 1] == 0
    med, wmed = fu.fuse_arrays(d, None, "median", cloud_mask=cloud)
    assert med[0, 0, 0] == pytest.approx(1.5) and med[0, 1, 1] == pytest.approx(2.0)
    assert np.isnan(med[0, 1, 2])
    assert wmed[1, 1, 1] == 1 and np.allclose(wmed.sum(0)[~np.isnan(med[0])], 1)
    best, wb = fu.fuse_arrays(d, None, "best", cloud_mask=cloud)
    assert best[0, 0, 0] == 2.0              # date 2 is nodata; tie between 0 and 1 -> the last one
    assert best[0, 1, 1] == 10.0             # no mask flags: last date
    assert best[0, 0, 1] == 10.0
    assert np.isnan(best[0, 1, 2]) and np.all(wb[:, 1, 2] == 0)
    prob = np.stack([np.full((H, W), 5.0), np.full((H, W), 1.0), np.full((H, W), 3.0)])
    best, _ = fu.fuse_arrays(d, None, "best", cloud_probability=prob)
    assert best[0, 1, 1] == 2.0              # lowest probability wins


def test_inputs_are_checked():
    with pytest.raises(InputError):
        fu.fuse_arrays(np.zeros((1, 1, 4, 4)), None, "mean")
    with pytest.raises(InputError):
        fu.fuse_arrays(np.zeros((2, 1, 4, 4)), None, "max")
    with pytest.raises(InputError, match="Unknown fusion method"):
        fu.fuse_block(np.zeros((2, 1, 4, 4), np.float32), np.ones((2, 4, 4), bool), None, None,
                      fu.FusionSettings("max"))
