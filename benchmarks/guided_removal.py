"""Cloud removal guided by other dates and by Sentinel-1 radar, on real data held out from training.

Synthetic thick clouds (cover drawn in 20-60 %, opaque cores, no shadows; 3 seeds per target)
over a clear date; guides are other real dates of the same place with their real clouds masked,
or the Sentinel-1 patch of the same place. Inside the clouds: PSNR, SSIM, MAE and SAM (data range
per band = the reference's max - min inside the clouds) for

- no guide: the shipped mask-guided model (``unmix_blend``) with the mask, what removeclouds does
  without guides (4-band cases only: it was trained on blue, green, red, NIR), and biharmonic
  inpainting (every case);
- matched copy: the nearest clear guide date, colours matched per band to the target's clear
  pixels (:mod:`cloud_removal.baselines`);
- fusion: the per-pixel median of the target and the guide dates without their clouds;
- guided model: trained here, self-supervised (synthetic clouds over clear pixels, guides as
  they are), on other dates or places than the ones scored.

Data (``../shared/data``):

- optical guided model: trained on ``landsat_timeseries`` targets of 2008-2010 (red, NIR, SWIR1;
  Fmask: guides' cloud 4, shadow 2 and fill 255 masked), each with its two nearest other dates;
- scored on ``s2_multidate_stack`` (another sensor and place, never trained on: targets
  2015-07-11 and 2015-09-09, bands B02, B03, B04, B08; guides the other clear dates and the
  overcast ones with their s2cloudless masks) and on 2011 targets of ``landsat_timeseries``
  (the same place, later dates);
- radar guided model: trained on BigEarthNet ``ben0``-``ben3`` (S2 blue, green, red, NIR with
  their S1 VV/VH in dB), scored on ``ben4`` and ``ben5`` (other places);
- the real overcast dates of ``s2_multidate_stack`` (2015-07-31, 2015-08-20) have no reference:
  their quick-looks (input, no guide, matched copy, guided model) are written to ``--out``.

    .venv/bin/python benchmarks/guided_removal.py [--steps 1500] [--out /tmp/guided] [--record] [--reuse DIR]

``--record`` writes the two trained models into ``models/pretrained/`` with the figures in their
metadata.
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
sys.path.insert(0, str(ROOT / "scripts"))
import cloudfree_import  # noqa: E402,F401  (registers this checkout as the package `cloudfree`)

from cloudfree.models import cloud_removal as cr  # noqa: E402
from cloudfree.models import comparison, raster  # noqa: E402
from cloudfree.models.cloud_removal.baselines import fusion_composite, matched_copy_model  # noqa: E402
from cloudfree.models.cloud_removal.guides import Guide, acquisition_date  # noqa: E402
from cloudfree.models.clouds import CloudParams, simulate_clouds  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from cloud_removal import inpaint  # noqa: E402  (biharmonic inpainting, the no-guide peer)

S2 = DATA / "s2_multidate_stack"
LANDSAT = DATA / "landsat_timeseries"
BEN = DATA / "s1_s2_pairs"
S2_BANDS = [2, 3, 4, 8]
FMASK_UNUSABLE = (2, 4, 255)      # shadow, cloud, fill (snow and water are ground)
FMASK_CLEAR = (0, 1, 3)
SHIPPED = ROOT / "models" / "pretrained" / "cloud_removal_small.safetensors"
GUIDED_TINY = dict(depth=5, base=16, max_channels=128, tile=64, batch_size=8, val_every=100, checkpoint_every=10 ** 9,
                   num_samples=2, device="cpu")


# --------------------------------------------------------------------------- data
def landsat_dates() -> list:
    """``(date, image path, fmask path, clear fraction)`` of every Landsat date, in time order."""
    out = []
    for img in sorted(LANDSAT.glob("*.tif")):
        if img.name.endswith("_fmask.tif"):
            continue
        fmask = img.with_name(img.stem + "_fmask.tif")
        m = raster.read_window(raster.open_raster(str(fmask)), (0, 0, 61, 61))[0]
        out.append((acquisition_date(img.name), str(img), str(fmask), float(np.isin(m, FMASK_CLEAR).mean())))
    return sorted(out)


def landsat_guides(dates: list, k: int, count: int = 2) -> list:
    """The ``count`` nearest other dates with at least half their pixels usable, as optical guides."""
    target = dates[k][0]
    near = sorted((abs((d[0] - target).days), i) for i, d in enumerate(dates) if i != k and d[3] >= 0.5)
    return [Guide(dates[i][1], mask=dates[i][2], mask_values=FMASK_UNUSABLE, name=Path(dates[i][1]).stem)
            for _, i in near[:count]]


def s2_guides(target: str) -> list:
    """Every other S2 date as a guide, its s2cloudless mask marking its clouds (fully overcast dates left out)."""
    out = []
    for img in sorted(S2.glob("s2_*.tif")):
        if img.stem == target:
            continue
        mask = S2 / img.name.replace("s2_", "clm_")
        cloudy = raster.read_window(raster.open_raster(str(mask)), (0, 0, 100, 101))[0].mean()
        if cloudy < 0.95:
            out.append(Guide(str(img), mask=str(mask), mask_values=(1,), name=img.stem))
    return out


# --------------------------------------------------------------------------- training
def train_optical(folder: str, steps: int) -> tuple:
    """The optical guided model on Landsat targets of 2008-2010 that are at least 90 % clear."""
    dates = landsat_dates()
    sources = [cr.TrainingSource(clear=d[1], mask=d[2], clear_values=FMASK_CLEAR, name=Path(d[1]).stem,
                                 guides=landsat_guides(dates, k))
               for k, d in enumerate(dates) if d[0].year <= 2010 and d[3] >= 0.9]
    cfg = cr.TrainConfig(sources=sources, band_names=["red", "nir", "swir1"], steps=steps, **GUIDED_TINY)
    t0 = time.perf_counter()
    result = cr.train_cloud_removal(cfg, os.path.join(folder, "guided_optical.safetensors"))
    return result, len(sources), time.perf_counter() - t0


def train_radar(folder: str, steps: int) -> tuple:
    """The radar guided model on BigEarthNet ben0-ben3 (S2 with S1 VV/VH)."""
    sources = [cr.TrainingSource(clear=str(BEN / f"ben{k}_s2_bgrn.tif"), name=f"ben{k}",
                                 guides=[Guide(str(BEN / f"ben{k}_s1_vvvh.tif"), kind="radar", name=f"ben{k}_s1")])
               for k in range(4)]
    cfg = cr.TrainConfig(sources=sources, band_names=["blue", "green", "red", "nir"], steps=steps, **GUIDED_TINY)
    t0 = time.perf_counter()
    result = cr.train_cloud_removal(cfg, os.path.join(folder, "guided_radar.safetensors"))
    return result, len(sources), time.perf_counter() - t0


# --------------------------------------------------------------------------- scoring
def score(image: str, reference: str, mask: str) -> dict:
    rep = comparison.compare_rasters(raster.raster_info(image), raster.raster_info(reference),
                                     mask=raster.raster_info(mask), mask_values=(1,))
    o = rep["overall"]
    return {"psnr": o["psnr"], "ssim": o["ssim"], "mae": o["mae"], "sam": o["sam_degrees"]}


def one_case(tag: str, target: str, bands: list, guides: list, models: dict, folder: str, seed: int) -> dict:
    """Clouds over ``target`` (seeded), every method, figures inside the clouds."""
    src = raster.raster_info(target)
    clear = os.path.join(folder, f"{tag}_clear.tif")
    raster.write_array(clear, raster.read_window(src.dataset(), (0, 0, src.width, src.height), bands), like=src)
    clear_info = raster.raster_info(clear)
    cover = float(np.random.default_rng(seed).uniform(0.2, 0.6))
    cloudy, mask = os.path.join(folder, f"{tag}_cloudy.tif"), os.path.join(folder, f"{tag}_mask.tif")
    simulate_clouds(clear_info, cloudy, mask, CloudParams(seed=seed, coverage=cover, thickness=1.0, shadows=False,
                                                          scale=max(8.0, min(src.width, src.height) / 3)))
    cloudy_info, mask_info = raster.raster_info(cloudy), raster.raster_info(mask)
    guides = [Guide(g.path, g.kind, tuple(bands) if g.kind != "radar" else g.bands, g.mask, g.mask_values,
                    name=g.name) for g in guides]
    out, opts = {"cover": cover}, cr.RemovalOptions(device="cpu")
    out["cloudy input (nothing done)"] = score(cloudy, clear, mask)
    painted = inpaint(raster, cloudy, mask, (1,), os.path.join(folder, f"{tag}_inpaint.tif"))
    out["no guide (biharmonic inpainting)"] = score(painted, clear, mask)
    runs = {"no guide (shipped unmix_blend)": (str(SHIPPED), [])} if len(bands) == 4 else {}
    optical = [g for g in guides if g.kind != "radar"]
    if optical:
        runs["matched copy"] = (matched_copy_model(folder), optical)
    for name, path in models.items():
        runs[name] = (path, guides)
    for name, (model, used) in runs.items():
        path = os.path.join(folder, f"{tag}_{name.split()[0]}.tif")
        cr.remove_clouds(cloudy_info, path, model, mask=mask_info, mask_values=(1,), guides=used, options=opts)
        out[name] = score(path, clear, mask)
    if optical:
        path = os.path.join(folder, f"{tag}_fusion.tif")
        fusion_composite(cloudy_info, path, optical, mask=mask_info, mask_values=(1,))
        out["fusion (median of the dates)"] = score(path, clear, mask)
    return out


def cases(models: dict) -> dict:
    """Every held-out case: S2 (another sensor and place), Landsat 2011, radar on ben4/ben5."""
    out = {}
    dates = landsat_dates()
    with tempfile.TemporaryDirectory(prefix="cloudfree-guided-bench-") as folder:
        for seed in range(3):
            for t in ("s2_20150711", "s2_20150909"):
                out.setdefault(f"S2 {t[3:]}", []).append(one_case(
                    f"{t}_{seed}", str(S2 / f"{t}.tif"), S2_BANDS, s2_guides(t),
                    {"guided model (optical)": models["optical"]}, folder, seed))
            for k, d in enumerate(dates):
                if d[0].year == 2011 and d[3] >= 0.99:
                    out.setdefault("Landsat 2011", []).append(one_case(
                        f"l_{k}_{seed}", d[1], [1, 2, 3], landsat_guides(dates, k),
                        {"guided model (optical)": models["optical"]}, folder, seed))
            for k in (4, 5):
                radar = [Guide(str(BEN / f"ben{k}_s1_vvvh.tif"), kind="radar", name=f"ben{k}_s1")]
                out.setdefault(f"radar ben{k}", []).append(one_case(
                    f"ben{k}_{seed}", str(BEN / f"ben{k}_s2_bgrn.tif"), [1, 2, 3, 4], radar,
                    {"guided model (radar)": models["radar"]}, folder, seed))
    return out


def overcast_quicklooks(models: dict, out: Path) -> list:
    """The real overcast dates of the S2 stack (no reference): input | no guide | matched copy | guided model."""
    from cloudfree.models import quicklook as ql

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="cloudfree-overcast-") as folder:
        for t in ("s2_20150731", "s2_20150820"):
            src = raster.raster_info(str(S2 / f"{t}.tif"))
            mask = raster.raster_info(str(S2 / f"{t.replace('s2_', 'clm_')}.tif"))
            guides = [Guide(g.path, bands=tuple(S2_BANDS), mask=g.mask, mask_values=g.mask_values, name=g.name)
                      for g in s2_guides(t)]
            runs = [("no guide", str(SHIPPED), []), ("matched copy", matched_copy_model(folder), guides),
                    ("guided", models["optical"], guides)]
            paths = []
            for name, model, used in runs:
                path = os.path.join(folder, f"{t}_{name.replace(' ', '_')}.tif")
                cr.remove_clouds(src, path, model, bands=S2_BANDS, mask=mask, mask_values=(1,), guides=used,
                                 options=cr.RemovalOptions(device="cpu"))
                paths.append(path)
            reference = str(S2 / "s2_20150711.tif")
            limits = ql.band_limits(reference, (4, 3, 2))
            panels = [ql.stretched(src.path, (4, 3, 2), 256, limits=limits)]
            panels += [ql.stretched(p, (3, 2, 1), 256, limits=limits) for p in paths]
            png = out / f"overcast_{t}.png"
            ql.save_png(str(png), ql.side_by_side(panels))
            written.append(str(png))
    return written


def medians(rows: list) -> dict:
    methods = [k for k in rows[0] if k != "cover"]
    return {m: {f: statistics.median(r[m][f] for r in rows) for f in ("psnr", "ssim", "mae", "sam")}
            for m in methods}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--record", action="store_true")
    ap.add_argument("--reuse", help="a folder of an earlier run's two models: score them, do not train")
    ap.add_argument("--out", default="/tmp/cloudfree-guided-quicklooks", help="where the quick-looks go")
    ap.add_argument("--quicklooks-only", action="store_true", help="with --reuse: only the overcast quick-looks")
    args = ap.parse_args()
    if args.reuse:
        paths = {k: os.path.join(args.reuse, f"guided_{k}.safetensors") for k in ("optical", "radar")}
    else:
        work = tempfile.mkdtemp(prefix="cloudfree-guided-models-")
        optical, n_opt, t_opt = train_optical(work, args.steps)
        radar, n_rad, t_rad = train_radar(work, args.steps)
        print(f"optical guided model: {n_opt} Landsat targets, {args.steps} steps in {t_opt:.0f} s; radar guided "
              f"model: {n_rad} BigEarthNet targets in {t_rad:.0f} s (models in {work})", flush=True)
        paths = {"optical": optical.model_path, "radar": radar.model_path}
        for name, result in (("optical", optical), ("radar", radar)):  # what keep-best chose from
            print(f"{name} validation (step: PSNR/SSIM inside the clouds): " + ", ".join(
                f"{v['step']}: {v['psnr_masked']:.2f}/{v['ssim_masked']:.3f}" for v in result.history["val"]))
    for k, path in paths.items():
        t = __import__("cloudfree.models.weights", fromlist=["x"]).read_metadata(path).training
        print(f"{k}: kept step {t.get('selected_step')} of {t.get('steps')}")
    for png in overcast_quicklooks(paths, Path(args.out)):
        print(f"real overcast date, no reference: {png} (input | no guide | matched copy | guided model)")
    if args.quicklooks_only:
        return
    results = cases(paths)
    table = {name: medians(rows) for name, rows in results.items()}
    for name, methods in table.items():
        print(f"{name} ({len(results[name])} cases, medians inside the clouds)")
        for m, f in methods.items():
            print(f"  {m:34s} PSNR {f['psnr']:6.2f} dB  SSIM {f['ssim']:.3f}  MAE {f['mae']:.4f}  SAM {f['sam']:.2f}")
    print(json.dumps({"medians": table, "runs": results, "models": paths}, indent=1, default=str))
    if args.record:
        record(paths["optical"], paths["radar"], table, args.steps)


def record(optical: str, radar: str, table: dict, steps: int) -> None:
    """Ship the two models with what they saw and how they scored on the held-out cases."""
    import shutil

    from cloudfree.models import weights

    for path, name, keys in ((optical, "cloud_removal_guided_optical.safetensors", ("S2", "Landsat")),
                             (radar, "cloud_removal_guided_radar.safetensors", ("radar",))):
        dest = ROOT / "models" / "pretrained" / name
        shutil.copyfile(path, dest)
        meta = weights.read_metadata(str(dest))
        training = dict(meta.training, data_summary=(
            "landsat_timeseries (eo-box sample data): Landsat 5/7 red, NIR, SWIR1 targets of 2008-2010 with their "
            "Fmask, each guided by its two nearest usable dates; synthetic clouds; "
            if "optical" in name else
            "BigEarthNet patches ben0-ben3 (bigearthnet-common 2.8.0 examples): Sentinel-2 L2A blue, green, red, "
            "NIR guided by Sentinel-1 VV/VH (dB); synthetic clouds; ") + f"{steps} steps on a CPU",
            recorded_by="benchmarks/guided_removal.py --record")
        metrics = dict(meta.metrics, held_out={k: v for k, v in table.items() if k.startswith(keys)})
        weights.update_metadata(str(dest), training=training, metrics=metrics)
        print(f"recorded {dest.name}")


if __name__ == "__main__":
    main()
