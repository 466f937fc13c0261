"""The self-check: how well the reconstruction does on the analyst's own scene, where no truth exists.

The scene provides one. In a few chips of the target that are mostly clear, real cloud shapes are
laid over clear pixels: the mask of another date (a guide's own mask) or the target's own mask,
moved by a random offset. Those pixels are hidden, reconstructed with the same method, guides and
scene-wide statistics as the run itself (:func:`.dates.predict_block`), and compared with
their real values, beside the matched copy of the nearest date.

The hidden shapes are not the scene's clouds: under the real clouds the nearest dates may be cloudy
too and clear pixels farther away. So the hidden pixels are weighed by how hard they are, read from
the predicted error (relative to the scene's spread, bins :data:`DIFFICULTY_BINS`), to match the
distribution of the real cloudy pixels (the main pass counts it:
:func:`.reconstruct.write_outputs`). Figures carry a bootstrap interval over cells of
pixels (neighbouring pixels are not independent, cells roughly are). The figures come from a
separate pass: the outputs are never changed by it. The cost is a few blocks of the raster.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ..metrics import SSIM_RADIUS, psnr_from_mse, spectral_angles, ssim_map_interior
from ..raster import RasterInfo
from ..runtime import CancelCheck, Progress, check_cancelled, report
from ..windows import Window
from .dates import predict_block, read_block
from .temporal import INTERVAL_80, TemporalParams

#: edges of the bins of predicted relative error (predicted absolute error over the scene's spread, mean
#: over bands) by which hidden pixels are weighed to match the real cloudy pixels
DIFFICULTY_BINS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45, 0.7, 1.0)


@dataclass(frozen=True)
class SelfCheckOptions:
    """``chips``: at most this many chips of ``chip`` pixels a side; ``cover``: the share of a chip's clear
    pixels a laid shape should hide (accepted between half and twice it); ``cell``: the bootstrap cell in
    pixels; ``resamples``: bootstrap draws; ``data_range``: the PSNR data range in the input's units (None:
    reflectance range 1, i.e. 10000 for digital numbers, read as values whose median exceeds 2)."""

    chips: int = 4
    chip: int = 256
    cover: float = 0.25
    cell: int = 16
    resamples: int = 200
    seed: int = 0
    data_range: float | None = None
    move: int = 64
    own_only: bool = True


@dataclass
class _Shapes:
    """Where cloud shapes come from: the guides' own masks and the target's mask, on the target's grid."""

    readers: list
    names: list

    def candidate(self, rng: np.random.Generator, window: Window, width: int, height: int, move: int):
        """A real cloud shape for ``window``: a mask read at a random offset of at most ``move`` pixels
        (wrapping inside the raster)."""
        k = int(rng.integers(len(self.readers)))
        dx, dy = (int(rng.integers(-move, move + 1)) for _ in range(2)) if move else (0, 0)
        cols = (np.arange(window.col_off, window.col_off + window.width) + dx) % width
        rows = (np.arange(window.row_off, window.row_off + window.height) + dy) % height
        return self.readers[k](rows, cols), self.names[k]


def _mask_reader(read_full):
    cache = {}

    def read(rows, cols):
        if "all" not in cache:
            cache["all"] = read_full()
        return cache["all"][np.ix_(rows, cols)]
    return read


def shape_sources(target, dates: list, own_only: bool = False) -> _Shapes:
    """Readers of every real cloud mask at hand (the guides' own masks, the target's): each read once,
    whole, as a boolean array (masks are one byte a pixel; the check runs on a few chips only)."""
    from ..raster import read_window

    info = target.info
    full = Window(0, 0, info.width, info.height)
    readers, names = [], []
    for d in (dates if not own_only else []):
        if d.mask is not None:
            readers.append(_mask_reader(lambda d=d: np.isin(
                read_window(d.mask.dataset(), full, [1], np.float64)[0], [float(v) for v in d.guide.mask_values])))
            names.append(f"the mask of '{d.guide.name}'")
    readers.append(_mask_reader(lambda: np.isin(read_window(target.mask.dataset(), full, [1], np.float64)[0],
                                                np.asarray(target.mask_values, np.float64))))
    names.append("the target's own mask")
    return _Shapes(readers, names)


