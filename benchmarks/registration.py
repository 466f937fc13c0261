"""Benchmark of image registration (models/registration/) against OpenCV and AROSICS.

    .venv/bin/python benchmarks/registration.py [all|real|robust|dates|radar] [--runs 3] [--no-arosics]
                                                [--warps 6] [--pairs ben0,ben1,ben2]
                                                [--methods structure,sift,sift_cnn,opencv] [--json OUT.json]

- real: the real Sentinel-2 pair of ../shared/data/s2_registration_pair (AROSICS' INTER1 case:
  reference_20160608.tif vs target_20160529.tif, band 1, real clouds, real misregistration).
  Every method writes the target resampled onto the reference grid (or AROSICS writes its
  corrected target, which is then put on the reference grid with gdal.Warp, nearest neighbour:
  the grids are aligned, see the printed origin offsets), and the residual misregistration is
  measured independently: phase correlation (skimage, upsampled x100, Hann window) of 128x128
  windows of the reference against the output, clear windows only (data in both, no bright
  cloud, some texture), median (x, y) shift over the windows. Times are medians of ``--runs``
  runs (reading, matching, fitting and writing the output). Methods: CloudFree ``sift`` and
  ``sift_cnn`` (affine); a plain OpenCV baseline (SIFT, ratio test 0.75, RANSAC
  cv2.estimateAffine2D, cv2.warpAffine); AROSICS COREG (global) and COREG_LOCAL (grid_res 200,
  window 256), run in a subprocess with the separate venv ``.venv-arosics`` (arosics < 1.13);
  their times are measured inside that process (imports excluded).
- robust: real 512x512 windows (the pair's reference, s2_cloudy_scene NIR, l8_cloudy_scene
  NIR, the latter two padded from their full scenes, and two dates: the pair's reference against
  its other date, whose own real shift is measured on the unwarped pair and taken out) warped by
  16 known transforms (rotations 0 to 180 degrees, scales 0.5 to 2, both together,
  brightness/contrast/gamma change, synthetic clouds from models.clouds over the sensed image,
  with and without the cloud mask). Error = RMS over a
  grid of reference points (inside the part the sensed image covers) of the distance between
  the estimated and the true sensed position; success = error < 1 px. Reports success rate,
  median RMS_all (the method's own inlier residual RMS) and median N_red (inliers) for CloudFree
  sift, sift_cnn and the OpenCV baseline. All use the affine model.
- dates: a real second date warped by known transforms onto its reference date: the clear and the
  cloudy date of s2_cloud_pair (NIR, with the real cloud and shadow mask) and clear NDVI dates of
  s2_ndvi_timeseries in three pairs of seasons (July/December, May/August, October/April); the 12
  geometric cases of the robust sweep and 4 moderate ones (rotation up to 25 degrees, scale
  0.85-1.1); the dates' own misregistration, measured on the unwarped pair by the structure method,
  is taken out. Methods: sift, sift_cnn, structure (its default search), structure_wide (any rotation,
  scales 0.5-2: coarse to fine), auto (SIFT, then structure over that wide range when SIFT refuses),
  OpenCV; summaries over all cases and over the cases inside the structure search (rotation up to 30
  degrees, scale 0.8-1.25).
- radar: known warps (rotation up to 30 degrees, scale 0.8-1.25, shift up to 4 px) of the real
  Sentinel-1 VV image of each s1_s2_pairs patch (BigEarthNet ben0-ben5 onto Sentinel-2 NIR, and
  scikit-eo's S1 onto Landsat 8 NIR; the rasters hold every band of the files, the chosen bands are
  NIR and VV); the pair's own misregistration, measured once on the unwarped pair by the structure
  method (without its no-match check), is taken out. Methods: structure, structure_unchecked (the
  same without the no-match check), sift, sift_cnn, OpenCV. The structure method's design
  was chosen on ben0-ben2 only (DEVELOPMENT_PAIRS); ben3-ben5 and scikit-eo are held out and
  reported apart.

Conventions: shifts are (x, y) in reference pixels; a registered output should show (0, 0).
AROSICS reports the correction (opposite sign to CloudFree's shift_x/shift_y).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import cloudfree_import  # noqa: E402,F401  (registers this checkout as the package `cloudfree`)

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from osgeo import gdal  # noqa: E402

from cloudfree.models import registration as reg  # noqa: E402
from cloudfree.models.raster import raster_info, write_array  # noqa: E402

_print = print


def print(*args, **kwargs):  # noqa: A001  (progress lines appear at once when redirected)
    kwargs.setdefault("flush", True)
    _print(*args, **kwargs)


gdal.UseExceptions()
DATA = ROOT.parent / "shared" / "data"
PAIR = DATA / "s2_registration_pair"
AROSICS_PY = ROOT / ".venv-arosics" / "bin" / "python"


# =========================================================================== helpers


def read_band(path, band=1):
    ds = gdal.Open(str(path))  # keep the dataset alive while its band is read
    arr = ds.GetRasterBand(band).ReadAsArray().astype(np.float32)
    ds = None
    return arr


def stretch_u8(img, valid):
    lo, hi = np.percentile(img[valid], [2, 98]) if valid.any() else (0, 1)
    return np.clip((img - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)


def opencv_match(ref, sen, ref_valid, sen_valid, ratio=0.75):
    """Plain OpenCV: SIFT + ratio test + RANSAC affine. Returns (2x3 ref->sensed, inlier src, dst) or None."""
    sift = cv2.SIFT_create(nfeatures=8000)
    k1, d1 = sift.detectAndCompute(stretch_u8(ref, ref_valid), ref_valid.astype(np.uint8) * 255)
    k2, d2 = sift.detectAndCompute(stretch_u8(sen, sen_valid), sen_valid.astype(np.uint8) * 255)
    if d1 is None or d2 is None or len(k1) < 3 or len(k2) < 3:
        return None
    knn = cv2.BFMatcher(cv2.NORM_L2).knnMatch(d1, d2, k=2)
    good = [m[0] for m in knn if len(m) == 2 and m[0].distance < ratio * m[1].distance]
    if len(good) < 6:
        return None
    src = np.float32([k1[m.queryIdx].pt for m in good])
    dst = np.float32([k2[m.trainIdx].pt for m in good])
    m, inl = cv2.estimateAffine2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=3.0, maxIters=5000)
    if m is None or inl is None or inl.sum() < 6:
        return None
    inl = inl.ravel().astype(bool)
    return m, src[inl], dst[inl]


def apply_affine(m, pts):
    return pts @ m[:, :2].T + m[:, 2]


# =========================================================================== real pair


def residual_shift(a, b, win=128):
    """Median (x, y) phase-correlation shift of ``b`` against ``a`` over clear windows."""
    from skimage.registration import phase_cross_correlation

    hw = np.outer(np.hanning(win), np.hanning(win))
    shifts = []
    for y in range(0, a.shape[0] - win, win):
        for x in range(0, a.shape[1] - win, win):
            wa, wb = a[y:y + win, x:x + win], b[y:y + win, x:x + win]
            if (wa == 0).any() or (wb == 0).any() or wb.max() > 2000 or wa.std() < 30:
                continue
            s, _, _ = phase_cross_correlation((wa - wa.mean()) * hw, (wb - wb.mean()) * hw, upsample_factor=100)
            if np.abs(s).max() < 4:
                shifts.append((s[1], s[0]))
    if not shifts:
        return (float("nan"), float("nan")), 0
    med = np.median(np.array(shifts), axis=0)
    return (float(med[0]), float(med[1])), len(shifts)


def on_reference_grid(path, ref):
    """Array of raster ``path`` on the reference grid (nearest neighbour; nodata 0)."""
    ds = gdal.Open(str(path))
    gt, rgt = ds.GetGeoTransform(), ref.geotransform
    off = ((gt[0] - rgt[0]) / rgt[1], (gt[3] - rgt[3]) / rgt[5])
    if gt == tuple(rgt) and (ds.RasterXSize, ds.RasterYSize) == (ref.width, ref.height):
        arr = ds.GetRasterBand(1).ReadAsArray()
    else:
        mem = gdal.Warp("", ds, format="MEM", outputBounds=ref.bounds, width=ref.width, height=ref.height,
                        dstNodata=0, resampleAlg="near")
        arr = mem.GetRasterBand(1).ReadAsArray()
        mem = None
    return arr.astype(np.float32), off


def run_cloudfree(method, ref, tgt, out):
    t = time.perf_counter()
    r = reg.register(ref, tgt, str(out), transform="affine", method=method)
    return time.perf_counter() - t, {"shift_x": r.shift_x, "shift_y": r.shift_y, "rms_all": r.rms_all,
                                     "rms_loo": r.rms_loo, "n_red": r.n_red, "n_matches": r.n_matches}


def run_opencv(ref, tgt, out):
    t = time.perf_counter()
    a = read_band(ref.path)
    b = read_band(tgt.path)
    res = opencv_match(a, b, a > 0, b > 0)
    if res is None:
        raise RuntimeError("OpenCV baseline found no transform")
    m, src, dst = res
    # m maps reference pixels to target pixels: sample the target at m(x) for every reference pixel
    warped = cv2.warpAffine(b, m, (ref.width, ref.height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    valid = cv2.warpAffine((b > 0).astype(np.uint8), m, (ref.width, ref.height),
                           flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, borderValue=0)
    warped = np.where(valid > 0, np.clip(np.rint(warped), 1, 65535), 0).astype(np.uint16)
    write_array(str(out), warped[None], like=ref, nodata=0)
    sec = time.perf_counter() - t
    # misregistration relative to the georeferencing, at the reference centre
    gr, gs = ref.geotransform, tgt.geotransform
    c = np.array([[(ref.width - 1) / 2, (ref.height - 1) / 2]])
    geo = (c * [gr[1], gr[5]] + [gr[0], gr[3]] - [gs[0], gs[3]]) / [gs[1], gs[5]]  # georef position in target
    sh = apply_affine(m, c)[0] - geo[0]
    rms = float(np.sqrt(np.mean(np.sum((apply_affine(m, src) - dst) ** 2, axis=1))))
    return sec, {"shift_x": float(sh[0]), "shift_y": float(sh[1]), "rms_all": rms, "n_red": int(len(src))}


AROSICS_CODE = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
t0 = time.perf_counter()
from arosics import COREG, COREG_LOCAL
import numpy as np
t_import = time.perf_counter() - t0
kind, ref, tgt, out = sys.argv[1:5]
t = time.perf_counter()
if kind == "global":
    cr = COREG(ref, tgt, path_out=out, fmt_out="GTIFF", ws=(256, 256), nodata=(0, 0), align_grids=True,
               q=True)
    cr.calculate_spatial_shifts()
    cr.correct_shifts()
    info = {"x_shift_px": float(cr.x_shift_px), "y_shift_px": float(cr.y_shift_px)}
else:
    cr = COREG_LOCAL(ref, tgt, grid_res=200, window_size=(256, 256), path_out=out, fmt_out="GTIFF",
                     nodata=(0, 0), align_grids=True, q=True)
    cr.correct_shifts()
    tab = cr.CoRegPoints_table
    ok = tab[tab["OUTLIER"] == False]  # noqa: E712
    info = {"n_points": int(len(ok)), "x_shift_px_median": float(np.median(ok["X_SHIFT_PX"])),
            "y_shift_px_median": float(np.median(ok["Y_SHIFT_PX"]))}
info["seconds"] = time.perf_counter() - t
info["import_seconds"] = t_import
print("AROSICS_JSON " + json.dumps(info))
"""


