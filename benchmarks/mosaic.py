"""A large raster of real imagery for the speed benchmarks (``inference.py``, ``cloud_removal.py``,
``scale_out.py``).

The first 256 x 256 px of ``s2_cloud_pair``'s clear date (blue, green, red, NIR; the pair is held out of
every training run) mirrored left-right and up-down into a 512 px block, repeated to any size. Mirroring
leaves no seams, so the tiler sees real texture everywhere; nothing of it is written into the project.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

PAIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "s2_cloud_pair"
BANDS = [2, 3, 4, 8]


def clear_date_mosaic(raster, size: int) -> np.ndarray:
    """``(4, size, size)`` float32, C-contiguous; ``raster``: the engine's :mod:`cloudfree.models.raster`."""
    src = raster.read_window(raster.open_raster(str(PAIR / "clean.tif")), (0, 0, 256, 256), BANDS)
    block = np.concatenate([src, src[:, :, ::-1]], axis=2)
    block = np.concatenate([block, block[:, ::-1]], axis=1)
    reps = size // 512 + 1
    return np.ascontiguousarray(np.tile(block, (1, reps, reps))[:, :size, :size])
