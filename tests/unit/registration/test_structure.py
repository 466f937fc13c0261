"""The ``structure`` method's parts against direct computations and known answers: the FFT masked
NCC equals its sums taken shift by shift, the bands each layer fuses, and a known warp of a real
Sentinel-1 patch (both polarisations) recovered on its Sentinel-2 pair (all four bands)."""

from __future__ import annotations

import math

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from osgeo import gdal  # noqa: E402

from cloudfree.models import registration as reg  # noqa: E402
from cloudfree.models.errors import InputError  # noqa: E402
from cloudfree.models.raster import raster_info, write_array  # noqa: E402
from cloudfree.models.registration.structure import masked_ncc, structure_bands  # noqa: E402

GT = (500000.0, 10.0, 0.0, 5800000.0, 0.0, -10.0)


def warp_error(result, own, m: np.ndarray, shape: tuple, step: float) -> float:
    """RMS error (pixels) of ``result``'s mapping against the known warp ``m`` after the unwarped
    pair's own mapping ``own``, over a grid of reference points whose true position lies inside."""
    h, w = shape
    grid = np.stack(np.meshgrid(np.arange(10, w - 10, step), np.arange(10, h - 10, step)), -1).reshape(-1, 2)
    true = own.to_sensed(grid) @ m[:, :2].T + m[:, 2]
    inside = (true >= 0).all(1) & (true[:, 0] <= w - 1) & (true[:, 1] <= h - 1)
    return float(np.sqrt(np.mean(np.linalg.norm(result.to_sensed(grid[inside]) - true[inside], axis=1) ** 2)))


def test_masked_ncc_equals_the_direct_sums():
    rng = np.random.default_rng(3)
    fa, fb = rng.random((23, 19, 3)), rng.random((23, 19, 3))
    va, vb = rng.random((23, 19)) > 0.2, rng.random((23, 19)) > 0.3
    m = 4
    score = masked_ncc(fa, va, fb, vb, m)
    for dy, dx in ((0, 0), (2, -3), (-4, 1), (3, 4)):
        ys, xs = np.nonzero(va)                          # fa(p) against fb(p + (dx, dy)), both valid
        inside = (ys + dy >= 0) & (ys + dy < 23) & (xs + dx >= 0) & (xs + dx < 19)
        ys, xs = ys[inside], xs[inside]
        keep = vb[ys + dy, xs + dx]
        ys, xs = ys[keep], xs[keep]
        pa, pb = fa[ys, xs], fb[ys + dy, xs + dx]       # (n, channels)
        pa, pb = pa - pa.mean(0), pb - pb.mean(0)
        direct = (pa * pb).sum() / math.sqrt((pa * pa).sum() * (pb * pb).sum())
        assert score[m + dy, m + dx] == pytest.approx(direct, abs=1e-9)


def test_structure_bands_fuses_optical_bands_and_polarisations_not_a_ratio(tmp_path):
    rng = np.random.default_rng(0)
    optical = rng.uniform(100, 3000, (4, 40, 40)).astype(np.uint16)
    write_array(str(tmp_path / "opt.tif"), optical, geotransform=GT, nodata=0)
    assert structure_bands(raster_info(str(tmp_path / "opt.tif")), 4, radar=False) == [4, 1, 2, 3]
    db = np.stack([rng.normal(-9, 2, (40, 40)), rng.normal(-15, 2, (40, 40)), rng.normal(0.6, 0.1, (40, 40))])
    write_array(str(tmp_path / "named.tif"), db.astype(np.float32), geotransform=GT, nodata=float("nan"),
                descriptions=["VV", "VH", "ratio"])
    assert structure_bands(raster_info(str(tmp_path / "named.tif")), 1, radar=True) == [1, 2]
    write_array(str(tmp_path / "unnamed.tif"), db.astype(np.float32), geotransform=GT, nodata=float("nan"))
    unnamed = raster_info(str(tmp_path / "unnamed.tif"))
    assert structure_bands(unnamed, 1, radar=True) == [1, 2]     # the ratio's median is not dB backscatter
    assert structure_bands(unnamed, 3, radar=True) == [3]


