"""Removing clouds from real rasters with a trained model (models/cloud_removal/infer.py, feathering.py)."""

import numpy as np
import pytest
from osgeo import gdal

from cloudfree.models import cloud_removal as cr
from cloudfree.models.errors import InputError, ModelFileError
from cloudfree.models.raster import raster_info, write_array


def test_wrong_band_count_is_a_model_file_error(trained, shared_data, tmp_path):
    result, *_ = trained
    p = shared_data / "s2_cloud_pair"
    src = raster_info(str(p / "cloudy.tif"))
    with pytest.raises(ModelFileError, match="4 band"):
        cr.remove_clouds(src, str(tmp_path / "x.tif"), result.model_path, bands=[2, 3, 4],
                         mask=raster_info(str(p / "mask.tif")), options=cr.RemovalOptions(device="cpu"))
    assert not (tmp_path / "x.tif").exists()


def test_remove_clouds_keeps_clear_pixels_bit_identical(trained, shared_data, tmp_path):
    result, *_ = trained
    p = shared_data / "s2_cloud_pair"
    src = raster_info(str(p / "cloudy.tif"))
    mask = raster_info(str(p / "mask.tif"))
    out = tmp_path / "clear.tif"
    fractions = []
    summary = cr.remove_clouds(src, str(out), result.model_path, bands="2,3,4,8", mask=mask,
                               options=cr.RemovalOptions(tile=64, overlap=16, device="cpu", feather=4),
                               progress=lambda f, m=None: fractions.append(f))
    assert summary["output"] == str(out) and fractions[-1] == pytest.approx(1.0)
    ds = gdal.Open(str(out))
    assert (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) == (256, 256, 4)
    assert ds.GetGeoTransform() == src.geotransform
    assert ds.GetSpatialRef().GetAuthorityCode(None) == "4326"
    got = ds.ReadAsArray()
    assert got.dtype == np.float32
    orig = gdal.Open(str(p / "cloudy.tif")).ReadAsArray()[[1, 2, 3, 7]]
    m = gdal.Open(str(p / "mask.tif")).ReadAsArray()
    masked = np.isin(m, [1, 2])
    assert np.array_equal(got[:, ~masked].view(np.uint32), orig[:, ~masked].view(np.uint32))
    assert summary["masked_pixels"] == int(masked.sum())
    # inside the mask the values changed, and the generated ones are in the image's own range
    assert (got[:, masked] != orig[:, masked]).mean() > 0.99
    assert np.isfinite(got).all()
    clear_mean = orig[:, ~masked].mean(axis=1)
    gen_mean = got[:, masked].mean(axis=1)
    assert np.all(np.abs(gen_mean - clear_mean) < 0.5 * clear_mean)


def test_feather_weights_inside_mask_only():
    m = np.zeros((20, 20), dtype=bool)
    m[5:15, 5:15] = True
    w = cr.feather_weights(m, 4)
    assert (w[~m] == 0).all()
    assert w[5, 10] == pytest.approx(0.25) and w[10, 10] == 1.0
    assert (w[m] > 0).all()
    np.testing.assert_array_equal(cr.feather_weights(m, 0), m.astype(float))


def test_remove_clouds_integer_dns_keep_dtype(trained, shared_data, tmp_path):
    """Landsat 8 DNs (UInt16, other scaling than the training data): dtype kept, clear pixels exact."""
    result, *_ = trained
    d = shared_data / "l8_cloudy_scene"
    src = raster_info(str(d / "bgrn.tif"))
    qa = gdal.Open(str(d / "qa.tif")).ReadAsArray()
    cloud = ((qa >> 14) & 3) == 3
    mask_path = tmp_path / "mask.tif"
    write_array(str(mask_path), cloud.astype(np.uint8), like=src)
    out = tmp_path / "l8.tif"
    cr.remove_clouds(src, str(out), result.model_path, mask=raster_info(str(mask_path)), mask_values=(1,),
                     options=cr.RemovalOptions(tile=64, overlap=16, device="cpu"))
    got = gdal.Open(str(out)).ReadAsArray()
    orig = gdal.Open(str(d / "bgrn.tif")).ReadAsArray()
    assert got.dtype == np.uint16
    assert np.array_equal(got[:, ~cloud], orig[:, ~cloud])
    valid = orig[:, cloud] > 0
    assert np.median(got[:, cloud][valid]) < np.median(orig[:, cloud][valid])  # clouds were bright


