"""The residual generator trained on real triplets (``cloud_removal.residual``, ``cloud_removal.triplets``):
an untrained model is its start exactly, its output does not depend on the tile size, radar may be left
out, and a triplet folder with a file missing or off the grid is refused by name."""

import numpy as np
import pytest
import torch
from osgeo import gdal

from cloudfree.models.cloud_removal import residual
from cloudfree.models.cloud_removal.infer import RemovalOptions, remove_clouds
from cloudfree.models.cloud_removal.triplets import Triplet, folds, read_triplets, triplet_ids
from cloudfree.models.errors import InputError
from cloudfree.models.networks import ResidualGenerator
from cloudfree.models.raster import raster_info, write_array


def _scene(size=128, bands=4, seed=0):
    """A smooth 'ground' in L1C units (reflectance x 1e4), a bright cloud blob and its mask, radar in dB."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    ground = np.stack([800 + 600 * np.sin(6 * xx + k) * np.cos(4 * yy) + 40 * rng.standard_normal((size, size))
                       for k in range(bands)]).astype(np.float32) + 1500
    mask = (xx - 0.5) ** 2 + (yy - 0.4) ** 2 < 0.06
    cloudy = np.where(mask[None], 6000.0, ground).astype(np.float32)
    radar = np.stack([-12 + 3 * np.sin(5 * xx), -19 + 2 * np.cos(5 * yy)]).astype(np.float32)
    return cloudy, ground, mask, radar


def _perturb(net: ResidualGenerator, seed=1) -> ResidualGenerator:
    torch.manual_seed(seed)
    with torch.no_grad():
        net.core.head.weight.normal_(0.0, 0.05)
    return net.eval()


def _trained_file(tmp_path, start="input", radar=2, perturbed=True) -> str:
    cloudy, ground, mask, sar = _scene()
    t = Triplet("a", cloudy, ground, sar if radar else None, mask)
    cfg = residual.ResidualConfig(steps=1, batch_size=1, crop=64, depth=3, base=8, max_channels=16, start=start)
    res = residual.train_residual([t], cfg)
    if perturbed:
        _perturb(res.network)
    else:
        with torch.no_grad():
            res.network.core.head.weight.zero_()
            res.network.core.head.bias.zero_()
    path = str(tmp_path / f"residual_{start}_{radar}.safetensors")
    residual.save_residual_model(path, res, ["B2", "B3", "B4", "B8"], training={"source": "test scene"})
    return path


def test_untrained_input_start_returns_the_input_exactly():
    net = ResidualGenerator(4, radar=2, depth=3, base=8, max_channels=16).eval()
    x = torch.randn(2, 4 + 2 + 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), x[:, :4])


def test_untrained_fill_start_returns_the_fill_and_keeps_clear_pixels():
    cloudy, _, mask, _ = _scene(64)
    net = ResidualGenerator(4, radar=0, depth=3, base=8, max_channels=16, start="fill").eval()
    out = residual.predict(net, cloudy, None, mask)
    assert np.allclose(out[:, ~mask], cloudy[:, ~mask], atol=0.01)  # (the scaling's float round trip)
    assert np.all(np.isfinite(out)) and np.abs(out[:, mask] - 6000).min() > 1000  # the cloud was filled
    # the untrained output is the start: the same with a perturbed head only through the masked pixels
    other = residual.predict(_perturb(net), cloudy, None, mask)
    assert np.allclose(other[:, ~mask], cloudy[:, ~mask], atol=0.01) and not np.allclose(other, out)


def test_output_does_not_depend_on_the_tile_size(tmp_path):
    path = _trained_file(tmp_path)
    big = np.concatenate([np.concatenate([_scene(128, seed=s)[0] for s in (r, r + 1)], axis=2)
                          for r in (0, 2)], axis=1)
    big = np.concatenate([np.concatenate([big, big[:, :, ::-1]], axis=2)] * 2, axis=1)  # 512 x 512
    src = write_array(str(tmp_path / "big.tif"), big)
    outs = []
    for tile in (128, 256):
        out = str(tmp_path / f"out_{tile}.tif")
        remove_clouds(raster_info(src), out, path, options=RemovalOptions(tile=tile, overlap=32))
        outs.append(gdal.Open(out).ReadAsArray().astype(np.float32))
    assert outs[0].shape == big.shape
    assert not np.allclose(outs[0], big)  # the correction is not zero
    assert np.abs(outs[0] - outs[1]).max() < 1.0  # within float rounding, in units of 1e-4 reflectance
    # no tile border: the output's gradient is not larger on the 128 px grid lines than elsewhere
    grad = np.abs(np.diff(outs[0] - big, axis=2)).mean(axis=(0, 1))
    on_grid = grad[127::128][:3]
    assert on_grid.max() < 3 * np.median(grad) + 1e-3


def test_radar_model_runs_without_radar(tmp_path):
    path = _trained_file(tmp_path, radar=2)
    cloudy, _, _, _ = _scene()
    src = write_array(str(tmp_path / "cloudy.tif"), cloudy)
    out = str(tmp_path / "out.tif")
    remove_clouds(raster_info(src), out, path)
    y = gdal.Open(out).ReadAsArray()
    assert y.shape == cloudy.shape and np.all(np.isfinite(y))
    net = residual.predict  # the same network with and without radar gives different pixels
    from cloudfree.models.weights import load_model
    module, _ = load_model(path)
    _, _, _, sar = _scene()
    assert not np.allclose(net(module, cloudy, sar), net(module, cloudy, None))


def test_untrained_model_file_is_the_identity_through_remove_clouds(tmp_path):
    path = _trained_file(tmp_path, radar=0, perturbed=False)
    cloudy, _, _, _ = _scene()
    src = write_array(str(tmp_path / "cloudy.tif"), cloudy)
    out = str(tmp_path / "out.tif")
    remove_clouds(raster_info(src), out, path)
    assert np.abs(gdal.Open(out).ReadAsArray() - cloudy).max() <= 1.0


def _write_triplet(folder, tid, size=64, radar=True, clear_size=None):
    cloudy, ground, mask, sar = _scene(size)
    write_array(str(folder / f"{tid}_s2_cloudy.tif"), cloudy)
    cs = clear_size or size
    write_array(str(folder / f"{tid}_s2_clear.tif"), ground[:, :cs, :cs])
    write_array(str(folder / f"{tid}_mask.tif"), mask.astype(np.uint8))
    if radar:
        write_array(str(folder / f"{tid}_s1.tif"), sar)


def test_triplet_folder_is_read_and_checked(tmp_path):
    _write_triplet(tmp_path, "t1")
    _write_triplet(tmp_path, "t2")
    assert triplet_ids(str(tmp_path)) == ["t1", "t2"]
    ts = read_triplets(str(tmp_path), [1, 2, 3, 4])
    assert ts[0].radar.shape == (2, 64, 64) and ts[0].mask.dtype == bool


def test_triplet_without_radar_is_refused_by_name(tmp_path):
    _write_triplet(tmp_path, "t1")
    _write_triplet(tmp_path, "t9", radar=False)
    with pytest.raises(InputError, match=r"'t9'.*radar.*t9_s1\.tif"):
        read_triplets(str(tmp_path), [1, 2, 3, 4])
    assert len(read_triplets(str(tmp_path), [1, 2, 3, 4], radar=False)) == 2


def test_triplet_on_another_grid_is_refused_by_name(tmp_path):
    _write_triplet(tmp_path, "t3", clear_size=48)
    with pytest.raises(InputError, match=r"'t3'.*t3_s2_clear\.tif.*48 x 48"):
        read_triplets(str(tmp_path), [1, 2, 3, 4])


def test_folds_hold_out_whole_triplets_once():
    ids = [f"id{i}" for i in range(10)]
    groups = folds(ids, 4, seed=3)
    assert sorted(sum(groups, [])) == ids
    assert all(set(a).isdisjoint(b) for i, a in enumerate(groups) for b in groups[i + 1:])
    with pytest.raises(InputError):
        folds(ids, 11)


def test_carl_pulls_clear_pixels_to_the_input():
    cloudy = torch.zeros(1, 1, 4, 4)
    clear = torch.ones(1, 1, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    # with no cloud and no global term, predicting the input costs nothing
    assert float(residual.carl_loss(cloudy, cloudy, clear, mask, 0.0)) == 0.0
    mask[..., :2, :] = 1
    assert float(residual.carl_loss(cloudy, cloudy, clear, mask, 0.0)) == pytest.approx(0.5)
