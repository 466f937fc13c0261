"""Devices, dependency messages and the rule that the engine never imports QGIS."""

import ast
from pathlib import Path

import pytest
import torch

from cloudfree.models import runtime
from cloudfree.models.errors import DependencyError, InputError

ENGINE = Path(__file__).resolve().parents[2] / "models"


def test_auto_device_follows_cuda_availability():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert runtime.select_device("auto").type == expected
    assert runtime.select_device("cpu").type == "cpu"


def test_unavailable_or_unknown_device_is_a_clear_error():
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            runtime.select_device("cuda")
    with pytest.raises(InputError, match="Unknown device 'tpu9'"):
        runtime.select_device("tpu9")


def test_missing_dependency_message_says_how_to_install():
    with pytest.raises(DependencyError) as err:
        runtime.require_packages(["numpy", "surely_not_installed_pkg"])
    assert "surely_not_installed_pkg" in str(err.value) and "pip install" in str(err.value)


def test_engine_never_imports_qgis_or_qt():
    for path in ENGINE.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.split(".")[0] in {"qgis", "PyQt5", "PyQt6", "processing"}, f"{path.name} imports {name}"
