"""Inference engines on the same networks: torch eager, torch optimised, ONNX Runtime, and the default path.

Raw (``raw``): for each shipped dense network (the cloud-removal generators, the fusion quality net, the
land-cover segmentation net) and the full-size CPU generator ``UNetGenerator(4, 4, depth=6, base=32,
max_channels=256, norm="instance")``, megapixels per second of one batch (``--batch`` tiles of 128 and
256 px), medians of ``--repeats`` rounds after a warm-up, all in the same process; each round runs every
engine once in turn (:func:`timed_together`), so a drift of the machine's speed does not favour one:

- ``eager``: the module as the engine called it before (``torch.no_grad``, the module as built);
- ``torch``: the torch backend (``inference_mode``, :func:`networks.inference_form`: instance norm as
  group norm, batch norm folded, channels-last);
- ``ort``: ONNX Runtime's ``session.run`` on the exported network, numpy in and out (the peer);
- ``default``: what ``backend="auto"`` gives the engine (ONNX Runtime behind the tensor-in, tensor-out
  runner here), called as the engine calls it.

A generator that computes a prior in ``forward`` (smooth fill, linear unmixing) is measured twice: its
U-Net ``core`` alone (what ONNX Runtime runs; the same network for every column) and the whole
generator (prior + core; ``ort`` n/a: the prior does not export, ``default`` runs the prior in torch
and the core in ONNX Runtime).

End to end (``e2e``): ``remove_clouds`` with the shipped model over a ``--size``^2 raster of real
imagery (the held-out clear date of ``s2_cloud_pair`` mirrored into a mosaic), disk to disk, once per
backend, each in its own process: seconds, MP/s, the ratio to the raw runner on the same number of tiles
in memory (1.0 = the tiler adds nothing), the CPU seconds of every thread of both, and peak RSS. Each
end-to-end run is followed by its own raw run and the ratio is the median of the ``--repeats`` paired
ratios: on shared cores the machine's speed drifts by 10 % and more within minutes, which made a ratio of
two medians taken minutes apart swing by as much.
The mask touches every tile (small squares on a grid), so every tile runs the network; then ``auto`` once
more with a mask over a sixteenth of the raster only, where the tiles with no masked pixel are skipped (the
ratio then exceeds 1).

The tiler alone (``tiler``): the same ``remove_clouds`` run with the network replaced by a stand-in that
returns its input, so the seconds left are the tiler's own (what the end-to-end ratio can at best reach:
raw / (raw + these seconds), less where the tiler's background threads share the cores with the network).

Threads: ``--threads`` (default: torch's, the physical cores); ONNX Runtime gets as many.

    .venv/bin/python benchmarks/inference.py raw --repeats 5
    .venv/bin/python benchmarks/inference.py e2e --size 4096 --repeats 3
    .venv/bin/python benchmarks/inference.py tiler --size 4096 --repeats 5
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

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ("cloud_removal_small", "cloud_removal_guided_optical", "cloud_removal_guided_radar", "fusion_default",
           "fusion_default.segmentation")
FULL = "generator_full (the issue's table)"


def engine():
    sys.path.insert(0, str(ROOT / "scripts"))
    import cloudfree_import  # noqa: F401  (registers this checkout as the package `cloudfree`)
    from cloudfree.models import backends, networks, weights

    return backends, networks, weights


def timed_together(fns: dict, repeats: int) -> dict:
    """``{name: [seconds of each round]}``: each ``fn`` warmed up once, then ``repeats`` rounds that run every ``fn``
    once in turn, so that the machine's drift (10 % and more within minutes on shared cores) falls on all of them
    alike instead of on whichever was timed last."""
    for fn in fns.values():
        fn()
    runs = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            runs[name].append(time.perf_counter() - t0)
    return runs


def networks_to_measure():
    """``[(name, module)]``: the shipped dense networks and the full-size generator."""
    import torch

    backends, networks, weights = engine()
    out = [(name, weights.load_model(weights.shipped_model(name + ".safetensors"))[0]) for name in SHIPPED]
    torch.manual_seed(0)
    full = networks.UNetGenerator(4, 4, depth=6, base=32, max_channels=256, norm="instance")
    return out + [(FULL, networks.init_pix2pix_weights(full).eval())]


def generator_input(network, batch: int, tile: int):
    """A smooth image in network space with a round cloud (a third of the tile) and the generator's other channels."""
    import torch

    yy, xx = torch.meshgrid(torch.arange(tile), torch.arange(tile), indexing="ij")
    mask = (((yy - tile / 2) ** 2 + (xx - tile / 3) ** 2) < (tile / 3) ** 2).float()
    if hasattr(network, "radar"):  # guided: image, mask, base, base validity, radar
        c = 3 if network.radar == 0 else 4
        img = torch.stack([0.5 * torch.sin(xx / (9.0 + b)) * torch.cos(yy / 7.0) for b in range(c)])
        x = torch.cat([img, mask[None], 0.9 * img, torch.ones(1, tile, tile), torch.zeros(network.radar, tile, tile)])
    else:
        img = torch.stack([0.5 * torch.sin(xx / (9.0 + b)) * torch.cos(yy / 7.0) for b in range(network.bands)])
        x = torch.cat([img, mask[None]])
    return x.expand(batch, *x.shape).contiguous()


