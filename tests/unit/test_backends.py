"""The inference backends (models/backends.py, models/onnx_export.py): ONNX Runtime gives torch's outputs on real
tiles for every shipped network, falls back to torch when it cannot, and its cached export follows the weights."""

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from osgeo import gdal

from cloudfree.models import backends, networks, onnx_export
from cloudfree.models import cloud_removal as cr
from cloudfree.models.errors import DependencyError, InputError
from cloudfree.models.fusion.quality import quality_features
from cloudfree.models.raster import raster_info
from cloudfree.models.weights import load_model, shipped_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
torch.set_num_threads(1)

DATA = (Path(__file__).resolve().parents[3] / "shared" / "data").resolve()
TOLERANCE = 1e-4  # relative to max(1, largest |output|), as backends.TOLERANCE (1e-3) but tighter


def read(path, bands=None, window=(0, 0, 64, 64)) -> np.ndarray:
    """A window ``(x, y, width, height)`` of a real raster as float64 ``(bands, h, w)``, or skip without the data."""
    if not Path(path).is_file():
        pytest.skip(f"real data {path} is not there")
    ds = gdal.Open(str(path))
    x, y, w, h = window
    bands = bands or range(1, ds.RasterCount + 1)
    return np.stack([ds.GetRasterBand(b).ReadAsArray(x, y, w, h) for b in bands]).astype(np.float64)


def stretch(a: np.ndarray) -> np.ndarray:
    """Each band's 2nd..98th percentile to -0.8..0.8, as the network-space maps do."""
    lo, hi = np.percentile(a, [2, 98], axis=(-2, -1), keepdims=True)
    return (-0.8 + 1.6 * (a - lo) / np.maximum(hi - lo, 1e-9)).astype(np.float32)


