"""Fusion of rasters: K co-registered date rasters (and their masks) into a fused raster and weight maps, block by block.

The rasters are processed in windows of ``tile - overlap`` pixels (the one block iterator),
read with a halo of ``overlap // 2`` pixels on each side (mirrored outside the raster) for the
quality network; only the window's core is written, so memory is bounded by ``K x C x tile^2``
plus the network. Every input is opened once; outputs go through the atomic raster writer.
With an executor (``FuseRasterOptions.executor``, a Dask cluster) each window is a task on a worker
(:class:`WindowFusion`, shipped once with the model) and the cores are written here in order.
"""

from __future__ import annotations

import copy
import tempfile
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..errors import InputError
from ..grids import align_to_reference, check_same_grid
from ..raster import RasterInfo, RasterWriter, parse_bands, raster_info, read_padded, read_window, valid_mask
from ..runtime import CancelCheck, Progress, check_cancelled, report
from ..windows import Window, iter_windows
from .fuse import FusionSettings, check_date_count, check_method, core_size, fuse_block
from .quality import DEFAULT_MODEL_FILE, NETWORK_CHUNK, FusionModel, resolve_polarity
from .scaling import raster_statistics


@dataclass
class SeriesRasters:
    """The rasters of one fusion run, on one grid: dates, and optionally masks and cloud probabilities."""

    dates: list
    masks: Optional[list] = None
    probabilities: Optional[list] = None

    @property
    def all(self) -> list:
        return self.dates + (self.masks or []) + (self.probabilities or [])


@dataclass
class _Job:
    """Everything of one :func:`fuse_rasters` call besides the rasters."""

    bands: list
    mask_values: np.ndarray
    settings: FusionSettings
    model_path: str | None
    device: str
    out_path: str
    weight_map_path: str | None
    tile: int
    overlap: int
    progress: Progress = None
    cancelled: CancelCheck = None
    executor: object = None
    backend: str = "auto"


@dataclass
class FuseRasterOptions:
    """How :func:`fuse_rasters` fuses: the method, its model, the bands, the blocks, the device.

    ``align``: warp every raster onto the first date's grid (bilinear for images, nearest for
    masks and probabilities) instead of refusing another grid. ``cloud_polarity``: ``low``
    (NDVI-like), ``high`` (reflectance), ``auto`` (1 band: low, else high). ``executor``: where the
    windows are fused (None = here; :func:`..tiling.open_executor`).
    """

    method: str = "quality"
    model_path: str | None = None
    bands: object = None
    tile: int = 256
    overlap: int = 32
    device: str = "auto"
    align: bool = False
    use_mask_in_quality: bool = True
    cloud_polarity: str = "auto"
    executor: object = None
    backend: str = "auto"  # what runs the quality network: auto, torch or onnxruntime (..backends)


def fuse_rasters(inputs: Sequence, out_path: str, *, masks: Optional[Sequence] = None, mask_values: Sequence = (1,),
                 cloud_probability: Optional[Sequence] = None, weight_map_path: str | None = None,
                 options: FuseRasterOptions | None = None, progress: Progress = None,
                 cancelled: CancelCheck = None) -> dict:
    """Fuse K >= 2 co-registered dates into ``out_path`` (float32, NaN = no date had data).

    ``masks``: one cloud-mask raster per date (pixels whose value is in ``mask_values`` are
    cloudy); ``cloud_probability``: one raster per date (lower = clearer, used by ``best``).
    Grids must match the first date (:class:`GridMismatchError`) unless ``options.align``.
    ``weight_map_path``: optional float32 raster of per-date weight maps (one band per date:
    the fusion weight of that date). Returns a summary dict.
    """
    o = options or FuseRasterOptions()
    t0 = time.perf_counter()
    series = _series(inputs, masks, cloud_probability, o.method)
    job = _Job(_band_list(series.dates, o.bands), np.asarray(list(mask_values)),
               FusionSettings(o.method, use_mask_in_quality=o.use_mask_in_quality, cloud_polarity=o.cloud_polarity),
               o.model_path, o.device, out_path, weight_map_path, o.tile, o.overlap, progress, cancelled, o.executor,
               o.backend)
    resolve_polarity(o.cloud_polarity, len(job.bands))
    if o.align:
        with tempfile.TemporaryDirectory(prefix="cloudfree-fusion-") as folder:
            summary = _fuse_aligned(series, folder, job)
    else:
        check_same_grid(series.all)
        summary = _fuse_on_grid(series, series.dates[0], job)
    return dict(summary, seconds=round(time.perf_counter() - t0, 3))


