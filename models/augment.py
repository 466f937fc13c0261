"""Geometric augmentation of training crops: a quarter-turn rotation and a flip, the same for every array.

Training code draws the transform once per crop (:func:`random_transform`) and applies it to
all arrays of that crop at once (:func:`augment`), so images, masks and labels stay aligned.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def random_transform(rng: np.random.Generator) -> tuple:
    """``(k, flip)``: ``k`` quarter turns (0-3) and whether to mirror left-right; two draws from ``rng``."""
    k = int(rng.integers(0, 4))
    flip = bool(rng.integers(0, 2))
    return k, flip


def augment(arrays: Sequence, k: int, flip: bool) -> list:
    """Rotate each array by ``k`` quarter turns over its last two axes, then mirror it if ``flip``.

    ``None`` entries pass through; the results are contiguous copies.
    """
    out = []
    for a in arrays:
        if a is None:
            out.append(None)
            continue
        a = np.rot90(a, k, axes=(-2, -1))
        if flip:
            a = a[..., ::-1]
        out.append(np.ascontiguousarray(a))
    return out