def raw_row(name: str, part: str, module, forward, x, repeats: int, tmp: str) -> dict:
    """MP/s of eager, torch, ORT raw and the default path for ``module`` (called by ``forward`` on ``x``)."""
    import onnxruntime
    import torch

    backends, _, _ = engine()
    mp = x.shape[0] * x.shape[-1] * x.shape[-2] / 1e6  # a guided generator's core sees one tile per band
    row = {"network": name, "part": part, "tile": x.shape[-1], "batch": x.shape[0]}

    def eager():
        with torch.no_grad():
            forward(module, x)

    torch_runner = backends.prepare(module, "cpu", "torch", tile=x.shape[-1])
    default = backends.prepare(module, "cpu", "auto", tile=x.shape[-1], batch=len(x), cache=tmp)
    row["default_backend"] = default.backend
    fns = {"eager": eager, "torch": lambda: forward(torch_runner, x), "default": lambda: forward(default, x)}
    if part != "whole generator":
        from cloudfree.models.onnx_export import INPUT, exported_file

        path, _ = exported_file(module, x[:1], tmp)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        xn = x.numpy()
        fns["ort"] = lambda: session.run(None, {INPUT: xn})
    runs = timed_together(fns, repeats)
    for name, seconds in runs.items():
        row[name] = mp / statistics.median(seconds)
    if "ort" in runs:  # the default path against ONNX Runtime, round by round
        row["default_over_ort"] = statistics.median(o / d for o, d in zip(runs["ort"], runs["default"]))
    return row


def raw(repeats: int, batch: int, tiles: list) -> list:
    import torch

    backends, _, _ = engine()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, network in networks_to_measure():
            for tile in tiles:
                core = backends.learned_part(network)
                if core is not network:  # a generator: its core alone, then the whole generator
                    x = generator_input(network, batch, tile)
                    with torch.inference_mode():  # the core's real input: what the generator feeds it
                        seen = []
                        network(x, core=lambda t: seen.append(t) or core(t))
                    rows.append(raw_row(name, "U-Net core", core, lambda m, t: m(t), seen[0], repeats, tmp))
                    rows.append(raw_row(name, "whole generator", network, lambda m, t: m(t), x, repeats, tmp))
                else:
                    channels = backends.input_channels(network)
                    x = torch.randn(batch, channels, tile, tile, generator=torch.Generator().manual_seed(0))
                    rows.append(raw_row(name, "whole network", network, lambda m, t: m(t), x, repeats, tmp))
                print_raw(rows[-2:] if core is not network else rows[-1:])
    return rows


