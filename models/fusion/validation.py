"""Held-out figures of a training run: fixed synthetic-cloud cases scored against the clean date, segmentation scores.

Everything here uses only the held-out rows (the bottom ``holdout_rows`` of every raster).
The cases are synthetic clouds and gaps on copies of a clean date (its held-out rows): a
clear date, preferably one of ``holdout_dates``. When no date is entirely clear (a series
with masks where every date has some cloud), the dates whose held-out rows the masks call
clearest are used instead and the L1 counts only the pixels their mask says are clear.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import FusionTrainConfig
from .data import SeriesData, cloud_copies
from .fuse import fuse_arrays
from .quality import FusionModel, fuse_batch, resolve_polarity
from .segmentation import segment, segmentation_scores

CASE_COUNT = 6
CASE_DATE_COUNTS = (2, 4, 6)   # K of the cases, in turn
CASE_SEED_OFFSET = 991         # the cases' generator: seed + this, apart from the training draws
SEGMENTATION_GROUP = 6         # consecutive dates fused for each held-out segmentation score
SAMPLE_COUNT = 3               # cases shown in the report


@dataclass
class ValidationCase:
    """A clean target (C, h, w), K cloudy copies of it (K, C, h, w) with their valid and cloud maps (K, h, w)."""

    clean: np.ndarray
    copies: np.ndarray
    valid: np.ndarray
    cloud: np.ndarray
    counted: np.ndarray | None = None  # (h, w) pixels the L1 counts; None: all


def validation_targets(data: SeriesData, cfg: FusionTrainConfig) -> tuple:
    """``(dates, partly_clear)``: the dates whose held-out rows are the cases' clean targets."""
    held = set(cfg.holdout_dates)
    targets = [d for d in data.clear_dates if d in held] or data.clear_dates
    if targets:
        return targets, False
    r0 = data.train_rows
    clear_fraction = (data.valid[:, r0:] & ~data.cloud[:, r0:]).mean(axis=(1, 2))
    order = np.argsort(-clear_fraction, kind="stable")
    return [int(d) for d in order if clear_fraction[d] > 0], True


def validation_cases(data: SeriesData, cfg: FusionTrainConfig, count: int = CASE_COUNT) -> list:
    """Fixed self-supervised cases on the held-out block (none when no date has a clear held-out pixel)."""
    rng = np.random.default_rng(cfg.seed + CASE_SEED_OFFSET)
    r0 = data.train_rows
    targets, partly_clear = validation_targets(data, cfg)
    cases = []
    for i in range(count if targets else 0):
        d = targets[i % len(targets)]
        clean = data.dates[d, :, r0:]
        copies, valid, cloud = cloud_copies(clean, CASE_DATE_COUNTS[i % len(CASE_DATE_COUNTS)], rng, cfg)
        counted = (data.valid[d, r0:] & ~data.cloud[d, r0:]) if partly_clear else None
        cases.append(ValidationCase(clean, copies, valid, cloud, counted))
    return cases


def validate(net, seg_net, data: SeriesData, cfg: FusionTrainConfig, cases: list, device) -> dict:
    """Held-out figures: L1 of the quality fusion and of the masked mean, segmentation scores (weak modes)."""
    import torch

    net.eval()
    out = {}
    with torch.no_grad():
        if cases:
            out.update(_synthetic_cloud_l1(net, data, cfg, cases, device))
        if seg_net is not None and data.label_index is not None:
            seg_net.eval()
            out.update(_segmentation_figures(net, seg_net, data, device))
            seg_net.train()
    net.train()
    return out


def _synthetic_cloud_l1(net, data: SeriesData, cfg: FusionTrainConfig, cases: list, device) -> dict:
    polarity = resolve_polarity(cfg.cloud_polarity, len(data.bands))
    l1_q, l1_m = [], []
    for case in cases:
        fq, _ = fuse_arrays(case.copies, case.valid, "quality", FusionModel(net=net), stats=data.stats, device=device,
                            cloud_polarity=polarity)
        fm, _ = fuse_arrays(case.copies, case.valid, "mean", cloud_mask=case.cloud)
        ok = np.isfinite(fq).all(0) & np.isfinite(fm).all(0)
        if case.counted is not None:
            ok &= case.counted
        l1_q.append(float(np.abs(fq - case.clean)[:, ok].mean()))
        l1_m.append(float(np.abs(fm - case.clean)[:, ok].mean()))
    return {"val_l1_quality": float(np.mean(l1_q)), "val_l1_mean_with_masks": float(np.mean(l1_m))}


def _segmentation_figures(net, seg_net, data: SeriesData, device) -> dict:
    """Scores of the segmentation of groups of consecutive dates fused (all dates when there are few)."""
    import torch

    r0 = data.train_rows
    N = data.dates.shape[0]
    starts = range(0, N - SEGMENTATION_GROUP, SEGMENTATION_GROUP) if N > SEGMENTATION_GROUP else [0]
    preds, truths = [], []
    for start in starts:
        idx = np.arange(start, min(start + SEGMENTATION_GROUP, N))
        xn = torch.from_numpy(data.norm_dates[idx, :, r0:][None]).to(device)
        v = torch.from_numpy(data.valid[idx, r0:][None]).to(device)
        fused, _ = fuse_batch(net, xn, v)
        preds.append(segment(seg_net, fused).argmax(1)[0].cpu().numpy())
        truths.append(data.label_index[r0:])
    s = segmentation_scores(np.concatenate([p.ravel() for p in preds]),
                            np.concatenate([t.ravel() for t in truths]), len(data.class_values))
    return {f"val_seg_{k}": v for k, v in s.items()}


def validation_samples(net, data: SeriesData, cfg: FusionTrainConfig, cases: list, device,
                       count: int = SAMPLE_COUNT) -> list:
    """The first cases fused by the trained network, for the report: dicts of arrays."""
    polarity = resolve_polarity(cfg.cloud_polarity, len(data.bands))
    samples = []
    for case in cases[:count]:
        fused, weight_maps = fuse_arrays(case.copies, case.valid, "quality", FusionModel(net=net), stats=data.stats,
                                         device=device, cloud_polarity=polarity)
        samples.append({"clean": case.clean, "inputs": case.copies, "valid": case.valid, "cloud": case.cloud,
                        "fused": fused, "weight_maps": weight_maps})
    return samples