def run_arosics(kind, ref, tgt, out):
    p = subprocess.run([str(AROSICS_PY), "-c", AROSICS_CODE, kind, ref.path, tgt.path, str(out)],
                       capture_output=True, text=True, timeout=900)
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("AROSICS_JSON ")]
    if p.returncode != 0 or not line:
        raise RuntimeError(f"AROSICS {kind} failed (rc {p.returncode}): {(p.stderr or p.stdout)[-1500:]}")
    info = json.loads(line[-1][len("AROSICS_JSON "):])
    return info.pop("seconds"), info


def bench_real(runs=3, arosics=True):
    ref = raster_info(str(PAIR / "reference_20160608.tif"))
    tgt = raster_info(str(PAIR / "target_20160529.tif"))
    a = read_band(ref.path)
    before, off = on_reference_grid(tgt.path, ref)
    (bx, by), nb = residual_shift(a, before)
    print(f"real pair before registration: residual ({bx:+.3f}, {by:+.3f}) px over {nb} windows "
          f"(target origin offset {off[0]:+.2f}, {off[1]:+.2f} px)")
    methods = [("CloudFree sift", lambda o: run_cloudfree("sift", ref, tgt, o)),
               ("CloudFree sift_cnn", lambda o: run_cloudfree("sift_cnn", ref, tgt, o)),
               ("OpenCV SIFT+RANSAC", lambda o: run_opencv(ref, tgt, o))]
    if arosics:
        methods += [("AROSICS global", lambda o: run_arosics("global", ref, tgt, o)),
                    ("AROSICS local", lambda o: run_arosics("local", ref, tgt, o))]
    rows = {"before": {"residual_x": bx, "residual_y": by, "windows": nb}}
    with tempfile.TemporaryDirectory(prefix="cf_regbench_") as tmp:
        for name, fn in methods:
            times, info, err = [], {}, None
            out = Path(tmp) / (name.replace(" ", "_").replace("+", "_") + ".tif")
            for _ in range(runs):
                try:
                    sec, info = fn(out)
                except Exception as exc:  # report, keep going
                    err = f"{type(exc).__name__}: {exc}"
                    break
                times.append(sec)
            if err:
                print(f"{name}: FAILED {err}")
                rows[name] = {"error": err}
                continue
            after, off = on_reference_grid(out, ref)
            (ax, ay), na = residual_shift(a, after)
            rows[name] = {"residual_x": ax, "residual_y": ay, "residual": math.hypot(ax, ay), "windows": na,
                          "seconds_median": float(np.median(times)), "seconds_runs": [round(t, 2) for t in times],
                          "output_origin_offset_px": [round(off[0], 3), round(off[1], 3)], **info}
            print(f"{name}: residual ({ax:+.3f}, {ay:+.3f}) px over {na} windows, "
                  f"median {np.median(times):.2f} s of {[round(t, 1) for t in times]}; {info}", flush=True)
    ratios = {}
    for ours in ("CloudFree sift", "CloudFree sift_cnn"):
        for other in ("AROSICS local", "AROSICS global", "OpenCV SIFT+RANSAC"):
            if "seconds_median" in rows.get(ours, {}) and "seconds_median" in rows.get(other, {}):
                ratios[f"{ours} / {other}"] = rows[ours]["seconds_median"] / rows[other]["seconds_median"]
    return {"methods": rows, "time_ratios": ratios}


