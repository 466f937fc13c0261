"""Multi-date fusion: one cloud-free image from K co-registered dates of the same place.

Method: Rafique, Blanton and Jacobs, "Weakly Supervised Fusion of Multiple Overhead Images"
(CVPRW 2019), with the baselines analysts expect (per-pixel mean, median, best pixel).

Quality network
    A small 3x3 U-Net (:class:`networks.UNet`, default widths 32, 64, 128, 128 / 64, 32, 16, 16,
    the paper's quarter-width quality net, ``norm="none"``) is applied to every date with
    shared weights and gives one logit per pixel per date. The logits go through a softmax
    *across dates*; the fused image is ``sum_k w_k * date_k``.

    Band-count independence (decision): the network does not see the C bands of a date at
    once. It sees *one band at a time* (shared weights over bands) and the per-band logits are
    averaged, so one shipped model works for 1-band NDVI and for 4- or 6-band reflectance.
    Each band image is given as two channels: (0) the normalised value of the date and
    (1) its deviation from the per-pixel median of all valid dates of the same band. The
    second channel is an extension of the paper (which scores each date in isolation): it
    lets a small net tell a cloud (an outlier against the other dates) from a dark field.
    ``metadata.normalization["band_mode"] = "per_band_shared"`` records this; such a model
    accepts any band count. (``metadata.bands`` names what it was trained on.)

    Masks in the softmax: pixels that are nodata in a date, and pixels a supplied cloud mask
    flags, get a logit of ``-inf``, so their weight is exactly 0. Fallbacks, per pixel: if
    every valid date is flagged by the mask, the mask is ignored there and the softmax runs
    over the valid dates (a cloudy observation beats none); if no date is valid, the fused
    pixel is nodata (NaN) and all weights are 0.

Cloud polarity (decision, measured)
    A per-band network must know which way a cloud pushes a band: clouds *lower* NDVI (and
    other vegetation indices) but *raise* reflectance. The model stores the convention it was
    trained with (``normalization["cloud_polarity"]``; the shipped NDVI model: ``low``). At
    inference ``cloud_polarity`` says what the input is: ``low`` (index-like), ``high``
    (reflectance) or ``auto`` = ``low`` for one band and ``high`` for two or more bands. When
    the input's polarity differs from the model's, the *network input* is negated (the fused
    values always come from the original dates). On 6-band reflectance the NDVI-trained model
    without this flip was worse than the plain mean; with it, 2-4x better (benchmarks/fusion.py).

Normalisation (scheme ``per_band_all_dates_percentile``, stored in the metadata)
    For every band, the p2 and p98 percentiles over all dates' valid pixels (not flagged by
    the mask when masks are given; a decimated read of at most ``sample`` x ``sample`` pixels
    per date for rasters) map linearly to -0.8 and +0.8, clipped to [-2, 2] (same maths as
    :mod:`cloud_removal`). The map is linear and the weights sum to one, so fusing in network
    space and mapping back equals fusing the original values: outputs keep the input's units.

Baselines (all honour nodata and masks with the same fallbacks as above)
    ``mean``: average of the allowed dates. ``median``: per band median of the allowed dates;
    its weight map puts 1 on the median date (0.5 on the two middle dates for an even count),
    ranked by the first band. ``best``: per pixel the date with the lowest cloud probability;
    without probabilities, a date not flagged by the mask; ties go to the *last* date in input
    order (the most recent one when inputs are chronological).

Training (:func:`train_fusion`), both networks end to end
    ``weak``: the fused image (in network space) goes through a segmentation U-Net and a
    class-weighted cross-entropy against land-cover labels is the only loss (no cloud labels,
    no clean images). Class weights are ``(median frequency / frequency)`` over the training
    block; label values in ``ignore_labels`` (0 = no data for eo-learn land cover) are ignored.
    ``self``: synthetic clouds and gaps (:func:`clouds.simulate_clouds_array`) on K copies
    of a clear date; the loss is L1 between the fused and the clear image. ``both``: the sum.
    Adam, lr 1e-4, halved every 5 epochs (``steps_per_epoch`` steps each) by default.
    The bottom ``holdout_rows`` rows of every raster are never used for training (validation
    block) and ``holdout_dates`` are never used as clean targets.

Block-wise inference (:func:`fuse_rasters`)
    The raster is processed in windows of ``tile - overlap`` pixels read with a halo of
    ``overlap // 2`` pixels on each side (mirrored outside the raster) for the quality net;
    only the window's core is written, so memory is bounded by ``K x C x tile^2`` plus the
    network, which runs over the dates in chunks.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np

from .errors import InputError, ModelFileError
from .grids import align_to_reference, check_same_grid
from .raster import RasterInfo, RasterWriter, open_raster, parse_bands, raster_info, read_padded, valid_mask
from .runtime import CancelCheck, Progress, check_cancelled, report

TASK = "fusion"
SEG_TASK = "fusion_segmentation"
METHODS = ("quality", "mean", "median", "best")
DEFAULT_MODEL_FILE = "fusion_default.safetensors"

NORMALIZATION = {
    "scheme": "per_band_all_dates_percentile",
    "low_percentile": 2.0,
    "high_percentile": 98.0,
    "target": 0.8,
    "clip": 2.0,
    "sample": 512,
    "band_mode": "per_band_shared",
    "features": ["normalised value", "deviation from the per-pixel median of the valid dates"],
    "cloud_polarity": "low",
}
POLARITIES = ("auto", "low", "high")

QUALITY_NET = {"encoder": [32, 64, 128, 128], "decoder": [64, 32, 16, 16], "norm": "none"}
SEG_NET = {"encoder": [32, 64, 128], "decoder": [64, 32], "norm": "batch"}


# --------------------------------------------------------------------------- normalisation


def band_statistics(dates: np.ndarray, allowed: np.ndarray, norm: dict | None = None) -> dict:
    """Per-band p_low/p_high over the allowed pixels of all dates; ``dates`` (K, C, H, W)."""
    norm = {**NORMALIZATION, **(norm or {})}
    low, high = [], []
    for c in range(dates.shape[1]):
        v = dates[:, c][allowed & np.isfinite(dates[:, c])]
        if v.size < 16:
            v = dates[:, c][np.isfinite(dates[:, c])]
        if v.size == 0:
            lo, hi = 0.0, 1.0
        else:
            lo, hi = np.percentile(v.astype(np.float64), [norm["low_percentile"], norm["high_percentile"]])
        low.append(float(lo))
        high.append(float(hi))
    return {"low": low, "high": high}


def _mid_half(stats: dict):
    lo = np.asarray(stats["low"], dtype=np.float64)
    hi = np.asarray(stats["high"], dtype=np.float64)
    mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    return mid, np.maximum(half, np.maximum(np.abs(mid) * 1e-3, 1e-6))


def normalize(dates: np.ndarray, stats: dict, norm: dict | None = None) -> np.ndarray:
    """(K, C, H, W) values -> network space; non-finite -> 0."""
    norm = {**NORMALIZATION, **(norm or {})}
    mid, half = _mid_half(stats)
    y = (dates - mid[None, :, None, None]) / half[None, :, None, None] * norm["target"]
    return np.nan_to_num(np.clip(y, -norm["clip"], norm["clip"]), nan=0.0).astype(np.float32)


def denormalize(y: np.ndarray, stats: dict, norm: dict | None = None) -> np.ndarray:
    """(C, H, W) network space -> values (float64)."""
    norm = {**NORMALIZATION, **(norm or {})}
    mid, half = _mid_half(stats)
    return y.astype(np.float64) / norm["target"] * half[:, None, None] + mid[:, None, None]


# --------------------------------------------------------------------------- quality model


def quality_hyperparameters(encoder=None, decoder=None, norm=None) -> dict:
    return {"in_channels": 2, "out_channels": 1,
            "encoder": list(encoder or QUALITY_NET["encoder"]), "decoder": list(decoder or QUALITY_NET["decoder"]),
            "norm": norm or QUALITY_NET["norm"]}


def build_quality_net(**kw):
    from .networks import UNet
    return UNet(**quality_hyperparameters(**kw))


def _pad_multiple(x, multiple: int):
    """Replicate-pad the last two dims of a torch tensor up to a multiple; returns (x, (h, w))."""
    import torch.nn.functional as F
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def quality_features(xn, valid):
    """Network input for every (date, band): ``xn`` (..., K, C, H, W), ``valid`` (..., K, H, W) bool tensors.

    Returns (..., K, C, 2, H, W): the normalised value and its deviation from the per-pixel
    median of the valid dates (both 0 where the date is not valid).
    """
    import torch
    v = valid.unsqueeze(-3)  # (..., K, 1, H, W)
    nan = torch.full_like(xn, float("nan"))
    med = torch.nanmedian(torch.where(v, xn, nan), dim=-4, keepdim=True).values
    med = torch.nan_to_num(med, nan=0.0)
    x0 = torch.where(v, xn, torch.zeros_like(xn))
    dev = torch.where(v, xn - med, torch.zeros_like(xn))
    return torch.stack([x0, dev], dim=-3)


def quality_logits(net, xn, valid, chunk: int = 16):
    """Logits (..., K, H, W) of the shared quality net, averaged over bands."""
    import torch
    feats = quality_features(xn, valid)  # (..., K, C, 2, H, W)
    lead = feats.shape[:-3]
    flat = feats.reshape(-1, 2, *feats.shape[-2:])
    levels = getattr(net, "levels", 3)
    flat, (h, w) = _pad_multiple(flat, 2 ** levels)
    if chunk and flat.shape[0] > chunk and not torch.is_grad_enabled():
        out = torch.cat([net(flat[i:i + chunk]) for i in range(0, flat.shape[0], chunk)])
    else:
        out = net(flat)
    out = out[..., :h, :w].reshape(*lead, h, w)  # (..., K, C, H, W)
    return out.mean(dim=-3)


def masked_softmax(logits, valid, clear=None):
    """Softmax across dates (dim -3) with -inf at disallowed pixels; exact zeros there.

    ``valid`` (..., K, H, W): the date holds data; ``clear``: not flagged by a cloud mask.
    Where every valid date is flagged, the flags are ignored; where no date is valid all
    weights are 0.
    """
    import torch
    allowed = valid if clear is None else (valid & clear)
    none = ~allowed.any(dim=-3, keepdim=True)
    allowed = torch.where(none, valid, allowed)
    l = logits.masked_fill(~allowed, float("-inf"))
    w = torch.softmax(l, dim=-3)
    return torch.where(allowed, w, torch.zeros_like(w))


@dataclass
class FusionModel:
    """A loaded quality network and its metadata."""

    net: object
    meta: object = None
    device: object = "cpu"

    @classmethod
    def load(cls, path: str | None = None, device="cpu") -> "FusionModel":
        from .weights import load_model, shipped_model
        path = path or shipped_model(DEFAULT_MODEL_FILE)
        if not os.path.isfile(path):
            raise ModelFileError(f"Fusion model '{path}' does not exist; train one with train_fusion or "
                                 "choose a baseline method (mean, median, best).")
        net, meta = load_model(path, task=TASK, device=device)
        return cls(net=net, meta=meta, device=device)

    def check_bands(self, band_count: int, layer: str = "input") -> None:
        if self.meta is None:
            return
        if self.meta.normalization.get("band_mode") == "per_band_shared":
            return
        if band_count != self.meta.band_count:
            raise ModelFileError(f"The fusion model expects {self.meta.band_count} band(s) but layer '{layer}' "
                                 f"provides {band_count}.")


# --------------------------------------------------------------------------- fusion of arrays


def _allowed(valid: np.ndarray, clear: np.ndarray | None) -> np.ndarray:
    if clear is None:
        return valid
    allowed = valid & clear
    none = ~allowed.any(axis=0)
    return np.where(none[None], valid, allowed)


def resolve_polarity(polarity: str, band_count: int) -> str:
    if polarity not in POLARITIES:
        raise InputError(f"Unknown cloud polarity '{polarity}': use auto, low (NDVI-like: clouds lower the "
                         "value) or high (reflectance: clouds raise it).")
    if polarity == "auto":
        return "low" if band_count == 1 else "high"
    return polarity


def _fuse_block(dates, valid, cloud, prob, method, model, stats, device, use_mask_in_quality=True,
                polarity: str = "auto"):
    """Fuse one block: dates (K, C, h, w) float32 with anything at invalid pixels."""
    K, C, h, w = dates.shape
    clear = None if cloud is None else ~cloud
    any_valid = valid.any(axis=0)
    filled = np.where(valid[:, None], dates, 0).astype(np.float32)
    if method == "quality":
        import torch
        norm = model.meta.normalization if model.meta is not None else NORMALIZATION
        xn = normalize(np.where(valid[:, None], dates, np.nan), stats, norm)
        if resolve_polarity(polarity, C) != norm.get("cloud_polarity", "low"):
            xn = -xn
        with torch.no_grad():
            xt = torch.from_numpy(xn).to(device)
            vt = torch.from_numpy(valid).to(device)
            ct = torch.from_numpy(clear).to(device) if (clear is not None and use_mask_in_quality) else None
            logits = quality_logits(model.net, xt, vt)
            weights = masked_softmax(logits, vt, ct).cpu().numpy().astype(np.float32)
        fused = np.einsum("khw,kchw->chw", weights, filled)
    elif method == "mean":
        allowed = _allowed(valid, clear)
        n = allowed.sum(axis=0)
        weights = (allowed / np.maximum(n, 1)[None]).astype(np.float32)
        fused = np.einsum("khw,kchw->chw", weights, filled)
    elif method == "median":
        allowed = _allowed(valid, clear)
        vals = np.where(allowed[:, None], dates, np.nan)
        with np.errstate(all="ignore"):
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                fused = np.nanmedian(vals, axis=0)
        key = np.where(allowed, np.nan_to_num(dates[:, 0], nan=0.0), np.inf)
        order = np.argsort(key, axis=0, kind="stable")
        n = allowed.sum(axis=0)
        lo, hi = np.maximum(n - 1, 0) // 2, n // 2
        weights = np.zeros((K, h, w), dtype=np.float32)
        rows, cols = np.indices((h, w))
        ilo = np.take_along_axis(order, lo[None], 0)[0]
        ihi = np.take_along_axis(order, hi[None], 0)[0]
        weights[ilo, rows, cols] += 0.5
        weights[ihi, rows, cols] += 0.5
        weights[:, n == 0] = 0
    elif method == "best":
        if prob is not None:
            score = prob.astype(np.float64)
        elif cloud is not None:
            score = cloud.astype(np.float64)
        else:
            score = np.zeros((K, h, w))
        score = np.where(valid, score, np.inf)
        rev = score[::-1]
        idx = K - 1 - np.argmin(rev, axis=0)  # ties -> the last date
        weights = np.zeros((K, h, w), dtype=np.float32)
        rows, cols = np.indices((h, w))
        weights[idx, rows, cols] = 1.0
        weights[:, ~any_valid] = 0
        fused = np.einsum("khw,kchw->chw", weights, filled)
    else:
        raise InputError(f"Unknown fusion method '{method}': use {', '.join(METHODS)}.")
    fused = np.asarray(fused, dtype=np.float32)
    fused[:, ~any_valid] = np.nan
    return fused, weights


def _core_windows(length: int, core: int):
    return [(s, min(core, length - s)) for s in range(0, length, core)]


def fuse_arrays(dates: np.ndarray, valid: np.ndarray | None = None, method: str = "quality", model=None, *,
                cloud_mask: np.ndarray | None = None, cloud_probability: np.ndarray | None = None,
                stats: dict | None = None, device="cpu", tile: int = 256, overlap: int = 32,
                use_mask_in_quality: bool = True, cloud_polarity: str = "auto") -> tuple:
    """Fuse ``dates`` (K, C, H, W) into ``(fused (C, H, W) float32, weights (K, H, W) float32)``.

    ``valid`` (K, H, W) bool: the date holds data (default: every band finite).
    ``cloud_mask`` (K, H, W) bool: True where a date is cloudy (weight 0 unless every valid
    date is cloudy there). ``cloud_probability`` (K, H, W): used by ``best`` (lower wins).
    ``model``: a :class:`FusionModel`, a model path, or None for the shipped default
    (``quality`` only). Pixels without any valid date are NaN in ``fused``.
    ``stats``: normalisation statistics (default: computed from the allowed pixels).
    Large arrays are processed in ``tile`` x ``tile`` windows with an ``overlap // 2`` halo.
    ``cloud_polarity``: ``low`` (NDVI-like), ``high`` (reflectance) or ``auto`` (see module docstring).
    """
    dates = np.asarray(dates, dtype=np.float32)
    if dates.ndim == 3:
        dates = dates[:, None]
    if dates.ndim != 4:
        raise InputError(f"dates must be (K, C, H, W); got shape {dates.shape}")
    K = dates.shape[0]
    if K < 2:
        raise InputError(f"Fusion needs at least 2 dates; got {K}.")
    if method not in METHODS:
        raise InputError(f"Unknown fusion method '{method}': use {', '.join(METHODS)}.")
    if valid is None:
        valid = np.isfinite(dates).all(axis=1)
    valid = np.asarray(valid, dtype=bool) & np.isfinite(dates).all(axis=1)
    cloud = None if cloud_mask is None else np.asarray(cloud_mask, dtype=bool)
    prob = None if cloud_probability is None else np.asarray(cloud_probability, dtype=np.float32)
    if method == "quality":
        import torch
        if model is None or isinstance(model, str):
            model = FusionModel.load(model, device=device)
        elif not isinstance(model, FusionModel):
            model = FusionModel(net=model)
        model.check_bands(dates.shape[1])
        device = torch.device(device) if isinstance(device, str) else device
        model.net.to(device).eval()
        if stats is None:
            stats = band_statistics(dates, _allowed(valid, None if cloud is None else ~cloud),
                                    model.meta.normalization if model.meta is not None else None)
    _, C, H, W = dates.shape
    if method != "quality" or (H <= tile and W <= tile):
        return _fuse_block(dates, valid, cloud, prob, method, model, stats, device, use_mask_in_quality,
                           cloud_polarity)
    halo = overlap // 2
    core = tile - 2 * halo
    fused = np.empty((C, H, W), dtype=np.float32)
    weights = np.empty((K, H, W), dtype=np.float32)
    pad4 = ((0, 0), (0, 0), (halo, halo), (halo, halo))
    pad3 = pad4[1:]
    pd = np.pad(np.where(valid[:, None], dates, 0), pad4, mode="reflect")
    pv = np.pad(valid, pad3, mode="reflect")
    pc = None if cloud is None else np.pad(cloud, pad3, mode="reflect")
    for y0, hh in _core_windows(H, core):
        for x0, ww in _core_windows(W, core):
            sl = (slice(y0, y0 + hh + 2 * halo), slice(x0, x0 + ww + 2 * halo))
            f, wt = _fuse_block(pd[(slice(None), slice(None)) + sl], pv[(slice(None),) + sl],
                                None if pc is None else pc[(slice(None),) + sl], None, method, model, stats,
                                device, use_mask_in_quality, cloud_polarity)
            fused[:, y0:y0 + hh, x0:x0 + ww] = f[:, halo:halo + hh, halo:halo + ww]
            weights[:, y0:y0 + hh, x0:x0 + ww] = wt[:, halo:halo + hh, halo:halo + ww]
    return fused, weights


# --------------------------------------------------------------------------- fusion of rasters


def _as_info(x) -> RasterInfo:
    return x if isinstance(x, RasterInfo) else raster_info(str(x))


def _raster_statistics(infos, bands, masks, mask_values, norm) -> dict:
    sample = int(norm.get("sample", 512))
    per_band = [[] for _ in bands]
    for i, info in enumerate(infos):
        ds = open_raster(info.path, info.name)
        bw, bh = min(sample, info.width), min(sample, info.height)
        data = np.stack([ds.GetRasterBand(int(b)).ReadAsArray(buf_xsize=bw, buf_ysize=bh).astype(np.float64)
                         for b in bands])
        ok = valid_mask(data, [info.nodata[b - 1] for b in bands])
        if masks is not None:
            mds = open_raster(masks[i].path, masks[i].name)
            m = mds.GetRasterBand(1).ReadAsArray(buf_xsize=bw, buf_ysize=bh)
            ok &= ~np.isin(m, np.asarray(mask_values))
        for c in range(len(bands)):
            per_band[c].append(data[c][ok])
    low, high = [], []
    for c in range(len(bands)):
        v = np.concatenate(per_band[c]) if per_band[c] else np.zeros(0)
        if v.size == 0:
            lo, hi = 0.0, 1.0
        else:
            lo, hi = np.percentile(v, [norm["low_percentile"], norm["high_percentile"]])
        low.append(float(lo))
        high.append(float(hi))
    return {"low": low, "high": high}


def fuse_rasters(inputs: Sequence, out_path: str, *, method: str = "quality", masks: Optional[Sequence] = None,
                 mask_values: Sequence = (1,), cloud_probability: Optional[Sequence] = None,
                 model_path: str | None = None, align: bool = False, weights_path: str | None = None,
                 bands=None, tile: int = 256, overlap: int = 32, device: str = "auto",
                 use_mask_in_quality: bool = True, cloud_polarity: str = "auto", progress: Progress = None,
                 cancelled: CancelCheck = None) -> dict:
    """Fuse K >= 2 co-registered dates into ``out_path`` (float32, NaN = no date had data).

    ``masks``: one cloud-mask raster per date (pixels whose value is in ``mask_values`` are
    cloudy); ``cloud_probability``: one raster per date (lower = clearer, used by ``best``).
    Grids must match the first date (:class:`GridMismatchError`) unless ``align`` is True,
    in which case every raster is warped onto the first date's grid (bilinear for images,
    nearest for masks and probabilities) as temporary VRTs. ``weights_path``: optional
    float32 raster with one band per date (the fusion weight of that date).
    ``cloud_polarity``: ``low`` (NDVI-like), ``high`` (reflectance), ``auto`` (1 band: low, else high).
    Returns a summary dict.
    """
    t0 = time.perf_counter()
    if method not in METHODS:
        raise InputError(f"Unknown fusion method '{method}': use {', '.join(METHODS)}.")
    infos = [_as_info(x) for x in inputs]
    K = len(infos)
    if K < 2:
        raise InputError(f"Fusion needs at least 2 dates; got {K}.")
    masks = None if not masks else [_as_info(x) for x in masks]
    probs = None if not cloud_probability else [_as_info(x) for x in cloud_probability]
    for name, group in (("cloud masks", masks), ("cloud probabilities", probs)):
        if group is not None and len(group) != K:
            raise InputError(f"Give one raster of {name} per date: {len(group)} for {K} dates.")
    ref = infos[0]
    band_list = parse_bands(bands, ref.band_count, ref.name)
    for info in infos[1:]:
        parse_bands(band_list, info.band_count, info.name)
    mask_values = np.asarray(list(mask_values))
    resolve_polarity(cloud_polarity, len(band_list))

    tmpdir = tempfile.TemporaryDirectory(prefix="cloudfree-fusion-") if align else None
    try:
        if align:
            infos = align_to_reference(infos, ref, tmpdir.name)
            if masks is not None:
                masks = align_to_reference(masks, ref, tmpdir.name, resampling="near")
            if probs is not None:
                probs = align_to_reference(probs, ref, tmpdir.name, resampling="near")
        check_same_grid(infos + (masks or []) + (probs or []))

        model, stats, torch_device = None, None, "cpu"
        if method == "quality":
            from .runtime import select_device
            torch_device = select_device(device)
            model = FusionModel.load(model_path, device=torch_device)
            model.check_bands(len(band_list), ref.name)
            stats = _raster_statistics(infos, band_list, masks, mask_values, model.meta.normalization)
        halo = overlap // 2 if method == "quality" else 0
        core = max(tile - 2 * halo, 1)
        dss = [open_raster(i.path, i.name) for i in infos]
        mds = [open_raster(i.path, i.name) for i in masks] if masks else None
        pds = [open_raster(i.path, i.name) for i in probs] if probs else None
        ys, xs = _core_windows(ref.height, core), _core_windows(ref.width, core)
        total, done = len(ys) * len(xs), 0
        C = len(band_list)
        no_data_pixels = 0
        weight_sum = np.zeros(K, dtype=np.float64)
        protect = [i.path for i in infos] + [i.path for i in (masks or []) + (probs or [])]
        descriptions = [ref.descriptions[b - 1] if b - 1 < len(ref.descriptions) and ref.descriptions[b - 1]
                        else f"band {b}" for b in band_list]
        out = RasterWriter(out_path, like=ref, band_count=C, dtype="float32", nodata=float("nan"),
                           descriptions=descriptions, protect=protect)
        wout = (RasterWriter(weights_path, like=ref, band_count=K, dtype="float32", nodata=None,
                             descriptions=[f"weight {i.name}" for i in infos], protect=protect)
                if weights_path else None)
        with out:
            try:
                for y0, hh in ys:
                    for x0, ww in xs:
                        check_cancelled(cancelled)
                        win = (x0 - halo, y0 - halo, ww + 2 * halo, hh + 2 * halo)
                        read = read_padded if halo else _read_plain
                        dates = np.empty((K, C, win[3], win[2]), dtype=np.float32)
                        valid = np.empty((K, win[3], win[2]), dtype=bool)
                        for k, (ds, info) in enumerate(zip(dss, infos)):
                            dates[k] = read(ds, win, band_list)
                            valid[k] = valid_mask(dates[k], [info.nodata[b - 1] for b in band_list])
                        cloud = None
                        if mds:
                            cloud = np.stack([np.isin(read(m, win, [1])[0], mask_values) for m in mds])
                        prob = np.stack([read(p, win, [1])[0] for p in pds]) if pds else None
                        fused, weights = _fuse_block(dates, valid, cloud, prob, method, model, stats, torch_device,
                                                     use_mask_in_quality, cloud_polarity)
                        core_sl = (slice(halo, halo + hh), slice(halo, halo + ww))
                        f = fused[(slice(None),) + core_sl]
                        wt = weights[(slice(None),) + core_sl]
                        no_data_pixels += int((~np.isfinite(f[0])).sum())
                        weight_sum += wt.reshape(K, -1).sum(axis=1)
                        out.write(f, x0, y0)
                        if wout is not None:
                            wout.write(wt, x0, y0)
                        done += 1
                        report(progress, done / total)
                if wout is not None:
                    wout.commit()
            except BaseException:
                if wout is not None:
                    wout.abort()
                raise
        dss.clear()
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()
    px = ref.width * ref.height
    return {"output": out_path, "weights": weights_path, "method": method, "dates": K, "bands": band_list,
            "pixels": px, "pixels_without_data": no_data_pixels,
            "mean_weight_per_date": (weight_sum / max(px, 1)).round(4).tolist(),
            "seconds": round(time.perf_counter() - t0, 3), "device": str(torch_device),
            "model": None if model is None else (model_path or DEFAULT_MODEL_FILE)}


def _read_plain(ds, window, bands):
    from .raster import read_window
    return read_window(ds, window, bands)


# --------------------------------------------------------------------------- training data


@dataclass
class FusionTrainConfig:
    """Everything a training run needs; stored (as JSON) in the model's metadata."""

    dates: list                                  # raster paths, one per date, same grid
    masks: Optional[list] = None                 # cloud mask per date (value in mask_values = cloud)
    mask_values: list = field(default_factory=lambda: [1])
    labels: Optional[str] = None                 # land-cover raster (weak supervision)
    class_weights: Optional[dict] = None         # {class value: weight}; others: median frequency / frequency
    ignore_labels: list = field(default_factory=lambda: [0])
    band_names: Optional[list] = None
    bands: Optional[list] = None
    mode: str = "both"                           # weak | self | both
    holdout_rows: int = 30                       # bottom rows never used for training
    holdout_dates: list = field(default_factory=list)   # date indices never used as clean targets
    clear_dates: Optional[list] = None           # date indices that are clear (default: mask all clear)
    k_min: int = 2
    k_max: int = 6
    weak_window: int = 8                         # weak mode: K dates among the nearest weak_window dates
    tile: int = 64
    batch_size: int = 4
    steps: int = 500
    steps_per_epoch: int = 100
    lr: float = 1e-4
    lr_halve_every_epochs: int = 5
    weak_weight: float = 1.0
    self_weight: float = 1.0
    coverage: tuple = (0.15, 0.6)
    missing: tuple = (0.0, 0.25)
    cloud_scale: tuple = (8.0, 40.0)
    cloud_value: Optional[tuple] = None          # e.g. NDVI clouds: (-0.03, 0.08); None: bright, from the image
    shadows: bool = False
    cloud_polarity: str = "auto"                 # low (NDVI-like), high (reflectance), auto: 1 band low
    encoder: list = field(default_factory=lambda: list(QUALITY_NET["encoder"]))
    decoder: list = field(default_factory=lambda: list(QUALITY_NET["decoder"]))
    seg_encoder: list = field(default_factory=lambda: list(SEG_NET["encoder"]))
    seg_decoder: list = field(default_factory=lambda: list(SEG_NET["decoder"]))
    val_every: int = 100
    seed: int = 0
    device: str = "cpu"
    num_threads: Optional[int] = None


