"""Training: the quality network (and, in the weak modes, a segmentation U-Net) end to end, then the model files.

Method: Rafique, Blanton and Jacobs, "Weakly Supervised Fusion of Multiple Overhead Images"
(CVPRW 2019). ``weak``: the fused image (in network space) goes through a segmentation U-Net
and a class-weighted cross-entropy against land-cover labels is the only loss (no cloud
labels, no clean images); class weights are ``median frequency / frequency`` over the
training block, label values in ``ignore_labels`` (0 = no data for eo-learn land cover) are
ignored. ``self``: synthetic clouds and gaps on K copies of a clear date; the loss is L1
between the fused and the clear image. ``both``: the sum, when a clear training date exists;
without one (masks flag some cloud on every date) only the weak loss. Adam, lr 1e-4, halved
every 5 epochs (``steps_per_epoch`` steps each) by default.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Optional

import numpy as np

from ..errors import InputError
from ..runtime import CancelCheck, Progress, check_cancelled, report
from .config import FusionTrainConfig
from .data import SeriesData, self_supervised_batch, weak_batch
from .quality import TASK, fuse_batch, quality_hyperparameters, resolve_polarity
from .scaling import NORMALIZATION
from .segmentation import SEG_TASK, segment, segmentation_hyperparameters
from .validation import validate, validation_cases, validation_samples

METHOD_REFERENCE = "Rafique, Blanton, Jacobs: Weakly Supervised Fusion of Multiple Overhead Images (CVPRW 2019)"


@dataclass
class FusionTrainResult:
    model_path: str
    segmentation_path: Optional[str]
    steps: int
    history: dict
    samples: list
    metrics: dict                 # the last held-out validation figures (val_l1_*, val_seg_*)
    seconds: float
    steps_per_second: float
    mode: str = ""                # the supervision used: weak, self or both


@dataclass
class _Training:
    """The state of one training run."""

    cfg: FusionTrainConfig
    data: SeriesData
    device: object
    rng: np.random.Generator
    net: object = None
    seg_net: object = None
    class_weights: object = None
    optimizer: object = None
    schedule: object = None
    history: dict = field(default_factory=lambda: {"step": [], "loss": [], "l1": [], "ce": [], "lr": [], "val": []})

    @property
    def use_self(self) -> bool:
        return self.cfg.mode in ("self", "both")

    @property
    def use_weak(self) -> bool:
        return self.cfg.mode in ("weak", "both")


def train_fusion(config: FusionTrainConfig, out_model_path: str, *, progress: Progress = None,
                 cancelled: CancelCheck = None, samples_dir: str | None = None) -> FusionTrainResult:
    """Train the quality network (and, in weak modes, a segmentation U-Net) and save the quality net.

    The segmentation network of the weak modes is saved beside the model as
    ``<name>.segmentation.safetensors`` (task ``fusion_segmentation``).
    """
    config.check()
    t0 = time.perf_counter()
    run = _start(config, progress)
    _build_networks(run)
    cases = validation_cases(run.data, run.cfg)
    _train_steps(run, cases, progress, cancelled)
    seconds = time.perf_counter() - t0
    run.net.eval()
    final = run.history["val"][-1] if run.history["val"] else {}
    samples = validation_samples(run.net, run.data, run.cfg, cases, run.device)
    _save_samples(samples, samples_dir)
    seg_path = _save_models(run, out_model_path, final, seconds)
    cfg = run.cfg
    return FusionTrainResult(model_path=out_model_path, segmentation_path=seg_path, steps=cfg.steps,
                             history=run.history, samples=samples, metrics=final, seconds=seconds,
                             steps_per_second=cfg.steps / max(seconds, 1e-9), mode=cfg.mode)


def _start(cfg: FusionTrainConfig, progress: Progress) -> _Training:
    """Threads, seeds, device, the series in memory, and the supervision the data allows."""
    import torch

    if cfg.num_threads:
        torch.set_num_threads(int(cfg.num_threads))
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    device = torch.device(cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    data = SeriesData(cfg)
    cfg = replace(cfg, mode=_supervision(cfg, data, progress))
    resolve_polarity(cfg.cloud_polarity, len(data.bands))
    return _Training(cfg=cfg, data=data, device=device, rng=rng)


def _supervision(cfg: FusionTrainConfig, data: SeriesData, progress: Progress) -> str:
    """The mode to train: ``both`` falls back to ``weak`` when no clear date is left for self-supervision."""
    mode = cfg.mode
    if mode in ("weak", "both") and data.labels is None:
        raise InputError("Weak supervision needs a labels raster.")
    if mode in ("weak", "both") and not data.class_values:
        raise InputError(f"The labels hold no class in the training rows other than the ignored values "
                         f"{list(cfg.ignore_labels)}; weak supervision has nothing to learn from.")
    if mode == "both" and not data.train_clear:
        report(progress, 0.0, "No date is entirely clear (outside the held-out dates): training with the labels "
                              "only (weak supervision).")
        return "weak"
    if mode == "self" and not data.train_clear:
        raise InputError("Self-supervised training needs at least one clear date that is not held out.")
    return mode


def _build_networks(run: _Training) -> None:
    """The quality net, the segmentation net (weak modes), Adam and the halving learning-rate schedule."""
    import torch

    from ..networks import build

    cfg, data = run.cfg, run.data
    run.net = build("unet", quality_hyperparameters(cfg.encoder, cfg.decoder)).to(run.device)
    params = list(run.net.parameters())
    if run.use_weak:
        shp = segmentation_hyperparameters(len(data.bands), len(data.class_values), cfg.seg_encoder, cfg.seg_decoder)
        run.seg_net = build("unet", shp).to(run.device)
        params += list(run.seg_net.parameters())
        run.class_weights = torch.tensor(data.class_weights, dtype=torch.float32, device=run.device)
    run.optimizer = torch.optim.Adam(params, lr=cfg.lr)
    halve = max(1, cfg.steps_per_epoch * cfg.lr_halve_every_epochs)
    run.schedule = torch.optim.lr_scheduler.LambdaLR(run.optimizer, lambda s: 0.5 ** (s // halve))


def _train_steps(run: _Training, cases: list, progress: Progress, cancelled: CancelCheck) -> None:
    """The optimisation loop; every ``val_every`` steps (and at the end) the running losses and a validation."""
    cfg = run.cfg
    run.net.train()
    if run.seg_net is not None:
        run.seg_net.train()
    run_l1, run_ce, run_n = 0.0, 0.0, 0
    for step in range(1, cfg.steps + 1):
        check_cancelled(cancelled)
        K = int(run.rng.integers(cfg.k_min, cfg.k_max + 1))
        l1, ce = _train_step(run, K)
        run_l1 += l1
        run_ce += ce
        run_n += 1
        if step % cfg.val_every == 0 or step == cfg.steps:
            _record(run, step, run_l1, run_ce, run_n, validate(run.net, run.seg_net, run.data, cfg, cases, run.device))
            run_l1 = run_ce = 0.0
            run_n = 0
        report(progress, step / cfg.steps, f"step {step}/{cfg.steps}")


def _train_step(run: _Training, K: int) -> tuple:
    """One optimiser step on a self-supervised and/or a weak batch of K dates; ``(l1, cross-entropy)``."""
    import torch
    import torch.nn.functional as F

    cfg, device = run.cfg, run.device
    loss = torch.zeros((), device=device)
    l1_value = ce_value = 0.0
    if run.use_self:
        xn, v, tgt = (torch.from_numpy(a).to(device) for a in self_supervised_batch(run.data, cfg, K, run.rng))
        fused, _ = fuse_batch(run.net, xn, v)
        known = v.any(dim=1, keepdim=True).float()
        l1 = ((fused - tgt).abs() * known).sum() / (known.sum() * len(run.data.bands)).clamp_min(1)
        loss = loss + cfg.self_weight * l1
        l1_value = float(l1.detach())
    if run.use_weak:
        xn, v, lab = (torch.from_numpy(a).to(device) for a in weak_batch(run.data, cfg, K, run.rng))
        fused, _ = fuse_batch(run.net, xn, v)
        ce = F.cross_entropy(segment(run.seg_net, fused), lab, weight=run.class_weights, ignore_index=-100)
        loss = loss + cfg.weak_weight * ce
        ce_value = float(ce.detach())
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    run.schedule.step()
    return l1_value, ce_value


def _record(run: _Training, step: int, run_l1: float, run_ce: float, run_n: int, val: dict) -> None:
    cfg, h = run.cfg, run.history
    h["step"].append(step)
    h["l1"].append(run_l1 / run_n if run.use_self else None)
    h["ce"].append(run_ce / run_n if run.use_weak else None)
    h["loss"].append((run_l1 * cfg.self_weight + run_ce * cfg.weak_weight) / run_n)
    h["lr"].append(run.optimizer.param_groups[0]["lr"])
    h["val"].append(val)


def _save_samples(samples: list, samples_dir: str | None) -> None:
    if samples_dir:
        os.makedirs(samples_dir, exist_ok=True)
        for i, s in enumerate(samples):
            np.savez_compressed(os.path.join(samples_dir, f"sample_{i}.npz"), **s)


def _training_record(run: _Training, seconds: float) -> dict:
    """The training section of the metadata: the configuration (file names only) and what the run found."""
    cfg, data = run.cfg, run.data
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
                     "method": METHOD_REFERENCE})
    return training


def _save_models(run: _Training, out_model_path: str, final: dict, seconds: float) -> str | None:
    """Save the quality net (and the segmentation net of the weak modes); returns the latter's path."""
    from ..weights import ModelMetadata, save_model

    cfg, data = run.cfg, run.data
    polarity = resolve_polarity(cfg.cloud_polarity, len(data.bands))
    names = cfg.band_names or [f"band{b}" for b in data.bands]
    meta = ModelMetadata(task=TASK, architecture="unet", hyperparameters=quality_hyperparameters(cfg.encoder,
                                                                                               cfg.decoder),
                         bands=names, normalization=dict(NORMALIZATION, cloud_polarity=polarity), tile_size=256,
                         training=_training_record(run, seconds), metrics={"held_out": final})
    save_model(out_model_path, run.net, meta)
    if run.seg_net is None:
        return None
    seg_path = os.path.splitext(out_model_path)[0] + ".segmentation.safetensors"
    shp = segmentation_hyperparameters(len(data.bands), len(data.class_values), cfg.seg_encoder, cfg.seg_decoder)
    smeta = ModelMetadata(task=SEG_TASK, architecture="unet", hyperparameters=shp, bands=names,
                          normalization=dict(NORMALIZATION, band_mode="all_bands"), tile_size=256,
                          training={"class_values": data.class_values, "statistics": data.stats,
                                    "fusion_model": os.path.basename(out_model_path)},
                          metrics={"held_out": {k: v for k, v in final.items() if k.startswith("val_seg")}})
    save_model(seg_path, run.seg_net, smeta)
    return seg_path
