"""The CloudFree model file: one ``.safetensors`` file with JSON metadata in its header.

Weights are plain tensors (safetensors never unpickles anything); the header's
``__metadata__`` holds one key, ``cloudfree``, whose value is a JSON document::

    {
      "format": "cloudfree-model/1",
      "task": "cloud_removal",                 # what the model does
      "architecture": "unet_generator",        # a key of networks.ARCHITECTURES
      "hyperparameters": {...},                # constructor arguments of that network
      "bands": ["blue", "green", "red", "nir"],# input bands, in order
      "extra_channels": ["cloud_mask"],        # further input channels after the bands
      "normalization": {...},                  # how reflectance is mapped to network input
      "tile_size": 256,
      "training": {...},                       # data, steps, seed... exactly what it saw
      "metrics": {...}                         # held-out figures
    }

Loading rebuilds the network from its metadata, checks every tensor's name and shape
against it (strict), and checks the band count against the input it will be applied to.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass, field

from .atomic import atomic_output
from .errors import ModelFileError

FORMAT = "cloudfree-model/1"
METADATA_KEY = "cloudfree"
SHIPPED_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")


@dataclass
class ModelMetadata:
    task: str
    architecture: str
    hyperparameters: dict
    bands: list
    extra_channels: list = field(default_factory=list)
    normalization: dict = field(default_factory=dict)
    tile_size: int = 256
    training: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    format: str = FORMAT

    @property
    def band_count(self) -> int:
        return len(self.bands)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMetadata":
        data = json.loads(text)
        known = {f for f in cls.__dataclass_fields__}
        # keys this version does not know (e.g. the never-used "scaling" of early files) are dropped
        return cls(**{k: v for k, v in data.items() if k in known})


def save_model(path: str, module, metadata: ModelMetadata) -> str:
    """Write ``module``'s weights and ``metadata`` atomically (temporary file, then rename)."""
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    write_atomic(path, state, metadata)
    return path


def write_atomic(path: str, state: dict, metadata: ModelMetadata | None = None) -> None:
    """safetensors file written beside ``path`` under a hidden name, then renamed into place
    (``metadata=None``: bare tensors, e.g. a training checkpoint's best generator)."""
    from safetensors.torch import save_file

    with atomic_output(path) as tmp:
        save_file(state, tmp, metadata={METADATA_KEY: metadata.to_json()} if metadata is not None else None)


def read_metadata(path: str) -> ModelMetadata:
    """Read only the header of a model file (cheap; no tensors are loaded, and torch is not imported: the
    dialogs and the Processing help list models this way)."""
    from safetensors import safe_open

    name = os.path.basename(str(path))
    if not os.path.isfile(path):
        raise ModelFileError(f"Model file '{path}' does not exist.")
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
    except Exception as exc:  # safetensors raises several types for a damaged header
        raise ModelFileError(f"Model file '{name}' is corrupt or not a safetensors file ({exc}).") from exc
    if METADATA_KEY not in header:
        raise ModelFileError(f"Model file '{name}' has no CloudFree metadata; it was not written by CloudFree.")
    try:
        meta = ModelMetadata.from_json(header[METADATA_KEY])
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"Model file '{name}' has unreadable metadata ({exc}).") from exc
    if meta.format != FORMAT:
        raise ModelFileError(f"Model file '{name}' has format '{meta.format}'; this CloudFree reads '{FORMAT}'.")
    return meta


def load_model(path: str, *, task: str | None = None, band_count: int | None = None,
               layer: str = "input", device="cpu"):
    """Rebuild the network described by a model file and load its weights strictly.

    Raises :class:`ModelFileError` for a missing/corrupt file, a model of another task,
    weights that do not fit the architecture, or a band count that differs from ``band_count``.
    Returns ``(module in eval mode on device, metadata)``.
    """
    from safetensors.torch import load_file

    from . import networks

    name = os.path.basename(str(path))
    meta = read_metadata(path)
    if task is not None and meta.task != task:
        raise ModelFileError(f"Model file '{name}' is a '{meta.task}' model; a '{task}' model is needed here.")
    # a model that processes bands one at a time says so (training["any_band_count"]) and takes any count
    if band_count is not None and band_count != meta.band_count and not meta.training.get("any_band_count"):
        raise ModelFileError(
            f"Model '{name}' expects {meta.band_count} band(s) ({', '.join(map(str, meta.bands))}) "
            f"but layer '{layer}' provides {band_count}; choose the model's bands with the BANDS parameter."
        )
    try:
        module = networks.build(meta.architecture, meta.hyperparameters)
    except KeyError as exc:
        raise ModelFileError(f"Model file '{name}' uses unknown architecture '{meta.architecture}'.") from exc
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"Model file '{name}' has invalid hyper-parameters ({exc}).") from exc
    try:
        state = load_file(str(path), device="cpu")
    except Exception as exc:
        raise ModelFileError(f"Model file '{name}' is corrupt ({exc}).") from exc
    expected = module.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [f"{k}: {tuple(state[k].shape)} instead of {tuple(v.shape)}"
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if problems:
        raise ModelFileError(f"Model file '{name}' does not match its architecture: " + "; ".join(problems[:5])
                             + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
    module.load_state_dict(state, strict=True)
    module.to(device).eval()
    return module, meta


def shipped_model(filename: str) -> str:
    """Path of a model that ships with the plugin, in ``models/pretrained/``."""
    return os.path.join(SHIPPED_DIR, filename)


def update_metadata(path: str, **changes) -> ModelMetadata:
    """Rewrite a model file's metadata (e.g. to add held-out metrics); tensors are copied unchanged."""
    from safetensors.torch import load_file

    meta = read_metadata(path)
    unknown = sorted(k for k in changes if k not in ModelMetadata.__dataclass_fields__)
    if unknown:
        raise ModelFileError(f"Model file '{os.path.basename(str(path))}': no metadata field named "
                             f"{', '.join(unknown)}; the fields are {', '.join(ModelMetadata.__dataclass_fields__)}.")
    for key, value in changes.items():
        setattr(meta, key, value)
    write_atomic(path, load_file(str(path)), meta)
    return meta
