"""Guides of guided cloud removal (other dates of the same place, Sentinel-1 radar) prepared on the
target raster's grid before a network runs: :func:`prepare_guides` writes ``base.tif`` and ``radar.tif``.

- ``base``: per pixel the nearest-in-time optical guide that is valid there (not nodata, not marked
  by its own mask), its bands mapped linearly (``gain * guide + offset``) so that their mean and
  standard deviation match the target's clear pixels; NaN where no guide is valid.
- ``radar``: every radar guide's bands stacked, in dB. Radar is resampled in linear power, never
  in dB (an average of dB values is not the dB of the average backscatter): dB -> power, optional
  Lee speckle filter, warp (bilinear, or "average" for finer pixels), back to dB.

Everything is read and written block by block, so memory stays bounded.
"""

from __future__ import annotations

import datetime
import math
import os
import re
from dataclasses import dataclass, field

import numpy as np
from osgeo import osr

from ..errors import InputError
from ..grids import align_to_reference, grid_difference, overlap_fraction, same_crs
from ..raster import RasterInfo, RasterWriter, raster_info, read_decimated, read_padded, read_window, valid_mask
from ..runtime import CancelCheck, Progress, check_cancelled, report
from ..windows import Window, iter_windows
from ..radar import lee_filter, looks_like_radar, median_valid, noise_cv2, to_power  # noqa: F401 (public here too)

KINDS = ("optical", "radar")
RADAR_UNITS = ("auto", "db", "linear")
MATCH_SAMPLE = 1024         # matching statistics come from decimated reads of at most this many pixels a side
MIN_MATCH_PIXELS = 100      # fewer common pixels: match all valid guide pixels to all clear target pixels


@dataclass(frozen=True)
class Guide:
    """One guide: ``kind`` "optical" (another date of the same place) or "radar" (Sentinel-1 backscatter).

    ``bands``: 1-based bands of the guide (None: optical, the target's band numbers; radar, all).
    ``mask`` with ``mask_values``: an optical guide's own clouds (any grid). ``radar_units``: "db",
    "linear" or "auto" (dB when the median valid value is below 0). ``speckle``: Lee filter window
    in pixels (0: none, else odd >= 3). ``name``: for messages (default: the file name without extension).
    """

    path: str
    kind: str = "optical"
    bands: tuple | None = None
    mask: str | None = None
    mask_values: tuple = (1, 2)
    radar_units: str = "auto"
    speckle: int = 0
    name: str = ""

    def __post_init__(self):
        if not self.name:
            object.__setattr__(self, "name", os.path.splitext(os.path.basename(str(self.path)))[0])
        if self.bands is not None:
            object.__setattr__(self, "bands", tuple(int(b) for b in self.bands))
        object.__setattr__(self, "mask_values", tuple(self.mask_values))


@dataclass
class PreparedGuides:
    """The guides on the target's grid: ``base`` (float32, the target's band count, NaN where no optical
    guide is valid), ``radar`` (float32, dB, NaN where invalid) and one ``report`` dict per guide."""

    base: RasterInfo | None
    radar: RasterInfo | None
    report: list = field(default_factory=list)

    @property
    def radar_bands(self) -> int:
        """How many radar channels the guides give (0 without radar)."""
        return self.radar.band_count if self.radar is not None else 0


@dataclass
class _Opened:
    """A guide opened and checked: its source, bands, its rasters on the target grid and its report entry."""

    guide: Guide
    source: RasterInfo
    bands: list
    aligned: RasterInfo | None = None
    mask: RasterInfo | None = None
    mask_nodata: float | None = None
    gain: np.ndarray | None = None
    offset: np.ndarray | None = None
    entry: dict = field(default_factory=dict)


# --------------------------------------------------------------------------- dates


def _valid_date(year: int, month: int, day: int) -> datetime.date | None:
    try:
        return datetime.date(year, month, day) if 1950 <= year <= 2100 else None
    except ValueError:
        return None


