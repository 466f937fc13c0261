"""detect_clouds: a cloud and shadow mask of a whole raster, block by block, from a pretrained detector.

The recipe: check the bands and the scaling against the input; open the detector; run it over
the raster through the tiler (overlapping tiles, blended probabilities of cloud and shadow into
a scratch file beside the output; or a model trained with trainsegmentation, whose classes are
mapped onto the mask codes); then, block by block with a halo as wide as the dilation,
take the most probable class, dilate clouds and shadows, count the classes and write the mask
(uint8, colour table) atomically. Memory stays bounded by one row of tiles and one block of rows.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..errors import InputError
from ..raster import RasterInfo, RasterWriter, open_raster, read_window
from ..runtime import CancelCheck, Progress, check_cancelled, report
from ..tiling import run_tiled
from ..windows import iter_windows
from .bands import BandRoles, ReflectanceScaling, check_reflectance
from .csmask import CsmaskDetector, CsmaskModel
from .masks import NODATA, MaskCounts, classes_from_probabilities, dilate_classes, set_mask_style
from .trained import segment_with_model

#: share of the progress bar the detector's pass takes (the classification pass has the rest)
DETECTOR_SHARE = 0.9


@dataclass(frozen=True)
class DetectionOptions:
    """How to detect: product level, dilation, tiling, device and where the model files are."""

    product: str = "l1c"           # "l1c" (top of atmosphere) or "l2a" (surface reflectance)
    dilation: int = 0              # grow clouds and shadows by this many pixels
    tile: int | None = None        # None or 0: the detector's own tile size
    overlap: int = 64              # pixels shared by neighbouring tiles (blended)
    device: str = "auto"           # auto, cpu or cuda
    batch_size: int = 4            # tiles per network call
    block_rows: int = 512          # rows per block of the classification pass
    model_dir: str | None = None   # folder of ukis-csmask's model files (None: the installed package)
    model: str | None = None       # a model trained with trainsegmentation, used instead of ukis-csmask
    backend: str = "auto"          # what runs that model: auto, torch or onnxruntime (ukis-csmask: always ONNX)
    executor: object = None        # where the tiles run: None = here, else tiling.open_executor's (a Dask cluster)
    cog: bool = False


@dataclass
class DetectionSummary:
    """What a run found and how: fractions of valid pixels, counts, the detector and the time taken."""

    counts: MaskCounts
    detector: str
    device: str
    tile: int
    overlap: int
    dilation: int
    scaling: str
    seconds: float
    megapixels: float

    @property
    def cloud_fraction(self) -> float:
        return self.counts.cloud_fraction

    @property
    def shadow_fraction(self) -> float:
        return self.counts.shadow_fraction

    def as_dict(self) -> dict:
        return {"cloud_fraction": self.cloud_fraction, "shadow_fraction": self.shadow_fraction,
                "valid_pixels": self.counts.valid, "cloud_pixels": self.counts.cloud,
                "shadow_pixels": self.counts.shadow, "nodata_pixels": self.counts.nodata,
                "detector": self.detector, "device": self.device, "tile": self.tile, "overlap": self.overlap,
                "dilation": self.dilation, "scaling": self.scaling, "seconds": self.seconds,
                "seconds_per_megapixel": self.seconds / max(self.megapixels, 1e-9)}


def detect_clouds(src: RasterInfo, dst: str, roles: BandRoles, scaling: ReflectanceScaling,
                  options: DetectionOptions = DetectionOptions(), progress: Progress = None,
                  cancelled: CancelCheck = None) -> DetectionSummary:
    """Write the cloud and shadow mask of ``src`` to ``dst`` (0 clear, 1 cloud, 2 shadow, 255 nodata).

    With ``options.model`` (a model trained with trainsegmentation) that model runs instead of ukis-csmask,
    with its own bands and scaling; ``roles`` and ``scaling`` are then not used."""
    started = time.perf_counter()
    check_settings(src, dst, options)
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".cloudfree-detect-", dir=folder) as scratch:
        if options.model:
            detected = run_trained_model(src, options, scratch, progress, cancelled)
        else:
            detected = run_csmask(src, roles, scaling, options, scratch, progress, cancelled)
        counts = write_mask(detected, src, dst, options, progress, cancelled)
    return DetectionSummary(counts, detected.detector, detected.device, detected.tile, options.overlap,
                            options.dilation, "the model's own" if options.model else scaling.describe(),
                            time.perf_counter() - started, src.width * src.height / 1e6)


@dataclass(frozen=True)
class Detected:
    """A detector's pass over the raster: its scratch raster (uint8) and how a block of it becomes mask codes."""

    path: str
    classify: Callable[[np.ndarray], np.ndarray]  # (bands, rows, cols) uint8 -> (rows, cols) codes
    detector: str
    device: str
    tile: int


