"""Cloud removal with a conditional GAN (pix2pix, Isola et al. 2017): training and inference.

The network
    The generator is the pix2pix U-Net :class:`networks.UNetGenerator` (4x4 stride-2
    convolutions, skip connections, tanh output). The CloudFree generators
    (:class:`networks.FillResidualGenerator`) do not start blind. The masked pixels are first
    filled by a smooth membrane interpolation of their surroundings (:func:`networks.smooth_fill`,
    a push-pull pyramid and diffusion). With ``generator="unmix_blend"`` (default, the shipped
    model) the ground under thin clouds and shadows is then recovered by linear unmixing
    (:func:`networks.unmix_parts`: per tile, one cloud colour and one shadow colour from the
    masked pixels; per pixel, the opacity and the ground that shows through), and the U-Net,
    which sees this estimate and the cloudy input, sets per masked pixel how far to trust the
    unmixed ground over the fill. Its output always lies between the two, and its last layer
    starts at zero, so training starts from the physical prior, not from noise. Measured across
    scenes (trained on one, validated on the other): the smooth fill beats biharmonic
    inpainting on PSNR but not on SSIM, free residuals on top of it or of the unmixing lowered
    the scores, and unmixing lifts SSIM inside the clouds well above both (README). See
    :func:`generator_spec` for the other kinds (``unmix_residual``, ``fill_residual``,
    ``plain`` = the original pix2pix generator). ``upsample="resize"`` (the shipped model)
    replaces the decoder's transposed convolutions by bilinear x2 resizing + 3x3 convolutions,
    which removed the dotted checkerboard texture of the first CPU model. The discriminator is
    the conditional :class:`networks.PatchDiscriminator` (70x70 PatchGAN) that scores
    ``cat(input, image)``.
    Two sizes (:data:`MODEL_SIZES`): ``small`` (6 levels, 32 base filters, 128 px tiles,
    trainable on a CPU) and ``full`` (the paper's 8 levels x 64 filters, 256 px tiles).
    Input channels = the selected bands, then (by default) the cloud mask as one channel
    (1 = masked or nodata, 0 = clear), then any auxiliary conditioning rasters; the output is
    the selected bands. Normalisation layers are *instance* norm (pix2pix trains with batch
    size 1, where batch norm is instance norm; instance norm behaves the same in training and
    inference and does not depend on the batch size).

Normalisation (scheme ``per_band_clear_percentile``, stored in the model metadata)
    Inputs arrive in many scalings (reflectance 0-1, Sentinel-2/Landsat digital numbers,
    rescaled floats), so nothing assumes a fixed range. For every band, the ``p2`` and
    ``p98`` percentiles of the image's own *clear, valid* pixels are computed on a decimated
    read (at most 1024 x 1024 pixels; clear = not selected by the cloud mask, when there is
    one). Values are mapped linearly so that ``p2 -> -0.8`` and ``p98 -> +0.8``; beyond
    ``+-2`` they are compressed logarithmically (``2 + log(1 + (|v| - 2))``): clouds are far
    brighter than p98, and a hard clip (files made before this option) erased the faint
    ground signal under thin clouds that the network needs to unmix them. The tanh
    output lives in ``[-1, 1]``, i.e. up to 25 % of the p2..p98 range beyond each end, and is
    mapped back with the same statistics of the same image. In training the target (the
    clear image) is normalised with the statistics of the *input* image, exactly as at
    inference where only the cloudy image is known. The map is linear, so scale and offset
    of the stored values cancel: a model trained on reflectance works on DNs. Auxiliary
    rasters use the same scheme on all their valid pixels. Without a mask at inference the
    statistics include the clouds (p98 is then biased upward); give a mask when you have one.

Loss and optimisation (pix2pix)
    ``L_G = GAN(D(x, G(x)), real) + lambda_L1 * |G(x) - y|_1`` with ``lambda_L1 = 100``;
    ``L_D = 0.5 * (GAN(D(x, y), real) + GAN(D(x, G(x)), fake))``; one D step then one G step
    per iteration; Adam, lr 2e-4, betas (0.5, 0.999); the learning rate is constant for the
    first half of the steps and decays linearly to zero over the second half. ``gan_mode``
    ``vanilla`` (BCE on logits, the paper) or ``lsgan`` (least squares). The L1 term is
    averaged only over pixels whose target is known (pixels that the source's mask marks as
    real clouds in the "clear" image carry no target); ``mask_l1_weight`` (default 4)
    weights the masked pixels more than the clear ones, which the residual only has to leave
    alone (and which inference copies from the input anyway).

Model selection
    Every ``val_every`` steps the generator is scored on the validation blocks (never on
    training pixels) by PSNR + 20 x SSIM inside the synthetic clouds
    (:func:`validation_score`); with ``keep_best`` (default) the saved model is the best-scoring
    one, and its step is ``training.selected_step`` in the metadata. The checkpoint folder
    keeps that generator as ``best_generator.safetensors`` so a resumed run keeps it too.

Dropout at inference: OFF
    pix2pix keeps dropout at test time as its only noise source. CloudFree turns it off
    (``model.eval()``): analysts need the same output for the same input, and with
    overlapping tiles a stochastic generator would give two different predictions for the
    same pixel and blur or seam the cross-fade. Dropout stays on during training (and during
    validation it is off, so validation figures describe what users get).

Training data (:class:`TrainingSource`)
    *Synthetic* mode: a clear raster (optionally with a mask of its real clouds and the mask
    values that mean clear); random crops get synthetic clouds, shadows and gaps made on the
    fly by :func:`clouds.simulate_clouds_array` with random :class:`clouds.CloudParams`
    (coverage 0.1-0.7, random thickness and shadows), whose colour then varies smoothly band by
    band (``synthetic["cloud_tint"]``, default 0-0.15: real thick clouds are not one colour,
    and a model that never saw that trusts linear unmixing where it fails). Crops with more than
    ``max_unclear_fraction`` of not-clear pixels are rejected. *Paired* mode: a cloudy raster
    and a clear raster on one grid, with an optional mask of the clouds in the cloudy one.
    Augmentation: random 90-degree rotations and flips. The last ``val_fraction`` of the rows
    of every raster (at least one tile) is the validation block; training crops never reach
    into it (:meth:`TrainingSource.split`), validation crops come only from it. A source with
    ``role="validation"`` is a whole held-out scene (never trained on) and one with
    ``role="train"`` has no validation block: validating on another place than the training
    ones measures how a model generalises, which same-scene validation rows do not.

Checkpoints (a folder)
    ``step_XXXXXXXX/`` holds ``generator.safetensors``, ``discriminator.safetensors``,
    ``optimizers.pt`` (Adam states, plain tensors, read back with
    ``torch.load(path, weights_only=True)``, which never unpickles code) and ``state.json``
    (step counter, losses, validation history);
    ``latest.json`` names the last complete one. A checkpoint is written into a temporary
    folder and renamed, then ``latest.json`` is replaced atomically, so a cancelled or
    crashed run always keeps its last good checkpoint. Resuming continues the step count,
    the history, the optimiser moments and the learning-rate schedule; the data sampler and
    torch RNG are reseeded from ``(seed, step)`` at every step, so a resumed run draws the
    same crops and clouds as an uninterrupted one.

Inference (:func:`remove_clouds`) runs the generator over the whole raster with
:func:`tiling.run_tiled`. With a mask, only masked pixels take generated values; inside the
mask the weight of the generated value rises with the distance to the nearest clear pixel
(``min(1, d / feather)``), so the transition is feathered *inside* the mask and every clear
pixel is written back bit-identical (same dtype as the input).
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from .errors import Cancelled, InputError, ModelFileError
from .grids import check_same_grid
from .raster import RasterInfo, open_raster, parse_bands, raster_info, read_window, valid_mask
from .runtime import CancelCheck, Progress, check_cancelled, report

TASK = "cloud_removal"
NORMALIZATION_SCHEME = "per_band_clear_percentile"

MODEL_SIZES = {
    "small": {"depth": 6, "base": 32, "max_channels": 256, "tile": 128},
    "full": {"depth": 8, "base": 64, "max_channels": 512, "tile": 256},
}

DEFAULT_NORMALIZATION = {
    "scheme": NORMALIZATION_SCHEME,
    "low_percentile": 2.0,
    "high_percentile": 98.0,
    "target": 0.8,     # p_low -> -target, p_high -> +target
    "clip": 2.0,       # normalised inputs beyond +-clip are compressed ("log") or clipped ("clip")
    "beyond_clip": "log",
    "sample": 1024,    # statistics from a decimated read of at most sample x sample pixels
    "mask_channel": "1 = masked (cloud/shadow/missing/nodata), 0 = clear",
}


# --------------------------------------------------------------------------- normalisation


def _stats_from_values(values: np.ndarray, norm: dict) -> tuple:
    """``(low, high)`` percentiles of a 1-D array of finite values (fallback 0, 1 when empty)."""
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(values, [norm["low_percentile"], norm["high_percentile"]])
    return float(lo), float(hi)


def _read_decimated(info: RasterInfo, bands: Sequence[int], sample: int, resample="nearest") -> np.ndarray:
    ds = open_raster(info.path, info.name)
    bw, bh = min(sample, info.width), min(sample, info.height)
    arrs = []
    for b in bands:
        band = ds.GetRasterBand(int(b))
        arrs.append(band.ReadAsArray(buf_xsize=bw, buf_ysize=bh).astype(np.float64))
    return np.stack(arrs)


def image_statistics(info: RasterInfo, bands: Sequence[int], *, mask: RasterInfo | None = None,
                     mask_values: Sequence[float] = (1, 2), clear_values: Sequence[float] | None = None,
                     rows: tuple | None = None, normalization: dict | None = None) -> dict:
    """Per-band ``low``/``high`` percentiles of the clear, valid pixels of ``info``.

    Clear pixels: with ``clear_values`` the mask values that mean clear, else pixels whose
    mask value is not in ``mask_values``; all valid pixels without a mask. ``rows`` =
    ``(r0, r1)`` restricts the statistics to a block of rows (used for training sources,
    whose statistics come from the training block only). Falls back to all valid pixels
    when fewer than 100 clear pixels are found.
    """
    norm = {**DEFAULT_NORMALIZATION, **(normalization or {})}
    sample = int(norm["sample"])
    r0, r1 = rows if rows is not None else (0, info.height)
    ds = open_raster(info.path, info.name)
    h = r1 - r0
    bw, bh = min(sample, info.width), min(sample, h)
    data = np.stack([ds.GetRasterBand(int(b)).ReadAsArray(0, r0, info.width, h, buf_xsize=bw, buf_ysize=bh)
                     .astype(np.float64) for b in bands])
    valid = valid_mask(data, [info.nodata[b - 1] for b in bands])
    clear = valid
    if mask is not None:
        mds = open_raster(mask.path, mask.name)
        m = mds.GetRasterBand(1).ReadAsArray(0, r0, mask.width, h, buf_xsize=bw, buf_ysize=bh)
        if clear_values is not None:
            clear = valid & np.isin(m, np.asarray(clear_values))
        else:
            clear = valid & ~np.isin(m, np.asarray(mask_values))
    if clear.sum() < 100:
        clear = valid
    low, high = [], []
    for i in range(len(bands)):
        lo, hi = _stats_from_values(data[i][clear], norm)
        low.append(lo)
        high.append(hi)
    return {"low": low, "high": high}


def _mid_half(stats: dict):
    lo = np.asarray(stats["low"], dtype=np.float64)
    hi = np.asarray(stats["high"], dtype=np.float64)
    mid = 0.5 * (lo + hi)
    half = 0.5 * (hi - lo)
    floor = np.maximum(np.abs(mid) * 1e-3, 1e-6)
    return mid, np.maximum(half, floor)


def normalize(x: np.ndarray, stats: dict, normalization: dict | None = None) -> np.ndarray:
    """``(C, ...)`` or ``(B, C, ...)`` values -> network space (see module docstring); NaN -> 0."""
    norm = {**DEFAULT_NORMALIZATION, **(normalization or {})}
    mid, half = _mid_half(stats)
    shape = (-1,) + (1,) * (x.ndim - 1) if x.ndim == 3 else (1, -1) + (1,) * (x.ndim - 2)
    y = (x - mid.reshape(shape)) / half.reshape(shape) * norm["target"]
    c = norm["clip"]
    if norm.get("beyond_clip", "clip") == "log":
        a = np.abs(y)
        y = np.where(a > c, np.sign(y) * (c + np.log1p(np.maximum(a - c, 0.0))), y)
    else:
        y = np.clip(y, -c, c)
    return np.nan_to_num(y, nan=0.0).astype(np.float32)


def denormalize(y: np.ndarray, stats: dict, normalization: dict | None = None) -> np.ndarray:
    """Inverse of :func:`normalize` (without the clip), as float64."""
    norm = {**DEFAULT_NORMALIZATION, **(normalization or {})}
    mid, half = _mid_half(stats)
    shape = (-1,) + (1,) * (y.ndim - 1) if y.ndim == 3 else (1, -1) + (1,) * (y.ndim - 2)
    return y.astype(np.float64) / norm["target"] * half.reshape(shape) + mid.reshape(shape)


def to_display(y: np.ndarray) -> np.ndarray:
    """Network-space values -> [0, 1] (p2 -> 0.1, p98 -> 0.9) for quick-looks and metrics."""
    return np.clip((np.asarray(y, dtype=np.float32) + 1.0) * 0.5, 0.0, 1.0)


# --------------------------------------------------------------------------- training data


ROLES = ("train+validation", "train", "validation")


@dataclass
class TrainingSource:
    """One raster (or raster pair) to draw training crops from.

    Synthetic mode (``cloudy`` is None): ``clear`` gets synthetic clouds; ``mask`` with
    ``clear_values`` says which pixels of ``clear`` are really clear.
    Paired mode: ``cloudy`` and ``clear`` share a grid; ``mask`` (on that grid) marks the
    clouds of ``cloudy`` with ``cloud_values``; it feeds the mask channel.
    ``aux``: further conditioning rasters ``[(path, bands), ...]`` on the same grid.
    """

    clear: str
    bands: Optional[list] = None
    cloudy: Optional[str] = None
    cloudy_bands: Optional[list] = None
    mask: Optional[str] = None
    clear_values: Optional[tuple] = None
    cloud_values: tuple = (1, 2)
    aux: list = field(default_factory=list)
    val_fraction: float = 0.2
    name: str = ""
    role: str = "train+validation"   # or "train" (no validation block) or "validation" (never trained on)

    @property
    def paired(self) -> bool:
        return self.cloudy is not None

    def info(self) -> RasterInfo:
        return raster_info(self.clear)

    def split(self, tile: int) -> tuple:
        """``((0, split), (split, height))``: training and validation row blocks.

        The validation block is the last ``val_fraction`` of the rows, at least ``tile`` rows;
        training crops lie entirely in the first block, validation crops in the second.
        ``role="train"``: all rows train, none validate; ``role="validation"``: the whole raster
        is validation (a held-out scene, to judge how a model generalises to new places).
        """
        height = self.info().height
        label = self.name or os.path.basename(self.clear)
        if self.role not in ROLES:
            raise InputError(f"Training source '{label}': unknown role '{self.role}' (use {', '.join(ROLES)}).")
        if height < tile:
            raise InputError(f"Training raster '{label}' has {height} rows, fewer than one {tile}-pixel tile; "
                             "use a smaller tile.")
        if self.role == "train":
            return (0, height), (height, height)
        if self.role == "validation":
            return (0, 0), (0, height)
        val_rows = max(int(math.ceil(height * self.val_fraction)), tile)
        split = height - val_rows
        if split < tile:
            raise InputError(
                f"Training raster '{label}' has {height} rows: too few for a training block and a validation "
                f"block of at least one {tile}-pixel tile each; use a smaller tile.")
        return (0, split), (split, height)


class _OpenSource:
    """A :class:`TrainingSource` with its datasets open, statistics computed and rows split."""

    def __init__(self, src: TrainingSource, tile: int, band_count: int | None, normalization: dict):
        self.src = src
        self.tile = tile
        self.name = src.name or os.path.splitext(os.path.basename(src.clear))[0]
        self.clear_info = raster_info(src.clear, self.name)
        self.bands = parse_bands(src.bands, self.clear_info.band_count, self.name)
        if band_count is not None and len(self.bands) != band_count:
            raise InputError(f"Training source '{self.name}' has {len(self.bands)} bands selected; "
                             f"the other sources have {band_count}.")
        infos = [self.clear_info]
        self.cloudy_info = None
        if src.paired:
            self.cloudy_info = raster_info(src.cloudy, self.name + " (cloudy)")
            self.cloudy_bands = parse_bands(src.cloudy_bands if src.cloudy_bands is not None else self.bands,
                                            self.cloudy_info.band_count, self.cloudy_info.name)
            if len(self.cloudy_bands) != len(self.bands):
                raise InputError(f"Training source '{self.name}': cloudy and clear band counts differ.")
            infos.append(self.cloudy_info)
        self.mask_info = raster_info(src.mask, self.name + " (mask)") if src.mask else None
        if self.mask_info is not None:
            infos.append(self.mask_info)
        self.aux_infos = []
        for path, abands in src.aux:
            ai = raster_info(path)
            self.aux_infos.append((ai, parse_bands(abands, ai.band_count, ai.name)))
            infos.append(ai)
        check_same_grid(infos)
        if self.clear_info.width < tile:
            raise InputError(f"Training raster '{self.name}' is {self.clear_info.width} px wide, less than the "
                             f"{tile}-pixel tile.")
        (self.t0, self.t1), (self.v0, self.v1) = src.split(tile)
        self.height, self.width = self.clear_info.height, self.clear_info.width
        self.ds_clear = open_raster(self.clear_info.path, self.name)
        self.ds_cloudy = open_raster(self.cloudy_info.path) if self.cloudy_info else None
        self.ds_mask = open_raster(self.mask_info.path) if self.mask_info else None
        self.ds_aux = [(open_raster(ai.path), ab) for ai, ab in self.aux_infos]
        # statistics from the training block of the image the network sees as input (from the
        # whole raster for a validation-only source, as inference would compute them)
        stat_rows = (self.t0, self.t1) if self.t1 > self.t0 else (self.v0, self.v1)
        stat_info = self.cloudy_info if src.paired else self.clear_info
        stat_bands = self.cloudy_bands if src.paired else self.bands
        if src.paired:
            self.stats = image_statistics(stat_info, stat_bands, mask=self.mask_info, mask_values=src.cloud_values,
                                          rows=stat_rows, normalization=normalization)
        else:
            self.stats = image_statistics(stat_info, stat_bands, mask=self.mask_info,
                                          clear_values=src.clear_values if self.mask_info else None,
                                          rows=stat_rows, normalization=normalization)
        self.aux_stats = [image_statistics(ai, ab, rows=stat_rows, normalization=normalization)
                          for ai, ab in self.aux_infos]
        self.normalization = normalization

    # -- reading one window -------------------------------------------------------------------
    def known(self, window) -> np.ndarray:
        """Pixels whose clear target is known (synthetic mode: mask says clear; else all)."""
        if self.src.paired or self.ds_mask is None or self.src.clear_values is None:
            return np.ones((window[3], window[2]), dtype=bool)
        m = read_window(self.ds_mask, window, [1])[0]
        return np.isin(m, np.asarray(self.src.clear_values))

    def read(self, window) -> dict:
        clear = read_window(self.ds_clear, window, self.bands)
        valid = valid_mask(clear, [self.clear_info.nodata[b - 1] for b in self.bands])
        out = {"clear": clear, "valid": valid}
        if self.src.paired:
            cloudy = read_window(self.ds_cloudy, window, self.cloudy_bands)
            valid &= valid_mask(cloudy, [self.cloudy_info.nodata[b - 1] for b in self.cloudy_bands])
            out["cloudy"] = cloudy
            if self.ds_mask is not None:
                m = read_window(self.ds_mask, window, [1])[0]
                out["mask"] = np.isin(m, np.asarray(self.src.cloud_values))
            else:
                out["mask"] = np.zeros(valid.shape, dtype=bool)
        out["known"] = self.known(window) & valid
        out["aux"] = [read_window(ds, window, ab) for ds, ab in self.ds_aux]
        return out


def _augment(arrays: list, k: int, flip: bool) -> list:
    out = []
    for a in arrays:
        a = np.rot90(a, k, axes=(-2, -1))
        if flip:
            a = a[..., ::-1]
        out.append(np.ascontiguousarray(a))
    return out


def _random_cloud_params(rng: np.random.Generator, synthetic: dict, seed: int, tile: int):
    """Random :class:`clouds.CloudParams` for one crop (ranges overridable in ``synthetic``)."""
    from .clouds import CloudParams

    cov = synthetic.get("coverage", (0.1, 0.7))
    thick = synthetic.get("thickness", (0.3, 1.0))
    shadows_p = synthetic.get("shadow_probability", 0.6)
    missing_p = synthetic.get("missing_probability", 0.1)
    missing = synthetic.get("missing_data", (0.0, 0.1))
    scale = synthetic.get("scale_fraction", (0.15, 0.6))  # typical cloud size, fraction of the tile
    return CloudParams(
        seed=int(seed),
        coverage=float(rng.uniform(*cov)),
        thickness=float(rng.uniform(*thick)),
        shadows=bool(rng.random() < shadows_p),
        missing_data=float(rng.uniform(*missing)) if rng.random() < missing_p else 0.0,
        scale=max(4.0, float(rng.uniform(*scale)) * tile),
    )


def _tint(clear: np.ndarray, cloudy: np.ndarray, rng: np.random.Generator, tint_range) -> np.ndarray:
    """Vary the clouds' and shadows' colour smoothly over the tile, band by band.

    The simulator blends towards one colour; real thick clouds are not one colour, and a model
    that only saw one-colour clouds trusts linear unmixing where it fails (README). The cloud's
    contribution ``cloudy - clear`` is scaled by ``1 + t * n_b(x, y)`` with ``n_b`` smooth
    unit-variance noise per band and ``t`` drawn from ``tint_range`` (``(0, 0)`` = off).
    """
    t = float(rng.uniform(*tint_range))
    if t <= 0:
        return cloudy
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.standard_normal(cloudy.shape), sigma=(0, 3, 3))
    noise /= max(float(noise.std()), 1e-9)
    clear = np.asarray(clear, dtype=np.float64)
    return (clear + (np.asarray(cloudy, dtype=np.float64) - clear) * (1.0 + t * noise)).astype(np.float32)


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
        self.normalization = {**DEFAULT_NORMALIZATION, **(normalization or {})}
        self.use_mask_channel = use_mask_channel
        self.synthetic = dict(synthetic or {})
        self.max_unclear = max_unclear_fraction
        self.augment = augment
        self.sources = []
        nb = None
        for s in sources:
            o = _OpenSource(s, tile, nb, self.normalization)
            nb = len(o.bands)
            self.sources.append(o)
        self.band_count = nb
        aux_counts = {sum(len(ab) for _, ab in o.aux_infos) for o in self.sources}
        if len(aux_counts) != 1:
            raise InputError("All training sources must have the same number of auxiliary channels.")
        self.aux_count = aux_counts.pop()
        self.in_channels = nb + (1 if use_mask_channel else 0) + self.aux_count
        areas = np.array([max(0, o.t1 - o.t0 - tile + 1) * (o.width - tile + 1) for o in self.sources],
                         dtype=np.float64)
        if areas.sum() == 0:
            raise InputError("No training source has rows to train on (every source has role 'validation').")
        if all(o.v1 - o.v0 < tile for o in self.sources):
            raise InputError("No training source has a validation block (every source has role 'train').")
        self.weights = areas / areas.sum()
        self.drawn_windows = []  # (source index, window) of the training crops, for tests/benchmarks

    # -- assembling one sample ----------------------------------------------------------------
    def _make(self, o: _OpenSource, d: dict, rng: np.random.Generator, cloud_seed: int, augment: bool):
        clear, valid, known = d["clear"], d["valid"], d["known"]
        if o.src.paired:
            cloudy, mask = d["cloudy"], d["mask"]
            arrays = [clear, cloudy, valid, known, mask] + d["aux"]
            if augment:
                arrays = _augment(arrays, int(rng.integers(4)), bool(rng.integers(2)))
            clear, cloudy, valid, known, mask = arrays[:5]
            aux = arrays[5:]
        else:
            from .clouds import simulate_clouds_array

            arrays = [clear, valid, known] + d["aux"]
            if augment:
                arrays = _augment(arrays, int(rng.integers(4)), bool(rng.integers(2)))
            clear, valid, known = arrays[:3]
            aux = arrays[3:]
            contrast = self.synthetic.get("band_contrast")
            if augment and contrast:
                # per-band contrast about the source's mid level: the ground's spread relative to
                # the clouds (made from the altered image) then varies as it does between scenes
                mid = _mid_half(o.stats)[0].reshape(-1, 1, 1)
                gain = rng.uniform(float(contrast[0]), float(contrast[1]), size=(clear.shape[0], 1, 1))
                clear = mid + (np.asarray(clear, dtype=np.float64) - mid) * gain
            params = _random_cloud_params(rng, self.synthetic, cloud_seed, self.tile)
            cloudy, m = simulate_clouds_array(np.ascontiguousarray(clear, dtype=np.float32), params, valid=valid)
            mask = np.asarray(m) > 0
            cloudy = _tint(clear, cloudy, rng, self.synthetic.get("cloud_tint", (0.0, 0.15)))
        mask = mask | ~valid
        x_img = normalize(np.asarray(cloudy, dtype=np.float64), o.stats, self.normalization)
        x_img[:, ~valid] = 0.0
        # the tanh output cannot go beyond [-1, 1]; targets outside are clipped to it
        y = np.clip(normalize(np.asarray(clear, dtype=np.float64), o.stats, self.normalization), -1.0, 1.0)
        parts = [x_img]
        if self.use_mask_channel:
            parts.append(mask[None].astype(np.float32))
        for a, st in zip(aux, o.aux_stats):
            parts.append(normalize(np.asarray(a, dtype=np.float64), st, self.normalization))
        x = np.concatenate(parts, axis=0)
        return x, y, known & valid, mask

    def sample(self, rng: np.random.Generator):
        T = self.tile
        k = int(rng.choice(len(self.sources), p=self.weights))
        o = self.sources[k]
        best = None
        for _ in range(50):
            y0 = int(rng.integers(o.t0, o.t1 - T + 1))
            x0 = int(rng.integers(0, o.width - T + 1))
            window = (x0, y0, T, T)
            unclear = 1.0 - float(o.known(window).mean())
            if best is None or unclear < best[0]:
                best = (unclear, window)
            if unclear <= self.max_unclear:
                break
        window = best[1]
        self.drawn_windows.append((k, window))
        d = o.read(window)
        return self._make(o, d, rng, int(rng.integers(2 ** 31)), self.augment)

    def batch(self, batch_size: int, rng: np.random.Generator):
        items = [self.sample(rng) for _ in range(batch_size)]
        return tuple(np.stack([it[i] for it in items]) for i in range(4))

    def validation_windows(self, max_tiles: int = 8) -> list:
        """``[(source index, window)]``: non-overlapping tiles of the validation blocks only."""
        T = self.tile
        cands = []
        for k, o in enumerate(self.sources):
            for y0 in range(o.v0, o.v1 - T + 1, T):
                for x0 in range(0, o.width - T + 1, T):
                    w = (x0, y0, T, T)
                    cands.append((1.0 - float(o.known(w).mean()), k, w))
        ok = [c for c in cands if c[0] <= self.max_unclear] or sorted(cands)[:max(1, max_tiles)]
        if len(ok) > max_tiles:
            idx = np.linspace(0, len(ok) - 1, max_tiles).round().astype(int)
            ok = [ok[i] for i in idx]
        return [(k, w) for _, k, w in ok]

    def validation_set(self, max_tiles: int = 8, seed: int = 12345, repeats: int = 1):
        """Fixed validation arrays (no augmentation, fixed synthetic clouds): ``(x, y, known, mask)``.

        ``repeats`` > 1 draws that many different synthetic cloud fields over every window of a
        synthetic source (validation blocks are small; more fields make the figures steadier).
        """
        rng = np.random.default_rng(seed)
        items = []
        for k, w in self.validation_windows(max_tiles):
            o = self.sources[k]
            d = o.read(w)
            for _ in range(1 if o.src.paired else max(1, int(repeats))):
                items.append(self._make(o, d, rng, int(rng.integers(2 ** 31)), augment=False))
        return tuple(np.stack([it[i] for it in items]) for i in range(4))


# --------------------------------------------------------------------------- configuration


@dataclass
class TrainConfig:
    """Everything a training run needs; stored (as JSON) in the model's metadata."""

    sources: list
    band_names: Optional[list] = None
    size: str = "small"
    depth: Optional[int] = None          # overrides of the size preset
    base: Optional[int] = None
    max_channels: Optional[int] = None
    tile: Optional[int] = None
    norm: str = "instance"
    dropout: float = 0.5
    upsample: str = "resize"              # decoder: resize (bilinear x2 + 3x3 conv) or transpose (pix2pix paper)
    disc_base: Optional[int] = None
    disc_layers: int = 3
    batch_size: int = 4
    steps: int = 2000
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay_start: float = 0.5           # fraction of the steps after which lr decays linearly to 0
    lambda_l1: float = 100.0
    lambda_gan: float = 1.0               # weight of the adversarial term (pix2pix: 1; 0 = L1 only, a diagnostic)
    mask_l1_weight: float = 4.0           # L1 weight of a masked pixel relative to a clear one
    gan_mode: str = "vanilla"             # vanilla (BCE) or lsgan
    use_mask_channel: bool = True
    generator: str = "unmix_blend"        # unmix_blend, unmix_residual, fill_residual, plain (see generator_spec)
    residual_scale: float = 0.0           # unmix_blend: bound of a free residual added to the blend (0 = none)
    synthetic: dict = field(default_factory=dict)
    max_unclear_fraction: float = 0.25
    augment: bool = True
    val_every: int = 200
    val_tiles: int = 8
    val_repeats: int = 1                  # synthetic cloud fields per validation window
    checkpoint_every: int = 200
    num_samples: int = 3
    keep_best: bool = True                # save the generator of the best validation, not the last step
    seed: int = 0
    device: str = "auto"
    num_threads: Optional[int] = None

    def resolved(self) -> dict:
        if self.size not in MODEL_SIZES:
            raise InputError(f"Unknown model size '{self.size}': use {', '.join(MODEL_SIZES)}.")
        p = dict(MODEL_SIZES[self.size])
        for k in ("depth", "base", "max_channels", "tile"):
            if getattr(self, k) is not None:
                p[k] = int(getattr(self, k))
        if p["tile"] % (2 ** p["depth"]):
            raise InputError(f"Tile size {p['tile']} must be divisible by 2^depth = {2 ** p['depth']}.")
        if self.gan_mode not in ("vanilla", "lsgan"):
            raise InputError(f"Unknown gan_mode '{self.gan_mode}': vanilla or lsgan.")
        return p

    def to_json_dict(self) -> dict:
        d = asdict(self)
        d["sources"] = [asdict(s) if isinstance(s, TrainingSource) else s for s in self.sources]
        return d


