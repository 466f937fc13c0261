"""CNN patch descriptor: patch sampling and loading descriptor model files."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from cloudfree.models import networks, registration as reg  # noqa: E402
from cloudfree.models.errors import ModelFileError  # noqa: E402


def test_patches_follow_rotation_and_scale(image):
    """A patch oriented with the keypoint is the same after rotating/scaling the image."""
    img = (image - image.mean()) / image.std()
    c = np.array([255.5, 255.5])
    for angle, scale in ((30.0, 1.0), (120.0, 1.0), (0.0, 1.5)):
        m = cv2.getRotationMatrix2D(tuple(c), -angle, scale)  # OpenCV's angle is anticlockwise on screen
        rot = cv2.warpAffine(img, m, (512, 512), flags=cv2.INTER_CUBIC)
        p = np.array([[240.0, 270.0]])
        q = p @ m[:, :2].T + m[:, 2]
        a = reg.extract_patches(img, p, np.array([8.0]), np.array([10.0]))[0]
        b = reg.extract_patches(rot, q, np.array([8.0 * scale]), np.array([10.0 + angle]))[0]
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97


def test_missing_or_wrong_model_file(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        reg.load_descriptor(str(tmp_path / "none.safetensors"))
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelFileError):
        reg.load_descriptor(str(bad))


def test_shipped_descriptor_loads_through_the_one_registry():
    """The shipped file names the architecture registered in networks and loads unchanged."""
    net, meta = reg.load_descriptor()
    assert meta.task == reg.DESCRIPTOR_TASK and meta.architecture == reg.DESCRIPTOR_ARCHITECTURE
    assert networks.ARCHITECTURES[meta.architecture] is networks.DescriptorCNN
    assert isinstance(net, networks.DescriptorCNN) and not net.training
    out = net(torch.zeros(2, 1, reg.PATCH_SIZE, reg.PATCH_SIZE) + torch.arange(2.0)[:, None, None, None])
    assert out.shape == (2, meta.hyperparameters["dim"])
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
