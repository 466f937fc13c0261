"""Which shipped cloud-removal model fits an input, and why (what ``removeclouds`` runs when no model is named).

The order, each measured in ``benchmarks/`` (README):

1. other dates among the guides: ``cloud_removal_guided_optical`` (radar guides are then left aside);
2. radar guides only, or no guide, with a mask and four selected bands that look like Sentinel-2 L1C
   reflectance x 1e4 (at most :data:`.domain.WARN_FRACTION` of the pixels outside the range of its real
   training triplets): ``cloud_removal_s2_s1``, the residual generator trained on real SEN12MS-CR
   clouds (it uses radar when given, and runs without);
3. radar guides only, otherwise: ``cloud_removal_guided_radar``;
4. otherwise: ``cloud_removal_small``, the unmixing fill, whose scaling adapts to any sensor's units.
"""

from __future__ import annotations

from ..raster import RasterInfo
from ..weights import read_metadata, shipped_model
from .domain import WARN_FRACTION, outside_fraction
from .guides import split_guides

FILL_MODEL = "cloud_removal_small.safetensors"
RESIDUAL_MODEL = "cloud_removal_s2_s1.safetensors"
GUIDED_OPTICAL_MODEL = "cloud_removal_guided_optical.safetensors"
GUIDED_RADAR_MODEL = "cloud_removal_guided_radar.safetensors"


def choose_shipped_model(src: RasterInfo, bands: list | None, mask: RasterInfo | None, guides: list) -> tuple:
    """``(model file, guides to pass, reason)`` for clearing ``src`` (``bands``: 1-based, None = the first
    ones the model takes) with the ``mask`` and ``guides`` given; ``reason`` is one sentence for the log."""
    optical, radar = split_guides(guides)
    if optical:
        why = "other dates are given as guides" + (" (the radar guides are left aside: train a model on dates "
                                                   "and radar together to use both)" if radar else "")
        return shipped_model(GUIDED_OPTICAL_MODEL), optical, why
    fits, why_not = residual_fits(src, bands, mask)
    if fits:
        with_radar = "with the radar guide" if radar else "without radar (none given)"
        return shipped_model(RESIDUAL_MODEL), radar, (
            f"a mask and four bands in Sentinel-2 L1C units are given: the residual generator trained on real "
            f"SEN12MS-CR clouds, {with_radar}")
    if radar:
        return shipped_model(GUIDED_RADAR_MODEL), radar, f"radar guides only ({why_not})"
    return shipped_model(FILL_MODEL), [], f"the unmixing fill, which adapts to any sensor's units ({why_not})"


def residual_fits(src: RasterInfo, bands: list | None, mask: RasterInfo | None) -> tuple:
    """``(True, "")`` when the shipped residual model fits ``src``, else ``(False, why not)``."""
    meta = read_metadata(shipped_model(RESIDUAL_MODEL))
    if mask is None:
        return False, f"'{RESIDUAL_MODEL}' needs a cloud mask"
    if not bands and src.band_count != meta.band_count:  # the first 4 of 13 L1C bands are B1-B4, not B2-B8
        return False, (f"'{RESIDUAL_MODEL}' takes {meta.band_count} bands ({', '.join(meta.bands)}); layer "
                       f"'{src.name}' has {src.band_count} and BANDS does not pick them")
    bands = list(bands) if bands else list(range(1, meta.band_count + 1))
    if len(bands) != meta.band_count:
        return False, f"'{RESIDUAL_MODEL}' takes {meta.band_count} bands ({', '.join(meta.bands)}), not {len(bands)}"
    share = outside_fraction(src, bands, meta.training.get("input_range", {}))
    if share is None or share > WARN_FRACTION:
        return False, (f"{'?' if share is None else f'{100 * share:.0f} %'} of layer '{src.name}''s pixels lie outside "
                       f"the Sentinel-2 L1C range '{RESIDUAL_MODEL}' was trained on")
    return True, ""
