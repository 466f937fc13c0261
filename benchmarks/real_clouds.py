"""Cloud removal on real clouds: cross-validation by whole triplet on ``sen12mscr_triplets``.

For each of ``--folds`` folds, the residual generator (:mod:`models.cloud_removal.residual`) is trained
on the other triplets (real clouds, radar dropped from half the crops) and on synthetic clouds of real
shapes over ``sen12mscr_ts/clear_patches``; each held-out triplet is then cleared

- ``input``: the cloudy image untouched;
- ``fill``: the unmixing fill (the shipped ``cloud_removal_small`` through ``remove_clouds`` with the
  triplet's mask: today's default);
- ``dcp``: the dark-channel prior (He et al. 2009) over the whole image (a thin-cloud method);
- ``unguided``: the residual model without radar (``--start input``: no mask, every pixel generated;
  ``--start fill``: the unmixing fill of the mask plus the learned correction);
- ``radar``: the same model with the triplet's Sentinel-1 VV/VH;
- ``unguided+mask`` / ``radar+mask`` (``--start input``): the model's pixels inside the mask, the input
  outside (what ``removeclouds`` writes when it is given the mask).

Figures, the SEN12MS-CR protocol: reflectance (blue, green, red, NIR) clipped to [0, 1], data range 1;
PSNR / SSIM / SAM over the whole image, PSNR inside the cloud mask, SSIM over the clear pixels. Medians
over the held-out triplets and, per method, the count of triplets where it beats every other method
(by whole-image PSNR). Training CPU seconds and steps/s are printed per fold.

    .venv/bin/python benchmarks/real_clouds.py --steps 400 --folds 4 --json docs/real_clouds.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
TRIPLETS = DATA / "sen12mscr_triplets"
CLEAR_PATCHES = DATA / "sen12mscr_ts" / "clear_patches"
BANDS = [2, 3, 4, 8]           # B2, B3, B4, B8 of the 13 L1C bands
FILL_MODEL = ROOT / "models" / "pretrained" / "cloud_removal_small.safetensors"

sys.path.insert(0, str(ROOT / "scripts"))
import cloudfree_import  # noqa: E402,F401  (registers this checkout as the package `cloudfree`)

from cloudfree.models import metrics, raster  # noqa: E402
from cloudfree.models.cloud_removal import infer, residual  # noqa: E402
from cloudfree.models.cloud_removal import triplets as triplets_mod  # noqa: E402

from paired_haze import dark_channel_dehaze  # noqa: E402


def clear_images(bands=BANDS) -> list:
    return [triplets_mod.read_raster(str(CLEAR_PATCHES / f), bands)
            for f in sorted(os.listdir(CLEAR_PATCHES)) if f.endswith(".tif")]


def reflectance(x: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(x) * 1e-4, 0.0, 1.0)


def figures(out: np.ndarray, t) -> dict:
    a, b, m = reflectance(out), reflectance(t.clear), t.mask
    f = {"psnr": metrics.psnr(a, b, 1.0), "ssim": metrics.ssim(a, b, 1.0), "sam": metrics.sam_degrees(a, b)}
    f["psnr_cloud"] = metrics.psnr(a, b, 1.0, mask=m) if m.any() else None
    f["ssim_clear"] = metrics.ssim(a, b, 1.0, mask=~m) if (~m).any() else None
    return f


def fill_baseline(t, folder: str) -> np.ndarray:
    """The shipped unmixing fill through remove_clouds with the triplet's mask; the input where it refuses."""
    if not t.mask.any():
        return t.cloudy
    src = os.path.join(folder, f"{t.id}_in.tif")
    msk = os.path.join(folder, f"{t.id}_mask.tif")
    out = os.path.join(folder, f"{t.id}_fill.tif")
    raster.write_array(src, t.cloudy)
    raster.write_array(msk, t.mask.astype(np.uint8))
    try:
        infer.remove_clouds(raster.raster_info(src), out, str(FILL_MODEL), mask=raster.raster_info(msk),
                            mask_values=(1,))
    except Exception as exc:  # an overcast image has no clear pixel for the fill's statistics
        print(f"  fill refused on {t.id}: {exc}")
        return t.cloudy
    from osgeo import gdal
    return gdal.Open(out).ReadAsArray().astype(np.float32)


def composite(out: np.ndarray, t) -> np.ndarray:
    return np.where(t.mask[None], out, t.cloudy)


