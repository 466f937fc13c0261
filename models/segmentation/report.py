"""The segmentation training report: loss and metric curves, per-class held-out scores, sample predictions (HTML)."""

from __future__ import annotations

import os

import numpy as np

from ..reports import Section, display_image, metrics_block, new_figure, write_report
from .config import SegmentationTrainResult


def write_training_report(result: SegmentationTrainResult, path: str,
                          title: str = "CloudFree segmentation training") -> str:
    """Write the report of a training run to ``path`` (self-contained HTML) and return the path."""
    stop = "stopped early" if result.stopped_early else "all epochs"
    intro = (f"{result.epochs_run} epochs ({stop}; best epoch {result.best_epoch}) in {result.seconds:.0f} s on "
             f"{result.device}, tiles of {result.tile} px; model {os.path.basename(result.model_path)}. "
             "Held-out figures are on the validation block, which no training tile touched.")
    sections = [Section("Training", figure=_curves(result.history)),
                Section("Held-out scores per class", preformatted=per_class_table(result)), ]
    for i, sample in enumerate(result.samples):
        sections.append(Section(f"Sample {i + 1} (validation block)", figure=_sample_figure(sample, result.classes),
                                level=3))
    sections.append(Section("Metrics", preformatted=metrics_block({"held_out": result.metrics,
                                                                  "before_training": result.initial_metrics}),
                            level=3))
    return write_report(path, title, sections, intro)


def per_class_table(result: SegmentationTrainResult) -> str:
    """A text table: class, name, Dice, IoU, pixels in the validation block, before and after training."""
    m, m0, c = result.metrics, result.initial_metrics, result.classes
    lines = [f"{'class':>6}  {'name':<28} {'Dice':>6} {'IoU':>6} {'Dice0':>6} {'pixels':>9}  weight"]
    for i, (v, n) in enumerate(zip(c.values, c.names)):
        lines.append(f"{v:>6}  {n[:28]:<28} {_f(m['dice'][i])} {_f(m['iou'][i])} {_f(m0['dice'][i])} "
                     f"{m['support'][i]:>9}  {result.class_weights[i]:.3g}")
    lines.append(f"pixel accuracy {_f(m['pixel_accuracy'])}, mIoU {_f(m['miou'])}, mean Dice {_f(m['mean_dice'])}, "
                 f"frequency-weighted IoU {_f(m['fwiou'])} (Dice0: before training)")
    return "\n".join(lines)


def _f(v) -> str:
    return "   n/a" if v is None else f"{v:6.3f}"


def _curves(h: dict):
    fig = new_figure(11, 3.2)
    ax = fig.add_subplot(1, 3, 1)
    epochs = h["epoch"]
    ax.plot(epochs[1:], h["loss"][1:], label="training")
    ax.plot(epochs, h["val_loss"], label="validation")
    ax.set_xlabel("epoch"), ax.set_title("loss"), ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 3, 2)
    for key in ("val_mean_dice", "val_miou", "val_pixel_accuracy"):
        ax.plot(epochs, [np.nan if v is None else v for v in h[key]], marker="o", ms=3, label=key[4:])
    ax.set_xlabel("epoch"), ax.set_title("validation block"), ax.legend(fontsize=7)
    ax = fig.add_subplot(1, 3, 3)
    ax.semilogy(epochs, h["lr"])
    ax.set_xlabel("epoch"), ax.set_title("learning rate")
    return fig


def class_image(index: np.ndarray, classes) -> np.ndarray:
    """Class indices (``-1`` = not counted) as an RGB image in the classes' colours (black where -1)."""
    palette = np.array([c[:3] for c in classes.colours] + [(0, 0, 0)], dtype=np.float64) / 255.0
    return palette[np.where(index >= 0, index, len(classes.colours))]


def _sample_figure(sample: dict, classes):
    fig = new_figure(9, 3.2)
    image = sample["image"]
    panels = ((display_image(image), "input"), (class_image(sample["truth"], classes), "labels"),
              (class_image(sample["predicted"], classes), "predicted"))
    for i, (im, title) in enumerate(panels):
        ax = fig.add_subplot(1, 3, i + 1)
        ax.imshow(im, cmap="gray" if im.ndim == 2 else None, interpolation="nearest")
        ax.set_title(title, fontsize=8), ax.set_xticks([]), ax.set_yticks([])
    return fig
