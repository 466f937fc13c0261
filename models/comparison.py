"""Compare a raster with a reference on the same grid, block by block: PSNR, SSIM, MAE, RMSE, SAM; or classes.

:func:`compare_rasters` returns a JSON-serialisable report (write it with
:func:`report_to_json`, which makes infinite PSNR safe for strict JSON). The definitions are
those of :mod:`.metrics` (its module docstring), computed with bounded memory in two passes
over ``block`` x ``block`` windows: the first counts pixels and finds the reference's ranges
and the fill values, the second accumulates the errors and the SSIM map, each block read with
a halo of :data:`~.metrics.SSIM_RADIUS` pixels so block-wise SSIM equals whole-image SSIM.
:func:`compare_class_rasters` compares two class rasters instead: confusion matrix and class
metrics (:mod:`.class_metrics`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import class_metrics, metrics
from .errors import InputError
from .grids import check_same_grid
from .raster import RasterInfo, parse_bands, read_window, valid_mask
from .runtime import CancelCheck, Progress, check_cancelled, report
from .windows import Window, iter_windows


@dataclass
class _Inputs:
    """The validated inputs of one comparison, each raster opened once."""

    image: RasterInfo
    reference: RasterInfo
    mask: RasterInfo | None
    img_bands: list
    ref_bands: list
    mask_values: np.ndarray

    @property
    def n_bands(self) -> int:
        return len(self.img_bands)

    def valid_both(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        img_nodata = [self.image.nodata[b - 1] for b in self.img_bands]
        ref_nodata = [self.reference.nodata[b - 1] for b in self.ref_bands]
        return valid_mask(x, img_nodata) & valid_mask(y, ref_nodata)

    def compared(self, valid: np.ndarray, window: Window) -> np.ndarray:
        """``valid`` restricted to the pixels the mask selects (all of them without a mask)."""
        if self.mask is None:
            return valid
        values = read_window(self.mask.dataset(), window, [1], np.float64)[0]
        return valid & _selected(values, self.mask.nodata[0], self.mask_values)


@dataclass
class _FirstPass:
    n_valid: int
    n_compared: int
    ref_sum: np.ndarray
    ref_min: np.ndarray
    ref_max: np.ndarray
    compared_blocks: list  # per window: does it hold any compared pixel (skipped in pass 2 if not)


@dataclass
class _Sums:
    abs_sum: np.ndarray
    sq_sum: np.ndarray
    ssim_sum: np.ndarray
    sam_sum: float = 0.0
    sam_n: int = 0


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
    pooled over all bands; SAM is described in :mod:`.metrics` (None for one band). SSIM
    next to nodata uses filled neighbours.

    Raises :class:`InputError` for bad bands, mismatched band counts, a bad data range or
    when no pixel is left to compare, :class:`Cancelled` when ``cancelled()`` turns true.
    """
    inputs = _check_inputs(image, reference, bands, reference_bands, mask, mask_values)
    if data_range is not None:
        data_range = metrics.check_data_range(data_range)
    if int(block) < 1:
        raise InputError(f"The block size must be at least 1 pixel, not {block}.")
    windows = list(iter_windows(image.width, image.height, int(block)))
    first = _first_pass(inputs, windows, progress, cancelled)
    _require_pixels(inputs, first)
    ranges, range_info = _data_ranges(inputs, first, data_range)
    sums = _second_pass(inputs, windows, first, ranges, progress, cancelled)
    report(progress, 1.0, "Comparing rasters: done")
    return _report(inputs, first, ranges, range_info, sums)


