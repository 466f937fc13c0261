"""A model trained with cloudfree:trainsegmentation on the analyst's own cloud labels, in ukis-csmask's place.

The segmentation capability runs the model over the raster (its public :func:`segment`, through
the tiler; the model carries its own bands and scaling); its class values are then mapped onto
the mask codes: a class whose name mentions "shadow" is cloud shadow, one that mentions "cloud"
is cloud; when no class name says either, the values 1 and 2 are cloud and shadow (CloudFree's
own codes, as in labels drawn for this mask) and every other class is clear.
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import ModelFileError
from ..runtime import CancelCheck, Progress, require_packages
from .masks import CLEAR, CLOUD, NODATA, SHADOW


def class_codes(classes: list, model_path: str) -> np.ndarray:
    """A 256-entry lookup from the model's class values (``[{"value", "name"}, ...]``) to mask codes."""
    lookup = np.full(256, NODATA, dtype=np.uint8)
    values = [int(c["value"]) for c in classes]
    names = [str(c.get("name", "")).lower() for c in classes]
    lookup[values] = CLEAR
    if any("cloud" in n or "shadow" in n for n in names):
        for value, name in zip(values, names):
            lookup[value] = SHADOW if "shadow" in name else CLOUD if "cloud" in name else CLEAR
    else:
        for value in values:
            lookup[value] = value if value in (CLOUD, SHADOW) else CLEAR
    if not (lookup[values] == CLOUD).any():
        raise ModelFileError(f"Model file '{model_path}' has no cloud class (classes "
                             f"{', '.join(f'{v} {n!r}' for v, n in zip(values, names))}): name a class 'cloud' "
                             "(and one 'cloud shadow') or give clouds the value 1 and shadows 2 when training.")
    return lookup


def model_classes(model_path: str) -> list:
    """The class table stored in a segmentation model file, as ``[{"value", "name"}, ...]``."""
    from ..weights import read_metadata

    classes = read_metadata(model_path).training.get("classes")
    if not classes:
        raise ModelFileError(f"Model file '{model_path}' carries no class table: train it with "
                             "cloudfree:trainsegmentation.")
    return classes


def segment_with_model(src, model_path: str, scratch: str, tile: int | None, overlap: int, device: str,
                       progress: Progress, cancelled: CancelCheck, backend: str = "auto", executor=None) -> tuple:
    """Run the model over ``src`` into a class raster in ``scratch``: ``(path, lookup to mask codes, summary)``;
    ``backend``: the inference backend (auto, torch or onnxruntime); ``executor``: where the tiles run."""
    require_packages(("torch", "safetensors"))
    from ..segmentation import SegmentOptions, segment

    lookup = class_codes(model_classes(model_path), model_path)
    path = os.path.join(scratch, "classes.tif")
    options = SegmentOptions(tile=tile, overlap=overlap, device=device, backend=backend, executor=executor)
    summary = segment([src], model_path, path, options, progress=progress, cancelled=cancelled)
    return path, lookup, summary
