"""The engine ``auto`` measured as the faster for a network on this machine, remembered for later runs.

Timing both engines costs about a second at the start of every run (an ONNX Runtime session,
a warm-up and three timed runs of each engine), and when the two are within a few percent the
pick could differ from one run to the next. So the first run's measurement is kept, like the
exported ONNX files, in the user's cache folder (:func:`.onnx_export.cache_folder`), one small
JSON file per situation; later runs in the same situation take the remembered engine without
timing again (an ONNX Runtime pick is still verified against torch on every run).

The situation is everything the ranking depends on: the network (its weights and architecture,
:func:`.onnx_export.network_key`), the device, the tile size and the tiles per call, the threads,
the versions of torch and ONNX Runtime, and the machine's processor. Deleting the files makes the
next run measure again.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time

from .atomic import write_text

PREFIX = "choice-"


def situation_key(network, part, device, tile: int, batch: int) -> str:
    """SHA-256 (hex) of what the ranking of the engines depends on (see the module docstring)."""
    import torch

    from .onnx_export import network_key

    try:
        import onnxruntime
        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = "none"
    in_channels = next(m.in_channels for m in part.modules() if hasattr(m, "in_channels"))
    text = "|".join([network_key(network, int(in_channels), None), str(device), str(int(tile)), str(int(batch)),
                     str(torch.get_num_threads()), torch.__version__, ort_version, processor()])
    return hashlib.sha256(text.encode()).hexdigest()


def processor() -> str:
    """The processor's model name (Linux), else what the platform module says, and the core count."""
    name = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            name = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")
    except OSError:
        pass
    return f"{name or platform.processor() or platform.machine()} x{os.cpu_count()}"


def _path(folder: str, key: str) -> str:
    return os.path.join(folder, f"{PREFIX}{key[:24]}.json")


def remembered(folder: str, key: str) -> dict | None:
    """The choice recorded for ``key`` (``{"backend", "speeds", "measured"}``), or None."""
    try:
        with open(_path(folder, key), encoding="utf-8") as fh:
            record = json.load(fh)
    except (OSError, ValueError):
        return None
    return record if record.get("key") == key and record.get("backend") in ("torch", "onnxruntime") else None


def remember(folder: str, key: str, backend: str, speeds: dict) -> None:
    """Record the engine measured faster for ``key`` (megapixels per second of each in ``speeds``)."""
    record = {"key": key, "backend": backend, "speeds": {k: round(float(v), 3) for k, v in speeds.items()},
              "measured": time.strftime("%Y-%m-%d %H:%M")}
    try:
        os.makedirs(folder, exist_ok=True)
        write_text(_path(folder, key), json.dumps(record))
    except OSError:  # a read-only cache only means the next run measures again
        pass


def describe(record: dict) -> str:
    """A phrase for the log: which engine, measured when, at what speeds."""
    speeds = ", ".join(f"{k} {v:.2f} MP/s" for k, v in sorted(record["speeds"].items()))
    return f"auto: the faster here as measured on {record['measured']} ({speeds}), remembered"
