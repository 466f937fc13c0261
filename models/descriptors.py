"""Learned patch descriptor for image registration (the CNN half of Ye et al., GRSL 2018).

Ye, Yuanxin et al., "Remote Sensing Image Registration Using Convolutional Neural Network
Features", IEEE Geoscience and Remote Sensing Letters 15(2), 2018, fuse SIFT with features of
a CNN fine-tuned on the images themselves: seed patches are cut from the images, each seed is
its own class, and the class is expanded with random rotations, scales and radiometric
changes. :func:`train_descriptor` does the same with an equivalent metric-learning loss
(InfoNCE over a batch of seeds, two random augmentations per seed: each seed's augmented twin
must be the nearest of all the batch's descriptors), which needs no fixed number of classes.

The network (:class:`DescriptorCNN`) is small enough for a CPU: 64x64 grey patch in, 128-d
L2-normalised vector out. Patches are sampled around SIFT keypoints, rotated to the keypoint's
orientation and scaled to its size (:func:`extract_patches`), so the descriptor inherits
SIFT's rotation and scale invariance; each patch is standardised to zero mean and unit
variance, which removes brightness and contrast differences.

Model files use the CloudFree format of :mod:`weights` with ``task = "registration_descriptor"``
and ``architecture = "descriptor_cnn"``; :func:`load_descriptor` rebuilds it from the registry
:data:`ARCHITECTURES` of this module (the shared ``networks`` registry does not know it).

Pure Python + torch + OpenCV; no qgis imports.
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable, Optional, Sequence

import numpy as np

from .errors import InputError, ModelFileError
from .runtime import check_cancelled, report

TASK = "registration_descriptor"
ARCHITECTURE = "descriptor_cnn"
PATCH_SIZE = 64
SUPPORT = 6.0  # a patch covers SUPPORT x keypoint size (diameter) image pixels
DEFAULT_WEIGHTS_NAME = "registration_descriptor.safetensors"


# --------------------------------------------------------------------------- patches


def extract_patches(image: np.ndarray, xy: np.ndarray, size: np.ndarray | None = None,
                    angle: np.ndarray | None = None, patch: int = PATCH_SIZE, support: float = SUPPORT,
                    min_side: float = 16.0) -> np.ndarray:
    """Sample one ``patch x patch`` float32 patch per keypoint, oriented and scaled like it.

    ``xy`` is ``(N, 2)`` in array-index pixel coordinates (x = column, y = row, integer = pixel
    centre); ``size`` the keypoint diameters (default: ``patch / support``, i.e. one image pixel
    per patch pixel) and ``angle`` the orientations in degrees (OpenCV's convention, direction
    ``(cos a, sin a)`` in x-right/y-down coordinates; default 0). Outside the image is 0.
    One ``cv2.remap`` call samples all patches (bilinear).
    """
    import cv2

    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    n = len(xy)
    if n == 0:
        return np.zeros((0, patch, patch), np.float32)
    size = np.full(n, patch / support) if size is None else np.asarray(size, dtype=np.float64)
    angle = np.zeros(n) if angle is None else np.asarray(angle, dtype=np.float64)
    side = np.maximum(support * size, min_side)
    step = side / patch
    g = (np.arange(patch) - (patch - 1) / 2.0)
    u, v = np.meshgrid(g, g)  # u along x (columns), v along y (rows)
    phi = np.radians(angle)
    c, s = (np.cos(phi) * step)[:, None, None], (np.sin(phi) * step)[:, None, None]
    mx = xy[:, 0, None, None] + c * u - s * v
    my = xy[:, 1, None, None] + s * u + c * v
    out = np.empty((n, patch, patch), np.float32)
    img = np.ascontiguousarray(image, dtype=np.float32)
    chunk = max(1, 30000 // patch)  # remap maps must stay under 32767 rows
    for i in range(0, n, chunk):
        sl = slice(i, i + chunk)
        out[sl] = cv2.remap(img, mx[sl].reshape(-1, patch).astype(np.float32),
                            my[sl].reshape(-1, patch).astype(np.float32), cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0).reshape(-1, patch, patch)
    return out


def standardise(patches: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per patch: brightness and contrast invariance."""
    p = patches.astype(np.float32)
    m = p.mean(axis=(-2, -1), keepdims=True)
    sd = p.std(axis=(-2, -1), keepdims=True)
    return (p - m) / np.maximum(sd, 1e-3)


# --------------------------------------------------------------------------- network


def _torch():
    import torch

    return torch


