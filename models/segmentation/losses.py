"""Training losses of the segmentation U-Net: soft Dice, and Dice plus cross-entropy, with class weights.

Both take logits ``(B, C, H, W)`` and class indices ``(B, H, W)`` where ``-1`` marks pixels
that do not count (unlabelled, the ignore value, nodata). Soft Dice per class is
``(2 sum p t + eps) / (sum p + sum t + eps)`` over the counted pixels of the batch, with ``p``
the softmax probability and ``t`` the one-hot truth; the loss is ``1 -`` its weighted mean
over the classes (weights default to 1; a class absent from the batch still counts, pushing
its false positives down). Dice + CE adds the class-weighted cross-entropy (PyTorch's
``ignore_index``), which gives useful gradients early, when Dice alone is flat.
"""

from __future__ import annotations

from typing import Sequence

LOSSES = ("dice", "dice_ce")
IGNORE_INDEX = -1


def soft_dice_loss(logits, target, class_weights: Sequence[float] | None = None, eps: float = 1.0):
    """``1 -`` weighted mean soft Dice over the classes (counted pixels only)."""
    import torch
    import torch.nn.functional as F

    n_classes = logits.shape[1]
    counted = (target != IGNORE_INDEX).unsqueeze(1).to(logits.dtype)
    probs = torch.softmax(logits, dim=1) * counted
    onehot = F.one_hot(target.clamp_min(0), n_classes).permute(0, 3, 1, 2).to(logits.dtype) * counted
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    total = probs.sum(dims) + onehot.sum(dims)
    dice = (2 * inter + eps) / (total + eps)
    w = _weights(class_weights, n_classes, logits)
    return 1.0 - (dice * w).sum() / w.sum()


def dice_ce_loss(logits, target, class_weights: Sequence[float] | None = None):
    """Soft Dice loss plus class-weighted cross-entropy (0 when no pixel counts)."""
    import torch.nn.functional as F

    dice = soft_dice_loss(logits, target, class_weights)
    if not bool((target != IGNORE_INDEX).any()):
        return dice
    ce = F.cross_entropy(logits, target, weight=_weights(class_weights, logits.shape[1], logits),
                         ignore_index=IGNORE_INDEX)
    return dice + ce


def segmentation_loss(name: str):
    """The loss function called ``name`` (``dice`` or ``dice_ce``)."""
    return {"dice": soft_dice_loss, "dice_ce": dice_ce_loss}[name]


def _weights(class_weights, n_classes: int, like):
    import torch

    if class_weights is None:
        return torch.ones(n_classes, dtype=like.dtype, device=like.device)
    return torch.as_tensor(list(class_weights), dtype=like.dtype, device=like.device)
