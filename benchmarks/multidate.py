"""Reconstruction from other dates on real time series: each clear date in turn is the truth.

Protocol, per data set: every date that is clear (at most MAX_TARGET_CLOUD of its pixels cloud or
shadow) is a target. Over it the real clouds of a cloudy date are laid: that date's cloud mask,
and inside it that date's own cloudy pixels (real cloud radiance, so a method that looks under
the mask sees clouds, not the truth). The target's own clouds are masked too. The other dates
are the guides with their own cloud masks; the truth date is never among them. Scored inside the
laid clouds where the target is clear (PSNR with reflectance data range 1, SSIM, SAM), beside:

- ``input``: the cloudy input left as it is;
- ``matched_copy``: the nearest clear date per pixel, colours matched (removeclouds METHOD=matched_copy);
- ``median``: the per-pixel median of the dates without their clouds (METHOD=fusion);
- ``unguided``: the shipped model without guides (cloud_removal_s2_s1 on L1C B2/B3/B4/B8, or the
  unmixing fill where the bands are not those);
- ``temporal``: :func:`cloud_removal.reconstruct.reconstruct_from_dates`, the default with guides.

The predicted error of ``temporal`` is checked against its real error on the scored pixels:
Spearman correlation, and the share of real errors inside the 80 % interval (``INTERVAL_80`` times
the predicted absolute error). The self-check (SELF_CHECK) runs on each cloudy input and its
estimate is put beside the true figure.

Data (``../shared/data``): ``sen12mscr_ts/series`` (30 dates of 2018, 13 L1C bands, B2/B3/B4/B8
used; cloud masks detected here with detectclouds, 6 bands, dilation 2: the series ships none),
``s2_multidate_stack`` (5 dates, s2cloudless masks; cloud shapes from the partly cloudy masks of
``s2_ndvi_timeseries``, the same place and grid; cloudy pixels from a date under them), and
``landsat_timeseries`` (105 dates, red/NIR/SWIR1, Fmask).

    .venv/bin/python benchmarks/multidate.py [--sets ts,stack,landsat] [--json docs/multidate.json]
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

from cloudfree.models import metrics, raster  # noqa: E402
from cloudfree.models.cloud_removal import remove_clouds  # noqa: E402
from cloudfree.models.cloud_removal.baselines import fusion_composite, matched_copy_model  # noqa: E402
from cloudfree.models.cloud_removal.guides import Guide, acquisition_date  # noqa: E402
from cloudfree.models.cloud_removal.reconstruct import TemporalOptions, reconstruct_from_dates  # noqa: E402
from cloudfree.models.cloud_removal.selfcheck import SelfCheckOptions  # noqa: E402
from cloudfree.models.cloud_removal.temporal import INTERVAL_80  # noqa: E402

MAX_TARGET_CLOUD = 0.15
SHAPE_COVER = (0.2, 0.97)          # cloud masks that lend their shape: partly cloudy dates
S2_MODEL = ROOT / "models" / "pretrained" / "cloud_removal_s2_s1.safetensors"


# --------------------------------------------------------------------------- data sets
class Dates:
    """A time series: per date its image, its mask (a file, cloud values) and how to read reflectance."""

    def __init__(self, name, images, masks, mask_values, bands, scale, offset=0.0, unguided=None, shape_values=None):
        self.name, self.images, self.masks, self.mask_values = name, images, masks, tuple(mask_values)
        self.bands, self.scale, self.offset, self.unguided = bands, scale, offset, unguided
        self.shape_values = tuple(shape_values or mask_values)   # the codes of a lender's clouds that are laid

    def read(self, i: int) -> np.ndarray:
        return raster.read_window(raster.open_raster(self.images[i]), self._window(i), self.bands, np.float64)

    def cloud(self, i: int, values=None) -> np.ndarray:
        m = raster.read_window(raster.open_raster(self.masks[i]), self._window(i), [1], np.float64)[0]
        return np.isin(m, self.mask_values if values is None else values)

    def _window(self, i: int):
        info = raster.raster_info(self.images[i])
        return (0, 0, info.width, info.height)

    def reflectance(self, x: np.ndarray) -> np.ndarray:
        return x * self.scale + self.offset


def detect_series_masks(folder: Path) -> list:
    """detectclouds' masks of the 30 series dates (6 bands, dilation 2), cached in ``folder``."""
    from cloudfree.models import detection

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in sorted((DATA / "sen12mscr_ts" / "series").glob("s2_*.tif")):
        m = folder / p.name.replace(".tif", "_mask.tif")
        if not m.exists():
            detection.detect_clouds(raster.raster_info(str(p)), str(m), detection.BandRoles(2, 3, 4, 8, 12, 13),
                                    detection.ReflectanceScaling.preset("sentinel2_l1c"),
                                    detection.DetectionOptions(product="l1c", dilation=2))
        out.append(str(m))
    return out


