"""The segmentation training configuration (every choice of a run, checked) and what a run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..checks import at_least, one_of
from ..errors import InputError
from .data import LabelSource
from .losses import LOSSES


@dataclass
class SegmentationTrainConfig:
    """Inputs, labels and training settings; the JSON-able part is stored in the model's metadata."""

    inputs: list                        # RasterInfo, one or more on one grid; their bands are stacked
    labels: LabelSource
    loss: str = "dice_ce"               # dice | dice_ce
    class_weights: object = None        # None, "auto", or one number per class (string or list)
    tile: int = 128
    epochs: int = 40
    steps_per_epoch: int = 8
    batch_size: int = 8
    lr: float = 1e-3
    depth: int = 3                      # poolings of the U-Net
    width: int = 16                     # filters of its first level (doubled per level)
    dropout: float = 0.2
    val_fraction: float = 0.25          # the validation block: this fraction of the rows (or columns)
    patience: int = 8                   # early stopping: epochs without a better validation loss
    plateau_patience: int = 3           # learning-rate decay: epochs without a better validation loss
    plateau_factor: float = 0.5
    min_lr: float = 1e-5
    device: str = "auto"
    seed: int = 0
    samples: int = 3                    # sample predictions in the report

    def check(self) -> None:
        one_of("loss", self.loss, LOSSES)
        at_least(self, ("epochs", "steps_per_epoch", "batch_size", "depth", "width", "patience"))
        at_least(self, ("tile",), 16)
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"The setting dropout must lie in [0, 1); it is {self.dropout}.")
        if not self.lr > 0:
            raise InputError(f"The learning rate must be positive; it is {self.lr}.")

    def to_metadata(self) -> dict:
        return {"inputs": [i.name for i in self.inputs], "labels": self.labels.name, "loss": self.loss,
                "ignore_value": self.labels.ignore_value, "tile": self.tile, "epochs": self.epochs,
                "steps_per_epoch": self.steps_per_epoch, "batch_size": self.batch_size, "lr": self.lr,
                "val_fraction": self.val_fraction, "patience": self.patience,
                "plateau_patience": self.plateau_patience, "plateau_factor": self.plateau_factor, "seed": self.seed}


@dataclass
class SegmentationTrainResult:
    model_path: str
    classes: object                                  # ClassTable
    history: dict                                    # per epoch (0 = before training)
    metrics: dict                                    # held-out scores of the kept (best) network
    initial_metrics: dict                            # held-out scores before training
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    seconds: float
    device: str
    class_weights: list = field(default_factory=list)
    samples: list = field(default_factory=list)      # {"image", "truth", "predicted"} of the validation block
    tile: Optional[int] = None
