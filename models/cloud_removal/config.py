"""What a cloud-removal model is made of and trained with: the model sizes, the normalisation a
model file records, and :class:`TrainConfig` (every setting of a training run) with its result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from ..checks import at_least, one_of
from ..errors import InputError

TASK = "cloud_removal"
NORMALIZATION_SCHEME = "per_band_clear_percentile"

MODEL_SIZES = {
    "small": {"depth": 6, "base": 32, "max_channels": 256, "tile": 128},
    "full": {"depth": 8, "base": 64, "max_channels": 512, "tile": 256},
}

DEFAULT_NORMALIZATION = {
    "scheme": NORMALIZATION_SCHEME,
    "low_percentile": 2.0,
    "high_percentile": 98.0,
    "target": 0.8,     # p_low -> -target, p_high -> +target
    "clip": 2.0,       # normalised inputs beyond +-clip are compressed ("log") or clipped ("clip")
    "beyond_clip": "log",
    "sample": 1024,    # statistics from a decimated read of at most sample x sample pixels
    "mask_channel": "1 = masked (cloud/shadow/missing/nodata), 0 = clear",
}

GAN_MODES = ("vanilla", "lsgan")
NORM_LAYERS = ("instance", "batch", "none")


@dataclass
class TrainConfig:
    """Everything a training run needs; stored (as JSON) in the model's metadata.

    ``sources``: :class:`~.sources.TrainingSource` objects (or dicts of their fields).
    """

    sources: list
    band_names: Optional[list] = None
    size: str = "small"
    depth: Optional[int] = None          # overrides of the size preset
    base: Optional[int] = None
    max_channels: Optional[int] = None
    tile: Optional[int] = None
    norm: str = "instance"
    dropout: float = 0.5
    upsample: str = "resize"              # decoder: resize (bilinear x2 + 3x3 conv) or transpose (pix2pix paper)
    disc_base: Optional[int] = None
    disc_layers: int = 3
    batch_size: int = 4
    steps: int = 2000
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay_start: float = 0.5           # fraction of the steps after which lr decays linearly to 0
    lambda_l1: float = 100.0
    lambda_gan: float = 1.0               # weight of the adversarial term (pix2pix: 1; 0 = L1 only, a diagnostic)
    mask_l1_weight: float = 4.0           # L1 weight of a masked pixel relative to a clear one
    gan_mode: str = "vanilla"             # vanilla (BCE) or lsgan
    use_mask_channel: bool = True
    generator: str = "unmix_blend"        # unmix_blend, unmix_residual, fill_residual, plain (see generator_spec)
    residual_scale: float = 0.0           # unmix_blend: bound of a free residual added to the blend (0 = none)
    synthetic: dict = field(default_factory=dict)
    max_unclear_fraction: float = 0.25
    augment: bool = True
    val_every: int = 200
    val_tiles: int = 8
    val_repeats: int = 1                  # synthetic cloud fields per validation window
    checkpoint_every: int = 200
    num_samples: int = 3
    keep_best: bool = True                # save the generator of the best validation, not the last step
    seed: int = 0
    device: str = "auto"
    num_threads: Optional[int] = None

    def resolved(self) -> dict:
        """The network size: the preset of ``size`` with this config's overrides, checked."""
        one_of("model size", self.size, MODEL_SIZES)
        p = dict(MODEL_SIZES[self.size])
        for k in ("depth", "base", "max_channels", "tile"):
            if getattr(self, k) is not None:
                p[k] = int(getattr(self, k))
        if p["tile"] % (2 ** p["depth"]):
            raise InputError(f"Tile size {p['tile']} must be divisible by 2^depth = {2 ** p['depth']}.")
        one_of("gan_mode", self.gan_mode, GAN_MODES)
        one_of("norm", self.norm, NORM_LAYERS)
        at_least(self, ("seed",), 0)
        at_least(self, ("batch_size",), 1)
        return p

    def to_json_dict(self) -> dict:
        """Plain JSON values (training sources become dicts of their fields)."""
        return asdict(self)


@dataclass
class TrainResult:
    model_path: str
    steps: int
    history: dict
    samples: list
    metrics: dict
    seconds: float
    steps_per_second: float
    checkpoint: Optional[str] = None
