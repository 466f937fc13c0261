"""The training configuration: every choice of a training run, checked, and stored (as JSON) in the model's metadata."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Optional

from ..checks import at_least, one_of
from ..errors import InputError
from .quality import QUALITY_NET
from .segmentation import SEG_NET

MODES = ("weak", "self", "both")


@dataclass
class FusionTrainConfig:
    """Everything a training run needs; stored (as JSON) in the model's metadata."""

    dates: list                                  # raster paths, one per date, same grid
    masks: Optional[list] = None                 # cloud mask per date (value in mask_values = cloud)
    mask_values: list = field(default_factory=lambda: [1])
    labels: Optional[str] = None                 # land-cover raster (weak supervision)
    class_weights: Optional[dict] = None         # {class value: weight}; others: median frequency / frequency
    ignore_labels: list = field(default_factory=lambda: [0])
    band_names: Optional[list] = None
    bands: Optional[list] = None
    mode: str = "both"                           # weak | self | both (both: self only when a clear date exists)
    holdout_rows: int = 30                       # bottom rows never used for training
    holdout_dates: list = field(default_factory=list)   # date indices never used as clean targets
    clear_dates: Optional[list] = None           # date indices that are clear (default: mask all clear)
    k_min: int = 2
    k_max: int = 6
    weak_window: int = 8                         # weak mode: K dates among the nearest weak_window dates
    tile: int = 64
    batch_size: int = 4
    steps: int = 500
    steps_per_epoch: int = 100
    lr: float = 1e-4
    lr_halve_every_epochs: int = 5
    weak_weight: float = 1.0
    self_weight: float = 1.0
    coverage: tuple = (0.15, 0.6)
    missing: tuple = (0.0, 0.25)
    cloud_scale: tuple = (8.0, 40.0)
    cloud_value: Optional[tuple] = None          # e.g. NDVI clouds: (-0.03, 0.08); None: bright, from the image
    shadows: bool = False
    cloud_polarity: str = "auto"                 # low (NDVI-like), high (reflectance), auto: 1 band low
    encoder: list = field(default_factory=lambda: list(QUALITY_NET["encoder"]))
    decoder: list = field(default_factory=lambda: list(QUALITY_NET["decoder"]))
    seg_encoder: list = field(default_factory=lambda: list(SEG_NET["encoder"]))
    seg_decoder: list = field(default_factory=lambda: list(SEG_NET["decoder"]))
    val_every: int = 100
    seed: int = 0
    device: str = "cpu"
    num_threads: Optional[int] = None

    def check(self) -> None:
        """An :class:`InputError` naming the setting when the configuration cannot train."""
        one_of("training mode", self.mode, MODES)
        if len(self.dates) < 2:
            raise InputError(f"Training needs at least 2 dates; {len(self.dates)} given.")
        if self.masks and len(self.masks) != len(self.dates):
            raise InputError(f"{len(self.masks)} cloud mask(s) for {len(self.dates)} dates: give one mask per date, "
                             "in the same order, or none.")
        if not 2 <= self.k_min <= self.k_max:
            raise InputError(f"Dates per fused sample: k_min ({self.k_min}) must be at least 2 and at most k_max "
                             f"({self.k_max}).")
        at_least(self, ("steps", "steps_per_epoch", "val_every", "batch_size", "tile", "lr_halve_every_epochs",
                        "holdout_rows"), 1)


def ndvi_series_config(data_dir: str, **overrides) -> FusionTrainConfig:
    """Training configuration for the eo-learn NDVI series in ``data_dir`` (s2_ndvi_timeseries)."""
    dates = sorted(glob.glob(os.path.join(data_dir, "ndvi", "ndvi_*.tif")))
    masks = [os.path.join(data_dir, "cloud_mask", "clm_" + os.path.basename(p)[5:]) for p in dates]
    kw = dict(dates=dates, masks=masks, labels=os.path.join(data_dir, "landcover.tif"), band_names=["ndvi"],
              cloud_value=(-0.03, 0.08), shadows=False)
    kw.update(overrides)
    return FusionTrainConfig(**kw)
