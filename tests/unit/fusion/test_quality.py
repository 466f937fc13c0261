"""The quality network's pieces: features, the masked softmax across dates, polarity, loading."""

import numpy as np
import pytest
import torch

from cloudfree.models import fusion as fu
from cloudfree.models.errors import InputError, ModelFileError


def test_softmax_weights_sum_to_one_and_masked_dates_get_exact_zero():
    g = torch.Generator().manual_seed(0)
    K, H, W = 5, 6, 7
    logits = torch.randn(K, H, W, generator=g) * 5
    valid = torch.rand(K, H, W, generator=g) > 0.3
    clear = torch.rand(K, H, W, generator=g) > 0.4
    valid[:, 0, 0] = False                  # no date valid
    valid[:, 1, 1] = True
    clear[:, 1, 1] = False                  # every valid date cloudy: fallback to valid dates
    w = fu.masked_softmax(logits, valid, clear)
    total = w.sum(0)
    assert torch.all(w[~valid] == 0)
    allowed = valid & clear
    some = allowed.any(0)
    assert torch.all(w[:, some][~allowed[:, some]] == 0)
    assert total[0, 0] == 0
    anyv = valid.any(0)
    assert torch.allclose(total[anyv], torch.ones_like(total[anyv]), atol=1e-6)
    assert torch.allclose(w[:, 1, 1].sum(), torch.tensor(1.0)) and torch.all(w[:, 1, 1] > 0)


def test_features_are_value_and_deviation_from_the_median_of_valid_dates():
    xn = torch.tensor([1.0, 2.0, 10.0, 5.0]).reshape(4, 1, 1, 1)
    valid = torch.tensor([True, True, True, False]).reshape(4, 1, 1)
    f = fu.quality_features(xn, valid)
    assert f.shape == (4, 1, 2, 1, 1)
    assert f[:, 0, 0, 0, 0].tolist() == [1.0, 2.0, 10.0, 0.0]
    assert f[:, 0, 1, 0, 0].tolist() == [-1.0, 0.0, 8.0, 0.0]   # median of the valid dates: 2


def test_polarity():
    assert fu.resolve_polarity("auto", 1) == "low" and fu.resolve_polarity("auto", 4) == "high"
    assert fu.resolve_polarity("high", 1) == "high"
    with pytest.raises(InputError, match="cloud polarity 'up'"):
        fu.resolve_polarity("up", 1)


def test_network_space_is_the_shared_percentile_scaling():
    stats = {"low": [-0.2], "high": [0.6]}
    x = np.array([-1.0, -0.2, 0.2, 0.6, 5.0, np.nan], dtype=np.float32).reshape(2, 1, 1, 3)
    y = fu.to_network_space(x, stats)
    assert y.dtype == np.float32
    assert np.allclose(y.ravel(), [-2.0, -0.8, 0.0, 0.8, 2.0, 0.0], atol=1e-6)


def test_missing_model_file_names_it(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        fu.FusionModel.load(str(tmp_path / "none.safetensors"))
