"""CNN patch descriptor: patch sampling, training, model file round trip, sift_cnn registration."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
from osgeo import gdal  # noqa: E402

from cloudfree.models import descriptors  # noqa: E402
from cloudfree.models.errors import ModelFileError  # noqa: E402
from cloudfree.models.weights import read_metadata  # noqa: E402


@pytest.fixture(scope="module")
def image(shared_data):
    ds = gdal.Open(str(shared_data / "s2_registration_pair" / "reference_20160608.tif"))
    return ds.ReadAsArray(900, 1200, 512, 512).astype(np.float32)


def test_patches_follow_rotation_and_scale(image):
    """A patch oriented with the keypoint is the same after rotating/scaling the image."""
    img = (image - image.mean()) / image.std()
    c = np.array([255.5, 255.5])
    for angle, scale in ((30.0, 1.0), (120.0, 1.0), (0.0, 1.5)):
        m = cv2.getRotationMatrix2D(tuple(c), -angle, scale)  # OpenCV's angle is anticlockwise on screen
        rot = cv2.warpAffine(img, m, (512, 512), flags=cv2.INTER_CUBIC)
        p = np.array([[240.0, 270.0]])
        q = p @ m[:, :2].T + m[:, 2]
        a = descriptors.extract_patches(img, p, np.array([8.0]), np.array([10.0]))[0]
        b = descriptors.extract_patches(rot, q, np.array([8.0 * scale]), np.array([10.0 + angle]))[0]
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97


def test_train_save_load_and_describe(tmp_path, image):
    torch.set_num_threads(1)
    path = tmp_path / "desc.safetensors"
    net, meta = descriptors.train_descriptor([image], steps=3, batch_size=8, channels=(8, 8, 16, 16), dim=32,
                                             out_path=str(path))
    assert meta.task == descriptors.TASK and meta.architecture == descriptors.ARCHITECTURE
    assert read_metadata(str(path)).training["steps"] == 3
    loaded, _ = descriptors.load_descriptor(str(path))
    u8 = np.clip((image - image.min()) / np.ptp(image), 0, 1).astype(np.float32)
    xy = np.array([[100.0, 100.0], [300.0, 200.0], [256.0, 256.0]])
    d1 = descriptors.cnn_descriptors(net.eval(), u8, xy, np.full(3, 6.0), np.zeros(3))
    d2 = descriptors.cnn_descriptors(loaded, u8, xy, np.full(3, 6.0), np.zeros(3))
    assert d1.shape == (3, 32)
    assert np.allclose(np.linalg.norm(d1, axis=1), 1.0, atol=1e-5)
    assert np.allclose(d1, d2, atol=1e-5)
    # brightness/contrast invariance from per-patch standardisation
    d3 = descriptors.cnn_descriptors(loaded, u8 * 0.5 + 0.2, xy, np.full(3, 6.0), np.zeros(3))
    assert np.allclose(d1, d3, atol=1e-3)


def test_missing_or_wrong_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        descriptors.load_descriptor(str(tmp_path / "none.safetensors"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        descriptors.load_descriptor(str(bad))


def test_sift_cnn_registration_recovers_shift(tmp_path, shared_data, image):
    """The fused SIFT + CNN distance registers a known sub-pixel shift (tiny, briefly trained CNN)."""
    from cloudfree.models import registration as reg
    from cloudfree.models.raster import raster_info, write_array

    torch.set_num_threads(1)
    path = tmp_path / "desc.safetensors"
    descriptors.train_descriptor([image], steps=2, batch_size=8, channels=(8, 8, 16, 16), dim=32,
                                 out_path=str(path))
    ds = gdal.Open(str(shared_data / "s2_registration_pair" / "reference_20160608.tif"))
    gt, wkt = ds.GetGeoTransform(), ds.GetProjection()
    full = ds.ReadAsArray(700, 1000, 912, 912).astype(np.float32)
    ref = full[200:712, 200:712]
    m = np.array([[1.0, 0.0, 2.3 - 200.0], [0.0, 1.0, -1.7 - 200.0]])  # sensed = ref shifted by (2.3, -1.7)
    sen = cv2.warpAffine(full, m, (512, 512), flags=cv2.INTER_CUBIC)
    g = (gt[0] + 900 * gt[1], gt[1], 0.0, gt[3] + 1200 * gt[5], 0.0, gt[5])
    write_array(str(tmp_path / "r.tif"), ref.astype(np.uint16)[None], geotransform=g, crs_wkt=wkt)
    write_array(str(tmp_path / "s.tif"), np.clip(sen, 1, None).astype(np.uint16)[None], geotransform=g, crs_wkt=wkt)
    r = reg.register(raster_info(str(tmp_path / "r.tif")), raster_info(str(tmp_path / "s.tif")), None,
                     method="sift_cnn", cnn_weights_path=str(path), transform="similarity",
                     max_keypoints=1000)
    assert r.method == "sift_cnn"
    assert abs(r.shift_x - 2.3) < 0.1 and abs(r.shift_y + 1.7) < 0.1
    assert abs(r.rotation) < 0.1 and not math.isnan(r.rms_loo)
