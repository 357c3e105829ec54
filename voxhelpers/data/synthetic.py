"""Deterministic procedural voxel shapes: stand-ins for offline demos and tests.

These are NOT real data. Every figure or table that shows them says "procedural stand-in".
Shapes are built from boxes and ellipsoids with random proportions, in the same orientation as the
preprocessed SynthEVox3D grids are compared in (one object centred in a 32³ grid).
"""

from __future__ import annotations

import numpy as np

STAND_IN_LABEL = "procedural stand-in (not real data)"
PROCEDURAL_KINDS = ("airplane", "car", "chair")


def _grid(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    c = (np.arange(size) + 0.5) / size * 2 - 1  # voxel centres in [-1, 1]
    return np.meshgrid(c, c, c, indexing="ij")


def _box(x, y, z, lo, hi) -> np.ndarray:
    return (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]) & (z >= lo[2]) & (z <= hi[2])


def _ellipsoid(x, y, z, centre, radii) -> np.ndarray:
    dx, dy, dz = (x - centre[0]) / radii[0], (y - centre[1]) / radii[1], (z - centre[2]) / radii[2]
    return dx**2 + dy**2 + dz**2 <= 1


def _airplane(rng, x, y, z) -> np.ndarray:
    length, radius = rng.uniform(0.75, 0.95), rng.uniform(0.08, 0.14)
    shape = _ellipsoid(x, y, z, (0, 0, 0), (length, radius, radius))  # fuselage along axis 0
    span, chord, pos = rng.uniform(0.6, 0.95), rng.uniform(0.12, 0.25), rng.uniform(-0.2, 0.1)
    shape |= _box(x, y, z, (pos - chord, -0.05, -span), (pos + chord, 0.03, span))  # wings along axis 2
    tail = length - 0.15
    shape |= _box(x, y, z, (tail - 0.1, 0, -0.03), (tail + 0.05, rng.uniform(0.25, 0.4), 0.03))  # fin
    shape |= _box(x, y, z, (tail - 0.08, -0.02, -0.3), (tail + 0.05, 0.02, 0.3))  # tailplane
    return shape


def _car(rng, x, y, z) -> np.ndarray:
    length, width, height = rng.uniform(0.75, 0.95), rng.uniform(0.35, 0.5), rng.uniform(0.15, 0.25)
    base = -0.25
    shape = _box(x, y, z, (-length, base, -width), (length, base + height, width))  # body
    cab = rng.uniform(0.35, 0.6)
    shape |= _box(x, y, z, (-cab + 0.1, base + height, -width + 0.05), (cab * 0.6, base + height + 0.18, width - 0.05))
    for wx in (-length * 0.65, length * 0.65):
        for wz in (-width, width):
            shape |= _ellipsoid(x, y, z, (wx, base, wz), (0.14, 0.14, 0.06))  # wheels
    return shape


def _chair(rng, x, y, z) -> np.ndarray:
    w, seat_h = rng.uniform(0.4, 0.6), rng.uniform(-0.15, 0.05)
    shape = _box(x, y, z, (-w, seat_h, -w), (w, seat_h + 0.08, w))  # seat
    shape |= _box(x, y, z, (-w, seat_h, w - 0.08), (w, seat_h + rng.uniform(0.5, 0.8), w))  # back
    for lx in (-w, w - 0.08):
        for lz in (-w, w - 0.08):
            shape |= _box(x, y, z, (lx, -0.9, lz), (lx + 0.08, seat_h, lz + 0.08))  # legs
    return shape


def procedural_shapes(kind: str = "airplane", n: int = 80, size: int = 32, seed: int = 0) -> np.ndarray:
    """Make ``n`` random shapes of a kind, the same every time for the same seed.

    Args:
        kind: one of ``"airplane"``, ``"car"``, ``"chair"``.
        n: number of shapes (≥ 1).
        size: grid side.
        seed: random seed.

    Returns:
        bool array (n, size, size, size), each shape non-empty.

    Raises:
        ValueError: unknown kind or n < 1.
    """
    builders = {"airplane": _airplane, "car": _car, "chair": _chair}
    if kind not in builders:
        raise ValueError(f"unknown procedural kind {kind!r}; expected one of {PROCEDURAL_KINDS}")
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    x, y, z = _grid(size)
    return np.stack([builders[kind](rng, x, y, z) for _ in range(n)])
