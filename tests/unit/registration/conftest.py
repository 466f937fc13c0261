"""Fixtures of the registration tests: windows of the real reference of ``s2_registration_pair``."""

import numpy as np
import pytest
from osgeo import gdal


@pytest.fixture(scope="package")
def real_reference(shared_data):
    """The whole real reference band, its geotransform and CRS."""
    ds = gdal.Open(str(shared_data / "s2_registration_pair" / "reference_20160608.tif"))
    arr = ds.ReadAsArray().astype(np.float32)
    return arr, ds.GetGeoTransform(), ds.GetProjection()


@pytest.fixture(scope="package")
def image(shared_data):
    """A 512 x 512 window of the real reference (descriptor training and patches)."""
    ds = gdal.Open(str(shared_data / "s2_registration_pair" / "reference_20160608.tif"))
    return ds.ReadAsArray(900, 1200, 512, 512).astype(np.float32)