def series(cache: Path) -> Dates:
    images = [str(p) for p in sorted((DATA / "sen12mscr_ts" / "series").glob("s2_*.tif"))]
    return Dates("sen12mscr_ts", images, detect_series_masks(cache), (1, 2), [2, 3, 4, 8], 1e-4,
                 unguided=S2_MODEL)


def stack() -> Dates:
    folder = DATA / "s2_multidate_stack"
    images = [str(p) for p in sorted(folder.glob("s2_*.tif"))]
    masks = [str(folder / Path(p).name.replace("s2_", "clm_")) for p in images]
    return Dates("s2_multidate_stack", images, masks, (1,), [2, 3, 4, 8], 1.0, unguided=None)


def landsat() -> Dates:
    folder = DATA / "landsat_timeseries"
    images = sorted((str(p) for p in folder.glob("*.tif") if not p.name.endswith("_fmask.tif")),
                    key=lambda p: acquisition_date(Path(p).name))
    masks = [p.replace(".tif", "_fmask.tif") for p in images]
    # Fmask 255 is fill (nodata in the image): unusable, but not a cloud to lay over another date
    return Dates("landsat_timeseries", images, masks, (2, 4, 255), [1, 2, 3], 1e-4, shape_values=(2, 4))


def stack_shapes() -> list:
    """Partly cloudy s2cloudless masks of s2_ndvi_timeseries (same place and grid as the stack)."""
    out = []
    for p in sorted((DATA / "s2_ndvi_timeseries" / "cloud_mask").glob("clm_*.tif")):
        m = raster.read_window(raster.open_raster(str(p)), (0, 0, 100, 101), [1], np.float64)[0] == 1
        if SHAPE_COVER[0] <= m.mean() <= SHAPE_COVER[1]:
            out.append(m)
    return out


# --------------------------------------------------------------------------- cases
def cases(d: Dates, shapes: list | None = None) -> list:
    """``(target index, shape index, laid mask, cloudy date index or None)`` per clear date: shapes from
    the partly cloudy dates in turn (or from ``shapes``, pixel values then from the most cloudy date)."""
    cover = [float(d.cloud(i).mean()) for i in range(len(d.images))]
    shapes_cover = [float(d.cloud(i, d.shape_values).mean()) for i in range(len(d.images))]
    targets = [i for i, c in enumerate(cover) if c <= MAX_TARGET_CLOUD]
    lenders = [i for i, c in enumerate(shapes_cover) if SHAPE_COVER[0] <= c <= SHAPE_COVER[1]]
    out = []
    for k, t in enumerate(targets):
        if shapes:
            out.append((t, k % len(shapes), shapes[k % len(shapes)], int(np.argmax(cover))))
        else:
            lender = lenders[k % len(lenders)]
            out.append((t, lender, d.cloud(lender, d.shape_values), lender))
    return out


def write_case(d: Dates, t: int, laid: np.ndarray, lender: int, folder: str) -> tuple:
    """The cloudy input (truth outside the laid clouds, the lender's pixels inside) and its mask
    (1 = laid cloud, 2 = the target's own cloud), as GeoTIFFs on the target's grid."""
    info = raster.raster_info(d.images[t])
    truth = raster.read_window(info.dataset(), (0, 0, info.width, info.height), None, np.float64)
    cloudy = raster.read_window(raster.open_raster(d.images[lender]), (0, 0, info.width, info.height), None,
                                np.float64)
    own = d.cloud(t)
    nodata = [info.nodata[b - 1] for b in range(1, info.band_count + 1)]
    laid = laid & raster.valid_mask(cloudy, nodata) & raster.valid_mask(truth, nodata)
    name = Path(d.images[t]).name
    image = np.where(laid[None], cloudy, truth)
    path = os.path.join(folder, name)
    raster.write_array(path, image.astype(info.dtype), like=info, nodata=info.nodata[0])
    mask = np.where(laid, 1, np.where(own, 2, 0)).astype(np.uint8)
    mpath = os.path.join(folder, "mask_" + name)
    raster.write_array(mpath, mask[None], like=info)
    return path, mpath, laid & ~own