def test_model_with_mask_channel_needs_a_mask(trained, shared_data, tmp_path):
    result, *_ = trained
    src = raster_info(str(shared_data / "s2_cloud_pair" / "cloudy.tif"))
    with pytest.raises(InputError, match="mask"):
        cr.remove_clouds(src, str(tmp_path / "y.tif"), result.model_path, bands=[2, 3, 4, 8],
                         options=cr.RemovalOptions(device="cpu"))


def test_remove_clouds_opens_its_input_and_mask_once(trained, shared_data, tmp_path, monkeypatch):
    """Statistics, the coarse fill prior and the feathering each opened the input and the mask again
    (4 opens of each with the tiler's); now they read through the one ``info.dataset()``, and only the
    tiler, which reads on a background thread, opens its own handle."""
    result, *_ = trained
    p = shared_data / "s2_cloud_pair"
    src, mask = raster_info(str(p / "cloudy.tif")), raster_info(str(p / "mask.tif"))
    opened = []
    real_open = gdal.Open

    def counting_open(path, *args):
        opened.append(str(path))
        return real_open(path, *args)

    monkeypatch.setattr(gdal, "Open", counting_open)
    cr.remove_clouds(src, str(tmp_path / "once.tif"), result.model_path, bands=[2, 3, 4, 8], mask=mask,
                     options=cr.RemovalOptions(tile=64, overlap=16, device="cpu"))
    assert 1 <= opened.count(src.path) <= 2
    assert 1 <= opened.count(mask.path) <= 2


def test_tiles_without_a_masked_pixel_are_skipped_and_the_output_is_the_same(shared_data, tmp_path, monkeypatch):
    """The shipped model over a real scene whose mask covers one corner: the network runs only on the tiles
    that hold a masked pixel, and the output equals, bit for bit, a run that generates every tile."""
    from cloudfree.models.cloud_removal.infer import GeneratorTiles
    from cloudfree.models.weights import shipped_model

    p = shared_data / "s2_cloud_pair"
    src = raster_info(str(p / "cloudy.tif"))
    m = gdal.Open(str(p / "mask.tif")).ReadAsArray()
    corner = np.zeros_like(m)
    corner[:80, :80] = np.where(np.isin(m[:80, :80], [1, 2]), 1, 0)
    corner[10:20, 10:20] = 1
    write_array(str(tmp_path / "corner.tif"), corner[None], like=src, dtype=np.uint8)
    mask = raster_info(str(tmp_path / "corner.tif"))
    options = cr.RemovalOptions(tile=64, overlap=16, device="cpu", backend="torch")
    model = shipped_model("cloud_removal_small.safetensors")
    generated = []
    original = GeneratorTiles.generate

    def counting(self, batch, valid):
        generated.append(len(batch))
        return original(self, batch, valid)

    monkeypatch.setattr(GeneratorTiles, "generate", counting)
    cr.remove_clouds(src, str(tmp_path / "skip.tif"), model, bands="2,3,4,8", mask=mask, mask_values=(1,),
                     options=options)
    skipped_run = sum(generated)
    monkeypatch.setattr(GeneratorTiles, "tiles_to_generate", lambda self, batch: np.ones(len(batch), bool))
    generated.clear()
    cr.remove_clouds(src, str(tmp_path / "all.tif"), model, bands="2,3,4,8", mask=mask, mask_values=(1,),
                     options=options)
    assert skipped_run < 0.5 * sum(generated)
    a, b = gdal.Open(str(tmp_path / "skip.tif")).ReadAsArray(), gdal.Open(str(tmp_path / "all.tif")).ReadAsArray()
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_feathering_keeps_float64_clear_pixels_exact_though_the_tiler_copy_is_float32(tmp_path):
    """The tiler hands its float32 copy of the rows to the feathering; for a type float32 cannot hold
    exactly (float64 here) the rows are read again, so clear pixels still come back bit for bit."""
    from cloudfree.models.cloud_removal.feathering import MaskFeathering

    rng = np.random.default_rng(1)
    values = rng.random((2, 8, 10)) * 1e4 + 1e-9
    mask = np.zeros((1, 8, 10), dtype=np.uint8)
    mask[0, 2:5, 3:7] = 1
    gt = dict(geotransform=(0, 1, 0, 0, 0, -1), crs_wkt="")
    src = raster_info(write_array(str(tmp_path / "f64.tif"), values, **gt))
    feathering = MaskFeathering(src, [1, 2], raster_info(write_array(str(tmp_path / "m.tif"), mask, **gt)),
                                np.array([1.0]), 0.0)
    blended = np.full((2, 8, 10), -1.0)
    out = feathering(blended, 0, np.ones((8, 10), bool), values.astype(np.float32))
    clear = mask[0] == 0
    assert np.array_equal(out[:, clear], values[:, clear]) and (out[:, ~clear] == -1.0).all()


