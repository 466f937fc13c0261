"""Fixtures of the detection tests: the hand-labelled Landsat 8 patch and georeferenced copies of it with nodata.

The patch (38-Cloud, 384 x 384, blue/green/red/NIR Level-1 digital numbers) runs through the
4-band ukis-csmask network in well under a second; copies go to pytest's tmp folder, never beside
the shared data.
"""

import numpy as np
import pytest
from osgeo import gdal, osr

pytest.importorskip("onnxruntime")
pytest.importorskip("ukis_csmask")

from cloudfree.models import detection as dt  # noqa: E402

GEOTRANSFORM = (500000.0, 30.0, 0.0, 4000000.0, 0.0, -30.0)
NODATA_BOX = (slice(40, 120), slice(200, 330))  # rows, cols set to nodata in the copy


@pytest.fixture(scope="session")
def l8(shared_data):
    return shared_data / "l8_cloud_labels"


@pytest.fixture(scope="session")
def l8_dn(l8):
    """(4, 384, 384) uint16 digital numbers of the patch."""
    return gdal.Open(str(l8 / "bgrn.tif")).ReadAsArray()


@pytest.fixture(scope="session")
def scaling():
    return dt.ReflectanceScaling.preset("landsat_l1_toa")


@pytest.fixture(scope="session")
def roles():
    return dt.BandRoles(blue=1, green=2, red=3, nir=4)


def write_raster(path, array, nodata=None, geotransform=GEOTRANSFORM):
    """A GeoTIFF of ``array`` (bands, rows, cols) in UTM 32616 with ``nodata`` on every band."""
    ds = gdal.GetDriverByName("GTiff").Create(str(path), array.shape[2], array.shape[1], array.shape[0],
                                              gdal.GDT_UInt16 if array.dtype == np.uint16 else gdal.GDT_Float32)
    ds.SetGeoTransform(geotransform)
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32616)
    ds.SetProjection(srs.ExportToWkt())
    for b in range(array.shape[0]):
        band = ds.GetRasterBand(b + 1)
        if nodata is not None:
            band.SetNoDataValue(nodata)
        band.WriteArray(array[b])
    ds = None
    return path


@pytest.fixture()
def l8_with_nodata(tmp_path, l8_dn):
    """A georeferenced copy of the patch with nodata 0 and a box of nodata pixels."""
    arr = l8_dn.copy()
    arr[:, NODATA_BOX[0], NODATA_BOX[1]] = 0
    return write_raster(tmp_path / "bgrn_nodata.tif", arr, nodata=0)