def run_fold(held: list, train: list, clear: list, config, folder: str) -> dict:
    res = residual.train_residual(train, config, clear_images=clear)
    print(f"  trained on {len(train)} triplets: {config.steps} steps in {res.seconds:.0f} s "
          f"({res.cpu_seconds:.0f} CPU s, {res.steps_per_second:.2f} steps/s)")
    rows = {}
    for t in held:
        mask = t.mask if config.start == "fill" else None
        unguided = residual.predict(res.network, t.cloudy, None, mask)
        radar = residual.predict(res.network, t.cloudy, t.radar, mask)
        outs = {"input": t.cloudy, "fill": fill_baseline(t, folder), "dcp": dehaze(t.cloudy),
                "unguided": unguided, "radar": radar}
        if mask is None:
            outs.update({"unguided+mask": composite(unguided, t), "radar+mask": composite(radar, t)})
        rows[t.id] = {"cloud_fraction": round(t.cloud_fraction, 3), **{k: figures(v, t) for k, v in outs.items()}}
        r = rows[t.id]
        print(f"  {t.id:>5} cloud {t.cloud_fraction:4.2f}  " + "  ".join(
            f"{k} {r[k]['psnr']:.2f}/{_fmt(r[k]['psnr_cloud'])}" for k in outs))
    return {"rows": rows, "seconds": res.seconds, "cpu_seconds": res.cpu_seconds,
            "steps_per_second": res.steps_per_second}


def dehaze(cloudy: np.ndarray) -> np.ndarray:
    return dark_channel_dehaze(reflectance(cloudy).astype(np.float32)) * 1e4


def _fmt(v) -> str:
    return "  -  " if v is None else f"{v:.2f}"


def summarise(rows: dict) -> dict:
    methods = [k for k in next(iter(rows.values())) if k != "cloud_fraction"]
    out = {}
    for m in methods:
        s = {}
        for key in ("psnr", "ssim", "sam", "psnr_cloud", "ssim_clear"):
            vals = [r[m][key] for r in rows.values() if r[m][key] is not None and np.isfinite(r[m][key])]
            s[key] = statistics.median(vals) if vals else None
        s["wins"] = sum(1 for r in rows.values() if max(methods, key=lambda k: r[k]["psnr"]) == m)
        cloudy = [r for r in rows.values() if r["cloud_fraction"] > 0]
        s["wins_cloud"] = sum(1 for r in cloudy if r[m]["psnr_cloud"] is not None
                              and max((k for k in methods if r[k]["psnr_cloud"] is not None),
                                      key=lambda k: r[k]["psnr_cloud"]) == m)
        out[m] = s
    radar_better = [r["radar"]["psnr_cloud"] - r["unguided"]["psnr_cloud"] for r in rows.values()
                    if r["radar"]["psnr_cloud"] is not None]
    out["radar_minus_unguided_cloud_db"] = {"median": statistics.median(radar_better),
                                            "wins": sum(d > 0 for d in radar_better), "of": len(radar_better)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-synthetic", action="store_true")
    ap.add_argument("--start", choices=("input", "fill"), default="input",
                    help="input: no mask, clear = input + correction; fill: the mask's unmixing fill + correction")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--json")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(2)
    ids = triplets_mod.triplet_ids(str(TRIPLETS))
    all_t = {t.id: t for t in triplets_mod.read_triplets(str(TRIPLETS), BANDS)}
    clear = [] if args.no_synthetic else clear_images()
    config = residual.ResidualConfig(steps=args.steps, seed=args.seed, start=args.start, lr=args.lr)
    rows, folds = {}, []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for k, held_ids in enumerate(triplets_mod.folds(ids, args.folds, args.seed)):
            print(f"fold {k + 1}/{args.folds}: held out {', '.join(held_ids)}")
            fold = run_fold([all_t[i] for i in held_ids], [all_t[i] for i in ids if i not in held_ids], clear,
                            config, folder)
            rows.update(fold.pop("rows"))
            folds.append({"held_out": held_ids, **fold})
    summary = summarise(rows)
    print(f"\nmedians over {len(rows)} held-out triplets ({time.perf_counter() - t0:.0f} s in all)")
    print(f"{'method':>14} {'PSNR':>6} {'SSIM':>6} {'SAM':>6} {'PSNRcl':>7} {'SSIMclr':>7} {'wins':>5} {'winsCl':>6}")
    for m, s in summary.items():
        if m.startswith("radar_minus"):
            continue
        print(f"{m:>14} {_fmt(s['psnr']):>6} {s['ssim']:.3f} {_fmt(s['sam']):>6} {_fmt(s['psnr_cloud']):>7} "
              f"{s['ssim_clear'] if s['ssim_clear'] is None else round(s['ssim_clear'], 3)!s:>7} "
              f"{s['wins']:>5} {s['wins_cloud']:>6}")
    d = summary["radar_minus_unguided_cloud_db"]
    print(f"radar - unguided inside clouds: median {d['median']:+.2f} dB, better on {d['wins']} of {d['of']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"config": vars(args), "summary": summary, "folds": folds,
                                               "triplets": rows}, indent=1))


if __name__ == "__main__":
    main()
