"""Putting generated pixels back into the input: only masked pixels change, their weight rising with
the distance to the nearest clear pixel (``min(1, d / feather)``), so the transition is feathered
*inside* the mask and every clear pixel is written back exactly as it was."""

from __future__ import annotations

import math

import numpy as np

from ..raster import RasterInfo, read_window
from ..windows import Window


def feather_weights(masked: np.ndarray, feather: float) -> np.ndarray:
    """Weight of the generated value: 0 outside the mask, ``min(1, d / feather)`` inside it,
    ``d`` = Euclidean distance (pixels) to the nearest unmasked pixel (1 next to the edge)."""
    masked = np.asarray(masked, dtype=bool)
    if feather <= 0 or masked.all():
        return masked.astype(np.float64)
    import cv2

    # OpenCV's exact Euclidean transform (DIST_MASK_PRECISE): scipy's distance_transform_edt gives the same
    # distances (tested) at 20-50 times the cost, 96 ms for a block of 234 x 4096 rows with sparse clouds
    d = cv2.distanceTransform(masked.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.clip(d.astype(np.float64) / float(feather), 0.0, 1.0)


#: stored types whose every value float32 holds exactly (the tiler's input copy is float32)
EXACT_IN_FLOAT32 = tuple(np.dtype(t) for t in ("uint8", "int8", "uint16", "int16", "float32"))


class MaskFeathering:
    """The tiler's post-processing step: blend each finished block of rows into the input inside the mask.

    Reads the input and the mask through their open datasets (``info.dataset()``), with a margin
    of rows above and below so the distance to the nearest clear pixel is right at block edges.
    Counts the masked and the valid pixels it sees.
    """

    def __init__(self, src: RasterInfo, bands, mask: RasterInfo, mask_values: np.ndarray, feather: float):
        self.src, self.bands, self.mask = src, bands, mask
        self.mask_values, self.feather = mask_values, feather
        self.margin = int(math.ceil(feather)) + 1
        self.masked_pixels = 0
        self.valid_pixels = 0

    def __call__(self, blended: np.ndarray, y0: int, valid_rows: np.ndarray, inputs: np.ndarray | None = None):
        src = self.src
        rows = blended.shape[1]
        a0, a1 = max(0, y0 - self.margin), min(src.height, y0 + rows + self.margin)
        m = np.isin(read_window(self.mask.dataset(), Window(0, a0, src.width, a1 - a0), [1], dtype=None)[0],
                    self.mask_values)
        alpha = feather_weights(m, self.feather)[y0 - a0:y0 - a0 + rows]
        if inputs is not None and np.dtype(src.dtype) in EXACT_IN_FLOAT32:
            out = inputs.astype(np.float64)  # the tiler's copy of these rows holds the very same values
        else:
            out = read_window(src.dataset(), Window(0, y0, src.width, rows), self.bands, dtype=np.float64)
        sel = alpha > 0
        np.copyto(out, blended, where=(alpha >= 1.0)[None])  # deep inside the mask: the generated value
        rim = sel & (alpha < 1.0)  # the feathered rim: a blend (the right side is a copy)
        if rim.any():
            out[:, rim] = alpha[rim] * blended[:, rim] + (1.0 - alpha[rim]) * out[:, rim]
        self.masked_pixels += int((sel & valid_rows).sum())
        self.valid_pixels += int(valid_rows.sum())
        return out
