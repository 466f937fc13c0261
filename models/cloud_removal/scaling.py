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

Scheme ``fixed_per_band`` (:class:`..normalization.FixedScaling`, stored as the model's
``normalization``): one per-band map learned once from the training data or taken from a
reflectance preset, the same for every image, with no per-image statistics. A model trained so
can learn a change of brightness and colour (haze lifts the whole histogram; mapping back with the
hazy image's own statistics would put the haze back). Its inputs must be in the units it was
trained on (a model trained on Sentinel-2 DNs works on Sentinel-2 DNs).

:func:`model_scaling` reads either scheme from a model's metadata (:class:`ModelScaling`) and
gives, per raster, the map to network space and back (:class:`PercentileMap` or the
:class:`~..normalization.FixedScaling` itself). Auxiliary rasters are always scaled per image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from ..errors import ModelFileError
from ..normalization import FIXED_SCHEME, FixedScaling, from_network, mid_half, percentile_limits, to_network
from ..raster import RasterInfo, read_decimated, valid_mask
from .config import DEFAULT_NORMALIZATION, NORMALIZATION_SCHEME

MIN_CLEAR_PIXELS = 100  # fewer clear pixels than this in the decimated read: statistics of all valid pixels


def settings(normalization: dict | None = None) -> dict:
    """:data:`DEFAULT_NORMALIZATION` with ``normalization``'s entries on top."""
    return {**DEFAULT_NORMALIZATION, **(normalization or {})}


def model_settings(normalization: dict | None, model_path: str) -> dict:
    """The per-image settings a model file records; :class:`ModelFileError` for another scheme.

    Files written before ``beyond_clip`` existed clipped their inputs, so that is their default.
    """
    norm = {**DEFAULT_NORMALIZATION, "beyond_clip": "clip", **(normalization or {})}
    if norm.get("scheme") != NORMALIZATION_SCHEME:
        raise unknown_scheme(model_path, norm.get("scheme"))
    return norm


SCHEMES = (NORMALIZATION_SCHEME, FIXED_SCHEME)  # the schemes this version reads


class ValueMap(Protocol):
    """How one raster's values reach network space and come back."""

    def to_network(self, x: np.ndarray) -> np.ndarray: ...

    def from_network(self, y: np.ndarray) -> np.ndarray: ...

    def to_dict(self) -> dict: ...


@dataclass(frozen=True)
class PercentileMap:
    """Scheme ``per_band_clear_percentile``: one image's percentile statistics and the model's settings."""

    stats: dict
    normalization: dict

    def to_network(self, x: np.ndarray) -> np.ndarray:
        return normalize(x, self.stats, self.normalization)

    def from_network(self, y: np.ndarray) -> np.ndarray:
        return denormalize(y, self.stats, self.normalization)

    def to_dict(self) -> dict:
        return {"scheme": NORMALIZATION_SCHEME, **self.stats}


@dataclass(frozen=True)
class ModelScaling:
    """A model's scaling as its file records it: per image (``fixed is None``; ``normalization`` holds
    the percentile settings) or one :class:`FixedScaling` for every image. Auxiliary rasters are
    scaled per image with ``normalization`` in both cases."""

    normalization: dict
    fixed: FixedScaling | None = None

    @property
    def scheme(self) -> str:
        return NORMALIZATION_SCHEME if self.fixed is None else FIXED_SCHEME

    def image_map(self, info: RasterInfo, bands: Sequence[int], *, mask: RasterInfo | None = None,
                  mask_values: Sequence[float] = (1, 2), fallback: RasterInfo | None = None,
                  sample=None) -> ValueMap:
        """The map of the bands the model generates: the fixed one, or this image's clear-pixel statistics
        (``fallback``'s valid pixels when the image has almost none clear: :func:`image_statistics`;
        ``sample``: the input already read, see there)."""
        if self.fixed is not None:
            return self.fixed
        return PercentileMap(image_statistics(info, bands, mask=mask, mask_values=mask_values,
                                              normalization=self.normalization, fallback=fallback, sample=sample),
                             self.normalization)

    def aux_map(self, info: RasterInfo, bands: Sequence[int]) -> PercentileMap:
        """The map of an auxiliary raster: statistics of all its valid pixels."""
        return PercentileMap(image_statistics(info, bands, normalization=self.normalization), self.normalization)


def model_scaling(normalization: dict | None, model_path: str, band_count: int | None = None) -> ModelScaling:
    """How the model in ``model_path`` maps values to network space, from its metadata's ``normalization``.

    No scheme (the oldest files) = per image. :class:`ModelFileError`, naming the file, for a
    scheme this version does not read or a fixed scaling that is damaged or has another number
    of bands than the model (``band_count``).
    """
    scheme = (normalization or {}).get("scheme", NORMALIZATION_SCHEME)
    if scheme == NORMALIZATION_SCHEME:
        return ModelScaling(model_settings(normalization, model_path))
    if scheme == FIXED_SCHEME:
        return ModelScaling(settings(), stored_fixed_scaling(normalization, model_path, band_count))
    raise unknown_scheme(model_path, scheme)


def stored_fixed_scaling(normalization: dict, model_path: str, band_count: int | None) -> FixedScaling:
    """The :class:`FixedScaling` a model file stores, checked."""
    name = os.path.basename(str(model_path))
    try:
        fixed = FixedScaling.from_dict(normalization)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"Model '{name}' has a damaged fixed scaling in its metadata ({exc!r}).") from exc
    if band_count is not None and fixed.band_count != band_count:
        raise ModelFileError(f"Model '{name}' has a fixed scaling of {fixed.band_count} band(s) for "
                             f"{band_count} model band(s); the file is damaged.")
    values = np.asarray(fixed.offset + fixed.scale + (fixed.clip,), dtype=np.float64)
    if not np.isfinite(values).all() or min(fixed.scale) <= 0 or fixed.clip <= 0:
        raise ModelFileError(f"Model '{name}' has a fixed scaling with a non-finite value or a scale "
                             f"that is not positive; the file is damaged.")
    return fixed


