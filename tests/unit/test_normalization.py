"""Percentile scaling (numpy and torch) and display stretches (engine only)."""

import numpy as np
import pytest
import torch

from cloudfree.models import normalization as nz
from cloudfree.models.errors import InputError


def test_percentile_scaling_maps_limits_to_target_and_inverts():
    rng = np.random.default_rng(0)
    x = rng.uniform(100, 3000, (3, 40, 40))
    stats = {"low": [], "high": []}
    for band in x:
        lo, hi = nz.percentile_limits(band.ravel())
        stats["low"].append(lo)
        stats["high"].append(hi)
    y = nz.to_network(x, stats, target=0.8, clip=2.0)
    assert y.dtype == np.float32
    lo_pixel = np.unravel_index(np.argmin(np.abs(x[0] - stats["low"][0])), x[0].shape)
    assert abs(y[0][lo_pixel] + 0.8) < 0.01
    np.testing.assert_allclose(nz.from_network(y, stats, target=0.8), x, rtol=1e-5)
    # a batch (B, C, H, W) uses axis 1 for the bands
    yb = nz.to_network(x[None], stats, target=0.8, clip=2.0)
    np.testing.assert_array_equal(yb[0], y)


def test_log_compression_beyond_clip_matches_torch_and_inverts():
    stats = {"low": [0.0], "high": [1.0]}
    x = np.linspace(-5, 12, 200).reshape(1, 10, 20)
    y = nz.to_network(x, stats, target=0.8, clip=2.0, beyond="log")
    assert y.max() < 2.0 + np.log1p(30)
    assert np.all(np.diff(y.ravel()) > 0)  # monotonic: no two bright values collapse
    clipped = nz.to_network(x, stats, target=0.8, clip=2.0)
    assert clipped.max() == 2.0
    linear = torch.from_numpy((x - 0.5) / 0.5 * 0.8)
    np.testing.assert_allclose(nz.compress(linear, 2.0).numpy(), y, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(nz.expand(nz.compress(linear, 2.0), 2.0).numpy(), linear.numpy(), rtol=1e-6,
                               atol=1e-6)


def test_torch_compression_computes_only_past_the_clip_with_the_same_values_and_gradients():
    g = torch.Generator().manual_seed(2)
    for y in (torch.randn(2, 4, 33, 17, generator=g) * 3, torch.randn(1, 3, 8, 8, generator=g) * 0.5):
        whole_c = torch.where(y.abs() > 2.0, torch.sign(y) * (2.0 + torch.log1p((y.abs() - 2.0).clamp_min(0.0))), y)
        whole_e = torch.where(y.abs() > 2.0, torch.sign(y) * (2.0 + torch.expm1(y.abs() - 2.0)), y)
        assert torch.equal(nz.compress(y, 2.0), whole_c) and torch.equal(nz.expand(y, 2.0), whole_e)
    inside = torch.rand(2, 3, 5, 5)
    assert nz.compress(inside, 2.0) is inside and nz.expand(inside, 2.0) is inside  # nothing to compute
    y = torch.tensor([-5.0, -1.0, 0.5, 3.0], requires_grad=True)  # training blends through compress
    nz.compress(y, 2.0).sum().backward()
    torch.testing.assert_close(y.grad, torch.tensor([1 / 4.0, 1.0, 1.0, 1 / 2.0]))


def test_nan_becomes_zero_and_empty_statistics_fall_back():
    stats = {"low": [0.0], "high": [1.0]}
    y = nz.to_network(np.array([[[np.nan, 0.5]]]), stats, target=0.8, clip=2.0)
    assert y[0, 0, 0] == 0.0 and y[0, 0, 1] == 0.0
    assert nz.percentile_limits(np.array([])) == (0.0, 1.0)
    # a constant band never divides by zero
    flat = nz.to_network(np.full((1, 2, 2), 7.0), {"low": [7.0], "high": [7.0]}, target=0.8, clip=2.0)
    assert np.isfinite(flat).all()


def test_display_stretches():
    img = np.arange(100, dtype=np.float32).reshape(10, 10)
    valid = np.ones_like(img, dtype=bool)
    valid[0, 0] = False
    u8 = nz.stretch_to_uint8(img, valid)
    assert u8.dtype == np.uint8 and u8[0, 0] == 0 and u8[-1, -1] == 255
    assert not nz.stretch_to_uint8(img, np.zeros_like(valid)).any()
    lo, hi = nz.stretch_limits(np.array([np.nan, 0.0, 1.0, 2.0]), (0, 100))
    assert (lo, hi) == (0.0, 2.0)
    np.testing.assert_allclose(nz.stretch(np.array([-1.0, 1.0, 3.0, np.nan]), 0.0, 2.0), [0, 0.5, 1, 0])


def test_fixed_scaling_learned_presets_and_round_trip():
    rng = np.random.default_rng(2)
    bands = [rng.uniform(500, 3000, 10000), rng.uniform(0.0, 0.4, 10000)]
    fs = nz.FixedScaling.learn(bands)
    x = np.stack([b.reshape(100, 100) for b in bands])
    y = fs.to_network(x)
    assert y.dtype == np.float32 and -0.95 < y.min() < -0.85 and 0.85 < y.max() < 0.95
    np.testing.assert_allclose(fs.from_network(y), x, rtol=1e-5, atol=1e-4)  # float32 network space
    assert nz.FixedScaling.from_dict(fs.to_dict()) == fs
    assert fs.to_dict()["scheme"] == nz.FIXED_SCHEME
    # the same map for every image: a darker image stays darker in network space
    assert (fs.to_network(x * 0.8) < y).all()
    # Sentinel-2 from baseline 04.00: DN 1000 is reflectance 0 -> -1, DN 11000 is reflectance 1 -> +1
    s2 = nz.FixedScaling.preset("sentinel2_pb04", 4)
    np.testing.assert_allclose(s2.to_network(np.array([[[1000.0]], [[11000.0]], [[6000.0]], [[np.nan]]])).ravel(),
                               [-1.0, 1.0, 0.0, 0.0], atol=1e-6)
    l8 = nz.FixedScaling.preset("landsat_c2_l2", 1)
    dn = (0.25 + 0.2) / 2.75e-5  # reflectance 0.25
    np.testing.assert_allclose(l8.to_network(np.array([[[dn]]])), [[[-0.5]]], atol=1e-5)
    with pytest.raises(InputError, match="Unknown reflectance preset 'sentinel3'"):
        nz.FixedScaling.preset("sentinel3", 4)


def test_from_network_keeps_float32_tiles_float32_and_agrees_with_float64():
    """The tiler's generated tiles (float32) come back in float32, within a float32 rounding of the float64
    mapping; float64 input stays float64 (both schemes)."""
    rng = np.random.default_rng(2)
    y32 = rng.uniform(-1.2, 1.2, (2, 3, 16, 16)).astype(np.float32)
    stats = {"low": [120.0, 300.0, 2000.0], "high": [1800.0, 2500.0, 9000.0]}
    fixed = nz.FixedScaling(offset=(10.0, 20.0, 30.0), scale=(1000.0, 2000.0, 5000.0), clip=2.0, source="test")
    for inverse in (lambda y: nz.from_network(y, stats, target=0.8), fixed.from_network):
        got, exact = inverse(y32), inverse(y32.astype(np.float64))
        assert got.dtype == np.float32 and exact.dtype == np.float64
        np.testing.assert_allclose(got, exact, rtol=2e-7 * 4, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("beyond", ["clip", "log"])
def test_to_network_equals_the_plain_formula_with_nan_infinities_and_values_past_the_clip(dtype, beyond):
    """The fast path (range checked first, fixes only where needed) gives the plain formula's values:
    (x - mid) / half * target, clipped or log-compressed past the clip, NaN -> 0, infinities -> finite."""
    rng = np.random.default_rng(4)
    stats = {"low": [100.0, 0.0], "high": [900.0, 1.0]}
    for x in (rng.uniform(200, 800, (2, 2, 8, 8)), rng.uniform(-5000, 5000, (2, 2, 8, 8))):
        x = x.astype(dtype)
        if x.max() > 1000:
            x[0, 0, 0, :3] = [np.nan, np.inf, -np.inf]
        mid, half = nz.mid_half(stats)
        y = (x.astype(np.float64) - mid[:, None, None]) / half[:, None, None] * 0.8
        if beyond == "log":
            a = np.abs(y)
            with np.errstate(invalid="ignore"):
                y = np.where(a > 2.0, np.copysign(2.0 + np.log1p(np.maximum(a - 2.0, 0)), y), y)
        else:
            y = np.clip(y, -2.0, 2.0)
        want = np.nan_to_num(y, nan=0.0).astype(np.float32)
        got = nz.to_network(x, stats, target=0.8, clip=2.0, beyond=beyond)
        assert got.dtype == np.float32
        finite = np.isfinite(want) & (np.abs(want) < 1e30)
        np.testing.assert_allclose(got[finite], want[finite], rtol=1e-6, atol=1e-6)
        assert np.isfinite(got).all()
