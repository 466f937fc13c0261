"""Descriptor training: model file round trip, brightness invariance, fine-tuning on a reference."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from cloudfree.models import registration as reg  # noqa: E402
from cloudfree.models.errors import InputError  # noqa: E402
from cloudfree.models.raster import raster_info, write_array  # noqa: E402
from cloudfree.models.weights import read_metadata  # noqa: E402


def test_train_save_load_and_describe(tmp_path, image):
    torch.set_num_threads(1)
    path = tmp_path / "desc.safetensors"
    net, meta = reg.train_descriptor([image], steps=3, batch_size=8, channels=(8, 8, 16, 16), dim=32,
                                     out_path=str(path))
    assert meta.task == reg.DESCRIPTOR_TASK and meta.architecture == reg.DESCRIPTOR_ARCHITECTURE
    assert read_metadata(str(path)).training["steps"] == 3
    loaded, _ = reg.load_descriptor(str(path))
    u8 = np.clip((image - image.min()) / np.ptp(image), 0, 1).astype(np.float32)
    xy = np.array([[100.0, 100.0], [300.0, 200.0], [256.0, 256.0]])
    d1 = reg.cnn_descriptors(net.eval(), u8, xy, np.full(3, 6.0), np.zeros(3))
    d2 = reg.cnn_descriptors(loaded, u8, xy, np.full(3, 6.0), np.zeros(3))
    assert d1.shape == (3, 32)
    assert np.allclose(np.linalg.norm(d1, axis=1), 1.0, atol=1e-5)
    assert np.allclose(d1, d2, atol=1e-5)
    # brightness/contrast invariance from per-patch standardisation
    d3 = reg.cnn_descriptors(loaded, u8 * 0.5 + 0.2, xy, np.full(3, 6.0), np.zeros(3))
    assert np.allclose(d1, d3, atol=1e-3)


def test_fine_tune_on_a_band_the_reference_lacks_is_an_input_error(tmp_path, image):
    """Was a GDAL RuntimeError ('Illegal band #') that reached QGIS as a traceback."""
    write_array(str(tmp_path / "ref.tif"), image.astype(np.uint16)[None])
    ref = raster_info(str(tmp_path / "ref.tif"))
    for band in (0, 2):
        with pytest.raises(InputError, match=f"band {band} does not exist"):
            reg.fine_tune_on_reference(ref, band, 1, str(tmp_path / "ft.safetensors"))
    assert not (tmp_path / "ft.safetensors").exists()