def unknown_scheme(model_path: str, scheme) -> ModelFileError:
    return ModelFileError(
        f"Model '{os.path.basename(str(model_path))}' maps its values with the scheme '{scheme}', which this "
        f"version of CloudFree does not read (it reads {', '.join(SCHEMES)}): the file was probably written by a "
        "newer CloudFree. Update the plugin, or choose another model.")


def image_statistics(info: RasterInfo, bands: Sequence[int], *, mask: RasterInfo | None = None,
                     mask_values: Sequence[float] = (1, 2), clear_values: Sequence[float] | None = None,
                     rows: tuple | None = None, normalization: dict | None = None,
                     fallback: RasterInfo | None = None, sample=None) -> dict:
    """Per-band ``low``/``high`` percentiles of the clear, valid pixels of ``info``.

    Clear pixels: with ``clear_values`` the mask values that mean clear, else pixels whose
    mask value is not in ``mask_values``; all valid pixels without a mask. ``rows`` =
    ``(r0, r1)`` restricts the statistics to a block of rows (used for training sources,
    whose statistics come from the training block only). Falls back to all valid pixels
    when fewer than 100 clear pixels are found, or to the valid pixels of ``fallback`` (a raster
    in the same units with as many bands, e.g. the colour-matched guide dates of an overcast
    image, whose own pixels are all cloud) when it is given. Reads are decimated to at most
    ``normalization["sample"]`` pixels a side. ``sample``: an :class:`~.sample.InputSample` of these
    bands and this mask, read at that size already (whole raster only), used instead of reading.
    """
    norm = settings(normalization)
    if sample is not None and rows is None:
        data, m = sample.values, sample.mask
    else:
        rows = rows if rows is not None else (0, info.height)
        data = read_decimated(info, bands, int(norm["sample"]), rows=rows)
        m = None if mask is None else read_decimated(mask, [1], int(norm["sample"]), rows=rows, dtype=None,
                                                     size=(data.shape[2], data.shape[1]))[0]
    valid = valid_mask(data, [info.nodata[b - 1] for b in bands])
    clear = valid
    if mask is not None:
        if clear_values is not None:
            clear = valid & np.isin(m, np.asarray(clear_values))
        else:
            clear = valid & ~np.isin(m, np.asarray(mask_values))
    if clear.sum() < MIN_CLEAR_PIXELS:
        if fallback is not None:
            return image_statistics(fallback, list(range(1, fallback.band_count + 1)), normalization=normalization)
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
    """Inverse of :func:`normalize` (without the clip): float32 for float32 ``y``, else float64."""
    return from_network(y, stats, target=settings(normalization)["target"])


def band_centres(stats: dict) -> np.ndarray:
    """Per-band middle of the percentile limits (the value that maps to 0)."""
    return mid_half(stats)[0]


def to_display(y: np.ndarray) -> np.ndarray:
    """Network-space values -> [0, 1] (p2 -> 0.1, p98 -> 0.9) for quick-looks and metrics."""
    return np.clip((np.asarray(y, dtype=np.float32) + 1.0) * 0.5, 0.0, 1.0)
