"""The quality network: what it sees of every date, its per-pixel logits, the softmax across dates, loaded models.

A small 3x3 U-Net (:class:`networks.UNet`, default widths 32, 64, 128, 128 / 64, 32, 16, 16,
the paper's quarter-width quality net, ``norm="none"``) is applied to every date with shared
weights and gives one logit per pixel per date. The logits go through a softmax *across
dates*; the fused image is ``sum_k w_k * date_k`` (one weight map per date).

Band-count independence (decision): the network does not see the C bands of a date at once.
It sees *one band at a time* (shared weights over bands) and the per-band logits are averaged,
so one shipped model works for 1-band NDVI and for 4- or 6-band reflectance. Each band image is
given as two channels: (0) the normalised value of the date and (1) its deviation from the
per-pixel median of all valid dates of the same band. The second channel is an extension of
the paper (which scores each date in isolation): it lets a small net tell a cloud (an outlier
against the other dates) from a dark field. ``metadata.normalization["band_mode"] =
"per_band_shared"`` records this; such a model accepts any band count.

Masks in the softmax: pixels that are nodata in a date, and pixels a supplied cloud mask flags,
get a logit of ``-inf``, so their weight is exactly 0. Fallbacks, per pixel: if every valid
date is flagged by the mask, the mask is ignored there (a cloudy observation beats none); if
no date is valid, all weights are 0.

Cloud polarity (decision, measured): a per-band network must know which way a cloud pushes a
band: clouds *lower* NDVI but *raise* reflectance. The model stores the convention it was
trained with (``normalization["cloud_polarity"]``; the shipped NDVI model: ``low``). At
inference ``cloud_polarity`` says what the input is: ``low``, ``high`` or ``auto`` (``low`` for
one band, ``high`` for two or more). When it differs from the model's, the *network input* is
negated (the fused values always come from the original dates). On 6-band reflectance the
NDVI-trained model without this flip was worse than the plain mean; with it, 2-4x better
(benchmarks/fusion.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import InputError, ModelFileError
from .scaling import NORMALIZATION, to_network_space

TASK = "fusion"
DEFAULT_MODEL_FILE = "fusion_default.safetensors"
POLARITIES = ("auto", "low", "high")
QUALITY_NET = {"encoder": [32, 64, 128, 128], "decoder": [64, 32, 16, 16], "norm": "none"}
NETWORK_CHUNK = 16  # (date, band) images per forward pass at inference


def quality_hyperparameters(encoder=None, decoder=None, norm=None) -> dict:
    """Hyper-parameters of the quality U-Net: 2 input channels (value, deviation), 1 logit."""
    return {"in_channels": 2, "out_channels": 1,
            "encoder": list(encoder or QUALITY_NET["encoder"]), "decoder": list(decoder or QUALITY_NET["decoder"]),
            "norm": norm or QUALITY_NET["norm"]}


def build_quality_net(**kw):
    """A new (untrained) quality network; ``kw``: ``encoder``, ``decoder``, ``norm``."""
    from ..networks import build

    return build("unet", quality_hyperparameters(**kw))


def pad_to_multiple(x, multiple: int):
    """Replicate-pad the last two dims of a torch tensor up to a multiple; returns ``(x, (h, w))``."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


def resolve_polarity(polarity: str, band_count: int) -> str:
    """``low`` or ``high`` for ``polarity`` (``auto``: ``low`` for one band, else ``high``)."""
    if polarity not in POLARITIES:
        raise InputError(f"Unknown cloud polarity '{polarity}': use auto, low (NDVI-like: clouds lower the "
                         "value) or high (reflectance: clouds raise it).")
    if polarity == "auto":
        return "low" if band_count == 1 else "high"
    return polarity


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