MAX_GUIDES = 30


def guides_for(d: Dates, t: int) -> list:
    """The MAX_GUIDES other dates nearest in time that have a clear pixel (removeclouds refuses a guide that is
    all cloud): every other date of the two Sentinel-2 sets, the nearest 30 of the 104 Landsat ones."""
    when = acquisition_date(Path(d.images[t]).name)
    usable = [i for i in range(len(d.images)) if i != t and not d.cloud(i).all()]
    usable = sorted(usable, key=lambda i: abs((acquisition_date(Path(d.images[i]).name) - when).days))[:MAX_GUIDES]
    return [Guide(d.images[i], mask=d.masks[i], mask_values=d.mask_values, name=Path(d.images[i]).stem)
            for i in sorted(usable)]


# --------------------------------------------------------------------------- methods and scores
def run_methods(d: Dates, path: str, mpath: str, guides: list, folder: str, check: bool) -> tuple:
    src, mask = raster.raster_info(path), raster.raster_info(mpath)
    out, seconds, summaries = {}, {}, {}
    nb = len(d.bands)

    def timed(name, fn):
        t0 = time.process_time()
        summaries[name] = fn(os.path.join(folder, f"{name}.tif"))
        seconds[name] = time.process_time() - t0
        out[name] = os.path.join(folder, f"{name}.tif")

    timed("matched_copy", lambda o: remove_clouds(src, o, matched_copy_model(folder), bands=d.bands, mask=mask,
                                                  mask_values=(1, 2), guides=guides))
    timed("median", lambda o: fusion_composite(src, o, guides, bands=d.bands, mask=mask, mask_values=(1, 2)))
    unguided = str(d.unguided) if d.unguided else None
    if unguided is None:
        from cloudfree.models.cloud_removal.baselines import fill_model
        unguided = fill_model(folder, nb)
    timed("unguided", lambda o: remove_clouds(src, o, unguided, bands=d.bands, mask=mask, mask_values=(1, 2)))
    opts = TemporalOptions(provenance=os.path.join(folder, "prov.tif"), uncertainty=os.path.join(folder, "err.tif"),
                           self_check=SelfCheckOptions() if check else None)
    timed("temporal", lambda o: reconstruct_from_dates(src, o, guides, bands=d.bands, mask=mask, mask_values=(1, 2),
                                                       options=opts))
    return out, seconds, opts, summaries["temporal"]


def read_all(path: str) -> np.ndarray:
    info = raster.raster_info(path)
    return raster.read_window(info.dataset(), (0, 0, info.width, info.height), None, np.float64)


def figures(out: np.ndarray, truth: np.ndarray, scored: np.ndarray) -> dict:
    a, b = np.clip(out, 0, 1), np.clip(truth, 0, 1)
    return {"psnr": metrics.psnr(a, b, 1.0, mask=scored), "ssim": metrics.ssim(a, b, 1.0, mask=scored),
            "sam": metrics.sam_degrees(a, b, mask=scored)}


def error_figures(value: np.ndarray, truth: np.ndarray, predicted: np.ndarray, scored: np.ndarray) -> dict:
    from scipy.stats import spearmanr

    err = np.abs(value - truth)[:, scored].ravel()
    pred = predicted[:, scored].ravel()
    ok = np.isfinite(err) & np.isfinite(pred)
    return {"spearman": float(spearmanr(pred[ok], err[ok]).correlation),
            "coverage80": float((err[ok] <= INTERVAL_80 * pred[ok]).mean()),
            "median_ratio": float(np.median(err[ok] / np.maximum(pred[ok], 1e-12))),
            "q80_ratio": float(np.quantile(err[ok] / np.maximum(pred[ok], 1e-12), 0.8))}


