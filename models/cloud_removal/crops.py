"""Training and validation crops: :class:`CropSampler` draws random windows of the training blocks,
augments them, gives them synthetic clouds (or takes the real pair) and turns them into network
input and target; it also builds the fixed validation set from the validation blocks only.

Synthetic mode: random crops of a clear raster get synthetic clouds, shadows and gaps
(:mod:`.synthetic`). Crops with more than ``max_unclear_fraction`` of not-clear pixels are
rejected. Paired mode: crops of a cloudy raster and a clear raster on one grid, with an optional
mask of the clouds in the cloudy one. Sources are drawn in proportion to their training pixels; a
raster (or block) smaller than the tile gives crops mirror-padded to the tile, as inference pads
it, whose padding is never a target (:func:`pad_to_tile`). Augmentation: random 90-degree rotations and flips
(:mod:`..augment`). Training crops never reach into a source's validation block
(:meth:`~.sources.TrainingSource.split`); validation crops come only from it.

Network space: per image (each source's own clear-pixel statistics, the target mapped with the
input's, as at inference) or, after :meth:`CropSampler.use_fixed_scaling`, one fixed map applied
to input and target alike, so the network can learn a change of brightness and colour.
Auxiliary rasters are always scaled per image; guides as :mod:`.guided` lays them out (the guide
base with the target's own map, radar with one fixed map).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ..augment import augment, random_transform
from ..errors import InputError
from ..normalization import FixedScaling
from ..windows import Window, iter_windows
from .guided import guide_channels
from .scaling import band_centres, normalize, settings
from .sources import OpenSource, TrainingSource
from .synthetic import add_synthetic_clouds, vary_band_contrast

CROP_TRIES = 50  # windows drawn per crop before the clearest one is taken


def pad_to_tile(d: dict, tile: int) -> dict:
    """A window's arrays (:meth:`~.sources.OpenSource.read`) mirror-padded to ``tile`` x ``tile`` when the
    window is smaller (a raster or block under one tile); padded pixels are not ``known`` (no target)."""
    h, w = d["valid"].shape
    if h >= tile and w >= tile:
        return d

    def pad(a, fill=None):
        widths = [(0, 0)] * (a.ndim - 2) + [(0, tile - h), (0, tile - w)]
        if fill is not None:
            return np.pad(a, widths, constant_values=fill)
        return np.pad(a, widths, mode="reflect" if min(h, w) > 1 else "edge")

    out = {k: pad(v) for k, v in d.items() if k not in ("known", "aux")}
    out["known"] = pad(d["known"], False)
    out["aux"] = [pad(a) for a in d["aux"]]
    return out


class CropSampler:
    """Draws normalised training samples and builds the fixed validation set.

    Every sample is ``(x, y, known, mask)``: network input ``(C_in, T, T)``, target
    ``(C, T, T)``, bool pixels with a known target and the mask channel (bool).
    """

    def __init__(self, sources: Sequence[TrainingSource], tile: int, *, use_mask_channel: bool = True,
                 synthetic: dict | None = None, max_unclear_fraction: float = 0.25,
                 normalization: dict | None = None, augment: bool = True):
        if not sources:
            raise InputError("No training source was given.")
        self.tile = tile
        self.normalization = settings(normalization)
        self.use_mask_channel = use_mask_channel
        self.synthetic = dict(synthetic or {})
        self.max_unclear = max_unclear_fraction
        self.augment = augment
        self.sources = []
        nb = None
        for s in sources:
            o = OpenSource(s, tile, nb, self.normalization)
            nb = len(o.bands)
            self.sources.append(o)
        self.band_count = nb
        aux_counts = {self.aux_channels(o) for o in self.sources}
        if len(aux_counts) != 1:
            raise InputError("All training sources must have the same number of auxiliary channels.")
        self.aux_count = aux_counts.pop()
        self.in_channels = nb + (1 if use_mask_channel else 0) + self.aux_count
        areas = np.array([max(0, o.t1 - o.t0) * o.width for o in self.sources], dtype=np.float64)
        if areas.sum() == 0:
            raise InputError("No training source has rows to train on (every source has role 'validation').")
        if all(o.v1 <= o.v0 for o in self.sources):
            raise InputError("No training source has a validation block (every source has role 'train').")
        self.weights = areas / areas.sum()
        self.drawn_windows = []  # (source index, window) of the training crops, for tests/benchmarks
        self.fixed = None        # FixedScaling of input and target; None = per image

    def aux_channels(self, o: OpenSource) -> int:
        """Network channels after the bands and the mask: auxiliary rasters, or the guide channels
        (base, validity, radar: :mod:`.guided`)."""
        generic = sum(len(ab) for _, ab in o.aux_infos[:len(o.aux_stats)])
        if o.guides is None:
            return generic
        return generic + len(o.bands) + 1 + o.guides.radar_bands

    def use_fixed_scaling(self, scaling: FixedScaling) -> None:
        """Map inputs and targets with ``scaling`` from now on (instead of per-image statistics)."""
        if scaling.band_count != self.band_count:
            raise InputError(f"The scaling has {scaling.band_count} band(s); the training rasters have "
                             f"{self.band_count}.")
        self.fixed = scaling

    @property
    def training_pixels(self) -> int:
        """Pixels of the training blocks of every source (an epoch passes over this many)."""
        return int(sum(max(0, o.t1 - o.t0) * o.width for o in self.sources))

    # -- assembling one sample ----------------------------------------------------------------
    def _paired_crop(self, d: dict, rng: np.random.Generator, augmented: bool) -> tuple:
        """``(clear, cloudy, valid, known, mask, aux)`` of a real cloudy/clear pair."""
        arrays = [d["clear"], d["cloudy"], d["valid"], d["known"], d["mask"]] + d["aux"]
        if augmented:
            arrays = augment(arrays, *random_transform(rng))
        return (*arrays[:5], arrays[5:])

    def _synthetic_crop(self, o: OpenSource, d: dict, rng: np.random.Generator, cloud_seed: int,
                        augmented: bool) -> tuple:
        """``(clear, cloudy, valid, known, mask, aux)`` with synthetic clouds over the clear crop."""
        arrays = [d["clear"], d["valid"], d["known"]] + d["aux"]
        if augmented:
            arrays = augment(arrays, *random_transform(rng))
        clear, valid, known = arrays[:3]
        contrast = self.synthetic.get("band_contrast")
        if augmented and contrast:
            clear = vary_band_contrast(clear, band_centres(o.stats), contrast, rng)
        cloudy, mask = add_synthetic_clouds(clear, valid, rng, self.synthetic, cloud_seed, self.tile)
        return clear, cloudy, valid, known, mask, arrays[3:]

    def _to_network(self, o: OpenSource, clear, cloudy, valid, known, mask, aux) -> tuple:
        """Network input (bands, mask channel, auxiliary channels) and target of one crop."""
        mask = mask | ~valid
        to_network = (self.fixed.to_network if self.fixed is not None else
                      (lambda a: normalize(a, o.stats, self.normalization)))
        x_img = to_network(np.asarray(cloudy, dtype=np.float64))
        y = to_network(np.asarray(clear, dtype=np.float64))
        x_img[:, ~valid] = 0.0
        # the tanh output cannot go beyond [-1, 1]; targets outside are clipped to it
        y = np.clip(y, -1.0, 1.0)
        parts = [x_img]
        if self.use_mask_channel:
            parts.append(mask[None].astype(np.float32))
        generic, base, radar = o.split_aux(aux)
        for a, st in zip(generic, o.aux_stats):
            parts.append(normalize(np.asarray(a, dtype=np.float64), st, self.normalization))
        if o.guides is not None:
            parts += guide_channels(base, radar, len(o.bands), to_network, valid.shape)
        x = np.concatenate(parts, axis=0)
        return x, y, known & valid, mask

    def _make(self, o: OpenSource, d: dict, rng: np.random.Generator, cloud_seed: int, augmented: bool) -> tuple:
        if o.src.paired:
            crop = self._paired_crop(d, rng, augmented)
        else:
            crop = self._synthetic_crop(o, d, rng, cloud_seed, augmented)
        return self._to_network(o, *crop)

    # -- training crops -----------------------------------------------------------------------
    def _draw_window(self, o: OpenSource, rng: np.random.Generator) -> Window:
        """A random window of the training block (the tile, or the whole block where it is smaller), the
        first clear enough of up to :data:`CROP_TRIES` (else the clearest)."""
        th, tw = min(self.tile, o.t1 - o.t0), min(self.tile, o.width)
        best = None
        for _ in range(CROP_TRIES):
            y0 = int(rng.integers(o.t0, o.t1 - th + 1))
            x0 = int(rng.integers(0, o.width - tw + 1))
            window = Window(x0, y0, tw, th)
            unclear = 1.0 - float(o.known(window).mean())
            if best is None or unclear < best[0]:
                best = (unclear, window)
            if unclear <= self.max_unclear:
                break
        return best[1]

    def sample(self, rng: np.random.Generator) -> tuple:
        """One training sample ``(x, y, known, mask)`` from a source drawn by its training area."""
        k = int(rng.choice(len(self.sources), p=self.weights))
        o = self.sources[k]
        window = self._draw_window(o, rng)
        self.drawn_windows.append((k, window))
        d = pad_to_tile(o.read(window), self.tile)
        return self._make(o, d, rng, int(rng.integers(2 ** 31)), self.augment)

    def batch(self, batch_size: int, rng: np.random.Generator) -> tuple:
        items = [self.sample(rng) for _ in range(batch_size)]
        return tuple(np.stack([it[i] for it in items]) for i in range(4))

    # -- validation crops ---------------------------------------------------------------------
    def whole_tiles(self, o: OpenSource) -> list:
        """Non-overlapping whole tiles of a source's validation block (the whole block where it is smaller)."""
        T = self.tile
        th, tw = min(T, o.v1 - o.v0), min(T, o.width)
        return [Window(b.col_off, o.v0 + b.row_off, tw, th) for b in iter_windows(o.width, o.v1 - o.v0, T)
                if b.width == tw and b.height == th]

    def validation_windows(self, max_tiles: int = 8) -> list:
        """``[(source index, window)]``: non-overlapping tiles of the validation blocks only."""
        cands = []
        for k, o in enumerate(self.sources):
            for w in self.whole_tiles(o):
                cands.append((1.0 - float(o.known(w).mean()), k, w))
        ok = [c for c in cands if c[0] <= self.max_unclear] or sorted(cands)[:max(1, max_tiles)]
        if len(ok) > max_tiles:
            idx = np.linspace(0, len(ok) - 1, max_tiles).round().astype(int)
            ok = [ok[i] for i in idx]
        return [(k, w) for _, k, w in ok]

    def validation_set(self, max_tiles: int = 8, seed: int = 12345, repeats: int = 1) -> tuple:
        """Fixed validation arrays (no augmentation, fixed synthetic clouds): ``(x, y, known, mask)``.

        ``repeats`` > 1 draws that many different synthetic cloud fields over every window of a
        synthetic source (validation blocks are small; more fields make the figures steadier).
        """
        rng = np.random.default_rng(seed)
        items = []
        for k, w in self.validation_windows(max_tiles):
            o = self.sources[k]
            d = pad_to_tile(o.read(w), self.tile)
            for _ in range(1 if o.src.paired else max(1, int(repeats))):
                items.append(self._make(o, d, rng, int(rng.integers(2 ** 31)), augmented=False))
        return tuple(np.stack([it[i] for it in items]) for i in range(4))

    def held_out_sets(self, max_tiles: int = 8, seed: int = 4321) -> list:
        """Per source with a validation block: ``(name, role, (x, y, known, mask))`` of up to ``max_tiles``
        whole tiles of that block, spread over it (no augmentation, fixed synthetic clouds), for the
        per-pair held-out figures."""
        rng = np.random.default_rng(seed)
        sets = []
        for o in self.sources:
            windows = self.whole_tiles(o)
            if not windows:
                continue
            if len(windows) > max_tiles:
                windows = [windows[i] for i in np.linspace(0, len(windows) - 1, max_tiles).round().astype(int)]
            items = [self._make(o, pad_to_tile(o.read(w), self.tile), rng, int(rng.integers(2 ** 31)),
                                augmented=False) for w in windows]
            sets.append((o.name, o.src.role, tuple(np.stack([it[i] for it in items]) for i in range(4))))
        return sets
