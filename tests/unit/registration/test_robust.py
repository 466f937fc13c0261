"""Registration that holds across modalities and low inlier ratios, against known answers: MAGSAC++
on orientation/scale-consistent candidates (a pair with 5 % correct matches), the ``structure``
method on a real Sentinel-1 patch warped by a known transform onto its Landsat 8 pair, the method
``auto`` picks, and RMS on independent check points."""

from __future__ import annotations

import math

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from osgeo import gdal  # noqa: E402

from cloudfree.models import registration as reg  # noqa: E402
from cloudfree.models.errors import InputError  # noqa: E402
from cloudfree.models.raster import raster_info, write_array  # noqa: E402
from cloudfree.models.registration.detect import Keypoints  # noqa: E402
from cloudfree.models.registration.pipeline import choose_method, initial_fit  # noqa: E402

GT = (500000.0, 30.0, 0.0, 4200000.0, 0.0, -30.0)


def _similarity(angle, scale, centre, shift):
    a = math.radians(angle)
    lin = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.c_[lin, np.asarray(centre) + np.asarray(shift, float) - lin @ np.asarray(centre)]


def _apply(m, pts):
    return pts @ m[:, :2].T + m[:, 2]


def test_five_percent_correct_matches_are_still_registered():
    """1000 keypoints a side; only 50 true partners, each merely among its keypoint's 3 nearest
    descriptors (never first, so the ratio test keeps none of them); rotation 70 degrees, scale 1.4."""
    rng = np.random.default_rng(3)
    n, n_true = 1000, 50
    m = _similarity(70.0, 1.4, (500, 500), (12.0, -7.0))
    pa = rng.uniform(0, 1000, (n, 2))
    pb = rng.uniform(0, 1000, (n, 2))
    angle_a, size_a = rng.uniform(0, 360, n), rng.uniform(2, 20, n)
    angle_b, size_b = rng.uniform(0, 360, n), rng.uniform(2, 20, n)
    true = rng.choice(n, n_true, replace=False)
    pb[true] = _apply(m, pa[true]) + rng.normal(0, 0.3, (n_true, 2))
    angle_b[true] = (angle_a[true] + 70.0 + rng.normal(0, 3, n_true)) % 360
    size_b[true] = size_a[true] * 1.4
    dist = rng.uniform(0.5, 1.0, (n, n))
    dist[true, true] = 0.45                                  # a close match...
    dist[true, (true + 1) % n] = 0.3                         # ...but a wrong one is closer still
    kpa = Keypoints(pa, size_a, angle_a, np.zeros((n, 128), np.float32))
    kpb = Keypoints(pb, size_b, angle_b, np.zeros((n, 128), np.float32))
    h0, (ia, ib), n_ratio = initial_fit(pa, pb, kpa, kpb, dist, "similarity", 1, reg.MatchOptions())
    assert set(zip(ia.tolist(), ib.tolist())) <= {(t, t) for t in true.tolist()}   # only true pairs kept
    assert len(ia) >= 0.9 * n_true
    grid = np.stack(np.meshgrid(np.arange(0, 1001, 100.0), np.arange(0, 1001, 100.0)), -1).reshape(-1, 2)
    err = np.linalg.norm(_apply(h0[:2], grid) - _apply(m, grid), axis=1)
    assert err.max() < 1.0


@pytest.fixture(scope="module")
def radar_pair(shared_data):
    """scikit-eo's Landsat 8 NIR and Sentinel-1 VV (dB) of the same place and grid (110 x 104 px)."""
    folder = shared_data / "s1_s2_pairs"
    optical = gdal.Open(str(folder / "skeo_l8_20180906.tif")).ReadAsArray()[3].astype(np.float32)
    radar = gdal.Open(str(folder / "skeo_s1_2018.tif")).ReadAsArray()[0].astype(np.float32)
    return optical, radar


def _write_pair(folder, optical, radar, m, tag):
    h, w = optical.shape
    sen = cv2.warpAffine(radar, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=np.nan)
    ref_path, sen_path = str(folder / f"{tag}_l8.tif"), str(folder / f"{tag}_s1.tif")
    write_array(ref_path, np.clip(optical, 1, 65535).astype(np.uint16)[None], geotransform=GT, nodata=0)
    write_array(sen_path, sen[None], geotransform=GT, nodata=float("nan"), descriptions=["VV"])
    return raster_info(ref_path), raster_info(sen_path)


