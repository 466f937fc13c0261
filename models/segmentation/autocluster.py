"""autocluster: unsupervised classification of a raster whose number of classes comes from the data.

The recipe: optionally smooth every band with an edge-preserving bilateral filter (block by
block with a halo, so the result equals a whole-image filter); draw a random sample of the
valid pixels; cluster each band on its own with the K-histogram method (:mod:`.khistogram`);
combine the bands: a pixel's class is its tuple of per-band clusters, tuples with fewer than
``min_size`` pixels join the nearest larger one (distance between per-band centroids, in
units of each band's standard deviation); then classify every pixel block by block into a
uint8 class raster (classes 1 .. K in the order of their tuples, 255 = nodata) with a colour
table, and write the centroids (per band, and per class in band units) as JSON.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import numpy as np

from ..atomic import write_text
from ..errors import InputError
from ..raster import RasterInfo, RasterWriter, parse_bands, read_decimated, read_padded, valid_mask
from ..runtime import CancelCheck, Progress, check_cancelled, report
from ..windows import iter_windows
from .classes import MAX_CLASS_VALUE, NODATA_CLASS, ClassTable
from .khistogram import KHistogramSettings, cluster_band

SMOOTH_COLOUR = 0.1  # bilateral filter: sigma of values, as a fraction of the band's p2..p98 range


@dataclass(frozen=True)
class AutoclusterOptions:
    bands: tuple = ()             # 1-based; empty = every band
    significance: float = 0.001   # of the normality test
    min_size: int = 1000          # pixels of the raster a cluster (and a class) needs at least
    max_clusters: int = 8         # per band
    smooth: int = 0               # bilateral filter diameter in pixels (0 = no smoothing)
    sample: int = 200_000         # pixels drawn for the clustering
    block: int = 1024
    seed: int = 0

    def check(self) -> None:
        if not 0 < self.significance < 1:
            raise InputError(f"The significance level must lie between 0 and 1; it is {self.significance}.")
        if self.min_size < 1 or self.max_clusters < 1 or self.sample < 100 or self.smooth < 0:
            raise InputError("Autocluster settings: the minimum group size and the clusters per band must be at "
                             "least 1, the sample at least 100 pixels, the smoothing 0 or more.")


class _Reader:
    """Blocks of the chosen bands, bilateral-filtered when asked, with their validity."""

    def __init__(self, info: RasterInfo, bands: list, smooth: int):
        self.info, self.bands, self.smooth = info, bands, int(smooth)
        self.nodata = [info.nodata[b - 1] for b in bands]
        self.halo = self.smooth // 2 + 1 if self.smooth else 0
        if self.smooth:
            preview = read_decimated(info, bands, 1024)
            ok = valid_mask(preview, self.nodata)
            limits = [np.percentile(preview[c][ok], [2, 50, 98]) if ok.any() else (0, 0, 1)
                      for c in range(len(bands))]
            self.fill = [float(m) for _, m, _ in limits]
            self.sigma = [max(float(hi - lo) * SMOOTH_COLOUR, 1e-6) for lo, _, hi in limits]

    def read(self, window) -> tuple:
        grown = window.padded(self.halo)
        values = read_padded(self.info.dataset(), grown, self.bands, np.float32)
        valid = valid_mask(values, self.nodata)
        if self.smooth:
            import cv2

            for c in range(len(self.bands)):
                band = np.where(valid, values[c], np.float32(self.fill[c]))
                values[c] = cv2.bilateralFilter(band, self.smooth, self.sigma[c], self.smooth / 2.0)
        h = self.halo
        inner = (slice(None), slice(h, h + window.height), slice(h, h + window.width))
        return values[inner], valid[inner[1:]]


@dataclass
class Combination:
    """How per-band clusters combine into classes."""

    clusters: list          # BandClusters per band
    scale: np.ndarray       # per-band standard deviation of the sample
    codes: np.ndarray       # the kept cluster tuples (as flat codes), one per class, ascending
    centroids: np.ndarray   # (K, bands) mean sample value of each class

    def code_of(self, values: np.ndarray) -> np.ndarray:
        """Flat code of every pixel's tuple of per-band clusters; ``values`` (C, N)."""
        index = [cl.assign(values[c]) for c, cl in enumerate(self.clusters)]
        return np.ravel_multi_index(index, [cl.count for cl in self.clusters])

    def class_of_codes(self, codes: np.ndarray) -> np.ndarray:
        """Class index of each code: its own class, or the nearest kept tuple."""
        shape = [cl.count for cl in self.clusters]
        points = self._points(np.unravel_index(codes, shape))
        kept = self._points(np.unravel_index(self.codes, shape))
        d = ((points[:, None, :] - kept[None, :, :]) ** 2).sum(-1)
        return d.argmin(1)

    def _points(self, index: tuple) -> np.ndarray:
        cols = [np.asarray(cl.centroids)[i] / s for cl, i, s in zip(self.clusters, index, self.scale)]
        return np.stack(cols, axis=-1)