def acquisition_date(text: str) -> datetime.date | None:
    """The acquisition date in a layer name or a path's file name, or None.

    Understood: a Landsat scene id of the pre-collection form ``LXSPPPRRRYYYYDDD...`` (year and day
    of year), ``YYYYMMDD`` (Sentinel-2 ``..._20160605T100650``, Landsat collection ids, whose first
    date is the acquisition) and ``YYYY-MM-DD`` (or ``_`` / ``.`` separators).
    """
    name = re.split(r"[\\/]", str(text or ""))[-1]
    m = re.search(r"(?<![A-Za-z0-9])L[CETMO]\d\d{6}(\d{4})(\d{3})[A-Z]{3}\d{2}", name)
    if m:
        year, doy = int(m.group(1)), int(m.group(2))
        start = _valid_date(year, 1, 1)
        if start is not None and 1 <= doy <= 366:
            return start + datetime.timedelta(days=doy - 1)
    for pattern in (r"(?<!\d)(\d{4})(\d{2})(\d{2})(?!\d)", r"(?<!\d)(\d{4})([-_.])(\d{2})\2(\d{2})(?!\d)"):
        for m in re.finditer(pattern, name):
            g = m.groups()
            date = _valid_date(int(g[0]), int(g[-2]), int(g[-1]))
            if date is not None:
                return date
    return None


def split_guides(guides: list) -> tuple:
    """``(optical guides, radar guides)``, each in the order given."""
    return [g for g in guides if g.kind != "radar"], [g for g in guides if g.kind == "radar"]


def _guide_date(guide: Guide) -> datetime.date | None:
    return acquisition_date(guide.name) or acquisition_date(guide.path)


def order_by_time(target_name: str, guides: list) -> list:
    """The optical guides among ``guides``, nearest in time to the target first when the target and
    every one of them carry a date (:func:`acquisition_date`; ties keep the given order); else as given."""
    optical, _ = split_guides(guides)
    when = acquisition_date(target_name)
    dates = [_guide_date(g) for g in optical]
    if when is None or any(d is None for d in dates):
        return optical
    order = sorted(range(len(optical)), key=lambda i: abs((dates[i] - when).days))
    return [optical[i] for i in order]


# --------------------------------------------------------------------------- grids and checks


def _bounds_in(info: RasterInfo, wkt: str) -> tuple:
    """``info``'s bounds in the CRS ``wkt`` (as they are when either has no CRS or both share it)."""
    if not wkt or not info.crs_wkt or same_crs(info.crs_wkt, wkt):
        return info.bounds
    src, dst = osr.SpatialReference(), osr.SpatialReference()
    src.ImportFromWkt(info.crs_wkt)
    dst.ImportFromWkt(wkt)
    for s in (src, dst):
        s.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return osr.CoordinateTransformation(src, dst).TransformBounds(*info.bounds, 21)


def _crop_window(source: RasterInfo, target: RasterInfo, margin: int = 2) -> Window:
    """The part of ``source``'s grid over the target, ``margin`` pixels wider, or exactly the target when
    ``source`` is a larger raster on the same pixel grid (then no warp is needed)."""
    if grid_difference(source, target) is None:
        return Window(0, 0, source.width, source.height)
    xmin, ymin, xmax, ymax = _bounds_in(target, source.crs_wkt)
    gt = source.geotransform
    c0, c1 = sorted(((xmin - gt[0]) / gt[1], (xmax - gt[0]) / gt[1]))
    r0, r1 = sorted(((ymax - gt[3]) / gt[5], (ymin - gt[3]) / gt[5]))
    if same_crs(source.crs_wkt, target.crs_wkt) and all(abs(v - round(v)) < 1e-3 for v in (c0, c1, r0, r1)):
        c0, c1, r0, r1, margin = round(c0), round(c1), round(r0), round(r1), 0
    x0, y0 = math.floor(c0) - margin, math.floor(r0) - margin
    return Window(x0, y0, math.ceil(c1) + margin - x0, math.ceil(r1) + margin - y0).clipped(source.width, source.height)


def _finer(source: RasterInfo, target: RasterInfo) -> bool:
    """Whether ``source``'s pixels are smaller than the target's (compared in the target's CRS)."""
    xmin, ymin, xmax, ymax = _bounds_in(source, target.crs_wkt)
    area = (xmax - xmin) * (ymax - ymin) / (source.width * source.height)
    return area < 0.99 * target.pixel_size[0] * target.pixel_size[1]


