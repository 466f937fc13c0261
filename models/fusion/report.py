"""The training report: loss curves, held-out figures, sample fused images with their weight maps (HTML, atomic)."""

from __future__ import annotations

import os

import numpy as np

from ..normalization import stretch_limits
from ..reports import Section, metrics_block, new_figure, write_report
from .train import FusionTrainResult

L1_KEYS = ("val_l1_quality", "val_l1_mean_with_masks")
SEGMENTATION_KEYS = ("val_seg_pixel_accuracy", "val_seg_miou", "val_seg_fwiou")


def write_training_report(result: FusionTrainResult, path: str, title: str = "CloudFree fusion training") -> str:
    """Write the report of a training run to ``path`` (self-contained HTML) and return the path."""
    intro = (f"{result.steps} steps in {result.seconds:.0f} s ({result.mode or 'unknown'} supervision); model "
             f"{os.path.basename(result.model_path)}")
    sections = [Section("Training", figure=_curves(result.history))]
    for i, sample in enumerate(result.samples):
        sections.append(Section(f"Sample {i + 1} (held-out)", figure=_sample_figure(sample), level=3))
    sections.append(Section("Metrics", preformatted=metrics_block(result.metrics), level=3))
    return write_report(path, title, sections, intro)


def _curves(h: dict):
    """Training losses and the validation figures over the steps."""
    fig = new_figure(11, 3.2)
    ax = fig.add_subplot(1, 3, 1)
    ax.plot(h["step"], h["loss"], label="total")
    if any(v is not None for v in h.get("l1", [])):
        ax.plot(h["step"], [v if v is not None else np.nan for v in h["l1"]], label="L1 (self)")
    if any(v is not None for v in h.get("ce", [])):
        ax.plot(h["step"], [v if v is not None else np.nan for v in h["ce"]], label="cross-entropy (weak)")
    ax.set_xlabel("step"), ax.set_title("training loss"), ax.legend(fontsize=7)
    val = [v for v in h.get("val", []) if v]
    steps = [s for s, v in zip(h["step"], h.get("val", [])) if v]
    for i, keys in enumerate((L1_KEYS, SEGMENTATION_KEYS)):
        ax = fig.add_subplot(1, 3, 2 + i)
        for k in keys:
            if val and k in val[0]:
                ax.plot(steps, [v.get(k, np.nan) for v in val], marker="o", label=k.replace("val_", ""))
        ax.set_xlabel("step"), ax.set_title("validation (held-out rows)")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return fig


def _sample_figure(sample: dict):
    """The cloudy inputs and their weight maps, the fused and the clean image (first band)."""
    inputs, fused, clean, weight_maps = sample["inputs"], sample["fused"], sample["clean"], sample["weight_maps"]
    K = inputs.shape[0]
    fig = new_figure(2.0 * (K + 2), 4.2)
    lo, hi = stretch_limits(clean[0])
    for k in range(K):
        ax = fig.add_subplot(2, K + 2, k + 1)
        ax.imshow(inputs[k, 0], vmin=lo, vmax=hi, cmap="gray"), ax.set_title(f"date {k + 1}", fontsize=8)
        ax = fig.add_subplot(2, K + 2, K + 2 + k + 1)
        ax.imshow(weight_maps[k], vmin=0, vmax=1, cmap="viridis"), ax.set_title(f"weight map {k + 1}", fontsize=8)
    for j, (img, name) in enumerate(((fused, "fused"), (clean, "clean"))):
        ax = fig.add_subplot(2, K + 2, K + 1 + j)
        ax.imshow(img[0], vmin=lo, vmax=hi, cmap="gray"), ax.set_title(name, fontsize=8)
    for ax in fig.axes:
        ax.set_xticks([]), ax.set_yticks([])
    return fig
