"""Geometric transforms: exact fits of every kind, leave-one-out RMS and robust outlier removal."""

import numpy as np
import pytest

from cloudfree.models import registration as reg


@pytest.mark.parametrize("kind", ["translation", "similarity", "affine", "projective", "tps"])
def test_transform_fit_exact_and_loo(kind):
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 1000, (40, 2))
    h = np.array([[1.01, -0.05, 3.2], [0.04, 0.99, -1.1], [0.0, 0.0, 1.0]])
    if kind == "translation":
        h[:2, :2] = np.eye(2)
    elif kind == "similarity":
        h[:2, :2] = [[1.01, -0.05], [0.05, 1.01]]
    elif kind == "projective":
        h[2, :2] = [1e-5, -2e-5]
    dst = reg.apply_homography(h, src)
    transform = reg.GeometricTransform(kind).fit(src, dst)
    assert np.abs(transform.apply(src) - dst).max() < 1e-6
    assert reg.loo_rms(src, dst, kind, 1e-3) < 1e-5
    # an outlier is removed by the iterative residual threshold
    noisy = dst + rng.normal(0, 0.05, dst.shape)
    noisy[3] += (5.0, -4.0)
    _, inl, _ = reg.fit_robust(src, noisy, kind, floor=0.1)
    assert not inl[3] and inl.sum() >= 36
