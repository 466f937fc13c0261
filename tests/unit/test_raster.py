"""Raster I/O: reading, writing, band parsing, nodata (engine only, no QGIS)."""

import os

import numpy as np
import pytest
from osgeo import gdal, osr

from cloudfree.models import raster
from cloudfree.models.errors import InputError


@pytest.fixture()
def pair(shared_data):
    return shared_data / "s2_cloud_pair"


def utm_wkt(epsg=32633):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    return srs.ExportToWkt()


def test_info_of_real_raster(pair):
    info = raster.raster_info(str(pair / "clean.tif"))
    assert (info.width, info.height, info.band_count) == (256, 256, 12)
    assert info.dtype == "float32"
    assert info.crs_label() == "EPSG:4326"


def test_round_trip_keeps_georeferencing_nodata_and_descriptions(tmp_path, pair):
    src = raster.raster_info(str(pair / "clean.tif"))
    data = raster.read_window(raster.open_raster(src.path), (0, 0, src.width, src.height), [2, 3, 4])
    data[:, :5, :5] = -9999
    out = tmp_path / "copy.tif"
    with raster.RasterWriter(str(out), like=src, band_count=3, dtype="float32", nodata=-9999,
                             descriptions=["blue", "green", "red"]) as w:
        for x0, y0, bw, bh in raster.iter_windows(src.width, src.height, block=100):
            w.write(data[:, y0:y0 + bh, x0:x0 + bw], x0, y0)
    back = raster.raster_info(str(out))
    assert back.geotransform == src.geotransform
    assert back.crs_label() == src.crs_label()
    assert back.nodata == (-9999.0,) * 3
    assert back.descriptions == ("blue", "green", "red")
    np.testing.assert_array_equal(raster.read_window(raster.open_raster(str(out)), (0, 0, 256, 256)), data)
    assert os.listdir(tmp_path) == ["copy.tif"]  # no temporary file left behind


