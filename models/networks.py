"""Torch building blocks shared by every CloudFree model: one U-Net family and one PatchGAN.

- :class:`UNetGenerator` is the pix2pix generator (Isola et al., 2017): 4x4 stride-2
  convolutions down, transposed convolutions up, skip connections, LeakyReLU(0.2) down,
  ReLU up, dropout in the innermost decoder blocks, tanh output. ``depth`` and ``base``
  scale it from a CPU-sized model to the paper's 8 levels x 64 filters. ``upsample="resize"``
  swaps each 4x4 stride-2 transposed convolution for a bilinear x2 resize and a 3x3
  convolution, which cannot produce the checkerboard pattern of uneven kernel overlap
  (Odena et al., "Deconvolution and checkerboard artifacts", Distill 2016).
- :class:`FillResidualGenerator` wraps it for cloud removal: it starts from a smooth fill of the
  masked pixels (:func:`smooth_fill`) and, optionally, from the ground that linear unmixing of
  thin clouds and shadows recovers (:func:`unmix_parts`, :func:`unmix_fill`).
- :class:`PatchDiscriminator` is the conditional PatchGAN (70x70 receptive field with 3 layers).
- :class:`UNet` is a classic 3x3-convolution U-Net for per-pixel outputs (segmentation,
  fusion quality scores), with the channel widths given explicitly.
- :class:`DescriptorCNN` is the registration patch descriptor (Ye et al., GRSL 2018).
- :func:`inference_form` is an equivalent copy of any of them that torch runs faster at inference; the
  generators that compute a prior in ``forward`` take ``core=``, so that another engine (ONNX Runtime,
  :mod:`.backends`) may run their learned U-Net while the prior stays in torch.

Every network is rebuilt from ``ARCHITECTURES[name](**hyperparameters)`` when a model file is
loaded, so constructor arguments must be plain JSON values.
"""

from __future__ import annotations

import torch
from torch import nn

from .unmixing import PLAUSIBLE_RANGE, TRUST_POWER, blend_ground, smooth_fill, unmix_parts


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


