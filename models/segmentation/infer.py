"""segment: a segmentation model over whole rasters, tile by tile; a class raster and, optionally, probabilities.

The recipe: check the inputs (one raster or several on one grid, their bands stacked as in
training) against the model, run the network through the tiler (:func:`tiling.run_tiled`:
overlapping tiles, cross-faded probabilities, bounded memory) into a per-class probability
raster, then take the most probable class block by block into a uint8 class raster carrying
the model's class values, colour table and class names (255 = nodata, wherever an input
band has no data). Without ``probabilities_path`` the probabilities go to a temporary file
beside the output, removed at the end.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..backends import prepare
from ..errors import InputError
from ..grids import check_same_grid
from ..raster import RasterInfo, RasterWriter, open_raster, read_window
from ..runtime import CancelCheck, Progress, check_cancelled, describe_device, report, select_device
from ..tiling import run_tiled
from ..windows import iter_windows
from .classes import NODATA_CLASS
from .data import read_stack
from .model import SegmentationModel

PROBABILITY_SHARE = 0.9  # of the progress bar: the network; the rest is the class raster
BATCH = 8                # tiles per network call


@dataclass(frozen=True)
class SegmentOptions:
    """How to run: tile size (0/None = the model's), overlap, device, the block of the class pass,
    where to keep the per-class probabilities (None = not kept), and the inference ``backend``
    (:data:`..backends.BACKENDS`: auto, torch or onnxruntime); ``executor``: where the tiles run
    (None = here; :func:`..tiling.open_executor`)."""

    tile: int | None = None
    overlap: int = 32
    device: str = "auto"
    block: int = 1024
    probabilities_path: str | None = None
    backend: str = "auto"
    executor: object = None


def segment(inputs: Sequence[RasterInfo], model_path: str, output_path: str, options: SegmentOptions = SegmentOptions(),
            progress: Progress = None, cancelled: CancelCheck = None) -> dict:
    """Classify every pixel of ``inputs`` with the model; write the class raster; return a summary."""
    start = time.time()
    inputs = list(inputs)
    _check_paths(inputs, output_path, options.probabilities_path)
    device = select_device(options.device)
    model = load_for(inputs, model_path, device)
    tile = int(options.tile or model.metadata.tile_size)
    model.runner = prepare(model.net, device, options.backend, tile=tile + (-tile) % model.multiple, batch=BATCH)
    report(progress, 0.0, f"Inference: {model.runner.detail}")
    folder = os.path.dirname(os.path.abspath(output_path))
    with tempfile.TemporaryDirectory(prefix=".cloudfree-segment-", dir=folder) as tmp:
        prob_path = options.probabilities_path or os.path.join(tmp, "probabilities.tif")
        write_probabilities(model, inputs, prob_path, tile, options.overlap, progress, cancelled, options.executor)
        counts = write_classes(model, inputs, prob_path, output_path, options.block, progress, cancelled)
    report(progress, 1.0, "Segmentation: done")
    return {"classes": model.classes.to_metadata(), "pixel_counts": counts, "seconds": time.time() - start,
            "device": describe_device(device), "backend": model.runner.detail, "tile": tile,
            "overlap": options.overlap, "task": model.metadata.task}


def load_for(inputs: Sequence[RasterInfo], model_path: str, device) -> SegmentationModel:
    """The model, checked against the stacked band count of the inputs."""
    if not inputs:
        raise InputError("Give at least one input raster to segment.")
    check_same_grid(inputs)
    bands = sum(i.band_count for i in inputs)
    layer = inputs[0].name if len(inputs) == 1 else f"{inputs[0].name} (+{len(inputs) - 1} stacked)"
    return SegmentationModel.load(model_path, device=device, band_count=bands, layer=layer)


def write_probabilities(model: SegmentationModel, inputs: Sequence[RasterInfo], path: str, tile: int, overlap: int,
                        progress: Progress, cancelled: CancelCheck, executor=None) -> str:
    """Per-class probabilities (float32, NaN = nodata) through the tiler (on ``executor``'s workers if given)."""
    extra = [(info, list(range(1, info.band_count + 1))) for info in inputs[1:]]

    def probabilities(batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
        return model.probabilities(batch, valid)

    def network_progress(fraction: float, message: str | None = None) -> None:
        report(progress, PROBABILITY_SHARE * fraction, message)

    return run_tiled(probabilities, inputs[0], path, extra=extra, out_bands=model.classes.count,
                     out_dtype="float32", tile=tile, overlap=overlap, batch_size=BATCH, out_nodata=float("nan"),
                     descriptions=list(model.classes.names), progress=network_progress, cancelled=cancelled,
                     executor=executor)


def write_classes(model: SegmentationModel, inputs: Sequence[RasterInfo], prob_path: str, output_path: str,
                  block: int, progress: Progress, cancelled: CancelCheck) -> dict:
    """The most probable class per pixel, block by block, into a uint8 class raster with the colour table."""
    probs_ds = open_raster(prob_path, "probabilities")
    lookup = model.classes.value_lookup()
    counts = np.zeros(model.classes.count + 1, dtype=np.int64)
    windows = list(iter_windows(inputs[0].width, inputs[0].height, block))
    with RasterWriter(output_path, like=inputs[0], band_count=1, dtype="uint8", nodata=NODATA_CLASS,
                      descriptions=["class"], protect=[i.path for i in inputs] + [prob_path]) as out:
        model.classes.apply_to_band(out.ds.GetRasterBand(1))
        for done, window in enumerate(windows, 1):
            check_cancelled(cancelled)
            probs = read_window(probs_ds, window, None, np.float32)
            _, valid = read_stack(inputs, window)
            valid &= np.isfinite(probs).all(axis=0)
            index = np.where(valid, np.nan_to_num(probs, nan=0.0).argmax(axis=0), model.classes.count)
            counts += np.bincount(index.ravel(), minlength=counts.size)
            out.write(lookup[index], window.col_off, window.row_off)
            report(progress, PROBABILITY_SHARE + (1 - PROBABILITY_SHARE) * done / len(windows), None)
    return {str(v): int(n) for v, n in zip(model.classes.values, counts[:-1])}


def _check_paths(inputs: Sequence[RasterInfo], output_path: str, probabilities_path: str | None) -> None:
    if probabilities_path and os.path.abspath(probabilities_path) == os.path.abspath(output_path):
        raise InputError("The class raster and the probability raster must be different files.")
    for info in inputs:
        for path in (output_path, probabilities_path):
            if path and os.path.abspath(path) == os.path.abspath(info.path):
                raise InputError(f"The output {path} is the input '{info.name}'; choose another file, inputs are "
                                 "never modified.")