def run_csmask(src: RasterInfo, roles: BandRoles, scaling: ReflectanceScaling, options: DetectionOptions,
               scratch: str, progress: Progress, cancelled: CancelCheck) -> Detected:
    """ukis-csmask over the raster: check bands and scaling, open the network, blended probabilities."""
    roles.check(src)
    check_reflectance(src, roles, scaling)
    detector = open_detector(roles, scaling, options)
    tile = choose_tile(detector, options)
    path = detect_probabilities(detector, src, roles, tile, options, scratch, progress, cancelled)
    return Detected(path, lambda block: classes_from_probabilities(block[0], block[1]),
                    f"ukis-csmask {detector.model.version} ({len(roles.roles)} bands, {options.product.upper()})",
                    detector.device, tile)


def run_trained_model(src: RasterInfo, options: DetectionOptions, scratch: str, progress: Progress,
                      cancelled: CancelCheck) -> Detected:
    """A model trained with trainsegmentation over the raster; its classes mapped onto the mask codes."""

    def model_progress(fraction: float, message: str | None = None) -> None:
        report(progress, DETECTOR_SHARE * fraction, message)

    path, lookup, summary = segment_with_model(src, options.model, scratch, options.tile or None, options.overlap,
                                               options.device, model_progress, cancelled, backend=options.backend,
                                               executor=options.executor)
    return Detected(path, lambda block: lookup[block[0]], f"model {os.path.basename(options.model)}",
                    str(summary.get("device", options.device)), int(summary.get("tile", options.tile or 0)))


def check_settings(src: RasterInfo, dst: str, options: DetectionOptions) -> None:
    """Output path and settings that fit, before anything is computed or written."""
    if os.path.abspath(dst) == os.path.abspath(src.path) or (
            os.path.exists(dst) and os.path.samefile(dst, src.path)):
        raise InputError(f"The output {dst} is the input layer '{src.name}'; choose another file, inputs are never "
                         "modified.")
    if options.dilation < 0:
        raise InputError(f"Dilation {options.dilation} px: give 0 or more pixels.")
    if options.block_rows < 1 or options.batch_size < 1:
        raise InputError("Block rows and batch size must be at least 1.")
    if options.model and not os.path.isfile(options.model):
        raise InputError(f"Model file '{options.model}' does not exist.")


def open_detector(roles: BandRoles, scaling: ReflectanceScaling, options: DetectionOptions) -> CsmaskDetector:
    model = CsmaskModel.find(len(roles.roles), options.product, options.model_dir)
    return CsmaskDetector(model, roles.roles, scaling, options.device)


def choose_tile(detector: CsmaskDetector, options: DetectionOptions) -> int:
    """The tile size asked for, or the detector's; a network with a fixed input size takes only its own."""
    tile = options.tile or detector.tile
    if detector.fixed_tile is not None and tile != detector.fixed_tile:
        raise InputError(f"Tile size {tile} px: the ukis-csmask network takes tiles of {detector.fixed_tile} px "
                         "only; leave the tile size at 0 (the detector's).")
    if not 0 <= options.overlap < tile:
        raise InputError(f"Tile overlap {options.overlap} px must be at least 0 and smaller than the tile size "
                         f"({tile} px).")
    return tile


def detect_probabilities(detector: CsmaskDetector, src: RasterInfo, roles: BandRoles, tile: int,
                         options: DetectionOptions, scratch: str, progress: Progress,
                         cancelled: CancelCheck) -> str:
    """The detector over the whole raster through the tiler: blended cloud and shadow probabilities (uint8,
    0-250, 255 where the input is nodata) in a scratch file."""
    path = os.path.join(scratch, "probabilities.tif")

    def detector_progress(fraction: float, message: str | None = None) -> None:
        report(progress, DETECTOR_SHARE * fraction, message)

    run_tiled(detector, src, path, bands=roles.bands, out_bands=detector.OUTPUT_BANDS, out_dtype="uint8",
              tile=tile, overlap=options.overlap, batch_size=options.batch_size, out_nodata=NODATA,
              descriptions=["cloud probability x 250", "shadow probability x 250"], progress=detector_progress,
              cancelled=cancelled, executor=options.executor)
    return path


def write_mask(detected: Detected, src: RasterInfo, dst: str, options: DetectionOptions,
               progress: Progress, cancelled: CancelCheck) -> MaskCounts:
    """Classes, dilation and counts block by block (each block read with a halo as wide as the dilation)."""
    counts = MaskCounts()
    width, height, halo = src.width, src.height, int(options.dilation)
    ds = open_raster(detected.path, f"{src.name} detection")  # closed on return, before the scratch goes
    with RasterWriter(dst, like=src, band_count=1, dtype="uint8", nodata=NODATA, cog=options.cog,
                      protect=[src.path]) as writer:
        set_mask_style(writer.ds.GetRasterBand(1))
        for window in iter_windows(width, height, width, options.block_rows):
            check_cancelled(cancelled)
            outer = window.padded(halo).clipped(width, height)
            classes = dilate_classes(detected.classify(read_window(ds, outer, None, dtype=np.uint8)), halo)
            dy, dx = window.row_off - outer.row_off, window.col_off - outer.col_off
            block = classes[dy:dy + window.height, dx:dx + window.width]
            counts.add(block)
            writer.write(block, window.col_off, window.row_off)
            report(progress, DETECTOR_SHARE + (1 - DETECTOR_SHARE) * (window.row_off + window.height) / height)
    return counts
