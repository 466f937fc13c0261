"""Training on real NDVI dates with real land-cover labels, the model file, and segment over whole rasters."""

import numpy as np
import pytest
from osgeo import gdal

from cloudfree.models import segmentation as sg
from cloudfree.models.class_metrics import class_scores
from cloudfree.models.errors import GridMismatchError, InputError, ModelFileError
from cloudfree.models.raster import raster_info, read_window, write_array
from cloudfree.models.weights import read_metadata, shipped_model
from cloudfree.models.windows import Window

from .conftest import TINY


def test_short_training_raises_held_out_dice(trained):
    result, path = trained
    assert result.metrics["mean_dice"] > result.initial_metrics["mean_dice"] + 0.2, \
        (result.initial_metrics["mean_dice"], result.metrics["mean_dice"])
    assert result.metrics["pixel_accuracy"] > 0.7
    assert result.history["epoch"][0] == 0 and len(result.history["val_loss"]) == result.epochs_run + 1
    meta = read_metadata(path)
    assert meta.task == "segmentation" and meta.architecture == "unet" and meta.band_count == 6
    assert [c["value"] for c in meta.training["classes"]] == [1, 2, 3, 4, 8]  # 0 is the ignore value
    assert all(len(c["colour"]) == 4 for c in meta.training["classes"])
    assert meta.metrics["held_out"]["mean_dice"] == result.metrics["mean_dice"]
    assert meta.hyperparameters["dropout"] > 0 and meta.normalization["scheme"] == "fixed_per_band"


def test_report_is_written(trained, tmp_path):
    result, _ = trained
    page = sg.write_training_report(result, str(tmp_path / "r.html"))
    text = open(page).read()
    assert "Held-out scores per class" in text and text.count("<img") == 1 + len(result.samples)


def test_class_raster_carries_the_colour_table_and_class_values(trained, ndvi_stack, landcover, tmp_path):
    result, path = trained
    out, probs = tmp_path / "classes.tif", tmp_path / "probs.tif"
    summary = sg.segment(ndvi_stack, path, str(out), sg.SegmentOptions(tile=48, overlap=16, device="cpu",
                                                                       probabilities_path=str(probs)))
    ds = gdal.Open(str(out))
    band = ds.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == 255
    ct = band.GetColorTable()
    for entry in result.classes.to_metadata():
        assert ct.GetColorEntry(entry["value"]) == tuple(entry["colour"])
    assert ds.GetGeoTransform() == ndvi_stack[0].geotransform and ds.GetProjection()
    classes = band.ReadAsArray()
    assert set(np.unique(classes)) <= {1, 2, 3, 4, 8}
    assert sum(summary["pixel_counts"].values()) == classes.size
    p = gdal.Open(str(probs)).ReadAsArray()
    assert p.shape == (5, 101, 100) and np.allclose(p.sum(0), 1.0, atol=1e-4)
    lookup = np.array([1, 2, 3, 4, 8])
    assert (lookup[p.argmax(0)] == classes).all()
    # a real map: on the validation block (the last quarter of the rows) it agrees with the labels
    truth = gdal.Open(landcover.path).ReadAsArray()[76:]
    assert (classes[76:] == truth)[truth > 0].mean() > 0.6


def test_blockwise_segment_equals_whole_image(trained, ndvi_stack, tmp_path):
    """Tiles of 32 px (16 overlapping) against one tile holding the whole raster: the same classes."""
    _, path = trained
    model = sg.SegmentationModel.load(path)
    x = np.concatenate([read_window(i.dataset(), Window(0, 0, 100, 101), None, np.float32) for i in ndvi_stack])
    whole = model.probabilities(x[None])[0].argmax(0)
    out = tmp_path / "tiled.tif"
    sg.segment(ndvi_stack, path, str(out), sg.SegmentOptions(tile=32, overlap=16, device="cpu", block=40))
    tiled = gdal.Open(str(out)).ReadAsArray()
    values = np.array(model.classes.values)
    assert (values[whole] == tiled).mean() > 0.97
    # the class pass is exact whatever its block size
    again = tmp_path / "again.tif"
    sg.segment(ndvi_stack, path, str(again), sg.SegmentOptions(tile=32, overlap=16, device="cpu", block=1024))
    assert (gdal.Open(str(again)).ReadAsArray() == tiled).all()


def test_the_fusion_segmentation_model_segments_one_ndvi_date(ndvi_stack, landcover, tmp_path):
    out = tmp_path / "fusion_seg.tif"
    summary = sg.segment(ndvi_stack[:1], shipped_model("fusion_default.segmentation.safetensors"), str(out),
                         sg.SegmentOptions(device="cpu"))
    assert summary["task"] == "fusion_segmentation"
    pred, truth = gdal.Open(str(out)).ReadAsArray(), gdal.Open(landcover.path).ReadAsArray()
    assert (pred == truth)[truth > 0].mean() > 0.6