def disk_mask(size: int, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (((yy - size / 2) ** 2 + (xx - size / 3) ** 2) < radius ** 2).astype(np.float32)[None]


def small_removal_input():
    """Two real 128 px tiles of the cloudy Sentinel-2 scene (blue, green, red, NIR) with their real cloud and
    shadow mask (values 4 and 0)."""
    tiles = []
    for x, y in ((0, 0), (256, 128)):
        img = read(DATA / "s2_cloudy_scene" / "scene.tif", [1, 2, 3, 4], (x, y, 128, 128))
        mask = np.isin(read(DATA / "s2_cloudy_scene" / "mask.tif", [1], (x, y, 128, 128)), [0, 4])
        tiles.append(np.concatenate([stretch(img), mask.astype(np.float32)]))
    return (torch.from_numpy(np.stack(tiles)),), 128


def guided_optical_input():
    """A clear Sentinel-2 date (red, NIR, SWIR1) with a round cloud, guided by another clear date of the place."""
    folder = DATA / "s2_multidate_stack"
    target, base = (stretch(read(folder / f"s2_{d}.tif", [4, 8, 12])) for d in ("20150830", "20150711"))
    x = np.concatenate([target, disk_mask(64, 20), base, np.ones((1, 64, 64), np.float32)])
    return (torch.from_numpy(x[None]),), 64


def guided_radar_input():
    """A BigEarthNet Sentinel-2 patch (blue, green, red, NIR) with a round cloud and its Sentinel-1 VV, VH (dB)."""
    folder = DATA / "s1_s2_pairs"
    img = stretch(read(folder / "ben1_s2_bgrn.tif"))
    radar = ((read(folder / "ben1_s1_vvvh.tif") + 15.0) / 7.0).astype(np.float32)
    x = np.concatenate([img, disk_mask(64, 24), np.zeros_like(img), np.zeros((1, 64, 64), np.float32), radar])
    return (torch.from_numpy(x[None]),), 64


def residual_input():
    """Two real 128 px tiles of a SEN12MS-CR triplet (L1C B2/B3/B4/B8 in the model's fixed scaling), its real
    s2cloudless mask, its Sentinel-1 VV/VH (dB) and radar validity 1."""
    from cloudfree.models.cloud_removal.guided import radar_channels
    from cloudfree.models.normalization import FixedScaling

    folder = DATA / "sen12mscr_triplets"
    scaling = FixedScaling.preset("sentinel2_l1c", 4)
    tiles = []
    for x, y in ((0, 0), (128, 128)):
        img = scaling.to_network(read(folder / "4287_s2_cloudy.tif", [2, 3, 4, 8], (x, y, 128, 128))).astype(np.float32)
        mask = (read(folder / "4287_mask.tif", [1], (x, y, 128, 128)) > 0).astype(np.float32)
        radar = radar_channels(read(folder / "4287_s1.tif", None, (x, y, 128, 128)), 2, (128, 128))
        tiles.append(np.concatenate([img, mask, *radar]))
    return (torch.from_numpy(np.stack(tiles)),), 128


def ndvi_dates(count: int = 4) -> np.ndarray:
    files = sorted((DATA / "s2_ndvi_timeseries" / "ndvi").glob("ndvi_*.tif"))[20:20 + count]
    if len(files) < count:
        pytest.skip("the real NDVI series is not there")
    return np.stack([read(f) for f in files])  # (K, 1, 64, 64)


def fusion_input():
    """The quality net's input for real NDVI dates: each date's value and its deviation from the median."""
    xn = torch.from_numpy(stretch(ndvi_dates()))
    feats = quality_features(xn, torch.ones(xn.shape[0], 64, 64, dtype=torch.bool))
    return (feats.reshape(-1, 2, 64, 64),), 64


def segmentation_input():
    return (torch.from_numpy(stretch(ndvi_dates(2))),), 64


def descriptor_input():
    """Four 64 x 64 patches of the real Sentinel-2 registration reference, each standardised."""
    patches = [read(DATA / "s2_registration_pair" / "reference_20160608.tif", [1], (x, 900, 64, 64))
               for x in (600, 800, 1000, 1200)]
    p = np.stack(patches)
    return (torch.from_numpy(((p - p.mean((2, 3), keepdims=True)) / (p.std((2, 3), keepdims=True) + 1e-6))
                             .astype(np.float32)),), 64


SHIPPED = {
    "cloud_removal_small.safetensors": small_removal_input,
    "cloud_removal_s2_s1.safetensors": residual_input,
    "cloud_removal_guided_optical.safetensors": guided_optical_input,
    "cloud_removal_guided_radar.safetensors": guided_radar_input,
    "fusion_default.safetensors": fusion_input,
    "fusion_default.segmentation.safetensors": segmentation_input,
    "registration_descriptor.safetensors": descriptor_input,
}


def test_every_shipped_network_is_covered():
    shipped = {p.name for p in Path(shipped_model("x")).parent.glob("*.safetensors")}
    assert shipped == set(SHIPPED)


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_onnx_runtime_and_torch_give_the_same_output_on_real_tiles(name, tmp_path):
    network, _ = load_model(shipped_model(name))
    inputs, tile = SHIPPED[name]()
    with torch.inference_mode():
        want = network(*inputs)
    onnx = backends.prepare(network, "cpu", "onnxruntime", tile=tile, cache=str(tmp_path))
    fast_torch = backends.prepare(network, "cpu", "torch", tile=tile)
    assert onnx.backend == "onnxruntime" and fast_torch.backend == "torch"
    assert "onnxruntime" in onnx.detail and "max |difference|" in onnx.detail
    scale = max(1.0, float(want.abs().max()))
    for runner in (onnx, fast_torch):
        got = runner(*inputs)
        assert got.shape == want.shape
        assert float((got - want).abs().max()) <= TOLERANCE * scale, runner.detail


def four_times(f):
    """``f`` doing its work four times over: the same outputs, clearly slower."""
    def slower(*args):
        for _ in range(3):
            f(*args)
        return f(*args)
    return slower


def make_faster(engine: str, monkeypatch) -> None:
    """Slow the other engine down four times, so that ``auto`` measures ``engine`` as the faster."""
    if engine == "torch":
        monkeypatch.setattr(backends, "ort_forward", lambda s, d, real=backends.ort_forward: four_times(real(s, d)))
    else:
        monkeypatch.setattr(networks, "inference_form", lambda m, real=networks.inference_form: four_times(real(m)))


@pytest.mark.parametrize("faster", ["torch", "onnxruntime"])
def test_auto_takes_the_engine_measured_faster(faster, tmp_path, monkeypatch):
    make_faster(faster, monkeypatch)
    network, _ = load_model(shipped_model("fusion_default.safetensors"))
    runner = backends.prepare(network, "cpu", "auto", tile=32, batch=4, cache=str(tmp_path))
    assert runner.backend == faster and "the faster on 4 tiles" in runner.detail


@pytest.mark.parametrize("faster", ["torch", "onnxruntime"])
def test_auto_remembers_its_measurement_for_the_same_situation(faster, tmp_path, monkeypatch):
    """The first run times both engines; a later run with the same network, tile and batch takes the
    remembered engine without timing (an ONNX Runtime pick still verified); another tile times again."""
    make_faster(faster, monkeypatch)
    network, _ = load_model(shipped_model("fusion_default.safetensors"))
    first = backends.prepare(network, "cpu", "auto", tile=32, batch=4, cache=str(tmp_path))
    assert first.backend == faster and "remembered" not in first.detail
    timings = []
    real_faster = backends.faster
    monkeypatch.setattr(backends, "faster", lambda *a: timings.append(1) or real_faster(*a))
    again = backends.prepare(network, "cpu", "auto", tile=32, batch=4, cache=str(tmp_path))
    assert again.backend == faster and "remembered" in again.detail and not timings
    if faster == "onnxruntime":
        assert "max |difference| to torch" in again.detail  # verified on this run too
    backends.prepare(network, "cpu", "auto", tile=64, batch=4, cache=str(tmp_path))
    assert timings == [1]


def test_a_damaged_remembered_choice_is_measured_again(tmp_path):
    network, _ = load_model(shipped_model("fusion_default.safetensors"))
    backends.prepare(network, "cpu", "auto", tile=32, batch=2, cache=str(tmp_path))
    (choice,) = tmp_path.glob("choice-*.json")
    choice.write_text("{not json")
    runner = backends.prepare(network, "cpu", "auto", tile=32, batch=2, cache=str(tmp_path))
    assert "the faster on 2 tiles" in runner.detail and json.loads(choice.read_text())["backend"] == runner.backend


def test_a_network_the_exporter_cannot_handle_falls_back_to_torch_with_a_log_line(tmp_path, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::expm1' to ONNX opset version 17 is not supported")

    monkeypatch.setattr(onnx_export, "export", refuse)
    network = networks.build("unet", {"in_channels": 2, "out_channels": 1, "encoder": [4, 8], "decoder": [4],
                                      "norm": "batch"}).eval()
    x = torch.randn(1, 2, 32, 32)
    with caplog.at_level(logging.INFO, logger="cloudfree"):
        runner = backends.prepare(network, "cpu", "auto", tile=32, cache=str(tmp_path))
    assert runner.backend == "torch" and "aten::expm1" in runner.detail
    assert any("running it with torch" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    with torch.inference_mode():
        assert torch.allclose(runner(x), network(x), atol=1e-5)


def test_an_export_that_differs_from_torch_is_refused(tmp_path, monkeypatch, caplog):
    real = backends.ort_forward
    monkeypatch.setattr(backends, "ort_forward", lambda session, device: (lambda x: real(session, device)(x) + 0.1))
    network = networks.build("unet", {"in_channels": 1, "out_channels": 2, "encoder": [4, 8], "decoder": [4],
                                      "norm": "none"}).eval()
    with caplog.at_level(logging.WARNING, logger="cloudfree"):
        runner = backends.prepare(network, "cpu", "onnxruntime", tile=32, cache=str(tmp_path))
    assert runner.backend == "torch" and "differs from torch's by up to 0.1" in runner.detail
    assert any("differs" in r.getMessage() for r in caplog.records)


def test_the_exported_file_is_rebuilt_when_the_weights_change(tmp_path):
    network = networks.build("unet", {"in_channels": 1, "out_channels": 1, "encoder": [4, 8], "decoder": [4],
                                      "norm": "none"}).eval()
    example = torch.randn(1, 1, 32, 32)
    first, fresh = onnx_export.exported_file(network, example, str(tmp_path))
    assert fresh and Path(first).parent == tmp_path
    assert onnx_export.exported_file(network, example, str(tmp_path)) == (first, False)  # cached
    with torch.no_grad():
        network.head.bias += 1.0
    second, fresh = onnx_export.exported_file(network, example, str(tmp_path))
    assert fresh and second != first and Path(first).is_file() and Path(second).is_file()
    runner = backends.prepare(network, "cpu", "onnxruntime", tile=32, cache=str(tmp_path))
    with torch.inference_mode():
        assert torch.allclose(runner(example), network(example), atol=1e-5)  # the new weights run


def test_the_cache_folder_is_the_users_or_the_environments_and_keeps_the_latest_files(tmp_path, monkeypatch):
    monkeypatch.setenv(onnx_export.CACHE_ENV, str(tmp_path / "onnx"))
    assert onnx_export.cache_folder() == str(tmp_path / "onnx")
    monkeypatch.delenv(onnx_export.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert onnx_export.cache_folder() == str(tmp_path / "xdg" / "cloudfree" / "onnx")
    for i in range(5):
        (tmp_path / f"net-{i}.onnx").write_bytes(b"x")
    onnx_export.prune(str(tmp_path), keep=3)
    assert len(list(tmp_path.glob("*.onnx"))) == 3


def test_without_onnx_runtime_auto_uses_torch_and_onnxruntime_says_how_to_install(monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else find_spec(n, *a))
    network = networks.build("unet", {"in_channels": 1, "out_channels": 1, "encoder": [4], "decoder": [],
                                      "norm": "none"})
    assert backends.prepare(network, "cpu", "auto", tile=16).backend == "torch"
    with pytest.raises(DependencyError, match="pip install"):
        backends.prepare(network, "cpu", "onnxruntime", tile=16)
    with pytest.raises(InputError, match="Unknown inference backend 'tensorrt'"):
        backends.prepare(network, "cpu", "tensorrt", tile=16)


def test_a_runner_pickles_as_its_recipe_for_scaled_out_runs(tmp_path):
    network, _ = load_model(shipped_model("cloud_removal_guided_optical.safetensors"))
    (x,), tile = guided_optical_input()
    runner = backends.prepare(network, "cpu", "auto", tile=tile, cache=str(tmp_path))
    again = pickle.loads(pickle.dumps(runner))
    assert again.backend == runner.backend and again.recipe[2] == runner.backend  # the engine chosen, not auto
    assert torch.equal(again(x), runner(x))


def test_removeclouds_outputs_match_with_both_backends(tmp_path):
    """The shipped model over a real 300 x 260 crop of the cloudy scene with its real mask, tiles of 128 px."""
    src, mask = tmp_path / "scene.tif", tmp_path / "mask.tif"
    if not (DATA / "s2_cloudy_scene" / "scene.tif").is_file():
        pytest.skip("the real cloudy scene is not there")
    gdal.Translate(str(src), str(DATA / "s2_cloudy_scene" / "scene.tif"), bandList=[1, 2, 3, 4],
                   srcWin=[100, 120, 300, 260])
    gdal.Translate(str(mask), str(DATA / "s2_cloudy_scene" / "mask.tif"), srcWin=[100, 120, 300, 260])
    outputs = {}
    for backend in ("torch", "onnxruntime"):
        out = tmp_path / f"{backend}.tif"
        summary = cr.remove_clouds(raster_info(str(src)), str(out), shipped_model("cloud_removal_small.safetensors"),
                                   mask=raster_info(str(mask)), mask_values=(0, 4),
                                   options=cr.RemovalOptions(device="cpu", backend=backend))
        assert summary["backend"].startswith(backend)
        outputs[backend] = gdal.Open(str(out)).ReadAsArray()
    a, b = outputs["torch"], outputs["onnxruntime"]
    masked = np.isin(gdal.Open(str(mask)).ReadAsArray(), [0, 4])
    assert 0.05 < masked.mean() < 0.95
    assert np.array_equal(a[:, ~masked], b[:, ~masked])  # clear pixels: copied bit for bit by both
    assert np.abs(a - b).max() <= 1e-4 * np.abs(a).max()
