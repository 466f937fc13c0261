"""Cloud detection (detectclouds: ukis-csmask through the tiler) against reference masks, beside a threshold peer.

Scored, each against its own reference, with the same metrics for both methods in the same run:

- ``l8_cloud_labels``: a Landsat 8 Level-1 patch (blue, green, red, NIR digital numbers) with a
  hand-drawn cloud mask (38-Cloud): the 4-band L1C network, scaling DN x 2e-5 - 0.1;
- ``s2_multidate_stack``: five Sentinel-2 L1C dates (13 bands, TOA reflectance) against their
  s2cloudless masks: the 6-band L1C network (B02, B03, B04, B08, B11, B12), pixels of all dates pooled;
- ``landsat_timeseries`` (Fmask): not scorable, its rasters hold red, NIR and SWIR1 only and both the
  detector and the peer need blue and green (the count of Fmask-cloudy dates is printed);
- ``s2_cloudy_scene`` is never scored: its mask comes from ukis-csmask's own tests.

Metrics on cloud vs not cloud (a predicted shadow counts as not cloud): IoU, F1, omission
(missed cloud / reference cloud), commission (false cloud / predicted cloud). Time per megapixel is
measured on the 1128 x 1428 Landsat 8 scene of ``l8_landcover``: detectclouds from disk to disk, the
network alone on the same tiles in memory, and the peer in memory.

The peer is a brightness/whiteness threshold from Fmask's tests that need only visible and NIR
bands (Zhu & Woodcock 2012), thresholds fixed beforehand, not tuned here: mean visible reflectance
> 0.2, whiteness sum|b - mean| / mean < 0.7, haze-optimised transform blue - 0.5 red - 0.08 > 0,
NDVI < 0.8.

    .venv/bin/python benchmarks/detection.py [--dilation 0] [--json results.json]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT.parent / "shared" / "data").resolve()
os.environ.setdefault("GDAL_PAM_ENABLED", "NO")  # never a statistics side file beside the shared data


def engine():
    sys.path.insert(0, str(ROOT / "scripts"))
    import cloudfree_import  # noqa: F401  (registers this checkout as the package `cloudfree`)
    from cloudfree.models import detection
    from cloudfree.models.raster import raster_info

    return detection, raster_info


def read(path) -> np.ndarray:
    from osgeo import gdal

    return gdal.Open(str(path)).ReadAsArray()


def threshold_peer(blue, green, red, nir) -> np.ndarray:
    """Cloud where bright, white, hazy and not vegetated (reflectance inputs)."""
    visible = (blue + green + red) / 3.0
    whiteness = (np.abs(blue - visible) + np.abs(green - visible) + np.abs(red - visible)) / np.maximum(visible, 1e-6)
    hot = blue - 0.5 * red - 0.08
    ndvi = (nir - red) / np.maximum(nir + red, 1e-6)
    return (visible > 0.2) & (whiteness < 0.7) & (hot > 0) & (ndvi < 0.8)


class Scores:
    """Cloud confusion counts pooled over images."""

    def __init__(self):
        self.tp = self.fp = self.fn = self.tn = 0

    def add(self, predicted: np.ndarray, reference: np.ndarray, valid: np.ndarray | None = None) -> None:
        valid = np.ones(reference.shape, bool) if valid is None else valid
        p, r = predicted[valid], reference[valid]
        self.tp += int((p & r).sum())
        self.fp += int((p & ~r).sum())
        self.fn += int((~p & r).sum())
        self.tn += int((~p & ~r).sum())

    def as_dict(self) -> dict:
        tp, fp, fn = self.tp, self.fp, self.fn
        return {"iou": tp / max(tp + fp + fn, 1), "f1": 2 * tp / max(2 * tp + fp + fn, 1),
                "omission": fn / max(tp + fn, 1), "commission": fp / max(tp + fp, 1),
                "accuracy": (tp + self.tn) / max(tp + fp + fn + self.tn, 1),
                "reference_cloud": (tp + fn) / max(tp + fp + fn + self.tn, 1)}


def detect(detection, raster_info, path, roles, scaling, product, dilation, folder) -> tuple:
    """detectclouds' engine call from disk to disk: (mask, seconds)."""
    out = os.path.join(folder, os.path.basename(str(path)) + ".mask.tif")
    started = time.perf_counter()
    detection.detect_clouds(raster_info(str(path)), out, roles, scaling,
                            detection.DetectionOptions(product=product, dilation=dilation))
    return read(out), time.perf_counter() - started


def score_l8_labels(detection, raster_info, dilation, folder) -> dict:
    patch = DATA / "l8_cloud_labels"
    scaling = detection.ReflectanceScaling.preset("landsat_l1_toa")
    mask, _ = detect(detection, raster_info, patch / "bgrn.tif", detection.BandRoles(1, 2, 3, 4), scaling, "l1c",
                     dilation, folder)
    truth = read(patch / "cloud_mask.tif") == 1
    ours, peer = Scores(), Scores()
    ours.add(mask == detection.CLOUD, truth)
    peer.add(threshold_peer(*scaling.apply(read(patch / "bgrn.tif").astype(np.float32))), truth)
    return {"detectclouds": ours.as_dict(), "threshold": peer.as_dict()}


