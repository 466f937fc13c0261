"""Which networks a cloud-removal model uses: the generator kinds (:data:`GENERATORS`) and their
hyperparameters, the conditional discriminator's, and fresh networks built from the shared
registry (:func:`..networks.build`; the modules themselves live in :mod:`..networks`).

``pix2pix`` (the default for cloudy/clear pairs) is the paper's U-Net generator
:class:`networks.UNetGenerator` (Isola et al. 2017): 4x4 stride-2 convolutions down, transposed
convolutions up, skip connections, dropout 0.5 in the first three decoder blocks, tanh output,
weights drawn from N(0, 0.02) (:func:`networks.init_pix2pix_weights`); sizes ``small`` (6 levels x
32 filters, a CPU's) and ``full`` (the paper's 8 levels x 64 filters, C64-C128-C256-C512-C512-C512-
C512-C512). It learns any cloudy -> clear mapping, including a change of brightness and colour
under fixed scaling, and needs no mask.

The mask-guided generators (:class:`networks.FillResidualGenerator`) do not start blind. The
masked pixels are first filled by a smooth membrane interpolation of their surroundings
(:func:`networks.smooth_fill`). With ``unmix_blend`` (the shipped model, for thick clouds with a
mask, trained on synthetic clouds) the ground under thin clouds and shadows is then recovered by
linear unmixing (:func:`networks.unmix_parts`), and the U-Net, which sees this estimate and the
cloudy input, sets per masked pixel how far to trust the unmixed ground over the fill. Its output
always lies between the two, and its last layer starts at zero, so training starts from the
physical prior, not from noise. ``upsample="resize"`` (the shipped model) replaces the decoder's
transposed convolutions by bilinear x2 resizing + 3x3 convolutions, which removed the dotted
checkerboard texture of the first CPU model. Two other mask-guided kinds were tried and dropped
because they did not earn their place: a free residual over the unmixed ground or over the smooth
fill lowered the held-out scores on the scene a model had not seen (README). Model files written
with them still load: a file carries its architecture and hyper-parameters.

The discriminator is the conditional :class:`networks.PatchDiscriminator` (70x70 PatchGAN with 3
layers) that scores ``cat(input, image)``. Input channels = the selected bands, then (when the
run has one) the cloud mask as one channel (1 = masked or nodata, 0 = clear), then any auxiliary
conditioning rasters; the output is the selected bands. Normalisation layers are *instance* norm
(pix2pix trains with batch size 1, where batch norm is instance norm; instance norm behaves the
same in training and inference and does not depend on the batch size).
"""

from __future__ import annotations

from ..errors import InputError
from .config import DEFAULT_NORMALIZATION, GENERATOR_ALIASES, GUIDED, MODEL_SIZES, PIX2PIX

GENERATORS = {PIX2PIX: "unet_generator", "unmix_blend": "fill_residual_generator", GUIDED: "guided_generator",
              "plain": "unet_generator"}  # plain: the former name of pix2pix
FILL_ARCHITECTURE = "fill_residual_generator"  # generators that start from a fill of the masked pixels
# Generators whose last layer starts at zero, so that the untrained network is a model in its own
# right (the unmixing fill; the colour-matched copy of the nearest clear date). Their step 0 is a
# candidate of the validation's keep-best: training is kept only when it does better than its start.
PRIOR_STARTS = ("unmix_blend", GUIDED)
DISCRIMINATOR = "patch_discriminator"
RESIDUAL_ARCHITECTURE = "residual_generator"  # networks.ResidualGenerator, trained on triplets (.residual)


def generator_hyperparameters(in_channels: int, out_channels: int, p: dict, norm: str = "instance",
                              dropout: float = 0.5, upsample: str = "transpose") -> dict:
    """Constructor arguments of :class:`networks.UNetGenerator` for a size ``p`` (depth, base, max_channels)."""
    return {"in_channels": int(in_channels), "out_channels": int(out_channels), "depth": int(p["depth"]),
            "base": int(p["base"]), "max_channels": int(p["max_channels"]), "norm": norm,
            "dropout": float(dropout), "dropout_blocks": min(3, int(p["depth"]) - 1), "upsample": upsample}


