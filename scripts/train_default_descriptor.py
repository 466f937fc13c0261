"""Train the CNN patch descriptor that ships in models/pretrained/ (reproducible record).

Self-supervised like Ye et al. (GRSL 2018): seed patches cut from real images, each seed its
own class, expanded by random rotation / scale / radiometric augmentation; InfoNCE loss
(see models/registration/train.py). The registration benchmark pair (s2_registration_pair) is NOT
used for training; it only serves as a second held-out retrieval check.

Training data (all real, from ../shared/data; see its README for sources and licences),
whole images; the clouds are scattered (no 256x256 window is even 90 % clear), so the pixels
that are not clear (mask dilated by 3 px) are filled by inpainting (cv2.INPAINT_TELEA) from the
surrounding clear pixels: seeds there see smooth fill, never cloud texture:
- s2_cloudy_scene/scene.tif bands 1, 3, 4, 5 (blue, red, NIR, SWIR1), 512x512; clear = mask 1, 2, 3;
- l8_cloudy_scene/bgrn.tif bands 2, 4 (green, NIR), 627x603; clear = QA cloud confidence < medium
  (the pre-collection cirrus bits flag a third of the scene and are ignored);
- s2_ndvi_timeseries/ndvi: the first 6 fully clear dates (whole 100x101 images).
Held out (never read during training):
- s2_cloud_pair/clean.tif bands 3, 4, 8 (green, red, NIR), 256x256;
- s2_registration_pair/reference_20160608.tif, a 1024x1024 window (x 600-1624, y 800-1824).
Held-out figure: top-1 retrieval of augmented twins among 256 seeds (same augmentation as
training, fixed seed), trained net vs the same architecture with random weights.

    .venv/bin/python scripts/train_default_descriptor.py [--steps 800] [--out models/pretrained/registration_descriptor.safetensors]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def engine():
    sys.path.insert(0, str(ROOT / "scripts"))
    import cloudfree_import  # noqa: F401  (registers this checkout as the package `cloudfree`)

    import cloudfree.models.registration as registration

    return registration


def _read(path, band=None):
    from osgeo import gdal

    ds = gdal.Open(str(path))
    if band is None:
        return ds.ReadAsArray().astype(np.float32)
    return ds.GetRasterBand(band).ReadAsArray().astype(np.float32)


def fill_unclear(img, clear, dilate=3):
    """Inpaint the pixels that are not clear (dilated) from the clear ones."""
    import cv2

    bad = cv2.dilate((~clear).astype(np.uint8), np.ones((2 * dilate + 1,) * 2, np.uint8)) > 0
    lo, hi = np.percentile(img[~bad], [0.5, 99.5])
    u8 = np.clip((img - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    filled = cv2.inpaint(u8, bad.astype(np.uint8), 5, cv2.INPAINT_TELEA).astype(np.float32)
    out = img.copy()
    out[bad] = lo + filled[bad] / 255.0 * (hi - lo)
    return out, float(bad.mean())


def training_images():
    images, record = [], []
    # s2_cloudy_scene: mask 4 cloud, 0 shadow, 1/2/3 clear
    scene = DATA / "s2_cloudy_scene"
    m = _read(scene / "mask.tif")
    clear = (m >= 1) & (m <= 3)
    for band, name in [(1, "blue"), (3, "red"), (4, "NIR"), (5, "SWIR1")]:
        img, frac = fill_unclear(_read(scene / "scene.tif", band), clear)
        images.append(img)
        record.append({"file": "s2_cloudy_scene/scene.tif", "band": band, "name": name,
                       "inpainted_fraction": round(frac, 3)})
    # l8_cloudy_scene: BQA bits 14-15 cloud confidence, 12-13 cirrus confidence
    l8 = DATA / "l8_cloudy_scene"
    qa = _read(l8 / "qa.tif").astype(np.uint16)
    clear = ((qa >> 14) & 3) < 2
    for band, name in [(2, "green"), (4, "NIR")]:
        img, frac = fill_unclear(_read(l8 / "bgrn.tif", band), clear)
        images.append(img)
        record.append({"file": "l8_cloudy_scene/bgrn.tif", "band": band, "name": name,
                       "inpainted_fraction": round(frac, 3)})
    # clear NDVI dates (cloud mask all zero)
    ndvi_files = []
    for p in sorted(glob.glob(str(DATA / "s2_ndvi_timeseries" / "ndvi" / "ndvi_*.tif"))):
        stamp = os.path.basename(p)[len("ndvi_"):-len(".tif")]
        cm = DATA / "s2_ndvi_timeseries" / "cloud_mask" / f"clm_{stamp}.tif"
        if cm.exists() and not _read(cm).any():
            img = _read(p)
            if np.isfinite(img).all() and img.std() > 0.02:
                images.append(img)
                ndvi_files.append(f"s2_ndvi_timeseries/ndvi/{os.path.basename(p)}")
        if len(ndvi_files) >= 6:
            break
    record.append({"file": "s2_ndvi_timeseries/ndvi (clear dates)", "band": 1, "name": "NDVI",
                   "dates": ndvi_files})
    return images, record


def heldout_images():
    clean = DATA / "s2_cloud_pair" / "clean.tif"
    a = [_read(clean, b) for b in (3, 4, 8)]
    ref = _read(DATA / "s2_registration_pair" / "reference_20160608.tif")[800:1824, 600:1624]
    return {"s2_cloud_pair/clean.tif bands 3,4,8": a,
            "s2_registration_pair/reference_20160608.tif window x600-1624 y800-1824": [ref]}


def retrieval_top1(registration, net, images, n=256, seed=123):
    """Top-1 retrieval of augmented twins among ``n`` seeds of raw ``images`` (the engine's held-out check)."""
    prepared = [registration.prepare_training_image(im) for im in images]
    return registration.retrieval_top1(net, prepared, n, seed)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "models" / "pretrained" / "registration_descriptor.safetensors"))
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    registration = engine()
    from cloudfree.models.networks import build
    from cloudfree.models.weights import save_model

    images, record = training_images()
    print(f"{len(images)} training images: " + json.dumps(
        [{k: (len(v) if k == "dates" else v) for k, v in r.items()} for r in record]))
    t0 = time.time()

    def progress(frac, msg=""):
        if msg and int(msg.split()[2].split("/")[0]) % 100 == 1:
            print(f"  {msg} ({time.time() - t0:.0f} s)", flush=True)

    net, meta = registration.train_descriptor(images, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                                              progress=progress)
    held = {}
    rand = build(registration.DESCRIPTOR_ARCHITECTURE, meta.hyperparameters)
    torch.manual_seed(0)
    for name, imgs in heldout_images().items():
        held[name] = {"top1_trained": retrieval_top1(registration, net, imgs),
                      "top1_random_init": retrieval_top1(registration, rand.eval(), imgs)}
        print(f"held-out {name}: top-1 {held[name]['top1_trained']:.3f} "
              f"(random-init net {held[name]['top1_random_init']:.3f})")
    meta.training.update({
        "script": "scripts/train_default_descriptor.py",
        "data": record,
        "clouds": "non-clear pixels (dilated 3 px) inpainted with cv2.INPAINT_TELEA",
        "n_training_images": len(images),
        "not_used": "s2_registration_pair (benchmark) and s2_cloud_pair (held-out)",
    })
    meta.metrics.update({"heldout_top1_256_seeds": held,
                         "note": "top-1 = fraction of 256 augmented seed patches whose augmented twin "
                                 "is the nearest descriptor (chance 1/256)"})
    save_model(args.out, net, meta)
    print(f"saved {args.out} ({os.path.getsize(args.out) / 1e6:.2f} MB) in {time.time() - t0:.0f} s; "
          f"training-set top1 {meta.metrics['top1_heldout_256']:.3f}")


if __name__ == "__main__":
    main()
