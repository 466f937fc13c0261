"""The target and its other dates, stage by stage, as the temporal reconstruction and its self-check share them.

:func:`open_target` (the target, its bands and its mask on its grid), :func:`scene_statistics` (per date
the scene-wide line and the sub-pixel shift, computed once from the whole raster), :func:`read_block`
(one block with a halo, every date co-registered) and :func:`predict_block` (the dates' mixed
prediction of a block's cloudy pixels, :mod:`.temporal`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError
from ..grids import align_to_reference, grid_difference
from ..raster import RasterInfo, parse_bands, read_decimated, read_window, valid_mask
from ..runtime import CancelCheck, check_cancelled
from ..windows import Window
from .coregister import SHIFT_HALO, estimate_shift, shift_image
from .guides import guide_pixels, mask_marks
from .temporal import DateMixer, SceneFit, TemporalParams, halo, local_fits

#: statistics of the scene come from decimated reads of at most this many pixels a side
SCENE_SAMPLE = 1024
#: the shift of a guide is the median over at most this many chips of CHIP pixels a side
CHIPS, CHIP = 4, 512


@dataclass
class Target:
    """The target raster, the bands reconstructed, and its cloud mask on its grid."""

    info: RasterInfo
    bands: list
    mask: RasterInfo
    mask_values: tuple
    nodata: list = field(default_factory=list)

    def read(self, window: Window) -> tuple:
        """``(native values, float64 values, valid, cloudy)`` in ``window``: valid = holds data in every band;
        cloudy = valid and marked by the mask (or the mask's nodata)."""
        native = read_window(self.info.dataset(), window, self.bands, np.dtype(self.info.dtype))
        valid = valid_mask(native, self.nodata)
        marked = mask_marks(read_window(self.mask.dataset(), window, [1], np.float64)[0], self.mask_values,
                            self.mask.nodata[0])
        return native, native.astype(np.float64), valid, valid & marked


@dataclass
class Scene:
    """What every block shares: per date its scene-wide line, shift and days from the target; per band
    the target's clear-pixel variance (``scale``) and standard deviation."""

    dates: list
    fits: list
    shifts: list
    days: list
    scale: np.ndarray
    spread: np.ndarray


@dataclass
class BlockInputs:
    """One block with its halo: the target (float64), its valid and cloudy pixels, and every date's
    co-registered values and valid pixels (None where the date has no valid pixel there)."""

    window: Window      # the padded window read
    inner: tuple        # slices of the block inside it
    target: np.ndarray
    valid: np.ndarray
    cloudy: np.ndarray
    native: np.ndarray
    guides: list


def open_target(src: RasterInfo, bands, mask: RasterInfo | None, mask_values, folder: str) -> Target:
    """The target and its mask (warped onto the target's grid with nearest neighbour when it is on another)."""
    if mask is None:
        raise InputError(f"Reconstruction from other dates replaces the clouds a mask marks: give the cloud mask "
                         f"of '{src.name}' (cloudfree:detectclouds makes one).")
    band_list = parse_bands(bands, src.band_count, src.name)
    if grid_difference(mask, src) is not None:
        if not mask.is_georeferenced or not src.is_georeferenced:
            raise InputError(f"The mask '{mask.name}' is not on the grid of '{src.name}' and cannot be warped "
                             "onto it (one of them has no CRS).")
        mask = align_to_reference([mask], src, folder, "nearest")[0]
    nodata = [src.nodata[b - 1] for b in band_list]
    return Target(src, band_list, mask, tuple(float(v) for v in mask_values), nodata)


def _chips(info: RasterInfo) -> list:
    """Up to :data:`CHIPS` windows of :data:`CHIP` pixels spread over the raster (one when it is small)."""
    w, h = min(CHIP, info.width), min(CHIP, info.height)
    n = int(round(math.sqrt(CHIPS)))
    xs = sorted({int(round(v)) for v in np.linspace(0, info.width - w, n)})
    ys = sorted({int(round(v)) for v in np.linspace(0, info.height - h, n)})
    return [Window(x, y, w, h) for y in ys for x in xs]


def _shift(chips: list, date) -> tuple | None:
    """The median shift of ``date`` over the target's ``chips`` (``(window, values, clear)`` each)."""
    found = []
    for w, t, clear in chips:
        g, ok = guide_pixels(date, w)
        s = estimate_shift(t, clear, g, ok)
        if s is not None:
            found.append(s)
    return tuple(float(v) for v in np.median(np.asarray(found), axis=0)) if found else None


def scene_statistics(target: Target, dates: list, coregister: bool = True, cancelled: CancelCheck = None) -> Scene:
    """The scene-wide line of every date, its shift and days, and the target's per-band spread (computed
    once from the whole raster, decimated to :data:`SCENE_SAMPLE` pixels a side, and full-resolution chips)."""
    info = target.info
    t = read_decimated(info, target.bands, SCENE_SAMPLE)
    size = (t.shape[2], t.shape[1])
    clear = valid_mask(t, target.nodata)
    m = read_decimated(target.mask, [1], size=size, resample="nearest")[0]
    clear &= ~mask_marks(m, target.mask_values, target.mask.nodata[0])
    sel = t[:, clear]
    spread = sel.std(axis=1) if sel.shape[1] > 1 else np.nanstd(t.reshape(len(target.bands), -1), axis=1)
    spread = np.where(np.isfinite(spread) & (spread > 0), spread, 1.0)
    chips = []
    for w in _chips(info) if coregister else []:
        _, values, valid, cloudy = target.read(w)
        chips.append((w, values, valid & ~cloudy))
    fits, shifts, days = [], [], []
    for d in dates:
        check_cancelled(cancelled)
        g = read_decimated(d.aligned, d.bands, size=size)
        ok = valid_mask(g, [d.aligned.nodata[b - 1] for b in d.bands])
        if d.mask is not None:
            gm = read_decimated(d.mask, [1], size=size, resample="nearest")[0]
            ok &= ~mask_marks(gm, d.guide.mask_values, d.mask_nodata)
        fits.append(SceneFit.fit(t, np.where(ok, g, np.nan), clear & ok))
        shifts.append(_shift(chips, d) if coregister else None)
        days.append(d.entry.get("days"))
        d.entry.update(scene_pixels=fits[-1].pixels, scene_slope=fits[-1].slope.tolist(),
                       shift_px=list(shifts[-1]) if shifts[-1] else None)
    return Scene(dates, fits, shifts, days, spread ** 2, spread)


def read_block(target: Target, scene: Scene, window: Window, params: TemporalParams) -> BlockInputs:
    """``window`` of the target and every date, read with a halo wide enough for the fits and the shifts."""
    info = target.info
    pad = window.padded(halo(params) + SHIFT_HALO).clipped(info.width, info.height)
    native, t, valid, cloudy = target.read(pad)
    inner = (slice(window.row_off - pad.row_off, window.row_off - pad.row_off + window.height),
             slice(window.col_off - pad.col_off, window.col_off - pad.col_off + window.width))
    guides = []
    for d, s in zip(scene.dates, scene.shifts):
        g, ok = guide_pixels(d, pad)
        if s is not None and ok.any():
            g, ok = shift_image(g, ok, *s)
        guides.append((g, ok) if ok.any() else None)
    return BlockInputs(pad, inner, t, valid, cloudy, native, guides)


def predict_block(block: BlockInputs, scene: Scene, params: TemporalParams, cloudy: np.ndarray | None = None):
    """The dates' mixed prediction (:class:`.temporal.Combined`) of the block's ``cloudy`` pixels (default:
    the target's own), fitted on the valid pixels that are not cloudy; crop with ``block.inner``."""
    cloudy = block.cloudy if cloudy is None else cloudy
    clear = block.valid & ~cloudy
    mixer = DateMixer(block.target.shape, scene.scale, params)
    for k, inputs in enumerate(block.guides):
        if inputs is None or not (cloudy & inputs[1]).any():
            continue
        g, ok = inputs
        mixer.add(k, local_fits(block.target, clear, g, ok, scene.fits[k], params, where=cloudy), scene.days[k])
    return mixer.result()
