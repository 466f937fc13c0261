"""Synthetic clouds, cloud shadows and data gaps, for training and testing cloud removal.

How it works, in one paragraph: a :class:`CloudField` is a deterministic function of pixel
position. Its cloud density is multi-octave gradient ("Perlin") noise whose lattice
gradients come from an integer hash of (lattice x, lattice y, octave, seed), so any window
can be computed on its own and gives exactly the values of the whole raster there. The
cloud label is ``noise > t``; ``t`` is a quantile of the noise sampled on a fixed coarse
grid over the whole raster, so the labelled fraction is about ``coverage``. Opacity
(``alpha``) rises smoothly from 0 at ``t`` to its maximum at a higher quantile, giving soft
edges and opaque cores. Shadows are the cloud field shifted by a seed-dependent offset (a
stand-in for the sun direction); gaps are an oblique wedge from an image edge (a
Sentinel-2 orbit edge) and/or tilted stripes (Landsat 7 SLC-off), calibrated the same
way. :func:`apply_clouds` blends a block towards a bright cloud colour taken from the
image's own statistics, so it works on reflectance and on digital numbers alike.

Mask values: 0 clear, 1 cloud, 2 cloud shadow, 3 missing data (priority 3 > 1 > 2).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import InputError
from .noise import fbm, make_octaves
from .raster import RasterInfo, RasterWriter, parse_bands, read_decimated, read_window, valid_mask
from .runtime import CancelCheck, Progress, check_cancelled, report
from .windows import iter_windows

CLEAR, CLOUD, SHADOW, MISSING = 0, 1, 2, 3
MASK_LABELS = ("clear", "cloud", "cloud shadow", "missing data")

# Colour statistics are taken from at most this many pixels per axis (a decimated read).
COLOUR_SAMPLE = 1024
# The noise quantiles that calibrate coverage come from at most this many points per axis.
CALIBRATION_POINTS = 128
TEXTURE_AMPLITUDE = 0.06

# --------------------------------------------------------------------------- parameters


@dataclass(frozen=True)
class CloudParams:
    """What to simulate. Fractions are of all pixels of the raster."""

    seed: int = 0
    coverage: float = 0.3       # fraction of pixels labelled cloud (mask == 1)
    thickness: float = 0.7      # 0 thin and translucent everywhere, 1 opaque cores
    shadows: bool = True
    missing_data: float = 0.0   # fraction of pixels turned into nodata gaps (mask == 3)
    scale: float | None = None  # typical cloud size in pixels; None: min(width, height) / 4, in 32..512

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InputError` with an analyst-readable message for bad values."""
        def fraction(name: str, value, meaning: str) -> None:
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise InputError(f"Cloud {name} must be a number between 0 and 1 ({meaning}); got {value!r}.") from None
            if not (0.0 <= v <= 1.0):  # also rejects NaN
                raise InputError(f"Cloud {name} must be between 0 and 1 ({meaning}); got {value!r}.")

        fraction("coverage", self.coverage, "the fraction of pixels to cover with clouds, e.g. 0.3 for 30 %")
        fraction("thickness", self.thickness, "0 thin and translucent, 1 opaque cores")
        fraction("missing data", self.missing_data, "the fraction of pixels to turn into nodata gaps")
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)):
            raise InputError(f"Cloud seed must be a whole number; got {self.seed!r}.")
        if self.scale is not None:
            try:
                s = float(self.scale)
            except (TypeError, ValueError):
                raise InputError(f"Cloud scale must be a size in pixels; got {self.scale!r}.") from None
            if not (math.isfinite(s) and s >= 4):
                raise InputError(f"Cloud scale is the typical cloud size in pixels and must be at least 4; got {self.scale!r}.")


def default_scale(width: int, height: int) -> float:
    """Typical cloud size when none is given: a quarter of the shorter side, within 32..512 pixels."""
    return float(min(max(min(width, height) / 4.0, 32.0), 512.0))


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _pixel_centres(start: int, count: int) -> np.ndarray:
    return np.arange(start, start + count, dtype=np.float64) + 0.5


# --------------------------------------------------------------------------- the field


