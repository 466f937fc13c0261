"""ukis-csmask's pretrained cloud and shadow networks, run tile by tile with ONNX Runtime.

ukis-csmask (DLR, Apache-2.0; Wieland et al. 2019, 2022) ships four ONNX U-Nets (EfficientNet-B4
encoder) beside a JSON file each: 4 bands (blue, green, red, NIR) or 6 bands (+ SWIR 1.6 and
2.2 um), for top-of-atmosphere (L1C) or surface reflectance (L2A), trained on CloudSEN12+ and
SPARCS. Each takes ``(batch, bands, 256, 256)`` reflectance normalised per band with the JSON's
mean and standard deviation and returns logits of 0 background, 1 cloud, 2 cloud shadow.

The package's own ``CSmask`` class needs the whole image in memory, so only its files are used
here: :class:`CsmaskDetector` opens the network in an ONNX Runtime session and is the tile
function CloudFree's tiler calls, which keeps memory bounded on a full scene.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass

import numpy as np

from ..errors import DependencyError, InputError, ModelFileError
from ..runtime import install_hint
from .bands import ReflectanceScaling
from .masks import quantise

PACKAGE = "ukis_csmask"
PRODUCTS = ("l1c", "l2a")
#: CloudFree's role names -> the band names in ukis-csmask's model files
BAND_NAMES = {"blue": "blue", "green": "green", "red": "red", "nir": "nir", "swir1": "swir16", "swir2": "swir22"}
CLASS_COUNT = 3  # background, cloud, cloud shadow


def package_folder() -> str:
    """Where ukis-csmask is installed (its model files lie there); DependencyError if it is not."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DependencyError(install_hint([PACKAGE]))
    return list(spec.submodule_search_locations)[0]


@dataclass(frozen=True)
class CsmaskModel:
    """One of ukis-csmask's networks: its ONNX file and what its JSON file says about its input."""

    onnx_path: str
    band_names: tuple  # the model's input order, in ukis-csmask's names
    mean: tuple
    std: tuple
    tile: int
    version: str

    @classmethod
    def find(cls, band_count: int, product: str, folder: str | None = None) -> "CsmaskModel":
        """The network for ``band_count`` (4 or 6) bands and ``product`` (``l1c`` or ``l2a``) in ``folder``
        (default: the installed ukis-csmask package)."""
        if product not in PRODUCTS:
            raise InputError(f"Product level '{product}': use one of {', '.join(PRODUCTS)}.")
        if band_count not in (4, 6):
            raise InputError(f"ukis-csmask has networks for 4 or 6 bands, not {band_count}.")
        folder = folder or package_folder()
        stem = os.path.join(folder, f"model_{band_count}b_{product}")
        for path in (stem + ".onnx", stem + ".json"):
            if not os.path.isfile(path):
                raise ModelFileError(f"The ukis-csmask model file '{path}' is missing; reinstall the package: "
                                     f"python3 -m pip install --force-reinstall \"ukis-csmask==1.0.0\".")
        return cls.from_json(stem + ".onnx", stem + ".json")

    @classmethod
    def from_json(cls, onnx_path: str, json_path: str) -> "CsmaskModel":
        try:
            with open(json_path, encoding="utf-8") as f:
                meta = json.load(f)
            data = meta["data"]
            mean, std = data["dataset_statistics"]["img"]
            names = tuple(data["dataset_statistics"]["band_names"])
            tile = int(data["target_size"][0])
            version = str(meta.get("model", {}).get("version", "unknown"))
        except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise ModelFileError(f"The ukis-csmask model description '{json_path}' cannot be read ({exc}); "
                                 "reinstall ukis-csmask.") from exc
        if not (len(mean) == len(std) == len(names)) or min(std) <= 0:
            raise ModelFileError(f"The ukis-csmask model description '{json_path}' has inconsistent band "
                                 "statistics; reinstall ukis-csmask.")
        return cls(onnx_path, names, tuple(map(float, mean)), tuple(map(float, std)), tile, version)

    def band_order(self, roles) -> list:
        """Positions in ``roles`` (CloudFree role names, as the tiler delivers them) of the model's inputs."""
        ours = [BAND_NAMES[r] for r in roles]
        missing = [n for n in self.band_names if n not in ours]
        if missing:
            raise ModelFileError(f"The ukis-csmask network {os.path.basename(self.onnx_path)} needs the band(s) "
                                 f"{', '.join(missing)}, which are not among the input's roles.")
        return [ours.index(n) for n in self.band_names]


