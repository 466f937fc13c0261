"""`make demo`: run CloudFree's algorithms on the bundled Sentinel-2 sample, headless.

Every step goes through ``scripts/qgis_process`` (the plugin loaded in QGIS, as in a batch
job), writes GeoTIFFs into ``demo_output/`` and a PNG quick-look of each, and prints what
it did. Add a step for each new capability.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
OUT = ROOT / "demo_output"
RGB = (3, 2, 1)  # the sample's bands are blue, green, red, NIR


def engine():
    sys.path.insert(0, str(ROOT / "scripts"))
    import cloudfree_import  # noqa: F401  (registers this checkout as the package `cloudfree`)

    from cloudfree.models import quicklook

    return quicklook


def qgis_process(algorithm: str, *raw: str, **params) -> dict:
    """Run one algorithm headless; ``raw`` are extra ``KEY=value`` arguments (repeatable keys)."""
    args = [str(ROOT / "scripts" / "qgis_process"), "--json", "run", algorithm, "--", *raw]
    args += [f"{k}={v}" for k, v in params.items()]
    t0 = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{algorithm} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    results = json.loads(proc.stdout)["results"]
    print(f"  {algorithm} ran in {time.perf_counter() - t0:.1f} s")
    return results


def main() -> None:
    ql = engine()
    OUT.mkdir(exist_ok=True)
    clean, cloudy, mask = (SAMPLE / "s2_pair_clean_bgrn.tif", SAMPLE / "s2_pair_cloudy_bgrn.tif",
                           SAMPLE / "s2_pair_mask.tif")
    print(f"CloudFree demo on real Sentinel-2 data ({SAMPLE.name}/, 256x256 px, blue/green/red/NIR)")
    limits = ql.band_limits(str(clean), RGB)
    ql.quicklook(str(clean), OUT / "clear_input.png", RGB, limits=limits)
    ql.quicklook(str(cloudy), OUT / "real_cloudy.png", RGB, limits=limits)
    ql.mask_quicklook(str(mask), OUT / "real_cloud_mask.png")

    print("1. Simulate clouds, shadows and gaps over the clear date (cloudfree:simulateclouds)")
    sim = qgis_process("cloudfree:simulateclouds", INPUT=clean, SEED=42, COVERAGE=0.35, THICKNESS=0.8,
                       SHADOWS="true", MISSING_DATA=0.05, OUTPUT=OUT / "simulated_cloudy.tif",
                       OUTPUT_MASK=OUT / "simulated_mask.tif")
    print(f"  cloud {float(sim['CLOUD_FRACTION']):.1%}, shadow {float(sim['SHADOW_FRACTION']):.1%}, "
          f"missing {float(sim['MISSING_FRACTION']):.1%} -> {Path(sim['OUTPUT']).name}, {Path(sim['OUTPUT_MASK']).name}")
    ql.quicklook(sim["OUTPUT"], OUT / "simulated_cloudy.png", RGB, limits=limits)
    ql.mask_quicklook(sim["OUTPUT_MASK"], OUT / "simulated_mask.png")

    print("2. Compare with the clear date (cloudfree:comparerasters)")
    for label, image, cmp_mask, values, report in (
        ("simulated clouds, inside their mask", sim["OUTPUT"], sim["OUTPUT_MASK"], "1", "compare_simulated.json"),
        ("real clouds, inside the real mask", cloudy, mask, "1", "compare_real_cloud.json"),
        ("real date, clear pixels only", cloudy, mask, "0", "compare_real_clear.json"),
    ):
        r = qgis_process("cloudfree:comparerasters", INPUT=image, REFERENCE=clean, MASK=cmp_mask,
                         MASK_VALUES=values, OUTPUT_REPORT=OUT / report)
        print(f"  {label}: PSNR {float(r['PSNR']):.2f} dB, SSIM {float(r['SSIM']):.3f}, MAE {float(r['MAE']):.4f}, "
              f"SAM {float(r['SAM']):.2f} deg -> {report}")

    print("3. Remove the real clouds with the shipped pix2pix model (cloudfree:removeclouds)")
    free = qgis_process("cloudfree:removeclouds", INPUT=cloudy, MASK=mask, MASK_VALUES="1,2",
                        OUTPUT=OUT / "cloud_free.tif")
    ql.quicklook(free["OUTPUT"], OUT / "cloud_free.png", RGB, limits=limits)
    for label, image in (("cloudy input", cloudy), ("cloud-free output", free["OUTPUT"])):
        r = qgis_process("cloudfree:comparerasters", INPUT=image, REFERENCE=clean, MASK=mask, MASK_VALUES="1,2")
        print(f"  {label} vs the clear date inside the mask: PSNR {float(r['PSNR']):.2f} dB, "
              f"SSIM {float(r['SSIM']):.3f}, MAE {float(r['MAE']):.4f}")

    print("4. Register a cloudy date onto a reference date (cloudfree:register, SIFT + CNN)")
    ref = SAMPLE / "s2_registration_reference_20160608_crop.tif"
    target = SAMPLE / "s2_registration_target_20160529_crop.tif"
    reg = qgis_process("cloudfree:register", REFERENCE=ref, INPUT=target, TRANSFORM=2, METHOD=0,
                       OUTPUT=OUT / "registered.tif", OUTPUT_TIEPOINTS=OUT / "tiepoints.gpkg",
                       OUTPUT_CHECKERBOARD=OUT / "checkerboard.tif")
    print(f"  misregistration found: shift ({float(reg['SHIFT_X']):+.2f}, {float(reg['SHIFT_Y']):+.2f}) px, "
          f"rotation {float(reg['ROTATION']):+.3f} deg, scale {float(reg['SCALE']):.4f}; RMS_all "
          f"{float(reg['RMS_ALL']):.3f} px, RMS_LOO {float(reg['RMS_LOO']):.3f} px, N_red {int(float(reg['N_RED']))}")
    ql.quicklook(str(ref), OUT / "registration_reference.png", (1,), max_size=512)
    ql.quicklook(reg["OUTPUT"], OUT / "registered.png", (1,), max_size=512)
    ql.quicklook(reg["OUTPUT_CHECKERBOARD"], OUT / "checkerboard.png", (1,), max_size=512)

    print("5. Fuse four real NDVI dates with clouds into one image (cloudfree:fusedates, quality network)")
    dates = sorted((SAMPLE / "ndvi").glob("ndvi_*.tif"))
    fusion_args = [f"INPUTS={p}" for p in dates]
    fused = qgis_process("cloudfree:fusedates", *fusion_args, OUTPUT=OUT / "fused_ndvi.tif",
                         OUTPUT_WEIGHTS=OUT / "fusion_weights.tif")
    ndvi_limits = [(0.0, 0.9)]
    for p in dates:
        ql.quicklook(str(p), OUT / f"{p.stem}.png", (1,), limits=ndvi_limits)
    ql.quicklook(fused["OUTPUT"], OUT / "fused_ndvi.png", (1,), limits=ndvi_limits)
    for k in range(len(dates)):
        ql.quicklook(fused["OUTPUT_WEIGHTS"], OUT / f"fusion_weight_date{k + 1}.png", (k + 1,), limits=[(0.0, 1.0)])
    print(f"  fused {len(dates)} dates without their cloud masks -> fused_ndvi.tif, fusion_weights.tif (one band "
          "per date: where each fused pixel came from)")

    print(f"Outputs and PNG quick-looks in {OUT}:")
    for path in sorted(OUT.iterdir()):
        print(f"  {path.name:28s} {path.stat().st_size / 1024:8.1f} KiB")


if __name__ == "__main__":
    main()
