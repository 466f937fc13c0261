"""Synthetic clouds for training crops: random cloud parameters per crop, the simulated clouds,
shadows and gaps (:mod:`..clouds`), a smooth per-band tint of their colour and the optional per-band
contrast change of the ground. Every random draw comes from the caller's generator, in a fixed order."""

from __future__ import annotations

import numpy as np

DEFAULT_CLOUD_TINT = (0.0, 0.15)


def random_cloud_params(rng: np.random.Generator, synthetic: dict, seed: int, tile: int):
    """Random :class:`clouds.CloudParams` for one crop (ranges overridable in ``synthetic``)."""
    from ..clouds import CloudParams

    cov = synthetic.get("coverage", (0.1, 0.7))
    thick = synthetic.get("thickness", (0.3, 1.0))
    shadows_p = synthetic.get("shadow_probability", 0.6)
    missing_p = synthetic.get("missing_probability", 0.1)
    missing = synthetic.get("missing_data", (0.0, 0.1))
    scale = synthetic.get("scale_fraction", (0.15, 0.6))  # typical cloud size, fraction of the tile
    return CloudParams(
        seed=int(seed),
        coverage=float(rng.uniform(*cov)),
        thickness=float(rng.uniform(*thick)),
        shadows=bool(rng.random() < shadows_p),
        missing_data=float(rng.uniform(*missing)) if rng.random() < missing_p else 0.0,
        scale=max(4.0, float(rng.uniform(*scale)) * tile),
    )


def tint_clouds(clear: np.ndarray, cloudy: np.ndarray, rng: np.random.Generator, tint_range) -> np.ndarray:
    """Vary the clouds' and shadows' colour smoothly over the tile, band by band.

    The simulator blends towards one colour; real thick clouds are not one colour, and a model
    that only saw one-colour clouds trusts linear unmixing where it fails (README). The cloud's
    contribution ``cloudy - clear`` is scaled by ``1 + t * n_b(x, y)`` with ``n_b`` smooth
    unit-variance noise per band and ``t`` drawn from ``tint_range`` (``(0, 0)`` = off).
    """
    t = float(rng.uniform(*tint_range))
    if t <= 0:
        return cloudy
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.standard_normal(cloudy.shape), sigma=(0, 3, 3))
    noise /= max(float(noise.std()), 1e-9)
    clear = np.asarray(clear, dtype=np.float64)
    return (clear + (np.asarray(cloudy, dtype=np.float64) - clear) * (1.0 + t * noise)).astype(np.float32)


def vary_band_contrast(clear: np.ndarray, centres: np.ndarray, contrast, rng: np.random.Generator) -> np.ndarray:
    """Per-band contrast about the source's mid level (``centres``), a gain drawn from ``contrast``:
    the ground's spread relative to the clouds (made from the altered image) then varies as it does
    between scenes."""
    mid = centres.reshape(-1, 1, 1)
    gain = rng.uniform(float(contrast[0]), float(contrast[1]), size=(clear.shape[0], 1, 1))
    return mid + (np.asarray(clear, dtype=np.float64) - mid) * gain


def add_synthetic_clouds(clear: np.ndarray, valid: np.ndarray, rng: np.random.Generator, synthetic: dict,
                         cloud_seed: int, tile: int) -> tuple:
    """``(cloudy, mask)``: ``clear`` under random simulated clouds (tinted), and where they are."""
    from ..clouds import simulate_clouds_array

    params = random_cloud_params(rng, synthetic, cloud_seed, tile)
    cloudy, m = simulate_clouds_array(np.ascontiguousarray(clear, dtype=np.float32), params, valid=valid)
    mask = np.asarray(m) > 0
    cloudy = tint_clouds(clear, cloudy, rng, synthetic.get("cloud_tint", DEFAULT_CLOUD_TINT))
    return cloudy, mask