def _build_classes():
    torch = _torch()
    from torch import nn

    class DescriptorCNN(nn.Module):
        """64x64x1 patch -> ``dim``-d unit vector.

        A 5x5 stride-2 convolution, then one stride-2 3x3 convolution per further channel count
        (BatchNorm + ReLU after each), a dropout and a linear layer: with the default channels
        (16, 32, 64, 128) about 9 MFLOP per patch, so thousands of keypoints stay cheap on a CPU.
        """

        def __init__(self, channels: Sequence[int] = (16, 32, 64, 128), dim: int = 128, patch: int = PATCH_SIZE):
            super().__init__()
            layers = [nn.Conv2d(1, channels[0], 5, stride=2, padding=2, bias=False), nn.BatchNorm2d(channels[0]),
                      nn.ReLU(inplace=True)]
            cin = channels[0]
            for cout in channels[1:]:
                layers += [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout),
                           nn.ReLU(inplace=True)]
                cin = cout
            self.features = nn.Sequential(*layers)
            side = patch // 2 ** len(channels)
            self.head = nn.Sequential(nn.Flatten(), nn.Dropout(0.1), nn.Linear(cin * side * side, dim))
            self.patch = patch

        def forward(self, x):
            return torch.nn.functional.normalize(self.head(self.features(x)), dim=1)

    return DescriptorCNN


_CLASSES = {}


def descriptor_class():
    if "DescriptorCNN" not in _CLASSES:
        _CLASSES["DescriptorCNN"] = _build_classes()
    return _CLASSES["DescriptorCNN"]


def build(architecture: str, hyperparameters: dict):
    """Registry of this module's architectures (``descriptor_cnn``)."""
    if architecture != ARCHITECTURE:
        raise KeyError(architecture)
    return descriptor_class()(**hyperparameters)


# --------------------------------------------------------------------------- training


def _augment_batch(rng: np.random.Generator, images: list, n: int, patch: int):
    """Two augmented views of ``n`` random seed patches: rotation jitter, scale, brightness, noise."""
    a_list, b_list = [], []
    for _ in range(n):
        img = images[rng.integers(len(images))]
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


def _prepare_image(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float32)
    finite = np.isfinite(img)
    if not finite.any():
        raise InputError("A training image holds no finite values.")
    lo, hi = np.percentile(img[finite], [2, 98])
    out = np.clip((np.where(finite, img, lo) - lo) / max(hi - lo, 1e-6), 0, 1)
    return out.astype(np.float32)


def train_descriptor(images: list, steps: int = 2000, *, batch_size: int = 64, lr: float = 2e-3,
                     temperature: float = 0.07, seed: int = 0, channels: Sequence[int] = (16, 32, 64, 128),
                     dim: int = 128, out_path: str | None = None, device: str = "cpu",
                     progress: Optional[Callable] = None, cancelled: Optional[Callable] = None,
                     init_from: str | None = None):
    """Train :class:`DescriptorCNN` on random seed patches of ``images`` (list of 2-D arrays).

    ``init_from``: a descriptor model file to start from (fine-tuning; its architecture wins
    over ``channels`` and ``dim``).

    Each step draws ``batch_size`` seeds; every seed gives two augmented views (the seed's own
    "class", as in Ye et al.) and the InfoNCE loss asks each view's descriptor to be nearest to
    its twin among all the batch. Images are contrast-stretched (2-98 percentile) like the
    detection images of :mod:`registration`. Returns ``(module, metadata)``; saves a CloudFree
    model file when ``out_path`` is given. Reports ``metrics["top1"]``: the fraction of a
    held-out batch whose twin is the nearest descriptor.
    """
    torch = _torch()
    from .weights import ModelMetadata, save_model

    if not images:
        raise InputError("train_descriptor needs at least one image.")
    prepared = [_prepare_image(im) for im in images]
    for im in prepared:
        if im.ndim != 2 or min(im.shape) < 48:
            raise InputError("Training images must be 2-D and at least 48x48 pixels.")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    hyper = {"channels": list(channels), "dim": int(dim), "patch": PATCH_SIZE}
    if init_from:
        start, start_meta = load_descriptor(init_from)
        hyper = dict(start_meta.hyperparameters)
        net = start.to(device)
    else:
        net = build(ARCHITECTURE, hyper).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1), pct_start=0.1)
    t0 = time.time()
    losses = []
    net.train()
    for step in range(steps):
        check_cancelled(cancelled)
        a, b = _augment_batch(rng, prepared, batch_size, PATCH_SIZE)
        ta = torch.from_numpy(a)[:, None].to(device)
        tb = torch.from_numpy(b)[:, None].to(device)
        za, zb = net(ta), net(tb)
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
    net.eval()
    # held-out check on fresh seeds
    eval_rng = np.random.default_rng(seed + 1)
    a, b = _augment_batch(eval_rng, prepared, 256, PATCH_SIZE)
    with torch.no_grad():
        za = net(torch.from_numpy(a)[:, None].to(device))
        zb = net(torch.from_numpy(b)[:, None].to(device))
        top1 = float((torch.argmax(za @ zb.t(), dim=1) == torch.arange(len(za), device=device)).float().mean())
    meta = ModelMetadata(
        task=TASK, architecture=ARCHITECTURE, hyperparameters=hyper, bands=["grey"],
        normalization={"stretch": "percentile 2-98 to 0..1", "patch": "per-patch standardisation",
                       "support": SUPPORT},
        tile_size=PATCH_SIZE,
        training={"steps": steps, "batch_size": batch_size, "lr": lr, "temperature": temperature, "seed": seed,
                  "images": [list(im.shape) for im in prepared], "loss": "InfoNCE on augmented seed pairs",
                  "final_loss": float(np.mean(losses[-20:])) if losses else None,
                  "seconds": round(time.time() - t0, 1)},
        metrics={"top1_heldout_256": top1},
    )
    if out_path:
        save_model(out_path, net, meta)
    return net, meta


