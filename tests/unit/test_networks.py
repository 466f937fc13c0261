"""Shared networks: shapes, the smooth fill and the fill-residual generator."""

import numpy as np
import pytest
import torch

from cloudfree.models import networks


def test_smooth_fill_keeps_known_pixels_and_interpolates_holes():
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    plane = (0.02 * xx + 0.01 * yy)[None, None]
    known = torch.ones_like(plane)
    known[..., 20:40, 10:50] = 0
    filled = networks.smooth_fill(plane * known, known)
    assert torch.equal(filled[known > 0], plane[known > 0])
    # a plane is harmonic: the membrane fill must recover it closely
    assert (filled - plane).abs().max() < 0.05 * float(plane.max())


def test_smooth_fill_of_odd_sizes_and_empty_masks():
    x = torch.rand(2, 3, 37, 53)
    assert torch.equal(networks.smooth_fill(x, torch.ones(2, 1, 37, 53)), x)
    known = torch.zeros(2, 1, 37, 53)
    known[:, :, 0, 0] = 1
    out = networks.smooth_fill(x, known)
    assert out.shape == x.shape and torch.isfinite(out).all()


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
        np.testing.assert_array_equal(g(x).numpy(), networks.smooth_fill(x[:, :4], 1.0 - x[:, 4:5]).numpy())


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
                     ("patch_discriminator", {"in_channels": 9, "base": 8}),
                     ("unet", {"in_channels": 2, "out_channels": 1})):
        assert isinstance(networks.build(name, hp), torch.nn.Module)
