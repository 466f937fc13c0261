"""Shared networks: shapes, the smooth fill and the fill-residual generator."""

import numpy as np
import pytest
import torch

from cloudfree.models import networks, unmixing


def test_smooth_fill_keeps_known_pixels_and_interpolates_holes():
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    plane = (0.02 * xx + 0.01 * yy)[None, None]
    known = torch.ones_like(plane)
    known[..., 20:40, 10:50] = 0
    filled = unmixing.smooth_fill(plane * known, known)
    assert torch.equal(filled[known > 0], plane[known > 0])
    # a plane is harmonic: the membrane fill must recover it closely
    assert (filled - plane).abs().max() < 0.05 * float(plane.max())


def test_smooth_fill_of_odd_sizes_and_empty_masks():
    x = torch.rand(2, 3, 37, 53)
    assert torch.equal(unmixing.smooth_fill(x, torch.ones(2, 1, 37, 53)), x)
    known = torch.zeros(2, 1, 37, 53)
    known[:, :, 0, 0] = 1
    out = unmixing.smooth_fill(x, known)
    assert out.shape == x.shape and torch.isfinite(out).all()


def _box_mean3(x):
    """Each pixel's 3 x 3 mean, edges replicated, as the smooth fill takes it."""
    return unmixing._mean3_of_padded(torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate"))


def test_box_mean_is_the_replicate_padded_3x3_mean_and_leaves_its_input_alone():
    x = torch.rand(2, 3, 37, 53)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="replicate")
    before = padded.clone()
    reference = torch.nn.functional.avg_pool2d(padded, 3, 1)
    torch.testing.assert_close(unmixing._mean3_of_padded(padded), reference, rtol=0, atol=1e-6)
    assert torch.equal(padded, before)  # its sums are added in place into its own temporaries only


def _diffusion_step_by_step(x, known, start, iterations):
    """The smooth fill's diffusion written plainly, from ``start``: a padded copy and a new mean per step."""
    keep = known > 0
    filled = start
    for _ in range(iterations):
        filled = torch.where(keep, x, _box_mean3(filled))
    return filled


@pytest.mark.parametrize("shape", [(2, 3, 37, 53), (1, 4, 128, 128), (1, 1, 1, 9), (2, 2, 1, 1)])
def test_smooth_fill_diffusion_in_one_padded_array_gives_the_step_by_step_values(shape):
    """The fill diffuses inside one padded array (no new arrays per step): bit for bit the plain loop,
    started from the fill with no diffusion step (the pyramid's estimate, known pixels kept)."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(*shape, generator=g)
    known = (torch.rand(shape[0], 1, *shape[2:], generator=g) > 0.7).float()
    prior = torch.rand(*shape, generator=g)
    start = unmixing.smooth_fill(x, known, 0, prior)
    assert torch.equal(start[(known > 0).expand_as(x)], x[(known > 0).expand_as(x)])
    out = unmixing.smooth_fill(x, known, 7, prior)
    assert out.is_contiguous()
    assert torch.equal(out, _diffusion_step_by_step(x, known, start, 7))


def test_row_quantile_is_torch_quantile_bit_for_bit():
    g = torch.Generator().manual_seed(5)
    for n in (1, 2, 3, 16, 101, 4097):
        for ties in (False, True):
            v = torch.randn(4, n, generator=g)
            if ties:
                v = v.round(decimals=1)
            for q in (0.0, 0.03, 0.5, 0.97, 1.0):
                assert torch.equal(unmixing.row_quantile(v, q), torch.quantile(v, q, dim=1, keepdim=True)), (n, q)


@pytest.mark.parametrize("bands, extra, tile", [(4, 1, 64), (3, 2, 128), (6, 1, 64)])
def test_fill_residual_generator_shapes_and_clear_tiles(bands, extra, tile):
    g = networks.FillResidualGenerator(bands, extra, depth=5, base=8, max_channels=32).eval()
    x = torch.rand(2, bands + extra, tile, tile)
    x[:, bands] = 0  # no masked pixel
    with torch.no_grad():
        y = g(x)
    assert y.shape == (2, bands, tile, tile)
    with torch.no_grad():  # a zero residual returns the fill, i.e. the input where nothing is masked
        for p in g.core.final.parameters():
            p.zero_()
        assert torch.allclose(g(x), x[:, :bands])


@pytest.mark.parametrize("upsample", ["transpose", "resize"])
def test_untrained_fill_residual_generator_returns_the_fill(upsample):
    """The residual head starts at zero: training starts from the smooth-fill baseline."""
    g = networks.FillResidualGenerator(4, 1, depth=4, base=8, max_channels=32, upsample=upsample).eval()
    x = torch.rand(2, 5, 64, 64)
    x[:, 4] = (torch.rand(2, 64, 64) > 0.6).float()
    with torch.no_grad():
        np.testing.assert_array_equal(g(x).numpy(), unmixing.smooth_fill(x[:, :4], 1.0 - x[:, 4:5]).numpy())


@pytest.mark.parametrize("tile", [64, 96])
def test_resize_decoder_shapes_and_keys(tile):
    g = networks.UNetGenerator(5, 4, depth=5, base=8, max_channels=32, upsample="resize").eval()
    with torch.no_grad():
        assert g(torch.rand(1, 5, tile, tile)).shape == (1, 4, tile, tile)
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in g.modules())
    # the default stays the paper's transposed convolutions, so older model files keep loading
    t = networks.UNetGenerator(5, 4, depth=5, base=8, max_channels=32)
    assert sum(isinstance(m, torch.nn.ConvTranspose2d) for m in t.modules()) == 5
    with pytest.raises(ValueError):
        networks.UNetGenerator(5, 4, depth=5, upsample="pixelshuffle")


def test_registry_rebuilds_every_architecture():
    for name, hp in (("unet_generator", {"in_channels": 5, "out_channels": 4, "depth": 4, "base": 8}),
                     ("fill_residual_generator", {"bands": 4, "extra_channels": 1, "depth": 4, "base": 8}),
                     ("fill_residual_generator", {"bands": 4, "extra_channels": 1, "depth": 4, "base": 8,
                                                  "base_fill": "unmix", "head": "blend", "residual_scale": 0.0}),
                     ("guided_generator", {"radar": 2, "depth": 3, "base": 8}),
                     ("patch_discriminator", {"in_channels": 9, "base": 8}),
                     ("unet", {"in_channels": 2, "out_channels": 1})):
        assert isinstance(networks.build(name, hp), torch.nn.Module)


def _hazy_scene(seed=0, shadow=False):
    """A textured ground under a cloud whose opacity ramps from 0 at its edge to 1 in its core."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:96, 0:96].astype(np.float64)
    ground = np.stack([0.3 * np.sin(xx / 5.0 + k) * np.cos(yy / 7.0) + 0.1 * rng.standard_normal((96, 96)) - 0.2 * k
                       for k in range(4)])
    r = np.hypot(xx - 48, yy - 48)
    alpha = np.clip((30.0 - r) / 20.0, 0.0, 1.0)  # 0 beyond r = 30, 1 inside r = 10
    colour = np.array([-1.2, -1.5, -1.8, -1.0]) if shadow else np.array([1.8, 1.7, 1.9, 1.6])
    hazy = (1 - alpha) * ground + alpha * colour[:, None, None]
    mask = (alpha > 0).astype(np.float32)
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]  # noqa: E731
    return t(hazy), t(mask[None]), t(ground), alpha