def test_known_warp_of_real_dual_polarisation_radar_on_sentinel2(shared_data, tmp_path):
    """BigEarthNet ``ben0`` (a development pair of the benchmark): the unwarped pair's own
    misregistration is measured first and taken out; a known rotation, scale and shift of the real
    VV, VH image is then recovered within a pixel against all four Sentinel-2 bands."""
    folder = shared_data / "s1_s2_pairs"
    optical = gdal.Open(str(folder / "ben0_s2_bgrn.tif")).ReadAsArray().astype(np.uint16)
    radar = gdal.Open(str(folder / "ben0_s1_vvvh.tif")).ReadAsArray().astype(np.float32)
    h, w = optical.shape[1:]

    def pair(m, tag):
        sen = np.stack([cv2.warpAffine(b, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=np.nan) for b in radar])
        write_array(str(tmp_path / f"{tag}_s2.tif"), optical, geotransform=GT, nodata=0)
        write_array(str(tmp_path / f"{tag}_s1.tif"), sen, geotransform=GT, nodata=float("nan"),
                    descriptions=["VV", "VH"])
        return raster_info(str(tmp_path / f"{tag}_s2.tif")), raster_info(str(tmp_path / f"{tag}_s1.tif"))

    own = reg.register(*pair(np.c_[np.eye(2), np.zeros(2)], "own"), None, transform="affine", bands=(4, 1))
    a = math.radians(15.0)
    lin = 0.9 * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    m = np.c_[lin, c + np.array([-2.0, 3.0]) - lin @ c]
    result = reg.register(*pair(m, "warped"), None, transform="affine", bands=(4, 1))
    assert result.method == "structure" and result.stages["structure_bands"] == (4, 2)
    assert warp_error(result, own, m, (h, w), step=10.0) < 1.0


def test_real_image_against_noise_is_refused_as_no_match(shared_data, tmp_path):
    """The search's peak must stand out from the same search against the sensed image mirrored:
    speckle-like noise (and an unrelated place) scores about as high mirrored as not."""
    folder = shared_data / "s1_s2_pairs"
    optical = gdal.Open(str(folder / "ben0_s2_bgrn.tif")).ReadAsArray().astype(np.uint16)
    rng = np.random.default_rng(1)
    noise = (10 * np.log10(rng.exponential(0.06, (2,) + optical.shape[1:]))).astype(np.float32)
    write_array(str(tmp_path / "s2.tif"), optical, geotransform=GT, nodata=0)
    write_array(str(tmp_path / "noise.tif"), noise, geotransform=GT, nodata=float("nan"), descriptions=["VV", "VH"])
    with pytest.raises(InputError, match="does not match .* mirrored"):
        reg.register(raster_info(str(tmp_path / "s2.tif")), raster_info(str(tmp_path / "noise.tif")), None,
                     bands=(4, 1))


def _ndvi(shared_data, date):
    path = next((shared_data / "s2_ndvi_timeseries" / "ndvi").glob(f"ndvi_{date}T*.tif"))
    return gdal.Open(str(path)).ReadAsArray().astype(np.float32)


def test_auto_falls_back_to_structure_between_seasons(shared_data, tmp_path):
    """Real NDVI of one place in July and in December (vegetation gone, contrasts inverted): SIFT
    finds no consistent transform, so ``auto`` registers the pair by image structure; a known
    rotation, scale and shift is recovered within a pixel, the December date's own small
    misregistration measured on the unwarped pair and taken out."""
    summer, winter = _ndvi(shared_data, "20150711"), _ndvi(shared_data, "20151218")
    h, w = summer.shape

    def pair(m, tag):
        sen = cv2.warpAffine(winter + 1.0, m, (w, h), flags=cv2.INTER_CUBIC, borderValue=0)
        inside = cv2.warpAffine(np.ones_like(winter), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0) > 0
        write_array(str(tmp_path / f"{tag}_jul.tif"), (summer + 1.0)[None], geotransform=GT, nodata=0)
        write_array(str(tmp_path / f"{tag}_dec.tif"), np.where(inside, sen, 0)[None].astype(np.float32),
                    geotransform=GT, nodata=0)
        return raster_info(str(tmp_path / f"{tag}_jul.tif")), raster_info(str(tmp_path / f"{tag}_dec.tif"))

    own = reg.register(*pair(np.c_[np.eye(2), np.zeros(2)], "own"), None, method="structure")
    a = math.radians(-12.0)
    lin = 1.08 * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c = np.array([(w - 1) / 2, (h - 1) / 2])
    m = np.c_[lin, c + np.array([1.5, -2.0]) - lin @ c]
    ref, sen = pair(m, "warped")
    with pytest.raises(InputError, match="No consistent transform"):
        reg.register(ref, sen, None, method="sift")
    result = reg.register(ref, sen, None)
    assert result.method == "structure" and result.stages["fallback_from"] == "sift"
    assert result.stages["structure_search"] == (30.0, (0.8, 1.25))    # the default search was enough
    assert warp_error(result, own, m, (h, w), step=8.0) < 1.0