@dataclass
class TrainResult:
    model_path: str
    steps: int
    history: dict
    samples: list
    metrics: dict
    seconds: float
    steps_per_second: float
    checkpoint: Optional[str] = None


def generator_hyperparameters(in_channels: int, out_channels: int, p: dict, norm: str = "instance",
                              dropout: float = 0.5, upsample: str = "transpose") -> dict:
    return {"in_channels": int(in_channels), "out_channels": int(out_channels), "depth": int(p["depth"]),
            "base": int(p["base"]), "max_channels": int(p["max_channels"]), "norm": norm,
            "dropout": float(dropout), "dropout_blocks": min(3, int(p["depth"]) - 1), "upsample": upsample}


GENERATORS = {"unmix_blend": "fill_residual_generator", "unmix_residual": "fill_residual_generator",
              "fill_residual": "fill_residual_generator", "plain": "unet_generator"}


def generator_spec(kind: str, in_channels: int, out_channels: int, p: dict, norm: str = "instance",
                   dropout: float = 0.5, upsample: str = "transpose", residual_scale: float = 0.0) -> tuple:
    """``(architecture, hyperparameters)`` of a generator kind (see :data:`GENERATORS`).

    All but ``plain`` are :class:`networks.FillResidualGenerator` and need the mask channel
    right after the bands:
    - ``unmix_blend`` (default, the shipped model): the ground under thin clouds and shadows
      is unmixed (:func:`networks.unmix_parts`); the U-Net decides per masked pixel how much
      to trust it over the smooth fill (it shifts the logit of ``1 - opacity`` by up to +-4)
      and adds a free residual bounded by ``residual_scale`` (0 = none);
    - ``unmix_residual``: the unmixed fill plus a free residual (tanh, up to +-1);
    - ``fill_residual``: the smooth fill plus a free residual;
    - ``plain``: the original pix2pix U-Net that sees the cloudy pixels only.
    Trained on one scene and validated on another, every free residual lowered the scores
    (README), so the default has none.
    """
    hp = generator_hyperparameters(in_channels, out_channels, p, norm, dropout, upsample)
    if kind == "plain":
        return GENERATORS[kind], hp
    if kind not in GENERATORS:
        raise InputError(f"Unknown generator '{kind}': use {', '.join(GENERATORS)}.")
    fill_hp = {k: v for k, v in hp.items() if k not in ("in_channels", "out_channels")}
    if kind in ("unmix_residual", "unmix_blend"):
        from .networks import PLAUSIBLE_RANGE, TRUST_POWER

        fill_hp.update(base_fill="unmix", unlog_clip=float(DEFAULT_NORMALIZATION["clip"]), trust_power=TRUST_POWER,
                       plausible_range=PLAUSIBLE_RANGE)
    if kind == "unmix_blend":
        fill_hp.update(head="blend", residual_scale=float(residual_scale))
    return GENERATORS[kind], {"bands": int(out_channels), "extra_channels": int(in_channels - out_channels), **fill_hp}


