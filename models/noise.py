"""Hashed gradient ("Perlin") noise that any window can compute on its own.

Lattice gradients come from an integer hash of (lattice x, lattice y, octave, seed), and every
value is computed elementwise from its own absolute pixel coordinate, so a window gives
bit-identical values to the same pixels of a larger window: the property that lets synthetic
clouds be drawn block by block over a raster of any size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

_M32 = 0xFFFFFFFF


def _mix32(h: np.ndarray) -> np.ndarray:
    """Murmur3 finaliser on uint32 arrays (array arithmetic wraps modulo 2**32 silently)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _hash_lattice(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    hx = np.asarray(ix, dtype=np.int64).astype(np.uint32)
    hy = np.asarray(iy, dtype=np.int64).astype(np.uint32)
    h = _mix32(hx * np.uint32(0x9E3779B1) + np.uint32(salt & _M32))
    return _mix32(h ^ (hy * np.uint32(0x85EBCA77)))


def _gradients(ix: np.ndarray, iy: np.ndarray, salt: int) -> tuple:
    """Unit gradient vectors at lattice points; only + - * / sqrt, so results are bit-reproducible."""
    h = _hash_lattice(ix, iy, salt)
    gx = (h & np.uint32(0xFFFF)).astype(np.float64) - 32767.5
    gy = (h >> np.uint32(16)).astype(np.float64) - 32767.5
    norm = np.sqrt(gx * gx + gy * gy)
    return gx / norm, gy / norm


def seed_salt(seed: int, *parts: int) -> int:
    """A 32-bit salt from the (possibly negative or huge) seed and a few small integers."""
    s = int(seed)
    h = 0x2545F491
    for word in (s & _M32, (s >> 32) & _M32, 1 if s < 0 else 0, *[p & _M32 for p in parts]):
        h = int(_mix32(np.array([(h ^ word) & _M32], dtype=np.uint32))[0])
        h = (h + 0x6D2B79F5) & _M32
    return h


@dataclass(frozen=True)
class Octave:
    inv_spacing: float
    amplitude: float
    cos: float
    sin: float
    offset_x: float
    offset_y: float
    salt: int


def perlin(octave: Octave, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One octave of gradient noise at absolute pixel coordinates ``x`` (1, w) and ``y`` (h, 1).

    Every value is computed elementwise from its own absolute coordinate, so a window
    gives bit-identical values to the same pixels of a larger window.
    """
    # rotating each octave hides the axis-aligned look of lattice noise
    u = (x * octave.cos - y * octave.sin) * octave.inv_spacing + octave.offset_x
    v = (x * octave.sin + y * octave.cos) * octave.inv_spacing + octave.offset_y
    fu, fv = np.floor(u), np.floor(v)
    iu, iv = fu.astype(np.int64), fv.astype(np.int64)
    fx, fy = u - fu, v - fv
    u0, v0 = int(iu.min()), int(iv.min())
    nx, ny = int(iu.max()) - u0 + 2, int(iv.max()) - v0 + 2
    if nx * ny <= 4 * iu.size + 64:
        # the lattice of the window is small: hash it once, then gather the corners
        gu, gv = np.meshgrid(np.arange(u0, u0 + nx), np.arange(v0, v0 + ny))
        gx, gy = _gradients(gu.ravel(), gv.ravel(), octave.salt)
        # pairs side by side: one gather per corner instead of two
        g = np.stack([gx, gy], axis=1)
        flat = (iv - v0) * nx + (iu - u0)
        corners = []
        for k in (0, 1, nx, nx + 1):
            c = np.take(g, flat + k, axis=0)
            corners.append((c[..., 0], c[..., 1]))
    else:
        # sparse points (the calibration sample): hash each corner directly, same values
        corners = [_gradients(iu + du, iv + dv, octave.salt) for du, dv in ((0, 0), (1, 0), (0, 1), (1, 1))]
    (g00x, g00y), (g10x, g10y), (g01x, g01y), (g11x, g11y) = corners
    n00 = g00x * fx + g00y * fy
    n10 = g10x * (fx - 1.0) + g10y * fy
    n01 = g01x * fx + g01y * (fy - 1.0)
    n11 = g11x * (fx - 1.0) + g11y * (fy - 1.0)
    sx = fx * fx * fx * (fx * (fx * 6.0 - 15.0) + 10.0)
    sy = fy * fy * fy * (fy * (fy * 6.0 - 15.0) + 10.0)
    a = n00 + sx * (n10 - n00)
    b = n01 + sx * (n11 - n01)
    return a + sy * (b - a)


def fbm(octaves: Sequence[Octave], x: np.ndarray, y: np.ndarray) -> np.ndarray:
    total = None
    for o in octaves:
        n = perlin(o, x, y) * o.amplitude
        total = n if total is None else total + n
    return total


def make_octaves(rng: np.random.Generator, seed: int, tag: int, spacing: float, count: int,
                  gain: float) -> tuple:
    octaves = []
    for k in range(count):
        angle = float(rng.uniform(0.0, 2.0 * math.pi))
        octaves.append(Octave(
            inv_spacing=1.0 / (spacing * 0.5 ** k), amplitude=gain ** k,
            cos=math.cos(angle), sin=math.sin(angle),
            # offsets keep lattice points (where Perlin noise is 0) of all octaves from lining up
            offset_x=float(rng.uniform(0.0, 4096.0)), offset_y=float(rng.uniform(0.0, 4096.0)),
            salt=seed_salt(seed, tag, k)))
    return tuple(octaves)