def compare_class_rasters(image: RasterInfo, reference: RasterInfo, *, band: int = 1, reference_band: int | None = None,
                          mask: RasterInfo | None = None, mask_values=(1,), block: int = 1024,
                          progress: Progress = None, cancelled: CancelCheck = None) -> dict:
    """Class agreement of a class raster with a reference class raster on the same grid: a JSON-serialisable report.

    Pixels count where both hold data (and, with a mask, its value is in ``mask_values``). The
    classes are every value seen in either raster; the confusion matrix (rows: reference,
    columns: image) is summed block by block, and the per-class IoU, Dice (= F1), precision,
    recall, the overall accuracy, mIoU and frequency-weighted IoU follow from it
    (:mod:`.class_metrics`).
    """
    inputs = _check_inputs(image, reference, [band], [reference_band or band], mask, mask_values)
    windows = list(iter_windows(image.width, image.height, int(block)))
    counter = class_metrics.ConfusionCounter()
    for done, window in enumerate(windows, 1):
        check_cancelled(cancelled)
        x = read_window(inputs.image.dataset(), window, inputs.img_bands, np.float64)
        y = read_window(inputs.reference.dataset(), window, inputs.ref_bands, np.float64)
        compared = inputs.compared(inputs.valid_both(x, y), window)
        counter.add(x[0][compared], y[0][compared])
        report(progress, done / len(windows), "Comparing classes")
    values, cm = counter.matrix()
    if not values:
        raise InputError(f"Layers '{image.name}' and '{reference.name}' have no pixel with data in both"
                         + (f" that mask '{mask.name}' selects" if mask is not None else "") + "; nothing to compare.")
    scores = class_metrics.scores_from_confusion(cm)
    per_class = [{"class": _num(v), "iou": scores["iou"][i], "dice": scores["dice"][i], "f1": scores["dice"][i],
                  "precision": scores["precision"][i], "recall": scores["recall"][i],
                  "reference_pixels": scores["support"][i], "image_pixels": int(cm[:, i].sum())}
                 for i, v in enumerate(values)]
    return {"image": image.name, "reference": reference.name, "band": inputs.img_bands[0],
            "reference_band": inputs.ref_bands[0], "n_pixels": scores["n_pixels"], "classes": [_num(v) for v in values],
            "per_class": per_class,
            "overall": {"accuracy": scores["pixel_accuracy"], "miou": scores["miou"], "mean_dice": scores["mean_dice"],
                        "fwiou": scores["fwiou"]},
            "confusion_matrix": {"rows": "reference", "columns": "image", "counts": cm.tolist()},
            "mask": None if mask is None else {"layer": mask.name, "values": [_num(v) for v in inputs.mask_values]}}


def _check_inputs(image, reference, bands, reference_bands, mask, mask_values) -> _Inputs:
    check_same_grid([image, reference] + ([mask] if mask is not None else []))
    img_bands = parse_bands(bands, image.band_count, image.name)
    ref_bands = parse_bands(reference_bands, reference.band_count, reference.name, default=img_bands)
    if len(img_bands) != len(ref_bands):
        raise InputError(
            f"Layer '{image.name}' has {len(img_bands)} band(s) selected ({img_bands}) but layer "
            f"'{reference.name}' has {len(ref_bands)} ({ref_bands}); select the same number in both."
        )
    mvalues = np.asarray(list(mask_values), dtype=np.float64)
    if mask is not None and mvalues.size == 0:
        raise InputError(f"Mask '{mask.name}': give at least one mask value to select pixels.")
    return _Inputs(image, reference, mask, img_bands, ref_bands, mvalues)


def _first_pass(inputs: _Inputs, windows: list, progress, cancelled) -> _FirstPass:
    """Pixel counts, reference ranges over the compared pixels, sums for the fill values."""
    n = inputs.n_bands
    first = _FirstPass(0, 0, np.zeros(n), np.full(n, np.inf), np.full(n, -np.inf), [])
    for done, window in enumerate(windows, 1):
        check_cancelled(cancelled)
        x = read_window(inputs.image.dataset(), window, inputs.img_bands, np.float64)
        y = read_window(inputs.reference.dataset(), window, inputs.ref_bands, np.float64)
        valid = inputs.valid_both(x, y)
        compared = inputs.compared(valid, window)
        nv, nc = int(valid.sum()), int(compared.sum())
        first.n_valid += nv
        first.n_compared += nc
        if nv:
            first.ref_sum += y[:, valid].sum(axis=1)
        if nc:
            yc = y[:, compared]
            first.ref_min = np.minimum(first.ref_min, yc.min(axis=1))
            first.ref_max = np.maximum(first.ref_max, yc.max(axis=1))
        first.compared_blocks.append(nc > 0)
        report(progress, done / (2 * len(windows)), "Comparing rasters: ranges")
    return first


