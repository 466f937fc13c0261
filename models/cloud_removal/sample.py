"""One decimated read of the input that every whole-image step of a removal shares.

Before the tiles run, ``remove_clouds`` looks at the whole input three times: the clear-pixel
statistics of the value map (:func:`.scaling.image_statistics`, at most ``sample`` pixels a side),
the share of pixels outside the training range (:func:`.domain.outside_fraction`) and the coarse
fill prior (:func:`.prior.coarse_fill`). Without overviews, a decimated read of a tiled,
compressed raster still decompresses every block, so three reads cost three passes over the file
(about 0.3 s each for 4096 x 4096 x 4 bands on two cores). :func:`read_input_sample` makes the
pass once; the smaller samples are taken from it by the same nearest-pixel rule
(:func:`.raster.subsample_nearest`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..raster import RasterInfo, read_decimated, subsample_nearest


@dataclass(frozen=True)
class InputSample:
    """The input's bands (float64 ``(bands, h, w)``) and its mask's band (stored type ``(h, w)``, or
    None without a mask) on the same decimated grid."""

    values: np.ndarray
    mask: np.ndarray | None

    @property
    def size(self) -> tuple:
        """``(w, h)`` of the sample."""
        return self.values.shape[2], self.values.shape[1]

    def reduced(self, size: tuple) -> "InputSample":
        """The sample at ``size = (w, h)`` (no larger than its own), picked by the nearest-pixel rule."""
        w, h = self.size
        if size[0] > w or size[1] > h:
            raise ValueError(f"A sample of {w} x {h} pixels cannot give one of {size[0]} x {size[1]}.")
        mask = None if self.mask is None else subsample_nearest(self.mask, size)
        return InputSample(subsample_nearest(self.values, size), mask)


def read_input_sample(src: RasterInfo, bands, mask: RasterInfo | None, max_size: int) -> InputSample:
    """The ``bands`` of ``src`` read at most ``max_size`` pixels a side, and ``mask`` (band 1) on the same grid."""
    values = read_decimated(src, bands, max_size)
    size = (values.shape[2], values.shape[1])
    m = None if mask is None else read_decimated(mask, [1], 0, size=size, dtype=None)[0]
    return InputSample(values, m)
