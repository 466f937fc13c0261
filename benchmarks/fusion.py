"""Benchmark of multi-date fusion (models/fusion/) on real Sentinel-2 data.

    .venv/bin/python benchmarks/fusion.py [all|paper|real|weak|speed] [--model PATH]

- paper: the paper's protocol on held-out clear NDVI (held-out rows 71-100 of the clear dates
  never used as clean targets): K = 2, 4, 6 noisy copies with synthetic clouds + gaps covering
  25 % and 50 % of the pixels; L1 of the fused vs the clean image. The quality net gets no
  masks; the baselines get the masks. Also a zero-shot 6-band reflectance row (s2_cloudy_scene).
- real: real clouds on the NDVI series: for every clear date, the other dates within +-20 days
  are fused and compared with that clear date.
- weak: segmentation accuracy / mIoU / fwIoU on the held-out rows for fused, mean and clean inputs.
- speed: MP/s of fuse_arrays (quality) for K = 2 and K = 6 vs the raw network throughput; peak RSS.
"""

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import cloudfree_import  # noqa: E402,F401  (registers this checkout as the package `cloudfree`)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cloudfree.models import fusion as fu  # noqa: E402
from cloudfree.models.clouds import CloudParams, simulate_clouds_array  # noqa: E402
from cloudfree.models.weights import load_model, read_metadata, shipped_model  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
SERIES = DATA / "s2_ndvi_timeseries"


def l1(a, b):
    ok = np.isfinite(a).all(0) & np.isfinite(b).all(0)
    return float(np.abs(a - b)[:, ok].mean())


def noisy(clean, K, total, rng, ndvi=True):
    """K copies with clouds (80 % of ``total``) and gaps (20 %)."""
    C = clean.shape[0]
    out, valid, cloud = [], [], []
    for _ in range(K):
        p = CloudParams(seed=int(rng.integers(2 ** 31)), coverage=0.8 * total, missing_data=0.2 * total,
                        thickness=float(rng.uniform(0.5, 1.0)), shadows=not ndvi, scale=20.0)
        colour = np.full(C, rng.uniform(-0.03, 0.08), np.float32) if ndvi else None
        img, m = simulate_clouds_array(clean, p, cloud_colour=colour)
        out.append(img)
        valid.append(m != 3)
        cloud.append((m == 1) | (m == 2))
    return np.stack(out), np.stack(valid), np.stack(cloud)


def run_methods(model, dates, valid, cloud, stats=None):
    res = {}
    res["quality (no masks)"] = fu.fuse_arrays(dates, valid, "quality", model, stats=stats)[0]
    res["quality + masks"] = fu.fuse_arrays(dates, valid, "quality", model, cloud_mask=cloud, stats=stats)[0]
    for m in ("mean", "median", "best"):
        res[f"{m} + masks"] = fu.fuse_arrays(dates, valid, m, cloud_mask=cloud)[0]
    res["mean (no masks)"] = fu.fuse_arrays(dates, valid, "mean")[0]
    return res


def paper(model, meta):
    cfg = fu.ndvi_series_config(str(SERIES))
    data = fu.SeriesData(cfg)
    r0 = data.train_rows
    held = meta.training.get("holdout_dates") or data.clear_dates
    rng = np.random.default_rng(2024)
    table = {}
    for total in (0.25, 0.5):
        for K in (2, 4, 6):
            acc = {}
            for d in held:
                clean = data.dates[d, :, r0:]
                for _ in range(3):
                    x, v, c = noisy(clean, K, total, rng)
                    for name, f in run_methods(model, x, v, c).items():
                        acc.setdefault(name, []).append(l1(f, clean))
            table[f"ndvi K={K} cover={int(total * 100)}%"] = {k: round(float(np.mean(v)), 4) for k, v in acc.items()}
    # zero-shot on 6-band reflectance (clear 128 x 128 crop of s2_cloudy_scene)
    from osgeo import gdal
    sc = gdal.Open(str(DATA / "s2_cloudy_scene" / "scene.tif")).ReadAsArray().astype(np.float32)
    mk = gdal.Open(str(DATA / "s2_cloudy_scene" / "mask.tif")).ReadAsArray()
    clear = np.isin(mk, (1, 2, 3))
    best, where = -1, (0, 0)
    for y in range(0, 512 - 128 + 1, 32):
        for x in range(0, 512 - 128 + 1, 32):
            f = clear[y:y + 128, x:x + 128].mean()
            if f > best:
                best, where = f, (y, x)
    y, x = where
    clean = sc[:, y:y + 128, x:x + 128]
    for total in (0.25, 0.5):
        for K in (2, 4, 6):
            acc = {}
            for _ in range(3):
                xx, v, c = noisy(clean, K, total, rng, ndvi=False)
                for name, f in run_methods(model, xx, v, c).items():
                    acc.setdefault(name, []).append(l1(f, clean))
            table[f"s2 6-band K={K} cover={int(total * 100)}%"] = {k: round(float(np.mean(v)), 4) for k, v in acc.items()}
    table["_notes"] = {"ndvi_clean_dates": held, "ndvi_rows": [r0, data.H], "s2_crop_yx": where,
                       "s2_crop_clear_fraction": round(float(best), 3), "seeds_per_cell": 3}
    return table