def generator_spec(kind: str, in_channels: int, out_channels: int, p: dict, norm: str = "instance",
                   dropout: float = 0.5, upsample: str = "transpose", residual_scale: float = 0.0) -> tuple:
    """``(architecture, hyperparameters)`` of a generator kind (see :data:`GENERATORS`).

    - ``unmix_blend`` (the shipped model) is a :class:`networks.FillResidualGenerator` and needs
      the mask channel right after the bands: the ground under thin clouds and shadows is unmixed
      (:func:`networks.unmix_parts`); the U-Net decides per masked pixel how much to trust it over
      the smooth fill (it shifts the logit of ``1 - opacity`` by up to +-4) and adds a free
      residual bounded by ``residual_scale`` (0 = none);
    - ``pix2pix`` (alias ``plain``): the paper's U-Net, which sees the cloudy pixels (and the mask
      channel, when the run has one) and generates every pixel;
    - ``guided``: :class:`networks.GuidedGenerator`, band by band from the colour-matched nearest
      clear other date and/or radar (:mod:`.guides`); any band count.
    Trained on one scene and validated on another, every free residual lowered the scores
    (README), so the default has none.
    """
    hp = generator_hyperparameters(in_channels, out_channels, p, norm, dropout, upsample)
    if GENERATOR_ALIASES.get(kind, kind) == PIX2PIX:
        return GENERATORS[PIX2PIX], hp
    if kind not in GENERATORS:
        raise InputError(f"Unknown generator '{kind}': use {', '.join(GENERATORS)}.")
    if kind == GUIDED:  # input: bands, mask, guide base, its validity, radar (networks.GuidedGenerator)
        radar = in_channels - 2 * out_channels - 2
        return GENERATORS[GUIDED], {"radar": int(radar), "fallback": "unmix",
                                    "unlog_clip": float(DEFAULT_NORMALIZATION["clip"]),
                                    **{k: v for k, v in hp.items() if k not in ("in_channels", "out_channels")}}
    from ..unmixing import PLAUSIBLE_RANGE, TRUST_POWER

    fill_hp = {k: v for k, v in hp.items() if k not in ("in_channels", "out_channels")}
    fill_hp.update(base_fill="unmix", unlog_clip=float(DEFAULT_NORMALIZATION["clip"]), trust_power=TRUST_POWER,
                   plausible_range=PLAUSIBLE_RANGE, head="blend", residual_scale=float(residual_scale))
    return GENERATORS[kind], {"bands": int(out_channels), "extra_channels": int(in_channels - out_channels), **fill_hp}


def discriminator_hyperparameters(in_channels: int, bands: int, base: int, layers: int, norm: str) -> dict:
    """The conditional PatchGAN's arguments: it scores ``cat(input, image)``."""
    return {"in_channels": in_channels + bands, "base": int(base), "layers": int(layers), "norm": norm}


def build(architecture: str, hyperparameters: dict, paper_init: bool = False):
    """A fresh network from the shared registry (its weights drawn from torch's global generator);
    ``paper_init``: then redrawn as in pix2pix (:func:`networks.init_pix2pix_weights`)."""
    from .. import networks

    net = networks.build(architecture, hyperparameters)
    return networks.init_pix2pix_weights(net) if paper_init else net


def build_generator(in_channels: int, out_channels: int, size: str = "small", kind: str = "unmix_blend",
                    **overrides):
    """A fresh generator of one of :data:`MODEL_SIZES` (``overrides``: depth, base, max_channels, norm, dropout,
    upsample)."""
    if size not in MODEL_SIZES:
        raise InputError(f"Unknown model size '{size}': use {', '.join(MODEL_SIZES)}.")
    p = dict(MODEL_SIZES[size])
    p.update({k: v for k, v in overrides.items() if k in ("depth", "base", "max_channels") and v is not None})
    arch, hp = generator_spec(kind, in_channels, out_channels, p, overrides.get("norm", "instance"),
                              overrides.get("dropout", 0.5), overrides.get("upsample", "transpose"))
    return build(arch, hp, paper_init=GENERATOR_ALIASES.get(kind, kind) == PIX2PIX)
