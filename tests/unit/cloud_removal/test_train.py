"""Training, model selection, the model file and checkpoints (models/cloud_removal/train.py,
checkpoints.py, validation.py) on real Sentinel-2 data."""

import json

import pytest

from cloudfree.models import cloud_removal as cr
from cloudfree.models.errors import Cancelled, ModelFileError
from cloudfree.models.weights import load_model, read_metadata


def test_tiny_pix2pix_training_lowers_l1_on_fixed_validation_batch(tiny_config, tmp_path):
    """The plain pix2pix generator starts from random weights: 40 steps must cut the L1 by 20 %."""
    cfg = tiny_config(steps=40, val_every=20, generator="plain", num_samples=0)
    result = cr.train_cloud_removal(cfg, str(tmp_path / "plain.safetensors"))
    val = result.history["val"]
    assert [v["step"] for v in val] == [0, 20, 40]
    assert val[-1]["l1"] < 0.8 * val[0]["l1"]
    assert val[-1]["psnr"] > val[0]["psnr"]


def test_fill_residual_training_starts_from_the_fill_and_keeps_the_best(trained):
    result, folder, lines, calls = trained
    val = result.history["val"]
    assert [v["step"] for v in val] == [0, 20, 40]
    best = max(val, key=cr.validation_score)  # its untrained start (the unmixing fill) is a candidate too
    assert result.metrics == {k: v for k, v in best.items() if k != "step"}
    assert any("Keeping the generator of step" in line for line in lines)
    assert len(result.history["loss_g_l1"]) == 40 == result.steps
    assert result.steps_per_second > 0
    # progress per step with the current losses
    assert len(calls) == 40 and calls[-1][0] == pytest.approx(1.0) and "L1" in calls[-1][1]
    assert any("validation" in line for line in lines)
    # samples for the report
    assert len(result.samples) == 3
    s = result.samples[0]
    assert s["cloudy"].shape == s["generated"].shape == s["clear"].shape == (4, 64, 64)
    assert 0.0 <= s["generated"].min() and s["generated"].max() <= 1.0


def test_model_file_metadata(trained):
    result, *_ = trained
    model, meta = load_model(result.model_path, task="cloud_removal", band_count=4)
    assert meta.bands == ["blue", "green", "red", "nir"]
    assert meta.extra_channels == ["cloud_mask"]
    assert meta.normalization["scheme"] == "per_band_clear_percentile"
    assert meta.training["input_range"] == {}  # per-image scaling: any units do, no range to leave
    assert meta.training["inference_dropout"] is False
    assert meta.training["selected_step"] in (0, 20, 40)
    assert meta.normalization["beyond_clip"] == "log"
    hp = meta.hyperparameters  # the default generator blends an unmixed ground and a fill: 4 bands + the mask
    assert meta.architecture == "fill_residual_generator" and meta.tile_size == 64
    assert hp["bands"] == 4 and hp["extra_channels"] == 1
    assert hp["base_fill"] == "unmix" and hp["unlog_clip"] == meta.normalization["clip"]
    assert hp["head"] == "blend" and hp["residual_scale"] == 0.0
    assert hp["trust_power"] == 2.0 and hp["plausible_range"] == 1.0  # stored, not taken from the code
    assert not model.training


def test_a_prior_start_is_kept_when_training_does_not_beat_it(tiny_config, tmp_path):
    """The unmix_blend generator starts as the unmixing fill: a run whose training only makes it worse
    (a learning rate far too high) keeps step 0 and says so; pix2pix, which starts from noise, never does."""
    lines = []
    cfg = tiny_config(steps=6, val_every=3, lr=5.0, lr_decay_start=1.0, num_samples=0)
    result = cr.train_cloud_removal(cfg, str(tmp_path / "wrecked.safetensors"), log=lines.append)
    val = result.history["val"]
    assert [v["step"] for v in val] == [0, 3, 6]
    assert cr.validation_score(val[0]) > max(cr.validation_score(v) for v in val[1:])
    assert read_metadata(result.model_path).training["selected_step"] == 0
    assert any("did not beat the untrained generator" in line for line in lines)

    plain = cr.train_cloud_removal(tiny_config(steps=6, val_every=3, lr=5.0, lr_decay_start=1.0, num_samples=0,
                                               generator="plain"), str(tmp_path / "plain.safetensors"))
    assert read_metadata(plain.model_path).training["selected_step"] in (3, 6)