def test_output_is_tiled_and_compressed_and_cog_when_asked(tmp_path):
    arr = np.random.default_rng(0).random((2, 300, 400)).astype(np.float32)
    plain = raster.write_array(str(tmp_path / "a.tif"), arr, geotransform=(0, 1, 0, 0, 0, -1), crs_wkt=utm_wkt())
    cog = raster.write_array(str(tmp_path / "b.tif"), arr, geotransform=(0, 1, 0, 0, 0, -1), crs_wkt=utm_wkt(),
                             cog=True)
    ds = gdal.Open(plain)
    assert ds.GetRasterBand(1).GetBlockSize() == [256, 256]
    assert ds.GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "ZSTD"  # Debian's GDAL 3.6 has ZSTD
    assert gdal.Open(cog).GetMetadata("IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    np.testing.assert_array_equal(gdal.Open(cog).ReadAsArray(), arr)


def test_failed_write_leaves_nothing_and_keeps_existing_file(tmp_path):
    dst = tmp_path / "out.tif"
    dst.write_bytes(b"previous result")
    with pytest.raises(RuntimeError):
        with raster.RasterWriter(str(dst), width=10, height=10, geotransform=(0, 1, 0, 0, 0, -1), crs_wkt="") as w:
            w.write(np.zeros((1, 10, 10)), 0, 0)
            raise RuntimeError("boom")
    assert dst.read_bytes() == b"previous result"
    assert os.listdir(tmp_path) == ["out.tif"]


def test_writer_refuses_to_overwrite_an_input(tmp_path, pair):
    src = raster.raster_info(str(pair / "mask.tif"))
    with pytest.raises(InputError, match="one of the inputs"):
        raster.RasterWriter(src.path, like=src, protect=[src.path])


def test_read_padded_reflects_outside_the_raster(tmp_path):
    arr = np.arange(20, dtype=np.float32).reshape(1, 4, 5)
    path = raster.write_array(str(tmp_path / "a.tif"), arr, geotransform=(0, 1, 0, 0, 0, -1), crs_wkt="")
    got = raster.read_padded(raster.open_raster(path), (-2, -1, 9, 6))
    np.testing.assert_array_equal(got[0], np.pad(arr[0], ((1, 1), (2, 2)), mode="reflect"))


def test_missing_file_and_bad_bands_have_clear_messages(pair):
    with pytest.raises(InputError, match="'ghost'.*not found"):
        raster.raster_info("/nonexistent/ghost.tif", "ghost")
    assert raster.parse_bands("2, 3,4", 12) == [2, 3, 4]
    assert raster.parse_bands("", 3) == [1, 2, 3]
    with pytest.raises(InputError, match=r"'clean' has 12 band\(s\); band number\(s\) \[13\]"):
        raster.parse_bands("2,13", 12, "clean")
    with pytest.raises(InputError, match="comma-separated"):
        raster.parse_bands("red", 12, "clean")


def test_all_nodata_is_detected(tmp_path):
    arr = np.full((1, 20, 20), -1, dtype=np.int16)
    info = raster.raster_info(raster.write_array(str(tmp_path / "n.tif"), arr, nodata=-1,
                                                 geotransform=(0, 1, 0, 0, 0, -1), crs_wkt=""), "empty")
    with pytest.raises(InputError, match="'empty' holds only nodata"):
        raster.require_valid_pixels(info)


def test_compression_can_be_forced_to_deflate_for_other_software(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOUDFREE_COMPRESSION", "DEFLATE")
    arr = np.ones((1, 64, 64), dtype=np.float32)
    path = raster.write_array(str(tmp_path / "d.tif"), arr, geotransform=(0, 1, 0, 0, 0, -1), crs_wkt="")
    assert gdal.Open(path).GetMetadata("IMAGE_STRUCTURE")["COMPRESSION"] == "DEFLATE"


def test_read_padded_matches_numpy_reflect_padding():
    """Windows reaching past any edge are mirrored exactly as numpy's 'reflect' (or 'edge' for 1 px)."""
    rng = np.random.default_rng(3)
    for H, W in [(37, 53), (5, 7), (2, 9), (1, 6)]:
        a = rng.normal(size=(3, H, W)).astype(np.float32)
        ds = gdal.GetDriverByName("MEM").Create("", W, H, 3, gdal.GDT_Float32)
        for i in range(3):
            ds.GetRasterBand(i + 1).WriteArray(a[i])
        for _ in range(200):
            x0, y0 = int(rng.integers(-W + 1, W)), int(rng.integers(-H + 1, H))
            w, h = int(rng.integers(1, 2 * W)), int(rng.integers(1, 2 * H))
            if x0 + w <= 0 or y0 + h <= 0:
                continue
            ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
            inner = a[[0, 2], iy0:iy1, ix0:ix1]
            ref = np.pad(inner, ((0, 0), (iy0 - y0, y0 + h - iy1), (0, 0)),
                         mode="reflect" if inner.shape[1] > 1 else "edge")
            ref = np.pad(ref, ((0, 0), (0, 0), (ix0 - x0, x0 + w - ix1)),
                         mode="reflect" if inner.shape[2] > 1 else "edge")
            np.testing.assert_array_equal(raster.read_padded(ds, (x0, y0, w, h), [1, 3]), ref)
            # into a caller's buffer (a view of a larger array, as the tiler passes): the same values
            big = np.full((4, h, w), np.nan, dtype=np.float32)
            got = raster.read_padded(ds, (x0, y0, w, h), [1, 3], out=big[1:3])
            assert np.shares_memory(got, big)
            np.testing.assert_array_equal(big[1:3], ref)
            assert np.isnan(big[[0, 3]]).all()


@pytest.mark.parametrize("options", [["TILED=YES", "COMPRESS=ZSTD", "PREDICTOR=2"], ["COMPRESS=DEFLATE"], []])
def test_decimated_read_by_rows_takes_the_pixels_gdal_takes(tmp_path, options):
    """The row-chunk path of read_decimated gives exactly GDAL's nearest decimation, for whole rasters,
    windows and row ranges, integer and fractional factors, tiled or striped files (small chunks force
    several reads)."""
    rng = np.random.default_rng(3)
    data = rng.integers(0, 60000, size=(3, 777, 1000)).astype(np.uint16)
    path = str(tmp_path / "d.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 1000, 777, 3, gdal.GDT_UInt16, options)
    ds.WriteArray(data)
    ds = None
    info = raster.raster_info(path)
    cases = [dict(size=(250, 259)), dict(size=(999, 776)), dict(size=(1, 1)), dict(size=(333, 700)),
             dict(max_size=128), dict(window=raster.Window(17, 40, 600, 500), size=(97, 211)),
             dict(rows=(100, 700), max_size=64)]
    for kw in cases:
        want = raster.read_decimated(info, [3, 1], resample="nearest", **kw)  # GDAL's own decimation
        for chunk_bytes in (raster.ROWS_READ_BYTES, 20000):
            raster.ROWS_READ_BYTES, saved = chunk_bytes, raster.ROWS_READ_BYTES
            try:
                got = raster.read_decimated(info, [3, 1], **kw)
            finally:
                raster.ROWS_READ_BYTES = saved
            np.testing.assert_array_equal(got, want, err_msg=str(kw))


def test_subsample_nearest_of_the_whole_raster_is_gdals_decimated_read(tmp_path):
    """Reducing the full-resolution array by the nearest rule gives exactly what GDAL's decimated read of
    the file returns (the rule the shared input sample of remove_clouds reduces by)."""
    rng = np.random.default_rng(5)
    data = rng.integers(0, 60000, size=(2, 301, 433)).astype(np.uint16)
    info = raster.raster_info(raster.write_array(str(tmp_path / "s.tif"), data))
    for size in ((433, 301), (200, 150), (97, 211), (1, 1)):
        want = raster.read_decimated(info, [1, 2], 0, size=size, resample="nearest", dtype=None)
        np.testing.assert_array_equal(raster.subsample_nearest(data, size), want, err_msg=str(size))


def test_the_shared_handle_decodes_on_every_core_and_leaves_gdals_setting_as_it_was(tmp_path):
    """RasterInfo.dataset() opens with GDAL_NUM_THREADS=ALL_CPUS for its block decompression (same values
    as a plain handle) and puts the thread's setting back, so the tiler's own handles stay on one thread."""
    data = np.random.default_rng(1).integers(0, 5000, size=(3, 600, 700)).astype(np.uint16)
    path = str(tmp_path / "z.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 700, 600, 3, gdal.GDT_UInt16,
                                              ["TILED=YES", "COMPRESS=ZSTD", "BLOCKXSIZE=128", "BLOCKYSIZE=128"])
    ds.WriteArray(data)
    ds = None
    gdal.SetThreadLocalConfigOption("GDAL_NUM_THREADS", "1")
    try:
        info = raster.raster_info(path)
        np.testing.assert_array_equal(info.dataset().ReadAsArray(), data)
        assert gdal.GetThreadLocalConfigOption("GDAL_NUM_THREADS", None) == "1"
        np.testing.assert_array_equal(raster.open_raster(path).ReadAsArray(), data)
    finally:
        gdal.SetThreadLocalConfigOption("GDAL_NUM_THREADS", None)
