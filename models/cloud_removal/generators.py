"""Which networks a cloud-removal model uses: the generator kinds (:data:`GENERATORS`) and their
hyperparameters, the conditional discriminator's, and fresh networks built from the shared
registry (:func:`..networks.build`; the modules themselves live in :mod:`..networks`).

The generator is the pix2pix U-Net :class:`networks.UNetGenerator` (4x4 stride-2 convolutions,
skip connections, tanh output). The CloudFree generators (:class:`networks.FillResidualGenerator`)
do not start blind. The masked pixels are first filled by a smooth membrane interpolation of their
surroundings (:func:`networks.smooth_fill`). With ``generator="unmix_blend"`` (default, the shipped
model) the ground under thin clouds and shadows is then recovered by linear unmixing
(:func:`networks.unmix_parts`), and the U-Net, which sees this estimate and the cloudy input, sets
per masked pixel how far to trust the unmixed ground over the fill. Its output always lies between
the two, and its last layer starts at zero, so training starts from the physical prior, not from
noise. ``upsample="resize"`` (the shipped model) replaces the decoder's transposed convolutions by
bilinear x2 resizing + 3x3 convolutions, which removed the dotted checkerboard texture of the
first CPU model. The discriminator is the conditional :class:`networks.PatchDiscriminator` (70x70
PatchGAN) that scores ``cat(input, image)``. Input channels = the selected bands, then (by
default) the cloud mask as one channel (1 = masked or nodata, 0 = clear), then any auxiliary
conditioning rasters; the output is the selected bands. Normalisation layers are *instance* norm
(pix2pix trains with batch size 1, where batch norm is instance norm; instance norm behaves the
same in training and inference and does not depend on the batch size).
"""

from __future__ import annotations

from ..errors import InputError
from .config import DEFAULT_NORMALIZATION, MODEL_SIZES

GENERATORS = {"unmix_blend": "fill_residual_generator", "unmix_residual": "fill_residual_generator",
              "fill_residual": "fill_residual_generator", "plain": "unet_generator"}
FILL_ARCHITECTURE = "fill_residual_generator"  # generators that start from a fill of the masked pixels
DISCRIMINATOR = "patch_discriminator"
UPSAMPLING = ("transpose", "resize")


def generator_hyperparameters(in_channels: int, out_channels: int, p: dict, norm: str = "instance",
                              dropout: float = 0.5, upsample: str = "transpose") -> dict:
    """Constructor arguments of :class:`networks.UNetGenerator` for a size ``p`` (depth, base, max_channels)."""
    return {"in_channels": int(in_channels), "out_channels": int(out_channels), "depth": int(p["depth"]),
            "base": int(p["base"]), "max_channels": int(p["max_channels"]), "norm": norm,
            "dropout": float(dropout), "dropout_blocks": min(3, int(p["depth"]) - 1), "upsample": upsample}


def generator_spec(kind: str, in_channels: int, out_channels: int, p: dict, norm: str = "instance",
                   dropout: float = 0.5, upsample: str = "transpose", residual_scale: float = 0.0) -> tuple:
    """``(architecture, hyperparameters)`` of a generator kind (see :data:`GENERATORS`).

    All but ``plain`` are :class:`networks.FillResidualGenerator` and need the mask channel
    right after the bands:
    - ``unmix_blend`` (default, the shipped model): the ground under thin clouds and shadows
      is unmixed (:func:`networks.unmix_parts`); the U-Net decides per masked pixel how much
      to trust it over the smooth fill (it shifts the logit of ``1 - opacity`` by up to +-4)
      and adds a free residual bounded by ``residual_scale`` (0 = none);
    - ``unmix_residual``: the unmixed fill plus a free residual (tanh, up to +-1);
    - ``fill_residual``: the smooth fill plus a free residual;
    - ``plain``: the original pix2pix U-Net that sees the cloudy pixels only.
    Trained on one scene and validated on another, every free residual lowered the scores
    (README), so the default has none.
    """
    hp = generator_hyperparameters(in_channels, out_channels, p, norm, dropout, upsample)
    if kind == "plain":
        return GENERATORS[kind], hp
    if kind not in GENERATORS:
        raise InputError(f"Unknown generator '{kind}': use {', '.join(GENERATORS)}.")
    fill_hp = {k: v for k, v in hp.items() if k not in ("in_channels", "out_channels")}
    if kind in ("unmix_residual", "unmix_blend"):
        from ..networks import PLAUSIBLE_RANGE, TRUST_POWER

        fill_hp.update(base_fill="unmix", unlog_clip=float(DEFAULT_NORMALIZATION["clip"]), trust_power=TRUST_POWER,
                       plausible_range=PLAUSIBLE_RANGE)
    if kind == "unmix_blend":
        fill_hp.update(head="blend", residual_scale=float(residual_scale))
    return GENERATORS[kind], {"bands": int(out_channels), "extra_channels": int(in_channels - out_channels), **fill_hp}


def check_generator_choice(kind: str, use_mask_channel: bool, upsample: str) -> None:
    """:class:`InputError` for a generator that needs the mask channel without it, or an unknown decoder."""
    if kind != "plain" and not use_mask_channel:
        raise InputError(f"The {kind} generator needs the mask channel (use_mask_channel=True).")
    if upsample not in UPSAMPLING:
        raise InputError(f"Unknown upsample '{upsample}': transpose or resize.")


def discriminator_hyperparameters(in_channels: int, bands: int, base: int, layers: int, norm: str) -> dict:
    """The conditional PatchGAN's arguments: it scores ``cat(input, image)``."""
    return {"in_channels": in_channels + bands, "base": int(base), "layers": int(layers), "norm": norm}


def build(architecture: str, hyperparameters: dict):
    """A fresh network from the shared registry (its weights drawn from torch's global generator)."""
    from .. import networks

    return networks.build(architecture, hyperparameters)


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
    return build(arch, hp)
