"""Run-time plumbing shared by every engine function: devices, progress and cancellation.

Engine functions take two optional callables instead of a QGIS feedback object:
``progress(fraction: float, message: str | None = None)`` and ``cancelled() -> bool``.
The Processing algorithms adapt ``QgsProcessingFeedback`` to them.
"""

from __future__ import annotations

import importlib.util
import logging
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
}


def missing_packages(names) -> list:
    """Import names among ``names`` that cannot be imported in this Python."""
    return [n for n in names if importlib.util.find_spec(n) is None]


def install_hint(missing) -> str:
    reqs = " ".join(f'"{REQUIREMENTS.get(n, n)}"' for n in missing if n != "osgeo")
    return (
        f"CloudFree needs the Python package(s) {', '.join(missing)} in QGIS's Python. "
        f"Install them with: python3 -m pip install --user {reqs} "
        "(on Windows, run this in the OSGeo4W Shell; with a CPU-only torch wheel add "
        "--index-url https://download.pytorch.org/whl/cpu). Then restart QGIS."
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
