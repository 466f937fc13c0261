"""Fixtures of the cloud-removal tests: the real Sentinel-2 scene as a training source and a tiny
model trained on it.

Tiny networks (4 levels, 8 filters, 64 px tiles) keep the tests well under a minute on CPU.
"""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from cloudfree.models import cloud_removal as cr  # noqa: E402

torch.set_num_threads(1)

TINY = dict(depth=4, base=8, tile=64, disc_layers=2, batch_size=4, device="cpu", lr=1e-3, lr_decay_start=1.0)


@pytest.fixture(scope="session")
def scene_source(shared_data):
    """``scene_source(**fields)``: the s2_cloudy_scene clear pixels (mask values 1-3) as a training source."""
    def make(**kw):
        d = shared_data / "s2_cloudy_scene"
        return cr.TrainingSource(clear=str(d / "scene.tif"), bands=[1, 2, 3, 4], mask=str(d / "mask.tif"),
                                 clear_values=(1, 2, 3), name="s2_cloudy_scene", **kw)
    return make


@pytest.fixture(scope="session")
def tiny_config(scene_source):
    """``tiny_config(**settings)``: a TrainConfig of a tiny network on the scene source."""
    def make(**kw):
        return cr.TrainConfig(sources=[scene_source()], **{**TINY, **kw})
    return make


@pytest.fixture(scope="session")
def trained(tiny_config, tmp_path_factory):
    """One tiny model trained for 40 steps with synthetic clouds on the clear parts of the scene."""
    folder = tmp_path_factory.mktemp("cloud_removal")
    cfg = tiny_config(steps=40, val_every=20, checkpoint_every=20, band_names=["blue", "green", "red", "nir"])
    lines = []
    calls = []
    result = cr.train_cloud_removal(cfg, str(folder / "model.safetensors"), checkpoint_dir=str(folder / "ckpt"),
                                    log=lines.append, progress=lambda f, m=None: calls.append((f, m)))
    return result, folder, lines, calls
