"""Training the residual generator (:class:`..networks.ResidualGenerator`) on real cloudy/clear/radar
triplets (:mod:`.triplets`), optionally with synthetic clouds of real shapes over clear images.

The recipe follows DSen2-CR (Meraner et al. 2020):

- the network predicts a correction of its input (``clear = cloudy + correction``), its last layer
  starts at zero, so training starts from doing nothing;
- one fixed reflectance scaling for every image (``sentinel2_l1c``: reflectance 0..1 -> -1..1), and one
  fixed map of radar dB (:mod:`.guided`), so nothing is computed over a tile;
- the cloud-adaptive L1 loss (CARL): inside the cloud mask the output is pulled to the clear date,
  outside it to the cloudy input itself, plus ``target_weight`` x the L1 to the clear date over every
  pixel: ``mean(m |P - T| + (1 - m) |P - I|) + target_weight * mean |P - T|``;
- radar is dropped from a ``radar_dropout`` share of the crops (its validity channel 0), so the one
  model also clears images without radar.

Training is by steps with Adam and a cosine-decayed learning rate; no validation inside the run:
the held-out figures come from cross-validation by whole triplets (``benchmarks/real_clouds.py``).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from ..errors import InputError
from ..networks import ResidualGenerator
from ..normalization import REFLECTANCE_PRESETS, FixedScaling
from ..runtime import CancelCheck, Progress, check_cancelled, describe_device, report, select_device
from ..weights import ModelMetadata, save_model
from .config import TASK
from .generators import RESIDUAL_ARCHITECTURE as ARCHITECTURE
from .guided import RADAR_CHANNEL, RADAR_VALID_CHANNEL, radar_channels
PRESET = "sentinel2_l1c"


@dataclass
class ResidualConfig:
    """Settings of one training run of the residual generator."""

    steps: int = 600
    batch_size: int = 8
    crop: int = 128
    lr: float = 5e-4
    target_weight: float = 1.0      # CARL's global term
    radar_dropout: float = 0.5      # share of crops trained without radar (0 with no radar)
    synthetic_share: float = 0.3    # share of crops with synthetic clouds over clear images (when given)
    depth: int = 4
    base: int = 24
    max_channels: int = 192
    radar_smooth: int = 5
    start: str = "input"            # input (no mask: clear = input + correction) or fill (mask: the fill + correction)
    preset: str = PRESET
    seed: int = 0
    num_threads: int | None = None
    device: str = "auto"            # auto (CUDA when available), cpu or cuda


@dataclass
class ResidualResult:
    """A trained network with what the run did: ``history`` (step, loss), seconds and CPU seconds."""

    network: ResidualGenerator
    config: ResidualConfig
    radar_bands: int
    history: dict
    seconds: float
    cpu_seconds: float
    input_range: dict | None = None  # per band, the range of the training inputs (:mod:`.domain`)
    device: str = "cpu"             # what trained it, in words

    @property
    def steps_per_second(self) -> float:
        return self.config.steps / max(self.seconds, 1e-9)


def network_input(cloudy: np.ndarray, radar_db: np.ndarray | None, radar_bands: int, scaling: FixedScaling,
                  mask: np.ndarray | None = None) -> np.ndarray:
    """The network's input ``(C [+ 1] [+ R + 1], H, W)`` of one image in stored units: the bands, the mask
    channel when ``mask`` is given (a ``start="fill"`` model), the radar channels (None = without radar)."""
    x = np.nan_to_num(scaling.to_network(cloudy).astype(np.float32))
    return with_channels(x, mask, radar_db, radar_bands)


def with_channels(x: np.ndarray, mask: np.ndarray | None, radar_db: np.ndarray | None, radar_bands: int) -> np.ndarray:
    """Bands in network space ``x`` followed by the mask channel (when given) and the radar channels."""
    parts = [x] + ([np.asarray(mask, np.float32)[None]] if mask is not None else [])
    if radar_bands:
        parts += radar_channels(radar_db, radar_bands, x.shape[1:])
    return np.concatenate(parts).astype(np.float32, copy=False)


class CropSource:
    """Random training crops of triplets (real clouds) and of clear images under synthetic clouds."""

    def __init__(self, triplets: list, clear_images: list, config: ResidualConfig, radar_bands: int,
                 scaling: FixedScaling):
        if not triplets:
            raise InputError("Training the residual generator needs at least one triplet.")
        self.config, self.radar_bands, self.scaling = config, radar_bands, scaling
        fill = config.start == "fill"
        self.real = [(network_input(t.cloudy, t.radar, radar_bands, scaling, t.mask if fill else None),
                      np.nan_to_num(scaling.to_network(t.clear)).astype(np.float32), t.mask) for t in triplets]
        self.clear = [np.nan_to_num(scaling.to_network(c)).astype(np.float32) for c in clear_images]
        self.shapes = [t.mask for t in triplets if 0.05 < t.mask.mean() < 0.95]
        for x, _, _ in self.real:
            if x.shape[-1] < config.crop or x.shape[-2] < config.crop:
                raise InputError(f"Training crops of {config.crop} px do not fit a {x.shape[-1]} x {x.shape[-2]} image.")

    def batch(self, rng: np.random.Generator) -> tuple:
        """``(x, clear, mask)`` tensors of one batch."""
        xs, ys, ms = [], [], []
        for _ in range(self.config.batch_size):
            synthetic = self.clear and self.shapes and rng.random() < self.config.synthetic_share
            x, y, m = self._synthetic(rng) if synthetic else self._real(rng)
            k, flip = int(rng.integers(4)), bool(rng.integers(2))
            x, y, m = (np.rot90(a, k, axes=(-2, -1)) for a in (x, y, m))
            if flip:
                x, y, m = (a[..., ::-1] for a in (x, y, m))
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
            ms.append(np.ascontiguousarray(m))
        return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)),
                torch.from_numpy(np.stack(ms)[:, None].astype(np.float32)))

    def _window(self, rng, shape) -> tuple:
        c = self.config.crop
        r0, c0 = int(rng.integers(shape[-2] - c + 1)), int(rng.integers(shape[-1] - c + 1))
        return slice(r0, r0 + c), slice(c0, c0 + c)

    def _real(self, rng) -> tuple:
        x, y, m = self.real[int(rng.integers(len(self.real)))]
        rs, cs = self._window(rng, x.shape)
        x = x[:, rs, cs].copy()
        if self.radar_bands and rng.random() < self.config.radar_dropout:
            x[-self.radar_bands - 1:] = 0.0
        return x, y[:, rs, cs], m[rs, cs]

    def _synthetic(self, rng) -> tuple:
        """A clear crop under a real cloud shape (another triplet's mask), soft-edged, of random opacity and
        brightness; no radar (its validity 0)."""
        y = self.clear[int(rng.integers(len(self.clear)))]
        rs, cs = self._window(rng, y.shape)
        y = y[:, rs, cs]
        shape = self.shapes[int(rng.integers(len(self.shapes)))]
        ms, mc = self._window(rng, shape.shape)
        alpha = gaussian_filter(shape[ms, mc].astype(np.float32), float(rng.uniform(1.0, 6.0)))
        alpha *= float(rng.uniform(0.3, 1.0)) * (0.8 + 0.2 * gaussian_filter(rng.random(alpha.shape), 8) * 4)
        alpha = np.clip(alpha, 0.0, 1.0).astype(np.float32)
        brightness = rng.uniform(0.25, 0.9) * (1.0 + rng.normal(0.0, 0.03, (y.shape[0], 1, 1)))
        dn_offset, gain = REFLECTANCE_PRESETS[self.config.preset]
        cloud = self.scaling.to_network(np.asarray(dn_offset + brightness / gain, np.float32)).astype(np.float32)
        x_opt = y * (1.0 - alpha) + cloud * alpha
        mask = alpha > 0.1
        x = with_channels(x_opt.astype(np.float32), mask if self.config.start == "fill" else None, None,
                          self.radar_bands)
        return x, y, mask


def input_range(triplets: list, clear_images=()) -> dict:
    """Per band, the 0.5th and 99.5th percentiles of the training inputs (the triplets' cloudy images and the
    clear images synthetic clouds go over), as :mod:`.domain` reads them from ``training["input_range"]``."""
    from ..normalization import percentile_limits
    from .domain import HIGH, LOW

    images = [t.cloudy for t in triplets] + list(clear_images)
    limits = []
    for b in range(images[0].shape[0]):
        values = np.concatenate([im[b].ravel() for im in images])
        limits.append(percentile_limits(values[np.isfinite(values)], LOW, HIGH))
    return {"low": [float(lo) for lo, _ in limits], "high": [float(hi) for _, hi in limits], "percentiles": [LOW, HIGH]}


def carl_loss(pred: torch.Tensor, cloudy: torch.Tensor, clear: torch.Tensor, mask: torch.Tensor,
              target_weight: float) -> torch.Tensor:
    """The cloud-adaptive L1 of DSen2-CR (see the module docstring); ``mask`` ``(B, 1, H, W)``, 1 = cloud."""
    local = (mask * (pred - clear).abs() + (1.0 - mask) * (pred - cloudy).abs()).mean()
    return local + target_weight * (pred - clear).abs().mean()


def train_residual(triplets: list, config: ResidualConfig | None = None, *, clear_images=(), progress: Progress = None,
                   cancelled: CancelCheck = None, log: Callable[[str], None] | None = None) -> ResidualResult:
    """Train a residual generator on ``triplets`` (:class:`.triplets.Triplet`) and ``clear_images`` (optional
    ``(C, H, W)`` clear rasters in the same stored units, for synthetic clouds).

    Radar is used when every triplet has it. Raises :class:`..errors.Cancelled` when ``cancelled()``
    turns true (nothing is returned).
    """
    config = config or ResidualConfig()
    if config.num_threads:
        torch.set_num_threads(int(config.num_threads))
    bands = triplets[0].cloudy.shape[0]
    radar_bands = triplets[0].radar.shape[0] if all(t.radar is not None for t in triplets) else 0
    scaling = FixedScaling.preset(config.preset, bands)
    source = CropSource(triplets, list(clear_images), config, radar_bands, scaling)
    torch.manual_seed(config.seed)
    device = select_device(config.device)
    net = ResidualGenerator(bands, radar_bands, config.depth, config.base, config.max_channels, config.radar_smooth,
                            start=config.start).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr, betas=(0.9, 0.999))
    rng = np.random.default_rng(config.seed)
    history = {"step": [], "loss": []}
    t0, c0 = time.perf_counter(), time.process_time()
    net.train()
    for step in range(config.steps):
        check_cancelled(cancelled)
        for group in opt.param_groups:
            group["lr"] = config.lr * 0.5 * (1.0 + math.cos(math.pi * step / config.steps))
        x, y, m = (t.to(device) for t in source.batch(rng))
        loss = carl_loss(net(x), x[:, :bands], y, m, config.target_weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history["step"].append(step)
        value = float(loss.detach())
        history["loss"].append(value)
        report(progress, (step + 1) / config.steps, f"step {step + 1}/{config.steps}: CARL {value:.4f}")
        if log and (step + 1) % 100 == 0:
            log(f"step {step + 1}/{config.steps}: CARL {np.mean(history['loss'][-100:]):.4f}")
    net.eval().cpu()
    return ResidualResult(net, config, radar_bands, history, time.perf_counter() - t0, time.process_time() - c0,
                          input_range(triplets, clear_images), describe_device(device))


@torch.no_grad()
def predict(network: ResidualGenerator, cloudy: np.ndarray, radar_db: np.ndarray | None = None,
            mask: np.ndarray | None = None, preset: str = PRESET) -> np.ndarray:
    """The network's output for one whole image in stored units (no tiling: for validation and tests);
    ``mask`` (True = cloud) for a ``start="fill"`` network."""
    if (network.start == "fill") != (mask is not None):
        raise InputError("A residual generator that starts from the fill needs the cloud mask; one that starts "
                         "from the input takes none.")
    scaling = FixedScaling.preset(preset, cloudy.shape[0])
    x = network_input(cloudy, radar_db, network.radar, scaling, mask)
    h, w = x.shape[-2:]
    m = network.tile_multiple
    ph, pw = (-h) % m, (-w) % m
    t = torch.from_numpy(x)[None]
    if ph or pw:
        t = torch.nn.functional.pad(t, [0, pw, 0, ph], mode="reflect")
    y = network.eval()(t)[0, :, :h, :w].numpy()
    return scaling.from_network(y).astype(np.float32)


def save_residual_model(path: str, result: ResidualResult, band_names: list, *, training: dict,
                        metrics: dict | None = None) -> str:
    """Write the model file (safetensors + JSON metadata: fixed scaling, radar channels, what it saw)."""
    net, cfg = result.network, result.config
    extra = (["cloud_mask"] if net.start == "fill" else []) + (
        [f"{RADAR_CHANNEL}:{k + 1}" for k in range(result.radar_bands)] + [RADAR_VALID_CHANNEL]
        if result.radar_bands else [])
    hp = {"bands": net.bands, "radar": net.radar, "depth": net.depth, "base": cfg.base,
          "max_channels": cfg.max_channels, "radar_smooth": net.radar_smooth, "start": net.start}
    meta = ModelMetadata(
        task=TASK, architecture=ARCHITECTURE, hyperparameters=hp, bands=list(band_names), extra_channels=extra,
        normalization=FixedScaling.preset(cfg.preset, net.bands).to_dict(), tile_size=256,
        training={**training, "config": asdict(cfg), "generator": "residual", "loss": "CARL (DSen2-CR)",
                  "radar_optional": bool(result.radar_bands), "device": result.device, "steps_per_second": round(result.steps_per_second, 3),
                  "seconds": round(result.seconds, 1), "cpu_seconds": round(result.cpu_seconds, 1),
                  "guide_kinds": {"optical": False, "radar": result.radar_bands},
                  "input_range": result.input_range or {}},
        metrics=metrics or {})
    return save_model(path, net, meta)


def train_triplet_folder(folder: str, out_path: str, bands, config: ResidualConfig | None = None, *,
                         clear_folder: str | None = None, band_names=None, progress: Progress = None,
                         cancelled: CancelCheck = None, log: Callable[[str], None] | None = None) -> ResidualResult:
    """Train a residual generator on every triplet of ``folder`` (:mod:`.triplets`: radar is used when the
    first triplet has its ``_s1.tif``, and then every triplet must) and, for synthetic clouds, on the clear
    rasters of ``clear_folder`` (same ``bands``); write it to ``out_path``. Nothing is written when the run
    is cancelled or fails."""
    import os

    from ..raster import raster_info
    from . import triplets as triplet_files

    ids = triplet_files.triplet_ids(folder)
    radar = os.path.isfile(os.path.join(folder, ids[0] + triplet_files.RADAR))
    data = triplet_files.read_triplets(folder, bands, radar=radar)
    clear = []
    if clear_folder:
        for name in sorted(os.listdir(clear_folder)):
            if name.lower().endswith((".tif", ".tiff")):
                clear.append(triplet_files.read_raster(os.path.join(clear_folder, name), bands))
        if not clear:
            raise InputError(f"Clear folder '{clear_folder}' holds no GeoTIFF (.tif) for synthetic clouds.")
    if log:
        log(f"{len(data)} triplet(s) from '{folder}'" + (" with radar" if radar else " without radar")
            + (f", {len(clear)} clear raster(s) for synthetic clouds" if clear else ""))
    result = train_residual(data, config, clear_images=clear, progress=progress, cancelled=cancelled, log=log)
    check_cancelled(cancelled)
    names = list(band_names) if band_names else [
        raster_info(os.path.join(folder, ids[0] + triplet_files.CLOUDY)).descriptions[b - 1] or f"band {b}"
        for b in bands]
    save_residual_model(out_path, result, names, training={
        "source": f"triplet folder '{os.path.basename(os.path.normpath(folder))}': {', '.join(ids)}",
        "data_summary": f"{len(data)} triplet(s)" + (f" + synthetic clouds over {len(clear)} clear raster(s)"
                                                     if clear else ""), "bands_read": list(bands)})
    return result
