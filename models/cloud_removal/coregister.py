"""Sub-pixel co-registration of another date onto the target before its pixels are used.

Sentinel-2 dates of one place are offset by up to about half a pixel from each other (the
multi-temporal registration of the L1C product); copied into a cloud, such an offset shows as
doubled edges. :func:`estimate_shift` measures the translation between the target and a guide by
Gauss-Newton (Lucas-Kanade) on their high-passed bands over the pixels clear in both (a masked
correlation peak is biased by the masks and by clouds); :func:`shift_image` applies it with a
local cubic convolution kernel (Keys, a = -0.5),
so that a block's pixels do not depend on where the block starts.
"""

from __future__ import annotations

import numpy as np

#: shifts beyond this many pixels are not a sub-pixel misregistration: the guide is used as it is
MAX_SHIFT = 3.0
#: shifts below this many pixels are within the estimate's noise: not applied (resampling would only blur)
MIN_SHIFT = 0.05
#: the high-passed guide, moved, must correlate at least this well with the target's, or the estimate
#: found no common structure (another place, a far larger shift) and is not used
MIN_CORRELATION = 0.2
#: common clear pixels a chip needs for its estimate to count (a share of the chip, and a count)
MIN_COMMON = 0.05
MIN_COMMON_PIXELS = 2000
#: pixels :func:`shift_image` reads beyond a block's edge (kernel support plus MAX_SHIFT)
SHIFT_HALO = 2 + int(np.ceil(MAX_SHIFT))


def _highpass(values: np.ndarray, keep: np.ndarray, sigma: float = 4.0) -> np.ndarray:
    """Each band minus its local mean (normalised convolution over ``keep`` pixels, so masked pixels add no
    edges), standardised, zero outside ``keep``: texture, without the dates' differences of brightness."""
    from scipy import ndimage

    weight = ndimage.gaussian_filter(keep.astype(np.float64), sigma)
    out = np.zeros(values.shape)
    for k, band in enumerate(values):
        mean = ndimage.gaussian_filter(np.where(keep, band, 0.0), sigma) / np.maximum(weight, 1e-6)
        hp = np.where(keep, band - mean, 0.0)
        out[k] = hp / max(float(hp[keep].std()), 1e-12)
    return out


def estimate_shift(target: np.ndarray, clear: np.ndarray, guide: np.ndarray, valid: np.ndarray) -> tuple | None:
    """``(dy, dx)`` in pixels that moves ``guide`` onto ``target`` (apply with :func:`shift_image`), or None
    when fewer than :data:`MIN_COMMON` of the pixels (or :data:`MIN_COMMON_PIXELS`) are clear in both, or the
    estimate does not settle within :data:`MAX_SHIFT`.

    Gauss-Newton on the translation (Lucas and Kanade) between the two images' high-passed bands, over the
    pixels clear in both and away from their edges: masks add no edges of their own, and a shift of a
    fraction of a pixel is measured directly, without the peak interpolation of a correlation.
    ``target``, ``guide``: (bands, rows, cols) on the same grid; ``clear``, ``valid``: their usable pixels."""
    from scipy import ndimage

    both = clear & valid & np.isfinite(target).all(axis=0) & np.isfinite(guide).all(axis=0)
    if both.mean() < MIN_COMMON or both.sum() < MIN_COMMON_PIXELS or min(both.shape) < 32:
        return None
    t, g = _highpass(target, both), _highpass(guide, both)
    inner = ndimage.binary_erosion(both, iterations=SHIFT_HALO + 3, border_value=0)
    if inner.sum() < MIN_COMMON_PIXELS / 2:
        return None
    ones = np.ones(both.shape, bool)
    shift = np.zeros(2)
    for _ in range(10):
        moved, _ = shift_image(g, ones, *shift)
        gy, gx = np.gradient(moved, axis=(1, 2))
        r = (moved - t)[:, inner]
        jy, jx = gy[:, inner], gx[:, inner]
        a = np.array([[(jy * jy).sum(), (jy * jx).sum()], [(jy * jx).sum(), (jx * jx).sum()]])
        if np.linalg.cond(a) > 1e8:
            return None
        step = np.linalg.solve(a, [(r * jy).sum(), (r * jx).sum()])
        shift += step
        if np.abs(shift).max() > MAX_SHIFT:
            return None
        if np.abs(step).max() < 5e-3:
            break
    moved, _ = shift_image(g, ones, *shift)
    a, b = moved[:, inner].ravel(), t[:, inner].ravel()
    if np.corrcoef(a, b)[0, 1] < MIN_CORRELATION or np.abs(shift).max() < MIN_SHIFT:
        return None
    return float(shift[0]), float(shift[1])


def _keys(t: np.ndarray) -> np.ndarray:
    """The four weights of Keys' cubic convolution (a = -0.5) for fractional offsets ``t`` in [0, 1)."""
    a = -0.5
    d = np.stack([1 + t, t, 1 - t, 2 - t])
    near = (a + 2) * d ** 3 - (a + 3) * d ** 2 + 1
    far = a * d ** 3 - 5 * a * d ** 2 + 8 * a * d - 4 * a
    return np.where(d <= 1, near, far)


def _shift_axis(values: np.ndarray, valid: np.ndarray, shift: float, axis: int) -> tuple:
    n = values.shape[axis]
    base = np.floor(-shift)
    w = _keys(np.array(-shift - base))
    idx = np.arange(n) + int(base)
    out = np.zeros(values.shape)
    ok = np.ones(valid.shape, bool)
    for k, weight in zip(range(-1, 3), w):
        src = np.clip(idx + k, 0, n - 1)
        out += weight * np.take(values, src, axis=axis)
        ok &= np.take(valid, src, axis=axis - 1 if values.ndim > valid.ndim else axis)
    return out, ok


def shift_image(values: np.ndarray, valid: np.ndarray, dy: float, dx: float) -> tuple:
    """``values`` (bands, rows, cols) moved by ``(dy, dx)`` pixels (positive: down, right) and ``valid`` with
    it (a pixel stays valid when every pixel its kernel reads is); edges repeat the edge pixel."""
    filled = np.where(valid, values, 0.0)
    out, ok = _shift_axis(filled, valid, dy, axis=1)
    out, ok = _shift_axis(out, ok, dx, axis=2)
    return out, ok