class FillResidualGenerator(nn.Module):
    """pix2pix generator that refines a smooth fill of the masked pixels instead of starting blind.

    Input, as for :class:`UNetGenerator`: ``bands`` image channels, then the cloud mask
    (1 = masked), then any auxiliary channels. The masked pixels of the bands are first filled
    by :func:`smooth_fill`; the U-Net sees ``cat(fill, input)`` and its tanh output is added to
    the fill as a residual. The worst case is therefore a smooth interpolation (what classical
    inpainting gives), and the network spends its capacity on what interpolation cannot know:
    texture, thin-cloud signal, context. The residual's last convolution starts at zero, so an
    untrained generator returns exactly the fill and training starts from that baseline.
    With ``base_fill="unmix"`` the fill is refined by :func:`unmix_fill` before the U-Net sees
    it: where a cloud or shadow is thin, the ground under it is recovered by linear unmixing
    (``unlog_clip`` is the normalisation's ``clip``, beyond which inputs are log-compressed).
    ``head="blend"`` (with ``base_fill="unmix"``) makes the U-Net's extra output channel shift
    each masked pixel's trust in the unmixed ground over the fill instead of adding free
    values; its band channels then add at most ``residual_scale``.
    """

    def __init__(self, bands: int, extra_channels: int = 1, depth: int = 6, base: int = 32, max_channels: int = 256,
                 norm: str = "instance", dropout: float = 0.5, dropout_blocks: int = 3, fill_iterations: int = 24,
                 upsample: str = "transpose", base_fill: str = "smooth", unlog_clip: float = 2.0,
                 head: str = "residual", residual_scale: float = 1.0, trust_power: float = TRUST_POWER,
                 plausible_range: float = PLAUSIBLE_RANGE):
        super().__init__()
        if base_fill not in ("smooth", "unmix"):
            raise ValueError(f"unknown base_fill '{base_fill}' (smooth or unmix)")
        if head not in ("residual", "blend") or (head == "blend" and base_fill != "unmix"):
            raise ValueError(f"unknown head '{head}' (residual, or blend with base_fill='unmix')")
        self.bands = bands
        self.fill_iterations = fill_iterations
        self.base_fill = base_fill
        self.unlog_clip = unlog_clip
        self.head = head
        self.residual_scale = residual_scale
        self.unmix = {"trust_power": trust_power, "plausible_range": plausible_range}
        out_channels = bands + (1 if head == "blend" else 0)
        self.core = UNetGenerator(2 * bands + extra_channels, out_channels, depth=depth, base=base,
                                  max_channels=max_channels, norm=norm, dropout=dropout, dropout_blocks=dropout_blocks,
                                  upsample=upsample)
        last = [m for m in self.core.final.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None, core=None) -> torch.Tensor:
        """``core``: what runs the U-Net (default ``self.core``; another engine, see :mod:`.backends`)."""
        core = self.core if core is None else core
        img, mask = x[:, : self.bands], x[:, self.bands: self.bands + 1]
        filled = smooth_fill(img, 1.0 - mask, self.fill_iterations, prior)
        if self.base_fill == "smooth":
            return filled + self.residual_scale * core(torch.cat([filled, x], dim=1))
        with torch.no_grad():
            ground, distrust, fl = unmix_parts(img, mask, filled, self.unlog_clip, **self.unmix)
            base = torch.where(mask > 0.5, blend_ground(ground, fl, 1.0 - distrust, self.unlog_clip), img)
        t = core(torch.cat([base, x], dim=1))
        if self.head == "residual":
            return base + self.residual_scale * t
        # the network corrects how far each masked pixel trusts the unmixed ground over the fill
        # (the logit of its trust 1 - distrust, shifted by up to +-4), and adds a bounded residual
        prior_logit = torch.logit((1.0 - distrust).clamp(1e-4, 1.0 - 1e-4))
        w = torch.sigmoid(prior_logit + 4.0 * t[:, self.bands:])
        blended = blend_ground(ground, fl, w, self.unlog_clip)
        return torch.where(mask > 0.5, blended, img) + self.residual_scale * t[:, : self.bands]