def _check_covers(info: RasterInfo, target: RasterInfo, label: str) -> None:
    why = grid_difference(info, target)
    if why is None:
        return
    if not info.is_georeferenced or not target.is_georeferenced:
        lacking = "it" if not info.is_georeferenced else "the target"
        raise InputError(f"{label} is not on the grid of the target '{target.name}' ({why}) and {lacking} has "
                         "no CRS, so it cannot be warped onto it: align it first.")
    if overlap_fraction(info, target) <= 0:
        raise InputError(f"{label} does not cover the target '{target.name}'.")


def _check_guide(guide: Guide) -> None:
    if guide.kind not in KINDS:
        raise InputError(f"Guide '{guide.name}': unknown kind '{guide.kind}' (use {' or '.join(KINDS)}).")
    if guide.kind == "radar" and guide.radar_units not in RADAR_UNITS:
        raise InputError(f"Guide '{guide.name}': unknown radar units '{guide.radar_units}' "
                         f"(use {', '.join(RADAR_UNITS)}).")
    if guide.kind == "radar" and guide.speckle and (guide.speckle < 3 or guide.speckle % 2 == 0):
        raise InputError(f"Guide '{guide.name}': the speckle filter window must be 0 (none) or an odd number "
                         f"of pixels >= 3, not {guide.speckle}.")


def _guide_bands(guide: Guide, source: RasterInfo, target_bands: list) -> list:
    if guide.kind == "radar":
        bands = list(guide.bands) if guide.bands else list(range(1, source.band_count + 1))
    else:
        bands = list(guide.bands) if guide.bands else list(target_bands)
        if len(bands) != len(target_bands):
            raise InputError(f"Guide '{guide.name}': {len(bands)} band(s) {bands} given for the target's "
                             f"{len(target_bands)} band(s) {target_bands}; give one guide band per target band.")
    missing = [b for b in bands if not 1 <= b <= source.band_count]
    if missing:
        asked = "the target's band numbers " if guide.kind == "optical" and not guide.bands else ""
        raise InputError(f"Guide '{guide.name}' has {source.band_count} band(s): band(s) {missing} of "
                         f"{asked}{bands} do not exist in it; give the guide's own band numbers.")
    return bands


def _open(guide: Guide, target: RasterInfo, target_bands: list) -> _Opened:
    _check_guide(guide)
    source = raster_info(guide.path, guide.name)
    _check_covers(source, target, f"Guide '{guide.name}'")
    bands = _guide_bands(guide, source, target_bands)
    entry = {"name": guide.name, "kind": guide.kind, "path": str(guide.path), "bands": bands}
    return _Opened(guide, source, bands, entry=entry)


def _align_mask(info: RasterInfo, target: RasterInfo, folder: str, label: str) -> RasterInfo:
    _check_covers(info, target, label)
    return align_to_reference([info], target, folder, "nearest")[0]


def mask_marks(values: np.ndarray, marked, nodata) -> np.ndarray:
    """Mask pixels whose value is among ``marked``, or the mask's own nodata when it declares one."""
    bad = np.isin(values, np.asarray([float(v) for v in marked]))
    if nodata is not None:
        bad |= np.isnan(values) if math.isnan(nodata) else values == nodata
    return bad


# --------------------------------------------------------------------------- progress and blocks


class _Passes:
    """Progress over a run's passes over the data, each an equal share, and cancellation in every block."""

    def __init__(self, progress: Progress, cancelled: CancelCheck, count: int):
        self.progress, self.cancelled, self.count, self.done = progress, cancelled, max(count, 1), 0

    def step(self, fraction: float, message: str | None = None) -> None:
        check_cancelled(self.cancelled)
        report(self.progress, (self.done + fraction) / self.count, message)

    def blocks(self, width: int, height: int, block: int, message: str):
        windows = list(iter_windows(width, height, block))
        for i, w in enumerate(windows):
            check_cancelled(self.cancelled)
            yield w
            self.step((i + 1) / len(windows), message)
        self.done += 1


