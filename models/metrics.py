"""Quality metrics between an output raster and a reference: PSNR, SSIM, MAE, RMSE, SAM.

Two levels:

- :func:`compare_rasters` compares two rasters on the same grid, block by block with
  bounded memory, and returns a JSON-serialisable report (write it with
  :func:`report_to_json`, which makes infinite PSNR safe for strict JSON);
- :func:`psnr`, :func:`ssim`, :func:`mae`, :func:`rmse` and :func:`sam_degrees` do the same
  maths on numpy arrays ``(C, H, W)`` (or ``(H, W)``) for benchmarks and training.

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

import json
import math
from typing import Sequence

import numpy as np

from .errors import InputError
from .grids import check_same_grid
from .raster import RasterInfo, open_raster, parse_bands, read_window, valid_mask
from .windows import iter_windows
from .runtime import CancelCheck, Progress, check_cancelled, report

# Wang et al. (2004) settings; skimage derives the window radius as int(3.5 * sigma + 0.5).
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)

__all__ = [
    "compare_rasters", "report_to_json", "psnr", "ssim", "mae", "rmse", "sam_degrees",
    "SSIM_RADIUS",
]


# --------------------------------------------------------------------------- core maths


def _ssim_map_interior(x: np.ndarray, y: np.ndarray, data_range: float, halo: int) -> np.ndarray:
    """SSIM map of two 2-D float64 arrays padded by ``halo`` pixels, without the padding."""
    from skimage.metrics import structural_similarity

    _, smap = structural_similarity(
        x, y, data_range=float(data_range), gaussian_weights=True, sigma=SSIM_SIGMA,
        use_sample_covariance=False, full=True,
    )
    return smap[halo:smap.shape[0] - halo, halo:smap.shape[1] - halo]


def _spectral_angles(a: np.ndarray, b: np.ndarray) -> tuple:
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


def _psnr_from_mse(mse: float, data_range: float) -> float:
    if mse <= 0:
        return float("inf")
    return float(10.0 * math.log10(data_range * data_range / mse))


def _fill_invalid(x: np.ndarray, y: np.ndarray, valid: np.ndarray, fill: Sequence[float]) -> None:
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


def _check_range(data_range) -> float:
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
    r = _check_range(data_range)
    a, b, _, compared = _prepare(a, b, mask)
    d = a[:, compared] - b[:, compared]
    return _psnr_from_mse(float(np.mean(d * d)), r)


def ssim(a, b, data_range, mask=None) -> float:
    """Mean SSIM (Wang et al. 2004 settings) over the compared pixels, averaged over channels.

    ``data_range`` is one number or one per channel. Same definition as
    :func:`compare_rasters` (mirrored edges, no border crop, NaN/inf pixels filled); see
    the module docstring.
    """
    a, b, valid, compared = _prepare(a, b, mask)
    ranges = np.broadcast_to(np.asarray(data_range, dtype=np.float64), (a.shape[0],))
    ranges = [_check_range(r) for r in ranges]
    fill = [float(b[c][valid].mean()) if valid.any() else 0.0 for c in range(a.shape[0])]
    _fill_invalid(a, b, valid, fill)
    h = SSIM_RADIUS
    pads = ((0, 0), (h, h), (h, h))
    # numpy's 'symmetric' is SciPy's 'reflect', the mode skimage filters with.
    ap, bp = np.pad(a, pads, mode="symmetric"), np.pad(b, pads, mode="symmetric")
    values = [float(_ssim_map_interior(ap[c], bp[c], ranges[c], h)[compared].mean()) for c in range(a.shape[0])]
    return float(np.mean(values))


def sam_degrees(a, b, mask=None) -> float | None:
    """Mean spectral angle (degrees) between pixel vectors of ``(C, H, W)`` arrays.

    None when there are fewer than two channels or no pixel where both vectors are non-zero.
    """
    a, b, _, compared = _prepare(a, b, mask)
    if a.shape[0] < 2:
        return None
    angles, ok = _spectral_angles(a[:, compared], b[:, compared])
    return float(angles.mean()) if ok.any() else None


# --------------------------------------------------------------------------- rasters


def _read_halo(ds, window, halo: int, bands: Sequence[int]) -> np.ndarray:
    """Read ``window`` grown by ``halo`` pixels; outside the raster, mirror SciPy-style.

    ``read_padded`` mirrors without repeating the edge pixel (numpy 'reflect'), whereas
    skimage's Gaussian filter repeats it (SciPy 'reflect' = numpy 'symmetric'); using the
    latter makes block edges on the raster border give exactly the whole-image SSIM map.
    """
    x0, y0, w, h = window
    W, H = ds.RasterXSize, ds.RasterYSize
    ix0, iy0 = max(0, x0 - halo), max(0, y0 - halo)
    ix1, iy1 = min(W, x0 + w + halo), min(H, y0 + h + halo)
    inner = read_window(ds, (ix0, iy0, ix1 - ix0, iy1 - iy0), bands, np.float64)
    pads = ((0, 0), (iy0 - (y0 - halo), (y0 + h + halo) - iy1), (ix0 - (x0 - halo), (x0 + w + halo) - ix1))
    if any(p for pair in pads for p in pair):
        inner = np.pad(inner, pads, mode="symmetric")
    return inner


def _selected(values: np.ndarray, nodata, mask_values: np.ndarray) -> np.ndarray:
    """Mask pixels whose value is one of ``mask_values`` (the mask's own nodata never is)."""
    sel = np.isin(values, mask_values)
    if nodata is not None and not math.isnan(nodata):
        sel &= values != nodata
    return sel & np.isfinite(values)


def compare_rasters(image: RasterInfo, reference: RasterInfo, *, bands=None, reference_bands=None,
                    mask: RasterInfo | None = None, mask_values=(1,), data_range: float | None = None,
                    block: int = 1024, progress: Progress = None, cancelled: CancelCheck = None) -> dict:
    """Compare ``image`` with ``reference`` band by band; return a JSON-serialisable report.

    ``bands`` / ``reference_bands`` are 1-based band lists (``"2,3,4,8"`` or a sequence);
    ``reference_bands`` defaults to the image's band numbers. ``mask`` (band 1) restricts
    the comparison to pixels whose mask value is in ``mask_values``. All rasters must share
    one grid (:class:`GridMismatchError` otherwise).

    Data range: if ``data_range`` is given it is used for every band; otherwise each band
    uses max - min of the *reference* over the compared pixels (1.0 if that is zero, noted
    in the report). Overall PSNR uses the MSE pooled over all bands with the largest
    per-band range; overall SSIM is the mean of the per-band SSIMs; overall MAE and RMSE are
    pooled over all bands; SAM is described in the module docstring (None for one band).

    Two passes over ``block`` x ``block`` windows keep memory bounded: the first counts
    pixels and finds the ranges and fill values, the second accumulates the errors and the
    SSIM map, each block read with a halo of :data:`SSIM_RADIUS` pixels so block-wise SSIM
    equals whole-image SSIM. SSIM next to nodata uses filled neighbours (module docstring).

    Raises :class:`InputError` for bad bands, mismatched band counts, a bad data range or
    when no pixel is left to compare, :class:`Cancelled` when ``cancelled()`` turns true.
    """
    layers = [image, reference] + ([mask] if mask is not None else [])
    check_same_grid(layers)
    img_bands = parse_bands(bands, image.band_count, image.name)
    ref_bands = parse_bands(reference_bands, reference.band_count, reference.name, default=img_bands)
    if len(img_bands) != len(ref_bands):
        raise InputError(
            f"Layer '{image.name}' has {len(img_bands)} band(s) selected ({img_bands}) but layer "
            f"'{reference.name}' has {len(ref_bands)} ({ref_bands}); select the same number in both."
        )
    if data_range is not None:
        data_range = _check_range(data_range)
    if int(block) < 1:
        raise InputError(f"The block size must be at least 1 pixel, not {block}.")
    block = int(block)
    mvalues = np.asarray(list(mask_values), dtype=np.float64)
    if mask is not None and mvalues.size == 0:
        raise InputError(f"Mask '{mask.name}': give at least one mask value to select pixels.")

    n_bands = len(img_bands)
    img_nodata = [image.nodata[b - 1] for b in img_bands]
    ref_nodata = [reference.nodata[b - 1] for b in ref_bands]
    mask_nodata = mask.nodata[0] if mask is not None else None
    ds_img = open_raster(image.path, image.name)
    ds_ref = open_raster(reference.path, reference.name)
    ds_mask = open_raster(mask.path, mask.name) if mask is not None else None

    windows = list(iter_windows(image.width, image.height, block))
    total = 2 * len(windows)
    done = 0

    def valid_both(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return valid_mask(x, img_nodata) & valid_mask(y, ref_nodata)

    # ---- pass 1: pixel counts, reference ranges over compared pixels, fill values
    n_valid = 0
    n_compared = 0
    ref_sum = np.zeros(n_bands)
    ref_min = np.full(n_bands, np.inf)
    ref_max = np.full(n_bands, -np.inf)
    compared_blocks = []  # per window: does it hold any compared pixel (skip it in pass 2)
    for window in windows:
        check_cancelled(cancelled)
        x = read_window(ds_img, window, img_bands, np.float64)
        y = read_window(ds_ref, window, ref_bands, np.float64)
        valid = valid_both(x, y)
        compared = valid
        if ds_mask is not None:
            compared = valid & _selected(read_window(ds_mask, window, [1], np.float64)[0], mask_nodata, mvalues)
        nv, nc = int(valid.sum()), int(compared.sum())
        n_valid += nv
        n_compared += nc
        if nv:
            ref_sum += y[:, valid].sum(axis=1)
        if nc:
            yc = y[:, compared]
            ref_min = np.minimum(ref_min, yc.min(axis=1))
            ref_max = np.maximum(ref_max, yc.max(axis=1))
        compared_blocks.append(nc > 0)
        done += 1
        report(progress, done / total, "Comparing rasters: ranges")

    if n_valid == 0:
        raise InputError(
            f"Layers '{image.name}' and '{reference.name}' have no pixel with data in both "
            f"(bands {img_bands} / {ref_bands}); nothing to compare."
        )
    if n_compared == 0:
        raise InputError(
            f"Mask '{mask.name}' selects no pixel with data in both '{image.name}' and "
            f"'{reference.name}' (mask values {[_num(v) for v in mvalues]}); nothing to compare."
        )

    fallback = []
    if data_range is not None:
        ranges = [data_range] * n_bands
        range_info = {"method": "explicit", "description": "given by the user, used for every band"}
    else:
        ranges = []
        for i in range(n_bands):
            r = float(ref_max[i] - ref_min[i])
            if not r > 0:
                fallback.append(img_bands[i])
                r = 1.0
            ranges.append(r)
        range_info = {
            "method": "reference_min_max",
            "description": "per band max - min of the reference over the compared pixels",
            "reference_min": [float(v) for v in ref_min],
            "reference_max": [float(v) for v in ref_max],
        }
    range_info["per_band"] = [float(r) for r in ranges]
    range_info["overall"] = float(max(ranges))
    range_info["overall_description"] = "largest per-band range, used for the overall PSNR"
    if fallback:
        range_info["fallback_bands"] = fallback
        range_info["note"] = ("the reference is constant in these bands, so 1.0 was used; "
                              "pass data_range explicitly for meaningful PSNR/SSIM")
    fill = ref_sum / n_valid

    # ---- pass 2: error sums, SSIM map, spectral angles
    abs_sum = np.zeros(n_bands)
    sq_sum = np.zeros(n_bands)
    ssim_sum = np.zeros(n_bands)
    sam_sum, sam_n = 0.0, 0
    h = SSIM_RADIUS
    for window, has_pixels in zip(windows, compared_blocks):
        check_cancelled(cancelled)
        if has_pixels:
            _, _, w, hh = window
            x = _read_halo(ds_img, window, h, img_bands)
            y = _read_halo(ds_ref, window, h, ref_bands)
            valid_h = valid_both(x, y)
            valid = valid_h[h:h + hh, h:h + w]
            compared = valid
            if ds_mask is not None:
                compared = valid & _selected(read_window(ds_mask, window, [1], np.float64)[0], mask_nodata, mvalues)
            xi = x[:, h:h + hh, h:h + w][:, compared]
            yi = y[:, h:h + hh, h:h + w][:, compared]
            d = xi - yi
            abs_sum += np.abs(d).sum(axis=1)
            sq_sum += (d * d).sum(axis=1)
            if n_bands >= 2:
                angles, ok = _spectral_angles(xi, yi)
                sam_sum += float(angles.sum())
                sam_n += int(ok.sum())
            _fill_invalid(x, y, valid_h, fill)
            for i in range(n_bands):
                check_cancelled(cancelled)
                ssim_sum[i] += float(_ssim_map_interior(x[i], y[i], ranges[i], h)[compared].sum())
        done += 1
        report(progress, done / total, "Comparing rasters: metrics")

    ds_img = ds_ref = ds_mask = None
    n = n_compared
    per_band = []
    for i in range(n_bands):
        mse = sq_sum[i] / n
        per_band.append({
            "band": img_bands[i],
            "reference_band": ref_bands[i],
            "data_range": float(ranges[i]),
            "psnr": _psnr_from_mse(mse, ranges[i]),
            "ssim": float(ssim_sum[i] / n),
            "mae": float(abs_sum[i] / n),
            "rmse": float(math.sqrt(mse)),
        })
    mse_all = float(sq_sum.sum() / (n * n_bands))
    overall = {
        "psnr": _psnr_from_mse(mse_all, max(ranges)),
        "ssim": float(np.mean([p["ssim"] for p in per_band])),
        "mae": float(abs_sum.sum() / (n * n_bands)),
        "rmse": float(math.sqrt(mse_all)),
        "sam_degrees": float(sam_sum / sam_n) if sam_n else None,
        "sam_n_pixels": sam_n,
    }
    mask_report = None
    if mask is not None:
        mask_report = {"layer": mask.name, "band": 1, "values": [_num(v) for v in mvalues], "n_selected": n}
    report(progress, 1.0, "Comparing rasters: done")
    return {
        "image": image.name,
        "reference": reference.name,
        "bands": img_bands,
        "reference_bands": ref_bands,
        "data_range": range_info,
        "n_pixels": n,
        "n_valid_pixels": n_valid,
        "per_band": per_band,
        "overall": overall,
        "mask": mask_report,
        "ssim_settings": {"gaussian_sigma": SSIM_SIGMA, "window_radius": h, "K1": 0.01, "K2": 0.03,
                          "covariance": "population", "edges": "mirrored (SciPy reflect)",
                          "nodata_neighbours": "filled with the reference band mean"},
    }


def _num(v: float):
    """An int when the float is integral, so mask values read naturally in the report."""
    return int(v) if float(v).is_integer() else float(v)


# --------------------------------------------------------------------------- JSON


def _json_safe(value):
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        if math.isnan(v):
            return None
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return v
    return value


def report_to_json(report_dict: dict, indent: int | None = 2) -> str:
    """Strict JSON text of a report: ``inf`` (identical inputs' PSNR) becomes the string
    ``"inf"`` (``"-inf"`` likewise) and NaN becomes ``null``, since JSON has no such numbers."""
    return json.dumps(_json_safe(report_dict), indent=indent, allow_nan=False)
