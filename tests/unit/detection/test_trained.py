"""A model trained with trainsegmentation in ukis-csmask's place: class values mapped onto the mask codes."""

import numpy as np
import pytest
from osgeo import gdal

from cloudfree.models import detection as dt
from cloudfree.models.errors import ModelFileError
from cloudfree.models.raster import raster_info


def test_classes_map_by_name_or_by_value():
    by_name = dt.class_codes([{"value": 0, "name": "Clear"}, {"value": 5, "name": "Thick cloud"},
                           {"value": 6, "name": "thin cloud"}, {"value": 9, "name": "Cloud shadow"}], "m")
    assert by_name[[0, 5, 6, 9, 255]].tolist() == [dt.CLEAR, dt.CLOUD, dt.CLOUD, dt.SHADOW, dt.NODATA]
    by_value = dt.class_codes([{"value": 0, "name": "class 0"}, {"value": 1, "name": "class 1"},
                            {"value": 2, "name": "class 2"}, {"value": 3, "name": "water"}], "m")
    assert by_value[[0, 1, 2, 3]].tolist() == [dt.CLEAR, dt.CLOUD, dt.SHADOW, dt.CLEAR]
    with pytest.raises(ModelFileError, match="no cloud class"):
        dt.class_codes([{"value": 0, "name": "forest"}, {"value": 3, "name": "water"}], "landcover.safetensors")


def test_a_model_trained_on_cloud_labels_replaces_ukis_csmask(l8, tmp_path):
    torch = pytest.importorskip("torch")
    from cloudfree.models import segmentation as sg

    torch.set_num_threads(1)
    image, labels = raster_info(str(l8 / "bgrn.tif")), raster_info(str(l8 / "cloud_mask.tif"))
    model = tmp_path / "clouds.safetensors"
    sg.train_segmentation(sg.SegmentationTrainConfig([image], sg.LabelSource(raster=labels), epochs=2, tile=48,
                                                     steps_per_epoch=4, batch_size=4, depth=2, width=8,
                                                     device="cpu", seed=0), str(model))
    out = tmp_path / "mask.tif"
    summary = dt.detect_clouds(image, str(out), dt.BandRoles(None, None, None, None), dt.ReflectanceScaling(),
                               dt.DetectionOptions(model=str(model), dilation=2, overlap=16))
    ds = gdal.Open(str(out))
    mask = ds.GetRasterBand(1).ReadAsArray()
    assert set(np.unique(mask)) <= {dt.CLEAR, dt.CLOUD}  # the labels know no shadow
    assert ds.GetRasterBand(1).GetColorTable().GetColorEntry(dt.CLOUD)[:3] == dt.COLOURS[dt.CLOUD][:3]
    assert summary.cloud_fraction == pytest.approx((mask == dt.CLOUD).mean())
    assert summary.detector == "model clouds.safetensors"