# =========================================================================== robustness

N = 512


def real_windows():
    """name -> (float32 source image, (x0, y0) of the 512x512 reference window in it, the sensed
    source: None = the same image, or another date on the same grid)."""
    pair = read_band(PAIR / "reference_20160608.tif")
    out = {"s2_pair_ref": (pair, (900, 1200), None)}
    s2 = read_band(DATA / "s2_cloudy_scene" / "scene.tif", 4)
    out["s2_scene_nir"] = (s2 * 10000.0, (0, 0), None)
    l8 = read_band(DATA / "l8_cloudy_scene" / "bgrn.tif", 4)
    out["l8_nir"] = (l8, (57, 45), None)
    # two dates (2016-06-08 reference, 2016-05-29 sensed), with their own real misregistration
    out["s2_two_dates"] = (pair, (900, 1200), on_reference_pixels(PAIR / "target_20160529.tif",
                                                                   PAIR / "reference_20160608.tif"))
    return out


def on_reference_pixels(path, reference):
    """Band 1 of ``path`` placed on the pixels of ``reference`` (same 10 m grid, another extent: an
    integer offset; 0 where it has no data), values unchanged."""
    ref, src = gdal.Open(str(reference)), gdal.Open(str(path))
    gr, gs = ref.GetGeoTransform(), src.GetGeoTransform()
    dx, dy = round((gs[0] - gr[0]) / gr[1]), round((gs[3] - gr[3]) / gr[5])
    out = np.zeros((ref.RasterYSize, ref.RasterXSize), np.float32)
    arr = src.GetRasterBand(1).ReadAsArray().astype(np.float32)
    y0, x0 = max(dy, 0), max(dx, 0)
    y1, x1 = min(dy + arr.shape[0], out.shape[0]), min(dx + arr.shape[1], out.shape[1])
    out[y0:y1, x0:x1] = arr[y0 - dy:y1 - dy, x0 - dx:x1 - dx]
    return out