class GuidedGenerator(nn.Module):
    """Cloud removal guided by other dates and/or radar, band by band with shared weights.

    Input ``(B, 2C + 2 + R, H, W)``: the target's ``C`` bands, its cloud mask (1 = masked), the
    guide base (``C`` bands: per pixel the nearest valid other date, its colours matched to the
    target's clear pixels, in the target's network space; 0 where none), the base's validity
    (1/0), then ``R`` radar channels. ``C`` is read from the input, so one model serves any band
    count (Sentinel-2, Landsat, one NDVI band): every band is processed alone by the same U-Net,
    which sees the band, the mask, the band's prior, the base's validity, the mean of the prior
    and of the target over all bands (context), and the radar. The prior is the base where it is
    valid and a fill of the target elsewhere, so a pixel no guide sees falls back to what an
    unguided fill gives: ``fallback="smooth"`` a smooth fill (:func:`smooth_fill`), ``"unmix"`` the
    smooth fill refined by linear unmixing where a cloud is thin (:func:`unmix_parts`, what the
    untrained ``unmix_blend`` generator gives). The U-Net adds a residual to the prior in the
    masked pixels only (clear pixels are returned as given); its last layer starts at zero, so an
    untrained model is exactly the colour-matched copy of the nearest clear date.
    """

    def __init__(self, radar: int = 0, depth: int = 5, base: int = 32, max_channels: int = 256,
                 norm: str = "instance", dropout: float = 0.5, dropout_blocks: int = 3, upsample: str = "resize",
                 fill_iterations: int = 24, fallback: str = "smooth", unlog_clip: float = 2.0):
        super().__init__()
        if fallback not in ("smooth", "unmix"):
            raise ValueError(f"unknown fallback '{fallback}' (smooth or unmix)")
        self.radar = int(radar)
        self.fill_iterations = fill_iterations
        self.fallback, self.unlog_clip = fallback, unlog_clip
        self.core = UNetGenerator(6 + self.radar, 1, depth=depth, base=base, max_channels=max_channels, norm=norm,
                                  dropout=dropout, dropout_blocks=dropout_blocks, upsample=upsample)
        last = [m for m in self.core.final.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def split(self, x: torch.Tensor) -> tuple:
        """``(image, mask, base, base_valid, radar)`` of an input laid out as the class says."""
        c = (x.shape[1] - 2 - self.radar) // 2
        if c < 1 or 2 * c + 2 + self.radar != x.shape[1]:
            raise ValueError(f"{x.shape[1]} input channels do not fit 2 x bands + 2 + {self.radar} radar")
        return (x[:, :c], x[:, c:c + 1], x[:, c + 1:2 * c + 1], x[:, 2 * c + 1:2 * c + 2],
                x[:, 2 * c + 2:])

    def prior(self, x: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
        """The base where valid, a smooth fill of the target elsewhere, the target outside the mask."""
        img, mask, base, valid, _ = self.split(x)
        filled = smooth_fill(img, 1.0 - mask, self.fill_iterations, prior)
        if self.fallback == "unmix":
            with torch.no_grad():
                ground, distrust, fl = unmix_parts(img, mask, filled, self.unlog_clip)
                filled = blend_ground(ground, fl, 1.0 - distrust, self.unlog_clip)
        return torch.where(valid > 0.5, base, filled) * mask + img * (1.0 - mask)

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None, core=None) -> torch.Tensor:
        """``core``: what runs the U-Net (default ``self.core``; another engine, see :mod:`.backends`)."""
        img, mask, _, valid, radar = self.split(x)
        start = self.prior(x, prior)
        b, c, h, w = img.shape
        context = [start.mean(1, keepdim=True), img.mean(1, keepdim=True)]
        shared = torch.cat([mask, valid, *context, radar], dim=1)                 # (B, 4 + R, H, W)
        feats = torch.cat([start.reshape(b * c, 1, h, w), img.reshape(b * c, 1, h, w),
                           shared.unsqueeze(1).expand(b, c, *shared.shape[1:]).reshape(b * c, -1, h, w)], dim=1)
        residual = (self.core if core is None else core)(feats).reshape(b, c, h, w)
        return start + residual * mask


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
    and take a skip connection, any further ones refine at full resolution. ``dropout`` > 0
    drops features after the two deepest encoder blocks while training (as the classic
    segmentation U-Net does); 0 adds nothing, so models saved without it load and run unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, encoder=(32, 64, 128, 128),
                 decoder=(64, 32, 16, 16), norm: str = "batch", dropout: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
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
            if i >= self.levels - 1:
                x = self.drop(x)
            if i < self.levels:
                skips.append(x)
                x = self.pool(x)
        for k, block in enumerate(self.dec):
            if k < self.levels:
                x = self.ups[k](x)
                x = torch.cat([x, skips[-1 - k]], dim=1)
            x = block(x)
        return self.head(x)


def init_pix2pix_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """The pix2pix initialisation (Isola et al. 2017, after DCGAN), in place: convolution weights
    N(0, ``std``), normalisation-layer weights N(1, ``std``), biases 0. Returns ``module``."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)
    return module


class ResidualGenerator(nn.Module):
    """Cloud removal as a correction of a start (DSen2-CR's long skip, Meraner et al. 2020).

    ``start="input"`` (no mask): ``clear = input + correction``. Input ``(B, C [+ R + 1], H, W)``: the
    ``C`` optical bands in network space, then, when ``radar`` > 0, ``R`` Sentinel-1 channels (dB, fixed
    map) and the radar's validity (1 where radar is given, 0 where it is missing or was dropped in
    training: the radar channels are then ignored).

    ``start="fill"`` (with a mask): input ``(B, C + 1 [+ R + 1], H, W)``, the mask (1 = cloud) after the
    bands. The start is the unmixing fill of the masked pixels (what the untrained ``unmix_blend``
    generator gives: :func:`smooth_fill`, :func:`unmix_parts`), the correction is added inside the mask
    only, and clear pixels are returned as given.

    The correction (``core``, :class:`ResidualUNet`) has no normalisation layer: nothing is computed over
    a tile, so with ``start="input"`` a pixel's output does not depend on the tile it falls in, once the
    overlap covers the receptive field and tile offsets are multiples of ``2 ** depth``. The radar is
    first averaged over ``radar_smooth`` x ``radar_smooth`` pixels (multi-looking against speckle). The
    last layer starts at zero, so an untrained model returns its start exactly.
    """

    def __init__(self, bands: int, radar: int = 0, depth: int = 4, base: int = 24, max_channels: int = 192,
                 radar_smooth: int = 5, start: str = "input", fill_iterations: int = 24, unlog_clip: float = 2.0):
        super().__init__()
        if start not in ("input", "fill"):
            raise ValueError(f"unknown start '{start}' (input or fill)")
        self.bands, self.radar, self.depth, self.radar_smooth = int(bands), int(radar), int(depth), int(radar_smooth)
        self.start, self.fill_iterations, self.unlog_clip = start, int(fill_iterations), float(unlog_clip)
        cin = self.bands * (2 if start == "fill" else 1) + (start == "fill") + (self.radar + 1 if self.radar else 0)
        self.core = ResidualUNet(cin, self.bands, depth, base, max_channels)

    @property
    def tile_multiple(self) -> int:
        return 2 ** self.depth

    def split(self, x: torch.Tensor) -> tuple:
        """``(image, mask or None, radar channels multi-looked and zeroed where not valid, validity)``."""
        c = self.bands
        img = x[:, :c]
        mask = x[:, c:c + 1] if self.start == "fill" else None
        pos = c + (self.start == "fill")
        if not self.radar:
            return img, mask, None, None
        radar, valid = x[:, pos:pos + self.radar], x[:, pos + self.radar:pos + self.radar + 1]
        if self.radar_smooth > 1:
            k = self.radar_smooth
            radar = nn.functional.avg_pool2d(nn.functional.pad(radar, [k // 2] * 4, mode="reflect"), k, 1)
        return img, mask, radar * valid, valid

    def forward(self, x: torch.Tensor, prior: torch.Tensor | None = None, core=None) -> torch.Tensor:
        """``prior``: the coarse fill of a whole raster (``start="fill"``); ``core``: what runs the U-Net."""
        core = self.core if core is None else core
        img, mask, radar, valid = self.split(x)
        guide = [] if radar is None else [radar, valid]
        if mask is None:
            return img + core(torch.cat([img, *guide], dim=1))
        with torch.no_grad():
            filled = smooth_fill(img, 1.0 - mask, self.fill_iterations, prior)
            ground, distrust, fl = unmix_parts(img, mask, filled, self.unlog_clip)
            start = torch.where(mask > 0.5, blend_ground(ground, fl, 1.0 - distrust, self.unlog_clip), img)
        return start + mask * core(torch.cat([start, img, mask, *guide], dim=1))


class ResidualUNet(nn.Module):
    """The correction of :class:`ResidualGenerator`: 3x3 convolutions, no normalisation, average-pool down,
    bilinear x2 + 3x3 convolution up (no checkerboard), skip connections, a 1x1 head that starts at zero."""

    def __init__(self, in_channels: int, out_channels: int, depth: int = 4, base: int = 24, max_channels: int = 192):
        super().__init__()
        self.depth = int(depth)
        ch = [min(base * 2 ** i, max_channels) for i in range(depth + 1)]
        self.enc = nn.ModuleList([_conv_block(in_channels, ch[0])]
                                 + [_conv_block(ch[i - 1], ch[i]) for i in range(1, depth + 1)])
        self.lift = nn.ModuleList([nn.Conv2d(ch[i + 1], ch[i], 3, 1, 1, padding_mode="reflect") for i in range(depth)])
        self.dec = nn.ModuleList([_conv_block(2 * ch[i], ch[i]) for i in range(depth)])
        self.head = nn.Conv2d(ch[0], out_channels, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.enc):
            h = block(h if i == 0 else nn.functional.avg_pool2d(h, 2))
            skips.append(h)
        for i in range(self.depth - 1, -1, -1):
            up = nn.functional.interpolate(h, scale_factor=2, mode="bilinear", align_corners=False)
            h = self.dec[i](torch.cat([nn.functional.leaky_relu(self.lift[i](up), 0.2), skips[i]], dim=1))
        return self.head(h)


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 convolutions (mirrored borders) with LeakyReLU and no normalisation."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, padding_mode="reflect"), nn.LeakyReLU(0.2, inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, padding_mode="reflect"), nn.LeakyReLU(0.2, inplace=True))


ARCHITECTURES = {
    "unet_generator": UNetGenerator,
    "fill_residual_generator": FillResidualGenerator,
    "guided_generator": GuidedGenerator,
    "patch_discriminator": PatchDiscriminator,
    "unet": UNet,
    "residual_generator": ResidualGenerator,
}


class DescriptorCNN(nn.Module):
    """The registration patch descriptor: 64x64x1 patch -> ``dim``-d unit vector.

    A 5x5 stride-2 convolution, then one stride-2 3x3 convolution per further channel count
    (BatchNorm + ReLU after each), a dropout and a linear layer: with the default channels
    (16, 32, 64, 128) about 9 MFLOP per patch, so thousands of keypoints stay cheap on a CPU.
    """

    def __init__(self, channels=(16, 32, 64, 128), dim: int = 128, patch: int = 64):
        super().__init__()
        layers = [nn.Conv2d(1, channels[0], 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(channels[0]),
                  nn.ReLU(inplace=True)]
        cin = channels[0]
        for cout in channels[1:]:
            layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
            cin = cout
        self.features = nn.Sequential(*layers)
        side = patch // 2 ** len(channels)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(cin * side * side, dim))
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(self.head(self.features(x)), dim=1)


ARCHITECTURES["descriptor_cnn"] = DescriptorCNN  # the key shipped descriptor files name


def inference_form(module: nn.Module) -> nn.Module:
    """An equivalent copy of ``module`` (in eval mode) that torch runs faster on the CPU, measured in
    benchmarks/inference.py: every affine InstanceNorm2d becomes the GroupNorm with one channel per group
    (the same statistics; torch's instance norm reshapes and copies a channels-last tensor, its group norm
    does not), every BatchNorm2d after a convolution is folded into it, and the weights are laid out
    channels-last, which torch's oneDNN convolutions run without reordering every layer. Outputs equal the
    original's up to float rounding (about 1e-6)."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fast = copy.deepcopy(module).eval()
    for parent in list(fast.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.InstanceNorm2d) and child.affine and not child.track_running_stats:
                norm = nn.GroupNorm(child.num_features, child.num_features, eps=child.eps)
                norm.load_state_dict(child.state_dict())
                setattr(parent, name, norm)
        if isinstance(parent, nn.Sequential):
            for i in range(len(parent) - 1):
                if isinstance(parent[i], nn.Conv2d) and isinstance(parent[i + 1], nn.BatchNorm2d):
                    parent[i], parent[i + 1] = fuse_conv_bn_eval(parent[i], parent[i + 1]), nn.Identity()
    return fast.to(memory_format=torch.channels_last)


def build(architecture: str, hyperparameters: dict) -> nn.Module:
    if architecture not in ARCHITECTURES:
        raise KeyError(architecture)
    return ARCHITECTURES[architecture](**hyperparameters)
