"""Scaling out on Dask: removeclouds with 1 and 2 local workers against the in-process run, same raster.

Every configuration runs in its own child process (so each peak RSS is its own), on the same raster:
a mosaic of the real clear date of ``s2_cloud_pair`` (blue, green, red, NIR; mirrored copies) with a
cloud mask over a sixth of it, or a synthetic scene when the shared data is absent. The model is the
shipped ``cloud_removal_small`` (mask-guided, tile 128, overlap 32, batches of 4 tiles), the whole
engine path: statistics, the coarse prior, tiles, feathering, writing.

- ``here``: in-process, torch on ``--here-threads`` threads (1 = what one worker has);
- ``local:1``, ``local:2``: a LocalCluster of 1 or 2 worker processes of one thread, started once
  (its start and a warm-up run on a small raster are timed apart); each timed run ships the model
  to the workers again, as every scene does;
- ``identity:2``: the same tiles through 2 workers with no network (each task reads its window and
  returns it): the pipeline's own ceiling (reading on the workers, transfer, blending and writing here).

Reported: MP/s (median of ``--repeats``), the ratio to ``here``, the overhead per task of one worker
against in-process (both one thread), the CPU seconds this process (the one writer) spent per
megapixel while the workers ran the model, and peak RSS here and of each worker. The machine these
numbers come from is shared: they are noisy.

    .venv/bin/python benchmarks/scale_out.py --size 2048 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
PAIR = ROOT.parent / "shared" / "data" / "s2_cloud_pair"
CONFIGS = ("here", "local:1", "local:2", "identity:2")
TILE, OVERLAP, BATCH = 128, 32, 4


def engine():
    sys.path.insert(0, str(ROOT / "scripts"))
    import cloudfree_import  # noqa: F401  (registers this checkout as the package `cloudfree`)
    from cloudfree.models import cloud_removal, raster, tiling

    return cloud_removal, raster, tiling


def write_inputs(raster, folder: str, size: int) -> tuple:
    """``(image, mask)`` paths: the real clear date as a mirrored mosaic (synthetic without the shared data)."""
    if (PAIR / "clean.tif").exists():
        from mosaic import clear_date_mosaic

        image = clear_date_mosaic(raster, size)
    else:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        base = 0.15 + 0.08 * np.sin(xx / 37.0) * np.cos(yy / 23.0)
        image = np.stack([base * (1 + 0.2 * b) for b in range(4)]).astype(np.float32)
    mask = np.zeros((1, size, size), dtype=np.uint8)
    for k in range(6):  # six square clouds along the diagonal, a sixth of the raster
        a = k * size // 6
        mask[0, a:a + size // 6, a:a + size // 6] = 1
    gt = (500000, 10, 0, 5000000, 0, -10)
    return (raster.write_array(os.path.join(folder, "image.tif"), image, geotransform=gt, crs_wkt=""),
            raster.write_array(os.path.join(folder, "mask.tif"), mask, geotransform=gt, crs_wkt=""))


def task_count(tiling, size: int) -> int:
    starts = len(tiling.TileLayout(size, TILE, OVERLAP).starts())
    return starts * math.ceil(starts / BATCH)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def passthrough(batch, valid):
    """The identity configuration's tile function: the window, as read, back (no network)."""
    return batch[:, :4]