def one_case(d: Dates, t: int, laid: np.ndarray, lender: int, work: str, check: bool) -> dict:
    folder = tempfile.mkdtemp(dir=work)
    path, mpath, scored = write_case(d, t, laid, lender, folder)
    guides = guides_for(d, t)
    truth = d.reflectance(d.read(t))
    outs, seconds, opts, summary = run_methods(d, path, mpath, guides, folder, check)
    row = {"target": Path(d.images[t]).stem, "clouds_from": Path(d.images[lender]).stem,
           "scored_pixels": int(scored.sum()), "cpu_seconds": seconds}
    row["input"] = figures(d.reflectance(read_all(path)[[b - 1 for b in d.bands]]), truth, scored)
    for name, p in outs.items():
        row[name] = figures(d.reflectance(read_all(p)), truth, scored)
    value = d.reflectance(read_all(outs["temporal"]))
    row["error"] = error_figures(value, truth, read_all(opts.uncertainty) * d.scale, scored)
    if check:
        sc = summary["self_check"]
        if "skipped" in sc:
            row["self_check_skipped"] = sc["skipped"]
            return row
        row["self_check"] = {"psnr": sc["temporal"]["psnr"], "psnr_interval": sc["temporal"]["psnr_interval"],
                             "copy_psnr": sc["matched_copy"]["psnr"], "cpu_seconds": sc["cpu_seconds"],
                             "share_of_run": sc["cpu_seconds"] / max(seconds["temporal"], 1e-9),
                             "true_psnr": row["temporal"]["psnr"],
                             "within_1_5_db": abs(sc["temporal"]["psnr"] - row["temporal"]["psnr"]) <= 1.5}
    return row


def picture(d: Dates, t: int, laid: np.ndarray, lender: int, work: str, path: str) -> None:
    """Input, reconstruction, truth, provenance and predicted error of one target, side by side (PNG)."""
    from matplotlib.colors import ListedColormap

    from cloudfree.models.cloud_removal import provenance
    from cloudfree.models.normalization import stretch, stretch_limits
    from cloudfree.models.reports import new_figure

    folder = tempfile.mkdtemp(dir=work)
    cloudy, mpath, scored = write_case(d, t, laid, lender, folder)
    opts = TemporalOptions(provenance=os.path.join(folder, "prov.tif"), uncertainty=os.path.join(folder, "err.tif"))
    summary = reconstruct_from_dates(raster.raster_info(cloudy), os.path.join(folder, "out.tif"), guides_for(d, t),
                                     bands=d.bands, mask=raster.raster_info(mpath), options=opts)
    rgb = [2, 1, 0]
    truth = d.read(t)[rgb]
    limits = [stretch_limits(band) for band in truth]          # per band, from the truth, shared by the panels

    def show(a):
        a = a[rgb] if a.shape[0] > 3 else a
        return np.moveaxis(np.stack([stretch(b, lo, hi) for b, (lo, hi) in zip(a, limits)]), 0, -1)

    panels = [("cloudy input", show(read_all(cloudy)[[b - 1 for b in d.bands]])),
              ("reconstructed", show(read_all(os.path.join(folder, "out.tif")))), ("truth (held out)", show(truth))]
    fig = new_figure(15, 3.4)
    for k, (title, image) in enumerate(panels):
        ax = fig.add_subplot(1, 5, k + 1)
        ax.imshow(image)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    prov = read_all(opts.provenance)[0].astype(int)
    codes = sorted(set(np.unique(prov).tolist()) - {provenance.NODATA})
    colours = provenance.colours(len(summary["dates"]))
    lut = ListedColormap([np.array(colours[c]) / 255 for c in codes])
    index = np.searchsorted(codes, prov)
    ax = fig.add_subplot(1, 5, 4)
    ax.imshow(index, cmap=lut, vmin=-0.5, vmax=len(codes) - 0.5, interpolation="nearest")
    ax.set_title("provenance (date used)", fontsize=9)
    ax.axis("off")
    legend = summary["legend"]
    counts = {c: int((prov == c).sum()) for c in codes}
    top = sorted((c for c in codes if c), key=lambda c: -counts[c])[:4]
    for c in [0] + top:
        ax.plot([], [], "s", color=np.array(colours[c]) / 255, label=legend[c].replace("guide ", "")[:28])
    ax.legend(fontsize=6, loc="lower left", framealpha=0.8)
    err = read_all(opts.uncertainty).mean(axis=0) * d.scale
    ax = fig.add_subplot(1, 5, 5)
    im = ax.imshow(err, cmap="viridis", vmin=0, vmax=float(np.nanpercentile(err[laid], 98)))
    ax.set_title("predicted abs. error (reflectance)", fontsize=9)
    ax.axis("off")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.savefig(path, dpi=90, bbox_inches="tight")