@dataclass
class FusionTrainResult:
    model_path: str
    segmentation_path: Optional[str]
    steps: int
    history: dict
    samples: list
    metrics: dict
    seconds: float
    steps_per_second: float


def _read_all(info: RasterInfo, bands) -> np.ndarray:
    ds = open_raster(info.path, info.name)
    arr = read_padded(ds, (0, 0, info.width, info.height), bands)
    ds = None
    return arr


def _read_band1(info: RasterInfo) -> np.ndarray:
    ds = open_raster(info.path, info.name)  # keep the dataset alive while its band is read
    arr = ds.GetRasterBand(1).ReadAsArray()
    ds = None
    return arr


class SeriesData:
    """A co-registered time series held in memory (small rasters; training only)."""

    def __init__(self, cfg: FusionTrainConfig):
        infos = [raster_info(p) for p in cfg.dates]
        grids = list(infos)
        masks = [raster_info(p) for p in cfg.masks] if cfg.masks else None
        label_info = raster_info(cfg.labels) if cfg.labels else None
        check_same_grid(grids + (masks or []) + ([label_info] if label_info else []))
        ref = infos[0]
        self.bands = parse_bands(cfg.bands, ref.band_count, ref.name)
        self.dates = np.stack([_read_all(i, self.bands) for i in infos]).astype(np.float32)
        self.valid = np.stack([valid_mask(d, [i.nodata[b - 1] for b in self.bands])
                               for d, i in zip(self.dates, infos)])
        if masks:
            self.cloud = np.stack([np.isin(_read_band1(m), cfg.mask_values) for m in masks])
        else:
            self.cloud = np.zeros(self.valid.shape, dtype=bool)
        self.labels = None
        if label_info is not None:
            self.labels = _read_band1(label_info).astype(np.int64)
        K, C, H, W = self.dates.shape
        self.H, self.W = H, W
        self.train_rows = H - int(cfg.holdout_rows)
        if self.train_rows < cfg.tile:
            raise InputError(f"Only {self.train_rows} training rows for tiles of {cfg.tile} px.")
        if cfg.clear_dates is not None:
            clear = list(cfg.clear_dates)
        else:
            clear = [k for k in range(K) if not self.cloud[k].any() and self.valid[k].all()]
        self.clear_dates = clear
        self.train_clear = [k for k in clear if k not in set(cfg.holdout_dates)]
        tr = slice(0, self.train_rows)
        allowed = self.valid[:, tr] & ~self.cloud[:, tr]
        self.stats = band_statistics(self.dates[:, :, tr], allowed)
        self.norm_dates = normalize(np.where(self.valid[:, None], self.dates, np.nan), self.stats)
        self.class_values = []
        self.class_weights = []
        self.label_index = None
        if self.labels is not None:
            vals, counts = np.unique(self.labels[tr], return_counts=True)
            keep = [(v, c) for v, c in zip(vals, counts) if v not in set(cfg.ignore_labels)]
            self.class_values = [int(v) for v, _ in keep]
            freq = np.array([c for _, c in keep], dtype=np.float64)
            freq /= freq.sum()
            self.class_weights = (np.median(freq) / freq).tolist()
            for i, v in enumerate(self.class_values):  # the analyst's weights win over the automatic ones
                if cfg.class_weights and str(v) in {str(k) for k in cfg.class_weights}:
                    self.class_weights[i] = float({str(k): w for k, w in cfg.class_weights.items()}[str(v)])
            lut = {v: i for i, v in enumerate(self.class_values)}
            self.label_index = np.vectorize(lambda v: lut.get(int(v), -100))(self.labels).astype(np.int64)