def one(config: str, size: int, repeats: int, here_threads: int, backend: str) -> dict:
    import torch
    from osgeo import gdal

    cr, raster, tiling = engine()
    from cloudfree.models.weights import shipped_model

    gdal.SetCacheMax(256 * 2 ** 20)
    torch.set_num_threads(here_threads)
    model = shipped_model("cloud_removal_small.safetensors")
    with tempfile.TemporaryDirectory(dir=os.environ.get("CLOUDFREE_BENCH_DIR")) as tmp:
        image, mask = (raster.raster_info(p) for p in write_inputs(raster, tmp, size))
        small = [raster.raster_info(p) for p in write_inputs(raster, tempfile.mkdtemp(dir=tmp), 256)]
        t0 = time.perf_counter()
        with tiling.open_executor("" if config == "here" else "local:" + config.split(":")[1]) as executor:
            start_s = time.perf_counter() - t0

            def run(src, msk, out):
                if config.startswith("identity"):
                    return tiling.run_tiled(passthrough, src, out, extra=[(msk, [1])], out_bands=4, tile=TILE,
                                            overlap=OVERLAP, batch_size=BATCH, executor=executor)
                options = cr.RemovalOptions(tile=TILE, overlap=OVERLAP, batch_size=BATCH, device="cpu",
                                            backend=backend, executor=executor)
                return cr.remove_clouds(src, out, model, mask=msk, mask_values=(1,), options=options)

            t0 = time.perf_counter()
            run(*small, os.path.join(tmp, "warm.tif"))  # workers import torch, first shipping
            warm_s = time.perf_counter() - t0
            walls, cpus = [], []
            for r in range(repeats):
                out = os.path.join(tmp, f"out{r}.tif")
                t0, c0 = time.perf_counter(), cpu_seconds()
                run(image, mask, out)
                walls.append(time.perf_counter() - t0)
                cpus.append(cpu_seconds() - c0)
                os.remove(out)
            workers = {} if executor is None else executor.client.run(peak_rss_mb)
    mp = size * size / 1e6
    wall = statistics.median(walls)
    return {"config": config, "size": size, "megapixels": mp, "tasks": task_count(tiling, size),
            "wall_s": wall, "mp_per_s": mp / wall, "runs_s": walls, "client_cpu_s": statistics.median(cpus),
            "start_s": start_s, "warm_s": warm_s, "peak_rss_mb": peak_rss_mb(),
            "worker_peak_rss_mb": sorted(workers.values()), "here_threads": here_threads, "backend": backend}


def plan(rows: dict) -> str:
    """The 4-worker plan on paper from the measured figures (see the README, Scale out)."""
    one_worker, two, ceiling = rows["local:1"]["mp_per_s"], rows["local:2"]["mp_per_s"], rows["identity:2"]["mp_per_s"]
    efficiency = two / (2 * one_worker)
    writer_cpu = rows["local:2"]["client_cpu_s"] / rows["local:2"]["megapixels"]
    predicted = min(4 * one_worker * efficiency, ceiling, 1 / max(writer_cpu, 1e-9))
    return (f"4 workers on paper: 4 x {one_worker:.3f} MP/s x {efficiency:.2f} (2-worker efficiency) = "
            f"{4 * one_worker * efficiency:.3f} MP/s, capped by the pipeline without the model ({ceiling:.2f} MP/s) "
            f"and by the one writer ({writer_cpu:.2f} CPU s per MP here -> {1 / max(writer_cpu, 1e-9):.2f} MP/s): "
            f"about {predicted:.3f} MP/s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--here-threads", type=int, default=1)
    ap.add_argument("--backend", default="torch", choices=("auto", "torch", "onnxruntime"))
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.size, args.repeats, args.here_threads, args.backend)))
        return
    rows = {}
    env = dict(os.environ, OMP_NUM_THREADS=str(args.here_threads), MKL_NUM_THREADS=str(args.here_threads))
    for config in args.configs:
        cmd = [sys.executable, __file__, "--one", config, "--size", str(args.size), "--repeats", str(args.repeats),
               "--here-threads", str(args.here_threads), "--backend", args.backend]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
        r = rows[config] = json.loads(out.strip().splitlines()[-1])
        ratio = r["mp_per_s"] / rows["here"]["mp_per_s"] if "here" in rows else float("nan")
        print(f"{config:>10}: {r['mp_per_s']:.3f} MP/s ({r['wall_s']:.1f} s for {r['megapixels']:.1f} MP, "
              f"{r['tasks']} tasks), x{ratio:.2f} of here; this process {r['client_cpu_s']:.1f} CPU s, "
              f"peak RSS {r['peak_rss_mb']:.0f} MB, workers {[round(m) for m in r['worker_peak_rss_mb']]} MB; "
              f"cluster start {r['start_s']:.1f} s, warm-up {r['warm_s']:.1f} s", flush=True)
    if {"here", "local:1"} <= rows.keys():
        overhead = (rows["local:1"]["wall_s"] - rows["here"]["wall_s"]) / rows["local:1"]["tasks"]
        print(f"overhead per task, 1 worker against in-process (one thread each): {1000 * overhead:.1f} ms")
    if {"local:1", "local:2", "identity:2"} <= rows.keys():
        print(plan(rows))
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
