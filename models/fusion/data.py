"""Training data: the series held in memory, synthetic cloudy copies of a date, and the batches of each supervision.

``self`` supervision: synthetic clouds and gaps (:func:`clouds.simulate_clouds_array`) on K
copies of a clear date; the fused image must match the clear date. ``weak`` supervision: K
real dates near each other and the land-cover labels of the same crop. The bottom
``holdout_rows`` rows of every raster are never used for training (validation block) and
``holdout_dates`` are never used as clean targets.
"""

from __future__ import annotations

import numpy as np

from ..augment import augment, random_transform
from ..errors import InputError
from ..grids import check_same_grid
from ..raster import parse_bands, raster_info, read_window, valid_mask
from ..windows import Window
from .config import FusionTrainConfig
from .scaling import band_statistics, to_network_space

IGNORED_INDEX = -100  # label index the cross-entropy ignores (no data, ignored classes, unknown values)


def _read_whole(info, bands, dtype=np.float32) -> np.ndarray:
    return read_window(info.dataset(), Window(0, 0, info.width, info.height), bands, dtype=dtype)


class SeriesData:
    """A co-registered time series held in memory (small rasters; training only).

    ``dates`` (K, C, H, W) float32, ``valid`` and ``cloud`` (K, H, W), ``labels`` (H, W) or None;
    ``clear_dates``: dates without a cloud flag or nodata pixel (or ``cfg.clear_dates``),
    ``train_clear``: those that are not held out; ``stats``: normalisation statistics of the
    training rows; ``norm_dates``: the dates in network space; ``class_values``,
    ``class_weights`` and ``label_index`` (labels as class indices) for weak supervision.
    """

    def __init__(self, cfg: FusionTrainConfig):
        infos = [raster_info(p) for p in cfg.dates]
        masks = [raster_info(p) for p in cfg.masks] if cfg.masks else None
        label_info = raster_info(cfg.labels) if cfg.labels else None
        check_same_grid(infos + (masks or []) + ([label_info] if label_info else []))
        self._read(cfg, infos, masks, label_info)
        K, C, H, W = self.dates.shape
        self.H, self.W = H, W
        self.train_rows = H - int(cfg.holdout_rows)
        if self.train_rows < cfg.tile or W < cfg.tile:
            raise InputError(f"Layer '{infos[0].name}' is {W} x {H} px: training tiles of {cfg.tile} px need at least "
                             f"{cfg.tile} columns and {cfg.tile} rows besides the {cfg.holdout_rows} held-out rows; "
                             "choose a smaller tile size.")
        if cfg.clear_dates is not None:
            self.clear_dates = list(cfg.clear_dates)
        else:
            self.clear_dates = [k for k in range(K) if not self.cloud[k].any() and self.valid[k].all()]
        self.train_clear = [k for k in self.clear_dates if k not in set(cfg.holdout_dates)]
        tr = slice(0, self.train_rows)
        allowed = self.valid[:, tr] & ~self.cloud[:, tr]
        self.stats = band_statistics(self.dates[:, :, tr], allowed)
        self.norm_dates = to_network_space(np.where(self.valid[:, None], self.dates, np.nan), self.stats)
        self.class_values, self.class_weights, self.label_index = [], [], None
        if self.labels is not None:
            self._classes(cfg)

    def _read(self, cfg: FusionTrainConfig, infos: list, masks: list | None, label_info) -> None:
        ref = infos[0]
        self.bands = parse_bands(cfg.bands, ref.band_count, ref.name)
        for info in infos[1:]:
            parse_bands(self.bands, info.band_count, info.name)
        self.dates = np.stack([_read_whole(i, self.bands) for i in infos]).astype(np.float32)
        self.valid = np.stack([valid_mask(d, [i.nodata[b - 1] for b in self.bands])
                               for d, i in zip(self.dates, infos)])
        if masks:
            self.cloud = np.stack([np.isin(_read_whole(m, [1], dtype=None)[0], cfg.mask_values) for m in masks])
        else:
            self.cloud = np.zeros(self.valid.shape, dtype=bool)
        self.labels = None
        if label_info is not None:
            self.labels = _read_whole(label_info, [1], dtype=None)[0].astype(np.int64)

    def _classes(self, cfg: FusionTrainConfig) -> None:
        """Classes of the training rows, their weights (median frequency / frequency unless given), label indices."""
        vals, counts = np.unique(self.labels[:self.train_rows], return_counts=True)
        keep = [(v, c) for v, c in zip(vals, counts) if v not in set(cfg.ignore_labels)]
        if not keep:  # nothing to learn from: weak supervision refuses such labels (train.py)
            self.label_index = np.full(self.labels.shape, IGNORED_INDEX, dtype=np.int64)
            return
        self.class_values = [int(v) for v, _ in keep]
        freq = np.array([c for _, c in keep], dtype=np.float64)
        freq /= freq.sum()
        self.class_weights = (np.median(freq) / freq).tolist()
        for i, v in enumerate(self.class_values):  # the analyst's weights win over the automatic ones
            if cfg.class_weights and str(v) in {str(k) for k in cfg.class_weights}:
                self.class_weights[i] = float({str(k): w for k, w in cfg.class_weights.items()}[str(v)])
        lut = {v: i for i, v in enumerate(self.class_values)}
        self.label_index = np.vectorize(lambda v: lut.get(int(v), IGNORED_INDEX))(self.labels).astype(np.int64)