def build_generator(in_channels: int, out_channels: int, size: str = "small", kind: str = "unmix_blend",
                    **overrides):
    """A fresh generator of one of :data:`MODEL_SIZES` (``overrides``: depth, base, max_channels, norm, dropout,
    upsample)."""
    from .networks import build

    p = dict(MODEL_SIZES[size])
    p.update({k: v for k, v in overrides.items() if k in ("depth", "base", "max_channels") and v is not None})
    arch, hp = generator_spec(kind, in_channels, out_channels, p, overrides.get("norm", "instance"),
                              overrides.get("dropout", 0.5), overrides.get("upsample", "transpose"))
    return build(arch, hp)


# --------------------------------------------------------------------------- metrics


def _val_metrics(fake: np.ndarray, target: np.ndarray, known: np.ndarray, mask: np.ndarray) -> dict:
    """L1 (network space), PSNR and SSIM on display values (data range 1), over known pixels."""
    try:
        from .metrics import psnr as _psnr, ssim as _ssim
    except Exception:  # pragma: no cover - the metrics module is optional here
        _psnr = _ssim = None
    f, t = to_display(fake), to_display(target)
    l1s, ps, ss, pm, sm = [], [], [], [], []
    for i in range(f.shape[0]):
        k = known[i]
        if not k.any():
            continue
        l1s.append(float(np.abs(fake[i][:, k] - target[i][:, k]).mean()))
        if _psnr is not None:
            ps.append(_psnr(f[i], t[i], 1.0, mask=k))
            ss.append(_ssim(f[i], t[i], 1.0, mask=k))
            km = k & mask[i]
            if km.sum() > 0:
                pm.append(_psnr(f[i], t[i], 1.0, mask=km))
                sm.append(_ssim(f[i], t[i], 1.0, mask=km))
        else:
            mse = float(np.mean((f[i][:, k] - t[i][:, k]) ** 2))
            ps.append(10 * math.log10(1.0 / max(mse, 1e-12)))
    fin = lambda v: float(np.mean([min(x, 100.0) for x in v])) if v else float("nan")  # noqa: E731
    return {"l1": fin(l1s), "psnr": fin(ps), "ssim": fin(ss), "psnr_masked": fin(pm), "ssim_masked": fin(sm)}