def _require_pixels(inputs: _Inputs, first: _FirstPass) -> None:
    image, reference = inputs.image, inputs.reference
    if first.n_valid == 0:
        raise InputError(
            f"Layers '{image.name}' and '{reference.name}' have no pixel with data in both "
            f"(bands {inputs.img_bands} / {inputs.ref_bands}); nothing to compare."
        )
    if first.n_compared == 0:
        raise InputError(
            f"Mask '{inputs.mask.name}' selects no pixel with data in both '{image.name}' and "
            f"'{reference.name}' (mask values {[_num(v) for v in inputs.mask_values]}); nothing to compare."
        )


def _data_ranges(inputs: _Inputs, first: _FirstPass, data_range: float | None) -> tuple:
    """Per-band data ranges for PSNR/SSIM and how they were chosen (for the report)."""
    n_bands = inputs.n_bands
    fallback = []
    if data_range is not None:
        ranges = [data_range] * n_bands
        range_info = {"method": "explicit", "description": "given by the user, used for every band"}
    else:
        ranges = []
        for i in range(n_bands):
            r = float(first.ref_max[i] - first.ref_min[i])
            if not r > 0:
                fallback.append(inputs.img_bands[i])
                r = 1.0
            ranges.append(r)
        range_info = {
            "method": "reference_min_max",
            "description": "per band max - min of the reference over the compared pixels",
            "reference_min": [float(v) for v in first.ref_min],
            "reference_max": [float(v) for v in first.ref_max],
        }
    range_info["per_band"] = [float(r) for r in ranges]
    range_info["overall"] = float(max(ranges))
    range_info["overall_description"] = "largest per-band range, used for the overall PSNR"
    if fallback:
        range_info["fallback_bands"] = fallback
        range_info["note"] = ("the reference is constant in these bands, so 1.0 was used; "
                              "pass data_range explicitly for meaningful PSNR/SSIM")
    return ranges, range_info


def _second_pass(inputs: _Inputs, windows: list, first: _FirstPass, ranges: list, progress, cancelled) -> _Sums:
    """Error sums, the SSIM map and spectral angles over the compared pixels."""
    n_bands = inputs.n_bands
    sums = _Sums(np.zeros(n_bands), np.zeros(n_bands), np.zeros(n_bands))
    fill = first.ref_sum / first.n_valid
    h = metrics.SSIM_RADIUS
    for done, (window, has_pixels) in enumerate(zip(windows, first.compared_blocks), len(windows) + 1):
        check_cancelled(cancelled)
        if has_pixels:
            _, _, w, hh = window
            x = _read_halo(inputs.image.dataset(), window, h, inputs.img_bands)
            y = _read_halo(inputs.reference.dataset(), window, h, inputs.ref_bands)
            valid_h = inputs.valid_both(x, y)
            compared = inputs.compared(valid_h[h:h + hh, h:h + w], window)
            xi = x[:, h:h + hh, h:h + w][:, compared]
            yi = y[:, h:h + hh, h:h + w][:, compared]
            d = xi - yi
            sums.abs_sum += np.abs(d).sum(axis=1)
            sums.sq_sum += (d * d).sum(axis=1)
            if n_bands >= 2:
                angles, ok = metrics.spectral_angles(xi, yi)
                sums.sam_sum += float(angles.sum())
                sums.sam_n += int(ok.sum())
            metrics.fill_invalid(x, y, valid_h, fill)
            for i in range(n_bands):
                check_cancelled(cancelled)
                sums.ssim_sum[i] += float(metrics.ssim_map_interior(x[i], y[i], ranges[i], h)[compared].sum())
        report(progress, done / (2 * len(windows)), "Comparing rasters: metrics")
    return sums


