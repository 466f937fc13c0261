"""Registration pipeline tests with known ground truth (in the style of scikit-image's
phase_cross_correlation tests): a real 512x512 Sentinel-2 window is warped by a known
transform, written as GeoTIFF with the reference geotransform, and register() must recover
it. The real pair (reference/target of AROSICS' INTER1 case) is registered and the residual
is measured independently by phase correlation of the output against the reference.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
from osgeo import gdal, ogr, osr  # noqa: E402

from cloudfree.models import registration as reg  # noqa: E402
from cloudfree.models.errors import Cancelled, InputError, ModelFileError  # noqa: E402
from cloudfree.models.raster import raster_info, write_array  # noqa: E402

N = 512
X0, Y0 = 900, 1200  # window of the real reference used for the synthetic cases


def _truth(angle=0.0, scale=1.0, shift=(0.0, 0.0)):
    """2x3 matrix reference pixel -> sensed pixel: rotation/scale about the centre, then shift."""
    c = np.array([(N - 1) / 2.0, (N - 1) / 2.0])
    a = math.radians(angle)
    lin = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return np.c_[lin, c + np.asarray(shift, float) - lin @ c]


def _make_pair(folder, real, m, gain=1.0, offset=0.0, cloud=False, sensed_pixel=None):
    full, gt, wkt = real
    # sensed(x') = full(M^-1 x' + (X0, Y0)): cv2.warpAffine maps source -> destination with M
    m_full = np.c_[m[:, :2], m[:, 2] - m[:, :2] @ np.array([X0, Y0])]
    sen = cv2.warpAffine(full, m_full, (N, N), flags=cv2.INTER_CUBIC)
    sen = sen * gain + offset
    mask = None
    if cloud:
        yy, xx = np.mgrid[:N, :N]
        mask = (xx - 150) ** 2 + (yy - 330) ** 2 < 90 ** 2
        sen[mask] = 8000.0  # a bright, flat "cloud"
    sen = np.clip(sen, 1, 65535).astype(np.uint16)
    ref = full[Y0:Y0 + N, X0:X0 + N].astype(np.uint16)
    g = (gt[0] + X0 * gt[1], gt[1], 0.0, gt[3] + Y0 * gt[5], 0.0, gt[5])
    write_array(str(folder / "ref.tif"), ref[None], geotransform=g, crs_wkt=wkt)
    sg = g
    if sensed_pixel is not None:  # coarser sensed grid: same footprint, k times larger pixels
        k = sensed_pixel / gt[1]
        sen = cv2.resize(sen.astype(np.float32), (int(N / k), int(N / k)), interpolation=cv2.INTER_AREA)
        sen = np.clip(sen, 1, 65535).astype(np.uint16)
        sg = (g[0], sensed_pixel, 0.0, g[3], 0.0, -sensed_pixel)
        mask = None
    write_array(str(folder / "sen.tif"), sen[None], geotransform=sg, crs_wkt=wkt)
    return raster_info(str(folder / "ref.tif")), raster_info(str(folder / "sen.tif")), mask


def _expected(m):
    c = np.array([(N - 1) / 2.0, (N - 1) / 2.0])
    shift = m[:, :2] @ c + m[:, 2] - c
    return shift, math.degrees(math.atan2(m[1, 0], m[0, 0])), math.sqrt(np.linalg.det(m[:, :2]))


def _angle_diff(a, b):
    return (a - b + 180.0) % 360.0 - 180.0


CASES = {
    "shift": dict(shift=(2.3, -1.7)),
    "rot30": dict(angle=30.0, shift=(2.3, -1.7)),
    "rot120": dict(angle=120.0),
    "scale0.8": dict(scale=0.8),
    "scale1.5": dict(scale=1.5, shift=(-0.6, 1.2)),
    # the extremes of the supported range, where SIFT keypoint positions are most biased
    "rot180": dict(angle=180.0, shift=(0.4, -0.3)),
    "scale0.5": dict(scale=0.5),
    "scale2": dict(scale=2.0),
}


@pytest.mark.parametrize("case", list(CASES))
def test_recovers_known_transform(tmp_path, real_reference, case):
    m = _truth(**CASES[case])
    ref, sen, _ = _make_pair(tmp_path, real_reference, m)
    out = tmp_path / "out.tif"
    r = reg.register(ref, sen, str(out), transform="similarity")
    shift, angle, scale = _expected(m)
    print(f"{case}: shift error ({r.shift_x - shift[0]:+.4f}, {r.shift_y - shift[1]:+.4f}) px, "
          f"rotation error {_angle_diff(r.rotation, angle):+.4f} deg, scale error {100 * (r.scale / scale - 1):+.4f} %, "
          f"RMS_all {r.rms_all:.3f} RMS_LOO {r.rms_loo:.3f} N_red {r.n_red}")
    assert abs(r.shift_x - shift[0]) < 0.1 and abs(r.shift_y - shift[1]) < 0.1
    assert abs(_angle_diff(r.rotation, angle)) < 0.1
    assert abs(r.scale / scale - 1) < 1e-3
    assert r.n_red >= reg.MIN_MATCHES and r.refined
    # residuals are in reference pixels: a sensed pixel shrunk by `scale` spans 1/scale of them
    footprint = max(1.0, 1.0 / scale)
    assert r.rms_all < 0.1 * footprint and r.rms_loo < 0.1 * footprint
    # the matrix maps reference pixels to sensed pixels like the truth does
    corners = np.array([[0, 0], [N - 1, 0], [0, N - 1], [N - 1, N - 1]], float)
    assert np.abs(r.to_sensed(corners) - (corners @ m[:, :2].T + m[:, 2])).max() < 0.2
    assert out.exists()


@pytest.mark.parametrize("transform", ["translation", "affine", "projective", "tps"])
def test_transform_kinds_recover_shift(tmp_path, real_reference, transform):
    m = _truth(shift=(2.3, -1.7))
    ref, sen, _ = _make_pair(tmp_path, real_reference, m)
    r = reg.register(ref, sen, None, transform=transform)
    assert abs(r.shift_x - 2.3) < 0.1 and abs(r.shift_y + 1.7) < 0.1
    assert abs(r.rotation) < 0.1 and abs(r.scale - 1) < 1e-3
    assert r.matrix is None if transform == "tps" else r.matrix.shape == (3, 3)


def test_outputs_brightness_change_and_cloud_mask(tmp_path, real_reference):
    """Radiometric change + a masked cloud; check the output grid, tie points and checkerboard."""
    m = _truth(angle=-12.0, shift=(0.4, 0.7))
    ref, sen, cloud = _make_pair(tmp_path, real_reference, m, gain=0.6, offset=300.0, cloud=True)
    out, tp, cb = tmp_path / "out.tif", tmp_path / "tp.gpkg", tmp_path / "cb.tif"
    mask_path = str(tmp_path / "cloud_mask.tif")  # masks may be rasters (non-zero = ignore) or arrays
    write_array(mask_path, cloud.astype(np.uint8)[None], like=sen)
    r = reg.register(ref, sen, reg.RegistrationOutputs(str(out), tiepoints=str(tp), checkerboard=str(cb)),
                     transform="affine", masks=(None, mask_path))
    shift, angle, scale = _expected(m)
    assert abs(r.shift_x - shift[0]) < 0.1 and abs(r.shift_y - shift[1]) < 0.1
    assert abs(_angle_diff(r.rotation, angle)) < 0.1 and abs(r.scale / scale - 1) < 1e-3
    # output on the reference grid
    o = raster_info(str(out))
    assert (o.width, o.height, o.geotransform) == (ref.width, ref.height, ref.geotransform)
    s1, s2 = osr.SpatialReference(), osr.SpatialReference()
    s1.ImportFromWkt(o.crs_wkt)
    s2.ImportFromWkt(ref.crs_wkt)
    assert s1.IsSame(s2)
    assert o.dtype == "uint16" and o.nodata[0] == 0
    # registered output matches the reference (undo the radiometric change), away from cloud and edges
    a = gdal.Open(str(out)).ReadAsArray().astype(np.float32)
    b = gdal.Open(ref.path).ReadAsArray().astype(np.float32)
    clear = (a > 0) & (a < 7000)
    clear = cv2.erode(clear.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    from skimage.registration import phase_cross_correlation

    win = b[130:322, 260:452], a[130:322, 260:452]
    assert clear[130:322, 260:452].all()
    s, _, _ = phase_cross_correlation(win[0] - win[0].mean(), win[1] - win[1].mean(), upsample_factor=100)
    assert np.abs(s).max() < 0.1
    corr = np.corrcoef(a[clear], b[clear])[0, 1]
    assert corr > 0.95
    # tie points
    ds = ogr.Open(str(tp))
    layer = ds.GetLayer(0)
    srs = layer.GetSpatialRef()
    assert srs is not None and srs.IsSame(s2)
    assert layer.GetFeatureCount() == len(r.ref_points)
    names = [layer.GetLayerDefn().GetFieldDefn(i).GetName() for i in range(layer.GetLayerDefn().GetFieldCount())]
    assert names == ["ref_x", "ref_y", "sensed_x", "sensed_y", "residual", "inlier"]
    feat = layer.GetNextFeature()
    gt = ref.geotransform
    assert abs(feat.GetGeometryRef().GetX() - (gt[0] + (feat["ref_x"] + 0.5) * gt[1])) < 1e-6
    assert sum(f["inlier"] for f in layer) == r.n_red
    # no tie point falls in the masked cloud
    sp = np.rint(r.sensed_points[r.inliers]).astype(int)
    assert not cloud[np.clip(sp[:, 1], 0, N - 1), np.clip(sp[:, 0], 0, N - 1)].any()
    # checkerboard on the reference grid, squares from both
    c = gdal.Open(str(cb)).ReadAsArray()
    assert c.shape == (N, N)
    assert np.array_equal(c[10:20, 10:20], b[10:20, 10:20])
    assert leftovers(tmp_path) == []


def leftovers(folder):
    return [p for p in os.listdir(folder) if ".partial-" in p]


def test_sensed_with_coarser_pixels(tmp_path, real_reference):
    """A 20 m sensed image is resampled to the reference resolution; the shift is relative to georeferencing."""
    m = _truth(shift=(2.3, -1.7))
    ref, sen, _ = _make_pair(tmp_path, real_reference, m, sensed_pixel=20.0)
    out = tmp_path / "out.tif"
    r = reg.register(ref, sen, str(out), transform="similarity")
    # a 20 m pixel k covers 10 m pixels 2k, 2k+1: the truth in the reference frame is the 10 m shift
    assert abs(r.shift_x - 2.3) < 0.1 and abs(r.shift_y + 1.7) < 0.1
    assert abs(r.rotation) < 0.1 and abs(r.scale - 1) < 2e-3
    assert abs(np.sqrt(abs(np.linalg.det(r.matrix[:2, :2]))) - 0.5) < 1e-3
    o = raster_info(str(out))
    assert (o.width, o.height, o.geotransform) == (ref.width, ref.height, ref.geotransform)


def test_no_overlap_raises_and_writes_nothing(tmp_path, real_reference):
    full, gt, wkt = real_reference
    a = full[:256, :256].astype(np.uint16)
    write_array(str(tmp_path / "a.tif"), a[None], geotransform=gt, crs_wkt=wkt)
    far = (gt[0] + 100000.0, gt[1], 0.0, gt[3], 0.0, gt[5])
    write_array(str(tmp_path / "b.tif"), a[None], geotransform=far, crs_wkt=wkt)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(InputError, match="does not overlap"):
        reg.register(raster_info(str(tmp_path / "a.tif")), raster_info(str(tmp_path / "b.tif")),
                     reg.RegistrationOutputs(str(tmp_path / "out.tif"), tiepoints=str(tmp_path / "tp.gpkg"),
                                             checkerboard=str(tmp_path / "cb.tif")))
    assert sorted(os.listdir(tmp_path)) == before


def test_unrelated_images_raise_and_write_nothing(tmp_path, real_reference):
    full, gt, wkt = real_reference
    a = full[Y0:Y0 + 256, X0:X0 + 256].astype(np.uint16)
    noise = np.random.default_rng(0).integers(500, 1500, (256, 256)).astype(np.uint16)
    write_array(str(tmp_path / "a.tif"), a[None], geotransform=gt, crs_wkt=wkt)
    write_array(str(tmp_path / "b.tif"), noise[None], geotransform=gt, crs_wkt=wkt)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(InputError):
        reg.register(raster_info(str(tmp_path / "a.tif")), raster_info(str(tmp_path / "b.tif")),
                     reg.RegistrationOutputs(str(tmp_path / "out.tif"), tiepoints=str(tmp_path / "tp.gpkg")))
    assert sorted(os.listdir(tmp_path)) == before


def test_cancel_and_bad_arguments(tmp_path, real_reference):
    ref, sen, _ = _make_pair(tmp_path, real_reference, _truth(shift=(1.0, 1.0)))
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(Cancelled):
        reg.register(ref, sen, str(tmp_path / "out.tif"), cancelled=lambda: True)
    with pytest.raises(InputError, match="transform"):
        reg.register(ref, sen, str(tmp_path / "out.tif"), transform="spline9")
    with pytest.raises(InputError, match="method"):
        reg.register(ref, sen, str(tmp_path / "out.tif"), method="orb")
    with pytest.raises(InputError, match="inputs"):
        reg.register(ref, sen, sen.path)
    with pytest.raises(InputError, match="mask"):
        reg.register(ref, sen, str(tmp_path / "out.tif"), masks=(np.zeros((10, 10), bool), None))
    with pytest.raises(ModelFileError, match="does not exist"):
        reg.register(ref, sen, str(tmp_path / "out.tif"), method="sift_cnn",
                     match=reg.MatchOptions(descriptor_model_path=str(tmp_path / "missing.safetensors")))
    assert sorted(os.listdir(tmp_path)) == before


def test_real_pair_residual_below_a_tenth_of_a_pixel(tmp_path, shared_data):
    """Register the real AROSICS pair and measure what is left by phase correlation, independently."""
    from skimage.registration import phase_cross_correlation

    folder = shared_data / "s2_registration_pair"
    ref = raster_info(str(folder / "reference_20160608.tif"))
    tgt = raster_info(str(folder / "target_20160529.tif"))
    out = tmp_path / "registered.tif"
    r = reg.register(ref, tgt, reg.RegistrationOutputs(str(out), tiepoints=str(tmp_path / "tp.gpkg")),
                     transform="affine")
    print(r.summary(), f"{r.seconds:.1f} s")
    a = gdal.Open(ref.path).ReadAsArray().astype(np.float32)
    before = gdal.Warp("", tgt.path, format="MEM", outputBounds=ref.bounds, width=ref.width,
                       height=ref.height, dstNodata=0).ReadAsArray().astype(np.float32)
    after = gdal.Open(str(out)).ReadAsArray().astype(np.float32)

    def residual(b):
        win, shifts = 128, []
        hw = np.outer(np.hanning(win), np.hanning(win))
        for y in range(0, a.shape[0] - win, win):
            for x in range(0, a.shape[1] - win, win):
                wa, wb = a[y:y + win, x:x + win], b[y:y + win, x:x + win]
                # clear windows only: data in both, no bright cloud on the target, some texture
                if (wa == 0).any() or (wb == 0).any() or wb.max() > 2000 or wa.std() < 30:
                    continue
                s, _, _ = phase_cross_correlation((wa - wa.mean()) * hw, (wb - wb.mean()) * hw,
                                                  upsample_factor=100)
                if np.abs(s).max() < 4:
                    shifts.append((s[1], s[0]))
        return np.median(np.array(shifts), axis=0), len(shifts)

    (bx, by), nb = residual(before)
    (ax, ay), na = residual(after)
    print(f"real pair: residual before ({bx:+.3f}, {by:+.3f}) px over {nb} windows, "
          f"after ({ax:+.3f}, {ay:+.3f}) px over {na} windows")
    assert na >= 50
    assert abs(bx) > 0.4 and abs(by) > 1.5  # the known misregistration is there before
    assert abs(ax) < 0.1 and abs(ay) < 0.1
    # the estimate agrees with AROSICS (-0.6, +1.8), which reports the correction (opposite sign)
    assert abs(r.shift_x - 0.6) < 0.15 and abs(r.shift_y + 1.8) < 0.15
    assert r.rms_loo < 0.3 and r.n_red >= 50


def test_sift_cnn_registration_recovers_shift(tmp_path, shared_data, image):
    """The fused SIFT + CNN distance registers a known sub-pixel shift (tiny, briefly trained CNN)."""
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    path = tmp_path / "desc.safetensors"
    reg.train_descriptor([image], steps=2, batch_size=8, channels=(8, 8, 16, 16), dim=32,
                         out_path=str(path))
    ds = gdal.Open(str(shared_data / "s2_registration_pair" / "reference_20160608.tif"))
    gt, wkt = ds.GetGeoTransform(), ds.GetProjection()
    full = ds.ReadAsArray(700, 1000, 912, 912).astype(np.float32)
    ref = full[200:712, 200:712]
    m = np.array([[1.0, 0.0, 2.3 - 200.0], [0.0, 1.0, -1.7 - 200.0]])  # sensed = ref shifted by (2.3, -1.7)
    sen = cv2.warpAffine(full, m, (512, 512), flags=cv2.INTER_CUBIC)
    g = (gt[0] + 900 * gt[1], gt[1], 0.0, gt[3] + 1200 * gt[5], 0.0, gt[5])
    write_array(str(tmp_path / "r.tif"), ref.astype(np.uint16)[None], geotransform=g, crs_wkt=wkt)
    write_array(str(tmp_path / "s.tif"), np.clip(sen, 1, None).astype(np.uint16)[None], geotransform=g, crs_wkt=wkt)
    r = reg.register(raster_info(str(tmp_path / "r.tif")), raster_info(str(tmp_path / "s.tif")), None,
                     method="sift_cnn", transform="similarity",
                     match=reg.MatchOptions(descriptor_model_path=str(path), max_keypoints=1000))
    assert r.method == "sift_cnn"
    assert abs(r.shift_x - 2.3) < 0.1 and abs(r.shift_y + 1.7) < 0.1
    assert abs(r.rotation) < 0.1 and not math.isnan(r.rms_loo)


def test_bad_options_are_input_errors():
    with pytest.raises(InputError, match="resampling"):
        reg.RegistrationOutputs("out.tif", resampling="lanczos")
    with pytest.raises(InputError, match="ratio"):
        reg.MatchOptions(ratio=1.5)
    with pytest.raises(InputError, match="CNN weight"):
        reg.MatchOptions(cnn_weight=-0.1)