def summarise(rows: list) -> dict:
    methods = ["input", "matched_copy", "median", "unguided", "temporal"]
    s = {m: {k: statistics.median(r[m][k] for r in rows if r[m][k] is not None) for k in ("psnr", "ssim", "sam")}
         for m in methods}
    gain = [r["temporal"]["psnr"] - r["matched_copy"]["psnr"] for r in rows]
    s["temporal_minus_copy_db"] = {"median": statistics.median(gain), "worse_count": sum(g < 0 for g in gain),
                                   "targets": len(rows)}
    s["error"] = {k: statistics.median(r["error"][k] for r in rows) for k in rows[0]["error"]}
    checked = [r for r in rows if "self_check" in r]
    if checked:
        s["self_check"] = {"within_1_5_db": sum(r["self_check"]["within_1_5_db"] for r in checked),
                           "targets": len(checked), "skipped": len(rows) - len(checked),
                           "median_abs_gap_db": statistics.median(abs(r["self_check"]["psnr"] - r["temporal"]["psnr"])
                                                                  for r in checked),
                           "median_cpu_seconds": statistics.median(r["self_check"]["cpu_seconds"] for r in checked)}
    s["cpu_seconds"] = {m: statistics.median(r["cpu_seconds"][m] for r in rows) for m in rows[0]["cpu_seconds"]}
    return s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="ts,stack,landsat")
    ap.add_argument("--json", default=None)
    ap.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "cloudfree-series-masks"))
    ap.add_argument("--no-self-check", action="store_true")
    ap.add_argument("--limit", type=int, default=0, help="at most this many targets per set (0: all)")
    ap.add_argument("--picture", default=None, help="write the quick-look of the sen12mscr_ts target with the index "
                                                    "--picture-case here (PNG) and stop")
    ap.add_argument("--picture-case", type=int, default=1)
    args = ap.parse_args()
    results = {}
    if args.picture:
        d = series(Path(args.cache))
        t, _, laid, lender = cases(d)[args.picture_case]
        with tempfile.TemporaryDirectory(prefix="cloudfree-multidate-") as work:
            picture(d, t, laid, lender, work, args.picture)
        return
    with tempfile.TemporaryDirectory(prefix="cloudfree-multidate-") as work:
        for key in args.sets.split(","):
            d = {"ts": lambda: series(Path(args.cache)), "stack": stack, "landsat": landsat}[key]()
            todo = cases(d, stack_shapes() if key == "stack" else None)
            if args.limit:
                todo = todo[:args.limit]
            rows = []
            for t, _, laid, lender in todo:
                r = one_case(d, t, laid, lender, work, not args.no_self_check)
                rows.append(r)
                print(f"{d.name} {r['target']} (clouds of {r['clouds_from']}, {r['scored_pixels']} px): " + "  ".join(
                    f"{m} {r[m]['psnr']:.2f}" for m in ("input", "matched_copy", "median", "unguided", "temporal"))
                    + f"  rho {r['error']['spearman']:.2f} cov80 {r['error']['coverage80']:.2f}"
                    + (f"  self-check {r['self_check']['psnr']:.2f}" if "self_check" in r else "")
                    + "  cpu s " + " ".join(f"{k} {v:.1f}" for k, v in r["cpu_seconds"].items()), flush=True)
            results[d.name] = {"summary": summarise(rows), "rows": rows}
            print(json.dumps(results[d.name]["summary"], indent=1), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
