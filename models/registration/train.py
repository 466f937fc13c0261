"""Self-supervised training and fine-tuning of the CNN patch descriptor.

As in Ye et al. (GRSL 2018), seed patches are cut from the images, each seed is its own class,
and the class is expanded with random rotations, scales and radiometric changes.
:func:`train_descriptor` does the same with an equivalent metric-learning loss (InfoNCE over a
batch of seeds, two random augmentations per seed: each seed's augmented twin must be the
nearest of all the batch's descriptors), which needs no fixed number of classes.
:func:`fine_tune_on_reference` continues the training on the analyst's reference raster.
"""

from __future__ import annotations

import math
import time
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import InputError
from ..normalization import stretch, stretch_limits
from ..raster import RasterInfo, read_window, valid_mask
from ..runtime import check_cancelled, report
from ..windows import Window
from .describe import (
    DESCRIPTOR_ARCHITECTURE,
    DESCRIPTOR_TASK,
    PATCH_SIZE,
    SUPPORT,
    default_model_path,
    extract_patches,
    load_descriptor,
    standardise,
)


def prepare_training_image(img: np.ndarray) -> np.ndarray:
    """A training image stretched to 0..1 between its 2 and 98 percentiles (non-finite -> 2 %)."""
    img = np.asarray(img, dtype=np.float32)
    finite = np.isfinite(img)
    if not finite.any():
        raise InputError("A training image holds no finite values.")
    lo, hi = stretch_limits(img[finite])
    return stretch(np.where(finite, img, lo), lo, hi).astype(np.float32)


def augmented_views(rng: np.random.Generator, images: list, n: int, patch: int = PATCH_SIZE) -> tuple:
    """Two augmented views of ``n`` random seed patches: rotation jitter, scale, brightness, noise."""
    a_list, b_list = [], []
    for _ in range(n):
        img = images[rng.integers(len(images))]
        x, y, size = _seed(rng, img, patch)
        views = []
        base_angle = rng.uniform(0, 360)
        for _v in range(2):
            # keypoint localisation / orientation / scale errors, as between two real detections
            dx, dy = rng.normal(0, 0.7, 2) * size / 4
            ang = base_angle + rng.normal(0, 8.0)
            sc = size * math.exp(rng.normal(0, 0.08))
            p = extract_patches(img, np.array([[x + dx, y + dy]]), np.array([sc]), np.array([ang]), patch)[0]
            gain = math.exp(rng.normal(0, 0.3))
            gamma = math.exp(rng.normal(0, 0.2))
            p = np.clip(p, 0, None) ** gamma * gain + rng.normal(0, 0.1)
            p = p + rng.normal(0, 0.02 * (p.std() + 1e-3), p.shape)
            views.append(p)
        a_list.append(views[0])
        b_list.append(views[1])
    return standardise(np.stack(a_list)), standardise(np.stack(b_list))


def _seed(rng: np.random.Generator, img: np.ndarray, patch: int) -> tuple:
    """A random seed ``(x, y, size)`` of ``img`` whose patch is not flat (up to 20 tries)."""
    h, w = img.shape
    for _try in range(20):
        size = float(rng.uniform(3.0, 12.0))
        margin = SUPPORT * size * 1.2
        if w <= 2 * margin + 1 or h <= 2 * margin + 1:
            size = min(w, h) / (3 * SUPPORT)
            margin = SUPPORT * size * 1.2
        x, y = rng.uniform(margin, w - margin), rng.uniform(margin, h - margin)
        p0 = extract_patches(img, np.array([[x, y]]), np.array([size]), np.array([0.0]), patch)[0]
        if p0.std() > 1e-3:
            break
    return x, y, size


def retrieval_top1(net, prepared: list, n: int = 256, seed: int = 1, device: str = "cpu") -> float:
    """Fraction of ``n`` augmented seed pairs of ``prepared`` images whose twin is the nearest descriptor."""
    import torch

    a, b = augmented_views(np.random.default_rng(seed), prepared, n, PATCH_SIZE)
    net.eval()
    with torch.no_grad():
        za = net(torch.from_numpy(a)[:, None].to(device))
        zb = net(torch.from_numpy(b)[:, None].to(device))
        return float((torch.argmax(za @ zb.t(), dim=1) == torch.arange(len(za), device=device)).float().mean())


