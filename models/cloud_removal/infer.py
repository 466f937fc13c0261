"""Removing clouds from a raster with a trained generator: :func:`remove_clouds` opens its inputs and
the model once, takes the map between the raster's values and network space the model records
(:func:`.scaling.model_scaling`: the image's own statistics, or one fixed map for every image),
builds the coarse fill prior when the generator uses one, runs the generator tile by tile
(:func:`..tiling.run_tiled`) and, when a mask is given, feathers the generated pixels into the
input inside the mask.

The mask is optional. Without one every pixel is generated: the use of a pix2pix model trained on
cloudy/clear pairs (thin clouds and haze over the whole image). With one, every clear pixel is
written back bit for bit and the generated pixels are cross-faded into the mask edge over the
feather width. Mask-guided models (a cloud-mask input channel, a fill generator) need the mask.

A raster smaller than one tile is processed as one tile, mirror-padded beyond its edges by the
tiler, as every raster's edge tiles are.

Dropout is off at inference (``model.eval()``): analysts need the same output for the same input,
and with overlapping tiles a stochastic generator would give two different predictions for the
same pixel and blur or seam the cross-fade.
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import InputError
from ..grids import check_same_grid
from ..raster import RasterInfo, parse_bands
from ..runtime import CancelCheck, Progress, check_cancelled
from . import guided
from .config import GUIDED, TASK
from .domain import outside_fraction, warning
from .feathering import MaskFeathering
from .generators import FILL_ARCHITECTURE, GENERATORS, RESIDUAL_ARCHITECTURE
from .prior import coarse_fill_prior
from .sample import InputSample, read_input_sample
from .scaling import ModelScaling, ValueMap, model_scaling

DEFAULT_OVERLAP = 32    # pixels, at most a quarter of the tile (small-tile models keep most of each tile)
DEFAULT_FEATHER = 8.0  # pixels; generators without a fill need a transition into the clear pixels


@dataclass
class RemovalOptions:
    """How to run the generator: ``tile`` (None = the model's; a raster smaller than a tile is
    mirror-padded), ``overlap`` between tiles (None = a quarter of the tile, at most
    :data:`DEFAULT_OVERLAP` pixels), tiles per ``batch_size``, ``device``, the inference ``backend``
    (:data:`..backends.BACKENDS`: auto, torch or onnxruntime), and ``feather``:
    the width in pixels over which generated pixels are cross-faded into the clear pixels at the
    mask edge, inside the mask (None = none for fill-based generators, whose fill already meets
    the clear pixels at the mask edge, else :data:`DEFAULT_FEATHER` pixels; used only with a mask);
    ``executor``: where the tiles run (None = here; :func:`..tiling.open_executor`)."""

    tile: int | None = None
    overlap: int | None = None
    batch_size: int = 4
    device: str = "auto"
    feather: float | None = None
    backend: str = "auto"
    executor: object = None


@dataclass
class CloudyInput:
    """The raster to clear, its selected bands, its mask (values as floats) and auxiliary rasters."""

    src: RasterInfo
    bands: list
    mask: RasterInfo | None
    mask_values: np.ndarray
    aux: list  # [(RasterInfo, bands)]
    guides: list = field(default_factory=list)   # guides.Guide: other dates, radar
    prepared: object = None                      # guides.PreparedGuides on the input's grid, once prepared

    @property
    def aux_channels(self) -> int:
        return sum(len(b) for _, b in self.aux)


@dataclass
class RemovalModel:
    """A loaded generator, its metadata and the scaling it records."""

    network: object
    meta: object
    scaling: ModelScaling
    device: object
    path: str

    @property
    def label(self) -> str:
        return os.path.basename(self.path)

    @property
    def uses_mask(self) -> bool:
        return "cloud_mask" in self.meta.extra_channels

    @property
    def uses_fill(self) -> bool:
        return self.meta.architecture in (FILL_ARCHITECTURE, GENERATORS[GUIDED]) or (
            self.is_residual and self.meta.hyperparameters.get("start") == "fill")

    @property
    def is_guided(self) -> bool:
        return guided.is_guided(self.meta.extra_channels)

    @property
    def is_residual(self) -> bool:
        """A :class:`..networks.ResidualGenerator`: the bands, then (optional) radar and its validity."""
        return self.meta.architecture == RESIDUAL_ARCHITECTURE

    @property
    def needs_mask(self) -> bool:
        """Mask-guided: the mask is an input channel, or the generator fills the masked pixels."""
        return self.uses_mask or self.uses_fill

    @property
    def aux_channels(self) -> int:
        return sum(1 for c in self.meta.extra_channels if str(c).startswith("aux:"))

    @property
    def guide_kinds(self) -> tuple:
        """``(optical, radar bands)`` the model was trained with."""
        kinds = self.meta.training.get("guide_kinds") or {}
        return bool(kinds.get("optical", True)), guided.radar_bands(self.meta.extra_channels)


@dataclass
class ValueMaps:
    """The maps between stored values and network space of one run: the image's and each auxiliary raster's."""

    image: ValueMap
    aux: list


def remove_clouds(src: RasterInfo, out_path: str, model_path: str, *, bands=None, mask: RasterInfo | None = None,
                  mask_values=(1, 2), aux=None, guides=None, options: RemovalOptions | None = None,
                  progress: Progress = None, cancelled: CancelCheck = None) -> dict:
    """Replace clouds in ``src`` with generated pixels; write ``out_path`` on ``src``'s grid.

    ``bands``: the bands of ``src`` the model expects (default: all). ``mask`` (optional): a
    raster on ``src``'s grid whose ``mask_values`` mark clouds/shadows (any layer: Fmask, SCL,
    s2cloudless, a detection output); only those pixels change, cross-faded into the mask edge
    over ``options.feather`` pixels, and all other pixels are copied bit-identically. Without a
    mask every pixel is generated (a mask-guided model then raises :class:`InputError`).
    ``aux``: auxiliary rasters (RasterInfo or ``(RasterInfo, bands)``) on ``src``'s grid, as
    many channels as the model was trained with. ``guides``: other dates of the same place and/or
    radar (:class:`~.guides.Guide`, any grid: warped onto ``src``'s), which a guided model needs
    (those it was trained with); where no guide date is valid a guided model falls back to a fill.
    ``options``: tile size, overlap, batch size,
    device and feathering (:class:`RemovalOptions`). Returns a summary dict; its
    ``outside_training_range`` is the share of pixels outside the range the model was trained on
    (:mod:`.domain`) and ``warning`` a sentence for the analyst when that share is large.
    """
    check_cancelled(cancelled)
    options = options or RemovalOptions()
    inputs = cloudy_input(src, bands, mask, mask_values, aux, guides)
    model = load_removal_model(model_path, inputs, options.device)
    check_input_fits(model, inputs)
    with tempfile.TemporaryDirectory(prefix="cloudfree-guides-") as folder:
        if model.is_guided and (inputs.guides or not guided.radar_optional(model.meta.extra_channels)):
            inputs = prepare_input_guides(model, inputs, folder, progress, cancelled)
        result = _remove(model, inputs, src, out_path, options, progress, cancelled)
    if inputs.prepared is not None:
        result["guides"] = inputs.prepared.report
    return result


def _remove(model, inputs: CloudyInput, src: RasterInfo, out_path: str, options: RemovalOptions, progress,
            cancelled) -> dict:
    """The stages after loading: tile size, value maps, feathering, the prior, the tiles, the summary."""
    mask = inputs.mask
    tile = tile_size(model, options)
    options = replace(options, overlap=tile_overlap(options, tile))
    sample = read_input_sample(src, inputs.bands, mask, int(model.scaling.normalization["sample"]))
    maps = value_maps(model, inputs, sample)
    feathering = mask_feathering(model, inputs, options)
    outside = outside_fraction(src, inputs.bands, model.meta.training.get("input_range", {}), sample=sample)
    t0 = time.perf_counter()
    use_prior = model.uses_fill and mask is not None
    with (coarse_fill_prior(src, inputs.bands, mask, inputs.mask_values, maps.image, sample)
          if use_prior else nullcontext()) as prior:
        runner = run_generator(model, inputs, maps, prior, feathering, out_path, tile, options, progress, cancelled)
    result = summary(out_path, model, inputs, tile, options, maps, feathering, time.perf_counter() - t0)
    return {**result, "backend": runner.detail, "outside_training_range": outside,
            "warning": warning(outside, src.name)}


# --------------------------------------------------------------------------- stages


def cloudy_input(src: RasterInfo, bands, mask: RasterInfo | None, mask_values, aux, guides=None) -> CloudyInput:
    """Parse the bands, the mask values and the auxiliary rasters of one run."""
    return CloudyInput(src=src, bands=parse_bands(bands, src.band_count, src.name), mask=mask,
                       mask_values=np.asarray([float(v) for v in mask_values]), aux=_as_aux_list(aux),
                       guides=list(guides or []))


def prepare_input_guides(model: RemovalModel, inputs: CloudyInput, folder: str, progress, cancelled) -> CloudyInput:
    """The guides a guided model needs, checked by kind and prepared onto the input's grid."""
    from .guides import prepare_guides, split_guides

    optical, radar = model.guide_kinds
    given_optical, given_radar = split_guides(inputs.guides)
    radar_needed = radar and not guided.radar_optional(model.meta.extra_channels)
    needs = (["another date of the same place (an optical guide)"] if optical and not given_optical else []) + (
        [f"Sentinel-1 radar ({radar} band(s): VV, VH in dB or linear)"] if radar_needed and not given_radar else [])
    if needs:
        raise InputError(f"Model '{model.label}' is guided: to clear layer '{inputs.src.name}' it needs "
                         f"{' and '.join(needs)} in GUIDES.")
    if given_radar and not radar:
        raise InputError(f"Model '{model.label}' was not trained with radar; remove the radar guide(s) "
                         f"{', '.join(g.name for g in given_radar)}.")
    if given_optical and not optical:
        raise InputError(f"Model '{model.label}' was trained with radar only; remove the optical guide(s).")
    prepared = prepare_guides(inputs.src, inputs.bands, inputs.guides, folder, target_mask=inputs.mask,
                              cloud_values=tuple(inputs.mask_values), progress=progress, cancelled=cancelled)
    if prepared.radar is not None and prepared.radar_bands != radar:
        raise InputError(f"Model '{model.label}' expects {radar} radar band(s); the radar guides give "
                         f"{prepared.radar_bands}.")
    return replace(inputs, prepared=prepared)


def _as_aux_list(aux) -> list:
    if aux is None:
        return []
    if isinstance(aux, RasterInfo):
        aux = [aux]
    out = []
    for a in aux:
        if isinstance(a, RasterInfo):
            out.append((a, list(range(1, a.band_count + 1))))
        else:
            info, bands = a
            out.append((info, parse_bands(bands, info.band_count, info.name)))
    return out


def load_removal_model(model_path: str, inputs: CloudyInput, device: str) -> RemovalModel:
    """Load the generator once (:func:`..weights.load_model`: task and band count checked), dropout off."""
    from ..runtime import select_device
    from ..weights import load_model

    dev = select_device(device)
    network, meta = load_model(model_path, task=TASK, band_count=len(inputs.bands), layer=inputs.src.name,
                               device=dev)
    network.eval()  # dropout off, deterministic (see the module docstring)
    return RemovalModel(network, meta, model_scaling(meta.normalization, model_path, meta.band_count), dev,
                        model_path)


def check_input_fits(model: RemovalModel, inputs: CloudyInput) -> None:
    """The auxiliary channels and the mask the model needs, all rasters on one grid."""
    if inputs.guides and not model.is_guided:
        raise InputError(f"Model '{model.label}' uses no guides; leave GUIDES empty or train a guided model "
                         "(traincloudremoval with guides).")
    if inputs.aux_channels != model.aux_channels:
        raise InputError(f"Model '{model.label}' was trained with {model.aux_channels} auxiliary "
                         f"channel(s); {inputs.aux_channels} were given.")
    if model.needs_mask and inputs.mask is None:
        raise InputError(
            f"Model '{model.label}' is mask-guided: it fills the pixels a cloud mask marks, so it needs a cloud mask "
            f"to clear layer '{inputs.src.name}'. Give a cloud mask layer on the input's grid (any layer: Fmask, SCL, "
            "s2cloudless or the cloud detection output, with the mask values that mean cloud or shadow), or use a "
            "pix2pix model trained on cloudy/clear pairs without masks, which generates every pixel.")
    check_same_grid([inputs.src] + ([inputs.mask] if inputs.mask is not None else []) + [a for a, _ in inputs.aux])


def tile_size(model: RemovalModel, options: RemovalOptions) -> int:
    """The tile size (the model's unless given), checked against the network's depth and the overlap.

    A raster smaller than the tile is not refused: its one tile is mirror-padded beyond its edges.
    """
    depth = int(model.meta.hyperparameters.get("depth", 8))
    tile = int(options.tile or model.meta.tile_size)
    if tile < 1 or tile % (2 ** depth):
        raise InputError(f"Tile size {tile} must be a multiple of {2 ** depth} for model '{model.label}'.")
    return tile


def tile_overlap(options: RemovalOptions, tile: int) -> int:
    """The overlap given, checked against the tile, or the default for this tile."""
    if options.overlap is None:
        return min(DEFAULT_OVERLAP, tile // 4)
    if not 0 <= options.overlap < tile:
        raise InputError(f"Overlap {options.overlap} must be between 0 and the tile size {tile}.")
    return int(options.overlap)


def value_maps(model: RemovalModel, inputs: CloudyInput, sample: InputSample | None = None) -> ValueMaps:
    """The image's map to network space (its clear-pixel statistics, or the model's fixed map) and the auxiliary
    rasters' maps. ``sample``: the input's bands and mask already read (:mod:`.sample`)."""
    base = inputs.prepared.base if inputs.prepared is not None else None  # an overcast image: the guides' range
    image = model.scaling.image_map(inputs.src, inputs.bands, mask=inputs.mask, mask_values=inputs.mask_values,
                                    fallback=base, sample=sample)
    return ValueMaps(image, [model.scaling.aux_map(a, b) for a, b in inputs.aux])


def mask_feathering(model: RemovalModel, inputs: CloudyInput, options: RemovalOptions) -> MaskFeathering | None:
    """The cross-fade into the mask edge (None without a mask: every pixel is generated)."""
    feather = options.feather if options.feather is not None else (0.0 if model.uses_fill else DEFAULT_FEATHER)
    if not feather >= 0:
        raise InputError(f"Feather width {feather} must be 0 or more pixels.")
    if inputs.mask is None:
        return None
    return MaskFeathering(inputs.src, inputs.bands, inputs.mask, inputs.mask_values, feather)


class GeneratorTiles:
    """The tiler's function: a batch of input tiles -> generated tiles, in the input's units.

    A batch holds the selected bands, then the mask (when given), the auxiliary bands and the
    coarse fill prior (when used), as laid out by :func:`run_generator`.
    """

    def __init__(self, model: RemovalModel, inputs: CloudyInput, maps: ValueMaps, with_prior: bool,
                 cancelled: CancelCheck, runner=None):
        self.model, self.inputs, self.maps = model, inputs, maps
        self.runner = runner or model.network  # a backends.Runner, or the module itself
        self.with_prior, self.cancelled = with_prior, cancelled
        self.nb = len(inputs.bands)

    def __getstate__(self) -> dict:
        # shipped to Dask workers without the cancel callback (the executor checks it here)
        return {**self.__dict__, "cancelled": None}

    def network_input(self, batch: np.ndarray, valid: np.ndarray) -> tuple:
        """``(x, pos)``: the bands in network space, the mask channel and auxiliary channels; ``pos`` = first
        unused band."""
        nb, inputs = self.nb, self.inputs
        x_img = self.maps.image.to_network(batch[:, :nb])  # float32 tiles, mapped in float32
        if not valid.all():  # (a boolean assignment costs as much as the mapping even when it changes nothing)
            x_img[np.broadcast_to(~valid[:, None], x_img.shape)] = 0.0
        parts = [x_img]
        pos = nb
        if inputs.mask is not None:
            m = np.isin(batch[:, pos], inputs.mask_values)
            pos += 1
        else:
            m = np.zeros(valid.shape, dtype=bool)
        if self.model.uses_mask:
            parts.append((m | ~valid)[:, None].astype(np.float32))
        for (_, ab), aux_map in zip(inputs.aux, self.maps.aux):
            parts.append(aux_map.to_network(batch[:, pos:pos + len(ab)]))
            pos += len(ab)
        if self.model.is_residual:
            return self._residual_input(parts, batch, pos, valid.shape)
        if inputs.prepared is not None:
            base = radar = None
            if inputs.prepared.base is not None:
                base, pos = batch[:, pos:pos + nb], pos + nb
            if inputs.prepared.radar is not None:
                r = inputs.prepared.radar_bands
                radar, pos = batch[:, pos:pos + r], pos + r
            parts += guided.guide_channels(base, radar, nb, self.maps.image.to_network, valid.shape)
        return np.concatenate(parts, axis=1), pos

    def _residual_input(self, parts: list, batch: np.ndarray, pos: int, shape: tuple) -> tuple:
        """A residual generator's input: the bands, then its radar and the radar's validity (zeros without)."""
        r = guided.radar_bands(self.model.meta.extra_channels)
        if r:
            prepared = self.inputs.prepared
            radar = None
            if prepared is not None and prepared.radar is not None:
                radar, pos = batch[:, pos:pos + r], pos + r
            parts += guided.radar_channels(radar, r, shape)
        return np.concatenate(parts, axis=1), pos

    def __call__(self, batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
        check_cancelled(self.cancelled)
        needed = self.tiles_to_generate(batch)
        if needed.all():
            return self.generate(batch, valid)
        out = np.array(batch[:, :self.nb], dtype=np.float32)  # written over by the input: see tiles_to_generate
        if needed.any():
            out[needed] = self.generate(batch[needed], valid[needed])
        return out

    def tiles_to_generate(self, batch: np.ndarray) -> np.ndarray:
        """Per tile, whether the network must run. With a mask, every output pixel outside it is the input
        (feathering weighs the generated value 0 there), and a masked pixel takes values only from tiles that
        contain it: a tile without a masked pixel changes nothing, so it is skipped (the output is exactly
        the same; most tiles of a partly cloudy scene are clear)."""
        if self.inputs.mask is None:
            return np.ones(len(batch), dtype=bool)
        return np.isin(batch[:, self.nb], self.inputs.mask_values).any(axis=(1, 2))

    def generate(self, batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
        import torch

        dev, nb = self.model.device, self.nb
        x, pos = self.network_input(batch, valid)
        x = torch.from_numpy(x).to(dev)
        prior = None
        if self.with_prior:
            prior = torch.from_numpy(np.ascontiguousarray(batch[:, pos:pos + nb], dtype=np.float32)).to(dev)
        with torch.inference_mode():
            y = (self.runner(x, prior) if prior is not None else self.runner(x)).float().cpu().numpy()
        return self.maps.image.from_network(y).astype(np.float32, copy=False)  # float32 already


def run_generator(model: RemovalModel, inputs: CloudyInput, maps: ValueMaps,
                  prior: RasterInfo | None, feathering: MaskFeathering | None, out_path: str, tile: int,
                  options: RemovalOptions, progress: Progress, cancelled: CancelCheck):
    """Run the generator over the whole raster in overlapping tiles and write the output; returns the
    :class:`..backends.Runner` that ran it (torch or ONNX Runtime, as ``options.backend`` chose)."""
    from ..backends import prepare
    from ..runtime import report
    from ..tiling import run_tiled

    src, bands = inputs.src, inputs.bands
    nb = len(bands)
    extra = ([(inputs.mask, [1])] if inputs.mask is not None else []) + list(inputs.aux)
    if inputs.prepared is not None:
        extra += [(info, list(range(1, info.band_count + 1)))
                  for info in (inputs.prepared.base, inputs.prepared.radar) if info is not None]
    if prior is not None:
        extra.append((prior, list(range(1, nb + 1))))
    descriptions = [src.descriptions[b - 1] if b - 1 < len(src.descriptions) else "" for b in bands]
    runner = prepare(model.network, model.device, options.backend, tile=tile, batch=options.batch_size)
    report(progress, 0.0, f"Inference: {runner.detail}")
    run_tiled(GeneratorTiles(model, inputs, maps, prior is not None, cancelled, runner), src, out_path,
              bands=bands, extra=extra, out_bands=nb, out_dtype=src.dtype, tile=tile, overlap=options.overlap,
              batch_size=options.batch_size, descriptions=descriptions, postprocess=feathering,
              progress=progress, cancelled=cancelled, executor=options.executor)
    return runner


def summary(out_path: str, model: RemovalModel, inputs: CloudyInput, tile: int, options: RemovalOptions,
            maps: ValueMaps, feathering: MaskFeathering | None, seconds: float) -> dict:
    from ..runtime import describe_device

    return {
        "output": out_path,
        "model": model.path,
        "bands": inputs.bands,
        "tile": tile,
        "overlap": options.overlap,
        "device": describe_device(model.device),
        "masked_pixels": feathering.masked_pixels if feathering is not None else None,
        "valid_pixels": feathering.valid_pixels if feathering is not None else None,
        "normalization": maps.image.to_dict(),
        "padded": inputs.src.width < tile or inputs.src.height < tile,
        "feather": feathering.feather if feathering is not None else None,
        "seconds": seconds,
    }
