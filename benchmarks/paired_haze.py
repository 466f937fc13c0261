"""Paired thin-haze data from real clear imagery, and the dark-channel dehazing baseline.

Used by ``benchmarks/cloud_removal.py paired``. Every scene is converted to reflectance
(blue, green, red, NIR) and covered with haze following the atmospheric scattering model
``I = J t + A (1 - t)``: ``J`` the clear ground, ``t`` a transmission that varies smoothly over
the whole image (multi-octave gradient noise, density drawn per image), ``A`` an airlight colour
that varies band by band and slowly across the image (bluish to greyish-yellow tints), plus a
little sensor noise. This is how real thin cloud and haze look in the benchmark sets analysts
use (whole image veiled, uneven density and colour), and the clear image is the ground truth by
construction.

Scenes (all real, from ``../shared/data``; training and test scenes never overlap):

- training: ``l8_landcover`` (Landsat 8 L1, Zion, TOA reflectance = DN x 2e-5 - 0.1) and the
  BigEarthNet Sentinel-2 L2A patches ``ben0``-``ben3`` (reflectance = DN / 10000);
- held out: ``ben4``, ``ben5`` (other places) and ``s2_multidate_stack`` 2015-07-11 (a clear
  Sentinel-2 L1C date of a third place, TOA reflectance).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from osgeo import gdal
from scipy import ndimage

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

#: name -> (file, bands, reflectance = DN * gain + offset, role)
SCENES = {
    "l8_landcover": (DATA / "l8_landcover" / "bgrn.tif", [1, 2, 3, 4], 2e-5, -0.1, "train"),
    **{f"ben{k}": (DATA / "s1_s2_pairs" / f"ben{k}_s2_bgrn.tif", [1, 2, 3, 4], 1e-4, 0.0, "train") for k in range(4)},
    **{f"ben{k}": (DATA / "s1_s2_pairs" / f"ben{k}_s2_bgrn.tif", [1, 2, 3, 4], 1e-4, 0.0, "test") for k in (4, 5)},
    "s2_20150711": (DATA / "s2_multidate_stack" / "s2_20150711.tif", [2, 3, 4, 8], 1.0, 0.0, "test"),
}


def read_reflectance(name: str, max_size: int | None = None) -> tuple:
    """``(reflectance float32 (4, H, W), geotransform, projection)`` of a scene (optionally a centred crop)."""
    path, bands, gain, offset, _ = SCENES[name]
    ds = gdal.Open(str(path))
    w, h = ds.RasterXSize, ds.RasterYSize
    x0 = y0 = 0
    if max_size and max(w, h) > max_size:
        x0, y0 = max(0, (w - max_size) // 2), max(0, (h - max_size) // 2)
        w, h = min(w, max_size), min(h, max_size)
    arr = ds.ReadAsArray(x0, y0, w, h, band_list=bands).astype(np.float64) * gain + offset
    gt = list(ds.GetGeoTransform())
    gt[0] += x0 * gt[1]
    gt[3] += y0 * gt[5]
    return np.clip(arr, 0.0, None).astype(np.float32), tuple(gt), ds.GetProjection()


def _smooth_field(rng: np.random.Generator, h: int, w: int, scale: float) -> np.ndarray:
    """Smooth noise in [0, 1] with features of about ``scale`` pixels (sum of random sinusoids)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    field = np.zeros((h, w))
    for octave in range(3):
        s = scale / 2 ** octave
        for _ in range(4):
            angle = rng.uniform(0, 2 * math.pi)
            phase = rng.uniform(0, 2 * math.pi)
            freq = 2 * math.pi / s * rng.uniform(0.6, 1.4)
            field += 0.5 ** octave * np.sin(freq * (xx * math.cos(angle) + yy * math.sin(angle)) + phase)
    field -= field.min()
    return field / max(field.max(), 1e-9)