def truth(angle=0.0, scale=1.0, shift=(0.0, 0.0)):
    """2x3 reference pixel -> sensed pixel: rotation/scale about the window centre, then shift."""
    c = np.array([(N - 1) / 2.0, (N - 1) / 2.0])
    a = math.radians(angle)
    lin = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.c_[lin, c + np.asarray(shift, float) - lin @ c]


CASES = {
    "shift": dict(shift=(2.3, -1.7)),
    "rot30": dict(angle=30.0, shift=(2.3, -1.7)),
    "rot90": dict(angle=90.0, shift=(0.4, 0.6)),
    "rot120": dict(angle=120.0),
    "rot180": dict(angle=180.0, shift=(-1.2, 0.3)),
    "scale0.5": dict(scale=0.5),
    "scale0.75": dict(scale=0.75, shift=(1.1, 0.4)),
    "scale1.5": dict(scale=1.5, shift=(-0.6, 1.2)),
    "scale2": dict(scale=2.0),
    "radiometry": dict(shift=(0.7, -0.4), angle=-12.0, radiometry=True),
    "clouds": dict(shift=(1.3, 0.8), angle=10.0, clouds=True),
    "clouds+mask": dict(shift=(1.3, 0.8), angle=10.0, clouds=True, use_mask=True),
    "rot45_s0.7": dict(angle=45.0, scale=0.7, shift=(0.8, -0.3)),
    "rot135_s1.4": dict(angle=135.0, scale=1.4, shift=(-1.4, 0.9)),
    "rot170_s0.6": dict(angle=170.0, scale=0.6),
    "rot-60_s1.8": dict(angle=-60.0, scale=1.8, shift=(0.5, 0.5)),
}


def make_pair(folder, src, origin, m, radiometry=False, clouds=False, seed=0, sen_src=None):
    """Reference = the N x N window of ``src`` at ``origin``; sensed = ``sen_src`` (default ``src``:
    another date of the same grid when given) warped by ``m`` (reference px -> sensed px)."""
    from cloudfree.models.clouds import CloudParams, simulate_clouds_array

    x0, y0 = origin
    sen_src = src if sen_src is None else sen_src
    valid_src = (sen_src > 0).astype(np.float32)
    m_full = np.c_[m[:, :2], m[:, 2] - m[:, :2] @ np.array([x0, y0])]
    sen = cv2.warpAffine(sen_src, m_full, (N, N), flags=cv2.INTER_CUBIC, borderValue=0)
    sval = cv2.warpAffine(valid_src, m_full, (N, N), flags=cv2.INTER_NEAREST, borderValue=0) > 0.5
    sen = np.clip(sen, 1, None)
    if radiometry:  # contrast, gamma and brightness change
        lo, hi = np.percentile(sen[sval], [1, 99])
        u = np.clip((sen - lo) / (hi - lo), 0, 1.5)
        sen = lo + 0.5 * (hi - lo) * u ** 0.7 + 0.3 * (hi - lo)
    mask = np.zeros((N, N), bool)
    if clouds:
        cl, cmask = simulate_clouds_array(sen[None], CloudParams(seed=seed, coverage=0.3, thickness=0.8),
                                          valid=sval)
        sen = np.nan_to_num(cl[0], nan=0.0)
        mask = cmask > 0
    sen = np.where(sval, np.clip(sen, 1, 65535), 0).astype(np.uint16)
    ref = np.clip(src[y0:y0 + N, x0:x0 + N], 1, 65535).astype(np.uint16)
    g = (500000.0, 10.0, 0.0, 5800000.0, 0.0, -10.0)
    wkt = raster_info(str(PAIR / "reference_20160608.tif")).crs_wkt
    write_array(str(folder / "ref.tif"), ref[None], geotransform=g, crs_wkt=wkt, nodata=0)
    write_array(str(folder / "sen.tif"), sen[None], geotransform=g, crs_wkt=wkt, nodata=0)
    return raster_info(str(folder / "ref.tif")), raster_info(str(folder / "sen.tif")), ref, sen, mask


def own_misregistration(folder, src, origin, sen_src):
    """Reference px -> sensed-source px of the unwarped pair: the identity for one image, and for two
    dates their own real misregistration, measured once by CloudFree SIFT on the unwarped pair (the
    real-pair benchmark checks it independently against AROSICS), so that the known warp is what
    every method is scored on."""
    if sen_src is None:
        return lambda p: p
    ref, sen, *_ = make_pair(folder, src, origin, truth(), sen_src=sen_src)
    r = reg.register(ref, sen, None, transform="affine", method="sift")
    print(f"  own misregistration of the two dates: shift ({r.shift_x:+.3f}, {r.shift_y:+.3f}) px")
    return r.to_sensed


def eval_points(m):
    """Grid of reference points whose true sensed position lies inside the sensed image."""
    g = np.arange(8, N - 8, 16, dtype=np.float64)
    pts = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
    s = apply_affine(m, pts)
    inside = (s[:, 0] >= 0) & (s[:, 0] <= N - 1) & (s[:, 1] >= 0) & (s[:, 1] <= N - 1)
    return pts[inside]