def test_remove_clouds_decompresses_the_whole_input_once_before_the_tiles(shared_data, tmp_path, monkeypatch):
    """The statistics, the training-range check and the coarse fill prior share one decimated read of the
    input and one of the mask (they made three of each, each a pass over every block of a compressed file),
    and what they compute from it is what their own reads gave where those were exact (a raster no larger
    than the sample)."""
    from cloudfree.models import raster
    from cloudfree.models.cloud_removal import domain, prior
    from cloudfree.models.cloud_removal.infer import cloudy_input, load_removal_model, value_maps
    from cloudfree.models.cloud_removal.sample import read_input_sample
    from cloudfree.models.weights import shipped_model

    p = shared_data / "s2_cloud_pair"
    src, mask = raster_info(str(p / "cloudy.tif")), raster_info(str(p / "mask.tif"))
    model_path = shipped_model("cloud_removal_small.safetensors")
    reads = []
    real = raster.read_decimated

    def counting(info, *args, **kwargs):
        reads.append(info.path)
        return real(info, *args, **kwargs)

    for module in ("infer", "sample", "scaling", "domain", "prior"):
        target = __import__(f"cloudfree.models.cloud_removal.{module}", fromlist=["x"])
        if hasattr(target, "read_decimated"):
            monkeypatch.setattr(target, "read_decimated", counting)
    cr.remove_clouds(src, str(tmp_path / "o.tif"), model_path, bands=[2, 3, 4, 8], mask=mask, mask_values=(1, 2),
                     options=cr.RemovalOptions(tile=64, overlap=16, device="cpu", backend="torch"))
    assert reads.count(src.path) == 1 and reads.count(mask.path) == 1
    monkeypatch.undo()

    inputs = cloudy_input(src, [2, 3, 4, 8], mask, (1, 2), None)
    model = load_removal_model(model_path, inputs, "cpu")
    sample = read_input_sample(src, inputs.bands, mask, 1024)  # 256 px: the sample is the raster itself
    assert value_maps(model, inputs, sample).image.to_dict() == value_maps(model, inputs).image.to_dict()
    stored = {"low": [400.0, 500.0, 300.0, 1500.0], "high": [1500.0, 1800.0, 2000.0, 4000.0]}  # a range to test
    assert domain.outside_fraction(src, inputs.bands, stored, sample=sample) == \
        domain.outside_fraction(src, inputs.bands, stored, max_size=1024)
    image_map = value_maps(model, inputs).image
    np.testing.assert_array_equal(
        prior.coarse_fill(src, inputs.bands, mask, inputs.mask_values, image_map, (100, 100), sample),
        prior.coarse_fill(src, inputs.bands, mask, inputs.mask_values, image_map, (100, 100)))


def test_feather_weights_are_the_exact_euclidean_distance_into_the_mask():
    """OpenCV's precise distance transform gives scipy's exact Euclidean distances, image borders included
    (masks touching the edge, long thin clouds, a mask with one clear pixel)."""
    from scipy.ndimage import binary_dilation, distance_transform_edt

    rng = np.random.default_rng(7)
    masks = [binary_dilation(rng.random((120, 300)) < 0.01, iterations=k) for k in (1, 3, 9)]
    one_clear = np.ones((40, 50), dtype=bool)
    one_clear[39, 0] = False
    masks += [one_clear, np.eye(64, dtype=bool) | np.eye(64, dtype=bool)[::-1]]
    for m in masks:
        for feather in (1.5, 4.0, 25.0):
            want = np.clip(distance_transform_edt(m) / feather, 0.0, 1.0)
            np.testing.assert_allclose(cr.feather_weights(m, feather), want, atol=1e-4)
