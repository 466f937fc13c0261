"""Augmentation: one transform applied alike to every array of a crop (engine only)."""

import numpy as np

from cloudfree.models.augment import augment, random_transform


def test_all_arrays_get_the_same_transform_and_none_passes_through():
    img = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    mask = img[0] > 5
    out_img, out_mask, nothing = augment([img, mask, None], 1, True)
    expected = np.rot90(img, 1, axes=(-2, -1))[..., ::-1]
    np.testing.assert_array_equal(out_img, expected)
    np.testing.assert_array_equal(out_mask, expected[0] > 5)
    assert nothing is None and out_img.flags.c_contiguous


def test_random_transform_takes_two_draws_in_range():
    rng = np.random.default_rng(3)
    draws = {random_transform(rng) for _ in range(200)}
    assert draws == {(k, f) for k in range(4) for f in (False, True)}