def train_descriptor(images: list, steps: int = 2000, *, batch_size: int = 64, lr: float = 2e-3,
                     temperature: float = 0.07, seed: int = 0, channels: Sequence[int] = (16, 32, 64, 128),
                     dim: int = 128, out_path: str | None = None, device: str = "cpu",
                     progress: Optional[Callable] = None, cancelled: Optional[Callable] = None,
                     init_from: str | None = None) -> tuple:
    """Train the descriptor CNN on random seed patches of ``images`` (list of 2-D arrays).

    ``init_from``: a descriptor model file to start from (fine-tuning; its architecture wins
    over ``channels`` and ``dim``).

    Each step draws ``batch_size`` seeds; every seed gives two augmented views (the seed's own
    "class", as in Ye et al.) and the InfoNCE loss asks each view's descriptor to be nearest to
    its twin among all the batch. Images are contrast-stretched (2-98 percentile) like the
    detection images of the registration. Returns ``(module, metadata)``; saves a CloudFree
    model file when ``out_path`` is given. Reports ``metrics["top1"]``: the fraction of a
    held-out batch whose twin is the nearest descriptor.
    """
    import torch

    from ..weights import save_model

    prepared = _training_images(images)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net, hyper = _starting_network(init_from, channels, dim, device)
    t0 = time.time()
    losses = _train_steps(net, rng, prepared, steps, batch_size, lr, temperature, device, progress, cancelled)
    net.eval()
    top1 = retrieval_top1(net, prepared, 256, seed + 1, device)  # held-out check on fresh seeds
    meta = _metadata(hyper, prepared, losses, top1, time.time() - t0,
                     {"steps": steps, "batch_size": batch_size, "lr": lr, "temperature": temperature, "seed": seed})
    if out_path:
        save_model(out_path, net, meta)
    return net, meta


def _training_images(images: list) -> list:
    if not images:
        raise InputError("train_descriptor needs at least one image.")
    prepared = [prepare_training_image(im) for im in images]
    for im in prepared:
        if im.ndim != 2 or min(im.shape) < 48:
            raise InputError("Training images must be 2-D and at least 48x48 pixels.")
    return prepared


def _starting_network(init_from: str | None, channels: Sequence[int], dim: int, device: str) -> tuple:
    """``(network, hyper-parameters)``: loaded from ``init_from``, or new."""
    from ..networks import build

    if init_from:
        start, start_meta = load_descriptor(init_from)
        return start.to(device), dict(start_meta.hyperparameters)
    hyper = {"channels": list(channels), "dim": int(dim), "patch": PATCH_SIZE}
    return build(DESCRIPTOR_ARCHITECTURE, hyper).to(device), hyper


def _train_steps(net, rng, prepared: list, steps: int, batch_size: int, lr: float, temperature: float,
                 device: str, progress, cancelled) -> list:
    """The InfoNCE training loop (AdamW, one-cycle schedule); returns the loss of every step."""
    import torch

    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    losses = []
    net.train()
    for step in range(steps):
        check_cancelled(cancelled)
        a, b = augmented_views(rng, prepared, batch_size, PATCH_SIZE)
        za = net(torch.from_numpy(a)[:, None].to(device))
        zb = net(torch.from_numpy(b)[:, None].to(device))
        logits = za @ zb.t() / temperature
        target = torch.arange(len(za), device=device)
        loss = 0.5 * (torch.nn.functional.cross_entropy(logits, target)
                      + torch.nn.functional.cross_entropy(logits.t(), target))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if step % 10 == 0:
            report(progress, (step + 1) / steps, f"descriptor step {step + 1}/{steps} loss {loss.item():.3f}")
    return losses


def _metadata(hyper: dict, prepared: list, losses: list, top1: float, seconds: float, settings: dict):
    from ..weights import ModelMetadata

    return ModelMetadata(
        task=DESCRIPTOR_TASK, architecture=DESCRIPTOR_ARCHITECTURE, hyperparameters=hyper, bands=["grey"],
        normalization={"stretch": "percentile 2-98 to 0..1", "patch": "per-patch standardisation",
                       "support": SUPPORT},
        tile_size=PATCH_SIZE,
        training={**settings, "images": [list(im.shape) for im in prepared],
                  "loss": "InfoNCE on augmented seed pairs",
                  "final_loss": float(np.mean(losses[-20:])) if losses else None,
                  "seconds": round(seconds, 1)},
        metrics={"top1_heldout_256": top1},
    )


def fine_tune_on_reference(reference: RasterInfo, band: int, steps: int, out_path: str, *,
                           init_from: str | None = None, max_size: int = 4096, progress=None,
                           cancelled=None) -> str:
    """Fine-tune the descriptor on the analyst's reference raster (Ye et al. fine-tune on the image pair).

    Reads one band (a central window of at most ``max_size`` pixels a side, native resolution,
    nodata and NaN set to the band median) and continues training from ``init_from`` (default:
    the shipped descriptor). Returns the path of the fine-tuned model file.
    """
    if not 1 <= band <= reference.band_count:
        raise InputError(f"Layer '{reference.name}' has {reference.band_count} band(s); band {band} does not exist.")
    w, h = min(reference.width, max_size), min(reference.height, max_size)
    window = Window((reference.width - w) // 2, (reference.height - h) // 2, w, h)
    img = read_window(reference.dataset(), window, [band])
    valid = valid_mask(img, [reference.nodata[band - 1]])
    if valid.mean() < 0.05:
        raise InputError(f"Layer '{reference.name}' has too few valid pixels to fine-tune the descriptor on.")
    img[0, ~valid] = np.median(img[0, valid])
    train_descriptor([img[0]], steps, out_path=out_path, init_from=init_from or default_model_path(),
                     progress=progress, cancelled=cancelled)
    return out_path