def _set_coverage(opened: list, counts: list, target: RasterInfo) -> None:
    total = target.width * target.height
    for o, n in zip(opened, counts):
        o.entry["coverage"] = n / total
        if n == 0:
            why = "nodata or marked by its mask" if o.mask is not None else "nodata"
            raise InputError(f"Guide '{o.guide.name}' has no valid pixel over the target '{target.name}' "
                             f"(it is {why} everywhere there).")


# --------------------------------------------------------------------------- optical: matching and the base


def _optical_pixels(o: _Opened, read) -> tuple:
    """``(values, valid)`` of an optical guide on the target grid, read by ``read(info, bands)``."""
    arr = read(o.aligned, o.bands)
    ok = valid_mask(arr, [o.aligned.nodata[b - 1] for b in o.bands])
    if o.mask is not None:
        ok &= ~mask_marks(read(o.mask, [1])[0], o.guide.mask_values, o.mask_nodata)
    return arr, ok


def _match(o: _Opened, t: np.ndarray, clear: np.ndarray) -> None:
    """The guide's per-band gain and offset that give its pixels the target's mean and standard deviation."""
    size = (t.shape[2], t.shape[1])
    g, ok = _optical_pixels(o, lambda info, bands: read_decimated(info, bands, size=size))
    both = ok & clear
    if clear.sum() < MIN_MATCH_PIXELS or not ok.any():
        how, pixels = f"none: the target has fewer than {MIN_MATCH_PIXELS} clear pixels", 0
        gain, offset = np.ones(len(o.bands)), np.zeros(len(o.bands))
    else:
        common = both.sum() >= MIN_MATCH_PIXELS
        how = "pixels valid in the guide and clear in the target" if common else \
            "all valid guide pixels vs all clear target pixels (too few in common)"
        gsel, tsel = (both, both) if common else (ok, clear)
        gm, gs = g[:, gsel].mean(axis=1), g[:, gsel].std(axis=1)
        tm, ts = t[:, tsel].mean(axis=1), t[:, tsel].std(axis=1)
        gain = np.where(gs > 0, ts / np.where(gs > 0, gs, 1.0), 1.0)
        offset, pixels = tm - gain * gm, int(gsel.sum())
    o.gain, o.offset = gain, offset
    o.entry.update(gain=gain.tolist(), offset=offset.tolist(), matching=how, matched_pixels=pixels)


def _prepare_optical(o: _Opened, target: RasterInfo, folder: str, when: datetime.date | None) -> None:
    o.aligned = align_to_reference([o.source], target, folder, "bilinear")[0]
    if o.guide.mask:
        mask = raster_info(o.guide.mask)
        o.mask = _align_mask(mask, target, folder, f"The mask '{mask.name}' of guide '{o.guide.name}'")
        o.mask_nodata = mask.nodata[0]
    date = _guide_date(o.guide)
    o.entry.update(date=date.isoformat() if date else None,
                   days=abs((date - when).days) if date and when else None)


def in_order(target: RasterInfo, optical: list) -> list:
    """The opened optical guides in :func:`order_by_time` order (the order the base takes them in)."""
    ranked = order_by_time(target.name if acquisition_date(target.name) else target.path, [o.guide for o in optical])
    ordered = sorted(optical, key=lambda o: next(i for i, g in enumerate(ranked) if g is o.guide))
    for rank, o in enumerate(ordered, 1):
        o.entry["order"] = rank
    return ordered


def _write_base(ordered: list, target: RasterInfo, bands: list, path: str, block: int, passes: _Passes) -> RasterInfo:
    counts, nb = [0] * len(ordered), len(bands)
    names = [target.descriptions[b - 1] if b <= len(target.descriptions) else "" for b in bands]
    with RasterWriter(path, like=target, band_count=nb, dtype="float32", nodata=float("nan"),
                      descriptions=names) as out:
        for w in passes.blocks(target.width, target.height, block, "Guides: the matched other dates"):
            base = np.full((nb, w.height, w.width), np.nan)
            free = np.ones((w.height, w.width), bool)
            for k, o in enumerate(ordered):
                arr, ok = _optical_pixels(o, lambda info, bands: read_window(info.dataset(), w, bands, np.float64))
                counts[k] += int(ok.sum())
                take = ok & free
                base[:, take] = o.gain[:, None] * arr[:, take] + o.offset[:, None]
                free &= ~take
            out.write(base, w.col_off, w.row_off)
        _set_coverage(ordered, counts, target)
    return raster_info(path, "guide base")


