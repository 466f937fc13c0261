"""Run-time plumbing shared by every engine function: devices, progress and cancellation.

Engine functions take two optional callables instead of a QGIS feedback object:
``progress(fraction: float, message: str | None = None)`` and ``cancelled() -> bool``.
The Processing algorithms adapt ``QgsProcessingFeedback`` to them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import logging
import threading
from contextlib import contextmanager
from typing import Callable, Optional

from .errors import Cancelled, DependencyError, InputError

log = logging.getLogger("cloudfree")

Progress = Optional[Callable[..., None]]
CancelCheck = Optional[Callable[[], bool]]

# import name -> pip requirement, for the message that tells users how to install it
REQUIREMENTS = {
    "numpy": "numpy<2",
    "osgeo": "GDAL Python bindings (python3-gdal / OSGeo4W gdal-python)",
    "torch": "torch",
    "safetensors": "safetensors",
    "skimage": "scikit-image",
    "cv2": "opencv-python-headless<4.11",
    "matplotlib": "matplotlib",
    "onnxruntime": "onnxruntime",
    "ukis_csmask": "ukis-csmask==1.0.0",
    "scipy": "scipy",
    "dask": "dask",
    "distributed": "distributed",
}


def missing_packages(names) -> list:
    """Import names among ``names`` that cannot be imported in this Python."""
    return [n for n in names if importlib.util.find_spec(n) is None]


def install_hint(missing) -> str:
    reqs = " ".join(f'"{REQUIREMENTS.get(n, n)}"' for n in missing if n != "osgeo")
    return (
        f"CloudFree needs the Python package(s) {', '.join(missing)} in QGIS's Python. "
        "Install them with one click in Raster > CloudFree > CloudFree dependencies… (headless: "
        "python3 dependencies.py --install in the plugin folder, or the cloudfree:checkdependencies "
        f"algorithm to see what is missing), or by hand: python3 -m pip install --user {reqs}. Then restart QGIS."
    )


def require_packages(names) -> None:
    missing = missing_packages(names)
    if missing:
        raise DependencyError(install_hint(missing))


def check_cancelled(cancelled: CancelCheck) -> None:
    if cancelled is not None and cancelled():
        raise Cancelled("Cancelled by the user; no output was written.")


def report(progress: Progress, fraction: float, message: str | None = None) -> None:
    if progress is not None:
        progress(min(max(float(fraction), 0.0), 1.0), message)


def select_device(name: str = "auto"):
    """``auto`` picks CUDA when available, else CPU; ``cpu``, ``cuda`` and ``cuda:N`` are explicit."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        try:
            device = torch.device(name)
        except RuntimeError as exc:
            raise InputError(f"Unknown device '{name}': use auto, cpu, cuda or cuda:N.") from exc
        if device.type == "cuda" and not torch.cuda.is_available():
            raise InputError("Device 'cuda' was asked for but no CUDA GPU is available to torch; use auto or cpu.")
    if device.type == "cuda":
        log.info("Using device %s (%s)", device, torch.cuda.get_device_name(device))
    else:
        log.info("Using device cpu (%d threads)", torch.get_num_threads())
    return device


def describe_device(device) -> str:
    import torch

    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


# --------------------------------------------------------------------------- memory allocator

# glibc mallopt() parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD, _M_MMAP_MAX = -1, -2, -3, -4
# Where glibc's own dynamic thresholds end up after large blocks have been freed (mmap threshold
# at its 32 MiB ceiling, trim threshold twice that). Any mallopt() call switches the dynamic
# adjustment off for good, so these, not the start-up values, are what is restored.
_AFTER = {_M_MMAP_MAX: 65536, _M_MMAP_THRESHOLD: 32 << 20, _M_TRIM_THRESHOLD: 64 << 20, _M_TOP_PAD: 128 << 10}
_steady = {"depth": 0, "lock": threading.Lock(), "libc": None}


def glibc():
    """The C library as a ctypes handle when it is glibc (with mallopt), else None."""
    if _steady["libc"] is None:
        lib = False
        name = ctypes.util.find_library("c")
        try:
            cand = ctypes.CDLL(name) if name else None
            if cand is not None and hasattr(cand, "gnu_get_libc_version") and hasattr(cand, "mallopt"):
                lib = cand
        except OSError:
            pass
        _steady["libc"] = lib
    return _steady["libc"] or None


def steady_memory_depth() -> int:
    """How many :func:`steady_memory` contexts are open now (0: glibc's own thresholds apply)."""
    return _steady["depth"]


@contextmanager
def steady_memory():
    """Keep freed memory inside the process while a network runs batch after batch (glibc only).

    A CPU forward pass allocates and frees tens of MB of activations per batch. glibc serves
    large blocks with fresh ``mmap`` pages and trims the heap top as soon as they are freed, so
    every batch page-faults its activations in again: measured, 3.3 million page faults and
    10 s of kernel time in one 8192 x 8192 tiled run, which took about 6 s longer than without.
    Inside this context large blocks come from the heap and freed memory stays for the next
    batch (up to 1 GiB); on exit the thresholds glibc itself would have reached are set and
    the unused memory is returned to the system (``malloc_trim``). Nested uses are counted.
    Elsewhere (Windows, macOS, musl) this does nothing.
    """
    libc = glibc()
    if libc is None:
        yield
        return
    with _steady["lock"]:
        if _steady["depth"] == 0:
            libc.mallopt(_M_MMAP_MAX, 0)
            libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
            libc.mallopt(_M_TOP_PAD, 64 << 20)
        _steady["depth"] += 1
    try:
        yield
    finally:
        with _steady["lock"]:
            _steady["depth"] -= 1
            if _steady["depth"] == 0:
                for param, value in _AFTER.items():
                    libc.mallopt(param, value)
                libc.malloc_trim(0)