def test_checkpoint_resume_continues_step_count(trained, tiny_config, tmp_path):
    result, folder, *_ = trained
    ckpt = folder / "ckpt"
    latest = json.loads((ckpt / "latest.json").read_text())
    assert latest["step"] == 40
    assert (ckpt / latest["checkpoint"] / "generator.safetensors").is_file()
    cfg = tiny_config(steps=46, val_every=0, checkpoint_every=3, num_samples=1)
    out = cr.train_cloud_removal(cfg, str(tmp_path / "resumed.safetensors"), checkpoint_dir=str(tmp_path / "ck2"),
                                 resume_from=str(ckpt))
    assert out.steps == 46
    assert out.history["step"][0] == 1 and out.history["step"][-1] == 46
    assert len(out.history["loss_g_l1"]) == 46
    assert out.history["loss_g_l1"][:40] == result.history["loss_g_l1"]
    assert json.loads((tmp_path / "ck2" / "latest.json").read_text())["step"] == 46
    # the best validation generator of the first run survives the resume (no validation since)
    first = read_metadata(result.model_path).training["selected_step"]
    assert read_metadata(out.model_path).training["selected_step"] == first


def test_cancel_keeps_last_checkpoint(tiny_config, tmp_path):
    cfg = tiny_config(steps=10, val_every=0, checkpoint_every=2, num_samples=0)
    n = {"calls": 0}

    def cancelled():
        n["calls"] += 1
        return n["calls"] > 5  # cancel before step 6

    out_model = tmp_path / "never.safetensors"
    with pytest.raises(Cancelled, match="checkpoint"):
        cr.train_cloud_removal(cfg, str(out_model), checkpoint_dir=str(tmp_path / "ck"), cancelled=cancelled)
    assert not out_model.exists()
    assert json.loads((tmp_path / "ck" / "latest.json").read_text())["step"] == 4
    # the newest two complete checkpoints are kept, and no temporary file is left behind
    assert sorted(p.name for p in (tmp_path / "ck").iterdir()) == ["latest.json", "step_00000002", "step_00000004"]
    assert sorted(p.name for p in (tmp_path / "ck" / "step_00000004").iterdir()) == [
        "discriminator.safetensors", "generator.safetensors", "optimizers.pt", "state.json"]
    resumed = cr.train_cloud_removal(cfg, str(out_model), checkpoint_dir=str(tmp_path / "ck"),
                                     resume_from=str(tmp_path / "ck"))
    assert resumed.steps == 10 and len(resumed.history["step"]) == 10 and out_model.exists()


def test_a_damaged_latest_json_is_a_model_file_error(tmp_path):
    """latest.json without a checkpoint name raised a bare KeyError, and unreadable JSON a ValueError."""
    (tmp_path / "latest.json").write_text("{}")
    with pytest.raises(ModelFileError, match="latest.json"):
        cr.resolve_checkpoint(str(tmp_path))
    (tmp_path / "latest.json").write_text("not json")
    with pytest.raises(ModelFileError, match="latest.json"):
        cr.resolve_checkpoint(str(tmp_path))
    # naming a checkpoint folder that is missing or has no state.json (incomplete)
    (tmp_path / "latest.json").write_text(json.dumps({"checkpoint": "step_00000008", "step": 8}))
    (tmp_path / "step_00000008").mkdir()
    with pytest.raises(ModelFileError, match="missing or incomplete"):
        cr.resolve_checkpoint(str(tmp_path))
