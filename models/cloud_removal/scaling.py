"""Per-image scaling of cloud-removal inputs: clear-pixel percentile statistics of a raster and the
map between its values and network space (the shared :mod:`..normalization` with this capability's
settings, :data:`~.config.DEFAULT_NORMALIZATION`).

Scheme ``per_band_clear_percentile`` (stored in the model metadata): inputs arrive in many
scalings (reflectance 0-1, Sentinel-2/Landsat digital numbers, rescaled floats), so nothing
assumes a fixed range. For every band, the ``p2`` and ``p98`` percentiles of the image's own
*clear, valid* pixels are computed on a decimated read (at most 1024 x 1024 pixels; clear = not
selected by the cloud mask, when there is one). Values are mapped linearly so that ``p2 -> -0.8``
and ``p98 -> +0.8``; beyond ``+-2`` they are compressed logarithmically (``2 + log(1 + (|v| - 2))``):
clouds are far brighter than p98, and a hard clip (files made before this option) erased the faint
ground signal under thin clouds that the network needs to unmix them. The tanh output lives in
``[-1, 1]``, i.e. up to 25 % of the p2..p98 range beyond each end, and is mapped back with the
same statistics of the same image. In training the target (the clear image) is normalised with
the statistics of the *input* image, exactly as at inference where only the cloudy image is
known. The map is linear, so scale and offset of the stored values cancel: a model trained on
reflectance works on DNs. Auxiliary rasters use the same scheme on all their valid pixels.
Without a mask at inference the statistics include the clouds (p98 is then biased upward); give
a mask when you have one.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ..errors import ModelFileError
from ..normalization import from_network, mid_half, percentile_limits, to_network
from ..raster import RasterInfo, read_decimated, valid_mask
from .config import DEFAULT_NORMALIZATION, NORMALIZATION_SCHEME

MIN_CLEAR_PIXELS = 100  # fewer clear pixels than this in the decimated read: statistics of all valid pixels


def settings(normalization: dict | None = None) -> dict:
    """:data:`DEFAULT_NORMALIZATION` with ``normalization``'s entries on top."""
    return {**DEFAULT_NORMALIZATION, **(normalization or {})}


def model_settings(normalization: dict | None, model_path: str) -> dict:
    """The settings a model file records; :class:`ModelFileError` for a scheme this version does not know.

    Files written before ``beyond_clip`` existed clipped their inputs, so that is their default.
    """
    norm = {**DEFAULT_NORMALIZATION, "beyond_clip": "clip", **(normalization or {})}
    if norm.get("scheme") != NORMALIZATION_SCHEME:
        raise ModelFileError(f"Model '{os.path.basename(model_path)}' uses normalisation "
                             f"'{norm.get('scheme')}', which this CloudFree does not know.")
    return norm


def image_statistics(info: RasterInfo, bands: Sequence[int], *, mask: RasterInfo | None = None,
                     mask_values: Sequence[float] = (1, 2), clear_values: Sequence[float] | None = None,
                     rows: tuple | None = None, normalization: dict | None = None) -> dict:
    """Per-band ``low``/``high`` percentiles of the clear, valid pixels of ``info``.

    Clear pixels: with ``clear_values`` the mask values that mean clear, else pixels whose
    mask value is not in ``mask_values``; all valid pixels without a mask. ``rows`` =
    ``(r0, r1)`` restricts the statistics to a block of rows (used for training sources,
    whose statistics come from the training block only). Falls back to all valid pixels
    when fewer than 100 clear pixels are found. Reads are decimated to at most
    ``normalization["sample"]`` pixels a side.
    """
    norm = settings(normalization)
    rows = rows if rows is not None else (0, info.height)
    data = read_decimated(info, bands, int(norm["sample"]), rows=rows)
    valid = valid_mask(data, [info.nodata[b - 1] for b in bands])
    clear = valid
    if mask is not None:
        m = read_decimated(mask, [1], int(norm["sample"]), rows=rows, dtype=None,
                           size=(data.shape[2], data.shape[1]))[0]
        if clear_values is not None:
            clear = valid & np.isin(m, np.asarray(clear_values))
        else:
            clear = valid & ~np.isin(m, np.asarray(mask_values))
    if clear.sum() < MIN_CLEAR_PIXELS:
        clear = valid
    low, high = [], []
    for i in range(len(bands)):
        lo, hi = percentile_limits(data[i][clear], norm["low_percentile"], norm["high_percentile"])
        low.append(lo)
        high.append(hi)
    return {"low": low, "high": high}


def normalize(x: np.ndarray, stats: dict, normalization: dict | None = None) -> np.ndarray:
    """``(C, ...)`` or ``(B, C, ...)`` values -> network space (float32; NaN -> 0)."""
    norm = settings(normalization)
    return to_network(x, stats, target=norm["target"], clip=norm["clip"], beyond=norm.get("beyond_clip", "clip"))


def denormalize(y: np.ndarray, stats: dict, normalization: dict | None = None) -> np.ndarray:
    """Inverse of :func:`normalize` (without the clip), as float64."""
    return from_network(y, stats, target=settings(normalization)["target"])


def band_centres(stats: dict) -> np.ndarray:
    """Per-band middle of the percentile limits (the value that maps to 0)."""
    return mid_half(stats)[0]


def to_display(y: np.ndarray) -> np.ndarray:
    """Network-space values -> [0, 1] (p2 -> 0.1, p98 -> 0.9) for quick-looks and metrics."""
    return np.clip((np.asarray(y, dtype=np.float32) + 1.0) * 0.5, 0.0, 1.0)