def _cloud_copies(clean: np.ndarray, K: int, rng, cfg: FusionTrainConfig) -> tuple:
    """K noisy copies of ``clean`` (C, h, w): (copies (K, C, h, w) with NaN gaps, valid, cloud)."""
    from .clouds import CloudParams, simulate_clouds_array
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


def _augment(arrs, rng):
    k = int(rng.integers(0, 4))
    flip = bool(rng.integers(0, 2))
    res = []
    for a in arrs:
        if a is None:
            res.append(None)
            continue
        a = np.rot90(a, k, axes=(-2, -1))
        if flip:
            a = a[..., ::-1]
        res.append(np.ascontiguousarray(a))
    return res


def _self_batch(data: SeriesData, cfg, K, rng, rows=None, tile=None):
    """(xn (B,K,C,t,t), valid (B,K,t,t), target_n (B,C,t,t))"""
    tile = tile or cfg.tile
    r0, r1 = rows if rows is not None else (0, data.train_rows)
    xs, vs, ts = [], [], []
    for _ in range(cfg.batch_size):
        d = data.train_clear[int(rng.integers(len(data.train_clear)))]
        y = int(rng.integers(r0, r1 - tile + 1))
        x = int(rng.integers(0, data.W - tile + 1))
        clean = data.dates[d, :, y:y + tile, x:x + tile]
        copies, valid, _ = _cloud_copies(clean, K, rng, cfg)
        copies, valid, clean = _augment([copies, valid, clean], rng)
        xs.append(normalize(np.where(valid[:, None], copies, np.nan), data.stats))
        vs.append(valid)
        ts.append(normalize(clean[None], data.stats)[0])
    return np.stack(xs), np.stack(vs), np.stack(ts)