def _chip_windows(info: RasterInfo, options: SelfCheckOptions, rng) -> list:
    size = min(options.chip, info.width, info.height)
    nx, ny = max(1, info.width // size), max(1, info.height // size)
    cells = [Window(x * size, y * size, size, size) for y in range(ny) for x in range(nx)]
    order = rng.permutation(len(cells))
    return [cells[i] for i in order]


def _lay(block, shapes: _Shapes, info: RasterInfo, options: SelfCheckOptions, rng) -> tuple:
    """A shape over the padded block that hides about ``options.cover`` of its clear pixels, or (None, '')."""
    clear = block.valid & ~block.cloudy
    seen = np.zeros_like(clear)
    for inputs in block.guides:
        if inputs is not None:
            seen |= inputs[1]
    usable = clear & seen
    if usable.sum() < 0.1 * usable.size:
        return None, ""
    for _ in range(24):
        shape, name = shapes.candidate(rng, block.window, info.width, info.height, options.move)
        laid = shape & usable
        share = laid.sum() / max(usable.sum(), 1)
        if (0.05 <= share <= 0.95) if options.own_only else (options.cover / 2 <= share <= min(2 * options.cover, 0.9)):
            return laid, name
    return None, ""


def _data_range(options: SelfCheckOptions, values: np.ndarray) -> float:
    if options.data_range:
        return float(options.data_range)
    return 10000.0 if np.nanmedian(values) > 2 else 1.0


def difficulty_bin(error: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """The bin (0 .. len(DIFFICULTY_BINS) - 1) of each pixel's predicted error (bands, ...) over ``spread``."""
    rel = np.nan_to_num((error / spread.reshape((-1,) + (1,) * (error.ndim - 1))).mean(axis=0), nan=1e9)
    return np.clip(np.searchsorted(np.asarray(DIFFICULTY_BINS[1:]), rel, side="right"), 0, len(DIFFICULTY_BINS) - 1)


def bin_counts(error: np.ndarray, spread: np.ndarray) -> np.ndarray:
    """How many pixels of ``error`` (bands, pixels) fall in each difficulty bin."""
    return np.bincount(difficulty_bin(error, spread).ravel(), minlength=len(DIFFICULTY_BINS))


@dataclass
class _Cells:
    """Per bootstrap cell, method and difficulty bin: squared-error, SSIM and angle sums and pixel counts."""

    sq: list
    ssim: list
    sam: list
    n: list

    def add(self, sq, ssim, sam, n):
        self.sq.append(sq)
        self.ssim.append(ssim)
        self.sam.append(sam)
        self.n.append(n)


def _score_chip(pred: np.ndarray, truth: np.ndarray, laid: np.ndarray, bins: np.ndarray, data_range: float,
                cell: int, cells: _Cells) -> None:
    """Add the chip's cells: ``pred`` is the reconstruction with every other pixel equal to ``truth``."""
    h = SSIM_RADIUS
    pads = ((0, 0), (h, h), (h, h))
    a, b = np.pad(pred, pads, mode="symmetric"), np.pad(truth, pads, mode="symmetric")
    ssim = np.mean([ssim_map_interior(a[c], b[c], data_range, h) for c in range(pred.shape[0])], axis=0)
    sq = ((pred - truth) ** 2).mean(axis=0)
    angles = np.zeros(laid.shape)
    if pred.shape[0] > 1:
        ang, ok = spectral_angles(pred[:, laid], truth[:, laid])
        angles[laid] = np.where(ok, ang, 0.0)
    rows, cols = laid.shape
    nbins = len(DIFFICULTY_BINS)
    for y in range(0, rows, cell):
        for x in range(0, cols, cell):
            part = (slice(y, y + cell), slice(x, x + cell))
            m = laid[part]
            if m.any():
                b = bins[part][m]
                cells.add(*(np.bincount(b, weights=v[part][m], minlength=nbins) for v in (sq, ssim, angles)),
                          np.bincount(b, minlength=nbins))


def _bin_weights(present: np.ndarray, real: np.ndarray) -> np.ndarray:
    """The real difficulty distribution moved onto the bins the hidden pixels reach: the mass of a bin never
    hidden goes to the nearest bin below that was (or above, when none below was)."""
    w = np.zeros(len(real))
    idx = np.flatnonzero(present)
    for b, p in enumerate(real):
        below = idx[idx <= b]
        w[below[-1] if len(below) else idx[0]] += p
    return w


def _figures(cells: _Cells, data_range: float, options: SelfCheckOptions, rng, real: np.ndarray) -> dict:
    sq, ss, sa, n = (np.asarray(v, np.float64) for v in (cells.sq, cells.ssim, cells.sam, cells.n))

    def stats(idx):
        counts = n[idx].sum(axis=0)
        present = counts > 0
        w = _bin_weights(present, real) if real.sum() else counts / counts.sum()
        per = [np.divide(v[idx].sum(axis=0), counts, out=np.zeros(len(counts)), where=present) for v in (sq, ss, sa)]
        mse, ssim, sam = (float((w * p).sum() / w.sum()) for p in per)
        return psnr_from_mse(mse, data_range), ssim, sam

    best = stats(np.arange(len(n)))
    draws = np.array([stats(rng.integers(len(n), size=len(n))) for _ in range(options.resamples)])
    lo, hi = np.percentile(draws, [5, 95], axis=0)
    return {"psnr": best[0], "psnr_interval": [float(lo[0]), float(hi[0])], "ssim": best[1],
            "ssim_interval": [float(lo[1]), float(hi[1])], "sam": best[2], "sam_interval": [float(lo[2]), float(hi[2])]}


def nearest_copy(block, scene, cloudy: np.ndarray) -> np.ndarray:
    """The matched copy on a block: per pixel the nearest-in-time valid date, scene-wide colour matching."""
    out = np.full(block.target.shape, np.nan)
    order = sorted(range(len(block.guides)), key=lambda k: (scene.days[k] is None, scene.days[k] or 0))
    for k in order:
        inputs = block.guides[k]
        if inputs is None:
            continue
        g, ok = inputs
        take = cloudy & ok & np.isnan(out[0])
        if take.any():
            out[:, take] = scene.fits[k].matched(g)[:, take]
    return out


def check_scene(target, scene, options: SelfCheckOptions, params: TemporalParams, real: np.ndarray,
                progress: Progress = None, cancelled: CancelCheck = None) -> dict:
    """The self-check on an opened target and its scene statistics (:mod:`.dates`); ``real``: the real
    cloudy pixels' shares per difficulty bin. Returns per method (``temporal``, ``matched_copy``) PSNR / SSIM
    / SAM over the hidden pixels with 90 % bootstrap intervals, the calibration of the predicted error there,
    the shapes used and the cost (or ``skipped`` and why)."""
    started, cpu = time.perf_counter(), time.process_time()
    rng = np.random.default_rng(options.seed)
    info = target.info
    shapes = shape_sources(target, scene.dates, options.own_only)
    real = np.asarray(real, float)
    methods = {"temporal": _Cells([], [], [], []), "matched_copy": _Cells([], [], [], [])}
    used, names, pixels, errors, predicted, data_range = 0, set(), 0, [], [], None
    windows = _chip_windows(info, options, rng)
    for attempt in range(4 * options.chips):
        if used >= options.chips:
            break
        w = windows[attempt % len(windows)]
        check_cancelled(cancelled)
        block = read_block(target, scene, w, params)
        laid, name = _lay(block, shapes, info, options, rng)
        if laid is None:
            continue
        r, c = block.inner
        inner = laid[r, c]
        if not inner.any():
            continue
        hidden = block.cloudy | laid
        truth = block.target[:, r, c]
        data_range = data_range or _data_range(options, truth)
        combined = predict_block(block, scene, params, cloudy=hidden)
        bins = difficulty_bin(combined.error[:, r, c], scene.spread)
        for key, value in (("temporal", combined.value), ("matched_copy", nearest_copy(block, scene, hidden))):
            v = value[:, r, c]
            ok = inner & np.isfinite(v).all(axis=0)
            pred = np.where(ok[None], v, truth)
            _score_chip(pred, truth, ok, bins, data_range, options.cell, methods[key])
            if key == "temporal":
                errors.append(np.abs(v - truth)[:, ok].ravel())
                predicted.append(combined.error[:, r, c][:, ok].ravel())
        used, pixels = used + 1, pixels + int(inner.sum())
        names.add(name)
        report(progress, used / options.chips, "Self-check")
    if not used:
        return {"skipped": f"no part of '{info.name}' is clear enough to hide real cloud shapes in (a chip needs "
                           "10 % of its pixels clear and seen by a guide)", "seconds": time.perf_counter() - started}
    out = {key: _figures(cells, data_range, options, rng, real) for key, cells in methods.items()}
    err, pred = np.concatenate(errors), np.concatenate(predicted)
    from scipy.stats import spearmanr

    out.update(chips=used, pixels=pixels, shapes=sorted(names), data_range=data_range,
               real_difficulty_shares=real.tolist(), difficulty_bins=list(DIFFICULTY_BINS),
               error={"coverage80": float((err <= INTERVAL_80 * pred).mean()),
                      "spearman": float(spearmanr(pred, err).correlation) if len(err) > 2 else None},
               seconds=time.perf_counter() - started, cpu_seconds=time.process_time() - cpu)
    return out
