"""Train the shipped fusion model models/pretrained/fusion_default.safetensors on the real NDVI series.

Run: .venv/bin/python benchmarks/fusion_train.py [STEPS] [--out PATH]  (360 steps: about 15 minutes on one CPU
thread; --out writes the model elsewhere, e.g. for a quick check with a few steps)
"""
import argparse
import json
import os
import tempfile
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import cloudfree_import  # noqa: E402,F401  (registers this checkout as the package `cloudfree`)

import torch  # noqa: E402

from cloudfree.models import fusion as fu  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "s2_ndvi_timeseries"
HOLDOUT_DATES_EVERY = 4   # every 4th clear date is never a clean target in training


def holdout_dates(cfg):
    data = fu.SeriesData(cfg)
    return data.clear_dates[1::HOLDOUT_DATES_EVERY]


def main(steps=360, out=None):
    torch.set_num_threads(1)
    cfg = fu.ndvi_series_config(str(DATA), mode="both", steps=steps, lr=5e-4, steps_per_epoch=40,
                                lr_halve_every_epochs=5, val_every=60, batch_size=4, tile=64, seed=0,
                                device="cpu", num_threads=1)
    cfg.holdout_dates = holdout_dates(cfg)
    out = out or ROOT / "models" / "pretrained" / fu.DEFAULT_MODEL_FILE
    t = time.time()

    def progress(fraction, message=None):
        if message and message.endswith("0/%d" % steps):
            print(message, flush=True)

    res = fu.train_fusion(cfg, str(out), progress=progress,
                          samples_dir=os.path.join(tempfile.gettempdir(), "cloudfree_fusion_samples"))
    print("seconds", time.time() - t)
    print(json.dumps(res.history, indent=1))
    print(json.dumps(res.metrics, indent=1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("steps", nargs="?", type=int, default=360)
    ap.add_argument("--out", help="model file to write (default: the shipped model)")
    args = ap.parse_args()
    main(args.steps, args.out)
