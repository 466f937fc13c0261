"""The segmentation network of weak supervision: its shape, running it on fused images, scoring its predictions.

In the weak modes the fused image (in network space) goes through a segmentation U-Net and a
class-weighted cross-entropy against land-cover labels is the loss that trains both networks;
the trained segmentation network is saved beside the fusion model (task ``fusion_segmentation``).
"""

from __future__ import annotations

import numpy as np

from .quality import pad_to_multiple

SEG_TASK = "fusion_segmentation"
SEG_NET = {"encoder": [32, 64, 128], "decoder": [64, 32], "norm": "batch"}


def segmentation_hyperparameters(band_count: int, class_count: int, encoder, decoder) -> dict:
    return {"in_channels": band_count, "out_channels": class_count, "encoder": list(encoder),
            "decoder": list(decoder), "norm": SEG_NET["norm"]}


def segment(seg_net, fused_n):
    """Class logits (B, classes, h, w) of fused images in network space (B, C, h, w)."""
    fused_p, (h, w) = pad_to_multiple(fused_n, 2 ** seg_net.levels)
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