def validation_score(m: dict) -> float:
    """Model selection score: PSNR + 20 x SSIM inside the clouds (a 0.05 SSIM gain counts as 1 dB)."""
    p, s_ = m.get("psnr_masked", float("nan")), m.get("ssim_masked", float("nan"))
    return -math.inf if not (math.isfinite(p) and math.isfinite(s_)) else p + 20.0 * s_


# --------------------------------------------------------------------------- checkpoints


def _write_checkpoint(folder: str, G, D, opt_g, opt_d, state: dict) -> str:
    import torch
    from safetensors.torch import save_file

    os.makedirs(folder, exist_ok=True)
    name = f"step_{state['step']:08d}"
    final = os.path.join(folder, name)
    tmp = os.path.join(folder, f".{name}.partial-{uuid.uuid4().hex[:8]}")
    os.makedirs(tmp)
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()},
                  os.path.join(tmp, "generator.safetensors"))
        save_file({k: v.detach().cpu().contiguous() for k, v in D.state_dict().items()},
                  os.path.join(tmp, "discriminator.safetensors"))
        torch.save({"generator": opt_g.state_dict(), "discriminator": opt_d.state_dict()},
                   os.path.join(tmp, "optimizers.pt"))
        with open(os.path.join(tmp, "state.json"), "w") as f:
            json.dump(state, f)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    latest_tmp = os.path.join(folder, f".latest.json.{uuid.uuid4().hex[:8]}")
    with open(latest_tmp, "w") as f:
        json.dump({"checkpoint": name, "step": state["step"]}, f)
    os.replace(latest_tmp, os.path.join(folder, "latest.json"))
    # keep the newest two complete checkpoints
    old = sorted(d for d in os.listdir(folder) if d.startswith("step_") and d != name)
    for d in old[:-1]:
        shutil.rmtree(os.path.join(folder, d), ignore_errors=True)
    return final