def score_s2_stack(detection, raster_info, dilation, folder) -> dict:
    stack = DATA / "s2_multidate_stack"
    scaling = detection.ReflectanceScaling.preset("reflectance")
    ours, ours4, peer = Scores(), Scores(), Scores()
    for path in sorted(stack.glob("s2_*.tif")):
        truth = read(stack / path.name.replace("s2_", "clm_")) == 1
        six, _ = detect(detection, raster_info, path, detection.BandRoles(2, 3, 4, 8, 12, 13), scaling, "l1c",
                        dilation, folder)
        four, _ = detect(detection, raster_info, path, detection.BandRoles(2, 3, 4, 8), scaling, "l1c",
                         dilation, folder)
        ours.add(six == detection.CLOUD, truth)
        ours4.add(four == detection.CLOUD, truth)
        peer.add(threshold_peer(*read(path)[[1, 2, 3, 7]].astype(np.float32)), truth)
    return {"detectclouds (6 bands)": ours.as_dict(), "detectclouds (4 bands)": ours4.as_dict(),
            "threshold": peer.as_dict()}


def fmask_dates() -> dict:
    """What the landsat_timeseries set would allow: its bands and its cloudy dates by Fmask."""
    series = DATA / "landsat_timeseries"
    cloudy = 0
    masks = sorted(glob.glob(str(series / "*_fmask.tif")))
    for path in masks:
        fmask = read(path)
        filled = fmask != 255
        cloudy += int(filled.any() and (fmask[filled] == 4).mean() > 0.1)
    return {"dates": len(masks), "dates_over_10pct_cloud": cloudy, "bands": "red, NIR, SWIR1",
            "scored": "no: detectclouds (ukis-csmask) and the peer both need blue and green"}


def time_per_megapixel(detection, raster_info, folder, repeats: int = 3) -> dict:
    """Seconds per megapixel on the 1128 x 1428 Landsat 8 scene: detectclouds disk to disk, the network alone on the
    same tiles in memory, the peer in memory (medians over ``repeats``)."""
    path = DATA / "l8_landcover" / "bgrn.tif"
    info = raster_info(str(path))
    megapixels = info.width * info.height / 1e6
    scaling, roles = detection.ReflectanceScaling.preset("landsat_l1_toa"), detection.BandRoles(1, 2, 3, 4)
    end_to_end = [detect(detection, raster_info, path, roles, scaling, "l1c", 0, folder)[1] for _ in range(repeats)]
    detector = detection.CsmaskDetector(detection.CsmaskModel.find(4, "l1c"), roles.roles, scaling)
    from cloudfree.models.tiling import TileLayout

    overlap = detection.DetectionOptions().overlap
    n_tiles = len(TileLayout(info.height, detector.tile, overlap).starts()) * len(
        TileLayout(info.width, detector.tile, overlap).starts())
    dn = read(path).astype(np.float32)
    tiles = np.stack([dn[:, y:y + 256, x:x + 256] for y in range(0, 768, 256) for x in range(0, 768, 256)][:4])
    valid = np.ones((len(tiles), 256, 256), bool)
    raw = []
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(-(-n_tiles // len(tiles))):
            detector(tiles, valid)
        raw.append(time.perf_counter() - started)
    peer = []
    for _ in range(repeats):
        started = time.perf_counter()
        threshold_peer(*scaling.apply(read(path).astype(np.float32)))
        peer.append(time.perf_counter() - started)
    med = lambda v: float(np.median(v)) / megapixels  # noqa: E731
    return {"megapixels": megapixels, "tiles": n_tiles, "detectclouds_s_per_mp": med(end_to_end),
            "network_only_s_per_mp": med(raw), "threshold_s_per_mp": med(peer),
            "threads": os.cpu_count()}


def print_table(title: str, rows: dict) -> None:
    print(f"\n{title}")
    print(f"  {'method':<24} {'IoU':>6} {'F1':>6} {'omission':>9} {'commission':>11} {'accuracy':>9}")
    for name, s in rows.items():
        print(f"  {name:<24} {s['iou']:6.3f} {s['f1']:6.3f} {s['omission']:9.3f} {s['commission']:11.3f} "
              f"{s['accuracy']:9.3f}")
    first = next(iter(rows.values()))
    print(f"  (reference cloud: {100 * first['reference_cloud']:.1f} % of pixels)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dilation", type=int, default=0, help="dilation of detectclouds' mask in pixels (default 0)")
    ap.add_argument("--json", help="also write the figures to this JSON file")
    args = ap.parse_args()
    detection, raster_info = engine()
    with tempfile.TemporaryDirectory(prefix="cloudfree-detection-") as folder:
        results = {"l8_cloud_labels": score_l8_labels(detection, raster_info, args.dilation, folder),
                   "s2_multidate_stack": score_s2_stack(detection, raster_info, args.dilation, folder),
                   "landsat_timeseries": fmask_dates(),
                   "speed": time_per_megapixel(detection, raster_info, folder)}
    print_table("l8_cloud_labels (hand-drawn clouds, 384 x 384, Landsat 8 L1)", results["l8_cloud_labels"])
    print_table("s2_multidate_stack vs s2cloudless (5 dates of 100 x 101, Sentinel-2 L1C, pooled)",
                results["s2_multidate_stack"])
    lt = results["landsat_timeseries"]
    print(f"\nlandsat_timeseries (Fmask): {lt['dates']} dates, {lt['dates_over_10pct_cloud']} with > 10 % cloud; "
          f"bands {lt['bands']}; scored: {lt['scored']}")
    sp = results["speed"]
    print(f"\nspeed on l8_landcover ({sp['megapixels']:.2f} MP, {sp['tiles']} tiles of 256 px, {sp['threads']} "
          f"CPU threads): detectclouds {sp['detectclouds_s_per_mp']:.2f} s/MP disk to disk, network alone "
          f"{sp['network_only_s_per_mp']:.2f} s/MP, threshold peer {sp['threshold_s_per_mp']:.3f} s/MP; "
          f"end-to-end / network = {sp['detectclouds_s_per_mp'] / sp['network_only_s_per_mp']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