# --------------------------------------------------------------------------- loading and inference


def default_weights_path() -> str:
    from .weights import shipped_model

    return shipped_model(DEFAULT_WEIGHTS_NAME)


def load_descriptor(path: str | None = None, device: str = "cpu"):
    """Load a descriptor model file; clear :class:`ModelFileError` when it is missing or wrong."""
    from .weights import read_metadata

    path = path or default_weights_path()
    if not os.path.isfile(path):
        raise ModelFileError(
            f"The CNN descriptor model file '{path}' does not exist; method 'sift_cnn' needs it. "
            "Train one with models.descriptors.train_descriptor(...) or use method 'sift'."
        )
    from safetensors.torch import load_file

    name = os.path.basename(path)
    meta = read_metadata(path)
    if meta.task != TASK:
        raise ModelFileError(f"Model file '{name}' is a '{meta.task}' model; a '{TASK}' model is needed here.")
    try:
        net = build(meta.architecture, meta.hyperparameters)
    except KeyError as exc:
        raise ModelFileError(f"Model file '{name}' uses unknown architecture '{meta.architecture}'.") from exc
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"Model file '{name}' has invalid hyper-parameters ({exc}).") from exc
    state = load_file(path, device="cpu")
    expected = net.state_dict()
    bad = [k for k in expected if k not in state or state[k].shape != expected[k].shape]
    bad += [k for k in state if k not in expected]
    if bad:
        raise ModelFileError(f"Model file '{name}' does not match its architecture ({', '.join(bad[:5])}).")
    net.load_state_dict(state, strict=True)
    net.to(device).eval()
    return net, meta


def cnn_descriptors(net, image: np.ndarray, xy: np.ndarray, size: np.ndarray, angle: np.ndarray,
                    batch: int = 256, device: str = "cpu") -> np.ndarray:
    """``(N, dim)`` L2-normalised descriptors of the keypoints of a 0..1 stretched ``image``."""
    torch = _torch()
    patches = standardise(extract_patches(image, xy, size, angle, PATCH_SIZE))
    out = []
    with torch.no_grad():
        for i in range(0, len(patches), batch):
            t = torch.from_numpy(patches[i:i + batch])[:, None].to(device)
            out.append(net(t).cpu().numpy())
    if not out:
        return np.zeros((0, 128), np.float32)
    d = np.concatenate(out).astype(np.float32)
    return d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)


def fine_tune_on_reference(reference, band: int, steps: int, out_path: str, *, init_from: str | None = None,
                           max_size: int = 4096, progress=None, cancelled=None):
    """Fine-tune the descriptor on the analyst's reference raster (Ye et al. fine-tune on the image pair).

    Reads one band (a central window of at most ``max_size`` pixels a side, native resolution,
    nodata and NaN set to the band median) and continues training from ``init_from`` (default:
    the shipped descriptor). Returns the path of the fine-tuned model file.
    """
    from .raster import open_raster, read_window, valid_mask

    w, h = min(reference.width, max_size), min(reference.height, max_size)
    x0, y0 = (reference.width - w) // 2, (reference.height - h) // 2
    img = read_window(open_raster(reference.path, reference.name), (x0, y0, w, h), [band])
    valid = valid_mask(img, [reference.nodata[band - 1]])
    if valid.mean() < 0.05:
        raise InputError(f"Layer '{reference.name}' has too few valid pixels to fine-tune the descriptor on.")
    img[0, ~valid] = np.median(img[0, valid])
    train_descriptor([img[0]], steps, out_path=out_path, init_from=init_from or default_weights_path(),
                     progress=progress, cancelled=cancelled)
    return out_path
