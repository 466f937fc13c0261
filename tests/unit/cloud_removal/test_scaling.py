"""Per-image scaling into network space (models/cloud_removal/scaling.py)."""

import numpy as np
import pytest

from cloudfree.models import cloud_removal as cr


def test_normalisation_is_scale_invariant_and_invertible():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.02, 0.4, size=(4, 32, 32))
    stats = {"low": list(np.percentile(x.reshape(4, -1), 2, axis=1)),
             "high": list(np.percentile(x.reshape(4, -1), 98, axis=1))}
    n = cr.normalize(x, stats)
    k = 7.5  # the same image stored in other units
    stats_k = {"low": [v * k + 100 for v in stats["low"]], "high": [v * k + 100 for v in stats["high"]]}
    np.testing.assert_allclose(cr.normalize(x * k + 100, stats_k), n, atol=1e-5)
    inside = np.abs(n) < 1.0
    np.testing.assert_allclose(cr.denormalize(n, stats)[inside], x[inside], rtol=1e-5)
    assert n.min() >= -2.0 and n.max() <= 2.0


def test_bright_values_are_log_compressed_not_clipped():
    stats = {"low": [0.0], "high": [1.0]}  # 0 -> -0.8, 1 -> +0.8: v -> 1.6 v - 0.8
    x = np.array([0.5, 1.5, 2.0, 4.0, 10.0, -2.0]).reshape(1, 6, 1)
    n = cr.normalize(x, stats)[0, :, 0]
    lin = 1.6 * x[0, :, 0] - 0.8
    np.testing.assert_allclose(n[:2], lin[:2], rtol=1e-6)               # |v| <= 2: linear
    np.testing.assert_allclose(n[2:5], 2.0 + np.log1p(lin[2:5] - 2.0), rtol=1e-6)
    assert np.all(np.diff(n[:5]) > 0)                                   # order kept: thin vs thick clouds differ
    assert n[5] == pytest.approx(-2.0 - np.log1p(-lin[5] - 2.0))
    # files written before the option existed clipped; their metadata says nothing and keeps clipping
    old = cr.normalize(x, stats, {"beyond_clip": "clip"})[0, :, 0]
    assert old.max() == 2.0 and old.min() == -2.0