def resolve_checkpoint(path: str) -> str:
    """A checkpoint folder from a checkpoint directory (via ``latest.json``) or a ``step_*`` folder."""
    if os.path.isfile(os.path.join(path, "state.json")):
        return path
    latest = os.path.join(path, "latest.json")
    if os.path.isfile(latest):
        with open(latest) as f:
            return os.path.join(path, json.load(f)["checkpoint"])
    raise ModelFileError(f"'{path}' holds no CloudFree training checkpoint (no latest.json or state.json).")


def _load_checkpoint(path: str, G, D, opt_g, opt_d) -> dict:
    import torch
    from safetensors.torch import load_file

    folder = resolve_checkpoint(path)
    try:
        G.load_state_dict(load_file(os.path.join(folder, "generator.safetensors")), strict=True)
        D.load_state_dict(load_file(os.path.join(folder, "discriminator.safetensors")), strict=True)
        opts = torch.load(os.path.join(folder, "optimizers.pt"), weights_only=True, map_location="cpu")
        opt_g.load_state_dict(opts["generator"])
        opt_d.load_state_dict(opts["discriminator"])
        with open(os.path.join(folder, "state.json")) as f:
            return json.load(f)
    except (RuntimeError, KeyError, OSError, ValueError) as exc:
        raise ModelFileError(f"Checkpoint '{folder}' cannot be resumed with this configuration ({exc}).") from exc


# --------------------------------------------------------------------------- training


def _lr_at(step: int, config: TrainConfig) -> float:
    start = int(config.steps * config.lr_decay_start)
    if step < start:
        return config.lr
    span = max(config.steps - start, 1)
    return config.lr * max(0.0, 1.0 - (step - start) / span)