def _as_info(x) -> RasterInfo:
    return x if isinstance(x, RasterInfo) else raster_info(str(x))


def _series(inputs, masks, probabilities, method: str) -> SeriesRasters:
    """Check the method and the counts; every raster as a :class:`RasterInfo`."""
    check_method(method)
    infos = [_as_info(x) for x in inputs]
    check_date_count(len(infos))
    series = SeriesRasters(infos, None if not masks else [_as_info(x) for x in masks],
                           None if not probabilities else [_as_info(x) for x in probabilities])
    for name, group in (("cloud masks", series.masks), ("cloud probabilities", series.probabilities)):
        if group is not None and len(group) != len(infos):
            raise InputError(f"Give one raster of {name} per date: {len(group)} for {len(infos)} dates.")
    return series


def _band_list(dates: list, bands) -> list:
    ref = dates[0]
    band_list = parse_bands(bands, ref.band_count, ref.name)
    for info in dates[1:]:
        parse_bands(band_list, info.band_count, info.name)
    return band_list


def _fuse_aligned(series: SeriesRasters, folder: str, job: _Job) -> dict:
    """Warp every raster onto the first date's grid (VRTs in ``folder``), then fuse.

    The warped rasters live only in this call, so they are closed before ``folder`` is removed.
    """
    ref = series.dates[0]
    aligned = SeriesRasters(align_to_reference(series.dates, ref, folder))
    if series.masks is not None:
        aligned.masks = align_to_reference(series.masks, ref, folder, resampling="near")
    if series.probabilities is not None:
        aligned.probabilities = align_to_reference(series.probabilities, ref, folder, resampling="near")
    check_same_grid(aligned.all)
    return _fuse_on_grid(aligned, ref, job)


def _fuse_on_grid(series: SeriesRasters, ref: RasterInfo, job: _Job) -> dict:
    """Fuse rasters already on the grid of ``ref``, window by window."""
    settings = job.settings
    if settings.method == "quality":
        _load_quality(settings, series, job, ref.name)
    halo = job.overlap // 2 if settings.method == "quality" else 0
    windows = list(iter_windows(ref.width, ref.height, core_size(job.tile, halo)))
    K = len(series.dates)
    weight_sum = np.zeros(K, dtype=np.float64)
    no_data_pixels = 0
    with ExitStack() as stack:
        out, wout = _open_writers(stack, series, ref, job)
        for win, (f, wt) in zip(windows, _fused_cores(WindowFusion(series, halo, job), windows, job)):
            no_data_pixels += int((~np.isfinite(f[0])).sum())
            weight_sum += wt.reshape(K, -1).sum(axis=1)
            out.write(f, win.col_off, win.row_off)
            if wout is not None:
                wout.write(wt, win.col_off, win.row_off)
    px = ref.width * ref.height
    return {"output": job.out_path, "weight_maps": job.weight_map_path, "method": settings.method, "dates": K,
            "bands": job.bands, "pixels": px, "pixels_without_data": no_data_pixels,
            "mean_weight_per_date": (weight_sum / max(px, 1)).round(4).tolist(), "device": str(settings.device),
            "backend": None if settings.model is None else settings.model.runner.detail,
            "model": None if settings.model is None else (job.model_path or DEFAULT_MODEL_FILE)}