def quality_logits(net, xn, valid, chunk: int = NETWORK_CHUNK, runner=None):
    """Logits (..., K, H, W) of the shared quality net, averaged over bands; ``runner`` (a
    :class:`..backends.Runner`, inference only) runs ``net`` if given."""
    import torch

    feats = quality_features(xn, valid)  # (..., K, C, 2, H, W)
    lead = feats.shape[:-3]
    flat = feats.reshape(-1, 2, *feats.shape[-2:])
    levels = getattr(net, "levels", 3)
    flat, (h, w) = pad_to_multiple(flat, 2 ** levels)
    run = net if runner is None else runner
    if chunk and flat.shape[0] > chunk and not torch.is_grad_enabled():
        out = torch.cat([run(flat[i:i + chunk]) for i in range(0, flat.shape[0], chunk)])
    else:
        out = run(flat)
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
    masked = logits.masked_fill(~allowed, float("-inf"))
    w = torch.softmax(masked, dim=-3)
    return torch.where(allowed, w, torch.zeros_like(w))


def fuse_batch(net, xn, valid):
    """Differentiable fusion in network space: ``xn`` (B, K, C, h, w), ``valid`` (B, K, h, w).

    Returns ``(fused (B, C, h, w), weight maps (B, K, h, w))``; masks are not used (training).
    """
    import torch

    logits = quality_logits(net, xn, valid)
    w = masked_softmax(logits, valid)
    filled = torch.where(valid.unsqueeze(-3), xn, torch.zeros_like(xn))
    fused = (w.unsqueeze(2) * filled).sum(dim=1)
    return fused, w


@dataclass
class FusionModel:
    """A quality network (loaded from a model file, or in training) and its metadata."""

    net: object
    meta: object = None
    device: object = "cpu"
    runner: object = None  # what runs the network at inference (a backends.Runner); None: the module

    @classmethod
    def load(cls, path: str | None = None, device="cpu") -> "FusionModel":
        """Load a fusion model file (default: the shipped model) through the one strict loader."""
        from ..weights import load_model, shipped_model

        path = path or shipped_model(DEFAULT_MODEL_FILE)
        if not os.path.isfile(path):
            raise ModelFileError(f"Fusion model '{path}' does not exist; train one with train_fusion or "
                                 "choose a baseline method (mean, median, best).")
        net, meta = load_model(path, task=TASK, device=device)
        return cls(net=net, meta=meta, device=device)

    @classmethod
    def resolve(cls, model, device="cpu") -> "FusionModel":
        """``model`` as a :class:`FusionModel`: one already, a model path, None (shipped) or a bare network."""
        if model is None or isinstance(model, str):
            return cls.load(model, device=device)
        if not isinstance(model, FusionModel):
            return cls(net=model)
        return model

    @property
    def normalization(self) -> dict:
        return self.meta.normalization if self.meta is not None else NORMALIZATION

    def check_bands(self, band_count: int, layer: str = "input") -> None:
        """A model trained on fixed bands (not ``per_band_shared``) must get that many bands."""
        if self.meta is None:
            return
        if self.meta.normalization.get("band_mode") == "per_band_shared":
            return
        if band_count != self.meta.band_count:
            raise ModelFileError(f"The fusion model expects {self.meta.band_count} band(s) but layer '{layer}' "
                                 f"provides {band_count}.")

    def weight_maps(self, dates: np.ndarray, valid: np.ndarray, clear: np.ndarray | None, stats: dict, device,
                    polarity: str = "auto") -> np.ndarray:
        """Per-date weight maps (K, h, w) float32 for ``dates`` (K, C, h, w); ``clear``: None or not flagged."""
        import torch

        norm = self.normalization
        xn = to_network_space(np.where(valid[:, None], dates, np.nan), stats, norm)
        if resolve_polarity(polarity, dates.shape[1]) != norm.get("cloud_polarity", "low"):
            xn = -xn
        with torch.inference_mode():
            xt = torch.from_numpy(xn).to(device)
            vt = torch.from_numpy(valid).to(device)
            ct = torch.from_numpy(clear).to(device) if clear is not None else None
            logits = quality_logits(self.net, xt, vt, runner=self.runner)
            return masked_softmax(logits, vt, ct).cpu().numpy().astype(np.float32)