def train_cloud_removal(config: TrainConfig, out_model_path: str, *, checkpoint_dir: str | None = None,
                        resume_from: str | None = None, progress: Progress = None, cancelled: CancelCheck = None,
                        log: Callable[[str], None] | None = None) -> TrainResult:
    """Train a pix2pix cloud-removal model and save it to ``out_model_path`` (see module docstring).

    ``progress(fraction, message)`` is called every step with the current losses;
    ``cancelled()`` is checked every step: on cancel :class:`errors.Cancelled` is raised, no model
    is written, and ``checkpoint_dir`` keeps its last complete checkpoint (resume with
    ``resume_from=checkpoint_dir``). History: ``step``, ``loss_g_gan``, ``loss_g_l1``, ``loss_d``,
    ``lr`` per step and ``val`` (a list of dicts with step, l1, psnr, ssim, psnr_masked; L1 in
    network space, PSNR/SSIM on display values with data range 1, over pixels with a known
    target; ``psnr_masked`` only over the simulated-cloud pixels). ``samples``: up to
    ``num_samples`` dicts ``cloudy``, ``generated``, ``composite`` (generated inside the mask,
    input outside), ``clear`` as float32 ``(C, T, T)`` display values in [0, 1] (p2 -> 0.1,
    p98 -> 0.9) and ``mask`` uint8, from the first validation crops (dropout off).
    """
    import torch
    from torch import nn

    from .networks import PatchDiscriminator
    from .runtime import describe_device, select_device
    from .weights import ModelMetadata, save_model, write_atomic

    t_start = time.perf_counter()
    p = config.resolved()
    tile = p["tile"]
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    device = select_device(config.device)
    sources = [s if isinstance(s, TrainingSource) else TrainingSource(**s) for s in config.sources]
    sampler = CropSampler(sources, tile, use_mask_channel=config.use_mask_channel, synthetic=config.synthetic,
                          max_unclear_fraction=config.max_unclear_fraction, augment=config.augment)
    nb = sampler.band_count
    if config.generator != "plain" and not config.use_mask_channel:
        raise InputError(f"The {config.generator} generator needs the mask channel (use_mask_channel=True).")
    if config.upsample not in ("transpose", "resize"):
        raise InputError(f"Unknown upsample '{config.upsample}': transpose or resize.")
    arch, hp = generator_spec(config.generator, sampler.in_channels, nb, p, config.norm, config.dropout,
                              config.upsample, config.residual_scale)
    torch.manual_seed(config.seed)
    from .networks import build as build_network

    G = build_network(arch, hp).to(device)
    d_hp = {"in_channels": sampler.in_channels + nb, "base": int(config.disc_base or p["base"]),
            "layers": int(config.disc_layers), "norm": config.norm}
    D = PatchDiscriminator(**d_hp).to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=config.lr, betas=(config.beta1, config.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=config.lr, betas=(config.beta1, config.beta2))
    crit = nn.BCEWithLogitsLoss() if config.gan_mode == "vanilla" else nn.MSELoss()

    def gan_loss(pred, real: bool):
        return crit(pred, torch.full_like(pred, 1.0 if real else 0.0))

    history = {"step": [], "loss_g_gan": [], "loss_g_l1": [], "loss_d": [], "lr": [], "val": [], "seconds": 0.0}
    step = 0
    if resume_from:
        state = _load_checkpoint(resume_from, G, D, opt_g, opt_d)
        step = int(state["step"])
        history = state["history"]
        if log:
            log(f"Resumed from {resolve_checkpoint(resume_from)} at step {step}.")

    vx, vy, vk, vm = sampler.validation_set(config.val_tiles, seed=config.seed + 777, repeats=config.val_repeats)
    vx_t = torch.from_numpy(vx).to(device)

    best = {"score": -math.inf, "step": None, "state": None}
    best_file = os.path.join(checkpoint_dir, "best_generator.safetensors") if checkpoint_dir else None
    if resume_from and config.keep_best:
        folder = os.path.dirname(resolve_checkpoint(resume_from))
        if os.path.isfile(os.path.join(folder, "best_generator.safetensors")):
            from safetensors.torch import load_file

            best_file_in = os.path.join(folder, "best_generator.safetensors")
            scored = [v for v in history["val"] if 0 < v["step"] <= step]  # as validate() keeps them
            if scored:
                top = max(scored, key=validation_score)
                best.update(state=load_file(best_file_in), step=top["step"], score=validation_score(top))

    def validate():
        G.eval()
        with torch.no_grad():
            fake = torch.cat([G(vx_t[i:i + 8]) for i in range(0, len(vx_t), 8)]).cpu().numpy()
        G.train()
        m = _val_metrics(fake, vy, vk, vm)
        m["step"] = step
        history["val"].append(m)
        if log:
            log(f"step {step}: validation L1 {m['l1']:.4f}, PSNR {m['psnr']:.2f} dB, SSIM {m['ssim']:.3f}; "
                f"inside the clouds PSNR {m['psnr_masked']:.2f} dB, SSIM {m['ssim_masked']:.3f}")
        if config.keep_best and step > 0 and validation_score(m) > best["score"]:
            best.update(score=validation_score(m), step=step,
                        state={k: v.detach().cpu().clone().contiguous() for k, v in G.state_dict().items()})
            if best_file:
                write_atomic(best_file, best["state"])
        return fake

    if log:
        log(f"Training {config.size} pix2pix ({hp['depth']} levels, {hp['base']} filters, tile {tile}) on "
            f"{describe_device(device)}; {len(sampler.sources)} source(s), {sampler.in_channels} input channels.")
    state_meta = {"config": config.to_json_dict(), "generator": hp, "discriminator": d_hp}
    last_ckpt = None
    G.train()
    D.train()
    if not history["val"] or history["val"][-1]["step"] != step:
        if config.val_every and step == 0:
            validate()
    run_t0 = time.perf_counter()
    run_steps = 0
    train_seconds = 0.0  # time in training iterations only (data, forward, backward), for steps/s
    try:
        while step < config.steps:
            check_cancelled(cancelled)
            it_t0 = time.perf_counter()
            rng = np.random.default_rng([config.seed, step])
            torch.manual_seed(config.seed * 1_000_003 + step)
            x, y, known, masked = sampler.batch(config.batch_size, rng)
            x = torch.from_numpy(x).to(device)
            y = torch.from_numpy(y).to(device)
            w = known * (1.0 + (config.mask_l1_weight - 1.0) * masked)
            w = torch.from_numpy(w[:, None].astype(np.float32)).to(device)
            lr = _lr_at(step, config)
            for opt in (opt_g, opt_d):
                for g in opt.param_groups:
                    g["lr"] = lr
            fake = G(x)
            # discriminator step
            for prm in D.parameters():
                prm.requires_grad_(True)
            opt_d.zero_grad(set_to_none=True)
            loss_d = 0.5 * (gan_loss(D(torch.cat([x, fake.detach()], 1)), False)
                            + gan_loss(D(torch.cat([x, y], 1)), True))
            loss_d.backward()
            opt_d.step()
            # generator step
            for prm in D.parameters():
                prm.requires_grad_(False)
            opt_g.zero_grad(set_to_none=True)
            g_gan = gan_loss(D(torch.cat([x, fake], 1)), True)
            g_l1 = ((fake - y).abs() * w).sum() / (w.sum() * nb).clamp(min=1.0)
            loss_g = config.lambda_gan * g_gan + config.lambda_l1 * g_l1
            loss_g.backward()
            opt_g.step()
            step += 1
            run_steps += 1
            history["step"].append(step)
            gv, lv, dv = g_gan.item(), g_l1.item(), loss_d.item()
            train_seconds += time.perf_counter() - it_t0
            history["loss_g_gan"].append(gv)
            history["loss_g_l1"].append(lv)
            history["loss_d"].append(dv)
            history["lr"].append(lr)
            report(progress, step / config.steps,
                   f"step {step}/{config.steps}: G GAN {gv:.3f}, G L1 {lv:.4f}, D {dv:.3f}")
            if config.val_every and (step % config.val_every == 0 or step == config.steps):
                validate()
            if checkpoint_dir and (step % max(config.checkpoint_every, 1) == 0 or step == config.steps):
                history["seconds"] = history.get("seconds", 0.0) + (time.perf_counter() - run_t0)
                run_t0 = time.perf_counter()
                last_ckpt = _write_checkpoint(checkpoint_dir, G, D, opt_g, opt_d,
                                              {"step": step, "history": history, **state_meta})
    except Cancelled:
        where = resolve_checkpoint(checkpoint_dir) if checkpoint_dir and os.path.isfile(
            os.path.join(checkpoint_dir, "latest.json")) else None
        msg = "Training cancelled by the user; no model was written."
        if where:
            msg += f" The last checkpoint ({where}) can be resumed."
        raise Cancelled(msg) from None
    run_seconds = time.perf_counter() - run_t0
    history["seconds"] = history.get("seconds", 0.0) + run_seconds

    selected = step
    if config.keep_best and best["state"] is not None:
        G.load_state_dict(best["state"], strict=True)
        selected = best["step"]
        if log:
            log(f"Keeping the generator of step {selected} (best validation score "
                f"{best['score']:.2f} = PSNR + 20 x SSIM inside the clouds).")
    # samples for the report: the first validation crops, generated with dropout off
    G.eval()
    n = min(config.num_samples, len(vx))
    with torch.no_grad():
        fake = G(vx_t[:n]).cpu().numpy() if n else np.zeros((0,) + vy.shape[1:], np.float32)
    samples = [{"cloudy": to_display(vx[i, :nb]), "generated": to_display(fake[i]), "clear": to_display(vy[i]),
                "composite": to_display(np.where(vm[i][None], fake[i], vx[i, :nb])),
                "mask": vm[i].astype(np.uint8)} for i in range(n)]
    chosen = [v for v in history["val"] if v["step"] == selected] or history["val"][-1:]
    metrics = {k: v for k, v in (chosen[-1].items() if chosen else []) if k != "step"}
    band_names = config.band_names or [f"band_{b}" for b in sampler.sources[0].bands]
    extra = (["cloud_mask"] if config.use_mask_channel else []) + [
        f"aux:{ai.name}:{b}" for ai, ab in sampler.sources[0].aux_infos for b in ab]
    meta = ModelMetadata(
        task=TASK, architecture=arch, hyperparameters=hp, bands=list(band_names),
        extra_channels=extra, normalization=dict(DEFAULT_NORMALIZATION), tile_size=tile,
        training={"config": config.to_json_dict(), "steps": step, "selected_step": selected, "discriminator": d_hp,
                  "inference_dropout": False,
                  "loss": f"{config.lambda_gan} x {config.gan_mode} GAN + {config.lambda_l1} x L1 "
                          f"(masked pixels x {config.mask_l1_weight})",
                  "validation": "; ".join(
                      f"{o.name}: " + ("whole raster (validation only)" if o.src.role == "validation" else
                                       "none (training only)" if o.src.role == "train" else
                                       f"last {o.src.val_fraction:g} of the rows")
                      for o in sampler.sources),
                  "sources": [o.name for o in sampler.sources]},
        metrics={"validation": metrics},
    )
    G.cpu()
    save_model(out_model_path, G, meta)
    total = time.perf_counter() - t_start
    return TrainResult(model_path=out_model_path, steps=step, history=history, samples=samples, metrics=metrics,
                       seconds=total, steps_per_second=run_steps / train_seconds if train_seconds > 0 else 0.0,
                       checkpoint=last_ckpt)