@pytest.mark.parametrize("shadow", [False, True])
def test_unmix_fill_recovers_the_ground_under_thin_cloud_and_shadow(shadow):
    """Ground truth: a linear blend towards one colour is undone where the ground shows through."""
    x, mask, ground, alpha = _hazy_scene(shadow=shadow)
    fill = unmixing.smooth_fill(x * (1 - mask), 1 - mask)
    out = unmixing.unmix_fill(x, mask, fill)
    assert torch.equal(out[mask.expand_as(out) == 0], x[mask.expand_as(x) == 0])  # clear pixels untouched
    err = lambda img, sel: float((img - ground)[0][:, sel].abs().mean())  # noqa: E731
    thin = (alpha > 0) & (alpha < 0.3)
    # the texture under thin haze comes back, except its part along the haze colour, which one
    # colour cannot tell from a change of opacity (measured: 0.060 against 0.120 for the fill)
    assert err(out, thin) < 0.6 * err(fill, thin)
    core = alpha >= 0.98  # nothing shows through: the fill is kept (opacity is capped at 0.98)
    assert torch.allclose(out[0][:, core], fill[0][:, core], atol=0.05)
    assert err(out, alpha > 0) < err(fill, alpha > 0)


def test_unmix_fill_is_affine_invariant_and_skips_gaps():
    x, mask, _, _ = _hazy_scene(1)
    # keep every value in the linear part of the normalisation (|v| < 2) and every unmixed ground
    # inside the plausible range (|g| < 1), where the trust does not depend on the level
    x = x * 0.4
    fill = unmixing.smooth_fill(x * (1 - mask), 1 - mask)
    base = unmixing.unmix_fill(x, mask, fill)
    shift = torch.tensor([0.15, -0.1, 0.05, 0.0]).reshape(1, 4, 1, 1)
    shifted = unmixing.unmix_fill(x + shift, mask, fill + shift)
    assert torch.allclose(shifted, base + shift, atol=1e-5)  # blending is affine: offsets carry through
    gap = x.clone()
    gap[..., 40:50, 40:50] = 0.0  # nodata arrives as exact zeros in every band: the fill is used there
    out = unmixing.unmix_fill(gap, mask, fill)
    assert torch.allclose(out[..., 40:50, 40:50], fill[..., 40:50, 40:50])