def scored(row: dict, true_s, estimate) -> dict:
    """``row`` completed with how ``estimate()`` -> (estimated sensed points, RMS_all, N_red, method used)
    did against ``true_s``: the RMS error and success under 1 and 3 px, or the failure; and its seconds."""
    t = time.perf_counter()
    try:
        est, rms_all, n_red, used = estimate()
        err = float(np.sqrt(np.mean(np.sum((est - true_s) ** 2, axis=1))))
        row.update(error=err, rms_all=rms_all, n_red=n_red, used=used, success=bool(err < 1.0),
                   success_3px=bool(err < 3.0))
    except Exception as exc:
        row.update(error=None, rms_all=None, n_red=0, success=False, success_3px=False,
                   failure=f"{type(exc).__name__}: {str(exc)[:120]}")
    row["seconds"] = round(time.perf_counter() - t, 2)
    return row


def bench_robust():
    rows = []
    wins = real_windows()
    with tempfile.TemporaryDirectory(prefix="cf_regrobust_") as tmp:
        folder = Path(tmp)
        for wname, (src, origin, sen_src) in wins.items():
            own = own_misregistration(folder, src, origin, sen_src)
            for ci, (case, spec) in enumerate(CASES.items()):
                spec = dict(spec)
                radiometry, clouds, use_mask = (spec.pop("radiometry", False), spec.pop("clouds", False),
                                                spec.pop("use_mask", False))
                m = truth(**spec)
                ref, sen, ra, sa, cmask = make_pair(folder, src, origin, m, radiometry, clouds, seed=ci,
                                                    sen_src=sen_src)
                pts = eval_points(m)
                true_s = apply_affine(m, own(pts))
                for method in ("sift", "sift_cnn", "opencv"):
                    def estimate(method=method):
                        if method == "opencv":
                            svalid = (sa > 0) & ~cmask if use_mask else sa > 0
                            res = opencv_match(ra.astype(np.float32), sa.astype(np.float32), ra > 0, svalid)
                            if res is None:
                                raise RuntimeError("no transform")
                            mm, s_in, d_in = res
                            rms_all = float(np.sqrt(np.mean(np.sum((apply_affine(mm, s_in) - d_in) ** 2, 1))))
                            return apply_affine(mm, pts), rms_all, len(s_in), "opencv"
                        r = reg.register(ref, sen, None, transform="affine", method=method,
                                         masks=(None, cmask if use_mask else None))
                        return r.to_sensed(pts), float(r.rms_all), int(r.n_red), r.method

                    rows.append(scored({"window": wname, "case": case, "method": method}, true_s, estimate))
                print(f"  {wname:13s} {case:11s} " + "  ".join(
                    f"{r['method']}: {'ok ' if r['success'] else 'BAD'} err {r['error'] if r['error'] is None else round(r['error'], 3)} "
                    f"N {r['n_red']}" for r in rows[-3:]), flush=True)
    return {"cases": rows, "summary": summarise(rows)}


def summarise(rows, methods=("sift", "sift_cnn", "opencv"), cases=None):
    """Per method: success rate (< 1 px, also < 3, < 0.5 and < 0.2 px), medians of error, RMS_all, N_red, time."""
    summary = {}
    cases = cases or list(CASES)
    for method in methods:
        rr = [r for r in rows if r["method"] == method]
        ok = [r for r in rr if r["success"]]
        errs = [r["error"] for r in rr if r["error"] is not None]
        summary[method] = {
            "success_rate": len(ok) / len(rr),
            "success_rate_3px": sum(e < 3.0 for e in errs) / len(rr),
            "success_rate_0.5px": sum(e < 0.5 for e in errs) / len(rr),
            "success_rate_0.2px": sum(e < 0.2 for e in errs) / len(rr),
            "n_cases": len(rr),
            "median_error": float(np.median(errs)) if errs else None,
            "max_error": float(np.max(errs)) if errs else None,
            "median_rms_all": float(np.median([r["rms_all"] for r in rr if r["rms_all"] is not None]))
            if any(r["rms_all"] is not None for r in rr) else None,
            "median_n_red": float(np.median([r["n_red"] for r in rr])),
            "median_seconds": float(np.median([r["seconds"] for r in rr])),
            "per_case_success": {c: sum(r["success"] for r in rr if r["case"] == c) for c in cases},
        }
    return summary


def print_robust(summary, per_case=True):
    print(f"\n{'method':10s} {'ok<3px':>7s} {'ok<1px':>7s} {'ok<0.5':>7s} {'ok<0.2':>7s} {'med err':>8s} {'max err':>8s} "
          f"{'med RMS_all':>11s} {'med N_red':>9s} {'med s':>6s}")
    for method, s in summary.items():
        f = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{method:10s} {100 * s['success_rate_3px']:6.1f}% {100 * s['success_rate']:6.1f}% "
              f"{100 * s['success_rate_0.5px']:6.1f}% "
              f"{100 * s['success_rate_0.2px']:6.1f}% {f(s['median_error']):>8s} {f(s['max_error']):>8s} "
              f"{f(s['median_rms_all']):>11s} {s['median_n_red']:9.0f} {s['median_seconds']:6.2f}")
    if not per_case:
        return
    print("per case successes < 1 px (of the windows):")
    for method, s in summary.items():
        print(f"  {method:10s} " + " ".join(f"{c}:{n}" for c, n in s["per_case_success"].items()))


# =========================================================================== radar and other sensors

BEN = DATA / "s1_s2_pairs"
RADAR_METHODS = ("structure", "structure_unchecked", "sift", "sift_cnn", "opencv")
UNCHECKED = reg.StructureOptions(min_contrast=0)  # the structure method without its no-match check


DEVELOPMENT_PAIRS = ("ben0", "ben1", "ben2")  # every design choice of the structure method was made on these


def read_bands(path):
    ds = gdal.Open(str(path))
    arr = ds.ReadAsArray().astype(np.float32)
    names = tuple(ds.GetRasterBand(b + 1).GetDescription() for b in range(ds.RasterCount))
    ds = None
    return arr, names