def print_raw(rows: list) -> None:
    for r in rows:
        ort = r.get("ort")
        ratio = (f"default/ort {r['default'] / ort:.2f} (round by round {r['default_over_ort']:.2f}), "
                 f"torch/ort {r['torch'] / ort:.2f}" if ort else "ort n/a")
        print(f"{r['network']:32s} {r['part']:16s} tile {r['tile']:3d}: eager {r['eager']:.2f}  torch {r['torch']:.2f}"
              f"  ort {ort or float('nan'):.2f}  default ({r['default_backend']}) {r['default']:.2f} MP/s;  {ratio}",
              flush=True)


def mosaic(raster, size: int, tmp: str, cover: str = "sixteenth") -> tuple:
    """The held-out clear date mirrored into a ``size``^2 mosaic, and a square cloud mask over a sixteenth of
    it (``cover="every_tile"``: 8 px squares every 48 px as well, so that every tile holds a masked pixel
    and none is skipped, with clear pixels left for the image statistics)."""
    from mosaic import clear_date_mosaic

    big = clear_date_mosaic(raster, size)
    gt = (500000, 10, 0, 5000000, 0, -10)
    img = raster.write_array(os.path.join(tmp, "big.tif"), big, geotransform=gt, crs_wkt="")
    msk = np.zeros((1, size, size), dtype=np.uint8)
    msk[0, size // 4: size // 2, size // 4: size // 2] = 1
    if cover == "every_tile":
        for y in range(0, size, 48):
            for x in range(0, size, 48):
                msk[0, y:y + 8, x:x + 8] = 1
    return img, raster.write_array(os.path.join(tmp, "mask.tif"), msk, geotransform=gt, crs_wkt=""), big, msk[0]


def sample_batches(big: np.ndarray, msk: np.ndarray, tile: int, batch: int, grid: int = 8) -> list:
    """``[(x, prior)]``: ``grid`` x ``grid`` tiles spread evenly over the raster (so as many cross the cloud as in
    the run), in network space (each band's 2nd..98th percentile to -0.8..0.8) with their mask, in batches."""
    import torch

    size = big.shape[-1]
    starts = np.linspace(0, size - tile, grid).astype(int)
    lo, hi = np.percentile(big[:, ::8, ::8], [2, 98], axis=(1, 2))
    tiles = np.stack([big[:, y:y + tile, x:x + tile] for y in starts for x in starts]).astype(np.float32)
    tiles = (-0.8 + 1.6 * (tiles - lo[:, None, None]) / (hi - lo)[:, None, None]).astype(np.float32)
    masks = np.stack([msk[y:y + tile, x:x + tile] for y in starts for x in starts])[:, None].astype(np.float32)
    return [(torch.from_numpy(np.concatenate([tiles[k:k + batch], masks[k:k + batch]], axis=1)),
             torch.from_numpy(np.ascontiguousarray(tiles[k:k + batch]))) for k in range(0, len(tiles), batch)]


def one_e2e(backend: str, size: int, repeats: int, batch: int, cover: str = "sixteenth") -> dict:
    """``remove_clouds`` end to end with ``backend`` against its runner on the same tiles in memory, each run paired
    with a raw run right after it; wall and CPU seconds (every thread's) of both."""
    import torch
    from osgeo import gdal
    from scale_out import cpu_seconds

    backends, _, weights = engine()
    from cloudfree.models import raster
    from cloudfree.models.tiling import TileLayout

    gdal.SetCacheMax(256 * 2 ** 20)
    model_path = weights.shipped_model("cloud_removal_small.safetensors")
    with tempfile.TemporaryDirectory() as tmp:
        img, mask, big, msk = mosaic(raster, size, tmp, cover)
        tile = weights.read_metadata(model_path).tile_size
        n_tiles = len(TileLayout(size, tile, 32).starts()) ** 2
        e2e, raws, ratios, e2e_cpu, raw_cpu, summary, all_tiles = [], [], [], [], [], {}, None
        for _ in range(repeats):
            seconds, cpu, summary = removal_run(img, mask, model_path, backend, batch, tmp)
            e2e.append(seconds)
            e2e_cpu.append(cpu)
            if all_tiles is None:  # after the first run: auto's choice is remembered by then
                all_tiles = raw_loop(backends, weights, model_path, backend, big, msk, tile, batch, n_tiles)
                all_tiles()  # warm-up
            # the same runner on the same number of tiles in memory, right after: the machine's speed drifts
            # by 10 % and more over minutes on shared cores, so each run is paired with its own raw run
            t0, before = time.perf_counter(), cpu_seconds()
            all_tiles()
            raws.append(time.perf_counter() - t0)
            raw_cpu.append(cpu_seconds() - before)
            ratios.append(raws[-1] / e2e[-1])
        raw_s = statistics.median(raws)
    e = statistics.median(e2e)
    mp = size * size / 1e6
    return {"backend": backend, "cover": cover, "used": summary.get("backend"), "size": size, "tile": tile, "tiles": n_tiles,
            "e2e_s": e, "raw_s": raw_s, "e2e_mp_per_s": mp / e, "raw_tiles_per_s": n_tiles / raw_s,
            "ratio": statistics.median(ratios), "ratio_of_medians": raw_s / e, "ratios": ratios,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads(), "e2e_runs_s": e2e, "raw_runs_s": raws,
            "e2e_cpu_s": statistics.median(e2e_cpu), "raw_cpu_s": statistics.median(raw_cpu),
            "e2e_runs_cpu_s": e2e_cpu, "raw_runs_cpu_s": raw_cpu}


def removal_run(img: str, mask: str, model_path: str, backend: str, batch: int, tmp: str) -> tuple:
    """``(seconds, cpu_seconds, summary)`` of one ``remove_clouds`` of the mosaic ``img`` under ``mask`` (value 1)
    with the benchmark's options, disk to disk (the CPU seconds of every thread of this process); the output
    is deleted again."""
    from cloudfree.models import cloud_removal as cr
    from cloudfree.models import raster
    from scale_out import cpu_seconds

    out = os.path.join(tmp, "out.tif")
    t0, before = time.perf_counter(), cpu_seconds()
    summary = cr.remove_clouds(raster.raster_info(img), out, model_path, mask=raster.raster_info(mask),
                               mask_values=(1,), options=cr.RemovalOptions(overlap=32, batch_size=batch,
                                                                           device="cpu", backend=backend))
    seconds, cpu = time.perf_counter() - t0, cpu_seconds() - before
    os.remove(out)
    return seconds, cpu, summary


def raw_loop(backends, weights, model_path: str, backend: str, big, msk, tile: int, batch: int, n_tiles: int):
    """A function running ``backend``'s runner (as the runs prepared it) on ``n_tiles`` tiles in memory: a sample of
    the raster's tiles (:func:`sample_batches`), cycled, under the tiler's allocator settings."""
    from cloudfree.models import runtime

    network, _ = weights.load_model(model_path)
    runner = backends.prepare(network, "cpu", backend, tile=tile, batch=batch)  # auto: the remembered engine
    batches = sample_batches(big, msk, tile, batch)

    def all_tiles():
        with runtime.steady_memory():
            for k in range(0, n_tiles, batch):
                x, prior = batches[(k // batch) % len(batches)]
                runner(x, prior).numpy()

    return all_tiles


def tiler_cost(size: int, repeats: int, batch: int) -> dict:
    """``remove_clouds`` over the same mosaic and every-tile mask as ``e2e``, with the network replaced by a
    stand-in that returns its input bands (a view: no work): what remains is the tiler's own cost (the input
    sample, the coarse prior, reading, cutting batches, mapping to and from network space, blending,
    finishing rows, feathering, writing). Seconds of each run after a warm-up, and the CPU seconds of all the
    process's threads (what the tiler takes from a network that keeps every core busy)."""
    from osgeo import gdal

    backends, _, weights = engine()
    from cloudfree.models import raster

    gdal.SetCacheMax(256 * 2 ** 20)
    model_path = weights.shipped_model("cloud_removal_small.safetensors")
    bands = weights.read_metadata(model_path).hyperparameters["bands"]
    real_prepare = backends.prepare

    def stand_in(*args, **kwargs):  # run_generator imports prepare from the module when it runs
        runner = real_prepare(*args, **kwargs)
        runner.forward = lambda x, prior=None: x[:, :bands]
        return runner

    backends.prepare = stand_in
    runs, cpu = [], []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            img, mask, _, _ = mosaic(raster, size, tmp, "every_tile")
            for _ in range(repeats + 1):
                seconds, cpu_s, _ = removal_run(img, mask, model_path, "torch", batch, tmp)
                runs.append(seconds)
                cpu.append(cpu_s)
    finally:
        backends.prepare = real_prepare
    runs, cpu = runs[1:], cpu[1:]  # the first run warms up
    row = {"size": size, "batch": batch, "seconds": statistics.median(runs), "runs_s": runs,
           "cpu_s": statistics.median(cpu), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    print(f"tiler alone (removeclouds {size}x{size}x4, every tile, the network replaced by a stand-in that returns "
          f"its input): {row['seconds']:.2f} s, median of {len(runs)} ({min(runs):.2f}-{max(runs):.2f}); CPU time "
          f"of all its threads {row['cpu_s']:.2f} s", flush=True)
    return row


def e2e(size: int, repeats: int, batch: int, threads: int | None) -> list:
    """Each backend on a mask that every tile touches (every tile runs the network: the ratio is the tiler's
    own cost), then ``auto`` on a mask over a sixteenth (tiles with no masked pixel are skipped)."""
    rows = []
    for backend, cover in (("torch", "every_tile"), ("onnxruntime", "every_tile"), ("auto", "every_tile"),
                           ("auto", "sixteenth")):
        cmd = [sys.executable, __file__, "e2e", "--one", backend, "--cover", cover, "--size", str(size),
               "--repeats", str(repeats), "--batch", str(batch)] + (["--threads", str(threads)] if threads else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        r = json.loads(out.strip().splitlines()[-1])
        rows.append(r)
        print(f"removeclouds {size}x{size}x4, mask over {cover}, backend {backend}: {r['e2e_s']:.1f} s "
              f"({r['e2e_mp_per_s']:.2f} MP/s), "
              f"raw runner {r['raw_s']:.1f} s for the same {r['tiles']} tiles; ratio {r['ratio']:.3f} (median of "
              f"{len(r['ratios'])} paired runs, {min(r['ratios']):.3f}-{max(r['ratios']):.3f}; ratio of the medians "
              f"{r['ratio_of_medians']:.3f}); CPU seconds of every thread, medians: {r['e2e_cpu_s']:.1f} end to end, "
              f"{r['raw_cpu_s']:.1f} raw; "
              f"peak RSS {r['peak_rss_mb']:.0f} MB; {r['used']}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["raw", "e2e", "tiler", "all"])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tiles", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--threads", type=int, help="torch and ONNX Runtime threads (default: torch's, the cores)")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--cover", default="sixteenth", help=argparse.SUPPRESS)
    ap.add_argument("--json", help="write the rows to this file")
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one:
        print(json.dumps(one_e2e(args.one, args.size, args.repeats, args.batch, args.cover)))
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch}, "
          f"medians of {args.repeats}", flush=True)
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        os.environ.setdefault("CLOUDFREE_ONNX_CACHE", cache)  # the children's exports too, not the user's cache
        if args.what in ("raw", "all"):
            results["raw"] = raw(args.repeats, args.batch, args.tiles)
        if args.what in ("e2e", "all"):
            results["e2e"] = e2e(args.size, args.repeats, args.batch, args.threads)
        if args.what in ("tiler", "all"):
            results["tiler"] = tiler_cost(args.size, args.repeats, args.batch)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