# --------------------------------------------------------------------------- inference


def feather_weights(masked: np.ndarray, feather: float) -> np.ndarray:
    """Weight of the generated value: 0 outside the mask, ``min(1, d / feather)`` inside it,
    ``d`` = Euclidean distance (pixels) to the nearest unmasked pixel (1 next to the edge)."""
    masked = np.asarray(masked, dtype=bool)
    if feather <= 0 or masked.all():
        return masked.astype(np.float64)
    from scipy.ndimage import distance_transform_edt

    d = distance_transform_edt(masked)
    return np.clip(d / float(feather), 0.0, 1.0)


def _as_aux_list(aux) -> list:
    if aux is None:
        return []
    if isinstance(aux, RasterInfo):
        aux = [aux]
    out = []
    for a in aux:
        if isinstance(a, RasterInfo):
            out.append((a, list(range(1, a.band_count + 1))))
        else:
            info, bands = a
            out.append((info, parse_bands(bands, info.band_count, info.name)))
    return out


def _coarse_fill_prior(src: RasterInfo, bands, mask: RasterInfo, mask_values, stats: dict, norm: dict,
                       size: int = 512) -> str:
    """A whole-raster fill of the masked pixels at coarse resolution, as a lazily upsampled VRT.

    The fill-residual generator fills masked pixels from the known pixels of its tile; a tile
    inside a large cloud has none. This prior (normalised values, read decimated to at most
    ``size`` pixels a side, filled by :func:`networks.smooth_fill`) gives such tiles the fill
    of their wider surroundings. It lives in GDAL's memory file system and is upsampled
    bilinearly block by block when the tiler reads it, so memory stays bounded.
    """
    import torch
    from osgeo import gdal

    from .networks import smooth_fill

    scale = min(1.0, size / max(src.width, src.height))
    w, h = max(1, round(src.width * scale)), max(1, round(src.height * scale))
    ds, dm = open_raster(src.path, src.name), open_raster(mask.path, mask.name)
    img = np.stack([ds.GetRasterBand(b).ReadAsArray(buf_xsize=w, buf_ysize=h).astype(np.float64) for b in bands])
    valid = valid_mask(img, [src.nodata[b - 1] for b in bands])
    known = valid & ~np.isin(dm.GetRasterBand(1).ReadAsArray(buf_xsize=w, buf_ysize=h), mask_values)
    xn = normalize(img, stats, norm)
    xn[:, ~known] = 0.0
    with torch.no_grad():
        filled = smooth_fill(torch.from_numpy(xn.astype(np.float32))[None],
                             torch.from_numpy(known.astype(np.float32))[None, None], iterations=64)[0].numpy()
    tag = uuid.uuid4().hex[:8]
    small = gdal.GetDriverByName("GTiff").Create(f"/vsimem/cloudfree_prior_{tag}.tif", w, h, len(bands),
                                                 gdal.GDT_Float32)
    gt = src.geotransform
    small.SetGeoTransform((gt[0], gt[1] * src.width / w, gt[2], gt[3], gt[4], gt[5] * src.height / h))
    for i in range(len(bands)):
        small.GetRasterBand(i + 1).WriteArray(filled[i])
    small.FlushCache()
    path = f"/vsimem/cloudfree_prior_{tag}.vrt"
    gdal.Translate(path, small, format="VRT", width=src.width, height=src.height, resampleAlg="bilinear")
    return path