def test_auto_reports_both_reasons_when_neither_method_registers(shared_data, tmp_path):
    """Optical against unrelated noise: SIFT and the structure fallback both refuse, and the message
    says why each did."""
    summer = _ndvi(shared_data, "20150711") + 1.0
    noise = np.random.default_rng(4).uniform(0.5, 1.5, summer.shape).astype(np.float32)
    write_array(str(tmp_path / "a.tif"), summer[None], geotransform=GT, nodata=0)
    write_array(str(tmp_path / "b.tif"), noise[None], geotransform=GT, nodata=0)
    with pytest.raises(InputError, match="SIFT: .* Structure method: "):
        reg.register(raster_info(str(tmp_path / "a.tif")), raster_info(str(tmp_path / "b.tif")), None)


def test_local_windows_are_capped_on_large_images():
    """A large image is matched on a sparser grid of windows (about MAX_WINDOWS), not one window per
    third of a window side; the recovered shift is the same."""
    from cloudfree.models.registration import structure as st

    rng = np.random.default_rng(5)
    img = cv2.GaussianBlur(rng.random((700, 700)).astype(np.float32), (0, 0), 3)
    ok = np.ones(img.shape, bool)
    h = np.array([[1.0, 0, 0.6], [0, 1.0, -0.4], [0, 0, 1.0]])  # reference -> sensed: shift (0.6, -0.4)
    sen = cv2.warpAffine(img, h[:2], (700, 700), flags=cv2.INTER_CUBIC)  # sen(p + shift) = img(p)
    ref_pts, sen_pts, _ = st.local_tie_points((img[None], ok), (sen[None], ok), np.eye(3),
                                              st.StructureOptions(), radius=2)
    assert len(ref_pts) <= 1.1 * st.MAX_WINDOWS
    assert np.median(sen_pts - ref_pts, axis=0) == pytest.approx([0.6, -0.4], abs=0.1)


def test_auto_fallback_searches_any_rotation_and_scale_between_seasons(shared_data, tmp_path):
    """July against December rotated by 100 degrees and scaled by 1.3: outside the default structure
    search, inside SIFT's range. SIFT finds nothing, nor does the default structure search; the
    fallback then searches coarse to fine over any rotation and scales 0.5-2 and recovers the warp
    within a pixel."""
    summer, winter = _ndvi(shared_data, "20150711") + 1.0, _ndvi(shared_data, "20151218") + 1.0
    h, w = summer.shape
    c = np.array([(w - 1) / 2, (h - 1) / 2])

    def pair(m, tag):
        sen = cv2.warpAffine(winter, m, (w, h), flags=cv2.INTER_CUBIC, borderValue=0)
        inside = cv2.warpAffine(np.ones_like(winter), m, (w, h), flags=cv2.INTER_NEAREST, borderValue=0) > 0
        write_array(str(tmp_path / f"{tag}_jul.tif"), summer[None], geotransform=GT, nodata=0)
        write_array(str(tmp_path / f"{tag}_dec.tif"), np.where(inside, sen, 0)[None].astype(np.float32),
                    geotransform=GT, nodata=0)
        return raster_info(str(tmp_path / f"{tag}_jul.tif")), raster_info(str(tmp_path / f"{tag}_dec.tif"))

    own = reg.register(*pair(np.c_[np.eye(2), np.zeros(2)], "own"), None, method="structure")
    a = math.radians(100.0)
    lin = 1.3 * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    m = np.c_[lin, c + np.array([0.7, -1.2]) - lin @ c]
    ref, sen = pair(m, "warped")
    with pytest.raises(InputError, match="does not match|No common structure|windows"):
        reg.register(ref, sen, None, method="structure")       # the default search: +-30 degrees, 0.8-1.25
    result = reg.register(ref, sen, None)
    assert result.method == "structure" and result.stages["fallback_from"] == "sift"
    assert result.stages["structure_search"] == (180.0, (0.5, 2.0))    # after the default search failed
    assert result.rotation == pytest.approx(-100.0, abs=2.0) or result.rotation == pytest.approx(100.0, abs=2.0)
    assert warp_error(result, own, m, (h, w), step=8.0) < 1.0


def test_distinct_keeps_the_best_candidates_apart():
    from cloudfree.models.registration.structure import _distinct

    scored = [(0.9, 10.0, 1.0), (0.85, 14.0, 1.02), (0.8, 10.0, 1.5), (0.7, 179.0, 1.0), (0.6, -178.0, 1.0),
              (0.5, 90.0, 0.6)]
    assert [c[0] for c in _distinct(scored, 3)] == [0.9, 0.8, 0.7]   # 14 deg is 4 from 10; -178 is 3 from 179
    assert [c[0] for c in _distinct(scored, 10)] == [0.9, 0.8, 0.7, 0.5]
