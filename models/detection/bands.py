"""Which input bands play which spectral role, and how stored values become the reflectance a detector expects.

A detector sees reflectance (0-1) in a fixed band order: blue, green, red, NIR and, when the
input has them, SWIR1 (~1.6 um) and SWIR2 (~2.2 um). :class:`BandRoles` names the input's band
for each role and checks them against the raster; :class:`ReflectanceScaling` maps stored values
to reflectance as ``value x gain + offset`` (presets for common products, or any gain/offset);
:func:`check_reflectance` looks at a decimated read and refuses values that are clearly not
reflectance after scaling (digital numbers left unscaled, or reflectance scaled as if DNs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..normalization import REFLECTANCE_PRESETS
from ..raster import RasterInfo, read_decimated, valid_mask

#: the roles, in the order a detector receives them
CORE_ROLES = ("blue", "green", "red", "nir")
SWIR_ROLES = ("swir1", "swir2")
ROLE_LABELS = {"blue": "blue", "green": "green", "red": "red", "nir": "NIR", "swir1": "SWIR1 (1.6 um)",
               "swir2": "SWIR2 (2.2 um)"}

#: reflectance = (stored value - offset) x gain, for products the shared presets do not list
EXTRA_PRESETS = {
    "landsat_l1_toa": (0.1 / 2e-5, 2e-5),  # Landsat 8/9 Level-1 DN -> TOA reflectance (no sun-angle correction)
}
#: every preset: the shared reflectance presets (normalization.REFLECTANCE_PRESETS) and the extra ones
PRESETS = {**REFLECTANCE_PRESETS, **EXTRA_PRESETS}
PRESET_LABELS = {
    "reflectance": "Reflectance 0-1 (no scaling)",
    "sentinel2_l1c": "Sentinel-2 L1C/L2A digital numbers x 1e-4 (before processing baseline 04.00)",
    "sentinel2_pb04": "Sentinel-2 L1C/L2A digital numbers x 1e-4 - 0.1 (processing baseline 04.00 and later)",
    "landsat_c2_l2": "Landsat Collection 2 Level-2 surface reflectance (DN x 2.75e-5 - 0.2)",
    "landsat_l1_toa": "Landsat 8/9 Level-1 top of atmosphere (DN x 2e-5 - 0.1)",
}

#: after scaling, the median of valid pixels must lie in this range, and the 99th percentile above the floor
MEDIAN_RANGE = (-0.05, 1.5)
P99_FLOOR = 0.01


@dataclass(frozen=True)
class BandRoles:
    """1-based input band numbers for each role; SWIR1 and SWIR2 go together or not at all."""

    blue: int | None
    green: int | None
    red: int | None
    nir: int | None
    swir1: int | None = None
    swir2: int | None = None

    @property
    def roles(self) -> tuple:
        """The roles in use, in the detector's order (4 or 6)."""
        return CORE_ROLES + (SWIR_ROLES if self.swir1 is not None else ())

    @property
    def bands(self) -> list:
        """Input band numbers in the detector's order."""
        return [getattr(self, role) for role in self.roles]

    def check(self, info: RasterInfo) -> None:
        """Every core role set, SWIR both or neither, each band present in ``info`` and used once."""
        missing = [ROLE_LABELS[r] for r in CORE_ROLES if getattr(self, r) is None]
        if missing:
            raise InputError(f"Layer '{info.name}': cloud detection needs the blue, green, red and NIR bands; "
                             f"the {', '.join(missing)} band(s) are not set.")
        if (self.swir1 is None) != (self.swir2 is None):
            raise InputError(f"Layer '{info.name}': give both SWIR1 and SWIR2 bands (6-band detector) or neither "
                             "(4-band detector); only one was set.")
        if info.band_count < len(self.roles):
            raise InputError(f"Layer '{info.name}' has {info.band_count} band(s); cloud detection needs "
                             f"{len(self.roles)} ({', '.join(ROLE_LABELS[r] for r in self.roles)}).")
        bad = [f"{ROLE_LABELS[r]} = band {getattr(self, r)}" for r in self.roles
               if not 1 <= int(getattr(self, r)) <= info.band_count]
        if bad:
            raise InputError(f"Layer '{info.name}' has {info.band_count} band(s); {', '.join(bad)} does not exist "
                             "(bands count from 1).")
        if len(set(self.bands)) != len(self.bands):
            raise InputError(f"Layer '{info.name}': each role needs its own band; band(s) "
                             f"{sorted({b for b in self.bands if self.bands.count(b) > 1})} are given twice.")


@dataclass(frozen=True)
class ReflectanceScaling:
    """``reflectance = stored value x gain + offset``, the same for every band."""

    gain: float = 1.0
    offset: float = 0.0
    name: str = "reflectance"

    @classmethod
    def preset(cls, name: str) -> "ReflectanceScaling":
        if name not in PRESETS:
            raise InputError(f"Unknown scaling preset '{name}': use {', '.join(PRESETS)} or a gain and offset.")
        dn_offset, gain = PRESETS[name]
        return cls(float(gain), float(-dn_offset * gain), name)

    @classmethod
    def custom(cls, gain: float, offset: float) -> "ReflectanceScaling":
        if not np.isfinite(gain) or gain <= 0 or not np.isfinite(offset):
            raise InputError(f"Scaling gain {gain} and offset {offset}: the gain must be a positive number and "
                             "both must be finite.")
        return cls(float(gain), float(offset), f"gain {gain:g}, offset {offset:g}")

    def apply(self, values: np.ndarray) -> np.ndarray:
        """Stored values -> reflectance (float32)."""
        if self.gain == 1.0 and self.offset == 0.0:
            return values.astype(np.float32, copy=False)
        return (values * np.float32(self.gain) + np.float32(self.offset)).astype(np.float32, copy=False)

    def describe(self) -> str:
        return PRESET_LABELS.get(self.name, self.name)


def check_reflectance(info: RasterInfo, roles: BandRoles, scaling: ReflectanceScaling, sample: int = 512) -> None:
    """Refuse a scaling under which the input is clearly not reflectance (checked on a decimated read)."""
    bands = roles.bands
    values = read_decimated(info, bands, sample, dtype=np.float64)
    valid = valid_mask(values, [info.nodata[b - 1] for b in bands])
    if not valid.any():
        raise InputError(f"Layer '{info.name}' holds only nodata pixels in bands {bands}.")
    reflectance = values[:, valid] * scaling.gain + scaling.offset
    median, p99 = float(np.median(reflectance)), float(np.percentile(reflectance, 99))
    raw = float(np.median(values[:, valid]))
    if median > MEDIAN_RANGE[1]:
        raise InputError(f"Layer '{info.name}': with the scaling '{scaling.describe()}' its median reflectance is "
                         f"{median:.3g} (stored median {raw:.6g}), far above 1: these look like digital numbers. "
                         "Choose the scaling preset of the product (or a gain and offset) that turns them into "
                         "reflectance 0-1.")
    if median < MEDIAN_RANGE[0] or p99 < P99_FLOOR:
        raise InputError(f"Layer '{info.name}': with the scaling '{scaling.describe()}' its reflectance is "
                         f"{median:.3g} (median) and {p99:.3g} (99th percentile), too dark for a scene: the values "
                         f"(stored median {raw:.6g}) are probably reflectance already or need another scaling.")
