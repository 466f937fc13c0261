"""Torch building blocks shared by every CloudFree model: one U-Net family and one PatchGAN.

- :class:`UNetGenerator` is the pix2pix generator (Isola et al., 2017): 4x4 stride-2
  convolutions down, transposed convolutions up, skip connections, LeakyReLU(0.2) down,
  ReLU up, dropout in the innermost decoder blocks, tanh output. ``depth`` and ``base``
  scale it from a CPU-sized model to the paper's 8 levels x 64 filters. ``upsample="resize"``
  swaps each 4x4 stride-2 transposed convolution for a bilinear x2 resize and a 3x3
  convolution, which cannot produce the checkerboard pattern of uneven kernel overlap
  (Odena et al., "Deconvolution and checkerboard artifacts", Distill 2016).
- :class:`PatchDiscriminator` is the conditional PatchGAN (70x70 receptive field with 3 layers).
- :class:`UNet` is a classic 3x3-convolution U-Net for per-pixel outputs (segmentation,
  fusion quality scores), with the channel widths given explicitly.

Every network is rebuilt from ``ARCHITECTURES[name](**hyperparameters)`` when a model file is
loaded, so constructor arguments must be plain JSON values.
"""

from __future__ import annotations

import torch
from torch import nn


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm '{kind}' (batch, instance or none)")


def _up(kind: str, cin: int, cout: int, bias: bool) -> nn.Module:
    """x2 upsampling layer of the generator's decoder."""
    if kind == "transpose":
        return nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                         nn.Conv2d(cin, cout, 3, 1, 1, bias=bias))