def _weak_batch(data: SeriesData, cfg, K, rng, tile=None):
    tile = tile or cfg.tile
    N = data.dates.shape[0]
    xs, vs, ls = [], [], []
    for _ in range(cfg.batch_size):
        centre = int(rng.integers(N))
        lo = max(0, min(centre - cfg.weak_window // 2, N - cfg.weak_window))
        pool = np.arange(lo, min(N, lo + max(cfg.weak_window, K)))
        idx = np.sort(rng.choice(pool, size=K, replace=False))
        y = int(rng.integers(0, data.train_rows - tile + 1))
        x = int(rng.integers(0, data.W - tile + 1))
        xn = data.norm_dates[idx, :, y:y + tile, x:x + tile]
        v = data.valid[idx, y:y + tile, x:x + tile]
        lab = data.label_index[y:y + tile, x:x + tile]
        xn, v, lab = _augment([xn, v, lab], rng)
        xs.append(xn)
        vs.append(v)
        ls.append(lab)
    return np.stack(xs), np.stack(vs), np.stack(ls)


def _fuse_t(net, xn, valid):
    """Differentiable fusion of a batch: xn (B,K,C,h,w), valid (B,K,h,w) -> (fused (B,C,h,w), w (B,K,h,w))."""
    logits = quality_logits(net, xn, valid)
    w = masked_softmax(logits, valid)
    fused = (w.unsqueeze(2) * torch_where_valid(xn, valid)).sum(dim=1)
    return fused, w


def torch_where_valid(xn, valid):
    import torch
    return torch.where(valid.unsqueeze(-3), xn, torch.zeros_like(xn))


def segment(seg_net, fused_n):
    fused_p, (h, w) = _pad_multiple(fused_n, 2 ** seg_net.levels)
    return seg_net(fused_p)[..., :h, :w]


def segmentation_scores(pred: np.ndarray, truth: np.ndarray, n_classes: int) -> dict:
    """Pixel accuracy, mean IoU and frequency-weighted IoU over pixels with truth >= 0."""
    ok = truth >= 0
    p, t = pred[ok], truth[ok]
    cm = np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(n_classes, n_classes)
    inter = np.diag(cm).astype(np.float64)
    union = cm.sum(0) + cm.sum(1) - inter
    present = cm.sum(1) > 0
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    freq = cm.sum(1) / max(cm.sum(), 1)
    return {"pixel_accuracy": float(inter.sum() / max(cm.sum(), 1)),
            "miou": float(iou[present].mean()) if present.any() else 0.0,
            "fwiou": float((freq * iou).sum())}


# --------------------------------------------------------------------------- training


def _validation_cases(data: SeriesData, cfg: FusionTrainConfig, count: int = 6) -> list:
    """Fixed self-supervised cases on the held-out block: (clean (C,h,w), copies, valid, cloud)."""
    rng = np.random.default_rng(cfg.seed + 991)
    r0 = data.train_rows
    targets = [d for d in data.clear_dates if d in set(cfg.holdout_dates)] or data.clear_dates
    cases = []
    for i in range(count):
        d = targets[i % len(targets)]
        clean = data.dates[d, :, r0:]
        K = [2, 4, 6][i % 3]
        copies, valid, cloud = _cloud_copies(clean, K, rng, cfg)
        cases.append((clean, copies, valid, cloud))
    return cases


def _validate(net, seg_net, data, cfg, cases, device) -> dict:
    import torch
    net.eval()
    polarity = resolve_polarity(cfg.cloud_polarity, len(data.bands))
    out = {}
    l1_q, l1_m = [], []
    with torch.no_grad():
        for clean, copies, valid, cloud in cases:
            fq, _ = fuse_arrays(copies, valid, "quality", FusionModel(net=net), stats=data.stats, device=device,
                                cloud_polarity=polarity)
            fm, _ = fuse_arrays(copies, valid, "mean", cloud_mask=cloud)
            ok = np.isfinite(fq).all(0) & np.isfinite(fm).all(0)
            l1_q.append(float(np.abs(fq - clean)[:, ok].mean()))
            l1_m.append(float(np.abs(fm - clean)[:, ok].mean()))
        out["val_l1_quality"] = float(np.mean(l1_q))
        out["val_l1_mean_with_masks"] = float(np.mean(l1_m))
        if seg_net is not None and data.label_index is not None:
            seg_net.eval()
            r0 = data.train_rows
            preds, truths = [], []
            N = data.dates.shape[0]
            for start in range(0, N - 6, 6):
                idx = np.arange(start, start + 6)
                xn = torch.from_numpy(data.norm_dates[idx, :, r0:][None]).to(device)
                v = torch.from_numpy(data.valid[idx, r0:][None]).to(device)
                fused, _ = _fuse_t(net, xn, v)
                preds.append(segment(seg_net, fused).argmax(1)[0].cpu().numpy())
                truths.append(data.label_index[r0:])
            s = segmentation_scores(np.concatenate([p.ravel() for p in preds]),
                                    np.concatenate([t.ravel() for t in truths]), len(data.class_values))
            out.update({f"val_seg_{k}": v for k, v in s.items()})
            seg_net.train()
    net.train()
    return out


def train_fusion(config: FusionTrainConfig, out_model_path: str, *, progress: Progress = None,
                 cancelled: CancelCheck = None, samples_dir: str | None = None) -> FusionTrainResult:
    """Train the quality network (and, in weak modes, a segmentation U-Net) and save the quality net.

    The segmentation network of the weak modes is saved beside the model as
    ``<name>.segmentation.safetensors`` (task ``fusion_segmentation``).
    """
    import torch
    import torch.nn.functional as F

    from .networks import UNet
    from .weights import ModelMetadata, save_model

    cfg = config
    if cfg.mode not in ("weak", "self", "both"):
        raise InputError(f"Unknown training mode '{cfg.mode}': use weak, self or both.")
    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    data = SeriesData(cfg)
    use_weak = cfg.mode in ("weak", "both")
    use_self = cfg.mode in ("self", "both")
    if use_weak and data.label_index is None:
        raise InputError("Weak supervision needs a labels raster.")
    if use_self and not data.train_clear:
        raise InputError("Self-supervised training needs at least one clear date that is not held out.")
    C = len(data.bands)
    polarity = resolve_polarity(cfg.cloud_polarity, C)
    qhp = quality_hyperparameters(cfg.encoder, cfg.decoder)
    net = UNet(**qhp).to(device)
    params = list(net.parameters())
    seg_net, shp = None, None
    if use_weak:
        shp = {"in_channels": C, "out_channels": len(data.class_values), "encoder": list(cfg.seg_encoder),
               "decoder": list(cfg.seg_decoder), "norm": SEG_NET["norm"]}
        seg_net = UNet(**shp).to(device)
        params += list(seg_net.parameters())
        class_w = torch.tensor(data.class_weights, dtype=torch.float32, device=device)
    opt = torch.optim.Adam(params, lr=cfg.lr)
    halve = max(1, cfg.steps_per_epoch * cfg.lr_halve_every_epochs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 ** (s // halve))
    cases = _validation_cases(data, cfg)
    history = {"step": [], "loss": [], "l1": [], "ce": [], "lr": [], "val": []}
    net.train()
    if seg_net is not None:
        seg_net.train()
    run_l1, run_ce, run_n = 0.0, 0.0, 0
    for step in range(1, cfg.steps + 1):
        check_cancelled(cancelled)
        K = int(rng.integers(cfg.k_min, cfg.k_max + 1))
        loss = torch.zeros((), device=device)
        if use_self:
            xn, v, tgt = _self_batch(data, cfg, K, rng)
            xn, v, tgt = (torch.from_numpy(a).to(device) for a in (xn, v, tgt))
            fused, _ = _fuse_t(net, xn, v)
            known = v.any(dim=1, keepdim=True).float()
            l1 = ((fused - tgt).abs() * known).sum() / (known.sum() * C).clamp_min(1)
            loss = loss + cfg.self_weight * l1
            run_l1 += float(l1.detach())
        if use_weak:
            xn, v, lab = _weak_batch(data, cfg, K, rng)
            xn, v, lab = (torch.from_numpy(a).to(device) for a in (xn, v, lab))
            fused, _ = _fuse_t(net, xn, v)
            ce = F.cross_entropy(segment(seg_net, fused), lab, weight=class_w, ignore_index=-100)
            loss = loss + cfg.weak_weight * ce
            run_ce += float(ce.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        run_n += 1
        if step % cfg.val_every == 0 or step == cfg.steps:
            val = _validate(net, seg_net, data, cfg, cases, device)
            history["step"].append(step)
            history["l1"].append(run_l1 / run_n if use_self else None)
            history["ce"].append(run_ce / run_n if use_weak else None)
            history["loss"].append((run_l1 * cfg.self_weight + run_ce * cfg.weak_weight) / run_n)
            history["lr"].append(opt.param_groups[0]["lr"])
            history["val"].append(val)
            run_l1 = run_ce = 0.0
            run_n = 0
        report(progress, step / cfg.steps, f"step {step}/{cfg.steps}")
    seconds = time.perf_counter() - t0
    net.eval()
    final = history["val"][-1] if history["val"] else {}
    # samples for a report: the first validation cases
    samples = []
    for clean, copies, valid, cloud in cases[:3]:
        fq, wq = fuse_arrays(copies, valid, "quality", FusionModel(net=net), stats=data.stats, device=device,
                             cloud_polarity=polarity)
        samples.append({"clean": clean, "inputs": copies, "valid": valid, "cloud": cloud, "fused": fq, "weights": wq})
    if samples_dir:
        os.makedirs(samples_dir, exist_ok=True)
        for i, s in enumerate(samples):
            np.savez_compressed(os.path.join(samples_dir, f"sample_{i}.npz"), **s)
    training = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    # file names, not machine-specific absolute paths
    training["data_folder"] = os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(cfg.dates[0]))))
    training["dates"] = [os.path.basename(p) for p in cfg.dates]
    training["masks"] = [os.path.basename(p) for p in cfg.masks] if cfg.masks else None
    training["labels"] = os.path.basename(cfg.labels) if cfg.labels else None
    training.update({"steps_done": cfg.steps, "seconds": round(seconds, 1),
                     "clear_dates": data.clear_dates, "train_clear_dates": data.train_clear,
                     "train_rows": [0, data.train_rows], "holdout_rows": [data.train_rows, data.H],
                     "statistics": data.stats, "class_values": data.class_values,
                     "class_weights": data.class_weights, "optimizer": "Adam",
                     "lr_schedule": f"halved every {cfg.lr_halve_every_epochs} epochs of {cfg.steps_per_epoch} steps",
                     "method": "Rafique, Blanton, Jacobs: Weakly Supervised Fusion of Multiple Overhead Images "
                               "(CVPRW 2019)"})
    names = cfg.band_names or [f"band{b}" for b in data.bands]
    meta = ModelMetadata(task=TASK, architecture="unet", hyperparameters=qhp, bands=names,
                         normalization=dict(NORMALIZATION, cloud_polarity=polarity), tile_size=256, training=training,
                         metrics={"held_out": final})
    save_model(out_model_path, net, meta)
    seg_path = None
    if seg_net is not None:
        seg_path = os.path.splitext(out_model_path)[0] + ".segmentation.safetensors"
        smeta = ModelMetadata(task=SEG_TASK, architecture="unet", hyperparameters=shp, bands=names,
                              normalization=dict(NORMALIZATION, band_mode="all_bands"), tile_size=256,
                              training={"class_values": data.class_values, "statistics": data.stats,
                                        "fusion_model": os.path.basename(out_model_path)},
                              metrics={"held_out": {k: v for k, v in final.items() if k.startswith("val_seg")}})
        save_model(seg_path, seg_net, smeta)
    return FusionTrainResult(model_path=out_model_path, segmentation_path=seg_path, steps=cfg.steps, history=history,
                             samples=samples, metrics=final, seconds=seconds,
                             steps_per_second=cfg.steps / max(seconds, 1e-9))


def ndvi_series_config(data_dir: str, **overrides) -> FusionTrainConfig:
    """Training configuration for the eo-learn NDVI series in ``data_dir`` (s2_ndvi_timeseries)."""
    import glob
    dates = sorted(glob.glob(os.path.join(data_dir, "ndvi", "ndvi_*.tif")))
    masks = [os.path.join(data_dir, "cloud_mask", "clm_" + os.path.basename(p)[5:]) for p in dates]
    kw = dict(dates=dates, masks=masks, labels=os.path.join(data_dir, "landcover.tif"), band_names=["ndvi"],
              cloud_value=(-0.03, 0.08), shadows=False)
    kw.update(overrides)
    return FusionTrainConfig(**kw)


# --------------------------------------------------------------------------- report


def report_html(result: "FusionTrainResult", path: str, title: str = "CloudFree fusion training") -> str:
    """Self-contained HTML: loss curves, validation figures, sample fused images and weight maps."""
    import base64
    import html
    import io
    import json as _json

    from matplotlib.figure import Figure  # the object API: never touches QGIS's pyplot backend

    def png(fig) -> str:
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        return base64.b64encode(buf.getvalue()).decode()

    h = result.history
    fig = Figure(figsize=(11, 3.2))
    ax = fig.add_subplot(1, 3, 1)
    ax.plot(h["step"], h["loss"], label="total")
    if any(v is not None for v in h.get("l1", [])):
        ax.plot(h["step"], [v if v is not None else np.nan for v in h["l1"]], label="L1 (self)")
    if any(v is not None for v in h.get("ce", [])):
        ax.plot(h["step"], [v if v is not None else np.nan for v in h["ce"]], label="cross-entropy (weak)")
    ax.set_xlabel("step"), ax.set_title("training loss"), ax.legend(fontsize=7)
    val = [v for v in h.get("val", []) if v]
    steps = [s for s, v in zip(h["step"], h.get("val", [])) if v]
    for i, keys in enumerate(((k for k in ("val_l1_quality", "val_l1_mean_with_masks")),
                              (k for k in ("val_seg_pixel_accuracy", "val_seg_miou", "val_seg_fwiou")))):
        ax = fig.add_subplot(1, 3, 2 + i)
        for k in keys:
            if val and k in val[0]:
                ax.plot(steps, [v.get(k, np.nan) for v in val], marker="o", label=k.replace("val_", ""))
        ax.set_xlabel("step"), ax.set_title("validation (held-out rows)"), ax.legend(fontsize=7)
    parts = [f"<h1>{html.escape(title)}</h1>", f"<p>{result.steps} steps in {result.seconds:.0f} s; model "
             f"<code>{html.escape(os.path.basename(result.model_path))}</code></p>",
             f"<img src='data:image/png;base64,{png(fig)}'>"]
    for i, smp in enumerate(result.samples):
        inputs, fused, clean, w = smp["inputs"], smp["fused"], smp["clean"], smp["weights"]
        K = inputs.shape[0]
        fig = Figure(figsize=(2.0 * (K + 2), 4.2))
        lo, hi = np.nanpercentile(clean[0], [2, 98])
        for k in range(K):
            ax = fig.add_subplot(2, K + 2, k + 1)
            ax.imshow(inputs[k, 0], vmin=lo, vmax=hi, cmap="gray"), ax.set_title(f"date {k + 1}", fontsize=8)
            ax = fig.add_subplot(2, K + 2, K + 2 + k + 1)
            ax.imshow(w[k], vmin=0, vmax=1, cmap="viridis"), ax.set_title(f"weight {k + 1}", fontsize=8)
        for j, (img, name) in enumerate(((fused, "fused"), (clean, "clean"))):
            ax = fig.add_subplot(2, K + 2, K + 1 + j)
            ax.imshow(img[0], vmin=lo, vmax=hi, cmap="gray"), ax.set_title(name, fontsize=8)
        for ax in fig.axes:
            ax.set_xticks([]), ax.set_yticks([])
        parts.append(f"<h3>sample {i + 1} (held-out)</h3><img src='data:image/png;base64,{png(fig)}'>")
    parts.append("<h3>metrics</h3><pre>" + html.escape(_json.dumps(result.metrics, indent=1, default=str)) + "</pre>")
    tmp = path + ".partial"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("<!doctype html><meta charset='utf-8'><body style='font-family:sans-serif'>" + "".join(parts))
    os.replace(tmp, path)
    return path
