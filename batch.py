"""Batch runs without QGIS: many scenes through the heavy algorithms, here or on a Dask cluster.

    python -m cloudfree.batch removeclouds scenes/*.tif --out cleared/ --mask "masks/{stem}_mask.tif"
    python -m cloudfree.batch removeclouds dates/*.tif --out cleared/ --mask "masks/{stem}_mask.tif" --temporal
    python -m cloudfree.batch detectclouds scenes/*.tif --out masks/ --scaling sentinel2_pb04 --dilation 3
    python -m cloudfree.batch segment scenes/*.tif --out classes/ --model landcover.safetensors
    python -m cloudfree.batch fusedates dates/*.tif --out fused.tif --mask "masks/{stem}.tif"

Run it with the folder that holds the plugin folder ``cloudfree`` on ``PYTHONPATH`` (the QGIS plugins
folder, or an unzipped ``make zip``). ``--scheduler`` says where the tiles run: empty (here),
``local:N`` (N worker processes on this machine) or ``tcp://host:8786`` (a running Dask cluster; see
the README, *Scale out*). The executor is opened once for the whole batch. Each scene is written to
``--out``/<its name>.tif (fusedates: one fused raster at ``--out``). ``removeclouds --temporal``: the
inputs are dates of one place, and each is rebuilt from all the others (their clouds from the same
``--mask`` pattern), with ``<name>_provenance.tif``, ``<name>_error.tif`` (predicted absolute error) and
``<name>_report.json`` (dates, provenance legend and counts, self-check) beside it; a scene that fails is reported
and the others go on; the exit status is 1 when any failed. Same engine, same outputs as the
Processing algorithms; no QGIS is imported.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from .models.errors import CloudFreeError
from .models.tiling import describe_executor, open_executor

COMMANDS = ("removeclouds", "detectclouds", "segment", "fusedates")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m cloudfree.batch", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=COMMANDS)
    ap.add_argument("inputs", nargs="+", help="input rasters (fusedates: the dates of one place, in order)")
    ap.add_argument("--out", required=True, help="output folder (fusedates: the fused raster)")
    ap.add_argument("--scheduler", default="", help="empty = here; local:N; tcp://host:port")
    ap.add_argument("--model", help="model file (removeclouds, fusedates: empty = the shipped one; segment: needed; "
                                    "detectclouds: a trainsegmentation model instead of ukis-csmask)")
    ap.add_argument("--mask", help="each input's cloud mask: a path where {stem} is the input's name without "
                                   "extension, e.g. masks/{stem}_mask.tif")
    ap.add_argument("--mask-values", default=None, help="mask values that mark clouds (removeclouds 1,2; "
                                                        "fusedates 1)")
    ap.add_argument("--bands", help="band numbers, e.g. 1,2,3,4 (detectclouds: blue,green,red,NIR[,SWIR1,SWIR2])")
    ap.add_argument("--tile", type=int, default=0, help="tile size in pixels (0 = the model's)")
    ap.add_argument("--overlap", type=int, default=None, help="tile overlap in pixels (empty = the algorithm's)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime"))
    ap.add_argument("--method", default="quality", choices=("quality", "mean", "median", "best"),
                    help="fusedates only")
    ap.add_argument("--weights", help="fusedates: also write the per-date weight maps here")
    ap.add_argument("--temporal", action="store_true", help="removeclouds: rebuild each input from the other inputs "
                                                            "(dates of one place; needs --mask)")
    ap.add_argument("--no-self-check", action="store_true", help="removeclouds --temporal: skip the self-check")
    ap.add_argument("--product", default="l1c", choices=("l1c", "l2a"), help="detectclouds only")
    ap.add_argument("--scaling", default="reflectance", help="detectclouds: reflectance preset (reflectance, "
                                                             "sentinel2_pb04, sentinel2_l1c, landsat_c2_l2, ...)")
    ap.add_argument("--dilation", type=int, default=0, help="detectclouds: grow clouds and shadows (pixels)")
    ap.add_argument("-v", "--verbose", action="store_true", help="log the engine's steps")
    return ap


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    args.inputs = [absolute(p) for p in args.inputs]  # workers elsewhere do not share this working folder
    args.mask = absolute(args.mask) if args.mask else None
    if args.command == "segment" and not args.model:
        ap.error("segment needs --model (a model trained with trainsegmentation)")
    if args.temporal and (args.command != "removeclouds" or not args.mask or len(args.inputs) < 2):
        ap.error("--temporal is for removeclouds with --mask and at least two dates of one place")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    failed = []
    try:
        with open_executor(args.scheduler) as executor:
            say(f"Executor: {describe_executor(executor)}")
            if args.command == "fusedates":
                return 0 if run_one(args.out, lambda progress: fuse(args, executor, progress)) else 1
            os.makedirs(args.out, exist_ok=True)
            for number, path in enumerate(args.inputs, 1):
                if not run_one(f"{number}/{len(args.inputs)} {path}",
                               lambda progress: scene(args, path, executor, progress)):
                    failed.append(path)
    except CloudFreeError as exc:  # the executor could not be opened
        say(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        say("interrupted: the scene in progress was not written")
        return 130
    say(f"{len(args.inputs) - len(failed)} of {len(args.inputs)} scene(s) done" +
        (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_one(label: str, job) -> bool:
    """Run ``job(progress)``; report its time, or its error, and whether it worked."""
    started, shown = time.perf_counter(), [-1]

    def progress(fraction: float, message: str | None = None) -> None:
        if int(10 * fraction) > shown[0]:
            shown[0] = int(10 * fraction)
            say(f"  {label}: {100 * fraction:.0f} %")

    try:
        job(progress)
    except CloudFreeError as exc:
        say(f"FAILED {label}: {exc}")
        return False
    say(f"done {label} in {time.perf_counter() - started:.1f} s")
    return True


def absolute(path: str) -> str:
    return path if path.startswith("/vsi") else os.path.abspath(path)


def stem(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]


def mask_of(args, path: str):
    from .models.raster import raster_info

    return raster_info(args.mask.format(stem=stem(path))) if args.mask else None


def values(text: str | None, default: str) -> tuple:
    return tuple(int(v) for v in (text or default).split(",") if v.strip())


def scene(args, path: str, executor, progress) -> None:
    """One input through removeclouds, detectclouds or segment into ``--out``/<name>.tif."""
    from .models.raster import raster_info

    src, out = raster_info(path), os.path.join(args.out, stem(path) + ".tif")
    tile = args.tile or None
    if args.command == "removeclouds" and args.temporal:
        temporal(args, src, path, out, progress)
    elif args.command == "removeclouds":
        from .models.cloud_removal import RemovalOptions, remove_clouds

        model = model_file(args.model, "cloud_removal_small.safetensors")
        options = RemovalOptions(tile=tile, overlap=args.overlap, device=args.device, backend=args.backend,
                                 executor=executor)
        remove_clouds(src, out, model, bands=args.bands or removal_bands(model, src), mask=mask_of(args, path),
                      mask_values=values(args.mask_values, "1,2"), options=options, progress=progress)
    elif args.command == "detectclouds":
        from .models.detection import BandRoles, DetectionOptions, ReflectanceScaling, detect_clouds

        roles = BandRoles(*values(args.bands, "1,2,3,4"))
        options = DetectionOptions(product=args.product, dilation=args.dilation, tile=tile,
                                   overlap=64 if args.overlap is None else args.overlap, device=args.device,
                                   model=args.model, backend=args.backend, executor=executor)
        detect_clouds(src, out, roles, ReflectanceScaling.preset(args.scaling), options, progress=progress)
    else:
        from .models.segmentation import SegmentOptions, segment

        options = SegmentOptions(tile=tile, overlap=32 if args.overlap is None else args.overlap,
                                 device=args.device, backend=args.backend, executor=executor)
        segment([src], args.model, out, options, progress=progress)


def temporal(args, src, path: str, out: str, progress) -> None:
    """One date rebuilt from the other inputs, with its provenance, predicted error and report beside it."""
    from .models.atomic import write_text
    from .models.cloud_removal.guides import Guide
    from .models.cloud_removal.reconstruct import TemporalOptions, reconstruct_from_dates
    from .models.cloud_removal.selfcheck import SelfCheckOptions
    from .models.comparison import report_to_json

    mask_values = values(args.mask_values, "1,2")
    guides = [Guide(p, mask=args.mask.format(stem=stem(p)), mask_values=mask_values, name=stem(p))
              for p in args.inputs if p != path]
    base = os.path.splitext(out)[0]
    options = TemporalOptions(provenance=base + "_provenance.tif", uncertainty=base + "_error.tif",
                              self_check=None if args.no_self_check else SelfCheckOptions())
    bands = [int(b) for b in args.bands.split(",")] if args.bands else None
    summary = reconstruct_from_dates(src, out, guides, bands=bands, mask=mask_of(args, path), mask_values=mask_values,
                                     options=options, progress=progress)
    write_text(base + "_report.json", report_to_json(summary))
    check = summary.get("self_check") or {}
    if "temporal" in check:
        say(f"  self-check {check['temporal']['psnr']:.2f} dB (matched copy {check['matched_copy']['psnr']:.2f})")


def removal_bands(model: str, src) -> list:
    """The first bands the model expects (every band for a model that takes any band count), as removeclouds."""
    from .models.weights import read_metadata

    meta = read_metadata(model)
    count = src.band_count if meta.training.get("any_band_count") else min(meta.band_count, src.band_count)
    return list(range(1, count + 1))


def model_file(path: str | None, shipped: str) -> str:
    from .models.weights import shipped_model

    return path or shipped_model(shipped)


def fuse(args, executor, progress) -> None:
    """All inputs as the dates of one place into the fused raster ``--out``."""
    from .models.fusion import FuseRasterOptions, fuse_rasters
    from .models.raster import raster_info

    masks = [mask_of(args, p) for p in args.inputs] if args.mask else None
    model = model_file(args.model, "fusion_default.safetensors") if args.method == "quality" else None
    options = FuseRasterOptions(method=args.method, model_path=model, bands=args.bands, device=args.device,
                                backend=args.backend, executor=executor,
                                **({"tile": args.tile} if args.tile else {}),
                                **({"overlap": args.overlap} if args.overlap is not None else {}))
    fuse_rasters([raster_info(p) for p in args.inputs], args.out, masks=masks,
                 mask_values=values(args.mask_values, "1"), weight_map_path=args.weights, options=options,
                 progress=progress)


if __name__ == "__main__":
    sys.exit(main())