def _base(optical: list, target: RasterInfo, bands: list, folder: str, target_mask, cloud_values,
          block: int, passes: _Passes) -> RasterInfo:
    t = read_decimated(target, bands, MATCH_SAMPLE)   # the target and its clear pixels, for the matching
    clear = valid_mask(t, [target.nodata[b - 1] for b in bands])
    if target_mask is not None:
        mask = _align_mask(target_mask, target, folder, f"The mask '{target_mask.name}' of the target")
        values = read_decimated(mask, [1], size=(t.shape[2], t.shape[1]))[0]
        clear &= ~mask_marks(values, cloud_values, target_mask.nodata[0])
        if mask is not target_mask:
            mask.close()
    when = acquisition_date(target.name) or acquisition_date(target.path)
    for o in optical:
        passes.step(0.0, f"Guides: matching '{o.guide.name}'")
        _prepare_optical(o, target, folder, when)
        _match(o, t, clear)
    return _write_base(in_order(target, optical), target, bands, os.path.join(folder, "base.tif"),
                       block, passes)


# --------------------------------------------------------------------------- radar: power, warp, dB


def _write_power(o: _Opened, crop: Window, db: bool, noise, path: str, block: int, passes: _Passes) -> RasterInfo:
    """The guide's part over the target as linear power (Lee-filtered when asked), on the guide's own grid."""
    src, size = o.source, o.guide.speckle
    halo, gt = size // 2, src.geotransform
    crop_gt = (gt[0] + crop.col_off * gt[1] + crop.row_off * gt[2], gt[1], gt[2],
               gt[3] + crop.col_off * gt[4] + crop.row_off * gt[5], gt[4], gt[5])
    nodata = [src.nodata[b - 1] for b in o.bands]
    with RasterWriter(path, width=crop.width, height=crop.height, geotransform=crop_gt, crs_wkt=src.crs_wkt,
                      band_count=len(o.bands), dtype="float32", nodata=float("nan")) as out:
        for w in passes.blocks(crop.width, crop.height, block, f"Guides: radar '{o.guide.name}'"):
            win = Window(crop.col_off + w.col_off, crop.row_off + w.row_off, w.width, w.height)
            power = to_power(read_padded(src.dataset(), win.padded(halo), o.bands, np.float64), nodata, db)
            if size:
                power = np.stack([lee_filter(p, size, n) for p, n in zip(power, noise)])
            out.write(power[:, halo:halo + w.height, halo:halo + w.width], w.col_off, w.row_off)
    return raster_info(path, o.guide.name)


def _prepare_radar(o: _Opened, k: int, target: RasterInfo, folder: str, block: int, passes: _Passes) -> None:
    g = o.guide
    median = median_valid(o.source, o.bands) if g.radar_units == "auto" else None
    db = g.radar_units == "db" or (median is not None and median < 0)
    crop = _crop_window(o.source, target, margin=2)
    noise = noise_cv2(o.source, o.bands, db, crop, g.speckle) if g.speckle else None
    power = _write_power(o, crop, db, noise, os.path.join(folder, f"radar_power_{k}.tif"), block, passes)
    warped = grid_difference(power, target) is not None
    resampling = ("average" if _finer(o.source, target) else "bilinear") if warped else None
    o.aligned = align_to_reference([power], target, folder, resampling or "bilinear")[0]
    o.entry.update(units="db" if db else "linear", speckle=g.speckle, noise_cv2=noise, resampling=resampling)


