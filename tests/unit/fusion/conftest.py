"""Fixtures of the fusion tests: the real Sentinel-2 NDVI series and a tiny quality network trained on it.

A tiny quality network (widths 8, 16, 32) trained for a few dozen self-supervised steps keeps
the tests well under a minute on one CPU thread.
"""

import glob
import os

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from cloudfree.models import fusion as fu  # noqa: E402

torch.set_num_threads(1)

TINY = dict(encoder=[8, 16, 32], decoder=[16, 8])
TINY_SEGMENTATION = dict(seg_encoder=[8, 16], seg_decoder=[8])


@pytest.fixture(scope="session")
def series_dir(shared_data):
    return shared_data / "s2_ndvi_timeseries"


@pytest.fixture(scope="session")
def series(series_dir):
    """``(dates, masks)``: the 68 NDVI dates and their cloud masks, in date order."""
    dates = sorted(glob.glob(str(series_dir / "ndvi" / "ndvi_*.tif")))
    masks = [str(series_dir / "cloud_mask" / ("clm_" + os.path.basename(p)[5:])) for p in dates]
    return dates, masks


@pytest.fixture(scope="session")
def trained(series_dir, tmp_path_factory):
    """A tiny quality net after 40 self-supervised steps on the NDVI series (held-out rows untouched)."""
    out = tmp_path_factory.mktemp("fusion") / "tiny.safetensors"
    cfg = fu.ndvi_series_config(str(series_dir), mode="self", steps=40, tile=32, batch_size=4, lr=3e-3,
                                val_every=40, k_min=3, k_max=5, seed=1, **TINY)
    res = fu.train_fusion(cfg, str(out))
    return res, str(out)


@pytest.fixture()
def tiny_model():
    """An untrained tiny quality network with seeded weights."""

    def make(seed=0):
        torch.manual_seed(seed)
        return fu.FusionModel(net=fu.build_quality_net(**TINY).eval())

    return make


@pytest.fixture()
def tiny():
    """Keyword arguments of a training configuration with tiny networks."""
    return dict(TINY, **TINY_SEGMENTATION)