def _load_quality(settings: FusionSettings, series: SeriesRasters, job: _Job, layer: str) -> None:
    """The quality model on the chosen device, what runs it, and the series' normalisation statistics."""
    from ..backends import prepare
    from ..runtime import select_device

    settings.device = select_device(job.device)
    settings.model = FusionModel.load(job.model_path, device=settings.device)
    settings.model.check_bands(len(job.bands), layer)
    multiple = 2 ** getattr(settings.model.net, "levels", 3)
    settings.model.runner = prepare(settings.model.net, settings.device, job.backend,
                                    tile=job.tile + (-job.tile) % multiple,
                                    batch=min(NETWORK_CHUNK, len(series.dates) * len(job.bands)))
    report(job.progress, 0.0, f"Inference: {settings.model.runner.detail}")
    settings.stats = raster_statistics(series.dates, job.bands, series.masks, job.mask_values,
                                       settings.model.meta.normalization)


def _open_writers(stack: ExitStack, series: SeriesRasters, ref: RasterInfo, job: _Job) -> tuple:
    """The fused raster's writer and, when asked for, the weight maps' writer (both atomic)."""
    protect = [i.path for i in series.all]
    descriptions = [ref.descriptions[b - 1] if b - 1 < len(ref.descriptions) and ref.descriptions[b - 1]
                    else f"band {b}" for b in job.bands]
    out = stack.enter_context(RasterWriter(job.out_path, like=ref, band_count=len(job.bands), dtype="float32",
                                           nodata=float("nan"), descriptions=descriptions, protect=protect))
    wout = None
    if job.weight_map_path:
        wout = stack.enter_context(RasterWriter(job.weight_map_path, like=ref, band_count=len(series.dates),
                                                dtype="float32", nodata=None,
                                                descriptions=[f"weight {i.name}" for i in series.dates],
                                                protect=protect))
    return out, wout


def _fused_cores(fusion: "WindowFusion", windows: list, job: _Job):
    """The fused core and weight maps of each window, in order: here, or as tasks on the executor's workers."""
    if job.executor is not None:
        yield from job.executor.map_in_order(fusion, windows, progress=job.progress, cancelled=job.cancelled)
        return
    for done, win in enumerate(windows, start=1):
        check_cancelled(job.cancelled)
        yield fusion(win)
        report(job.progress, done / len(windows))


class WindowFusion:
    """One window read with its halo, fused, and its core cut out: ``(fused (C, h, w), weight maps (K, h, w))``.

    Shipped once to every worker of a scaled-out run (with the quality model in ``settings``); there each
    thread reads through its own copies of the rasters (a GDAL dataset must not be shared between threads).
    """

    def __init__(self, series: SeriesRasters, halo: int, job: _Job):
        self.series, self.halo = series, halo
        self.bands, self.mask_values, self.settings = job.bands, job.mask_values, job.settings
        self._local = None  # on a worker: each thread's copy of the series

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k != "_local"}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._local = threading.local()

    def rasters(self) -> SeriesRasters:
        if self._local is None:
            return self.series
        if not hasattr(self._local, "series"):
            self._local.series = copy.deepcopy(self.series)  # RasterInfo copies open their own datasets
        return self._local.series

    def __call__(self, win: Window) -> tuple:
        h = self.halo
        dates, valid, cloud, prob = _read_block(self.rasters(), win.padded(h), h, self.bands, self.mask_values)
        fused, weight_maps = fuse_block(dates, valid, cloud, prob, self.settings)
        core = (slice(None), slice(h, h + win.height), slice(h, h + win.width))
        return fused[core], weight_maps[core]


def _read_block(series: SeriesRasters, window: Window, halo: int, band_list: list, mask_values) -> tuple:
    """``(dates (K, C, h, w), valid, cloud or None, probability or None)`` of a window (mirrored past the edges)."""
    read = read_padded if halo else read_window
    K, C = len(series.dates), len(band_list)
    dates = np.empty((K, C, window.height, window.width), dtype=np.float32)
    valid = np.empty((K, window.height, window.width), dtype=bool)
    for k, info in enumerate(series.dates):
        dates[k] = read(info.dataset(), window, band_list)
        valid[k] = valid_mask(dates[k], [info.nodata[b - 1] for b in band_list])
    cloud = None
    if series.masks:
        cloud = np.stack([np.isin(read(m.dataset(), window, [1])[0], mask_values) for m in series.masks])
    prob = np.stack([read(p.dataset(), window, [1])[0] for p in series.probabilities]) if series.probabilities else None
    return dates, valid, cloud, prob
