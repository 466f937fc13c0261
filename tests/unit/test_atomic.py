"""Atomic outputs: complete or absent, never half-written (engine only)."""

import os

import pytest

from cloudfree.models.atomic import atomic_output, write_text


def test_output_appears_only_when_complete(tmp_path):
    out = tmp_path / "sub" / "report.json"
    with atomic_output(str(out)) as tmp:
        with open(tmp, "w") as fh:
            fh.write("{}")
        assert not out.exists() and os.path.basename(tmp).startswith(".report.json.partial-")
    assert out.read_text() == "{}"
    assert os.listdir(out.parent) == ["report.json"]


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    out = tmp_path / "model.safetensors"
    out.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(str(out)) as tmp:
            with open(tmp, "w") as fh:
                fh.write("half")
            raise RuntimeError("cancelled")
    assert out.read_text() == "old"
    assert os.listdir(tmp_path) == ["model.safetensors"]
    write_text(str(out), "new")
    assert out.read_text() == "new"
