"""Tiled processing end to end (disk -> network -> disk) against the raw network forward pass.

For each raster size, a child process writes a synthetic 4-band Float32 raster, runs
``tiling.run_tiled`` with a torch CNN over it into a compressed GeoTIFF (``--network pix2pix``,
the default: the generator CloudFree runs on CPUs; ``conv3``: a much lighter network), then runs
the same network on the same number of real tiles of that raster, already in memory. It reports the throughput
ratio end-to-end / raw (1.0 = the tiler adds nothing) and the child's peak RSS, which
should not grow with the raster size. Timings are medians over ``--repeats`` runs.

    .venv/bin/python benchmarks/tiler.py --sizes 4096 8192 --repeats 3 [--network conv3]
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

ROOT = Path(__file__).resolve().parents[1]


def import_engine():
    sys.path.insert(0, str(ROOT / "scripts"))
    import cloudfree_import  # noqa: F401  (registers this checkout as the package `cloudfree`)
    from cloudfree.models import raster, tiling

    return raster, tiling


def make_network(name: str):
    """``pix2pix``: the generator CloudFree runs on CPUs (6 levels, 32 filters, instance norm);
    ``conv3``: three 3x3 convolutions 4 -> 16 -> 16 -> 4, a light network for which disk I/O
    and compression weigh much more; ``identity``: no network, so the end-to-end time is the
    tiler's own overhead (reading, blending, writing)."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    if name == "pix2pix-full":  # the paper's 8 levels x 64 filters, the GPU model
        from cloudfree.models.networks import UNetGenerator

        return UNetGenerator(4, 4, depth=8, base=64, max_channels=512, norm="instance").eval()
    if name == "identity":  # no network: the end-to-end time is the tiler's own cost (I/O, blending)
        return nn.Identity()
    if name == "conv3":
        net = nn.Sequential(nn.Conv2d(4, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
                            nn.Conv2d(16, 4, 3, padding=1))
    else:
        from cloudfree.models.networks import UNetGenerator

        net = UNetGenerator(4, 4, depth=6, base=32, max_channels=256, norm="instance")
    return net.eval()


def write_synthetic(raster, path: str, size: int, block: int = 1024) -> None:
    import numpy as np
    from cloudfree.models.windows import iter_windows

    rng = np.random.default_rng(0)
    with raster.RasterWriter(path, width=size, height=size, geotransform=(500000, 10, 0, 5000000, 0, -10),
                             crs_wkt="", band_count=4, dtype="float32") as out:
        for x0, y0, w, h in iter_windows(size, size, block):
            yy, xx = np.mgrid[y0:y0 + h, x0:x0 + w].astype(np.float32)
            base = 0.2 + 0.1 * np.sin(xx / 97.0) * np.cos(yy / 53.0)
            out.write(np.stack([base * (1 + 0.1 * b) + 0.01 * rng.standard_normal((h, w), dtype=np.float32)
                                for b in range(4)]), x0, y0)


def one_size(size: int, repeats: int, tile: int, overlap: int, batch: int, network: str) -> dict:
    import numpy as np
    import torch

    from osgeo import gdal

    raster, tiling = import_engine()
    from cloudfree.models import runtime
    # GDAL's block cache defaults to 5 % of RAM; QGIS sets its own. Cap it as a QGIS session would
    # so the figure shows the tiler's memory, not a cache that grows with free RAM.
    gdal.SetCacheMax(256 * 2 ** 20)
    net = make_network(network)
    with tempfile.TemporaryDirectory(dir=os.environ.get("CLOUDFREE_BENCH_DIR")) as tmp:
        src_path = os.path.join(tmp, "src.tif")
        write_synthetic(raster, src_path, size)
        src = raster.raster_info(src_path)

        def fn(tiles, valid):
            with torch.inference_mode():
                return net(torch.from_numpy(tiles)).numpy()

        n_tiles = len(tiling.TileLayout(size, tile, overlap).starts()) ** 2
        e2e, raw = [], []
        for r in range(repeats):
            t0 = time.perf_counter()
            tiling.run_tiled(fn, src, os.path.join(tmp, f"out{r}.tif"), tile=tile, overlap=overlap, batch_size=batch)
            e2e.append(time.perf_counter() - t0)
            os.remove(os.path.join(tmp, f"out{r}.tif"))
            # the same network on real tiles of the same raster, already in memory
            ds = raster.open_raster(src_path)
            # rasters narrower than batch x tile repeat their last tile (same work per tile)
            x = torch.from_numpy(np.stack([raster.read_window(ds, (min(k * tile, size - tile), r * tile, tile, tile))
                                           for k in range(batch)]))
            t0 = time.perf_counter()
            # under the allocator settings the tiler itself runs with (runtime.steady_memory), so
            # the ratio compares the tiler with the network at its best, not with a page-faulting one
            with runtime.steady_memory(), torch.inference_mode():
                for _ in range(0, n_tiles, batch):
                    net(x).numpy()
            raw.append(time.perf_counter() - t0)
    mp = size * size / 1e6
    e2e_s, raw_s = statistics.median(e2e), statistics.median(raw)
    return {"network": network, "size": size, "megapixels": mp, "tiles": n_tiles, "e2e_s": e2e_s, "raw_s": raw_s,
            "e2e_mp_per_s": mp / e2e_s, "raw_tiles_per_s": n_tiles / raw_s,
            "ratio_e2e_over_raw": raw_s / e2e_s, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads(), "e2e_runs_s": e2e, "raw_runs_s": raw}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 8192])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--tile", type=int, default=256)
    ap.add_argument("--overlap", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--network", choices=["pix2pix", "pix2pix-full", "conv3", "identity"], default="pix2pix")
    ap.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_size(args.one, args.repeats, args.tile, args.overlap, args.batch, args.network)))
        return
    rows = []
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--one", str(size), "--repeats", str(args.repeats), "--tile", str(args.tile),
               "--overlap", str(args.overlap), "--batch", str(args.batch), "--network", args.network]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"{args.network}, {size}x{size}x4: {r['tiles']} tiles of {args.tile} (overlap {args.overlap}); end-to-end "
              f"{r['e2e_s']:.1f} s ({r['e2e_mp_per_s']:.2f} MP/s), raw forward {r['raw_s']:.1f} s; "
              f"ratio {r['ratio_e2e_over_raw']:.3f}; peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