def onnx_providers(device: str) -> list:
    """ONNX Runtime execution providers for ``auto``, ``cpu`` or ``cuda``."""
    import onnxruntime

    available = onnxruntime.get_available_providers()
    device = (device or "auto").lower()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device.startswith("cuda") and "CUDAExecutionProvider" not in available:
        raise InputError("Device 'cuda' was asked for but this ONNX Runtime has no CUDA provider (install "
                         "onnxruntime-gpu instead of onnxruntime); use auto or cpu.")
    if device not in ("auto",) and not device.startswith("cuda"):
        raise InputError(f"Unknown device '{device}': use auto, cpu or cuda.")
    gpu = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
    return gpu + ["CPUExecutionProvider"]


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


class CsmaskDetector:
    """The tile function for :func:`~models.tiling.run_tiled`: stored values of the bands in role order in,
    quantised cloud and shadow probabilities out (2 bands)."""

    OUTPUT_BANDS = 2

    def __init__(self, model: CsmaskModel, roles, scaling: ReflectanceScaling, device: str = "auto"):
        self.model, self.scaling, self.device_choice = model, scaling, device
        self.order = model.band_order(roles)
        self.session = self._open_session(model, device)
        self.providers = self.session.get_providers()
        self.input_name = self.session.get_inputs()[0].name
        self._check_shapes()
        self.mean = np.asarray(model.mean, dtype=np.float32).reshape(1, -1, 1, 1)
        self.std = np.asarray(model.std, dtype=np.float32).reshape(1, -1, 1, 1)

    def __getstate__(self) -> dict:
        """What a copy in another process (a Dask worker) needs: an ONNX Runtime session does not pickle, so the
        network's file travels as bytes (the worker may not have ukis-csmask) and the copy opens its own session."""
        state = {k: v for k, v in self.__dict__.items() if k != "session"}
        with open(self.model.onnx_path, "rb") as f:
            state["onnx_bytes"] = f.read()
        return state

    def __setstate__(self, state: dict) -> None:
        network = state.pop("onnx_bytes")
        self.__dict__.update(state)
        self.session = self._open_session(self.model, self.device_choice, network)

    @property
    def tile(self) -> int:
        return self.model.tile

    @property
    def fixed_tile(self) -> int | None:
        """The tile size the network's input is fixed to, or None when it takes any size."""
        size = self.session.get_inputs()[0].shape[2]
        return size if isinstance(size, int) else None

    @property
    def device(self) -> str:
        return "cuda" if self.providers and self.providers[0] == "CUDAExecutionProvider" else "cpu"

    @staticmethod
    def _open_session(model: CsmaskModel, device: str, network: bytes | None = None):
        try:
            import onnxruntime
        except ImportError as exc:
            raise DependencyError(install_hint(["onnxruntime"])) from exc
        providers = onnx_providers(device)
        try:
            return onnxruntime.InferenceSession(network or model.onnx_path, providers=providers)
        except Exception as exc:  # ONNX Runtime raises its own exception types for damaged files
            raise ModelFileError(f"The ukis-csmask model file '{model.onnx_path}' cannot be loaded by ONNX Runtime "
                                 f"({str(exc).splitlines()[0][:200]}); reinstall ukis-csmask.") from exc

    def _check_shapes(self) -> None:
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        shape, out = inputs[0].shape, outputs[0].shape
        fits = len(shape) == 4 and shape[1] == len(self.model.band_names) and len(out) == 4 and out[1] == CLASS_COUNT
        if not fits or self.fixed_tile not in (None, self.tile):
            raise ModelFileError(f"The ukis-csmask model file '{self.model.onnx_path}' takes {shape} and returns "
                                 f"{out}, not ({len(self.model.band_names)} bands, {self.tile} px) -> "
                                 f"{CLASS_COUNT} classes; reinstall ukis-csmask.")

    def probabilities(self, reflectance: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """``(B, bands, T, T)`` reflectance in role order -> ``(B, 3, T, T)`` class probabilities (float32).
        Invalid pixels enter as the training mean (0 after normalisation)."""
        x = (reflectance[:, self.order] - self.mean) / self.std
        if valid is not None and not valid.all():
            x[np.broadcast_to(~valid[:, None], x.shape)] = 0.0
        logits = self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]
        return softmax(logits.astype(np.float32), axis=1)

    def __call__(self, batch: np.ndarray, valid: np.ndarray) -> np.ndarray:
        probabilities = self.probabilities(self.scaling.apply(batch), valid)
        return quantise(probabilities[:, 1:3])
