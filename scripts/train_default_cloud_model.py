"""Train the cloud-removal model that ships in models/pretrained/ (reproducible record).

Training data (all real, from ../shared/data; see its README for sources and licences):
- s2_cloudy_scene/scene.tif bands 1-4 (blue, green, red, NIR), pixels its reference mask
  calls clear (values 1, 2, 3), with synthetic clouds made on the fly;
- l8_cloudy_scene/bgrn.tif bands 1-4 (blue, green, red, NIR DNs), pixels its QA band calls
  clear (cloud confidence < medium and cirrus confidence < high, dilated by 3 px), with
  synthetic clouds.
Each raster's last 20 % of rows is the validation block (model selection only).
s2_cloud_pair is the held-out test: no pixel of it is read here.

Generator: ``unmix_blend`` (cloud_removal.generator_spec): the ground under thin clouds and
shadows is recovered by linear unmixing, thick parts get the smooth fill, and the pix2pix U-Net
(bilinear-resize decoder) sets per masked pixel how much to trust the unmixed ground; no free
residual. Masked pixels weigh 4x in the L1 term; the generator of the best validation score
is kept (see cloud_removal.TrainConfig). The synthetic clouds' colour varies smoothly band by
band (cloud_tint 0-0.15, the default), as real thick clouds do. Augmentation: rotations and
flips. (A run with per-band contrast augmentation, synthetic={"band_contrast": [0.6, 1.4]},
scored lower on validation and was not shipped.)

    .venv/bin/python scripts/train_default_cloud_model.py --steps 3000 --out models/pretrained/cloud_removal_small.safetensors

Cross-scene experiment (how a recipe generalises to a place it never saw): train on one scene
only and validate on the whole of the other, e.g. ``--validate-on s2 --steps 1500 --work
/tmp/xs``. No trained step beat the untrained generator by much, and free residuals
(``--residual-scale 0.25``; the generators ``unmix_residual`` and ``fill_residual``, since removed)
lowered the scores (README).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def engine():
    sys.path.insert(0, str(ROOT / "scripts"))
    import cloudfree_import  # noqa: F401  (registers this checkout as the package `cloudfree`)

    import cloudfree.models.cloud_removal as cr
    import cloudfree.models.raster as raster

    return cr, raster


def landsat_clear_mask(raster, qa_path: Path, out_path: Path, dilate: int = 3) -> Path:
    """1 = clear, 0 = cloud/cirrus (BQA: cloud confidence bits 14-15, cirrus bits 12-13)."""
    from scipy import ndimage

    info = raster.raster_info(str(qa_path))
    qa = raster.read_window(raster.open_raster(str(qa_path)), (0, 0, info.width, info.height), dtype=np.uint16)[0]
    cloud = ((qa >> 14) & 3) >= 2
    cirrus = ((qa >> 12) & 3) == 3
    fill = (qa & 1) == 1
    bad = ndimage.binary_dilation(cloud | cirrus, iterations=dilate) | fill
    raster.write_array(str(out_path), (~bad).astype(np.uint8)[None], like=info, dtype="uint8")
    return out_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--size", default="small")
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(ROOT / "models" / "pretrained" / "cloud_removal_small.safetensors"))
    ap.add_argument("--work", default=str(ROOT / ".train_cloud"))
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--report", default=None)
    ap.add_argument("--validate-on", choices=["s2", "l8"], default=None,
                    help="cross-scene experiment: train on the other scene only and validate on the whole of "
                         "this one (the shipped model trains on both and validates on their last rows)")
    ap.add_argument("--band-contrast", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                    help="per-band contrast augmentation range (off in the shipped recipe)")
    ap.add_argument("--generator", default="unmix_blend", help="generator kind (cloud_removal.GENERATORS)")
    ap.add_argument("--residual-scale", type=float, default=0.0, help="unmix_blend: bound of the free residual")
    args = ap.parse_args()
    cr, raster = engine()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    l8_mask = landsat_clear_mask(raster, DATA / "l8_cloudy_scene" / "qa.tif", work / "l8_clear_mask.tif")
    roles = {"s2": "train+validation", "l8": "train+validation"}
    if args.validate_on:
        roles = {k: "validation" if k == args.validate_on else "train" for k in roles}
    sources = [
        cr.TrainingSource(clear=str(DATA / "s2_cloudy_scene" / "scene.tif"), bands=[1, 2, 3, 4],
                          mask=str(DATA / "s2_cloudy_scene" / "mask.tif"), clear_values=(1, 2, 3),
                          name="s2_cloudy_scene (Sentinel-2, 512x512, clear pixels)", role=roles["s2"]),
        cr.TrainingSource(clear=str(DATA / "l8_cloudy_scene" / "bgrn.tif"), bands=[1, 2, 3, 4],
                          mask=str(l8_mask), clear_values=(1,),
                          name="l8_cloudy_scene (Landsat 8 DN, 627x603, clear pixels from BQA)", role=roles["l8"]),
    ]
    synthetic = {"band_contrast": list(args.band_contrast)} if args.band_contrast else {}
    config = cr.TrainConfig(sources=sources, band_names=["blue", "green", "red", "nir"], size=args.size,
                            tile=args.tile, batch_size=args.batch, steps=args.steps, upsample="resize",
                            generator=args.generator, residual_scale=args.residual_scale,
                            synthetic=synthetic,
                            mask_l1_weight=4.0, val_every=250, val_tiles=8, val_repeats=3, keep_best=True,
                            checkpoint_every=250, seed=0, device=args.device, num_threads=args.threads)
    t0 = time.time()

    def progress(fraction, message=None):
        step = int(round(fraction * args.steps))
        if message and (step % 50 == 0 or step == args.steps):
            print(f"[{time.time() - t0:7.0f}s] {message}", flush=True)

    result = cr.train_cloud_removal(config, args.out, checkpoint_dir=str(work / "checkpoints"),
                                    resume_from=str(work / "checkpoints") if args.resume else None,
                                    progress=progress, log=lambda m: print(m, flush=True))
    print(json.dumps({"model": result.model_path, "steps": result.steps, "seconds": result.seconds,
                      "steps_per_second": result.steps_per_second, "metrics": result.metrics}, indent=1))
    if args.report:
        cr.report_html(result.history, result.samples, args.report)


if __name__ == "__main__":
    main()
