"""A torch network exported to ONNX once, and kept in the user's cache for every later run.

:func:`exported_file` returns the path of the ONNX file of a network, exporting it only when the
cache has none for it. The file's name carries a hash of everything the export depends on: the
weights (every tensor of the state dict), the architecture (the module's class and its printed
layer configuration), the input policy (dynamic batch always; dynamic height and width unless a
dense layer fixes the input size) and the exporter (torch's version, the ONNX opset). New weights,
a retrained model or another torch therefore give another file; nothing is ever overwritten
in place, and a half-written file is never seen (written beside, then renamed: :mod:`.atomic`).
The folder keeps the :data:`KEEP` files used last (each use touches its file), so networks made
afresh for one run (the untrained fill and copy generators of the baselines) do not pile up.

The cache folder is ``$CLOUDFREE_ONNX_CACHE`` when set, else ``cloudfree/onnx`` in the user's cache
folder (``$XDG_CACHE_HOME`` or ``~/.cache``; ``%LOCALAPPDATA%`` on Windows), never the plugin's own
folder. The exporter is torch's TorchScript-based one (``dynamo=False``): it traces the module once
and needs only the ``onnx`` package, where the newer exporter also needs ``onnxscript``.
"""

from __future__ import annotations

import hashlib
import os
import warnings

from .atomic import atomic_output

OPSET = 17
FORMAT = "cloudfree-onnx/1"  # changes when what goes into an exported file changes
CACHE_ENV = "CLOUDFREE_ONNX_CACHE"
INPUT, OUTPUT = "input", "output"
KEEP = 24  # exported files kept in the cache folder, the most recently used


def cache_folder() -> str:
    """Where exported networks are kept (see the module docstring)."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get("LOCALAPPDATA") if os.name == "nt" else os.environ.get("XDG_CACHE_HOME")
    return os.path.join(base or os.path.join(os.path.expanduser("~"), ".cache"), "cloudfree", "onnx")


def has_dense_layer(module) -> bool:
    """A dense (Linear) layer fixes the input's height and width; convolutions alone take any size."""
    from torch import nn

    return any(isinstance(m, nn.Linear) for m in module.modules())


def network_key(module, input_channels: int, fixed_size: int | None) -> str:
    """SHA-256 of the weights, the architecture, the input policy and the exporter (hex)."""
    import torch

    h = hashlib.sha256()
    policy = f"channels={input_channels};size={fixed_size or 'dynamic'};batch=dynamic"
    for text in (FORMAT, torch.__version__, str(OPSET), type(module).__qualname__, repr(module), policy):
        h.update(text.encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


def exported_file(module, example, folder: str | None = None, rebuild: bool = False) -> tuple:
    """``(path, exported now?)`` of the ONNX file of ``module`` (in eval mode) for inputs like ``example``.

    ``example`` is one input tensor ``(B, C, H, W)`` on the module's device; the file takes any
    batch and, unless the module has a dense layer, any height and width. ``rebuild``: export
    again even when the cache has the file (one that ONNX Runtime could not load).
    """
    fixed = example.shape[-1] if has_dense_layer(module) else None
    key = network_key(module, int(example.shape[1]), fixed)
    path = os.path.join(folder or cache_folder(), f"{type(module).__name__.lower()}-{key[:24]}.onnx")
    if os.path.isfile(path) and not rebuild:
        os.utime(path)
        return path, False
    export(module, example, path, dynamic_size=fixed is None)
    prune(os.path.dirname(path))
    return path, True


def prune(folder: str, keep: int = KEEP) -> None:
    """Delete all but the ``keep`` most recently used exported files of ``folder``."""
    files = [os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".onnx") and not n.startswith(".")]
    files.sort(key=os.path.getmtime, reverse=True)
    for old in files[keep:]:
        try:
            os.remove(old)
        except OSError:  # another QGIS may be using or removing it: it goes next time
            pass


def export(module, example, path: str, dynamic_size: bool = True) -> str:
    """Write ``module`` as ONNX to ``path`` (atomically), batch dynamic, height and width too if asked."""
    import torch

    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_size else {0: "batch"}
    with atomic_output(path) as tmp, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notices
        torch.onnx.export(module, (example,), tmp, dynamo=False, input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: axes, OUTPUT: axes}, opset_version=OPSET)
    return path
