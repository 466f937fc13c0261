"""Does an image look like what a model was trained on? The training inputs' value range, and the
share of an image's pixels outside it.

A generator can only produce what its training taught it: a pix2pix model trained on green and
brown land turns a snow-covered mountain into dark ground (measured: ``benchmarks/cloud_removal.py
paired``, scene ``ben5``). Nothing inside the network says so, so the model file records, per band,
the 0.5th and 99.5th percentiles of the values it saw as input (the cloudy images of the training
pairs, or the clear images synthetic clouds were drawn on), and ``remove_clouds`` reports the
share of the image's valid pixels with a band outside that range. A few per cent is normal (the
training inputs themselves have up to 1 % per band outside); a large share is a warning the analyst
sees, not an error: the output may be right, but it was never checked on such values.
"""

from __future__ import annotations

import numpy as np

from ..normalization import percentile_limits
from ..raster import RasterInfo, read_decimated, valid_mask

LOW, HIGH = 0.5, 99.5   # percentiles of the training inputs that bound the range
WARN_FRACTION = 0.10    # share of pixels outside the range from which remove_clouds warns
SAMPLE = 512            # images are checked on a decimated read of at most SAMPLE x SAMPLE pixels


def input_range(sources: list, max_size: int = SAMPLE) -> dict:
    """The per-band range of the training inputs (:class:`~.sources.OpenSource` list, training rows
    only, :meth:`~.sources.OpenSource.input_sample`), as stored in a model file's
    ``training["input_range"]``; empty when no source has training rows."""
    training = [o for o in sources if o.t1 > o.t0]
    if not training:
        return {}
    samples = [o.input_sample(max_size) for o in training]
    per_band = [np.concatenate([sample[i] for sample in samples]) for i in range(len(samples[0]))]
    limits = [percentile_limits(v, LOW, HIGH) if v.size else (np.nan, np.nan) for v in per_band]
    return {"low": [float(lo) for lo, _ in limits], "high": [float(hi) for _, hi in limits],
            "percentiles": [LOW, HIGH]}


def outside_fraction(info: RasterInfo, bands: list, stored: dict, max_size: int = SAMPLE,
                     sample=None) -> float | None:
    """Share of ``info``'s valid pixels with a band outside the ``stored`` range (None when the model
    records none, or the band counts differ). ``sample``: an :class:`~.sample.InputSample` of these
    bands already read (its pixels are counted instead of a read of ``max_size`` pixels a side)."""
    if not stored or len(stored.get("low", [])) != len(bands):
        return None
    data = read_decimated(info, bands, max_size, dtype=np.float32) if sample is None else sample.values
    valid = valid_mask(data, [info.nodata[b - 1] for b in bands])
    if not valid.any():
        return None
    low = np.asarray(stored["low"], dtype=np.float32)[:, None]
    high = np.asarray(stored["high"], dtype=np.float32)[:, None]
    pixels = data[:, valid]
    return float(((pixels < low) | (pixels > high)).any(axis=0).mean())


def warning(fraction: float | None, layer: str) -> str | None:
    """The sentence an analyst reads when too much of the image lies outside the training range."""
    if fraction is None or fraction < WARN_FRACTION:
        return None
    return (f"{100 * fraction:.0f} % of the pixels of '{layer}' have values outside the range of the images the "
            "model was trained on (brighter or darker surfaces, other units or another sensor): the output there "
            "was never checked and may be wrong. Train on pairs that include such surfaces.")
