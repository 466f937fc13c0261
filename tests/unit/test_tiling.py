"""The tiler: exact reconstruction, seamless blending, nodata, cancellation (engine only)."""

import os

import numpy as np
import pytest

from cloudfree.models import raster, tiling
from cloudfree.models.errors import Cancelled, CloudFreeError, InputError, ModelFileError

GT = (300000.0, 10.0, 0.0, 5000000.0, 0.0, -10.0)


def make(tmp_path, arr, name="in.tif", nodata=None):
    return raster.raster_info(raster.write_array(str(tmp_path / name), arr, geotransform=GT, crs_wkt="",
                                                 nodata=nodata))


def read_all(path):
    info = raster.raster_info(path)
    return raster.read_window(raster.open_raster(path), (0, 0, info.width, info.height), dtype=info.dtype)


def identity(batch, valid):
    return batch


@pytest.mark.parametrize("shape", [(3, 37, 53), (2, 301, 517), (1, 1, 7), (4, 10, 10)])
def test_identity_reproduces_input_exactly(tmp_path, shape):
    arr = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    src = make(tmp_path, arr)
    out = tiling.run_tiled(identity, src, str(tmp_path / "out.tif"), tile=64, overlap=16, batch_size=3)
    np.testing.assert_array_equal(read_all(out), arr)
    assert raster.raster_info(out).geotransform == GT


def test_identity_on_real_data_with_nodata(tmp_path, shared_data):
    src_path = shared_data / "l8_cloudy_scene" / "bgrn.tif"
    data = raster.read_window(raster.open_raster(str(src_path)), (0, 0, 627, 603), dtype=np.uint16)
    data[:, 100:140, 200:260] = 0
    src = make(tmp_path, data, nodata=0)
    out = tiling.run_tiled(identity, src, str(tmp_path / "out.tif"), out_dtype="uint16", tile=128, overlap=32)
    np.testing.assert_array_equal(read_all(out), data)
    assert raster.raster_info(out).nodata[0] == 0


def test_nodata_pixels_are_filled_for_the_function_and_nodata_in_the_output(tmp_path):
    arr = np.ones((1, 50, 60), dtype=np.float32)
    arr[0, 10:20, 10:20] = -9999
    src = make(tmp_path, arr, nodata=-9999)
    seen = []

    def fn(batch, valid):
        seen.append((batch[:, 0][~valid], batch.max()))
        return batch * 2

    out = read_all(tiling.run_tiled(fn, src, str(tmp_path / "o.tif"), tile=32, overlap=8))
    assert all((vals == 0).all() and mx <= 1 for vals, mx in seen)  # fn never sees -9999
    assert (out[0, 10:20, 10:20] == -9999).all()
    assert (np.delete(out[0], np.s_[10:20], axis=0) == 2).all()


def test_blend_window_is_a_partition_of_unity():
    tile, overlap = 64, 24
    w = tiling.blend_window_1d(tile, overlap)
    stride = tile - overlap
    total = np.zeros(stride * 5 + tile)
    for k in range(6):
        total[k * stride:k * stride + tile] += w
    np.testing.assert_allclose(total[overlap:-overlap], 1.0)


def test_no_seams_between_tiles(tmp_path):
    """A function with a different constant per tile must come out as a smooth cross-fade."""
    src = make(tmp_path, np.zeros((1, 200, 200), dtype=np.float32))
    rng = np.random.default_rng(3)

    def per_tile_constant(batch, valid):
        return np.stack([np.full_like(t, rng.uniform(0, 1)) for t in batch])

    overlap = 32
    out = read_all(tiling.run_tiled(per_tile_constant, src, str(tmp_path / "o.tif"), tile=64, overlap=overlap))[0]
    # the steepest slope of sin^2 across the overlap is pi / (2 * overlap) per unit jump
    max_step = np.pi / (2 * overlap) * 1.0 * 2 + 1e-6
    assert np.abs(np.diff(out, axis=0)).max() <= max_step
    assert np.abs(np.diff(out, axis=1)).max() <= max_step


def test_progress_and_cancel(tmp_path):
    src = make(tmp_path, np.zeros((1, 300, 300), dtype=np.float32))
    fractions = []
    tiling.run_tiled(identity, src, str(tmp_path / "ok.tif"), tile=64, overlap=16,
                     progress=lambda f, m=None: fractions.append(f))
    assert fractions[-1] == 1.0 and fractions == sorted(fractions)

    calls = {"n": 0}

    def cancel_after_three():
        calls["n"] += 1
        return calls["n"] > 3

    with pytest.raises(Cancelled):
        tiling.run_tiled(identity, src, str(tmp_path / "cancelled.tif"), tile=64, overlap=16,
                         cancelled=cancel_after_three)
    assert sorted(os.listdir(tmp_path)) == ["in.tif", "ok.tif"]


def test_extra_rasters_are_appended_as_channels(tmp_path):
    a = np.full((2, 40, 40), 1.0, dtype=np.float32)
    b = np.full((1, 40, 40), 5.0, dtype=np.float32)
    src, aux = make(tmp_path, a, "a.tif"), make(tmp_path, b, "b.tif")

    def last_channel(batch, valid):
        assert batch.shape[1] == 3
        return batch[:, 2:3]

    out = read_all(tiling.run_tiled(last_channel, src, str(tmp_path / "o.tif"), extra=[(aux, [1])], out_bands=1,
                                    tile=32, overlap=8))
    assert (out == 5).all()


def test_bad_tile_settings_and_wrong_network_outputs_are_engine_errors(tmp_path):
    # both were bare ValueErrors, which reached QGIS as tracebacks instead of a sentence
    src = make(tmp_path, np.zeros((2, 50, 50), dtype=np.float32))
    with pytest.raises(InputError, match="overlap 64 px does not fit tiles of 64 px"):
        tiling.run_tiled(identity, src, str(tmp_path / "a.tif"), tile=64, overlap=64)
    with pytest.raises(ModelFileError, match="does not fit this input or tile size"):
        tiling.run_tiled(lambda b, v: b[:, :1], src, str(tmp_path / "b.tif"), tile=32, overlap=8)
    assert issubclass(InputError, CloudFreeError) and issubclass(ModelFileError, CloudFreeError)
    assert sorted(os.listdir(tmp_path)) == ["in.tif"]


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32])
def test_cast_output_into_a_block_equals_the_plain_cast(dtype):
    """Clipping in place, then rounding straight into the block, gives what rounding then clipping gives,
    at halves (to even), past both ends of the type's range and for negative values."""
    from cloudfree.models.tiling import cast_output

    info = np.iinfo(dtype)
    values = np.array([[-70000.6, -1.5, -0.5, -0.4, 0.5, 1.5, 2.5, 254.5, 255.4, 255.6, 32767.5, 65535.49,
                        65535.5, 70000.0, float(info.max) + 0.6, float(info.min) - 0.6]])
    want = cast_output(values.copy(), dtype)
    got = cast_output(values.copy(), dtype, out=np.empty(values.shape, dtype=dtype))
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want)