def _radar(radar: list, target: RasterInfo, folder: str, block: int, passes: _Passes) -> RasterInfo:
    for k, o in enumerate(radar):
        _prepare_radar(o, k, target, folder, block, passes)
    names = [f"{o.guide.name} {o.source.descriptions[b - 1] or f'band {b}'}" for o in radar for b in o.bands]
    path, counts = os.path.join(folder, "radar.tif"), [0] * len(radar)
    with RasterWriter(path, like=target, band_count=len(names), dtype="float32", nodata=float("nan"),
                      descriptions=names) as out:
        for w in passes.blocks(target.width, target.height, block, "Guides: radar in dB"):
            parts = []
            for k, o in enumerate(radar):
                p = read_window(o.aligned.dataset(), w, list(range(1, len(o.bands) + 1)), np.float64)
                with np.errstate(divide="ignore", invalid="ignore"):
                    db = np.where(np.isfinite(p) & (p > 0), 10.0 * np.log10(p), np.nan)
                counts[k] += int(np.isfinite(db).all(axis=0).sum())
                parts.append(db)
            out.write(np.concatenate(parts), w.col_off, w.row_off)
        _set_coverage(radar, counts, target)
    return raster_info(path, "radar guides")


# --------------------------------------------------------------------------- other dates one by one


def open_optical(target: RasterInfo, target_bands: list, guides: list, folder: str) -> list:
    """The optical guides among ``guides`` opened, checked and put on ``target``'s grid (lazy warps into
    ``folder``, their own masks too), each with its ``entry`` (name, date, days from the target). Radar
    guides are left out. Read them with :func:`guide_pixels`; close them with :func:`close_guides`."""
    bands = [int(b) for b in target_bands]
    when = acquisition_date(target.name) or acquisition_date(target.path)
    opened = []
    try:
        for g in split_guides(guides)[0]:
            o = _open(g, target, bands)
            opened.append(o)
            _prepare_optical(o, target, folder, when)
    except BaseException:
        close_guides(opened)
        raise
    return opened


def guide_pixels(o: _Opened, window: Window) -> tuple:
    """``(values float64 (bands, rows, cols), valid (rows, cols))`` of an opened optical guide in ``window``
    of the target's grid: valid = not nodata and not marked by the guide's own mask."""
    return _optical_pixels(o, lambda info, bands: read_window(info.dataset(), window, bands, np.float64))


def close_guides(opened: list) -> None:
    for o in opened:
        for info in (o.source, o.aligned, o.mask):
            if info is not None:
                info.close()


# --------------------------------------------------------------------------- the one entry point


def prepare_guides(target: RasterInfo, target_bands: list, guides: list, folder: str, *,
                   target_mask: RasterInfo | None = None, cloud_values=(1, 2), progress: Progress = None,
                   cancelled: CancelCheck = None, block: int = 512) -> PreparedGuides:
    """Every guide prepared on ``target``'s grid, written into ``folder`` (the caller's temporary folder).

    ``target_bands``: the target's 1-based bands (the base has one band per entry). ``target_mask``
    (any grid): target pixels whose value is in ``cloud_values``, or that are nodata, are not clear
    and take no part in the colour matching. Raises :class:`InputError` naming the guide when one
    does not cover the target, cannot be warped onto it, lacks bands or is valid nowhere over it.
    """
    if not guides:
        raise InputError(f"Guided cloud removal of '{target.name}' needs at least one guide: another date of "
                         "the same place or Sentinel-1 radar.")
    bands = [int(b) for b in target_bands]
    opened = [_open(g, target, bands) for g in guides]
    optical = [o for o in opened if o.guide.kind == "optical"]
    radar = [o for o in opened if o.guide.kind == "radar"]
    passes = _Passes(progress, cancelled, len(radar) + bool(optical) + bool(radar))
    try:
        base = _base(optical, target, bands, folder, target_mask, cloud_values, block, passes) \
            if optical else None
        stack = _radar(radar, target, folder, block, passes) if radar else None
    finally:
        for o in opened:
            for info in (o.source, o.aligned, o.mask):
                if info is not None:
                    info.close()
    report(progress, 1.0, "Guides ready")
    return PreparedGuides(base=base, radar=stack, report=[o.entry for o in opened])
