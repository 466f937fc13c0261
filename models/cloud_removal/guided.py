"""The guided generator's guide channels: one layout from prepared guides to network input, used
alike by training crops and inference tiles.

After the target's bands and its mask channel, a guided model (:class:`..networks.GuidedGenerator`)
reads the guide base (the colour-matched nearest clear other date, :mod:`.guides`) in the target's
own network space, its validity (1 where some guide date is valid, 0 elsewhere, where the base is
0), then the radar channels: Sentinel-1 backscatter in dB mapped by one fixed map,
``(dB - RADAR_DB_CENTRE) / RADAR_DB_SCALE`` (VV and VH of land lie within about -25..-5 dB, which
becomes -1..1), 0 where the radar is missing. A fixed map keeps radar comparable between places
and dates, as radar is calibrated, unlike the optical bands' per-image scaling.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

RADAR_DB_CENTRE = -15.0
RADAR_DB_SCALE = 10.0
BASE_CHANNEL = "guide:base"
VALID_CHANNEL = "guide:base_valid"
RADAR_CHANNEL = "guide:radar"
RADAR_VALID_CHANNEL = "guide:radar_valid"  # a residual generator's radar validity: radar is optional for it


def channel_names(radar: int) -> list:
    """The model file's ``extra_channels`` of a guided model after ``cloud_mask``."""
    return [BASE_CHANNEL, VALID_CHANNEL] + [f"{RADAR_CHANNEL}:{k + 1}" for k in range(radar)]


def radar_bands(extra_channels: list) -> int:
    """The radar channels a model's ``extra_channels`` name."""
    return sum(1 for c in extra_channels if str(c).startswith(RADAR_CHANNEL + ":"))


def is_guided(extra_channels: list) -> bool:
    """The model takes guides (other dates and/or radar) that :mod:`.guides` prepares."""
    return BASE_CHANNEL in extra_channels or radar_bands(extra_channels) > 0


def radar_optional(extra_channels: list) -> bool:
    """The model reads the radar's validity (:class:`..networks.ResidualGenerator`), so it runs without radar."""
    return RADAR_VALID_CHANNEL in extra_channels


def radar_channels(radar: np.ndarray | None, bands: int, shape: tuple) -> list:
    """``[radar (R), validity (1)]`` channels of a residual generator for one crop ``(R, H, W)`` or batch
    ``(B, R, H, W)`` of radar in dB (NaN where missing; None = no radar: zeros, validity 0). ``shape`` is
    the shape of one band ``(H, W)`` or ``(B, H, W)``; ``bands`` = R."""
    axis = len(shape) - 2
    if radar is None:
        return [np.zeros(_with_channels(shape, bands + 1, axis), dtype=np.float32)]
    r = (np.asarray(radar, dtype=np.float32) - RADAR_DB_CENTRE) / RADAR_DB_SCALE
    ok = np.isfinite(r).all(axis=axis, keepdims=True)
    return [np.where(ok, r, 0.0).astype(np.float32), ok.astype(np.float32)]


def guide_channels(base: np.ndarray | None, radar: np.ndarray | None, band_count: int,
                   to_network: Callable[[np.ndarray], np.ndarray], shape: tuple) -> list:
    """``[base (C), validity (1), radar (R)]`` network channels of one crop ``(C, H, W)`` or batch
    ``(B, C, H, W)``: ``base`` in the target's stored units with NaN where no date is valid (None =
    no optical guide), mapped by the target's ``to_network``; ``radar`` in dB with NaN where missing
    (None = no radar). ``shape`` is the shape of one band ``(H, W)`` or ``(B, H, W)``."""
    axis = len(shape) - 2  # the channel axis: 0 for a crop, 1 for a batch
    if base is None:
        base_n = np.zeros(_with_channels(shape, band_count, axis), dtype=np.float32)
        valid = np.zeros(_with_channels(shape, 1, axis), dtype=np.float32)
    else:
        ok = np.isfinite(base).all(axis=axis, keepdims=True)
        base_n = np.asarray(to_network(np.nan_to_num(np.asarray(base, dtype=np.float64))), dtype=np.float32)
        base_n = np.where(ok, base_n, 0.0).astype(np.float32)
        valid = ok.astype(np.float32)
    parts = [base_n, valid]
    if radar is not None:
        r = (np.asarray(radar, dtype=np.float64) - RADAR_DB_CENTRE) / RADAR_DB_SCALE
        parts.append(np.where(np.isfinite(r), r, 0.0).astype(np.float32))
    return parts


def _with_channels(shape: tuple, channels: int, axis: int) -> tuple:
    return tuple(shape[:axis]) + (channels,) + tuple(shape[axis:])
