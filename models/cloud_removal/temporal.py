"""Temporal reconstruction on arrays: a cloudy pixel predicted from every other date that is clear there.

The family is regression from neighbouring pixels across dates: NSPI (Chen, Zhu et al. 2011) and
weighted linear regression gap filling (Zeng, Shen, Zhang 2013). For each guide date and band the
target is modelled around every pixel as ``t = a * g + c``:

1. :func:`local_fits`: the line is fitted by least squares on the pixels of a square window that
   are clear in the target and valid in the guide, from box sums (integral images, so the cost does
   not depend on the window). The slope is shrunk towards the scene-wide slope where the guide
   barely varies in the window (a ridge prior). Windows of every radius in ``radii`` are fitted,
   largest first, each prediction pulled towards the larger one's by ``min_pixels / (n + min_pixels)``
   (``n``: the window's common pixels), the largest towards the scene-wide line (:class:`SceneFit`):
   so a cloud's far interior gets the scene's line and nothing jumps where a window runs out of pixels.
2. Every date's prediction has a variance: the fit's residual variance plus the variance of the
   fitted line at the guide's value.
3. :func:`combine_dates`: the dates are averaged per pixel with weights ``decay(days) / variance ** 2``
   (one weight per date and pixel, shared by the bands, so spectra stay those of real dates). The
   predicted error combines the weighted variance and the spread between the dates' predictions.

Nothing here depends on where a block starts: every statistic is either local (inside a window the
caller's halo covers, see :func:`halo`) or scene-wide and computed once (:class:`SceneFit`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: expected absolute error = ERROR_SCALE x the combined standard deviation; fitted on held-out pixels of
#: sen12mscr_ts (benchmarks/multidate.py) so that 80 % of real errors lie within INTERVAL_80 x the error
ERROR_SCALE = 0.8
#: half-width of the 80 % interval in units of the predicted absolute error (1.61 for a Gaussian or a
#: Laplacian error: 1.2816 sigma over 0.7979 sigma, ln 5 b over b)
INTERVAL_80 = 1.61


@dataclass(frozen=True)
class TemporalParams:
    """How the regression is fitted and the dates weighted.

    ``radii``: half-widths of the fitting windows in pixels, smallest first. ``min_pixels``: common clear
    pixels at which a window's fit weighs as much as the larger scale's. ``ridge``: strength of the pull of the slope to the scene-wide slope,
    as a share of the guide's scene-wide variance. ``decay_days``: time constant of the weight on the
    days between a guide and the target (0: no decay; dates without a known date get weight 1).
    ``variance_power``: a date's weight goes as its predicted variance to the minus this power.
    The defaults were chosen on ``sen12mscr_ts`` (benchmarks/multidate.py, docs/multidate.md) and checked
    on ``s2_multidate_stack`` and ``landsat_timeseries``."""

    radii: tuple = (5, 15, 45)
    min_pixels: int = 60
    ridge: float = 1.0
    decay_days: float = 10.0
    variance_power: float = 2.0

    def __post_init__(self):
        object.__setattr__(self, "radii", tuple(sorted(int(r) for r in self.radii)))
        if not self.radii or self.radii[0] < 1:
            raise ValueError(f"radii must be positive pixels, not {self.radii}")


@dataclass(frozen=True)
class SceneFit:
    """The scene-wide line ``t = slope * g + intercept`` per band of one guide, its residual variance, and
    the guide's and the target's means and variances on the common pixels, fitted once on the whole
    raster (decimated), so every block sees the same values."""

    slope: np.ndarray
    intercept: np.ndarray
    guide_mean: np.ndarray
    guide_var: np.ndarray
    residual_var: np.ndarray
    pixels: int
    target_mean: np.ndarray | None = None
    target_var: np.ndarray | None = None

    @classmethod
    def fit(cls, target: np.ndarray, guide: np.ndarray, both: np.ndarray) -> "SceneFit":
        """Least squares per band on the pixels ``both`` (clear in the target, valid in the guide);
        with fewer than 2 such pixels, the identity line with the guide's own spread."""
        nb = target.shape[0]
        n = int(both.sum())
        if n < 2:
            g = guide[:, np.isfinite(guide).all(axis=0)] if guide.size else guide.reshape(nb, 0)
            var = g.var(axis=1) if g.shape[1] else np.ones(nb)
            mean = g.mean(axis=1) if g.shape[1] else np.zeros(nb)
            var = np.maximum(var, 1e-12)
            return cls(np.ones(nb), np.zeros(nb), mean, var, var, n, mean, var)
        g, t = guide[:, both].astype(np.float64), target[:, both].astype(np.float64)
        gm, tm = g.mean(axis=1), t.mean(axis=1)
        gv = np.maximum(((g - gm[:, None]) ** 2).mean(axis=1), 1e-12)
        cov = ((g - gm[:, None]) * (t - tm[:, None])).mean(axis=1)
        slope = cov / gv
        resid = t - (slope[:, None] * (g - gm[:, None]) + tm[:, None])
        tv = np.maximum(((t - tm[:, None]) ** 2).mean(axis=1), 1e-12)
        return cls(slope, tm - slope * gm, gm, gv, np.maximum((resid ** 2).mean(axis=1), 1e-12), n, tm, tv)

    def matched(self, guide: np.ndarray) -> np.ndarray:
        """The guide with the target's scene-wide mean and standard deviation per band (the matched copy)."""
        gain = np.sqrt(self.target_var / self.guide_var)[:, None, None]
        return (guide - self.guide_mean[:, None, None]) * gain + self.target_mean[:, None, None]