def radar_pairs():
    """name -> ((optical bands, names), (radar bands in dB, names)), all bands as the files hold them
    (band 4 is NIR, band 1 VV): BigEarthNet S2 blue, green, red, NIR / S1 VV, VH (120 px, 10 m) and
    scikit-eo's Landsat 8 six reflective bands / S1 VV, VH, VV/VH ratio, bands unnamed (110 x 104
    px, 30 m)."""
    out = {f"ben{k}": (read_bands(BEN / f"ben{k}_s2_bgrn.tif"), read_bands(BEN / f"ben{k}_s1_vvvh.tif"))
           for k in range(6)}
    out["skeo_l8"] = (read_bands(BEN / "skeo_l8_20180906.tif"), read_bands(BEN / "skeo_s1_2018.tif"))
    return out


def radar_rasters(folder, name, optical, radar, m):
    """The optical reference and the radar warped by ``m`` (reference px -> radar px; NaN outside) as
    GeoTIFFs with the files' bands and band names; returns them and (optical NIR, warped VV)."""
    (opt, opt_names), (rad, rad_names) = optical, radar
    h, w = opt.shape[1:]
    sen = np.stack([cv2.warpAffine(b, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=np.nan) for b in rad])
    g = (500000.0, 10.0, 0.0, 5800000.0, 0.0, -10.0)
    wkt = raster_info(str(PAIR / "reference_20160608.tif")).crs_wkt
    ref_path, sen_path = folder / f"{name}_opt.tif", folder / f"{name}_s1.tif"
    write_array(str(ref_path), np.clip(opt, 1, 65535).astype(np.uint16), geotransform=g, crs_wkt=wkt, nodata=0,
                descriptions=opt_names)
    write_array(str(sen_path), sen.astype(np.float32), geotransform=g, crs_wkt=wkt, nodata=float("nan"),
                descriptions=rad_names)
    return raster_info(str(ref_path)), raster_info(str(sen_path)), (opt[3], sen[0])


def radar_grid(shape, m):
    """Reference points 8 px inside the image whose warped position also lies inside."""
    h, w = shape
    g = np.stack(np.meshgrid(np.arange(8, w - 8, 8.0), np.arange(8, h - 8, 8.0)), -1).reshape(-1, 2)
    s = apply_affine(m, g)
    return g[(s[:, 0] >= 0) & (s[:, 0] <= w - 1) & (s[:, 1] >= 0) & (s[:, 1] <= h - 1)]


def bench_radar(warps=6, seed=0, only=None, methods=RADAR_METHODS):
    """Known warps (rotation up to 30 degrees, scale 0.8-1.25, shift up to 4 px) of real radar onto its
    optical pair. The pair's own misregistration (BigEarthNet's S1 and S2 patches differ by 1-2 px) is
    measured once on the unwarped pair by the structure method and taken out, so every method is
    scored on the known warp. ``only``: the pairs to run (the others' warps are drawn all the same,
    so a case is the same warp whatever the selection). Summaries: all, development pairs
    (:data:`DEVELOPMENT_PAIRS`), held-out pairs."""
    rng = np.random.default_rng(seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="cf_regradar_") as tmp:
        folder = Path(tmp)
        for name, (optical, radar) in radar_pairs().items():
            opt = optical[0][3]
            if only and name not in only:
                rng.uniform(size=4 * warps)  # the same draws as a full run
                continue
            ref, sen, _ = radar_rasters(folder, name + "_own", optical, radar, np.c_[np.eye(2), np.zeros(2)])
            try:  # a calibration, not a test: without the no-match check
                own = reg.register(ref, sen, None, transform="affine", method="structure", bands=(4, 1),
                                   structure=UNCHECKED).to_sensed
            except Exception as exc:  # no baseline: the pair's cases count as failures
                print(f"  {name}: the unwarped pair did not register ({exc}); its cases count as failures")
                own = None
            for k in range(warps):
                c = np.array([(opt.shape[1] - 1) / 2.0, (opt.shape[0] - 1) / 2.0])
                angle, scale = rng.uniform(-30, 30), math.exp(rng.uniform(math.log(0.8), math.log(1.25)))
                a = math.radians(angle)
                lin = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
                m = np.c_[lin, c + rng.uniform(-4, 4, 2) - lin @ c]
                ref, sen, (_, sa) = radar_rasters(folder, name, optical, radar, m)
                pts = radar_grid(opt.shape, m)
                true_s = apply_affine(m, own(pts)) if own is not None else None
                for method in methods:
                    rows.append(_score_radar(method, ref, sen, opt, sa, pts, true_s, name, k, angle, scale))
                print(f"  {name:8s} warp {k} (rot {angle:+5.1f}, scale {scale:.2f}) " + "  ".join(
                    f"{r['method']}: {r['failure'][:70] if r['error'] is None else round(r['error'], 2)}"
                    for r in rows[-len(methods):]))
    dev = [r for r in rows if r["window"] in DEVELOPMENT_PAIRS]
    held = [r for r in rows if r["window"] not in DEVELOPMENT_PAIRS]
    return {"cases": rows, "summary": summarise(rows, methods, ["radar"]),
            "summary_development": summarise(dev, methods, ["radar"]) if dev else {},
            "summary_held_out": summarise(held, methods, ["radar"]) if held else {},
            "per_pair_under_3px": {m: {n: sum(bool(r["success_3px"]) for r in rows if r["window"] == n
                                              and r["method"] == m)
                                       for n in dict.fromkeys(r["window"] for r in rows)}
                                   for m in methods if m.startswith("structure")}}