def cloud_copies(clean: np.ndarray, K: int, rng, cfg: FusionTrainConfig) -> tuple:
    """K copies of ``clean`` (C, h, w) with synthetic clouds and gaps: ``(copies (K, C, h, w) NaN in gaps, valid, cloud)``."""
    from ..clouds import CloudParams, simulate_clouds_array

    C = clean.shape[0]
    out = np.empty((K,) + clean.shape, dtype=np.float32)
    cloud = np.zeros((K,) + clean.shape[1:], dtype=bool)
    for k in range(K):
        p = CloudParams(seed=int(rng.integers(0, 2 ** 31)), coverage=float(rng.uniform(*cfg.coverage)),
                        thickness=float(rng.uniform(0.4, 1.0)), shadows=bool(cfg.shadows),
                        missing_data=float(rng.uniform(*cfg.missing)), scale=float(rng.uniform(*cfg.cloud_scale)))
        colour = None
        if cfg.cloud_value is not None:
            colour = np.full(C, rng.uniform(*cfg.cloud_value), dtype=np.float32)
        img, m = simulate_clouds_array(clean, p, cloud_colour=colour)
        out[k] = img
        cloud[k] = m > 0
    valid = np.isfinite(out).all(axis=1)
    return out, valid, cloud


def self_supervised_batch(data: SeriesData, cfg: FusionTrainConfig, K: int, rng) -> tuple:
    """``(xn (B, K, C, t, t), valid (B, K, t, t), target_n (B, C, t, t))``: cloudy copies of clear training crops."""
    tile = cfg.tile
    xs, vs, ts = [], [], []
    for _ in range(cfg.batch_size):
        d = data.train_clear[int(rng.integers(len(data.train_clear)))]
        y = int(rng.integers(0, data.train_rows - tile + 1))
        x = int(rng.integers(0, data.W - tile + 1))
        clean = data.dates[d, :, y:y + tile, x:x + tile]
        copies, valid, _ = cloud_copies(clean, K, rng, cfg)
        copies, valid, clean = augment([copies, valid, clean], *random_transform(rng))
        xs.append(to_network_space(np.where(valid[:, None], copies, np.nan), data.stats))
        vs.append(valid)
        ts.append(to_network_space(clean[None], data.stats)[0])
    return np.stack(xs), np.stack(vs), np.stack(ts)


def weak_batch(data: SeriesData, cfg: FusionTrainConfig, K: int, rng) -> tuple:
    """``(xn (B, K, C, t, t), valid (B, K, t, t), label index (B, t, t))``: K real dates among neighbours.

    The dates of a sample are drawn among ``weak_window`` consecutive dates (at least K); a
    series shorter than K gives all its dates.
    """
    tile = cfg.tile
    N = data.dates.shape[0]
    K = min(K, N)
    span = max(cfg.weak_window, K)
    xs, vs, ls = [], [], []
    for _ in range(cfg.batch_size):
        centre = int(rng.integers(N))
        lo = max(0, min(centre - cfg.weak_window // 2, N - span))
        pool = np.arange(lo, min(N, lo + span))
        idx = np.sort(rng.choice(pool, size=K, replace=False))
        y = int(rng.integers(0, data.train_rows - tile + 1))
        x = int(rng.integers(0, data.W - tile + 1))
        xn = data.norm_dates[idx, :, y:y + tile, x:x + tile]
        v = data.valid[idx, y:y + tile, x:x + tile]
        lab = data.label_index[y:y + tile, x:x + tile]
        xn, v, lab = augment([xn, v, lab], *random_transform(rng))
        xs.append(xn)
        vs.append(v)
        ls.append(lab)
    return np.stack(xs), np.stack(vs), np.stack(ls)
