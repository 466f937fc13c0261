"""Training sources: a raster (or a cloudy/clear pair) described by :class:`TrainingSource`;
:func:`hold_out_pairs`, which sets whole pairs aside for validation; :class:`OpenSource`, the same
source with its rasters opened once, its rows split into a training and a validation block and its
scaling statistics computed, which reads the windows crops need; and :func:`learn_fixed_scaling`,
the one fixed scaling learned from the training pixels of every source."""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field, replace
from typing import Optional

import numpy as np

from ..errors import InputError
from ..grids import check_same_grid
from ..normalization import FixedScaling
from ..raster import parse_bands, raster_info, read_decimated, read_window, unique_values, valid_mask
from ..windows import Window
from .scaling import image_statistics

ROLES = ("train+validation", "train", "validation")
MIN_PAIRS_TO_HOLD_OUT = 3   # places; with fewer, each pair keeps a validation block of rows instead
SCALING_SAMPLE = 512        # a fixed scaling is learned from decimated reads of at most this many pixels a side


@dataclass
class TrainingSource:
    """One raster (or raster pair) to draw training crops from.

    Synthetic mode (``cloudy`` is None): ``clear`` gets synthetic clouds; ``mask`` with
    ``clear_values`` says which pixels of ``clear`` are really clear.
    Paired mode: ``cloudy`` and ``clear`` share a grid; ``mask`` (on that grid) marks the
    clouds of ``cloudy`` with ``cloud_values``; it feeds the mask channel.
    ``aux``: further conditioning rasters ``[(path, bands), ...]`` on the same grid.
    ``guides``: other dates of the same place and/or radar (:class:`~.guides.Guide`, any grid),
    prepared onto the source's grid when it is opened; the guided generator learns from them.
    """

    clear: str
    bands: Optional[list] = None
    cloudy: Optional[str] = None
    cloudy_bands: Optional[list] = None
    mask: Optional[str] = None
    clear_values: Optional[tuple] = None
    cloud_values: tuple = (1, 2)
    aux: list = field(default_factory=list)
    guides: list = field(default_factory=list)
    val_fraction: float = 0.2
    name: str = ""
    role: str = "train+validation"   # or "train" (no validation block) or "validation" (never trained on)

    @property
    def paired(self) -> bool:
        return self.cloudy is not None

    @property
    def label(self) -> str:
        return self.name or os.path.basename(self.clear)

    def split(self, tile: int, height: int | None = None) -> tuple:
        """``((0, split), (split, height))``: training and validation row blocks.

        The validation block is the last ``val_fraction`` of the rows, at least ``tile`` rows (at
        least half the rows of a raster under two tiles high); training crops lie entirely in the
        first block, validation crops in the second. A block (or raster) smaller than the tile
        gives crops mirror-padded to the tile (:func:`~.crops.pad_to_tile`).
        ``role="train"``: all rows train, none validate; ``role="validation"``: the whole raster
        is validation (a held-out scene, to judge how a model generalises to new places).
        ``height``: the clear raster's, when the caller has it (else it is read from the file).
        """
        height = raster_info(self.clear).height if height is None else height
        if self.role not in ROLES:
            raise InputError(f"Training source '{self.label}': unknown role '{self.role}' (use {', '.join(ROLES)}).")
        if self.role == "train":
            return (0, height), (height, height)
        if self.role == "validation":
            return (0, 0), (0, height)
        val_rows = max(int(math.ceil(height * self.val_fraction)), min(tile, height // 2))
        split = height - val_rows
        if split < 1:
            raise InputError(f"Training raster '{self.label}' has {height} row(s): too few for a training block and "
                             "a validation block.")
        return (0, split), (split, height)


def as_training_source(source) -> TrainingSource:
    """A :class:`TrainingSource`, or one made from a dict of its fields (:class:`InputError` for unknown fields)."""
    if isinstance(source, TrainingSource):
        return source
    unknown = sorted(set(source) - set(TrainingSource.__dataclass_fields__))
    if unknown or "clear" not in source:
        raise InputError(f"Training source {source}: " + (f"no field named {', '.join(unknown)}" if unknown else
                         "the clear raster ('clear') is missing") +
                         f"; the fields are {', '.join(TrainingSource.__dataclass_fields__)}.")
    return TrainingSource(**source)


def hold_out_pairs(sources: list, fraction: float, seed: int) -> tuple:
    """``(sources, held-out names)``: with :data:`MIN_PAIRS_TO_HOLD_OUT` or more places (cloudy/clear
    pairs, those that share a clear raster counting as one place) whose roles are all the default,
    ``fraction`` of the places (at least one, rounded, drawn with ``seed``) validate only and the
    others train only, so validation is on places training never sees. Otherwise (fewer places,
    synthetic clouds or roles set by the caller) the sources are returned as given: each keeps a
    validation block of rows.
    """
    if not sources or not all(s.paired and s.role == ROLES[0] for s in sources):
        return list(sources), []
    places = {}
    for i, s in enumerate(sources):
        places.setdefault(os.path.realpath(s.clear), []).append(i)
    n = len(places)
    if n < MIN_PAIRS_TO_HOLD_OUT:
        return list(sources), []
    k = min(n - 1, max(1, int(round(fraction * n))))
    chosen = np.random.default_rng(seed).choice(n, size=k, replace=False)
    held = {i for p in chosen for i in list(places.values())[int(p)]}
    out = [replace(s, role="validation" if i in held else "train") for i, s in enumerate(sources)]
    return out, [out[i].name or os.path.splitext(os.path.basename(out[i].clear))[0] for i in sorted(held)]


class OpenSource:
    """A :class:`TrainingSource` with its rasters open, its rows split and its statistics computed.

    ``t0, t1`` / ``v0, v1``: the training and validation row blocks; ``stats`` / ``aux_stats``:
    the scaling statistics of the image the network sees as input and of each auxiliary raster.
    """

    def __init__(self, src: TrainingSource, tile: int, band_count: int | None, normalization: dict):
        self.src = src
        self.tile = tile
        self.normalization = normalization
        self.name = src.name or os.path.splitext(os.path.basename(src.clear))[0]
        self._describe_rasters(band_count)
        (self.t0, self.t1), (self.v0, self.v1) = src.split(tile, self.clear_info.height)
        self.height, self.width = self.clear_info.height, self.clear_info.width
        self._compute_statistics()
        self.guides = self._prepare_guides()

    def _describe_rasters(self, band_count: int | None) -> None:
        """Describe the clear, cloudy, mask and auxiliary rasters, check bands and grids."""
        src = self.src
        self.clear_info = raster_info(src.clear, self.name)
        self.bands = parse_bands(src.bands, self.clear_info.band_count, self.name)
        if band_count is not None and len(self.bands) != band_count:
            raise InputError(f"Training source '{self.name}' has {len(self.bands)} bands selected; "
                             f"the other sources have {band_count}.")
        infos = [self.clear_info]
        self.cloudy_info = None
        if src.paired:
            self.cloudy_info = raster_info(src.cloudy, self.name + " (cloudy)")
            self.cloudy_bands = parse_bands(src.cloudy_bands if src.cloudy_bands is not None else self.bands,
                                            self.cloudy_info.band_count, self.cloudy_info.name)
            if len(self.cloudy_bands) != len(self.bands):
                raise InputError(f"Training source '{self.name}': cloudy and clear band counts differ.")
            infos.append(self.cloudy_info)
        self.mask_info = raster_info(src.mask, self.name + " (mask)") if src.mask else None
        if self.mask_info is not None:
            infos.append(self.mask_info)
        self.aux_infos = []
        for path, abands in src.aux:
            ai = raster_info(path)
            self.aux_infos.append((ai, parse_bands(abands, ai.band_count, ai.name)))
            infos.append(ai)
        check_same_grid(infos)

    def _compute_statistics(self) -> None:
        """Statistics from the training block of the image the network sees as input (from the
        whole raster for a validation-only source, as inference would compute them)."""
        src, norm = self.src, self.normalization
        rows = (self.t0, self.t1) if self.t1 > self.t0 else (self.v0, self.v1)
        if src.paired:
            self.stats = image_statistics(self.cloudy_info, self.cloudy_bands, mask=self.mask_info,
                                          mask_values=src.cloud_values, rows=rows, normalization=norm)
        else:
            self.stats = image_statistics(self.clear_info, self.bands, mask=self.mask_info,
                                          clear_values=src.clear_values if self.mask_info else None,
                                          rows=rows, normalization=norm)
        self.aux_stats = [image_statistics(ai, ab, rows=rows, normalization=norm) for ai, ab in self.aux_infos]

    def _prepare_guides(self):
        """The guides on this source's grid (:func:`~.guides.prepare_guides`), kept in a temporary folder
        for the life of the source; they become the last auxiliary rasters (base, then radar)."""
        src = self.src
        if not src.guides:
            return None
        from .guides import prepare_guides

        if self.aux_infos:
            raise InputError(f"Training source '{self.name}': give guides or auxiliary rasters, not both.")
        self._guide_folder = tempfile.TemporaryDirectory(prefix="cloudfree-guides-")
        if src.paired:
            target, bands, cloud_values = self.cloudy_info, self.cloudy_bands, src.cloud_values
        else:
            target, bands = self.clear_info, self.bands
            cloud_values = (() if self.mask_info is None or src.clear_values is None else
                            tuple(v for v in unique_values(self.mask_info) if v not in set(src.clear_values)))
        prepared = prepare_guides(target, bands, list(src.guides), self._guide_folder.name,
                                  target_mask=self.mask_info, cloud_values=cloud_values)
        for info in (prepared.base, prepared.radar):
            if info is not None:
                self.aux_infos.append((info, list(range(1, info.band_count + 1))))
        return prepared

    def split_aux(self, arrays: list) -> tuple:
        """``(auxiliary arrays, guide base or None, radar or None)`` of the ``aux`` of :meth:`read`."""
        if self.guides is None:
            return arrays, None, None
        n = len(arrays) - (self.guides.base is not None) - (self.guides.radar is not None)
        rest = list(arrays[n:])
        base = rest.pop(0) if self.guides.base is not None else None
        radar = rest.pop(0) if self.guides.radar is not None else None
        return arrays[:n], base, radar

    def scaling_sample(self, max_size: int = SCALING_SAMPLE) -> list:
        """Per band, the valid values of the input and the target over the training rows (decimated
        reads, float32); empty for a validation-only source."""
        rasters = [(self.clear_info, self.bands)]
        if self.src.paired:
            rasters.append((self.cloudy_info, self.cloudy_bands))
        return self._training_values(rasters, max_size)

    def input_sample(self, max_size: int = SCALING_SAMPLE) -> list:
        """Per band, the valid values of what the network sees as input (the cloudy image of a pair,
        else the clear one, which gets synthetic clouds) over the training rows."""
        return self._training_values([(self.cloudy_info, self.cloudy_bands) if self.src.paired else
                                      (self.clear_info, self.bands)], max_size)

    def _training_values(self, rasters: list, max_size: int) -> list:
        """Per band, the valid values of ``[(info, bands)]`` over the training rows (decimated reads)."""
        per_band = [[] for _ in self.bands]
        if self.t1 > self.t0:
            for info, bands in rasters:
                data = read_decimated(info, bands, max_size, rows=(self.t0, self.t1), dtype=np.float32)
                valid = valid_mask(data, [info.nodata[b - 1] for b in bands])
                for i in range(len(bands)):
                    per_band[i].append(data[i][valid])
        return [np.concatenate(v) if v else np.zeros(0, np.float32) for v in per_band]

    # -- reading one window -------------------------------------------------------------------
    def known(self, window: Window) -> np.ndarray:
        """Pixels whose clear target is known (synthetic mode: mask says clear; else all)."""
        if self.src.paired or self.mask_info is None or self.src.clear_values is None:
            return np.ones((window[3], window[2]), dtype=bool)
        m = read_window(self.mask_info.dataset(), window, [1])[0]
        return np.isin(m, np.asarray(self.src.clear_values))

    def read(self, window: Window) -> dict:
        """``clear``, ``valid``, ``known``, ``aux`` (and in paired mode ``cloudy``, ``mask``) of a window."""
        clear = read_window(self.clear_info.dataset(), window, self.bands)
        valid = valid_mask(clear, [self.clear_info.nodata[b - 1] for b in self.bands])
        out = {"clear": clear, "valid": valid}
        if self.src.paired:
            cloudy = read_window(self.cloudy_info.dataset(), window, self.cloudy_bands)
            valid &= valid_mask(cloudy, [self.cloudy_info.nodata[b - 1] for b in self.cloudy_bands])
            out["cloudy"] = cloudy
            if self.mask_info is not None:
                m = read_window(self.mask_info.dataset(), window, [1])[0]
                out["mask"] = np.isin(m, np.asarray(self.src.cloud_values))
            else:
                out["mask"] = np.zeros(valid.shape, dtype=bool)
        out["known"] = self.known(window) & valid
        out["aux"] = [read_window(ai.dataset(), window, ab) for ai, ab in self.aux_infos]
        return out


def learn_fixed_scaling(sources: list, max_size: int = SCALING_SAMPLE) -> FixedScaling:
    """One :class:`FixedScaling` learned from the valid pixels of every training input and target
    (:meth:`OpenSource.scaling_sample`); the same map then serves every image, in training and at
    inference."""
    samples = [o.scaling_sample(max_size) for o in sources]
    per_band = [np.concatenate([s[i] for s in samples]) for i in range(len(samples[0]))]
    if not all(v.size for v in per_band):
        raise InputError("The training rasters hold no valid pixel to learn the scaling from.")
    return FixedScaling.learn(per_band)