def test_known_warp_of_real_radar_recovered_within_a_pixel(radar_pair, tmp_path):
    """The unwarped pair's own misregistration is measured first and taken out: the test is whether
    a known rotation, scale and shift of the real radar image is recovered on top of it."""
    optical, radar = radar_pair
    ref, sen = _write_pair(tmp_path, optical, radar, np.c_[np.eye(2), np.zeros(2)], "own")
    own = reg.register(ref, sen, None, transform="affine")
    assert own.method == "structure"                         # auto: a VV layer is radar
    h, w = optical.shape
    m = _similarity(-20.0, 1.12, ((w - 1) / 2, (h - 1) / 2), (2.5, -1.5))
    ref, sen = _write_pair(tmp_path, optical, radar, m, "warped")
    result = reg.register(ref, sen, None, transform="affine")
    grid = np.stack(np.meshgrid(np.arange(10, w - 10, 10.0), np.arange(10, h - 10, 10.0)), -1).reshape(-1, 2)
    true = _apply(m, own.to_sensed(grid))
    inside = (true >= 0).all(1) & (true[:, 0] <= w - 1) & (true[:, 1] <= h - 1)
    err = np.linalg.norm(result.to_sensed(grid[inside]) - true[inside], axis=1)
    assert np.sqrt(np.mean(err ** 2)) < 1.0
    assert abs(result.rotation - (-20.0)) < 1.0 or abs(result.rotation - 20.0) < 1.0
    assert result.n_red >= 6 and result.stages["structure_windows"] >= result.n_red


def test_auto_chooses_by_modality():
    assert choose_method("auto", (False, False)) == "sift"
    assert choose_method("auto", (False, True)) == "structure"
    assert choose_method("auto", (True, False)) == "structure"
    assert choose_method("sift_cnn", (True, True)) == "sift_cnn"   # an explicit choice is kept


def test_structure_refuses_a_featureless_image_by_name(tmp_path):
    flat = np.full((120, 120), 500, np.uint16)
    texture = (np.random.default_rng(0).uniform(100, 3000, (120, 120))).astype(np.uint16)
    write_array(str(tmp_path / "flat.tif"), flat[None], geotransform=GT, nodata=0)
    write_array(str(tmp_path / "tex.tif"), texture[None], geotransform=GT, nodata=0)
    with pytest.raises(InputError, match="structure|No common structure"):
        reg.register(raster_info(str(tmp_path / "tex.tif")), raster_info(str(tmp_path / "flat.tif")), None,
                     method="structure")


def test_check_points_give_the_rms_of_the_mappings_error(radar_pair, tmp_path):
    """Exact check points give a small RMS; the same points with their true sensed position moved by
    3 px east give about 3 px: RMS_check measures the mapping at points it never used."""
    optical, _ = radar_pair
    h, w = optical.shape
    m = _similarity(0.0, 1.0, ((w - 1) / 2, (h - 1) / 2), (1.5, -2.0))
    shifted = cv2.warpAffine(optical, m, (w, h), flags=cv2.INTER_CUBIC, borderValue=0)
    write_array(str(tmp_path / "ref.tif"), np.clip(optical, 1, 65535).astype(np.uint16)[None], geotransform=GT,
                nodata=0)
    write_array(str(tmp_path / "sen.tif"), np.clip(shifted, 0, 65535).astype(np.uint16)[None], geotransform=GT,
                nodata=0)
    ref, sen = raster_info(str(tmp_path / "ref.tif")), raster_info(str(tmp_path / "sen.tif"))
    px = np.array([[20.0, 20.0], [80.0, 30.0], [50.0, 70.0], [30.0, 85.0]])
    sensed_px = _apply(m, px)

    def to_map(p):
        return np.c_[GT[0] + (p[:, 0] + 0.5) * GT[1], GT[3] + (p[:, 1] + 0.5) * GT[5]]

    exact = np.c_[to_map(px), to_map(sensed_px)]
    result = reg.register(ref, sen, None, transform="similarity", method="sift", check_points=exact)
    assert result.n_check == 4 and result.rms_check < 0.3
    moved = exact + np.array([0.0, 0.0, 3 * GT[1], 0.0])
    result = reg.register(ref, sen, None, transform="similarity", method="sift", check_points=moved)
    assert result.rms_check == pytest.approx(3.0, abs=0.3)
    assert "check points" in result.summary()


def test_orientation_vote_with_no_weight_or_an_empty_peak_bin_flags_nothing_instead_of_dividing_by_zero():
    """Candidates whose weights are all 0, or whose smoothed vote peaks in an empty bin between two occupied
    ones, used to raise ZeroDivisionError from np.average (seen registering an overcast date)."""
    from types import SimpleNamespace

    from cloudfree.models.registration.match import consistent_matches

    kpa = SimpleNamespace(angle=np.zeros(4), size=np.ones(4))
    kpb = SimpleNamespace(angle=np.array([0.0, 0.0, 20.0, 20.0]), size=np.ones(4))
    ia = ib = np.arange(4)
    assert not consistent_matches(kpa, kpb, ia, ib, np.zeros(4)).any()
    flags = consistent_matches(kpa, kpb, ia, ib, np.ones(4))  # bins 0 and 2 occupied, the smoothed peak at 1
    assert flags.all()