class CloudField:
    """Deterministic cloud/shadow/gap field for a raster of width x height, evaluable on any window.

    The field depends only on ``params`` and the raster size, never on the pixels, so the
    same field can be applied to a whole array in memory or to a raster block by block.
    """

    def __init__(self, params: CloudParams, width: int, height: int):
        params.validate()
        if int(width) < 1 or int(height) < 1:
            raise InputError(f"Cannot simulate clouds on an empty raster ({width}x{height} pixels).")
        self.params = params
        self.width, self.height = int(width), int(height)
        self.scale = float(params.scale) if params.scale is not None else default_scale(self.width, self.height)
        seed = int(params.seed)
        rng = np.random.default_rng(np.random.SeedSequence([0xC10D, seed % (1 << 64), int(seed < 0)]))

        count = max(1, min(8, int(math.floor(math.log2(self.scale / 2.0))) + 1))
        self._octaves = make_octaves(rng, seed, 1, self.scale, count, 0.5)
        tex_spacing = max(2.0, self.scale / 24.0)
        self._texture_octaves = make_octaves(rng, seed, 2, tex_spacing, 2, 0.5)

        thickness = float(params.thickness)
        self.max_alpha = 0.3 + 0.7 * thickness
        # share of the cloud area at full opacity: thin clouds are nearly all soft edge
        self.core_share = 0.08 + 0.42 * thickness

        # shadow offset of a fifth to a third of the cloud size: "a few percent" would hide
        # the shadow under its own cloud; integer so a shadow window is a slice of the noise
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        length = float(rng.uniform(0.2, 0.35)) * self.scale
        self.shadow_offset = (int(round(length * math.cos(angle))), int(round(length * math.sin(angle))))
        ground_factor = float(rng.uniform(0.4, 0.7))  # ground under a full shadow keeps 40-70 %
        self.shadow_strength = (1.0 - ground_factor) * (0.4 + 0.6 * thickness) if params.shadows else 0.0

        self._sample = None
        self._init_gaps(rng, float(params.missing_data))
        self._calibrate(float(params.coverage))
        self._sample = None  # only needed for calibration

    # ----------------------------------------------------------------- calibration

    def _sample_points(self) -> tuple:
        """Stratified, deterministic pixel centres over the whole raster (jittered in each cell)."""
        if getattr(self, "_sample", None) is not None:
            return self._sample
        step = max(1, math.ceil(max(self.width, self.height) / CALIBRATION_POINTS))
        gx = np.arange(0, self.width, step)
        gy = np.arange(0, self.height, step)
        jit = np.random.default_rng(np.random.SeedSequence([0x5A4D, self.width, self.height, step]))
        x = gx[None, :] + jit.integers(0, step, size=(gy.size, gx.size))
        y = gy[:, None] + jit.integers(0, step, size=(gy.size, gx.size))
        x = np.minimum(x, self.width - 1).astype(np.float64) + 0.5
        y = np.minimum(y, self.height - 1).astype(np.float64) + 0.5
        self._sample = (x, y)
        return self._sample

    def _calibrate(self, coverage: float) -> None:
        x, y = self._sample_points()
        missing = self._gaps(x, y)
        noise = fbm(self._octaves, x, y)[~missing]
        self.sample_missing_fraction = float(missing.mean())
        if coverage <= 0.0 or noise.size == 0:
            self.threshold, self.core_threshold = math.inf, math.inf
            return
        # gaps take priority over clouds, so aim for coverage among the pixels gaps leave
        target = min(1.0, coverage / max(1e-9, 1.0 - self.sample_missing_fraction))
        if target >= 1.0:
            # below the lowest value gradient noise can take (|octave| <= sqrt(2)/2): all cloud
            self.threshold = -0.7072 * sum(o.amplitude for o in self._octaves) - 1e-3
        else:
            self.threshold = float(np.quantile(noise, 1.0 - target))
        core = float(np.quantile(noise, 1.0 - target * self.core_share))
        spread = float(np.quantile(noise, 0.99) - np.quantile(noise, 0.01))
        self.core_threshold = max(core, self.threshold + 0.05 * max(spread, 1e-6))

    # ----------------------------------------------------------------- gaps

    def _init_gaps(self, rng: np.random.Generator, fraction: float) -> None:
        self.missing_fraction = fraction
        kind = ("wedge", "stripes", "both")[int(rng.choice(3, p=(0.4, 0.3, 0.3)))]
        self.gap_kind = kind if fraction > 0.0 else "none"
        # wedge: half-plane beyond an oblique line near a left or right edge, like an orbit edge
        side = 0.0 if rng.uniform() < 0.5 else math.pi
        tilt = math.radians(float(rng.uniform(12.0, 35.0))) * (1.0 if rng.uniform() < 0.5 else -1.0)
        self._wedge_dir = (math.cos(side + tilt), math.sin(side + tilt))
        # stripes: nearly horizontal scan-line gaps, widening away from the scene centre line
        beta = math.radians(float(rng.uniform(-12.0, 12.0)))
        self._stripe_dir = (math.cos(beta), math.sin(beta))
        self._stripe_period = max(6.0, round(self.scale / 5.0))
        self._stripe_phase = float(rng.uniform(0.0, 1.0))
        self._wedge_share = float(rng.uniform(0.3, 0.7)) if kind == "both" else (1.0 if kind == "wedge" else 0.0)
        self._wedge_cut = math.inf
        self._stripe_cut = -math.inf
        if fraction <= 0.0:
            return
        x, y = self._sample_points()
        wedge, stripe = self._wedge_score(x, y), self._stripe_score(x, y)
        in_wedge = np.zeros(x.shape, dtype=bool)
        if self._wedge_share > 0.0:
            fw = fraction * self._wedge_share
            self._wedge_cut = -math.inf if fw >= 1.0 else float(np.quantile(wedge, 1.0 - fw))
            in_wedge = wedge >= self._wedge_cut
        rest = fraction - float(in_wedge.mean())
        if self._wedge_share < 1.0 and rest > 0.0:
            outside = stripe[~in_wedge]
            if outside.size:
                target = min(1.0, rest / max(1e-9, 1.0 - float(in_wedge.mean())))
                self._stripe_cut = math.inf if target >= 1.0 else float(np.quantile(outside, target))

    def _wedge_score(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        cx, cy = self._wedge_dir
        return (x - 0.5 * self.width) * cx + (y - 0.5 * self.height) * cy

    def _stripe_score(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        c, s = self._stripe_dir
        along = (x - 0.5 * self.width) * c + (y - 0.5 * self.height) * s
        across = (y - 0.5 * self.height) * c - (x - 0.5 * self.width) * s
        phase = across * (1.0 / self._stripe_period) + self._stripe_phase
        phase = phase - np.floor(phase)
        # SLC-off gaps are narrow at the centre of the scene and widen towards its sides
        width = 0.25 + np.abs(along) * (2.0 / max(self.width, self.height))
        return phase / width

    def _gaps(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        shape = np.broadcast(x, y).shape
        if self.missing_fraction <= 0.0:
            return np.zeros(shape, dtype=bool)
        if self.missing_fraction >= 1.0:
            return np.ones(shape, dtype=bool)
        out = np.zeros(shape, dtype=bool)
        if self._wedge_share > 0.0:
            out |= self._wedge_score(x, y) >= self._wedge_cut
        if self._wedge_share < 1.0:
            out |= self._stripe_score(x, y) < self._stripe_cut
        return out

    # ----------------------------------------------------------------- evaluation

    def _alpha_from_noise(self, noise: np.ndarray) -> np.ndarray:
        if not math.isfinite(self.threshold):
            return np.zeros(noise.shape, dtype=np.float64)
        ramp = _smoothstep((noise - self.threshold) * (1.0 / (self.core_threshold - self.threshold)))
        return np.where(noise > self.threshold, ramp * self.max_alpha, 0.0)

    def window(self, x0: int, y0: int, w: int, h: int) -> tuple:
        """``(alpha, shadow, missing)`` of the window at pixel (x0, y0), each (h, w).

        ``alpha`` float32 cloud opacity 0..1 (> 0 exactly where the pixel is labelled cloud);
        ``shadow`` float32 0..1, the fraction of ground brightness the shadow removes;
        ``missing`` bool, the data gaps.
        """
        x0, y0, w, h = int(x0), int(y0), int(w), int(h)
        if w < 0 or h < 0:
            raise ValueError(f"window size must not be negative, got {w}x{h}")
        dx, dy = self.shadow_offset if self.shadow_strength > 0.0 else (0, 0)
        # the shadow at p is cast by the cloud at p - offset: evaluate one window covering both
        ex0, ey0 = x0 - max(dx, 0), y0 - max(dy, 0)
        ew, eh = w + abs(dx), h + abs(dy)
        x = _pixel_centres(ex0, ew)[None, :]
        y = _pixel_centres(ey0, eh)[:, None]
        if math.isfinite(self.threshold) and w > 0 and h > 0:
            noise = fbm(self._octaves, x, y)
        else:
            noise = np.full((eh, ew), -np.inf)
        cx, cy = x0 - ex0, y0 - ey0
        alpha = self._alpha_from_noise(noise[cy:cy + h, cx:cx + w])
        if self.shadow_strength > 0.0:
            sx, sy = cx - dx, cy - dy
            caster = self._alpha_from_noise(noise[sy:sy + h, sx:sx + w])
            shadow = _smoothstep(caster * (1.5 / self.max_alpha)) * self.shadow_strength
        else:
            shadow = np.zeros((h, w), dtype=np.float64)
        missing = self._gaps(_pixel_centres(x0, w)[None, :], _pixel_centres(y0, h)[:, None])
        return alpha.astype(np.float32), shadow.astype(np.float32), missing

    def texture(self, x0: int, y0: int, w: int, h: int) -> np.ndarray:
        """Fine zero-mean brightness texture of the window, float32 (h, w), roughly -1..1."""
        x = _pixel_centres(int(x0), int(w))[None, :]
        y = _pixel_centres(int(y0), int(h))[:, None]
        return np.clip(fbm(self._texture_octaves, x, y) * 1.6, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------- colour and blending


def cloud_colour_for(sample: np.ndarray, valid: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Bright cloud colour per band, float32 (C,), from the image's own statistics.

    ``sample`` is (C, ...) pixels of the image (a decimated read is enough) in whatever unit
    it is stored: reflectance 0..1 or digital numbers. Each band gets
    ``max(p99.5, mean + 3 std)``, raised to at least 70 % of the brightest band (clouds are
    nearly white, even over dark scenes), times a per-band factor U(0.95, 1.1) from ``seed``.
    """
    sample = np.asarray(sample)
    if sample.ndim < 2:
        raise ValueError("sample must be (bands, ...)")
    flat = sample.reshape(sample.shape[0], -1).astype(np.float64)
    ok = np.isfinite(flat).all(axis=0)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool).reshape(-1)
    if not ok.any():
        raise InputError("Cannot derive a cloud colour: the image holds only nodata pixels.")
    values = flat[:, ok]
    base = np.maximum(np.percentile(values, 99.5, axis=1), values.mean(axis=1) + 3.0 * values.std(axis=1))
    base = np.maximum(base, 0.7 * base.max())
    rng = np.random.default_rng(np.random.SeedSequence([0xC0102, int(seed) % (1 << 64), int(seed < 0)]))
    return (base * rng.uniform(0.95, 1.1, size=base.shape)).astype(np.float32)


def apply_clouds(block: np.ndarray, alpha: np.ndarray, shadow: np.ndarray, missing: np.ndarray,
                 cloud_colour: np.ndarray, valid: np.ndarray | None = None, *, rng_texture=None,
                 missing_value: float = np.nan) -> tuple:
    """Blend clouds and shadows into ``block`` (C, h, w); return ``(cloudy float32, mask uint8)``.

    Ground is darkened by ``shadow`` then blended towards ``cloud_colour`` by ``alpha``.
    Pixels where ``valid`` is False (input nodata) are left as they are, with mask 0,
    unless a gap covers them. Gap pixels take ``missing_value`` and mask 3.

    ``rng_texture`` modulates the cloud brightness by a few percent: an (h, w) array in
    -1..1 (e.g. :meth:`CloudField.texture`, reproducible per pixel), a
    ``numpy.random.Generator`` (white noise, for augmentation only: not window-reproducible),
    or None for none.
    """
    block = np.asarray(block, dtype=np.float32)
    if block.ndim != 3:
        raise ValueError(f"block must be (bands, rows, cols), got shape {block.shape}")
    shape = block.shape[1:]
    alpha = np.asarray(alpha, dtype=np.float32)
    shadow = np.asarray(shadow, dtype=np.float32)
    missing = np.asarray(missing, dtype=bool)
    if alpha.shape != shape or shadow.shape != shape or missing.shape != shape:
        raise ValueError("alpha, shadow and missing must have the block's (rows, cols) shape")
    colour = np.asarray(cloud_colour, dtype=np.float32).reshape(-1)
    if colour.size != block.shape[0]:
        raise ValueError(f"cloud_colour has {colour.size} values for {block.shape[0]} bands")
    if valid is None:
        valid = np.ones(shape, dtype=bool)
    valid = np.asarray(valid, dtype=bool)

    if isinstance(rng_texture, np.random.Generator):
        texture = rng_texture.uniform(-1.0, 1.0, size=shape).astype(np.float32)
    elif rng_texture is not None:
        texture = np.asarray(rng_texture, dtype=np.float32)
    else:
        texture = None

    a = np.where(valid, alpha, np.float32(0))
    s = np.where(valid, shadow, np.float32(0))
    ground = block * (np.float32(1) - s)
    brightness = np.float32(1) if texture is None else np.float32(1) + np.float32(TEXTURE_AMPLITUDE) * texture
    cloudy = ground * (np.float32(1) - a) + (colour[:, None, None] * brightness) * a
    cloudy = np.where(valid, cloudy, block).astype(np.float32, copy=False)
    if missing.any():
        cloudy[:, missing] = np.float32(missing_value)

    mask = np.zeros(shape, dtype=np.uint8)
    mask[s > 0] = SHADOW
    mask[a > 0] = CLOUD
    mask[missing] = MISSING
    return cloudy, mask


# --------------------------------------------------------------------------- in memory


def decimation_indices(length: int, size: int) -> np.ndarray:
    """Pixels a nearest-neighbour decimated read of ``size`` out of ``length`` takes.

    Same rule as GDAL's ``ReadAsArray(buf_xsize=...)`` on a raster without overviews, so the
    in-memory and raster versions derive the same cloud colour (with overviews GDAL reads
    those instead and the colour may differ by a fraction of a percent).
    """
    size = min(size, length)
    return np.minimum(((np.arange(size) + 0.5) * (length / size)).astype(np.int64), length - 1)


def _colour_sample(image: np.ndarray, valid: np.ndarray) -> tuple:
    rows = decimation_indices(image.shape[1], COLOUR_SAMPLE)
    cols = decimation_indices(image.shape[2], COLOUR_SAMPLE)
    return image[:, rows][:, :, cols], valid[rows][:, cols]


def simulate_clouds_array(image: np.ndarray, params: CloudParams, valid: np.ndarray | None = None, *,
                          cloud_colour: np.ndarray | None = None, missing_value: float = np.nan) -> tuple:
    """Clouds over a whole (C, H, W) array in memory; returns ``(cloudy float32, mask uint8)``.

    Same field, colour and blending as :func:`simulate_clouds`, so on the same pixels it
    gives the same values (before the raster version rounds to an integer type).
    ``valid`` defaults to the finite pixels; gaps take ``missing_value``.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[None]
    if image.ndim != 3:
        raise InputError(f"Expected an image of (bands, rows, cols); got shape {image.shape}.")
    _, h, w = image.shape
    if valid is None:
        valid = valid_mask(image, [None] * image.shape[0])
    valid = np.asarray(valid, dtype=bool)
    if cloud_colour is None:
        cloud_colour = cloud_colour_for(*_colour_sample(image, valid), seed=params.seed)
    field = CloudField(params, w, h)
    alpha, shadow, missing = field.window(0, 0, w, h)
    return apply_clouds(image.astype(np.float32, copy=False), alpha, shadow, missing, cloud_colour, valid,
                        rng_texture=field.texture(0, 0, w, h), missing_value=missing_value)


# --------------------------------------------------------------------------- rasters


def _mask_colour_table():
    from osgeo import gdal

    table = gdal.ColorTable()
    for value, rgba in ((CLEAR, (0, 0, 0, 0)), (CLOUD, (255, 255, 255, 255)),
                        (SHADOW, (70, 70, 90, 255)), (MISSING, (220, 40, 40, 255))):
        table.SetColorEntry(value, rgba)
    return table


def simulate_clouds(src: RasterInfo, out_path: str, mask_path: str, params: CloudParams, *,
                    bands: Sequence[int] | None = None, block: int = 1024, progress: Progress = None,
                    cancelled: CancelCheck = None) -> dict:
    """Write a cloudy copy of ``src`` and its mask, block by block with bounded memory.

    The output keeps the input's data type (integers rounded and clipped), grid, CRS and
    band descriptions; the mask is uint8 on the same grid (0 clear, 1 cloud, 2 shadow,
    3 missing). Gap pixels get the input's nodata value, or, if it has none, 0 for integer
    and NaN for float types, which is then declared as the output's nodata.

    Input nodata pixels are kept as they are, with mask 0: clouds and shadows are not
    drawn over them (there is no ground to blend with). Only a gap can cover them, giving
    mask 3. Both files appear together or not at all: on failure or cancel neither is
    left behind. Returns the achieved fractions (of all pixels) and what was used.
    """
    params.validate()
    if int(block) < 16:
        raise InputError(f"Block size must be at least 16 pixels; got {block}.")
    if os.path.abspath(str(out_path)) == os.path.abspath(str(mask_path)):
        raise InputError("The cloudy output and the cloud mask must be two different files.")
    bands = parse_bands(bands, src.band_count, src.name)
    out_nodata = _gap_value(src, bands)
    colour = _raster_cloud_colour(src, bands, params.seed)
    field = CloudField(params, src.width, src.height)
    report(progress, 0.0, "Simulating clouds")
    counts = _write_cloudy(src, bands, field, colour, out_nodata, out_path, mask_path, int(block), progress,
                           cancelled)
    total = float(src.width * src.height)
    return {
        "output": str(out_path),
        "mask": str(mask_path),
        "pixels": int(total),
        "cloud_fraction": counts[CLOUD] / total,
        "shadow_fraction": counts[SHADOW] / total,
        "missing_fraction": counts[MISSING] / total,
        "clear_fraction": counts[CLEAR] / total,
        "requested_coverage": float(params.coverage),
        "requested_missing": float(params.missing_data),
        "scale": field.scale,
        "shadow_offset": field.shadow_offset,
        "gap_kind": field.gap_kind,
        "cloud_colour": [float(c) for c in colour],
        "nodata": out_nodata,
    }


def _gap_value(src: RasterInfo, bands: list):
    """The value gaps take: the input's nodata, else NaN for floats and 0 for integers."""
    out_nodata = src.nodata[bands[0] - 1]
    if out_nodata is None:
        out_nodata = float("nan") if np.issubdtype(np.dtype(src.dtype), np.floating) else 0
    return out_nodata


def _raster_cloud_colour(src: RasterInfo, bands: list, seed: int) -> np.ndarray:
    """The cloud colour from a decimated read of the whole raster (same sample as the array version)."""
    sample = read_decimated(src, bands, COLOUR_SAMPLE, dtype=None)
    sample_valid = valid_mask(sample, [src.nodata[b - 1] for b in bands])
    if not sample_valid.any():
        raise InputError(f"Layer '{src.name}' holds only nodata pixels.")
    return cloud_colour_for(sample, sample_valid, seed=seed)


def _write_cloudy(src, bands, field, colour, out_nodata, out_path, mask_path, block, progress, cancelled):
    """Both outputs, block by block; returns the pixel count of each mask value. Both files or neither."""
    from .tiling import cast_output  # round and clip exactly like every other engine output

    dtype = np.dtype(src.dtype)
    src_nodata = [src.nodata[b - 1] for b in bands]
    descriptions = [src.descriptions[b - 1] if b - 1 < len(src.descriptions) else "" for b in bands]
    counts = np.zeros(4, dtype=np.int64)
    windows = list(iter_windows(src.width, src.height, block))
    protect = [src.path]
    out_w = RasterWriter(out_path, like=src, band_count=len(bands), dtype=dtype, nodata=out_nodata,
                         descriptions=descriptions, protect=protect)
    with out_w:
        mask_w = RasterWriter(mask_path, like=src, band_count=1, dtype=np.uint8,
                              descriptions=["cloud mask: 0 clear, 1 cloud, 2 shadow, 3 missing"], protect=protect)
        with mask_w:
            mask_w.ds.GetRasterBand(1).SetRasterColorTable(_mask_colour_table())
            for i, window in enumerate(windows):
                check_cancelled(cancelled)
                x0, y0, w, h = window
                original = read_window(src.dataset(), window, bands, dtype=dtype)
                valid = valid_mask(original, src_nodata)
                alpha, shadow, missing = field.window(x0, y0, w, h)
                cloudy, mask = apply_clouds(original.astype(np.float32), alpha, shadow, missing, colour, valid,
                                            rng_texture=field.texture(x0, y0, w, h),
                                            missing_value=float(out_nodata))
                out = cast_output(cloudy, dtype)
                # untouched pixels are copied, so no value changes through the float round trip
                keep = mask == CLEAR
                out[:, keep] = original[:, keep]
                out[:, missing] = out_nodata
                out_w.write(out, x0, y0)
                mask_w.write(mask, x0, y0)
                counts += np.bincount(mask.ravel(), minlength=4)[:4]
                report(progress, (i + 1) / len(windows))
            check_cancelled(cancelled)
            out_w.commit()
            try:
                mask_w.commit()
            except BaseException:
                if os.path.exists(out_w.path):
                    os.remove(out_w.path)
                raise
    return counts