class UNetGenerator(nn.Module):
    """pix2pix U-Net generator; input tiles must be divisible by ``2 ** depth``."""

    def __init__(self, in_channels: int, out_channels: int, depth: int = 8, base: int = 64,
                 max_channels: int = 512, norm: str = "batch", dropout: float = 0.5, dropout_blocks: int = 3,
                 upsample: str = "transpose"):
        super().__init__()
        if depth < 2:
            raise ValueError("depth must be at least 2")
        if upsample not in ("transpose", "resize"):
            raise ValueError(f"unknown upsample '{upsample}' (transpose or resize)")
        ch = [min(base * 2 ** i, max_channels) for i in range(depth)]
        use_bias = norm != "batch"
        self.depth = depth
        self.down = nn.ModuleList([nn.Conv2d(in_channels, ch[0], 4, 2, 1, bias=use_bias)])
        for i in range(1, depth):
            innermost = i == depth - 1
            self.down.append(nn.Sequential(
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(ch[i - 1], ch[i], 4, 2, 1, bias=use_bias),
                nn.Identity() if innermost else _norm(norm, ch[i]),
            ))
        self.up = nn.ModuleList()
        # up[j] maps level depth-1-j back to depth-2-j; the innermost takes no skip
        for j, i in enumerate(range(depth - 1, 0, -1)):
            cin = ch[i] if j == 0 else 2 * ch[i]
            layers = [nn.ReLU(inplace=True), _up(upsample, cin, ch[i - 1], use_bias), _norm(norm, ch[i - 1])]
            if j < dropout_blocks and dropout > 0:
                layers.append(nn.Dropout(dropout))
            self.up.append(nn.Sequential(*layers))
        self.final = nn.Sequential(nn.ReLU(inplace=True), _up(upsample, 2 * ch[0], out_channels, True), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for layer in self.down:
            x = layer(x)
            skips.append(x)
        x = self.up[0](skips[-1])
        for j in range(1, self.depth - 1):
            x = self.up[j](torch.cat([x, skips[-1 - j]], dim=1))
        return self.final(torch.cat([x, skips[0]], dim=1))


PRIOR_WEIGHT = 0.05  # a prior counts like 5 % of one known pixel: it only decides where nothing is known


def smooth_fill(x: torch.Tensor, known: torch.Tensor, iterations: int = 24,
                prior: torch.Tensor | None = None) -> torch.Tensor:
    """Fill unknown pixels smoothly from known ones: push-pull pyramid, then diffusion.

    ``x`` is ``(B, C, H, W)``, ``known`` ``(B, 1, H, W)`` in {0, 1}. Known pixels are returned
    unchanged; unknown ones get a membrane-like interpolation of their surroundings (close to
    harmonic inpainting, but a few cheap convolutions on any device). ``prior`` (same shape as
    ``x``), when given, is a weak observation everywhere: it decides the fill only where the
    tile itself holds no known pixel nearby (e.g. a tile inside a large cloud, whose fill
    then comes from a coarse fill of the whole raster instead of from nothing).
    """
    import torch.nn.functional as F

    v, w = x * known, known
    if prior is not None:
        v, w = v + PRIOR_WEIGHT * prior, w + PRIOR_WEIGHT
    pyramid = [(v, w)]
    while v.shape[-1] > 1 or v.shape[-2] > 1:
        v, w = F.avg_pool2d(v, 2, ceil_mode=True), F.avg_pool2d(w, 2, ceil_mode=True)
        pyramid.append((v, w))
    est = v / w.clamp_min(1e-6)
    for v, w in reversed(pyramid[:-1]):
        up = F.interpolate(est, size=v.shape[-2:], mode="bilinear", align_corners=False)
        conf = w.clamp(0.0, 1.0)
        est = conf * (v / w.clamp_min(1e-6)) + (1.0 - conf) * up
    filled = torch.where(known > 0, x, est)
    for _ in range(iterations):
        smooth = F.avg_pool2d(F.pad(filled, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        filled = torch.where(known > 0, x, smooth)
    return filled


class FillResidualGenerator(nn.Module):
    """pix2pix generator that refines a smooth fill of the masked pixels instead of starting blind.

    Input, as for :class:`UNetGenerator`: ``bands`` image channels, then the cloud mask
    (1 = masked), then any auxiliary channels. The masked pixels of the bands are first filled
    by :func:`smooth_fill`; the U-Net sees ``cat(fill, input)`` and its tanh output is added to
    the fill as a residual. The worst case is therefore a smooth interpolation (what classical
    inpainting gives), and the network spends its capacity on what interpolation cannot know:
    texture, thin-cloud signal, context. The residual's last convolution starts at zero, so an
    untrained generator returns exactly the fill and training starts from that baseline.
    """

    def __init__(self, bands: int, extra_channels: int = 1, depth: int = 6, base: int = 32, max_channels: int = 256,
                 norm: str = "instance", dropout: float = 0.5, dropout_blocks: int = 3, fill_iterations: int = 24,
                 upsample: str = "transpose"):
        super().__init__()
        self.bands = bands
        self.fill_iterations = fill_iterations
        self.core = UNetGenerator(2 * bands + extra_channels, bands, depth=depth, base=base,
                                  max_channels=max_channels, norm=norm, dropout=dropout, dropout_blocks=dropout_blocks,
                                  upsample=upsample)
        last = [m for m in self.core.final.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        img, mask = x[:, : self.bands], x[:, self.bands: self.bands + 1]
        filled = smooth_fill(img, 1.0 - mask, self.fill_iterations, prior)
        return filled + self.core(torch.cat([filled, x], dim=1))


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN: scores overlapping patches of ``cat(condition, image)`` as real or fake."""

    def __init__(self, in_channels: int, base: int = 64, layers: int = 3, norm: str = "batch"):
        super().__init__()
        use_bias = norm != "batch"
        seq = [nn.Conv2d(in_channels, base, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, layers + 1):
            prev, mult = mult, min(2 ** n, 8)
            stride = 2 if n < layers else 1
            seq += [nn.Conv2d(base * prev, base * mult, 4, stride, 1, bias=use_bias), _norm(norm, base * mult),
                    nn.LeakyReLU(0.2, True)]
        seq.append(nn.Conv2d(base * mult, 1, 4, 1, 1))
        self.model = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _double_conv(cin: int, cout: int, norm: str) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=norm == "none"), _norm(norm, cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=norm == "none"), _norm(norm, cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with 3x3 convolutions; ``encoder`` widths go down, ``decoder`` widths come back up.

    ``len(decoder) >= len(encoder) - 1``: the first ``len(encoder) - 1`` decoder stages upsample
    and take a skip connection, any further ones refine at full resolution.
    """

    def __init__(self, in_channels: int, out_channels: int, encoder=(32, 64, 128, 128),
                 decoder=(64, 32, 16, 16), norm: str = "batch"):
        super().__init__()
        encoder, decoder = list(encoder), list(decoder)
        if len(decoder) < len(encoder) - 1:
            raise ValueError("need at least len(encoder) - 1 decoder stages")
        self.enc = nn.ModuleList()
        cin = in_channels
        for w in encoder:
            self.enc.append(_double_conv(cin, w, norm))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.ups = nn.ModuleList()
        self.dec = nn.ModuleList()
        skips = encoder[:-1][::-1]
        for k, w in enumerate(decoder):
            if k < len(skips):
                self.ups.append(nn.ConvTranspose2d(cin, w, 2, stride=2))
                self.dec.append(_double_conv(w + skips[k], w, norm))
            else:
                self.dec.append(_double_conv(cin, w, norm))
            cin = w
        self.head = nn.Conv2d(cin, out_channels, 1)
        self.levels = len(encoder) - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            x = block(x)
            if i < self.levels:
                skips.append(x)
                x = self.pool(x)
        for k, block in enumerate(self.dec):
            if k < self.levels:
                x = self.ups[k](x)
                x = torch.cat([x, skips[-1 - k]], dim=1)
            x = block(x)
        return self.head(x)


ARCHITECTURES = {
    "unet_generator": UNetGenerator,
    "fill_residual_generator": FillResidualGenerator,
    "patch_discriminator": PatchDiscriminator,
    "unet": UNet,
}


def _descriptor_cnn(**hyperparameters) -> nn.Module:
    from .descriptors import descriptor_class  # the registration descriptor lives with its training code

    return descriptor_class()(**hyperparameters)


ARCHITECTURES["descriptor_cnn"] = _descriptor_cnn


def build(architecture: str, hyperparameters: dict) -> nn.Module:
    if architecture not in ARCHITECTURES:
        raise KeyError(architecture)
    return ARCHITECTURES[architecture](**hyperparameters)
