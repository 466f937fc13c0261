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



class _MallInfo2(__import__("ctypes").Structure):
    _fields_ = [(name, __import__("ctypes").c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


@pytest.mark.skipif(runtime.glibc() is None or not hasattr(runtime.glibc(), "mallinfo2"),
                    reason="allocator tuning is glibc-only (mallinfo2: glibc >= 2.33)")
def test_steady_memory_serves_large_blocks_from_the_heap_and_keeps_them():
    """Outside the context a 64 MB block is a fresh mmap (unmapped again on free, so its pages
    fault in anew each batch); inside it comes from the heap and stays there when freed.
    Ground truth from glibc's own accounting (mallinfo2)."""
    import numpy as np

    libc = runtime.glibc()
    libc.mallinfo2.restype = _MallInfo2

    def info():
        return libc.mallinfo2()

    def large():
        """A block above the mmap threshold that no free chunk of the heap can serve (free chunks
        left behind by earlier tests would otherwise serve it without an mmap)."""
        return max(64 * 2 ** 20, info().fordblks + 8 * 2 ** 20) // 8

    with runtime.steady_memory():
        pass  # from here on glibc's thresholds are the static ones steady_memory restores
    n = large()
    before = info().hblkhd
    a = np.ones(n)  # at least 64 MB
    assert info().hblkhd - before >= 8 * n  # mmapped
    del a
    with runtime.steady_memory():
        with runtime.steady_memory():  # nested: still steady after the inner exit
            pass
        before = info().hblkhd
        a = np.ones(8 * 2 ** 20)
        assert info().hblkhd - before < 2 ** 20  # from the heap
        del a
        assert info().fordblks >= 64 * 2 ** 20  # freed but kept for the next batch
        assert runtime.steady_memory_depth() == 1
    assert runtime.steady_memory_depth() == 0
    n = large()
    before = info().hblkhd  # after the context, large blocks are mmapped (and returned on free) again
    a = np.ones(n)
    assert info().hblkhd - before >= 8 * n
    del a