def autocluster(info: RasterInfo, output_path: str, centroids_path: str | None = None,
                options: AutoclusterOptions = AutoclusterOptions(), progress: Progress = None,
                cancelled: CancelCheck = None) -> dict:
    """Cluster the raster, write the class raster (and the centroids JSON); return the summary."""
    start = time.time()
    options.check()
    bands = parse_bands(list(options.bands), info.band_count, info.name)
    reader = _Reader(info, bands, options.smooth)
    sample, fraction = draw_sample(reader, options, cancelled)
    report(progress, 0.3, f"Autocluster: {sample.shape[1]} pixels sampled")
    min_in_sample = max(2, int(round(options.min_size * fraction)))
    settings = KHistogramSettings(options.significance, min_in_sample, options.max_clusters, seed=options.seed)
    clusters = [cluster_band(sample[c], settings) for c in range(len(bands))]
    combination = combine(sample, clusters, min_in_sample)
    table = ClassTable.from_values(range(1, len(combination.codes) + 1),
                                   [f"cluster {k}" for k in range(1, len(combination.codes) + 1)])
    report(progress, 0.4, f"Autocluster: {len(combination.codes)} classes")
    counts = write_classes(reader, combination, table, output_path, options.block, progress, cancelled)
    summary = describe(info, bands, options, combination, table, counts, time.time() - start)
    if centroids_path:
        write_text(centroids_path, json.dumps(summary, indent=1))
    report(progress, 1.0, "Autocluster: done")
    return summary


def draw_sample(reader: _Reader, options: AutoclusterOptions, cancelled: CancelCheck) -> tuple:
    """``(values (C, N), fraction)``: each valid pixel drawn with probability ``fraction``."""
    info = reader.info
    fraction = min(1.0, options.sample / float(info.width * info.height))
    rng = np.random.default_rng(options.seed)
    parts = []
    for window in iter_windows(info.width, info.height, options.block):
        check_cancelled(cancelled)
        values, valid = reader.read(window)
        pick = valid & (rng.random(valid.shape) < fraction)
        parts.append(values[:, pick].astype(np.float64))
    sample = np.concatenate(parts, axis=1)
    if sample.shape[1] < 2:
        raise InputError(f"Layer '{info.name}' holds too few valid pixels (bands {reader.bands}) to cluster.")
    return sample, fraction


def combine(sample: np.ndarray, clusters: list, min_in_sample: int) -> Combination:
    """Keep the tuples of per-band clusters holding at least ``min_in_sample`` sample pixels (at most 254)."""
    scale = np.array([max(float(v.std()), 1e-12) for v in sample])
    combination = Combination(clusters, scale, np.zeros(0, dtype=np.int64), np.zeros((0, len(clusters))))
    codes = combination.code_of(sample)
    found, counts = np.unique(codes, return_counts=True)
    keep = counts >= min_in_sample
    if not keep.any():
        keep = counts == counts.max()
    if keep.sum() > MAX_CLASS_VALUE:
        keep &= counts >= np.sort(counts[keep])[-MAX_CLASS_VALUE]
    combination.codes = found[keep][:MAX_CLASS_VALUE]
    classes = combination.class_of_codes(found)[np.searchsorted(found, codes)]
    combination.centroids = np.stack([sample[:, classes == k].mean(axis=1) if (classes == k).any()
                                      else np.full(sample.shape[0], np.nan) for k in range(len(combination.codes))])
    return combination


def write_classes(reader: _Reader, combination: Combination, table: ClassTable, path: str, block: int,
                  progress: Progress, cancelled: CancelCheck) -> np.ndarray:
    """Every pixel's class, block by block, into the uint8 class raster; the pixel count of each class."""
    info = reader.info
    values_of = table.value_lookup()
    counts = np.zeros(table.count + 1, dtype=np.int64)
    cache: dict = {}
    windows = list(iter_windows(info.width, info.height, block))
    with RasterWriter(path, like=info, band_count=1, dtype="uint8", nodata=NODATA_CLASS, descriptions=["class"],
                      protect=[info.path]) as out:
        table.apply_to_band(out.ds.GetRasterBand(1))
        for done, window in enumerate(windows, 1):
            check_cancelled(cancelled)
            values, valid = reader.read(window)
            codes = combination.code_of(values.reshape(values.shape[0], -1).astype(np.float64))
            found, inverse = np.unique(codes, return_inverse=True)
            new = [c for c in found.tolist() if c not in cache]
            if new:
                cache.update(zip(new, combination.class_of_codes(np.asarray(new)).tolist()))
            index = np.asarray([cache[c] for c in found.tolist()])[inverse].reshape(valid.shape)
            index[~valid] = table.count
            counts += np.bincount(index.ravel(), minlength=counts.size)
            out.write(values_of[index], window.col_off, window.row_off)
            report(progress, 0.4 + 0.6 * done / len(windows), None)
    return counts[:-1]


def describe(info: RasterInfo, bands: list, options: AutoclusterOptions, combination: Combination,
             table: ClassTable, counts: np.ndarray, seconds: float) -> dict:
    """The JSON summary: settings, per-band clusters, and each class's centroid and pixel count."""
    shape = [cl.count for cl in combination.clusters]
    tuples = np.stack(np.unravel_index(combination.codes, shape), axis=-1) if len(combination.codes) else []
    return {
        "layer": info.name, "bands": bands, "settings": asdict(options), "k": table.count,
        "per_band": [{"band": b, **cl.to_dict()} for b, cl in zip(bands, combination.clusters)],
        "classes": [{"value": int(v), "name": n, "colour": list(col), "band_clusters": [int(i) for i in t],
                     "centroid": [float(x) for x in c], "pixels": int(p)}
                    for v, n, col, t, c, p in zip(table.values, table.names, table.colours, tuples,
                                                  combination.centroids, counts)],
        "seconds": seconds,
    }