def test_untrained_unmix_generator_returns_the_unmixed_fill():
    g = networks.FillResidualGenerator(4, 1, depth=4, base=8, max_channels=32, base_fill="unmix").eval()
    x, mask, _, _ = _hazy_scene(2)
    inp = torch.cat([x, mask], dim=1)[..., :64, :64]
    with torch.no_grad():
        fill = unmixing.smooth_fill(inp[:, :4], 1.0 - inp[:, 4:5])
        np.testing.assert_array_equal(g(inp).numpy(), unmixing.unmix_fill(inp[:, :4], inp[:, 4:5], fill).numpy())
    with pytest.raises(ValueError):
        networks.FillResidualGenerator(4, 1, base_fill="biharmonic")


def test_blend_head_starts_from_the_unmixed_fill_and_stays_between_ground_and_fill():
    """The blend head's last layer starts at zero: its weight is then 1 - opacity, i.e. unmix_fill."""
    g = networks.FillResidualGenerator(4, 1, depth=4, base=8, max_channels=32, base_fill="unmix", head="blend",
                                       residual_scale=0.0).eval()
    x, mask, _, _ = _hazy_scene(3)
    inp = torch.cat([x, mask], dim=1)[..., 16:80, 16:80]
    with torch.no_grad():
        fill = unmixing.smooth_fill(inp[:, :4], 1.0 - inp[:, 4:5])
        ref = unmixing.unmix_fill(inp[:, :4], inp[:, 4:5], fill)
        assert torch.allclose(g(inp), ref, atol=2e-3)
        # whatever the network says, a masked pixel lies between the unmixed ground and the fill,
        # and a clear pixel is the input (no residual)
        for p in g.core.final.parameters():
            p.normal_(0, 5.0)
        out = g(inp)
        ground, _, fl = unmixing.unmix_parts(inp[:, :4], inp[:, 4:5], fill)
        lo, hi = torch.minimum(ground, fl), torch.maximum(ground, fl)
        m = inp[:, 4:5].expand_as(out) > 0.5
        assert (out[m] >= lo[m] - 1e-5).all() and (out[m] <= hi[m] + 1e-5).all()
        assert torch.equal(out[~m], inp[:, :4][~m])
    with pytest.raises(ValueError):
        networks.FillResidualGenerator(4, 1, head="blend")  # needs the unmixed ground


def test_unmix_fill_treats_tinted_thick_cloud_as_opaque():
    """Real thick clouds are not one colour: their darker, tinted parts are no veil over the ground and
    must get the fill, not an 'unmixed' ground in garish colours far outside the clear range."""
    x, mask, _, alpha = _hazy_scene(4)
    tinted = torch.from_numpy(alpha >= 0.98)
    x[0][:, tinted] = torch.tensor([1.2, 1.5, 1.0, 1.6])[:, None] * (0.8 + 0.1 * torch.rand(1, int(tinted.sum())))
    fill = unmixing.smooth_fill(x * (1 - mask), 1 - mask)
    out = unmixing.unmix_fill(x, mask, fill)
    inside = mask[0, 0] > 0
    assert float(out[0][:, inside].abs().max()) <= unmixing.PLAUSIBLE_RANGE + unmixing.PLAUSIBLE_MARGIN
    assert float((out - fill)[0][:, tinted].abs().max()) < 0.1


def _guided_input(bands: int, radar: int, seed: int = 0) -> torch.Tensor:
    """``[bands, mask, base, base validity, radar]`` with a square cloud and a guide valid on its left half."""
    g = torch.Generator().manual_seed(seed)
    img, base = torch.rand(1, bands, 64, 64, generator=g), torch.rand(1, bands, 64, 64, generator=g)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    valid = torch.zeros(1, 1, 64, 64)
    valid[..., :, :32] = 1
    return torch.cat([img, mask, base * valid, valid, torch.rand(1, radar, 64, 64, generator=g)], dim=1)


@pytest.mark.parametrize("bands", [1, 3, 4])
def test_untrained_guided_generator_copies_the_valid_guide_and_fills_the_rest(bands):
    """The residual starts at zero: inside the mask the guide base where it is valid and the smooth fill where
    it is not; outside the mask the input itself. One set of weights serves any band count."""
    net = networks.build("guided_generator", {"radar": 2, "depth": 3, "base": 8}).eval()
    x = _guided_input(bands, 2)
    with torch.no_grad():
        y = net(x)
    img, mask, base, valid, _ = net.split(x)
    fill = unmixing.smooth_fill(img, 1.0 - mask)
    assert y.shape == img.shape
    assert torch.equal(y[..., :16, :], img[..., :16, :])  # clear rows untouched
    inside = mask.bool().expand_as(img)
    guided = inside & valid.bool().expand_as(img)
    assert torch.allclose(y[guided], base[guided])
    assert torch.allclose(y[inside & ~guided], fill[inside & ~guided], atol=1e-6)


def test_guided_generator_refuses_a_layout_that_does_not_fit_its_radar():
    net = networks.build("guided_generator", {"radar": 2, "depth": 3, "base": 8})
    with pytest.raises(ValueError, match="do not fit"):
        net(torch.zeros(1, 2 * 4 + 2 + 1, 64, 64))
