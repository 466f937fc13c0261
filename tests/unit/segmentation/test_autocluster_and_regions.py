"""Automatic-K clustering on mixtures of normal distributions, regions of classes, and class comparison of rasters."""

import json

import numpy as np
import pytest
from osgeo import gdal, ogr

from cloudfree.models import segmentation as sg
from cloudfree.models.comparison import compare_class_rasters
from cloudfree.models.raster import raster_info, write_array

SETTINGS = sg.KHistogramSettings(significance=0.001, min_size=50)


@pytest.mark.parametrize("means", [[0.0], [0.0, 10.0], [0.0, 10.0, 20.0], [5.0, 12.0, 30.0, 50.0, 70.0]])
def test_k_histogram_finds_the_number_of_well_separated_normals(means):
    for seed in range(4):
        rng = np.random.default_rng(seed)
        values = np.concatenate([rng.normal(m, 1.0 + 0.5 * (seed % 2), int(rng.integers(5000, 30000)))
                                 for m in means])
        clusters = sg.cluster_band(values, SETTINGS)
        assert clusters.count == len(means), (seed, clusters.centroids)
        assert np.allclose(clusters.centroids, means, atol=0.3)


def _mixture(tmp_path, rng):
    """Six regions on a 300 x 300 grid: three levels in band 1 times two in band 2, normal noise."""
    label = np.zeros((300, 300), int)
    label[:, 100:200], label[:, 200:] = 1, 2
    label[150:] += 3
    band1, band2 = np.array([0, 10, 20, 0, 10, 20]), np.array([0, 0, 0, 50, 50, 50])
    data = np.stack([rng.normal(band1[label], 1.5), rng.normal(band2[label], 2.0)]).astype(np.float32)
    data[:, :5, :5] = -9999  # nodata corner
    path = tmp_path / "mixture.tif"
    write_array(str(path), data, nodata=-9999)
    return raster_info(str(path)), label


def test_autocluster_finds_k_on_a_mixture_raster_and_writes_centroids(tmp_path):
    info, label = _mixture(tmp_path, np.random.default_rng(3))
    out, cent = tmp_path / "k.tif", tmp_path / "k.json"
    summary = sg.autocluster(info, str(out), str(cent), sg.AutoclusterOptions(min_size=500, block=128))
    assert summary["k"] == 6 and [len(p["centroids"]) for p in summary["per_band"]] == [3, 2]
    ds = gdal.Open(str(out))
    band = ds.GetRasterBand(1)
    classes = band.ReadAsArray()
    assert band.GetColorTable() is not None and band.GetNoDataValue() == 255 and (classes[:5, :5] == 255).all()
    for k in range(6):  # every region is (almost) one class, and different regions different classes
        inside = classes[label == k]
        inside = inside[inside != 255]
        assert (inside == np.bincount(inside).argmax()).mean() > 0.99
    assert len({int(np.bincount(classes[label == k][classes[label == k] != 255]).argmax()) for k in range(6)}) == 6
    saved = json.loads(cent.read_text())
    centroids = sorted(tuple(np.round(c["centroid"])) for c in saved["classes"])
    assert centroids == sorted((float(a), float(b)) for a in (0, 10, 20) for b in (0, 50))
    # smoothing is computed block by block with a halo: the same result as one block
    a, b = tmp_path / "a.tif", tmp_path / "b.tif"
    sg.autocluster(info, str(a), None, sg.AutoclusterOptions(min_size=500, smooth=5, block=64))
    sg.autocluster(info, str(b), None, sg.AutoclusterOptions(min_size=500, smooth=5, block=512))
    assert (gdal.Open(str(a)).ReadAsArray() == gdal.Open(str(b)).ReadAsArray()).all()


def test_regions_are_polygons_with_area_perimeter_and_a_minimum_area(tmp_path):
    classes = np.zeros((1, 60, 80), np.uint8)
    classes[0, 5:15, 5:25] = 3      # 200 px
    classes[0, 30:32, 40:42] = 3    # 4 px: under the minimum
    classes[0, 40:50, 10:20] = 7    # 100 px, not chosen
    classes[0, 0, 79] = 255         # nodata
    path = tmp_path / "classes.tif"
    write_array(str(path), classes, nodata=255, geotransform=(500000.0, 10.0, 0.0, 4000000.0, 0.0, -10.0),
                crs_wkt='EPSG:32633')
    out = tmp_path / "regions.gpkg"
    summary = sg.regions(raster_info(str(path)), str(out), sg.RegionOptions(classes=(3,), min_area=1000.0))
    assert summary["regions"] == 1 and summary["dropped"] == 1
    ds = ogr.Open(str(out))
    layer = ds.GetLayer(0)
    feature = layer.GetNextFeature()
    assert feature.GetField("class") == 3 and feature.GetField("pixels") == 200
    assert feature.GetField("area") == pytest.approx(200 * 100.0) and feature.GetField("perimeter") == pytest.approx(600.0)
    everything = sg.regions(raster_info(str(path)), str(tmp_path / "all.geojson"), sg.RegionOptions())
    assert everything["per_class"]["7"]["regions"] == 1 and "255" not in everything["per_class"]
    none = sg.regions(raster_info(str(path)), str(tmp_path / "none.gpkg"), sg.RegionOptions(classes=(5,)))
    empty = ogr.Open(str(tmp_path / "none.gpkg"))
    assert none["regions"] == 0 and empty.GetLayer(0).GetFeatureCount() == 0


def test_compare_class_rasters_counts_the_confusion_matrix_block_by_block(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 4, (1, 90, 70)).astype(np.uint8)
    pred = truth.copy()
    pred[0, :30][pred[0, :30] == 2] = 3
    pred[0, 0, 0] = 255
    a, b = tmp_path / "pred.tif", tmp_path / "truth.tif"
    write_array(str(a), pred, nodata=255)
    write_array(str(b), truth)
    report = compare_class_rasters(raster_info(str(a)), raster_info(str(b)), block=32)
    n = 90 * 70 - 1
    cm = np.zeros((3, 3), int)
    ok = pred[0] != 255
    np.add.at(cm, (truth[0][ok] - 1, pred[0][ok] - 1), 1)
    assert report["classes"] == [1, 2, 3] and report["confusion_matrix"]["counts"] == cm.tolist()
    assert report["n_pixels"] == n and report["overall"]["accuracy"] == pytest.approx(np.trace(cm) / n)
    assert report["per_class"][0]["iou"] == 1.0 and report["per_class"][1]["dice"] < 1.0


def test_regions_refuses_a_reflectance_raster(tmp_path):
    from cloudfree.models.errors import InputError
    from cloudfree.models.raster import raster_info, write_array
    from cloudfree.models.segmentation import regions

    src = write_array(str(tmp_path / "reflectance.tif"), np.random.default_rng(0).random((1, 16, 16)).astype(np.float32))
    with pytest.raises(InputError, match=r"'reflectance'.*float32.*not classes"):
        regions(raster_info(src), str(tmp_path / "r.gpkg"))
    assert not (tmp_path / "r.gpkg").exists()
