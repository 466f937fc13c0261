"""Known answers of the temporal regression's pieces: box sums, local linear fits, the mix of dates, and the
sub-pixel co-registration (estimate and apply)."""

import numpy as np
import pytest

from cloudfree.models.cloud_removal import coregister, temporal


def test_box_sum_equals_the_brute_force_window_sum_clipped_at_the_edges():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 13, 17))
    got = temporal.box_sum(a, 3)
    for r in (0, 5, 12):
        for c in (0, 8, 16):
            want = a[:, max(0, r - 3):r + 4, max(0, c - 3):c + 4].sum(axis=(1, 2))
            np.testing.assert_allclose(got[:, r, c], want, rtol=1e-10)


def _scene(rng, shape=(3, 64, 64)):
    guide = rng.uniform(0.05, 0.4, size=shape)
    return guide


def test_a_target_that_is_an_exact_line_of_the_guide_is_predicted_exactly_under_the_cloud():
    rng = np.random.default_rng(1)
    guide = _scene(rng)
    target = 1.7 * guide + np.array([0.01, 0.02, -0.03])[:, None, None]
    cloudy = np.zeros(guide.shape[1:], bool)
    cloudy[20:40, 10:50] = True
    clear, valid = ~cloudy, np.ones_like(cloudy)
    scene = temporal.SceneFit.fit(target, guide, clear & valid)
    p = temporal.local_fits(target, clear, guide, valid, scene, where=cloudy)
    np.testing.assert_allclose(p.value[:, cloudy], target[:, cloudy], atol=1e-9)
    assert np.all(p.variance[:, cloudy] < 1e-12)
    assert np.isnan(p.value[:, ~cloudy]).all()           # only the pixels asked for


def test_local_fits_follow_a_relation_that_changes_across_the_scene():
    """Left half: t = g; right half: t = 2 g (one field changed): the local fit follows each half, the
    scene-wide line cannot; the default ridge pulls the slope towards the scene's, the intercept follows."""
    rng = np.random.default_rng(2)
    guide = _scene(rng, (1, 64, 128))
    gain = np.where(np.arange(128) < 64, 1.0, 2.0)[None, None, :]
    target = gain * guide
    cloudy = np.zeros((64, 128), bool)
    cloudy[25:35, 20:40] = cloudy[25:35, 90:110] = True
    clear = ~cloudy
    scene = temporal.SceneFit.fit(target, guide, clear)
    err_scene = np.abs((scene.slope[0] * guide + scene.intercept[0])[:, cloudy] - target[:, cloudy]).mean()
    for params, factor in ((temporal.TemporalParams(), 3), (temporal.TemporalParams(ridge=0.01), 20)):
        local = temporal.local_fits(target, clear, guide, np.ones_like(clear), scene, params, where=cloudy)
        err_local = np.abs(local.value[:, cloudy] - target[:, cloudy]).mean()
        assert err_local < err_scene / factor, (params, err_local, err_scene)


def test_the_mix_prefers_the_date_that_fits_and_names_it():
    rng = np.random.default_rng(3)
    guide = _scene(rng, (2, 48, 48))
    target = guide * 1.1
    noisy = guide + rng.normal(scale=0.05, size=guide.shape)
    cloudy = np.zeros((48, 48), bool)
    cloudy[15:30, 15:30] = True
    clear, valid = ~cloudy, np.ones_like(cloudy)
    preds = [temporal.local_fits(target, clear, g, valid, temporal.SceneFit.fit(target, g, clear), where=cloudy)
             for g in (noisy, guide)]
    mixed = temporal.combine_dates(preds, [0, 0], target[:, clear].var(axis=1))
    assert (mixed.source[cloudy] == 1).mean() > 0.95       # the exact date weighs most
    assert np.abs(mixed.value[:, cloudy] - target[:, cloudy]).mean() < 0.01
    assert np.isnan(mixed.value[:, ~cloudy]).all() and (mixed.source[~cloudy] == -1).all()


def test_days_decay_the_weight_of_a_date():
    p = temporal.DatePrediction(np.ones((1, 2, 2)), np.full((1, 2, 2), 0.01))
    params = temporal.TemporalParams(decay_days=10)
    near = temporal.date_weight(p, 5, np.ones(1), params)
    far = temporal.date_weight(p, 25, np.ones(1), params)
    np.testing.assert_allclose(far / near, np.exp(-2.0))


def _texture(rng, size=160):
    from scipy import ndimage

    return np.stack([ndimage.gaussian_filter(rng.normal(size=(size, size)), 2.0) for _ in range(3)])


@pytest.mark.parametrize("shift", [(0.3, -0.4), (-1.25, 0.6)])
def test_a_known_sub_pixel_shift_is_measured_and_undone(shift):
    from scipy import ndimage

    rng = np.random.default_rng(4)
    truth = _texture(rng)
    moved = np.stack([ndimage.shift(b, shift, order=3, mode="reflect") for b in truth])   # the guide, misregistered
    ok = np.ones(truth.shape[1:], bool)
    cloudy = np.zeros_like(ok)
    cloudy[40:90, 50:110] = True                                                         # the target's cloud
    est = coregister.estimate_shift(truth, ~cloudy, moved, ok)
    assert est is not None
    np.testing.assert_allclose(est, [-shift[0], -shift[1]], atol=0.08)
    back, valid = coregister.shift_image(moved, ok, *est)
    inner = (slice(8, -8), slice(8, -8))
    before = np.abs(moved - truth)[:, inner[0], inner[1]].mean()
    after = np.abs(back - truth)[:, inner[0], inner[1]].mean()
    assert after < before / 4
    assert valid[inner].all()


def test_shift_image_by_whole_pixels_moves_the_values_and_their_validity():
    a = np.arange(36, dtype=float).reshape(1, 6, 6)
    ok = np.ones((6, 6), bool)
    ok[0, 0] = False
    out, valid = coregister.shift_image(a, ok, 1.0, 2.0)
    np.testing.assert_allclose(out[0, 1:, 2:], a[0, :-1, :-2])
    assert not valid[1, 2] and valid[3, 4]


def test_too_few_common_pixels_or_a_large_shift_give_no_estimate():
    rng = np.random.default_rng(5)
    t = _texture(rng, 64)
    ok = np.zeros((64, 64), bool)
    ok[:5] = True
    assert coregister.estimate_shift(t, ok, t, ok) is None
    far = np.roll(t, 10, axis=2)
    assert coregister.estimate_shift(t, np.ones((64, 64), bool), far, np.ones((64, 64), bool)) is None