def remove_clouds(src: RasterInfo, out_path: str, model_path: str, *, bands=None, mask: RasterInfo | None = None,
                  mask_values=(1, 2), aux=None, tile: int | None = None, overlap: int = 32, batch_size: int = 4,
                  device: str = "auto", feather: float | None = None, progress: Progress = None,
                  cancelled: CancelCheck = None) -> dict:
    """Replace clouds in ``src`` with generated pixels; write ``out_path`` on ``src``'s grid.

    ``bands``: the bands of ``src`` the model expects (default: all). ``mask``: a raster on
    ``src``'s grid whose ``mask_values`` mark clouds/shadows; only those pixels change, with a
    feathered transition inside the mask, and all other pixels are copied bit-identically.
    Without a mask every pixel is generated (a model with a mask channel then needs a mask).
    ``aux``: auxiliary rasters (RasterInfo or ``(RasterInfo, bands)``) on ``src``'s grid, as
    many channels as the model was trained with. Returns a summary dict.
    """
    import torch

    from .runtime import describe_device, select_device
    from .tiling import run_tiled
    from .weights import load_model, read_metadata

    check_cancelled(cancelled)
    meta = read_metadata(model_path)
    if meta.task != TASK:
        raise ModelFileError(f"Model file '{os.path.basename(model_path)}' is a '{meta.task}' model; "
                             f"a '{TASK}' model is needed here.")
    bands = parse_bands(bands, src.band_count, src.name)
    dev = select_device(device)
    model, meta = load_model(model_path, task=TASK, band_count=len(bands), layer=src.name, device=dev)
    model.eval()  # dropout off, deterministic (see module docstring)
    # files written before "beyond_clip" existed clipped their inputs
    norm = {**DEFAULT_NORMALIZATION, "beyond_clip": "clip", **(meta.normalization or {})}
    if norm.get("scheme") != NORMALIZATION_SCHEME:
        raise ModelFileError(f"Model '{os.path.basename(model_path)}' uses normalisation "
                             f"'{norm.get('scheme')}', which this CloudFree does not know.")
    uses_mask = "cloud_mask" in meta.extra_channels
    aux_list = _as_aux_list(aux)
    n_aux_model = sum(1 for c in meta.extra_channels if str(c).startswith("aux:"))
    n_aux = sum(len(b) for _, b in aux_list)
    if n_aux != n_aux_model:
        raise InputError(f"Model '{os.path.basename(model_path)}' was trained with {n_aux_model} auxiliary "
                         f"channel(s); {n_aux} were given.")
    if uses_mask and mask is None:
        raise InputError(f"Model '{os.path.basename(model_path)}' takes the cloud mask as an input channel; "
                         "give a cloud mask layer.")
    grid = [src] + ([mask] if mask is not None else []) + [a for a, _ in aux_list]
    check_same_grid(grid)
    depth = int(meta.hyperparameters.get("depth", 8))
    tile = int(tile or meta.tile_size)
    if tile % (2 ** depth):
        raise InputError(f"Tile size {tile} must be a multiple of {2 ** depth} for this model.")
    if not 0 <= overlap < tile:
        raise InputError(f"Overlap {overlap} must be between 0 and the tile size {tile}.")
    if src.width < tile or src.height < tile:
        raise InputError(f"Layer '{src.name}' ({src.width}x{src.height} px) is smaller than one {tile}-pixel tile; "
                         f"choose a smaller tile size (a multiple of {2 ** depth}).")
    mask_values = np.asarray([float(v) for v in mask_values])

    stats = image_statistics(src, bands, mask=mask, mask_values=mask_values, normalization=norm)
    aux_stats = [image_statistics(a, b, normalization=norm) for a, b in aux_list]
    nb = len(bands)
    fill_residual = meta.architecture == GENERATORS["fill_residual"]
    if feather is None:  # the fill already meets the clear pixels at the mask edge: no blending needed
        feather = 0.0 if fill_residual else 8.0
    prior_path = None
    if fill_residual and mask is not None:
        prior_path = _coarse_fill_prior(src, bands, mask, mask_values, stats, norm)

    def fn(batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
        check_cancelled(cancelled)
        x_img = normalize(batch[:, :nb].astype(np.float64), stats, norm)
        x_img[np.broadcast_to(~valid[:, None], x_img.shape)] = 0.0
        parts = [x_img]
        pos = nb
        if mask is not None:
            m = np.isin(batch[:, pos], mask_values)
            pos += 1
        else:
            m = np.zeros(valid.shape, dtype=bool)
        if uses_mask:
            parts.append((m | ~valid)[:, None].astype(np.float32))
        for (a, ab), st in zip(aux_list, aux_stats):
            parts.append(normalize(batch[:, pos:pos + len(ab)].astype(np.float64), st, norm))
            pos += len(ab)
        x = torch.from_numpy(np.concatenate(parts, axis=1)).to(dev)
        prior = None
        if prior_path is not None:
            prior = torch.from_numpy(np.ascontiguousarray(batch[:, pos:pos + nb], dtype=np.float32)).to(dev)
        with torch.no_grad():
            y = (model(x, prior) if prior is not None else model(x)).float().cpu().numpy()
        return denormalize(y, stats, norm).astype(np.float32)

    extra = ([(mask, [1])] if mask is not None else []) + list(aux_list)
    if prior_path is not None:
        extra.append((raster_info(prior_path, "coarse fill"), list(range(1, nb + 1))))
    counters = {"masked": 0, "valid": 0}
    postprocess = None
    if mask is not None:
        ds_src = open_raster(src.path, src.name)
        ds_mask = open_raster(mask.path, mask.name)
        margin = int(math.ceil(feather)) + 1

        def postprocess(blended, y0, valid_rows):
            rows = blended.shape[1]
            a0, a1 = max(0, y0 - margin), min(src.height, y0 + rows + margin)
            m = np.isin(read_window(ds_mask, (0, a0, src.width, a1 - a0), [1], dtype=np.float64)[0], mask_values)
            alpha = feather_weights(m, feather)[y0 - a0:y0 - a0 + rows]
            orig = read_window(ds_src, (0, y0, src.width, rows), bands, dtype=np.float64)
            out = orig.copy()
            sel = alpha > 0
            out[:, sel] = alpha[sel] * blended[:, sel] + (1.0 - alpha[sel]) * orig[:, sel]
            counters["masked"] += int((sel & valid_rows).sum())
            counters["valid"] += int(valid_rows.sum())
            return out

    descriptions = [src.descriptions[b - 1] if b - 1 < len(src.descriptions) else "" for b in bands]
    t0 = time.perf_counter()
    try:
        run_tiled(fn, src, out_path, bands=bands, extra=extra, out_bands=nb, out_dtype=src.dtype, tile=tile,
                  overlap=overlap, batch_size=batch_size, descriptions=descriptions, postprocess=postprocess,
                  progress=progress, cancelled=cancelled)
    finally:
        if prior_path is not None:
            from osgeo import gdal

            gdal.Unlink(prior_path)
            gdal.Unlink(prior_path.replace(".vrt", ".tif"))
    return {
        "output": out_path,
        "model": model_path,
        "bands": bands,
        "tile": tile,
        "overlap": overlap,
        "device": describe_device(dev),
        "masked_pixels": counters["masked"] if mask is not None else None,
        "valid_pixels": counters["valid"] if mask is not None else None,
        "normalization": {"scheme": NORMALIZATION_SCHEME, **stats},
        "seconds": time.perf_counter() - t0,
    }


# --------------------------------------------------------------------------- report


def _png_base64(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def report_html(history: dict, samples: list, path: str, *, rgb=(2, 1, 0), title: str = "CloudFree cloud removal training") -> str:
    """Self-contained HTML: loss curves, validation curves and (cloudy, generated, clear) triptychs.

    ``rgb``: indices (0-based, in the model's band order) shown as red, green, blue; with fewer
    bands the first band is shown in grey. Needs matplotlib.
    """
    # the object-oriented API only: pyplot (and its global backend switch) is never touched,
    # so this is safe inside QGIS's Python
    from matplotlib.figure import Figure

    def subplots(n, size):
        fig = Figure(figsize=size)
        return fig, fig.subplots(1, n)

    imgs = []
    fig, ax = subplots(2, (10, 3.2))
    s = history.get("step", [])
    ax[0].plot(s, history.get("loss_g_l1", []), lw=0.8)
    ax[0].set_title("generator L1 (network space)")
    ax[0].set_xlabel("step")
    ax[1].plot(s, history.get("loss_g_gan", []), lw=0.8, label="G GAN")
    ax[1].plot(s, history.get("loss_d", []), lw=0.8, label="D")
    ax[1].legend()
    ax[1].set_title("adversarial losses")
    ax[1].set_xlabel("step")
    imgs.append(("Losses", _png_base64(fig)))
    val = history.get("val", [])
    if val:
        fig, ax = subplots(3, (12, 3.2))
        vs = [v["step"] for v in val]
        for a, key in zip(ax, ("l1", "psnr", "ssim")):
            a.plot(vs, [v.get(key, float("nan")) for v in val], marker="o", ms=3)
            a.set_title(f"validation {key}")
            a.set_xlabel("step")
        imgs.append(("Validation", _png_base64(fig)))

    def show(a):
        a = np.asarray(a)
        if a.shape[0] >= 3 and max(rgb) < a.shape[0]:
            im = np.stack([a[i] for i in rgb], axis=-1)
            lo, hi = np.percentile(im, 1), np.percentile(im, 99)
            return np.clip((im - lo) / max(hi - lo, 1e-6), 0, 1)
        return a[0]

    for i, smp in enumerate(samples):
        keys = [k for k in ("cloudy", "generated", "composite", "clear") if k in smp]
        fig, ax = subplots(len(keys) + 1, (3 * (len(keys) + 1), 3.2))
        for a, key in zip(ax, keys):
            a.imshow(show(smp[key]), cmap="gray")
            a.set_title("generated in mask" if key == "composite" else key)
            a.axis("off")
        ax[-1].imshow(smp.get("mask", np.zeros(np.asarray(smp["clear"]).shape[1:])), cmap="gray", vmin=0, vmax=1)
        ax[-1].set_title("mask")
        ax[-1].axis("off")
        imgs.append((f"Validation sample {i + 1}", _png_base64(fig)))
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title}</title></head><body>",
             f"<h1>{title}</h1>"]
    if val:
        last = val[-1]
        parts.append(f"<p>Last validation (step {last['step']}): L1 {last.get('l1', float('nan')):.4f}, "
                     f"PSNR {last.get('psnr', float('nan')):.2f} dB, SSIM {last.get('ssim', float('nan')):.3f}</p>")
    for caption, b64 in imgs:
        parts.append(f"<h2>{caption}</h2><img src='data:image/png;base64,{b64}'/>")
    parts.append("</body></html>")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path