def _score_radar(method, ref, sen, opt, sa, pts, true_s, name, k, angle, scale):
    def estimate():
        if method == "opencv":
            ok = np.isfinite(sa)
            res = opencv_match(opt, np.nan_to_num(sa), opt > 0, ok)
            if res is None:
                raise RuntimeError("no transform")
            est, rms_all, n_red, used = apply_affine(res[0], pts), None, len(res[1]), "opencv"
        else:
            r = reg.register(ref, sen, None, transform="affine", method=method.replace("_unchecked", ""),
                             bands=(4, 1), structure=UNCHECKED if method.endswith("_unchecked") else None)
            est, rms_all, n_red, used = r.to_sensed(pts), float(r.rms_all), int(r.n_red), r.method
        if true_s is None:
            raise RuntimeError("the unwarped pair has no baseline")
        return est, rms_all, n_red, used

    return scored({"window": name, "case": "radar", "warp": k, "angle": angle, "scale": scale, "method": method},
                  true_s, estimate)


# =========================================================================== other dates (seasons)

NDVI = DATA / "s2_ndvi_timeseries"
DATE_METHODS = ("sift", "sift_cnn", "structure", "structure_wide", "auto", "opencv")
WIDE = reg.StructureOptions(max_rotation=180.0, scale_range=(0.5, 2.0))  # the range auto's fallback searches
# the geometric cases of the robust sweep, and moderate ones inside the structure method's search
# (rotation up to 30 degrees, scale 0.8-1.25)
DATE_CASES = {**{k: v for k, v in CASES.items() if not ({"radiometry", "clouds"} & set(v))},
              "rot10": dict(angle=10.0, shift=(0.6, 1.1)), "rot-20_s1.1": dict(angle=-20.0, scale=1.1),
              "scale0.85": dict(scale=0.85, shift=(-1.0, 0.5)), "rot25_s0.9": dict(angle=25.0, scale=0.9, shift=(1.5, 0.2))}


def date_windows():
    """name -> (reference date, sensed date, sensed cloud mask or None), float32 on one grid:
    ``s2_cloud_pair`` NIR (B8, x 10000), the clear date against the cloudy one with its real cloud
    and shadow mask (256 px); ``s2_ndvi_timeseries`` NDVI (+ 1, x 10000) of clear dates in three
    seasons (100 x 101 px): July against December, May against August, October against April."""
    def band(path, b=1):
        ds = gdal.Open(str(path))
        return ds.GetRasterBand(b).ReadAsArray().astype(np.float32)

    def ndvi(date):
        return (band(next((NDVI / "ndvi").glob(f"ndvi_{date}T*.tif"))) + 1.0) * 10000.0

    pair = DATA / "s2_cloud_pair"
    return {"cloud_pair_nir": (band(pair / "clean.tif", 8) * 1e4, band(pair / "cloudy.tif", 8) * 1e4,
                               band(pair / "mask.tif") > 0),
            "ndvi_jul_dec": (ndvi("20150711"), ndvi("20151218"), None),
            "ndvi_may_aug": (ndvi("20160526"), ndvi("20160804"), None),
            "ndvi_oct_apr": (ndvi("20171013"), ndvi("20170401"), None)}


def date_pair(folder, ref, sen_src, mask, m):
    """GeoTIFFs of the reference date and the other date warped by ``m`` (reference px -> sensed
    px; 0 = nodata outside), and the warped cloud mask (or None)."""
    h, w = ref.shape
    sen = cv2.warpAffine(sen_src, m, (w, h), flags=cv2.INTER_CUBIC, borderValue=0)
    inside = cv2.warpAffine(np.ones_like(sen_src), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0) > 0.5
    smask = (cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST) > 0) if mask is not None else None
    g = (500000.0, 10.0, 0.0, 5800000.0, 0.0, -10.0)
    wkt = raster_info(str(PAIR / "reference_20160608.tif")).crs_wkt
    ra, sa = np.clip(ref, 1, 65535).astype(np.uint16), np.where(inside, np.clip(sen, 1, 65535), 0).astype(np.uint16)
    write_array(str(folder / "date_ref.tif"), ra[None], geotransform=g, crs_wkt=wkt, nodata=0)
    write_array(str(folder / "date_sen.tif"), sa[None], geotransform=g, crs_wkt=wkt, nodata=0)
    return raster_info(str(folder / "date_ref.tif")), raster_info(str(folder / "date_sen.tif")), ra, sa, smask