def halo(params: TemporalParams) -> int:
    """Pixels a block must be read beyond its edges so that its windows are complete."""
    return params.radii[-1]


class BoxSums:
    """Window sums of ``values`` (..., rows, cols) for any radius up to ``max_radius``: one integral image,
    padded with its edge values (zeros before the start, the totals past the end), so that each window sum
    is four slices. Windows are clipped at the array's edges."""

    def __init__(self, values: np.ndarray, max_radius: int):
        h, w = values.shape[-2:]
        c = np.zeros(values.shape[:-2] + (h + 1, w + 1), np.float64)
        c[..., 1:, 1:] = values.cumsum(axis=-2, dtype=np.float64).cumsum(axis=-1)
        pad = [(0, 0)] * (values.ndim - 2) + [(max_radius, max_radius)] * 2
        self.padded, self.shape, self.max_radius = np.pad(c, pad, mode="edge"), (h, w), max_radius

    def __call__(self, radius: int) -> np.ndarray:
        if not 0 <= radius <= self.max_radius:
            raise ValueError(f"radius {radius} outside 0..{self.max_radius}")
        (h, w), p = self.shape, self.padded
        e, b = self.max_radius + radius + 1, self.max_radius - radius
        return p[..., e:e + h, e:e + w] - p[..., b:b + h, e:e + w] - p[..., e:e + h, b:b + w] + p[..., b:b + h, b:b + w]


def box_sum(values: np.ndarray, radius: int) -> np.ndarray:
    """Sum of ``values`` (..., rows, cols) over the (2 radius + 1)^2 window around each pixel, clipped at
    the array's edges (:class:`BoxSums` for one radius)."""
    return BoxSums(values, radius)(radius)


@dataclass
class DatePrediction:
    """One guide date's prediction of the target: ``value`` and ``variance`` (bands, rows, cols), NaN where
    the guide is not valid or no prediction was asked for."""

    value: np.ndarray
    variance: np.ndarray


def local_fits(target: np.ndarray, clear: np.ndarray, guide: np.ndarray, valid: np.ndarray, scene: SceneFit,
               params: TemporalParams = TemporalParams(), where: np.ndarray | None = None) -> DatePrediction:
    """Predict every pixel of ``target`` (bands, rows, cols) from one ``guide`` date on the same grid.

    ``clear``: target pixels that take part in the fits; ``valid``: guide pixels that may be used (both
    for fitting and as predictors); ``where``: the pixels to predict (default: every valid one). Values
    are centred on the scene-wide guide mean before the box sums
    (numerical range); the result does not depend on that choice."""
    nb = target.shape[0]
    centre = scene.guide_mean[:, None, None]
    g = np.where(valid, guide - centre, 0.0)
    t = np.where(clear, target - (scene.slope[:, None, None] * centre + scene.intercept[:, None, None]), 0.0)
    weight = (clear & valid).astype(np.float64)
    value = np.full(target.shape, np.nan)
    variance = np.full(target.shape, np.nan)
    todo = valid.copy() if where is None else valid & where
    if not todo.any():
        return DatePrediction(value, variance)
    lam = np.broadcast_to((params.ridge * scene.guide_var)[:, None], (nb, int(todo.sum())))
    prior = scene.slope[:, None]
    x = g[:, todo]
    pred = prior * x                                         # the scene-wide line (centred units)
    var = np.broadcast_to(scene.residual_var[:, None], x.shape).copy()
    wg, wt = g * weight, t * weight
    sums = BoxSums(np.concatenate([weight[None], wg, wt, wg * g, wg * t, wt * t]), params.radii[-1])
    for r in reversed(params.radii):                         # largest window first, each shrunk to the last
        window = sums(r)
        n = window[0][todo]
        ok = n >= 2
        if not ok.any():
            continue
        sg, st, sgg, sgt, stt = (s[:, todo][:, ok] for s in window[1:].reshape(5, nb, *weight.shape))
        k = n[ok]
        mg, mt = sg / k, st / k
        vg = np.maximum(sgg / k - mg * mg, 0.0)
        cov = sgt / k - mg * mt
        vt = np.maximum(stt / k - mt * mt, 0.0)
        slope = (cov + lam[:, ok] * prior) / (vg + lam[:, ok])
        resid = np.maximum(vt - 2 * slope * cov + slope * slope * vg, 0.0)
        xo = x[:, ok]
        local = mt + slope * (xo - mg)
        local_var = resid * (1.0 + 1.0 / k + (xo - mg) ** 2 / (k * (vg + lam[:, ok])))
        alpha = k / (k + params.min_pixels)                  # trust in the window grows with its pixels
        pred[:, ok] = alpha * local + (1 - alpha) * pred[:, ok]
        var[:, ok] = alpha * local_var + (1 - alpha) * var[:, ok]
    value[:, todo], variance[:, todo] = pred, var
    base = scene.slope[:, None, None] * centre + scene.intercept[:, None, None]
    return DatePrediction(value + base, variance)