def real(model):
    cfg = fu.ndvi_series_config(str(SERIES))
    data = fu.SeriesData(cfg)
    meta = json.loads((SERIES / "meta.json").read_text())
    t = [dt.datetime.fromisoformat(s) for s in meta["timestamps"]]
    r0 = data.train_rows
    acc_block, acc_full, groups = {}, {}, 0
    for ref in data.clear_dates:
        idx = [k for k in range(len(t)) if k != ref and abs((t[k] - t[ref]).days) <= 20]
        if len(idx) < 2 or not data.cloud[idx].any():
            continue
        groups += 1
        x, v, c = data.dates[idx], data.valid[idx], data.cloud[idx]
        res = run_methods(model, x, v, c)
        clean = data.dates[ref]
        for name, f in res.items():
            acc_full.setdefault(name, []).append(l1(f, clean))
            acc_block.setdefault(name, []).append(l1(f[:, r0:], clean[:, r0:]))
    return {"groups": groups, "window_days": 20,
            "L1 held-out rows": {k: round(float(np.mean(v)), 4) for k, v in acc_block.items()},
            "L1 whole image": {k: round(float(np.mean(v)), 4) for k, v in acc_full.items()}}


def weak(model_path):
    seg_path = os.path.splitext(model_path)[0] + ".segmentation.safetensors"
    if not os.path.isfile(seg_path):
        return {"skipped": "no segmentation network beside the model"}
    seg, smeta = load_model(seg_path, task=fu.SEG_TASK)
    model = fu.FusionModel.load(model_path)
    cfg = fu.ndvi_series_config(str(SERIES))
    data = fu.SeriesData(cfg)
    stats = smeta.training["statistics"]
    lut = {v: i for i, v in enumerate(smeta.training["class_values"])}
    truth = np.vectorize(lambda v: lut.get(int(v), -1))(data.labels).astype(np.int64)
    r0 = data.train_rows
    n = len(lut)

    def predict(img):  # img (C, H, W) in data units
        xn = fu.to_network_space(img[None], stats)[0]
        with torch.no_grad():
            return fu.segment(seg, torch.from_numpy(xn)[None])[0].argmax(0).numpy()

    preds = {"fused (quality)": [], "mean + masks": [], "clean date": []}
    truths = []
    N = data.dates.shape[0]
    for start in range(0, N - 5, 6):
        idx = list(range(start, start + 6))
        x, v, c = data.dates[idx], data.valid[idx], data.cloud[idx]
        preds["fused (quality)"].append(predict(fu.fuse_arrays(x, v, "quality", model, stats=stats)[0])[r0:])
        preds["mean + masks"].append(predict(fu.fuse_arrays(x, v, "mean", cloud_mask=c)[0])[r0:])
        truths.append(truth[r0:])
    clean_truth = []
    for d in data.clear_dates:
        preds["clean date"].append(predict(data.dates[d])[r0:])
        clean_truth.append(truth[r0:])
    out = {}
    for name, p in preds.items():
        tt = clean_truth if name == "clean date" else truths
        s = fu.segmentation_scores(np.concatenate([a.ravel() for a in p]), np.concatenate([a.ravel() for a in tt]), n)
        out[name] = {k: round(v, 4) for k, v in s.items()}
    out["_notes"] = {"rows": [r0, data.H], "groups_of_6_consecutive_dates": len(truths),
                     "clean_dates": len(clean_truth), "classes": smeta.training["class_values"]}
    return out


def speed_one(model_path, K, size=1024):
    torch.set_num_threads(1)
    model = fu.FusionModel.load(model_path)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(K, 1, size, size)).astype(np.float32)
    fu.fuse_arrays(x[:, :, :256, :256], None, "quality", model)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    fu.fuse_arrays(x, None, "quality", model, tile=256, overlap=32)
    sec = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # raw network: K forward passes over 256 x 256 tiles covering the same area (no halo)
    net = model.net
    tiles = (size // 256) ** 2
    inp = torch.zeros(K, 2, 256, 256)
    t = time.perf_counter()
    with torch.no_grad():
        for _ in range(tiles):
            net(inp)
    raw = time.perf_counter() - t
    mp = size * size / 1e6
    return {"K": K, "size": size, "seconds": round(sec, 2), "fused_MP_per_s": round(mp / sec, 4),
            "raw_net_MP_per_s_per_date": round(mp * K / raw, 4), "raw_net_fused_MP_per_s": round(mp / raw, 4),
            "overhead_vs_raw": round(sec / raw, 2), "peak_rss_MB": round(rss1 / 1024, 1),
            "rss_growth_MB": round((rss1 - rss0) / 1024, 1), "threads": 1}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", nargs="?", default="all")
    ap.add_argument("--model", default=shipped_model(fu.DEFAULT_MODEL_FILE))
    ap.add_argument("--K", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.what == "speed_one":
        print(json.dumps(speed_one(args.model, args.K)))
        return
    meta = read_metadata(args.model)
    model = fu.FusionModel.load(args.model)
    out = {}
    if args.what in ("all", "paper"):
        out["paper_protocol_L1"] = paper(model, meta)
        print(json.dumps(out["paper_protocol_L1"], indent=1), flush=True)
    if args.what in ("all", "real"):
        out["real_clouds_L1"] = real(model)
        print(json.dumps(out["real_clouds_L1"], indent=1), flush=True)
    if args.what in ("all", "weak"):
        out["weak_segmentation"] = weak(args.model)
        print(json.dumps(out["weak_segmentation"], indent=1), flush=True)
    if args.what in ("all", "speed"):
        out["speed"] = []
        for K in (2, 6):  # fresh processes so peak memory is per run
            r = subprocess.run([sys.executable, __file__, "speed_one", "--K", str(K), "--model", args.model],
                               capture_output=True, text=True, check=True)
            out["speed"].append(json.loads(r.stdout.strip().splitlines()[-1]))
        print(json.dumps(out["speed"], indent=1), flush=True)


if __name__ == "__main__":
    main()