def bench_dates(methods=DATE_METHODS):
    """Known transforms of a real other date onto its reference date (:func:`date_windows`), the
    cases of :data:`DATE_CASES`. The dates' own misregistration is measured once on the unwarped
    pair by the structure method (SIFT finds none between July and December) and taken out."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="cf_regdates_") as tmp:
        folder = Path(tmp)
        for wname, (ref, sen_src, mask) in date_windows().items():
            h, w = ref.shape
            c = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
            r0, s0, *_ = date_pair(folder, ref, sen_src, mask, np.c_[np.eye(2), np.zeros(2)])
            own = reg.register(r0, s0, None, transform="affine", method="structure", structure=UNCHECKED,
                               masks=(None, mask)).to_sensed
            print(f"  {wname}: own misregistration of the dates ({', '.join(f'{v:+.2f}' for v in own(c[None])[0] - c)}) px")
            for case, spec in DATE_CASES.items():
                a, sc = math.radians(spec.get("angle", 0.0)), spec.get("scale", 1.0)
                lin = sc * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
                m = np.c_[lin, c + np.asarray(spec.get("shift", (0.0, 0.0))) - lin @ c]
                ref_i, sen_i, ra, sa, smask = date_pair(folder, ref, sen_src, mask, m)
                g = np.stack(np.meshgrid(np.arange(6, w - 6, 8.0), np.arange(6, h - 6, 8.0)), -1).reshape(-1, 2)
                s = apply_affine(m, g)
                pts = g[(s[:, 0] >= 0) & (s[:, 0] <= w - 1) & (s[:, 1] >= 0) & (s[:, 1] <= h - 1)]
                true_s = apply_affine(m, own(pts))
                for method in methods:
                    def estimate(method=method):
                        if method == "opencv":
                            ok = (sa > 0) & ~smask if smask is not None else sa > 0
                            res = opencv_match(ra.astype(np.float32), sa.astype(np.float32), ra > 0, ok)
                            if res is None:
                                raise RuntimeError("no transform")
                            return apply_affine(res[0], pts), None, len(res[1]), "opencv"
                        r = reg.register(ref_i, sen_i, None, transform="affine", method=method.replace("_wide", ""),
                                         masks=(None, smask), structure=WIDE if method.endswith("_wide") else None)
                        return r.to_sensed(pts), float(r.rms_all), int(r.n_red), r.method

                    rows.append(scored({"window": wname, "case": case, "method": method}, true_s, estimate))
                print(f"  {wname:14s} {case:12s} " + "  ".join(
                    f"{r['method']}: {'FAIL' if r['error'] is None else round(r['error'], 2)}"
                    for r in rows[-len(methods):]), flush=True)
    in_range = [c for c, v in DATE_CASES.items() if abs(v.get("angle", 0.0)) <= 30 and 0.8 <= v.get("scale", 1.0) <= 1.25]
    return {"cases": rows, "summary": summarise(rows, methods, list(DATE_CASES)),
            "summary_small_warps": summarise([r for r in rows if r["case"] in in_range], methods, in_range),
            "small_warp_cases": in_range,
            "auto_used_structure": sum(r.get("used") == "structure" for r in rows if r["method"] == "auto")}


# =========================================================================== main


def main(argv=None):
    ap = argparse.ArgumentParser(description="Registration benchmark")
    ap.add_argument("what", nargs="?", default="all", choices=["all", "real", "robust", "dates", "radar"])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--no-arosics", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--warps", type=int, default=6, help="known warps per radar pair")
    ap.add_argument("--pairs", default="", help="radar: only these pairs, comma-separated (e.g. ben0,ben1,ben2)")
    ap.add_argument("--methods", default=",".join(RADAR_METHODS), help="radar: the methods to run")
    args = ap.parse_args(argv)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    arosics = not args.no_arosics
    if arosics and not AROSICS_PY.exists():
        print(f"AROSICS skipped: {AROSICS_PY} does not exist (see the module docstring)")
        arosics = False
    result = {"machine": {"cpus": os.cpu_count(), "opencv_threads": cv2.getNumThreads()}}
    t0 = time.time()
    if args.what in ("all", "real"):
        print("== real pair (s2_registration_pair, band 1)")
        result["real"] = bench_real(args.runs, arosics)
        print(f"\n{'method':22s} {'resid x':>8s} {'resid y':>8s} {'|resid|':>8s} {'win':>4s} {'time s':>7s}")
        for name, r in result["real"]["methods"].items():
            if "error" in r:
                print(f"{name:22s} FAILED")
            elif name == "before":
                print(f"{name:22s} {r['residual_x']:+8.3f} {r['residual_y']:+8.3f} "
                      f"{math.hypot(r['residual_x'], r['residual_y']):8.3f} {r['windows']:4d}")
            else:
                print(f"{name:22s} {r['residual_x']:+8.3f} {r['residual_y']:+8.3f} {r['residual']:8.3f} "
                      f"{r['windows']:4d} {r['seconds_median']:7.2f}")
        for k, v in result["real"]["time_ratios"].items():
            print(f"time ratio {k}: {v:.3f}")
    if args.what in ("all", "robust"):
        print("\n== robustness (known transforms on real windows)")
        result["robust"] = bench_robust()
        print_robust(result["robust"]["summary"])
    if args.what in ("all", "dates"):
        print("\n== other dates (known transforms of a real second date: seasons, real clouds)")
        result["dates"] = bench_dates()
        for part, label in (("summary", "all cases"), ("summary_small_warps", "rotation <= 30 deg, scale 0.8-1.25: " +
                            ", ".join(result["dates"]["small_warp_cases"]))):
            print(f"\n-- {label}")
            print_robust(result["dates"][part])
        print("auto registered by structure (SIFT refused):", result["dates"]["auto_used_structure"], "cases")
    if args.what in ("all", "radar"):
        print("\n== radar onto optical (known warps of real Sentinel-1 onto Sentinel-2 / Landsat 8)")
        result["radar"] = bench_radar(args.warps, only=args.pairs.split(",") if args.pairs else None,
                                      methods=tuple(args.methods.split(",")))
        for part, label in (("summary", "all pairs"), ("summary_development", "development pairs " +
                            ", ".join(DEVELOPMENT_PAIRS)), ("summary_held_out", "held-out pairs")):
            if result["radar"][part]:
                print(f"\n-- {label}")
                print_robust(result["radar"][part], per_case=False)
        for method, per_pair in result["radar"]["per_pair_under_3px"].items():
            print(f"{method}, cases under 3 px per pair:", per_pair)
    result["total_seconds"] = round(time.time() - t0, 1)
    text = json.dumps(result, indent=1, default=float)
    print("\nJSON:\n" + text)
    if args.json:
        Path(args.json).write_text(text)


if __name__ == "__main__":
    main()
