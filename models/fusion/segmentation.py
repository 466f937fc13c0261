"""The segmentation network of weak supervision: its shape, running it on fused images, scoring its predictions.

In the weak modes the fused image (in network space) goes through a segmentation U-Net and a
class-weighted cross-entropy against land-cover labels is the loss that trains both networks;
the trained segmentation network is saved beside the fusion model (task ``fusion_segmentation``).
"""

from __future__ import annotations

import numpy as np

from ..class_metrics import confusion_matrix, scores_from_confusion
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
    """Pixel accuracy, mean IoU and frequency-weighted IoU over pixels with truth >= 0
    (:mod:`..class_metrics`; 0 when no pixel counts)."""
    s = scores_from_confusion(confusion_matrix(pred, truth, n_classes))
    return {k: float(s[k] or 0.0) for k in ("pixel_accuracy", "miou", "fwiou")}
