"""Cloud removal: quality on held-out real data against baselines, and speed against the raw network.

Quality (``quality``):
- real held-out pair ``s2_cloud_pair`` (never used in training or model selection): the
  cloudy date (bands 2, 3, 4, 8 = blue, green, red, NIR) with its mask as input, the clear
  date as reference; PSNR, SSIM, MAE and SAM inside the mask (cloud + shadow) and outside it
  (clear), for (a) the cloudy input as is, (b) biharmonic inpainting of the masked pixels
  (``skimage.restoration.inpaint_biharmonic``), (c) the shipped model through ``remove_clouds``;
- synthetic clouds (5 seeds, coverage 0.3) over the held-out clear date, same three methods,
  reference = the clear date itself.
PSNR/SSIM data range: per band, max - min of the reference over the compared pixels.

Paired thin haze (``paired``): hazy/clear pairs built from the clear imagery of real scenes
(``benchmarks/paired_haze.py``: training scenes ``l8_landcover`` and BigEarthNet ``ben0``-``ben3``;
held-out scenes ``ben4``, ``ben5`` and ``s2_multidate_stack`` 2015-07-11, never seen in training),
a pix2pix model trained through ``cloudfree:traincloudremoval`` with its default settings and
only ``--steps`` chosen (a fixed CPU budget), then ``cloudfree:removeclouds`` without a mask on each
held-out hazy image; PSNR/SSIM (reflectance, data range 1.0) against the clear image for the
hazy input as is, the dark-channel prior (He et al. 2009) and the shipped mask-guided model with a
mask covering the whole image. One training run per ``--seeds`` value; medians over the runs, each
run kept in the JSON, with the share of each scene's pixels outside the model's training range.
Prints training steps/s.

Speed (``speed``): for the ``small`` and ``full`` generator, end-to-end ``remove_clouds`` on a
raster built from real imagery (disk to disk, with a mask) against the raw generator forward
pass on the same number of tiles in memory; ratio and peak RSS, each size in its own process.

pix2pix speed (``pix2pix-speed``): for the pix2pix generator, small and full, training steps/s of a
whole ``train_cloud_removal`` run on one hazy/clear pair (setup and one validation included)
against the raw G + D step on random batches of the same shape, and ``remove_clouds`` MP/s
without a mask against the raw forward pass on the same tiles (untrained weights: speed only).

    .venv/bin/python benchmarks/cloud_removal.py quality
    .venv/bin/python benchmarks/cloud_removal.py speed --size 2048 --repeats 3
    .venv/bin/python benchmarks/cloud_removal.py paired --steps 1500
    .venv/bin/python benchmarks/cloud_removal.py pix2pix-speed --steps 100 --size 1024
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from mosaic import clear_date_mosaic  # benchmarks/ is on the path when a benchmark runs

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
PAIR = DATA / "s2_cloud_pair"
BANDS = [2, 3, 4, 8]
MODEL = ROOT / "models" / "pretrained" / "cloud_removal_small.safetensors"


def engine():
    sys.path.insert(0, str(ROOT / "scripts"))
    import cloudfree_import  # noqa: F401  (registers this checkout as the package `cloudfree`)

    from cloudfree.models import cloud_removal, clouds, comparison, raster

    return cloud_removal, clouds, comparison, raster


def inpaint(raster, cloudy_path: str, mask_path: str, values, out_path: str) -> str:
    from skimage.restoration import inpaint_biharmonic

    info = raster.raster_info(cloudy_path)
    img = raster.read_window(raster.open_raster(cloudy_path), (0, 0, info.width, info.height), dtype=np.float64)
    m = np.isin(raster.read_window(raster.open_raster(mask_path), (0, 0, info.width, info.height))[0], values)
    filled = inpaint_biharmonic(np.moveaxis(img, 0, -1), m, channel_axis=-1)
    raster.write_array(out_path, np.moveaxis(filled, -1, 0).astype(info.dtype), like=info)
    return out_path


def figures(comparison, raster, image: str, reference: str, mask: str, values) -> dict:
    rep = comparison.compare_rasters(raster.raster_info(image), raster.raster_info(reference),
                                     mask=raster.raster_info(mask), mask_values=values)
    o = rep["overall"]
    return {"psnr": o["psnr"], "ssim": o["ssim"], "mae": o["mae"], "sam": o["sam_degrees"], "n": rep["n_pixels"]}


def evaluate(cr, comparison, raster, cloudy: str, clear: str, mask: str, cloud_values, clear_values, tmp: str,
             tag: str) -> dict:
    out = {}
    inpainted = inpaint(raster, cloudy, mask, cloud_values, os.path.join(tmp, f"{tag}_inpaint.tif"))
    generated = os.path.join(tmp, f"{tag}_model.tif")
    cr.remove_clouds(raster.raster_info(cloudy), generated, str(MODEL), mask=raster.raster_info(mask),
                     mask_values=cloud_values, options=cr.RemovalOptions(device="cpu"))
    for name, path in (("cloudy input", cloudy), ("biharmonic inpainting", inpainted), ("CloudFree model", generated)):
        out[name] = {"inside mask": figures(comparison, raster, path, clear, mask, cloud_values),
                     "outside mask": figures(comparison, raster, path, clear, mask, clear_values)}
    return out


def quality() -> dict:
    cr, clouds, comparison, raster = engine()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        # the real pair, reduced to the model's bands
        from osgeo import gdal

        cloudy, clear = os.path.join(tmp, "cloudy.tif"), os.path.join(tmp, "clear.tif")
        for src, dst in ((PAIR / "cloudy.tif", cloudy), (PAIR / "clean.tif", clear)):
            gdal.Translate(dst, str(src), bandList=BANDS)
        results["real held-out pair (s2_cloud_pair)"] = evaluate(
            cr, comparison, raster, cloudy, clear, str(PAIR / "mask.tif"), (1, 2), (0,), tmp, "real")
        # synthetic clouds over the held-out clear date
        per_seed = []
        info = raster.raster_info(clear)
        for seed in range(5):
            c, m = os.path.join(tmp, f"syn{seed}.tif"), os.path.join(tmp, f"syn{seed}_mask.tif")
            clouds.simulate_clouds(info, c, m, clouds.CloudParams(seed=100 + seed, coverage=0.3, thickness=0.8,
                                                                  shadows=True))
            per_seed.append(evaluate(cr, comparison, raster, c, clear, m, (1, 2), (0,), tmp, f"syn{seed}"))
        merged = {}
        for method in per_seed[0]:
            merged[method] = {}
            for region in per_seed[0][method]:
                merged[method][region] = {k: float(np.mean([r[method][region][k] for r in per_seed]))
                                          for k in per_seed[0][method][region]}
        results["synthetic clouds over the held-out clear date (5 seeds, mean)"] = merged
    return results


TRAINING_SUMMARY = (
    "Real imagery only, with synthetic clouds made on the fly (CloudFree's simulator): the clear pixels of "
    "s2_cloudy_scene/scene.tif bands 1-4 (Sentinel-2 blue, green, red, NIR; clear = reference mask 1, 2, 3) and "
    "of l8_cloudy_scene/bgrn.tif bands 1-4 (Landsat 8 blue, green, red, NIR DNs; clear = BQA cloud confidence "
    "below medium and cirrus below high, dilated 3 px). Each raster's last 20 % of rows was the validation block "
    "(model selection only). Held-out test, never read in training or selection: s2_cloud_pair. Generator "
    "unmix_blend (linear unmixing of thin clouds and shadows, smooth fill elsewhere, the U-Net sets the per-pixel "
    "trust in the unmixed ground; no free residual), synthetic clouds tinted band by band (cloud_tint 0-0.15), "
    "3000 steps, scripts/train_default_cloud_model.py.")


def record(results: dict) -> None:
    """Store the held-out figures in the shipped model (tensors unchanged)."""
    from cloudfree.models import weights

    meta = weights.read_metadata(str(MODEL))
    training = dict(meta.training, data_summary=TRAINING_SUMMARY,
                    held_out_test="s2_cloud_pair (cloudy.tif + mask.tif as input, clean.tif as reference; "
                                  "bands 2, 3, 4, 8)")
    metrics = dict(meta.metrics, held_out=results,
                   held_out_note="PSNR/SSIM data range per band = reference max - min over the compared pixels; "
                                 "'inside mask' = cloud + shadow pixels, 'outside mask' = clear pixels")
    weights.update_metadata(str(MODEL), training=training, metrics=metrics)
    print(f"recorded the held-out figures in {MODEL.name}")


def one_speed(size_name: str, raster_size: int, repeats: int) -> dict:
    import torch
    from osgeo import gdal

    cr, clouds, comparison, raster = engine()
    from cloudfree.models import runtime, weights

    gdal.SetCacheMax(256 * 2 ** 20)
    with tempfile.TemporaryDirectory() as tmp:
        # a large raster from real imagery: the held-out clear date mirrored into a mosaic
        big = clear_date_mosaic(raster, raster_size)
        img = raster.write_array(os.path.join(tmp, "big.tif"), big,
                                 geotransform=(500000, 10, 0, 5000000, 0, -10), crs_wkt="")
        msk = np.zeros((1, raster_size, raster_size), dtype=np.uint8)
        msk[0, raster_size // 4: raster_size // 2, raster_size // 4: raster_size // 2] = 1
        mask = raster.write_array(os.path.join(tmp, "mask.tif"), msk, geotransform=(500000, 10, 0, 5000000, 0, -10),
                                  crs_wkt="")
        if size_name == "small":
            model_path = str(MODEL)
        else:  # speed only: an untrained full-size generator with the same inputs
            from cloudfree.models.networks import build

            # the training recipe's decoder
            arch, hp = cr.generator_spec("unmix_blend", 5, 4, cr.MODEL_SIZES["full"], upsample="resize")
            G = build(arch, hp)
            meta = weights.ModelMetadata(task="cloud_removal", architecture=arch, hyperparameters=hp,
                                         bands=["blue", "green", "red", "nir"], extra_channels=["cloud_mask"],
                                         normalization=dict(cr.DEFAULT_NORMALIZATION), tile_size=256)
            model_path = weights.save_model(os.path.join(tmp, "full.safetensors"), G, meta)
        meta = weights.read_metadata(model_path)
        tile = meta.tile_size
        from cloudfree.models.tiling import TileLayout

        n_tiles = len(TileLayout(raster_size, tile, 32).starts()) ** 2
        model, _ = weights.load_model(model_path)
        e2e, raw = [], []
        for r in range(repeats):
            t0 = time.perf_counter()
            cr.remove_clouds(raster.raster_info(img), os.path.join(tmp, f"out{r}.tif"), model_path,
                             mask=raster.raster_info(mask), mask_values=(1,),
                             options=cr.RemovalOptions(overlap=32, batch_size=4, device="cpu"))
            e2e.append(time.perf_counter() - t0)
            x = torch.rand(4, 5, tile, tile)
            t0 = time.perf_counter()
            # the allocator settings remove_clouds' tiler runs under (see benchmarks/tiler.py)
            with runtime.steady_memory(), torch.inference_mode():
                for _ in range(0, n_tiles, 4):
                    model(x)
            raw.append(time.perf_counter() - t0)
    e, w = statistics.median(e2e), statistics.median(raw)
    mp = raster_size ** 2 / 1e6
    return {"model": size_name, "tile": tile, "raster": raster_size, "tiles": n_tiles, "e2e_s": e, "raw_s": w,
            "e2e_mp_per_s": mp / e, "raw_tiles_per_s": n_tiles / w, "ratio": w / e,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads(), "e2e_runs": e2e, "raw_runs": raw}


def pix2pix_speed(size_name: str, raster_size: int, repeats: int, steps: int) -> dict:
    """The pix2pix generator of one size: training steps/s against the raw G + D step, inference MP/s
    (``remove_clouds`` without a mask, disk to disk) against the raw forward pass on the same tiles."""
    import torch

    cr, _, _, raster = engine()
    from cloudfree.models import runtime, weights
    from cloudfree.models.normalization import FixedScaling
    from cloudfree.models.tiling import TileLayout

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import paired_haze as ph

    with tempfile.TemporaryDirectory() as tmp:
        cloudy, clear = ph.build(Path(tmp) / "data", copies=1)["train"][0]  # l8_landcover, 512 x 512
        cfg = cr.TrainConfig(sources=[cr.TrainingSource(clear=clear, cloudy=cloudy, name="l8")], generator="pix2pix",
                             size=size_name, steps=steps, val_every=steps, checkpoint_every=steps, num_samples=1,
                             device="cpu")
        t0 = time.perf_counter()
        cr.train_cloud_removal(cfg, os.path.join(tmp, "g.safetensors"), checkpoint_dir=os.path.join(tmp, "ck"))
        train_s = time.perf_counter() - t0
        # the peer: the same G and D steps on random batches of the same shape, nothing else
        p = cfg.resolved()
        tile, batch = p["tile"], cfg.batch_size
        from cloudfree.models.cloud_removal.generators import DISCRIMINATOR, build, discriminator_hyperparameters

        arch, hp = cr.generator_spec("pix2pix", 4, 4, p)
        G = build(arch, hp, paper_init=True)
        D = build(DISCRIMINATOR, discriminator_hyperparameters(4, 4, cfg.disc_base or p["base"], cfg.disc_layers, "instance"))
        og, od = (torch.optim.Adam(m.parameters(), 2e-4, betas=(0.5, 0.999)) for m in (G, D))
        x, y = torch.rand(batch, 4, tile, tile) * 2 - 1, torch.rand(batch, 4, tile, tile) * 2 - 1
        bce = torch.nn.BCEWithLogitsLoss()
        raw_steps = max(5, steps // 10)
        t0 = time.perf_counter()
        for _ in range(raw_steps):
            fake = G(x)
            od.zero_grad()
            real_logits, fake_logits = D(torch.cat([x, y], 1)), D(torch.cat([x, fake.detach()], 1))
            (0.5 * (bce(real_logits, torch.ones_like(real_logits)) + bce(fake_logits, torch.zeros_like(fake_logits)))
             ).backward()
            od.step()
            og.zero_grad()
            logits = D(torch.cat([x, fake], 1))
            (bce(logits, torch.ones_like(logits)) + 100 * (fake - y).abs().mean()).backward()
            og.step()
        raw_step_s = (time.perf_counter() - t0) / raw_steps
        # inference: an untrained generator of this size (speed only) on a mosaic of real imagery
        G.eval()
        meta = weights.ModelMetadata(task=cr.TASK, architecture=arch, hyperparameters=hp,
                                     bands=["blue", "green", "red", "nir"], extra_channels=[],
                                     normalization=FixedScaling.preset("reflectance", 4).to_dict(), tile_size=tile)
        model_path = weights.save_model(os.path.join(tmp, "speed.safetensors"), G, meta)
        big = clear_date_mosaic(raster, raster_size)
        img = raster.write_array(os.path.join(tmp, "big.tif"), big,
                                 geotransform=(500000, 10, 0, 5000000, 0, -10), crs_wkt="")
        n_tiles = len(TileLayout(raster_size, tile, 32).starts()) ** 2
        e2e, raw = [], []
        for r in range(repeats):
            t0 = time.perf_counter()
            cr.remove_clouds(raster.raster_info(img), os.path.join(tmp, f"out{r}.tif"), model_path,
                             options=cr.RemovalOptions(overlap=32, batch_size=4, device="cpu"))
            e2e.append(time.perf_counter() - t0)
            xb = torch.rand(4, 4, tile, tile)
            t0 = time.perf_counter()
            with runtime.steady_memory(), torch.inference_mode():
                for _ in range(0, n_tiles, 4):
                    G(xb)
            raw.append(time.perf_counter() - t0)
    mp = raster_size ** 2 / 1e6
    e, w = statistics.median(e2e), statistics.median(raw)
    return {"model": f"pix2pix {size_name}", "tile": tile, "train_steps": steps, "train_s": train_s,
            "train_steps_per_s": steps / train_s, "raw_train_steps_per_s": 1 / raw_step_s,
            "raster": raster_size, "tiles": n_tiles, "e2e_s": e, "raw_s": w, "e2e_mp_per_s": mp / e,
            "raw_mp_per_s": mp / w, "ratio": w / e,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "threads": torch.get_num_threads()}


def qgis_process(algorithm: str, *raw: str) -> dict:
    """Run one algorithm headless as an analyst would; ``raw`` are ``KEY=value`` arguments."""
    args = [str(ROOT / "scripts" / "qgis_process"), "--json", "run", algorithm, "--", *raw]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stdout + proc.stderr).strip().splitlines()[-1][:300]}
    return json.loads(proc.stdout)["results"]


def paired(steps: int, seeds: list) -> dict:
    """Train pix2pix on hazy/clear pairs of some scenes through Processing, once per seed; score it on others
    (medians over the seeds, every run kept)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import paired_haze as ph
    from osgeo import gdal

    _, _, comparison, raster = engine()
    tmp = Path(tempfile.mkdtemp(prefix="cloudfree-paired-"))
    pairs = ph.build(tmp / "data")

    def score(image: str, clear: str) -> dict:
        rep = comparison.compare_rasters(raster.raster_info(image), raster.raster_info(clear), data_range=1.0)
        return {"psnr": rep["overall"]["psnr"], "ssim": rep["overall"]["ssim"], "sam": rep["overall"]["sam_degrees"]}

    results = {"training": {"pairs": len(pairs["train"]), "steps": steps, "seeds": list(seeds), "runs": []}}
    for name, (hazy, clear) in pairs["test"].items():  # the peers: the same in every run
        info = raster.raster_info(hazy)
        row = {"hazy input": score(hazy, clear)}
        dcp = str(tmp / f"{name}_dcp.tif")
        raster.write_array(dcp, ph.dark_channel_dehaze(gdal.Open(hazy).ReadAsArray()), like=info)
        row["dark channel prior"] = score(dcp, clear)
        ones = raster.write_array(str(tmp / f"{name}_ones.tif"), np.ones((1, info.height, info.width), np.uint8),
                                  like=info)
        out = qgis_process("cloudfree:removeclouds", f"INPUT={hazy}", f"MASK={ones}", "MASK_VALUES=1",
                           f"OUTPUT={tmp / f'{name}_maskguided.tif'}")
        row["mask-guided (shipped, mask = all)"] = out if "error" in out else score(out["OUTPUT"], clear)
        row["pix2pix (trained here)"] = {"runs": []}
        results[name] = row
    for seed in seeds:
        model = tmp / f"pix2pix_seed{seed}.safetensors"
        t0 = time.perf_counter()
        trained = qgis_process("cloudfree:traincloudremoval", *[f"CLOUDY_LAYERS={c}" for c, _ in pairs["train"]],
                               *[f"CLEAR_LAYERS={c}" for _, c in pairs["train"]], f"STEPS={steps}", f"SEED={seed}",
                               f"OUTPUT_MODEL={model}", f"OUTPUT_REPORT={tmp / f'report_seed{seed}.html'}")
        train_s = time.perf_counter() - t0
        if "error" in trained:
            sys.exit(f"training failed: {trained['error']}")
        results["training"]["runs"].append({"seed": seed, "seconds": round(train_s, 1),
                                            "steps_per_s": round(steps / train_s, 3)})
        for name, (hazy, clear) in pairs["test"].items():
            out = qgis_process("cloudfree:removeclouds", f"INPUT={hazy}", f"MODEL={model}",
                               f"OUTPUT={tmp / f'{name}_pix2pix_seed{seed}.tif'}")
            run = out if "error" in out else {**score(out["OUTPUT"], clear), "seed": seed,
                                              "outside_training_range": float(out["OUTSIDE_TRAINING_RANGE"])}
            results[name]["pix2pix (trained here)"]["runs"].append(run)
    for name in pairs["test"]:
        row = results[name]["pix2pix (trained here)"]
        good = [r for r in row["runs"] if "psnr" in r]
        for key in ("psnr", "ssim", "sam", "outside_training_range"):
            if good:
                row[key] = statistics.median(r[key] for r in good)
    runs = results["training"]["runs"]
    results["training"]["steps_per_s"] = statistics.median(r["steps_per_s"] for r in runs)
    results["training"]["seconds"] = statistics.median(r["seconds"] for r in runs)
    results["folder"] = str(tmp)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["quality", "speed", "paired", "pix2pix-speed"])
    ap.add_argument("--steps", type=int, default=1500, help="paired: training steps (the fixed CPU budget)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="paired: one training run per seed")
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--models", nargs="+", default=["small", "full"])
    ap.add_argument("--record", action="store_true",
                    help="write the held-out figures into the shipped model's metadata")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        if args.one.startswith("pix2pix:"):
            print(json.dumps(pix2pix_speed(args.one.split(":")[1], args.size, args.repeats, args.steps)))
        else:
            print(json.dumps(one_speed(args.one, args.size, args.repeats)))
        return
    if args.what == "pix2pix-speed":
        for name in args.models:
            cmd = [sys.executable, __file__, "speed", "--one", f"pix2pix:{name}", "--size", str(args.size),
                   "--repeats", str(args.repeats), "--steps", str(args.steps)]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
            print(f"{r['model']} (tile {r['tile']}): training {r['train_steps_per_s']:.2f} steps/s over "
                  f"{r['train_steps']} steps (whole run; raw G + D step {r['raw_train_steps_per_s']:.2f}/s); "
                  f"removeclouds {r['e2e_mp_per_s']:.2f} MP/s without a mask on {r['raster']}^2 (raw forward "
                  f"{r['raw_mp_per_s']:.2f} MP/s, ratio {r['ratio']:.3f}); peak RSS {r['peak_rss_mb']:.0f} MB",
                  flush=True)
        return
    if args.what == "paired":
        res = paired(args.steps, args.seeds)
        t = res["training"]
        print(f"pix2pix trained on {t['pairs']} hazy/clear pairs, seeds {t['seeds']}: {t['steps']} steps in "
              f"{t['seconds']} s ({t['steps_per_s']} steps/s, through qgis_process; medians over the seeds)")
        for scene, rows in res.items():
            if scene in ("training", "folder"):
                continue
            print(scene)
            for method, f in rows.items():
                print(f"  {method:36s} " + (f"PSNR {f['psnr']:6.2f} dB  SSIM {f['ssim']:.3f}" if "psnr" in f
                                               else f"failed: {f['error']}")
                      + (f"  ({100 * f['outside_training_range']:.0f} % of the pixels outside the training range)"
                         if "outside_training_range" in f else ""))
        print(json.dumps(res, indent=1))
        return
    if args.what == "quality":
        res = quality()
        if args.record:
            record(res)
        for dataset, methods in res.items():
            print(dataset)
            for method, regions in methods.items():
                for region, f in regions.items():
                    print(f"  {method:22s} {region:13s} PSNR {f['psnr']:6.2f} dB  SSIM {f['ssim']:.3f}  "
                          f"MAE {f['mae']:.4f}  SAM {f['sam']:.2f} deg  ({int(f['n'])} px)")
        print(json.dumps(res, indent=1))
        return
    rows = []
    for name in args.models:
        cmd = [sys.executable, __file__, "speed", "--one", name, "--size", str(args.size), "--repeats", str(args.repeats)]
        rows.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1]))
        r = rows[-1]
        print(f"{name:5s} (tile {r['tile']}): {r['raster']}x{r['raster']} in {r['e2e_s']:.1f} s end to end "
              f"({r['e2e_mp_per_s']:.3f} MP/s) vs raw forward {r['raw_s']:.1f} s on {r['tiles']} tiles; "
              f"ratio {r['ratio']:.3f}; peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
