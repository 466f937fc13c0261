"""What an analyst does without a trained model, offered beside the models: the unmixing fill (no
guide, any band count), the colour-matched copy of the nearest clear other date, and the fusion
composite of the other dates.

- ``fill``: the masked pixels filled from the surrounding clear pixels, the ground under thin
  cloud recovered by linear unmixing: exactly the untrained ``unmix_blend`` generator (its head
  starts at zero), written on the fly for the input's band count (:func:`fill_model`).

- ``matched_copy``: each masked pixel takes the value of the nearest-in-time guide date that is
  clear there, its bands matched linearly (mean and standard deviation) to the target's clear
  pixels (:mod:`.guides`); pixels no guide sees get a smooth fill. It is exactly an untrained
  guided model (:class:`..networks.GuidedGenerator` starts with a zero residual), so it runs
  through :func:`.infer.remove_clouds` with a model file written on the fly
  (:func:`matched_copy_model`), with the same warping, masks, tiling and feathering.
- ``fusion``: the per-pixel median of the target and the other dates, each without its clouds
  (:func:`..fusion.rasters.fuse_rasters`, dates warped onto the target's grid, no colour
  matching: what a compositing tool gives), pasted into the target's masked pixels; clear pixels
  are copied bit for bit.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np

from ..errors import InputError
from ..raster import RasterInfo, RasterWriter, parse_bands, raster_info, read_window
from ..windows import iter_windows
from ..runtime import CancelCheck, Progress
from . import guided
from .config import DEFAULT_NORMALIZATION, GUIDED, TASK
from .generators import GENERATORS

METHODS = ("model", "fill", "matched_copy", "fusion")
COPY_NETWORK = {"depth": 2, "base": 4, "max_channels": 4}  # the residual is zero: the smallest U-Net will do


def fill_model(folder: str, bands: int) -> str:
    """A mask-guided model file whose output is the unmixing fill of ``bands`` bands (an untrained
    ``unmix_blend`` generator: no guide, no training, any band count)."""
    from .. import networks
    from ..weights import ModelMetadata, save_model
    from .generators import generator_spec

    arch, hp = generator_spec("unmix_blend", bands + 1, bands, COPY_NETWORK | {"depth": 2}, upsample="resize")
    net = networks.build(arch, hp)
    meta = ModelMetadata(task=TASK, architecture=arch, hyperparameters=hp, bands=[f"band {b + 1}" for b in range(bands)],
                         extra_channels=["cloud_mask"], normalization=dict(DEFAULT_NORMALIZATION), tile_size=256,
                         training={"data_summary": "none: the unmixing fill of an untrained unmix_blend generator"})
    return save_model(os.path.join(folder, f"fill_{bands}.safetensors"), net, meta)


def matched_copy_model(folder: str, radar: int = 0) -> str:
    """A guided model file whose output is the colour-matched nearest clear date (a zero residual)."""
    from .. import networks
    from ..weights import ModelMetadata, save_model

    hp = {"radar": int(radar), **COPY_NETWORK}
    net = networks.build(GENERATORS[GUIDED], hp)
    meta = ModelMetadata(task=TASK, architecture=GENERATORS[GUIDED], hyperparameters=hp, bands=["any"],
                         extra_channels=["cloud_mask"] + guided.channel_names(radar),
                         normalization=dict(DEFAULT_NORMALIZATION), tile_size=256,
                         training={"data_summary": "none: the colour-matched copy of the nearest clear date",
                                   "any_band_count": True, "guide_kinds": {"optical": True, "radar": radar}})
    return save_model(os.path.join(folder, "matched_copy.safetensors"), net, meta)


def fusion_composite(src: RasterInfo, out_path: str, guides: list, *, bands=None, mask: RasterInfo,
                     mask_values=(1, 2), progress: Progress = None, cancelled: CancelCheck = None) -> dict:
    """The median of the target and the optical guides, each without its clouds, in the target's masked
    pixels; clear pixels copied bit for bit."""
    from ..fusion import FuseRasterOptions, fuse_rasters
    from ..tiling import run_tiled

    from .guides import split_guides

    optical, _ = split_guides(guides)
    if not optical:
        raise InputError("The fusion composite needs other dates of the same place (optical guides).")
    if mask is None:
        raise InputError(f"The fusion composite replaces the clouds a mask marks: give the cloud mask of "
                         f"'{src.name}'.")
    band_list = parse_bands(bands, src.band_count, src.name)
    values = tuple(float(v) for v in mask_values)
    with tempfile.TemporaryDirectory(prefix="cloudfree-fusion-baseline-") as folder:
        infos = [raster_info(g.path, g.name) for g in optical]
        masks = [mask] + [_guide_mask(g, info, values, folder, i) for i, (g, info) in enumerate(zip(optical, infos))]
        fused = os.path.join(folder, "fused.tif")
        nb = len(band_list)
        dates = [_bands_vrt(src, band_list, folder, "target")] + [
            _bands_vrt(info, list(g.bands or band_list), folder, f"guide_{i}")
            for i, (g, info) in enumerate(zip(optical, infos))]
        fuse_rasters(dates, fused, masks=masks, mask_values=values,
                     options=FuseRasterOptions(method="median", align=True), progress=progress, cancelled=cancelled)

        def paste(batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
            img, cloud, comp = batch[:, :nb], np.isin(batch[:, nb], values), batch[:, nb + 1:]
            use = cloud[:, None] & np.isfinite(comp)
            return np.where(use, comp, img)

        extra = [(mask, [1]), (raster_info(fused), list(range(1, nb + 1)))]
        run_tiled(paste, src, out_path, bands=band_list, extra=extra, out_dtype=src.dtype, tile=256, overlap=0,
                  progress=progress, cancelled=cancelled)
    return {"output": out_path, "method": "fusion", "dates": 1 + len(optical)}


def _bands_vrt(info: RasterInfo, bands: list, folder: str, name: str) -> RasterInfo:
    """The chosen bands of a raster as a VRT (every date of the composite then has the same bands)."""
    from osgeo import gdal

    bands = parse_bands(bands, info.band_count, info.name)
    if len(set(bands)) != len(bands):
        raise InputError(f"Layer '{info.name}': bands {bands} name a band twice.")
    path = os.path.join(folder, f"{name}.vrt")
    gdal.Translate(path, info.path, format="VRT", bandList=list(bands))
    return raster_info(path, info.name)


def _guide_mask(guide, info: RasterInfo, values: tuple, folder: str, k: int) -> RasterInfo:
    """The guide's own mask, block by block, its cloud values mapped to the target's first one (all clear
    when the guide has no mask), on the guide's grid."""
    m = raster_info(guide.mask) if guide.mask is not None else None
    marked_values = np.asarray([float(v) for v in guide.mask_values])
    clear_value = 0 if values[0] != 0 else 255
    path = os.path.join(folder, f"mask_{k}.tif")
    like = m or info
    with RasterWriter(path, like=like, band_count=1, dtype="float32") as out:
        for w in iter_windows(like.width, like.height, 1024):
            if m is None:
                block = np.full((1, w.height, w.width), clear_value, np.float32)
            else:
                arr = read_window(m.dataset(), w, [1], np.float64)
                block = np.where(np.isin(arr, marked_values), values[0], clear_value).astype(np.float32)
            out.write(block, w.col_off, w.row_off)
    return raster_info(path)
