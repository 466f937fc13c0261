"""Class metrics of a predicted class map against a reference: confusion matrix, Dice, IoU, accuracy.

Used by segmentation training and benchmarks (arrays) and by ``comparerasters`` with classes
(rasters, the confusion matrix summed block by block). Definitions, per class ``c`` with
``TP``, ``FP``, ``FN`` counted over the compared pixels:

- IoU (Jaccard) = ``TP / (TP + FP + FN)``; Dice = F1 = ``2 TP / (2 TP + FP + FN)``;
  precision = ``TP / (TP + FP)``, recall = ``TP / (TP + FN)``; a class absent from both the
  reference and the prediction has no score (``None``), not 0 or 1;
- pixel (overall) accuracy = ``sum TP / N``;
- mIoU = mean IoU over the classes present in the reference; mean Dice likewise;
- frequency-weighted IoU = ``sum_c (N_c / N) IoU_c`` with ``N_c`` the reference's pixels of ``c``.

The confusion matrix's rows are the reference's classes and its columns the prediction's.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def confusion_matrix(predicted: np.ndarray, reference: np.ndarray, n_classes: int,
                     valid: np.ndarray | None = None) -> np.ndarray:
    """``(n_classes, n_classes)`` int64 counts of class indices ``0 .. n_classes - 1``.

    Pixels outside ``valid`` or whose index is outside that range in either array are not counted.
    """
    p = np.asarray(predicted).astype(np.int64, copy=False).ravel()
    t = np.asarray(reference).astype(np.int64, copy=False).ravel()
    ok = (p >= 0) & (p < n_classes) & (t >= 0) & (t < n_classes)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool).ravel()
    return np.bincount(t[ok] * n_classes + p[ok], minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def _ratio(num: np.ndarray, den: np.ndarray) -> list:
    return [float(n / d) if d > 0 else None for n, d in zip(num, den)]


def _mean(values: Sequence, keep: np.ndarray) -> float | None:
    kept = [v for v, k in zip(values, keep) if k and v is not None]
    return float(np.mean(kept)) if kept else None


def scores_from_confusion(cm: np.ndarray) -> dict:
    """Per-class and overall scores of a confusion matrix (rows reference, columns prediction)."""
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diag(cm)
    ref_total, pred_total = cm.sum(1), cm.sum(0)
    fp, fn = pred_total - tp, ref_total - tp
    n = float(cm.sum())
    iou = _ratio(tp, tp + fp + fn)
    dice = _ratio(2 * tp, 2 * tp + fp + fn)
    present = ref_total > 0
    freq = ref_total / max(n, 1.0)
    return {
        "iou": iou,
        "dice": dice,
        "precision": _ratio(tp, pred_total),
        "recall": _ratio(tp, ref_total),
        "support": [int(v) for v in ref_total],
        "pixel_accuracy": float(tp.sum() / n) if n else None,
        "miou": _mean(iou, present),
        "mean_dice": _mean(dice, present),
        "fwiou": float(sum(f * (v or 0.0) for f, v in zip(freq, iou))) if n else None,
        "n_pixels": int(n),
    }


def class_scores(predicted: np.ndarray, reference: np.ndarray, n_classes: int,
                 valid: np.ndarray | None = None) -> dict:
    """:func:`scores_from_confusion` of two arrays of class indices, with the matrix itself."""
    cm = confusion_matrix(predicted, reference, n_classes, valid)
    return {**scores_from_confusion(cm), "confusion_matrix": cm.tolist()}


def dice_coefficient(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks: ``2 |a & b| / (|a| + |b|)``; 1 when both are empty."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else float(2 * int((a & b).sum()) / total)


def iou_coefficient(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks: ``|a & b| / |a | b|``; 1 when both are empty."""
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    union = int((a | b).sum())
    return 1.0 if union == 0 else float(int((a & b).sum()) / union)


class ConfusionCounter:
    """A confusion matrix of class *values* (not indices) summed over blocks, for rasters of any classes."""

    def __init__(self):
        self.counts: dict = {}

    def add(self, predicted: np.ndarray, reference: np.ndarray) -> None:
        """Count the pairs ``(reference value, predicted value)`` of two 1-D arrays."""
        if predicted.size == 0:
            return
        pairs, n = np.unique(np.stack([reference.ravel(), predicted.ravel()]), axis=1, return_counts=True)
        for (r, p), c in zip(pairs.T.tolist(), n.tolist()):
            self.counts[(r, p)] = self.counts.get((r, p), 0) + c

    def classes(self) -> list:
        return sorted({v for pair in self.counts for v in pair})

    def matrix(self) -> tuple:
        """``(class values, matrix)``: rows the reference's value, columns the prediction's."""
        values = self.classes()
        index = {v: i for i, v in enumerate(values)}
        cm = np.zeros((len(values), len(values)), dtype=np.int64)
        for (r, p), c in self.counts.items():
            cm[index[r], index[p]] += c
        return values, cm
