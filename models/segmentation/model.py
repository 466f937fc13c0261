"""A segmentation model in use: the U-Net, how its inputs are scaled, its classes; built, saved and loaded.

The network is the engine's one U-Net (:class:`networks.UNet`, architecture ``unet``), sized by
a depth (number of poolings) and a width (filters of the first level, doubled per level).
Inputs are mapped to network space by a fixed per-band scaling learned from the training
data (:class:`normalization.FixedScaling`, stored in the model file). Two kinds of model file
are accepted: task ``segmentation`` (written by :func:`~.train.train_segmentation`) and task
``fusion_segmentation`` (the weakly supervised land-cover network that fusion training saves
beside its quality model, e.g. the shipped ``fusion_default.segmentation.safetensors``, whose
scaling is the fusion percentile map with statistics fixed at training time).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ModelFileError
from ..normalization import FixedScaling, to_network
from ..weights import ModelMetadata, load_model, read_metadata, save_model
from .classes import ClassTable

TASK = "segmentation"
FUSION_TASK = "fusion_segmentation"
ARCHITECTURE = "unet"


def unet_hyperparameters(band_count: int, class_count: int, depth: int = 3, width: int = 16,
                         dropout: float = 0.2, norm: str = "batch") -> dict:
    """Constructor arguments of the U-Net: ``depth`` poolings, ``width`` filters doubled per level."""
    encoder = [int(width) * 2 ** i for i in range(int(depth) + 1)]
    return {"in_channels": int(band_count), "out_channels": int(class_count), "encoder": encoder,
            "decoder": encoder[:-1][::-1], "norm": norm, "dropout": float(dropout)}


def build_network(hyperparameters: dict):
    from .. import networks

    return networks.build(ARCHITECTURE, hyperparameters)


@dataclass
class SegmentationModel:
    """A loaded network with what applying it needs: the input scaling and the class table."""

    net: object
    metadata: ModelMetadata
    classes: ClassTable
    scale: object  # callable: values (B, C, H, W) -> float32 network space
    device: object = None
    runner: object = None  # what runs the network at inference (a backends.Runner); None: the module

    @property
    def band_count(self) -> int:
        return self.metadata.band_count

    @property
    def multiple(self) -> int:
        """Tiles are padded to a multiple of this (one pooling halves the size)."""
        return 2 ** self.net.levels

    @classmethod
    def load(cls, path: str, device="cpu", band_count: int | None = None, layer: str = "input") -> "SegmentationModel":
        """Load a ``segmentation`` or ``fusion_segmentation`` model file (strictly, through :func:`weights.load_model`)."""
        name = os.path.basename(str(path))
        meta = read_metadata(path)
        if meta.task not in (TASK, FUSION_TASK):
            raise ModelFileError(f"Model file '{name}' is a '{meta.task}' model; a segmentation model is needed "
                                 "(trained with Train segmentation model, or a fusion model's .segmentation file).")
        if band_count is not None and band_count != meta.band_count:
            raise ModelFileError(f"Model '{name}' expects {meta.band_count} band(s) ({', '.join(meta.bands)}) but "
                                 f"'{layer}' provides {band_count}; give the rasters it was trained on, in the same "
                                 "order (their bands are stacked).")
        net, meta = load_model(path, task=meta.task, device=device)
        if meta.task == TASK:
            classes = ClassTable.from_metadata(meta.training.get("classes") or [], name)
            scale = _fixed_scale(meta, name)
        else:
            classes = ClassTable.from_values(meta.training.get("class_values") or range(net.head.out_channels))
            scale = _fusion_scale(meta, name)
        if classes.count != net.head.out_channels:
            raise ModelFileError(f"Model file '{name}' names {classes.count} classes but its network predicts "
                                 f"{net.head.out_channels}.")
        return cls(net, meta, classes, scale, device)

    def probabilities(self, values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities ``(B, classes, H, W)`` (float32) of raw values ``(B, C, H, W)``.

        Pixels outside ``valid`` enter the network as 0 (the centre of the scaling); their
        probabilities are computed but mean nothing (callers mark them as nodata).
        """
        import torch

        x = self.scale(values)
        if valid is not None:
            x = np.where(valid[:, None], x, np.float32(0.0))
        with torch.inference_mode():
            t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device or "cpu")
            logits = forward_padded(self.net, t, self.runner)
            return torch.softmax(logits, dim=1).cpu().numpy()


def forward_padded(net, x, runner=None):
    """The network's output for ``x`` (B, C, H, W) of any size: replicate-padded to a multiple of
    ``2 ** levels`` and cropped back; ``runner`` (a :class:`..backends.Runner`) runs ``net`` if given."""
    import torch.nn.functional as F

    m = 2 ** net.levels
    h, w = x.shape[-2:]
    ph, pw = (-h) % m, (-w) % m
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return (net if runner is None else runner)(x)[..., :h, :w]


def array_logits(net, x: np.ndarray, device="cpu", block: int = 512, margin: int = 32) -> np.ndarray:
    """Logits ``(classes, H, W)`` of a whole scaled array ``(C, H, W)``, computed in blocks of ``block``
    pixels with up to ``margin`` pixels of context around each, so memory stays bounded for large arrays."""
    import torch

    from ..windows import iter_windows

    _, h, w = x.shape
    out = None
    with torch.no_grad():
        for win in iter_windows(w, h, block):
            grown = win.padded(margin).clipped(w, h)
            part = x[:, grown.slices[0], grown.slices[1]]
            logits = forward_padded(net, torch.from_numpy(np.ascontiguousarray(part))[None].to(device))[0]
            logits = logits.cpu().numpy()
            if out is None:
                out = np.empty((logits.shape[0], h, w), dtype=np.float32)
            r0, c0 = win.row_off - grown.row_off, win.col_off - grown.col_off
            out[:, win.slices[0], win.slices[1]] = logits[:, r0:r0 + win.height, c0:c0 + win.width]
    return out


def save_segmentation_model(path: str, net, hyperparameters: dict, *, bands: Sequence[str], classes: ClassTable, scaling: FixedScaling,
                            tile_size: int, training: dict, metrics: dict) -> str:
    """Write the model file: weights and metadata (task ``segmentation``, class table, scaling)."""
    meta = ModelMetadata(task=TASK, architecture=ARCHITECTURE, hyperparameters=hyperparameters,
                         bands=list(bands), normalization=scaling.to_dict(), tile_size=int(tile_size),
                         training={**training, "classes": classes.to_metadata()}, metrics=metrics)
    return save_model(path, net, meta)


def _fixed_scale(meta: ModelMetadata, name: str):
    try:
        scaling = FixedScaling.from_dict(meta.normalization)
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelFileError(f"Model file '{name}' has an unreadable scaling ({exc}).") from exc
    if scaling.band_count != meta.band_count:
        raise ModelFileError(f"Model file '{name}': its scaling has {scaling.band_count} band(s), its inputs "
                             f"{meta.band_count}.")
    return scaling.to_network


def _fusion_scale(meta: ModelMetadata, name: str):
    norm, stats = meta.normalization, meta.training.get("statistics")
    if not stats or "target" not in norm or "clip" not in norm:
        raise ModelFileError(f"Model file '{name}' lacks the statistics of its fusion scaling.")
    return lambda x: to_network(x, stats, target=norm["target"], clip=norm["clip"])
