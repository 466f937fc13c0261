"""Band roles and reflectance scaling presets."""

import numpy as np
import pytest

from cloudfree.models import detection as dt
from cloudfree.models.errors import InputError
from cloudfree.models.raster import raster_info


@pytest.mark.parametrize("name, stored, reflectance", [
    ("reflectance", 0.25, 0.25),
    ("sentinel2_l1c", 2500, 0.25),
    ("sentinel2_pb04", 3500, 0.25),         # baseline 04.00: DN offset 1000
    ("landsat_c2_l2", 16363.636, 0.25),     # DN x 2.75e-5 - 0.2
    ("landsat_l1_toa", 17500, 0.25),        # DN x 2e-5 - 0.1
])
def test_presets_give_reflectance(name, stored, reflectance):
    value = dt.ReflectanceScaling.preset(name).apply(np.array([stored], np.float32))[0]
    assert value == pytest.approx(reflectance, abs=1e-4)


def test_custom_and_unknown_scaling():
    assert dt.ReflectanceScaling.custom(1e-4, -0.1).apply(np.array([3500.0]))[0] == pytest.approx(0.25)
    with pytest.raises(InputError, match="positive"):
        dt.ReflectanceScaling.custom(0, 0)
    with pytest.raises(InputError, match="Unknown scaling preset"):
        dt.ReflectanceScaling.preset("sentinel3")


def test_roles_in_detector_order_and_checked(l8):
    info = raster_info(str(l8 / "bgrn.tif"))
    roles = dt.BandRoles(blue=1, green=2, red=3, nir=4)
    assert roles.roles == ("blue", "green", "red", "nir") and roles.bands == [1, 2, 3, 4]
    assert dt.BandRoles(1, 2, 3, 4, 5, 6).roles[-2:] == ("swir1", "swir2")
    with pytest.raises(InputError, match="given twice"):
        dt.BandRoles(1, 2, 2, 4).check(info)
    with pytest.raises(InputError, match="band 7 does not exist"):
        dt.BandRoles(1, 2, 3, 7).check(info)
