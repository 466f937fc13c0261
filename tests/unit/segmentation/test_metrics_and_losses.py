"""Dice and IoU of masks, class scores of a confusion matrix, and the Dice losses."""

import numpy as np
import pytest
import torch

from cloudfree.models import class_metrics as cm
from cloudfree.models.segmentation import dice_ce_loss, soft_dice_loss


def test_dice_of_identical_masks_is_one_and_of_disjoint_masks_zero():
    rng = np.random.default_rng(0)
    a = rng.random((64, 64)) > 0.5
    assert cm.dice_coefficient(a, a) == 1.0 and cm.iou_coefficient(a, a) == 1.0
    assert cm.dice_coefficient(a, ~a) == 0.0 and cm.iou_coefficient(a, ~a) == 0.0
    b = np.zeros_like(a)
    b[:32] = True
    c = np.zeros_like(a)
    c[16:48] = True  # half of each overlaps
    assert cm.dice_coefficient(b, c) == pytest.approx(0.5) and cm.iou_coefficient(b, c) == pytest.approx(1 / 3)


def test_class_scores_of_a_known_confusion_matrix():
    truth = np.array([0, 0, 0, 0, 1, 1, 2, 2, -1])
    pred = np.array([0, 0, 0, 1, 1, 1, 1, 2, 0])
    s = cm.class_scores(pred, truth, 3)
    assert s["confusion_matrix"] == [[3, 1, 0], [0, 2, 0], [0, 1, 1]]
    assert s["pixel_accuracy"] == pytest.approx(6 / 8)
    assert s["iou"] == pytest.approx([3 / 4, 2 / 4, 1 / 2])
    assert s["dice"] == pytest.approx([6 / 7, 4 / 6, 2 / 3])
    assert s["miou"] == pytest.approx(np.mean([0.75, 0.5, 0.5]))
    assert s["fwiou"] == pytest.approx(4 / 8 * 0.75 + 2 / 8 * 0.5 + 2 / 8 * 0.5)
    absent = cm.class_scores(np.array([0, 1]), np.array([0, 1]), 3)
    assert absent["iou"][2] is None and absent["miou"] == 1.0


def test_dice_loss_is_zero_for_a_confident_right_answer_and_ignores_pixels():
    target = torch.tensor([[[0, 1], [1, -1]]])
    logits = torch.nn.functional.one_hot(target.clamp_min(0), 2).permute(0, 3, 1, 2).float() * 40.0
    logits[0, :, 1, 1] = torch.tensor([0.0, 50.0])  # wrong, but ignored (-1)
    assert float(soft_dice_loss(logits, target)) == pytest.approx(0.0, abs=1e-3)
    assert float(dice_ce_loss(logits, target)) == pytest.approx(0.0, abs=1e-3)
    wrong = -logits
    assert float(soft_dice_loss(wrong, target, eps=0.0)) == pytest.approx(1.0, abs=1e-4)
    # class weights: a network that always says class 0 is judged on class 0 alone, or on class 1 alone
    target = torch.tensor([[[0, 1], [1, 0]]])
    always_zero = torch.zeros(1, 2, 2, 2)
    always_zero[:, 0] = 40.0
    only_0 = float(soft_dice_loss(always_zero, target, [1.0, 0.0], eps=0.0))
    only_1 = float(soft_dice_loss(always_zero, target, [0.0, 1.0], eps=0.0))
    assert only_0 == pytest.approx(1 - 2 * 2 / (4 + 2), abs=1e-4) and only_1 == pytest.approx(1.0, abs=1e-4)
