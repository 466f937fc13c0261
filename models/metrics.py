"""Quality metrics on arrays: PSNR, SSIM, MAE, RMSE, SAM.

:func:`psnr`, :func:`ssim`, :func:`mae`, :func:`rmse` and :func:`sam_degrees` work on numpy
arrays ``(C, H, W)`` (or ``(H, W)``) for benchmarks and training; :mod:`.comparison` does the
same maths on two whole rasters, block by block (its SSIM map, spectral angles and PSNR come
from here).

Definitions (identical at both levels):

- *compared pixels*: pixels where every selected band holds data in both inputs (not the
  band's nodata value, not NaN/inf) and, when a mask is given, the mask selects them;
- MAE = mean ``|x - y|``, RMSE = ``sqrt(mean (x - y)^2)``, PSNR = ``10 log10(R^2 / MSE)``
  (``inf`` when MSE is 0), all over the compared pixels;
- SSIM follows Wang et al. (2004): Gaussian window sigma 1.5 (radius 5 px), population
  covariances, K1 = 0.01, K2 = 0.03, an explicit data range ``R``. The SSIM *map* is
  computed at every pixel and averaged over the compared pixels. At the raster's edges the
  neighbourhood is mirrored (``d c b a | a b c d``, SciPy's ``reflect`` mode), so the map
  equals ``skimage.metrics.structural_similarity(..., full=True)`` on the whole image.
  Note that skimage's scalar result additionally crops a 5-pixel border; ours does not.
  Pixels without data near a compared pixel are *filled* (in both inputs, with the same
  value: the reference band's mean over the pixels valid in both) before filtering, so
  SSIM next to nodata sees a flat neighbourhood there rather than nodata values.
  Pixels that are valid but not selected by the mask keep their real values as neighbours;
- SAM = mean spectral angle in degrees between the image and reference pixel vectors over
  the selected bands; it needs at least two bands, and pixels where either vector is all
  zero are skipped (their angle is undefined).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .errors import InputError

# Wang et al. (2004) settings; skimage derives the window radius as int(3.5 * sigma + 0.5).
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)

__all__ = ["psnr", "ssim", "mae", "rmse", "sam_degrees", "check_data_range", "ssim_map_interior", "spectral_angles", "psnr_from_mse",
           "fill_invalid", "SSIM_RADIUS"]


# --------------------------------------------------------------------------- core maths


def ssim_map_interior(x: np.ndarray, y: np.ndarray, data_range: float, halo: int) -> np.ndarray:
    """SSIM map of two 2-D float64 arrays padded by ``halo`` pixels, without the padding."""
    from skimage.metrics import structural_similarity

    _, smap = structural_similarity(
        x, y, data_range=float(data_range), gaussian_weights=True, sigma=SSIM_SIGMA,
        use_sample_covariance=False, full=True,
    )
    return smap[halo:smap.shape[0] - halo, halo:smap.shape[1] - halo]


def spectral_angles(a: np.ndarray, b: np.ndarray) -> tuple:
    """Angles (degrees) between the columns of ``a`` and ``b`` (C, N), and which columns count.

    Uses ``2 atan2(|u - v|, |u + v|)`` on unit vectors: unlike ``arccos`` of the cosine it
    stays accurate for tiny angles, so identical or proportional spectra give 0, not ~1e-6.
    """
    na = np.sqrt(np.einsum("cn,cn->n", a, a))
    nb = np.sqrt(np.einsum("cn,cn->n", b, b))
    ok = (na > 0) & (nb > 0)
    ua = a[:, ok] / na[ok]
    ub = b[:, ok] / nb[ok]
    diff = np.sqrt(np.einsum("cn,cn->n", ua - ub, ua - ub))
    summ = np.sqrt(np.einsum("cn,cn->n", ua + ub, ua + ub))
    return np.degrees(2.0 * np.arctan2(diff, summ)), ok


def psnr_from_mse(mse: float, data_range: float) -> float:
    if mse <= 0:
        return float("inf")
    return float(10.0 * math.log10(data_range * data_range / mse))


def fill_invalid(x: np.ndarray, y: np.ndarray, valid: np.ndarray, fill: Sequence[float]) -> None:
    """In place: put ``fill[c]`` in both arrays wherever a pixel is not valid."""
    invalid = ~valid
    if invalid.any():
        for c in range(x.shape[0]):
            x[c][invalid] = fill[c]
            y[c][invalid] = fill[c]


# --------------------------------------------------------------------------- array helpers


def _prepare(a, b, mask) -> tuple:
    """Float64 ``(C, H, W)`` copies of ``a`` and ``b``, their validity and the compared pixels."""
    a = np.array(a, dtype=np.float64)
    b = np.array(b, dtype=np.float64)
    if a.shape != b.shape:
        raise InputError(f"Arrays to compare have different shapes {a.shape} and {b.shape}.")
    if a.ndim == 2:
        a, b = a[None], b[None]
    if a.ndim != 3:
        raise InputError(f"Arrays to compare must be (H, W) or (C, H, W), not {a.ndim}-D.")
    valid = np.isfinite(a).all(axis=0) & np.isfinite(b).all(axis=0)
    compared = valid
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != a.shape[1:]:
            raise InputError(f"Mask of shape {mask.shape} does not fit arrays of shape {a.shape}.")
        compared = valid & mask
    if not compared.any():
        raise InputError("No pixel to compare: every pixel is masked out or holds NaN/inf.")
    return a, b, valid, compared


def check_data_range(data_range) -> float:
    r = float(data_range)
    if not math.isfinite(r) or r <= 0:
        raise InputError(f"The data range must be a positive number, not {data_range}.")
    return r


def mae(a, b, mask=None) -> float:
    """Mean absolute error over the compared pixels (all channels pooled)."""
    a, b, _, compared = _prepare(a, b, mask)
    return float(np.abs(a[:, compared] - b[:, compared]).mean())


def rmse(a, b, mask=None) -> float:
    """Root mean squared error over the compared pixels (all channels pooled)."""
    a, b, _, compared = _prepare(a, b, mask)
    d = a[:, compared] - b[:, compared]
    return float(np.sqrt(np.mean(d * d)))


def psnr(a, b, data_range: float, mask=None) -> float:
    """PSNR in dB with MSE pooled over all channels; ``inf`` for identical inputs."""
    r = check_data_range(data_range)
    a, b, _, compared = _prepare(a, b, mask)
    d = a[:, compared] - b[:, compared]
    return psnr_from_mse(float(np.mean(d * d)), r)


def ssim(a, b, data_range, mask=None) -> float:
    """Mean SSIM (Wang et al. 2004 settings) over the compared pixels, averaged over channels.

    ``data_range`` is one number or one per channel. Same definition as
    :func:`compare_rasters` (mirrored edges, no border crop, NaN/inf pixels filled); see
    the module docstring.
    """
    a, b, valid, compared = _prepare(a, b, mask)
    ranges = np.broadcast_to(np.asarray(data_range, dtype=np.float64), (a.shape[0],))
    ranges = [check_data_range(r) for r in ranges]
    fill = [float(b[c][valid].mean()) if valid.any() else 0.0 for c in range(a.shape[0])]
    fill_invalid(a, b, valid, fill)
    h = SSIM_RADIUS
    pads = ((0, 0), (h, h), (h, h))
    # numpy's 'symmetric' is SciPy's 'reflect', the mode skimage filters with.
    ap, bp = np.pad(a, pads, mode="symmetric"), np.pad(b, pads, mode="symmetric")
    values = [float(ssim_map_interior(ap[c], bp[c], ranges[c], h)[compared].mean()) for c in range(a.shape[0])]
    return float(np.mean(values))


def sam_degrees(a, b, mask=None) -> float | None:
    """Mean spectral angle (degrees) between pixel vectors of ``(C, H, W)`` arrays.

    None when there are fewer than two channels or no pixel where both vectors are non-zero.
    """
    a, b, _, compared = _prepare(a, b, mask)
    if a.shape[0] < 2:
        return None
    angles, ok = spectral_angles(a[:, compared], b[:, compared])
    return float(angles.mean()) if ok.any() else None
