"""Benchmark of the U-Net segmentation (models/segmentation/) against a per-pixel random forest, on real labels.

    .venv/bin/python benchmarks/segmentation.py [all|nlcd|ndvi] [--epochs N] [--out FILE]

Each data set is cut into two spatial blocks: the U-Net (``train_segmentation``) and the random
forest (scikit-learn, 100 trees, on the same bands, 50,000 labelled pixels of the training
block) learn on the top block; both are scored on the bottom block (the last quarter of the
rows), which neither saw, the U-Net through ``segment`` over the whole raster (the tiler), the
forest pixel by pixel. Printed per data set: per-class Dice, pixel accuracy, mIoU and mean Dice
of both, the U-Net / forest ratios, and the times.

- nlcd: ``l8_landcover``: Landsat 8 blue, green, red, NIR (DN) of Zion against NLCD 2011
  (14 classes, nodata 255), 1128 x 1428 px.
- ndvi: ``s2_ndvi_timeseries``: six real NDVI dates of summer 2016 as six bands against its
  land-cover labels (classes 1, 2, 3, 4, 8; 0 = unlabelled), 100 x 101 px.
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import cloudfree_import  # noqa: E402,F401  (registers this checkout as the package `cloudfree`)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from osgeo import gdal  # noqa: E402

from cloudfree.models import segmentation as sg  # noqa: E402
from cloudfree.models.class_metrics import class_scores  # noqa: E402
from cloudfree.models.raster import raster_info  # noqa: E402

DATA = ROOT.parent / "shared" / "data"
NDVI_DATES = ["20160605T100650", "20160615T100608", "20160625T100617", "20160725T100602", "20160804T100613",
              "20160814T100604"]
RF_PIXELS = 50_000
SETS = {
    "nlcd": dict(inputs=[DATA / "l8_landcover" / "bgrn.tif"], labels=DATA / "l8_landcover" / "landcover.tif",
                 ignore=None, config=dict(tile=128, depth=3, width=16, steps_per_epoch=8, batch_size=8, epochs=25)),
    "ndvi": dict(inputs=[DATA / "s2_ndvi_timeseries" / "ndvi" / f"ndvi_{t}.tif" for t in NDVI_DATES],
                 labels=DATA / "s2_ndvi_timeseries" / "landcover.tif", ignore=0,
                 config=dict(tile=48, depth=2, width=16, steps_per_epoch=8, batch_size=8, epochs=30)),
}


def unet(spec: dict, epochs: int | None, folder: str) -> tuple:
    """Train on the top block, segment the whole raster; the predicted class values and the times."""
    inputs = [raster_info(str(p)) for p in spec["inputs"]]
    config = dict(spec["config"], **({"epochs": epochs} if epochs else {}))
    cfg = sg.SegmentationTrainConfig(inputs, sg.LabelSource(raster=raster_info(str(spec["labels"])),
                                                            ignore_value=spec["ignore"]), device="cpu", seed=0,
                                     **config)
    t0 = time.time()
    result = sg.train_segmentation(cfg, os.path.join(folder, "unet.safetensors"))
    t1 = time.time()
    out = os.path.join(folder, "classes.tif")
    sg.segment(inputs, result.model_path, out, sg.SegmentOptions(device="cpu", overlap=32))
    t2 = time.time()
    return gdal.Open(out).ReadAsArray(), result, t1 - t0, t2 - t1


def forest(data: sg.TrainingData, rng: np.random.Generator) -> tuple:
    """A random forest on the raw bands of labelled training-block pixels; its class indices on the validation block."""
    from sklearn.ensemble import RandomForestClassifier

    rows, cols = data.train_extent()
    t = data.target[:rows, :cols]
    x = data.x[:, :rows, :cols]
    where = np.flatnonzero(t.ravel() >= 0)
    pick = rng.choice(where, min(RF_PIXELS, where.size), replace=False)
    features = x.reshape(x.shape[0], -1)[:, pick].T
    t0 = time.time()
    model = RandomForestClassifier(n_estimators=100, n_jobs=2, random_state=0).fit(features, t.ravel()[pick])
    t1 = time.time()
    vx, _ = data.validation()
    predicted = model.predict(vx.reshape(vx.shape[0], -1).T).reshape(vx.shape[1:])
    return predicted, t1 - t0, time.time() - t1


def run(name: str, epochs: int | None) -> str:
    spec = SETS[name]
    torch.set_num_threads(2)
    inputs = [raster_info(str(p)) for p in spec["inputs"]]
    data = sg.load_training_data(inputs, sg.LabelSource(raster=raster_info(str(spec["labels"])),
                                                        ignore_value=spec["ignore"]), 0.25, gap=8)
    _, truth = data.validation()
    with tempfile.TemporaryDirectory() as folder:
        classes, result, train_s, segment_s = unet(spec, epochs, folder)
    cut = data.validation_slices()
    unet_index = data.classes.index_lookup(classes[cut].astype(np.float64))
    rf_index, rf_train_s, rf_predict_s = forest(data, np.random.default_rng(0))
    n = data.classes.count
    u = class_scores(unet_index, truth, n, truth >= 0)
    r = class_scores(rf_index, truth, n, truth >= 0)
    return table(name, data, u, r, result, (train_s, segment_s, rf_train_s, rf_predict_s))


def _f(v) -> str:
    return "  n/a" if v is None else f"{v:5.3f}"


def table(name, data, u, r, result, times) -> str:
    h, w = data.target.shape
    lines = [f"== {name}: {w} x {h} px, {len(data.band_names)} bands, {data.classes.count} classes; validation block "
             f"{u['n_pixels']} labelled px (bottom quarter), never seen in training",
             f"{'class':>6} {'name':<30} {'pixels':>8} {'Dice U-Net':>10} {'Dice RF':>8}"]
    for i, (v, nm) in enumerate(zip(data.classes.values, data.classes.names)):
        lines.append(f"{v:>6} {nm[:30]:<30} {u['support'][i]:>8} {_f(u['dice'][i]):>10} {_f(r['dice'][i]):>8}")
    for key, label in (("pixel_accuracy", "pixel accuracy"), ("miou", "mIoU"), ("mean_dice", "mean Dice"),
                       ("fwiou", "fw IoU")):
        ratio = u[key] / r[key] if r[key] else float("nan")
        lines.append(f"{label:<38}  U-Net {u[key]:.3f}  RF {r[key]:.3f}  ratio U-Net/RF {ratio:.2f}")
    train_s, segment_s, rf_train_s, rf_predict_s = times
    lines.append(f"U-Net: {result.epochs_run} epochs (best {result.best_epoch}) in {train_s:.0f} s, segment (whole "
                 f"raster, tiled) {segment_s:.1f} s; RF: fit {rf_train_s:.1f} s, predict {rf_predict_s:.1f} s")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("which", nargs="?", default="all", choices=["all", *SETS])
    parser.add_argument("--epochs", type=int, default=None, help="override the epochs of every data set")
    parser.add_argument("--out", default=None, help="also write the tables to this file")
    args = parser.parse_args()
    os.environ.setdefault("GDAL_PAM_ENABLED", "NO")
    gdal.SetConfigOption("GDAL_PAM_ENABLED", "NO")
    text = "\n\n".join(run(name, args.epochs) for name in (SETS if args.which == "all" else [args.which]))
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
