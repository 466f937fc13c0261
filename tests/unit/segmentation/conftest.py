"""Fixtures of the segmentation tests: a few real NDVI dates stacked as bands, with the real land-cover labels."""

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

from cloudfree.models import segmentation as sg  # noqa: E402
from cloudfree.models.raster import raster_info  # noqa: E402

torch.set_num_threads(1)

# six real summer dates of 2016 (June to August), stacked as six bands
DATES = ["20160605T100650", "20160615T100608", "20160625T100617", "20160725T100602", "20160804T100613",
         "20160814T100604"]
TINY = dict(tile=48, steps_per_epoch=8, batch_size=8, depth=2, width=8, device="cpu")


@pytest.fixture(scope="session")
def ndvi_dir(shared_data):
    return shared_data / "s2_ndvi_timeseries"


@pytest.fixture(scope="session")
def ndvi_stack(ndvi_dir):
    return [raster_info(str(ndvi_dir / "ndvi" / f"ndvi_{t}.tif")) for t in DATES]


@pytest.fixture(scope="session")
def landcover(ndvi_dir):
    return raster_info(str(ndvi_dir / "landcover.tif"))


@pytest.fixture(scope="session")
def trained(ndvi_stack, landcover, tmp_path_factory):
    """A tiny U-Net after a short training run on the real series (the validation block untouched)."""
    path = tmp_path_factory.mktemp("segmentation") / "tiny.safetensors"
    cfg = sg.SegmentationTrainConfig(ndvi_stack, sg.LabelSource(raster=landcover, ignore_value=0), epochs=12,
                                     seed=1, **TINY)
    return sg.train_segmentation(cfg, str(path)), str(path)