@dataclass
class Combined:
    """The dates combined: ``value`` and predicted absolute ``error`` (bands, rows, cols; NaN where no date is
    valid), and ``source`` (rows, cols): index of the date with the largest weight (-1: none)."""

    value: np.ndarray
    error: np.ndarray
    source: np.ndarray


def date_weight(prediction: DatePrediction, days, scale: np.ndarray, params: TemporalParams) -> np.ndarray:
    """Per pixel ``decay(days) / variance ** power`` (the variance averaged over bands in units of ``scale``,
    the scene-wide target variance per band); 0 where the date predicts nothing."""
    with np.errstate(invalid="ignore", divide="ignore"):
        v = (prediction.variance / scale[:, None, None]).mean(axis=0)
        decay = 1.0 if days is None or params.decay_days <= 0 else float(np.exp(-abs(days) / params.decay_days))
        w = decay / (v + 1e-6) ** params.variance_power
    return np.where(np.isfinite(w), w, 0.0)


class DateMixer:
    """The weighted average of the dates' predictions, accumulated one date at a time (memory: a few
    arrays of one block, whatever the number of dates).

    >>> mixer = DateMixer(shape, scale, params)
    >>> for k, (prediction, days) in enumerate(dates):
    ...     mixer.add(k, prediction, days)
    >>> combined = mixer.result()
    """

    def __init__(self, shape: tuple, scale: np.ndarray, params: TemporalParams = TemporalParams()):
        self.scale, self.params = np.asarray(scale, np.float64), params
        self.total = np.zeros(shape[1:])
        self.sum = np.zeros(shape)
        self.square = np.zeros(shape)
        self.variance = np.zeros(shape)
        self.best = np.zeros(shape[1:])
        self.source = np.full(shape[1:], -1, np.int32)

    def add(self, index: int, prediction: DatePrediction, days=None) -> None:
        w = date_weight(prediction, days, self.scale, self.params)
        value, variance = np.nan_to_num(prediction.value), np.nan_to_num(prediction.variance)
        self.total += w
        self.sum += w * value
        self.square += w * value * value
        self.variance += w * variance
        better = w > self.best
        self.best[better] = w[better]
        self.source[better] = index

    def result(self) -> Combined:
        none = self.total <= 0
        t = np.where(none, 1.0, self.total)
        value = self.sum / t
        between = np.maximum(self.square / t - value * value, 0.0)
        error = ERROR_SCALE * np.sqrt(self.variance / t + between)
        value[:, none] = np.nan
        error[:, none] = np.nan
        return Combined(value, error, self.source.copy())


def combine_dates(predictions: list, days: list, scale: np.ndarray,
                  params: TemporalParams = TemporalParams()) -> Combined:
    """Weighted average of the dates' predictions, the date that weighs most, and the predicted error.

    ``days``: per date the days from the target (None: unknown); ``scale``: per band the scene-wide
    target variance, which puts the bands' variances on one footing for the shared weight."""
    mixer = DateMixer(predictions[0].value.shape, scale, params)
    for k, (p, d) in enumerate(zip(predictions, days)):
        mixer.add(k, p, d)
    return mixer.result()
