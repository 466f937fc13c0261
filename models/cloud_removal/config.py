"""What a cloud-removal model is made of and trained with: the model sizes, the normalisation a
model file records, :class:`TrainConfig` (every setting of a training run) with its result, and
:func:`resolve_choices`, which turns the config's ``auto`` settings into the generator, decoder,
mask channel and scaling a run uses (:class:`TrainingChoices`).

``auto`` choices: pairs (a real cloudy and clear raster) train the pix2pix generator with fixed
scaling learned from the training data, and a mask channel only when every source has a mask;
clear rasters alone (synthetic clouds) train the mask-guided ``unmix_blend`` generator with
per-image scaling, as the shipped model was trained.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from ..checks import at_least, one_of
from ..errors import InputError
from ..normalization import REFLECTANCE_PRESETS

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
AUTO = "auto"
PIX2PIX = "pix2pix"
GUIDED = "guided"  # the generator guided by other dates and/or radar (sources with guides)
MASK_GUIDED = ("unmix_blend", GUIDED)  # generators that fill what a mask marks
GENERATOR_KINDS = (PIX2PIX, *MASK_GUIDED)
GENERATOR_ALIASES = {"plain": PIX2PIX}  # the name of the pix2pix generator in files written before it was chosen
LEARNED, PER_IMAGE = "learned", "per_image"
SCALINGS = (LEARNED, *REFLECTANCE_PRESETS, PER_IMAGE)


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
    upsample: Optional[str] = None        # decoder: transpose (pix2pix paper) or resize (bilinear x2 + 3x3 conv);
    #                                       None: transpose for pix2pix, resize for the mask-guided generators
    disc_base: Optional[int] = None
    disc_layers: int = 3
    batch_size: int = 4
    steps: int = 2000
    epochs: Optional[float] = None        # instead of steps: passes over the training pixels (see train.total_steps)
    lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.999
    lr_decay_start: float = 0.5           # fraction of the steps after which lr decays linearly to 0
    lambda_l1: float = 100.0
    lambda_gan: float = 1.0               # weight of the adversarial term (pix2pix: 1; 0 = L1 only, a diagnostic)
    mask_l1_weight: float = 4.0           # L1 weight of a masked pixel relative to a clear one
    gan_mode: str = "vanilla"             # vanilla (BCE) or lsgan
    use_mask_channel: Optional[bool] = None   # None: see resolve_choices
    generator: str = AUTO                 # auto, pix2pix, unmix_blend, guided (plain = pix2pix)
    scaling: str = AUTO                   # auto, learned, a reflectance preset, per_image (see resolve_choices)
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
    early_stopping: int = 0               # stop after this many validations without a better score (0 = off)
    holdout_fraction: float = 0.2         # 3+ pairs: this fraction of whole pairs (at least one) only validates
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
        one_of("generator", self.generator, (AUTO, *GENERATOR_KINDS, *GENERATOR_ALIASES))
        one_of("scaling", self.scaling, (AUTO, *SCALINGS))
        at_least(self, ("seed", "early_stopping"), 0)
        at_least(self, ("batch_size", "disc_layers"), 1)
        if not 0.0 <= self.lr_decay_start <= 1.0:
            raise InputError(f"The setting lr_decay_start must be between 0 and 1; it is {self.lr_decay_start}.")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise InputError(f"The setting holdout_fraction must be between 0 and 1; it is {self.holdout_fraction}.")
        if self.epochs is not None and not self.epochs > 0:
            raise InputError(f"The setting epochs must be more than 0; it is {self.epochs}.")
        return p

    def to_json_dict(self) -> dict:
        """Plain JSON values (training sources become dicts of their fields)."""
        return asdict(self)


@dataclass(frozen=True)
class TrainingChoices:
    """What a run trains, its ``auto`` settings resolved (:func:`resolve_choices`)."""

    generator: str        # a key of GENERATOR_KINDS
    upsample: str         # transpose or resize
    mask_channel: bool    # the cloud mask is an input channel
    scaling: str          # learned, a reflectance preset, or per_image

    @property
    def fixed_scaling(self) -> bool:
        return self.scaling != PER_IMAGE

    @property
    def paper_init(self) -> bool:
        """pix2pix starts from N(0, 0.02) weights; the mask-guided generators from the fill (torch's defaults)."""
        return self.generator == PIX2PIX


def guide_signature(guides: list) -> tuple:
    """``(has optical guides, radar band count)`` of a source's guides; radar without known bands counts 2."""
    radar = sum(len(g.bands) if g.bands else 2 for g in guides if g.kind == "radar")
    return (any(g.kind != "radar" for g in guides), radar)


def resolve_choices(config: TrainConfig, sources: list) -> TrainingChoices:
    """The generator, decoder, mask channel and scaling of a run on ``sources`` (:class:`~.sources.TrainingSource`).

    ``generator="auto"``: ``guided`` when the sources have guides (other dates, radar),
    ``unmix_blend`` when every source is a clear raster for synthetic clouds, else ``pix2pix``.
    Guides are all-or-none: every source has the same kinds of guides, or none has. ``use_mask_channel=None``: always for the mask-guided generators;
    for pix2pix when every source has a mask (synthetic clouds always do). ``scaling="auto"``:
    learned for pix2pix, per image for the mask-guided generators, which work in the per-image
    network space (their linear unmixing assumes it) and refuse a fixed scaling.
    """
    kind = GENERATOR_ALIASES.get(config.generator, config.generator)
    guided = {guide_signature(s.guides) for s in sources}
    if len(guided) > 1:
        raise InputError("Every training source needs the same kinds of guides (optical dates and radar bands); "
                         f"these differ: {sorted(guided)}.")
    has_guides = bool(sources) and guided != {(False, 0)}
    if kind == AUTO:
        kind = GUIDED if has_guides else "unmix_blend" if sources and not any(s.paired for s in sources) else PIX2PIX
    if kind == GUIDED and not has_guides:
        raise InputError("The guided generator needs guides (other dates or radar) for every training source.")
    if has_guides and kind != GUIDED:
        raise InputError(f"Guides (other dates, radar) are used by the guided generator only, not by {kind}.")
    every_masked = all(s.mask is not None or not s.paired for s in sources)
    mask_channel = config.use_mask_channel
    if mask_channel is None:
        mask_channel = kind in MASK_GUIDED or every_masked
    if kind in MASK_GUIDED and not mask_channel:
        raise InputError(f"The {kind} generator fills what the cloud mask marks: it needs the mask channel "
                         "(use_mask_channel=True) and a mask for every pair; use the pix2pix generator for pairs "
                         "without masks.")
    if kind in MASK_GUIDED and any(s.paired and s.mask is None for s in sources):
        raise InputError(f"The {kind} generator needs a cloud mask for every cloudy/clear pair; give masks or use "
                         "the pix2pix generator.")
    scaling = config.scaling if config.scaling != AUTO else (LEARNED if kind == PIX2PIX else PER_IMAGE)
    if kind in MASK_GUIDED and scaling != PER_IMAGE:
        raise InputError(f"The {kind} generator works in per-image scaling (scaling '{PER_IMAGE}'); the scaling "
                         f"'{scaling}' needs the pix2pix generator.")
    upsample = config.upsample or ("transpose" if kind == PIX2PIX else "resize")
    one_of("upsample", upsample, ("transpose", "resize"))
    return TrainingChoices(kind, upsample, bool(mask_channel), scaling)


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
    held_out: list = field(default_factory=list)   # per-pair held-out figures (validation.pair_figures)