def _report(inputs: _Inputs, first: _FirstPass, ranges: list, range_info: dict, sums: _Sums) -> dict:
    n, n_bands = first.n_compared, inputs.n_bands
    per_band = []
    for i in range(n_bands):
        mse = sums.sq_sum[i] / n
        per_band.append({
            "band": inputs.img_bands[i],
            "reference_band": inputs.ref_bands[i],
            "data_range": float(ranges[i]),
            "psnr": metrics.psnr_from_mse(mse, ranges[i]),
            "ssim": float(sums.ssim_sum[i] / n),
            "mae": float(sums.abs_sum[i] / n),
            "rmse": float(math.sqrt(mse)),
        })
    mse_all = float(sums.sq_sum.sum() / (n * n_bands))
    overall = {
        "psnr": metrics.psnr_from_mse(mse_all, max(ranges)),
        "ssim": float(np.mean([p["ssim"] for p in per_band])),
        "mae": float(sums.abs_sum.sum() / (n * n_bands)),
        "rmse": float(math.sqrt(mse_all)),
        "sam_degrees": float(sums.sam_sum / sums.sam_n) if sums.sam_n else None,
        "sam_n_pixels": sums.sam_n,
    }
    mask_report = None
    if inputs.mask is not None:
        mask_report = {"layer": inputs.mask.name, "band": 1, "values": [_num(v) for v in inputs.mask_values],
                       "n_selected": n}
    return {
        "image": inputs.image.name,
        "reference": inputs.reference.name,
        "bands": inputs.img_bands,
        "reference_bands": inputs.ref_bands,
        "data_range": range_info,
        "n_pixels": n,
        "n_valid_pixels": first.n_valid,
        "per_band": per_band,
        "overall": overall,
        "mask": mask_report,
        "ssim_settings": {"gaussian_sigma": metrics.SSIM_SIGMA, "window_radius": metrics.SSIM_RADIUS, "K1": 0.01,
                          "K2": 0.03, "covariance": "population", "edges": "mirrored (SciPy reflect)",
                          "nodata_neighbours": "filled with the reference band mean"},
    }


def _read_halo(ds, window, halo: int, bands: Sequence[int]) -> np.ndarray:
    """Read ``window`` grown by ``halo`` pixels; outside the raster, mirror SciPy-style.

    ``read_padded`` mirrors without repeating the edge pixel (numpy 'reflect'), whereas
    skimage's Gaussian filter repeats it (SciPy 'reflect' = numpy 'symmetric'); using the
    latter makes block edges on the raster border give exactly the whole-image SSIM map.
    """
    grown = Window(*window).padded(halo)
    inner_window = grown.clipped(ds.RasterXSize, ds.RasterYSize)
    inner = read_window(ds, inner_window, bands, np.float64)
    ix0, iy0, iw, ih = inner_window
    pads = ((0, 0), (iy0 - grown.row_off, grown.row_off + grown.height - (iy0 + ih)),
            (ix0 - grown.col_off, grown.col_off + grown.width - (ix0 + iw)))
    if any(p for pair in pads for p in pair):
        inner = np.pad(inner, pads, mode="symmetric")
    return inner


def _selected(values: np.ndarray, nodata, mask_values: np.ndarray) -> np.ndarray:
    """Mask pixels whose value is one of ``mask_values`` (the mask's own nodata never is)."""
    sel = np.isin(values, mask_values)
    if nodata is not None and not math.isnan(nodata):
        sel &= values != nodata
    return sel & np.isfinite(values)


def _num(v: float):
    """An int when the float is integral, so mask values read naturally in the report."""
    return int(v) if float(v).is_integer() else float(v)




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