def add_haze(clear: np.ndarray, seed: int) -> np.ndarray:
    """The clear reflectance under a synthetic thin haze (same shape, float32)."""
    rng = np.random.default_rng(seed)
    _, h, w = clear.shape
    scale = rng.uniform(0.5, 1.5) * max(h, w)
    density = rng.uniform(0.15, 0.55)            # mean haze opacity of this image (thin: ground shows through)
    spread = rng.uniform(0.15, 0.35)             # how uneven it is
    opacity = np.clip(density + spread * (_smooth_field(rng, h, w, scale) - 0.5) * 2, 0.05, 0.9)
    tint = rng.uniform(-0.08, 0.08, size=4)      # band-by-band colour of the airlight
    base = rng.uniform(0.55, 0.85)
    airlight = base + tint + np.array([0.06, 0.03, 0.0, -0.02])  # a little bluer than white, on average
    drift = 0.05 * (_smooth_field(rng, h, w, scale * 1.5) - 0.5)
    hazy = clear * (1 - opacity) + (airlight[:, None, None] + drift) * opacity
    hazy += rng.normal(0, 0.004, size=hazy.shape)
    return np.clip(hazy, 0.0, None).astype(np.float32)


def dark_channel_dehaze(hazy: np.ndarray, patch: int = 15, omega: float = 0.95, t0: float = 0.1) -> np.ndarray:
    """He et al. (2009) dark-channel prior on blue/green/red; the NIR band uses the same transmission.

    Airlight: per band, the mean of the 0.1 % brightest pixels of the dark channel; transmission
    ``1 - omega * dark(I / A)``, smoothed with a box filter of the patch size (in place of the
    soft matting / guided filter refinement).
    """
    rgb = hazy[:3].astype(np.float64)
    dark = ndimage.minimum_filter(rgb.min(axis=0), size=patch)
    n = max(1, int(dark.size * 0.001))
    idx = np.argpartition(dark.ravel(), -n)[-n:]
    airlight = np.array([hazy[c].ravel()[idx].mean() for c in range(hazy.shape[0])])
    norm = rgb / np.maximum(airlight[:3, None, None], 1e-6)
    t = 1 - omega * ndimage.minimum_filter(norm.min(axis=0), size=patch)
    t = np.clip(ndimage.uniform_filter(t, size=patch), t0, 1.0)
    out = (hazy - airlight[:, None, None]) / t + airlight[:, None, None]
    return np.clip(out, 0.0, None).astype(np.float32)


def write(path: Path, arr: np.ndarray, gt, proj) -> str:
    ds = gdal.GetDriverByName("GTiff").Create(str(path), arr.shape[2], arr.shape[1], arr.shape[0], gdal.GDT_Float32)
    ds.SetGeoTransform(gt)
    ds.SetProjection(proj)
    for i in range(arr.shape[0]):
        ds.GetRasterBand(i + 1).WriteArray(arr[i])
    ds = None
    return str(path)


def build(folder: Path, copies: int = 3, max_size: int = 512) -> dict:
    """Write hazy/clear GeoTIFF pairs into ``folder``: ``{"train": [(hazy, clear)...], "test": {...}}``.

    Each training scene gets ``copies`` hazy versions (different seeds); each test scene one,
    with seeds never used in training. Large scenes are cropped to ``max_size``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    pairs = {"train": [], "test": {}}
    for k, (name, (_, _, _, _, role)) in enumerate(SCENES.items()):
        clear, gt, proj = read_reflectance(name, max_size)
        clear_path = write(folder / f"{name}_clear.tif", clear, gt, proj)
        for c in range(copies if role == "train" else 1):
            seed = 1000 * k + c + (500 if role == "test" else 0)
            hazy_path = write(folder / f"{name}_hazy{c}.tif", add_haze(clear, seed), gt, proj)
            if role == "train":
                pairs["train"].append((hazy_path, clear_path))
            else:
                pairs["test"][name] = (hazy_path, clear_path)
    return pairs
