"""Fusion of arrays: one block of K dates into one image and its per-date weight maps, by any method.

:func:`fuse_block` is the one place a block is fused (rasters and arrays both go through it);
:func:`fuse_arrays` fuses whole in-memory stacks, in windows of ``tile - overlap`` pixels with
an ``overlap // 2`` halo (mirrored outside the image) for the quality network, so the result
equals the block-wise raster fusion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..windows import Window, iter_windows
from .baselines import allowed_dates, best_weight_maps, mean_weight_maps, median_fusion
from .quality import FusionModel
from .scaling import band_statistics

METHODS = ("quality", "mean", "median", "best")


@dataclass
class FusionSettings:
    """How every block of one run is fused."""

    method: str
    model: FusionModel | None = None     # quality only
    stats: dict | None = None            # quality only: normalisation statistics of the whole series
    device: object = "cpu"
    use_mask_in_quality: bool = True     # the cloud mask zeroes the quality weights (else only nodata does)
    cloud_polarity: str = "auto"


def check_method(method: str) -> None:
    if method not in METHODS:
        raise InputError(f"Unknown fusion method '{method}': use {', '.join(METHODS)}.")


def check_date_count(count: int) -> None:
    if count < 2:
        raise InputError(f"Fusion needs at least 2 dates; got {count}.")


def core_size(tile: int, halo: int) -> int:
    """Side of the part of a ``tile`` that is kept (written) when it is read with a ``halo`` on every side."""
    return max(tile - 2 * halo, 1)


def fuse_block(dates: np.ndarray, valid: np.ndarray, cloud: np.ndarray | None, probability: np.ndarray | None,
               settings: FusionSettings) -> tuple:
    """Fuse one block: ``dates`` (K, C, h, w) float32 with anything at invalid pixels.

    Returns ``(fused (C, h, w) float32, NaN where no date is valid; weight maps (K, h, w) float32)``.
    """
    check_method(settings.method)
    any_valid = valid.any(axis=0)
    if settings.method == "median":
        fused, weight_maps = median_fusion(dates, valid, None if cloud is None else ~cloud)
    else:
        weight_maps = _weight_maps(dates, valid, cloud, probability, settings)
        filled = np.where(valid[:, None], dates, 0).astype(np.float32)
        fused = np.einsum("khw,kchw->chw", weight_maps, filled)
    fused = np.asarray(fused, dtype=np.float32)
    fused[:, ~any_valid] = np.nan
    return fused, weight_maps


def _weight_maps(dates, valid, cloud, probability, settings: FusionSettings) -> np.ndarray:
    """Per-date weight maps (K, h, w) of the methods that fuse by a weighted sum."""
    clear = None if cloud is None else ~cloud
    if settings.method == "quality":
        return settings.model.weight_maps(dates, valid, clear if settings.use_mask_in_quality else None,
                                          settings.stats, settings.device, settings.cloud_polarity)
    if settings.method == "mean":
        return mean_weight_maps(valid, clear)
    return best_weight_maps(valid, cloud, probability)


def fuse_arrays(dates: np.ndarray, valid: np.ndarray | None = None, method: str = "quality", model=None, *,
                cloud_mask: np.ndarray | None = None, cloud_probability: np.ndarray | None = None,
                stats: dict | None = None, device="cpu", tile: int = 256, overlap: int = 32,
                use_mask_in_quality: bool = True, cloud_polarity: str = "auto") -> tuple:
    """Fuse ``dates`` (K, C, H, W) into ``(fused (C, H, W) float32, weight maps (K, H, W) float32)``.

    ``valid`` (K, H, W) bool: the date holds data (default: every band finite).
    ``cloud_mask`` (K, H, W) bool: True where a date is cloudy (weight 0 unless every valid
    date is cloudy there). ``cloud_probability`` (K, H, W): used by ``best`` (lower wins).
    ``model``: a :class:`FusionModel`, a model path, or None for the shipped default
    (``quality`` only). Pixels without any valid date are NaN in ``fused``.
    ``stats``: normalisation statistics (default: computed from the allowed pixels).
    Large arrays are processed in ``tile`` x ``tile`` windows with an ``overlap // 2`` halo.
    ``cloud_polarity``: ``low`` (NDVI-like), ``high`` (reflectance) or ``auto`` (1 band: low, else high).
    """
    dates = np.asarray(dates, dtype=np.float32)
    if dates.ndim == 3:
        dates = dates[:, None]
    if dates.ndim != 4:
        raise InputError(f"dates must be (K, C, H, W); got shape {dates.shape}")
    check_date_count(dates.shape[0])
    check_method(method)
    if valid is None:
        valid = np.isfinite(dates).all(axis=1)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(dates).all(axis=1)
    cloud = None if cloud_mask is None else np.asarray(cloud_mask, dtype=bool)
    prob = None if cloud_probability is None else np.asarray(cloud_probability, dtype=np.float32)
    settings = FusionSettings(method, device=device, use_mask_in_quality=use_mask_in_quality,
                              cloud_polarity=cloud_polarity)
    if method == "quality":
        _prepare_quality(settings, model, dates, valid, cloud, stats)
    _, _, H, W = dates.shape
    if method != "quality" or (H <= tile and W <= tile):
        return fuse_block(dates, valid, cloud, prob, settings)
    return _fuse_in_windows(dates, valid, cloud, settings, tile, overlap)


def _prepare_quality(settings: FusionSettings, model, dates, valid, cloud, stats) -> None:
    """Load the model onto the device and compute the statistics unless given."""
    import torch

    model = FusionModel.resolve(model, device=settings.device)
    model.check_bands(dates.shape[1])
    device = torch.device(settings.device) if isinstance(settings.device, str) else settings.device
    model.net.to(device).eval()
    if stats is None:
        allowed = allowed_dates(valid, None if cloud is None else ~cloud)
        stats = band_statistics(dates, allowed, model.meta.normalization if model.meta is not None else None)
    settings.model, settings.stats, settings.device = model, stats, device


def _fuse_in_windows(dates, valid, cloud, settings: FusionSettings, tile: int, overlap: int) -> tuple:
    """Quality fusion of a large stack window by window, each read with a mirrored halo."""
    K, C, H, W = dates.shape
    halo = overlap // 2
    fused = np.empty((C, H, W), dtype=np.float32)
    weight_maps = np.empty((K, H, W), dtype=np.float32)
    pad4 = ((0, 0), (0, 0), (halo, halo), (halo, halo))
    pad3 = pad4[1:]
    pd = np.pad(np.where(valid[:, None], dates, 0), pad4, mode="reflect")
    pv = np.pad(valid, pad3, mode="reflect")
    pc = None if cloud is None else np.pad(cloud, pad3, mode="reflect")
    for win in iter_windows(W, H, core_size(tile, halo)):
        # the window with its halo, in the coordinates of the padded arrays
        rows, cols = Window(win.col_off, win.row_off, win.width + 2 * halo, win.height + 2 * halo).slices
        f, wt = fuse_block(pd[:, :, rows, cols], pv[:, rows, cols], None if pc is None else pc[:, rows, cols],
                           None, settings)
        core = (slice(halo, halo + win.height), slice(halo, halo + win.width))
        fused[(slice(None),) + win.slices] = f[(slice(None),) + core]
        weight_maps[(slice(None),) + win.slices] = wt[(slice(None),) + core]
    return fused, weight_maps
