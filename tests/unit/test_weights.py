"""Model files: safetensors + JSON metadata, strict loading, clear errors (engine only)."""

import json

import pytest
import torch

from cloudfree.models import networks, weights
from cloudfree.models.errors import ModelFileError


def small_unet_file(path, bands=("blue", "green", "red", "nir")):
    params = {"in_channels": len(bands), "out_channels": len(bands), "depth": 3, "base": 8}
    model = networks.UNetGenerator(**params)
    meta = weights.ModelMetadata(task="cloud_removal", architecture="unet_generator", hyperparameters=params,
                                 bands=list(bands), tile_size=64, training={"data": "unit test"},
                                 metrics={"psnr": 30.0})
    weights.save_model(str(path), model, meta)
    return model, meta


def test_round_trip_restores_weights_and_metadata(tmp_path):
    model, meta = small_unet_file(tmp_path / "m.safetensors")
    loaded, back = weights.load_model(str(tmp_path / "m.safetensors"), task="cloud_removal", band_count=4)
    assert back.bands == meta.bands and back.metrics == {"psnr": 30.0} and back.tile_size == 64
    x = torch.rand(1, 4, 64, 64)
    model.eval()
    assert torch.equal(loaded(x), model(x))
    assert not loaded.training


def test_file_is_plain_safetensors_with_json_header(tmp_path):
    small_unet_file(tmp_path / "m.safetensors")
    raw = (tmp_path / "m.safetensors").read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + header_len])
    meta = json.loads(header["__metadata__"]["cloudfree"])
    assert meta["format"] == "cloudfree-model/1" and meta["architecture"] == "unet_generator"


def test_wrong_band_count_is_a_clear_error(tmp_path):
    small_unet_file(tmp_path / "m.safetensors")
    with pytest.raises(ModelFileError, match=r"expects 4 band\(s\) \(blue, green, red, nir\) but layer 'scene' "
                                             r"provides 6"):
        weights.load_model(str(tmp_path / "m.safetensors"), band_count=6, layer="scene")


def test_wrong_task_is_rejected(tmp_path):
    small_unet_file(tmp_path / "m.safetensors")
    with pytest.raises(ModelFileError, match="'cloud_removal' model; a 'fusion' model is needed"):
        weights.load_model(str(tmp_path / "m.safetensors"), task="fusion")


def test_weights_that_do_not_fit_the_architecture_are_rejected(tmp_path):
    model, meta = small_unet_file(tmp_path / "m.safetensors")
    meta.hyperparameters = dict(meta.hyperparameters, base=16)  # metadata now disagrees with the tensors
    weights.save_model(str(tmp_path / "bad.safetensors"), model, meta)
    with pytest.raises(ModelFileError, match="does not match its architecture"):
        weights.load_model(str(tmp_path / "bad.safetensors"))


@pytest.mark.parametrize("content", [b"", b"not a model at all", b"\x10\x00\x00\x00\x00\x00\x00\x00{broken"])
def test_corrupt_files_are_rejected(tmp_path, content):
    path = tmp_path / "corrupt.safetensors"
    path.write_bytes(content)
    with pytest.raises(ModelFileError, match="corrupt|not a safetensors"):
        weights.load_model(str(path))


def test_missing_and_foreign_files(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        weights.load_model(str(tmp_path / "nope.safetensors"))
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(ModelFileError, match="no CloudFree metadata"):
        weights.load_model(str(tmp_path / "foreign.safetensors"))


def test_update_metadata_keeps_tensors(tmp_path):
    model, _ = small_unet_file(tmp_path / "m.safetensors")
    weights.update_metadata(str(tmp_path / "m.safetensors"), metrics={"held_out": {"psnr": 20.0}})
    loaded, meta = weights.load_model(str(tmp_path / "m.safetensors"))
    assert meta.metrics == {"held_out": {"psnr": 20.0}} and meta.bands == ["blue", "green", "red", "nir"]
    x = torch.rand(1, 4, 64, 64)
    assert torch.equal(loaded(x), model.eval()(x))


def test_update_metadata_with_an_unknown_field_is_a_model_file_error(tmp_path):
    # was a bare KeyError, which escaped the CloudFreeError -> QgsProcessingException mapping
    small_unet_file(tmp_path / "m.safetensors")
    before = (tmp_path / "m.safetensors").read_bytes()
    with pytest.raises(ModelFileError, match="'m.safetensors': no metadata field named held_out_metrics"):
        weights.update_metadata(str(tmp_path / "m.safetensors"), held_out_metrics={"psnr": 1.0})
    assert (tmp_path / "m.safetensors").read_bytes() == before


def test_files_with_the_retired_scaling_key_still_load(tmp_path):
    from safetensors.torch import load_file, save_file

    model, meta = small_unet_file(tmp_path / "m.safetensors")
    doc = json.loads(meta.to_json())
    doc["scaling"] = {"name": "identity", "offset": 0.0, "gain": 1.0}
    save_file(load_file(str(tmp_path / "m.safetensors")), str(tmp_path / "old.safetensors"),
              metadata={weights.METADATA_KEY: json.dumps(doc)})
    _, back = weights.load_model(str(tmp_path / "old.safetensors"), task="cloud_removal")
    assert back.bands == meta.bands


def test_reading_metadata_does_not_import_torch():
    """The dialogs and the Processing help list the shipped models; that must not load torch."""
    import subprocess
    import sys
    from pathlib import Path

    scripts = Path(__file__).resolve().parents[2] / "scripts"
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import cloudfree_import\n"
            "from cloudfree.models import catalogue\n"
            "assert catalogue.shipped_models(), 'no shipped model listed'\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(scripts)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