def test_bad_inputs_get_clear_messages_and_no_output(trained, ndvi_stack, tmp_path):
    _, path = trained
    out = tmp_path / "c.tif"
    with pytest.raises(ModelFileError, match="expects 6 band"):
        sg.segment(ndvi_stack[:2], path, str(out), sg.SegmentOptions(device="cpu"))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(open(path, "rb").read()[:3000])
    with pytest.raises(ModelFileError, match="corrupt"):
        sg.segment(ndvi_stack, str(corrupt), str(out), sg.SegmentOptions(device="cpu"))
    with pytest.raises(ModelFileError, match="does not exist"):
        sg.segment(ndvi_stack, str(tmp_path / "none.safetensors"), str(out), sg.SegmentOptions(device="cpu"))
    fusion = shipped_model("fusion_default.safetensors")
    with pytest.raises(ModelFileError, match="segmentation model is needed"):
        sg.segment(ndvi_stack, fusion, str(out), sg.SegmentOptions(device="cpu"))
    with pytest.raises(InputError, match="is the input"):
        sg.segment(ndvi_stack, path, ndvi_stack[0].path, sg.SegmentOptions(device="cpu"))
    small = tmp_path / "small.tif"
    write_array(str(small), np.zeros((1, 10, 10), np.float32))
    with pytest.raises(GridMismatchError):
        sg.segment(ndvi_stack[:3] + [raster_info(str(small))], path, str(out), sg.SegmentOptions(device="cpu"))
    assert not out.exists() and not [p for p in tmp_path.iterdir() if "partial" in p.name or "cloudfree" in p.name]


def test_training_refuses_bad_labels(ndvi_stack, landcover, tmp_path):
    one_class = tmp_path / "one.tif"
    write_array(str(one_class), np.ones((1, 101, 100), np.uint8), like=landcover)
    with pytest.raises(InputError, match="at least 2"):
        sg.train_segmentation(sg.SegmentationTrainConfig(ndvi_stack, sg.LabelSource(raster=raster_info(
            str(one_class)))), str(tmp_path / "m.safetensors"))
    cfg = sg.SegmentationTrainConfig(ndvi_stack, sg.LabelSource(raster=landcover, ignore_value=0),
                                     class_weights="1,2", epochs=1, **TINY)
    with pytest.raises(InputError, match="one non-negative weight per class"):
        sg.train_segmentation(cfg, str(tmp_path / "m.safetensors"))
    assert not (tmp_path / "m.safetensors").exists()


def test_labels_from_polygons(ndvi_stack, tmp_path):
    """Two polygons with a class field, rasterised onto the grid; pixels outside them do not count."""
    from osgeo import ogr, osr

    info = ndvi_stack[0]
    x0, px, _, y0, _, py = info.geotransform
    path = str(tmp_path / "labels.gpkg")
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    srs = osr.SpatialReference()
    srs.ImportFromWkt(info.crs_wkt)
    layer = ds.CreateLayer("labels", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("cls", ogr.OFTInteger))
    for value, (r0, r1) in ((3, (0, 50)), (7, (50, 101))):
        ring = f"POLYGON(({x0} {y0 + r0 * py},{x0 + 60 * px} {y0 + r0 * py},{x0 + 60 * px} {y0 + r1 * py}," \
               f"{x0} {y0 + r1 * py},{x0} {y0 + r0 * py}))"
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetGeometry(ogr.CreateGeometryFromWkt(ring))
        f.SetField("cls", value)
        layer.CreateFeature(f)
    ds = None
    data = sg.load_training_data(ndvi_stack, sg.LabelSource(polygons=path, field="cls"), 0.25, gap=8)
    assert data.classes.values == (3, 7)
    assert (data.target[:, 60:] == -1).all() and set(np.unique(data.target[:, :60])) == {0, 1}
    assert class_scores(data.target, data.target, 2, data.target >= 0)["miou"] == 1.0


def test_a_cancelled_segment_leaves_nothing(trained, ndvi_stack, tmp_path):
    from cloudfree.models.errors import Cancelled

    _, path = trained
    out = tmp_path / "c.tif"
    with pytest.raises(Cancelled):
        sg.segment(ndvi_stack, path, str(out), sg.SegmentOptions(tile=32, overlap=8, device="cpu"),
                   cancelled=lambda: True)
    assert list(tmp_path.iterdir()) == []
