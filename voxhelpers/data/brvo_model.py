"""Parameters, geometry and stage schedule of the SIMULATED BRVO model: the part of :mod:`voxhelpers.data.brvo`
that fixes *where* and *how much* non-perfusion there is, before any image is touched.

Holds :class:`BRVOModel` (the model's parameters), :class:`BRVOSector` with :func:`draw_sector` (the occluded wedge
and its non-perfusion front, drawn from a seed), :func:`stage_names` (SOUL-style ``s1t1`` … names) and the severity
curve (:data:`DEFAULT_SEVERITY`, :func:`default_severity`). The model is described in full, and the sequences are
simulated and stacked, in :mod:`voxhelpers.data.brvo`, which re-exports every public name of this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["DEFAULT_SEVERITY", "BRVOModel", "BRVOSector", "default_severity", "draw_sector", "stage_names"]

#: non-perfused fraction of the sector's area at SOUL's six stages s1t1, s1t2, s2t1, s2t2, s3t1, s3t2
DEFAULT_SEVERITY = (0.15, 0.35, 0.45, 0.30, 0.20, 0.10)
_HARMONICS = 3  # harmonics of the front's angular wobble


# --------------------------------------------------------------------------------------------------
# configuration and geometry
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BRVOModel:
    """Parameters of the simulated BRVO model (described in :mod:`voxhelpers.data.brvo`, defaults as documented)."""

    half_angle_range: tuple[float, float] = (30.0, 50.0)  # degrees; the wedge's half-opening is drawn uniformly in it
    apex_jitter: float = 0.05  # apex offset from the image centre, per axis, as a fraction of the side, in [0, 0.4]
    irregularity: float = 0.15  # relative radial wobble of the non-perfusion front, in [0, 0.5]
    edge_px: float = 8.0  # width (px) of the soft edge inside the region; 0 = a hard edge
    capillary_loss: float = 0.9  # share of the capillary signal above the dark level removed at full non-perfusion
    vessel_dimming: float = 0.35  # share of a kept large vessel's signal removed at full non-perfusion
    max_thinning: int = 2  # erosions (disk(1)) of the large-vessel mask at full non-perfusion
    min_fragment: int = 10  # vessel fragments smaller than this (px) are dropped inside the affected region
    dark_percentile: float = 1.0  # the dark level is this percentile of the source image
    gain_sigma: float = 0.7  # σ (px) of the Gaussian that softens the gain map; 0 = none

    def __post_init__(self):
        lo, hi = (float(v) for v in self.half_angle_range)
        if not 0 < lo <= hi <= 90:
            raise ValueError(f"half_angle_range must satisfy 0 < low <= high <= 90 (degrees), got "
                             f"{self.half_angle_range}")
        checks = {"apex_jitter": (self.apex_jitter, 0, 0.4), "irregularity": (self.irregularity, 0, 0.5),
                  "capillary_loss": (self.capillary_loss, 0, 1), "vessel_dimming": (self.vessel_dimming, 0, 1),
                  "dark_percentile": (self.dark_percentile, 0, 100), "edge_px": (self.edge_px, 0, math.inf),
                  "gain_sigma": (self.gain_sigma, 0, math.inf)}
        for name, (v, a, b) in checks.items():
            if not (isinstance(v, (int, float)) and not isinstance(v, bool) and a <= v <= b):
                raise ValueError(f"{name} must be a number in [{a}, {b}], got {v!r}")
        for name in ("max_thinning", "min_fragment"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"{name} must be an integer >= 0, got {v!r}")


@dataclass(frozen=True)
class BRVOSector:
    """The occluded sector: a wedge from ``apex`` towards ``orientation_deg`` with half-opening ``half_angle_deg``.

    Attributes:
        apex: (row, col) of the apex in pixels (inside the frame).
        orientation_deg: the axis, counter-clockwise from the +column axis (90° points to row 0).
        half_angle_deg: half the opening, in (0, 90].
        front: ``_HARMONICS`` (amplitude, phase) pairs of the front's angular wobble, amplitudes summing to 1.
    """

    apex: tuple[float, float]
    orientation_deg: float
    half_angle_deg: float
    front: tuple[tuple[float, float], ...] = field(default_factory=tuple)

    def __post_init__(self):
        if not 0 < float(self.half_angle_deg) <= 90:
            raise ValueError(f"half_angle_deg must be in (0, 90], got {self.half_angle_deg!r}")

    def polar(self, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) distance from the apex (px) and signed angle from the axis (radians, in (-π, π])."""
        h, w = shape
        rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
        dy, dx = -(rows - self.apex[0]), cols - self.apex[1]  # y up
        phi = np.arctan2(dy, dx) - math.radians(self.orientation_deg)
        return np.hypot(dy, dx), np.angle(np.exp(1j * phi))

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """(H, W) bool: the wedge (the sector) clipped to the frame; the apex pixel included."""
        r, phi = self.polar(shape)
        return (np.abs(phi) <= math.radians(self.half_angle_deg)) | (r < 0.5)

    def wobble(self, phi: np.ndarray) -> np.ndarray:
        """The front's angular wobble n(φ) in [-1, 1] at angles ``phi`` from the axis (0 without harmonics)."""
        u = phi / math.radians(self.half_angle_deg)  # [-1, 1] across the wedge
        out = np.zeros_like(u)
        for k, (a, ph) in enumerate(self.front, start=1):
            out += a * np.cos(k * math.pi * u + ph)
        return out


def draw_sector(shape: tuple[int, int], seed: int = 0, model: BRVOModel | None = None) -> BRVOSector:
    """Draw the occluded wedge of one image from ``seed`` (apex jitter, orientation, half-angle, front wobble).

    Args:
        shape: (H, W) of the image.
        seed: the image's seed.
        model: :class:`BRVOModel` (default parameters when None).

    Returns:
        A :class:`BRVOSector`.
    """
    model = model or BRVOModel()
    h, w = _shape(shape)
    rng = np.random.default_rng(seed)
    jitter = rng.uniform(-model.apex_jitter, model.apex_jitter, size=2)
    orientation = float(rng.uniform(0.0, 360.0))
    half_angle = float(rng.uniform(*model.half_angle_range))
    amps = rng.uniform(0.0, 1.0, size=_HARMONICS) / np.arange(1, _HARMONICS + 1)
    phases = rng.uniform(0.0, 2 * math.pi, size=_HARMONICS)
    amps = amps / amps.sum()
    apex = (float((h - 1) / 2 + jitter[0] * h), float((w - 1) / 2 + jitter[1] * w))
    front = tuple((float(a), float(p)) for a, p in zip(amps, phases, strict=True))
    return BRVOSector(apex, orientation, half_angle, front)


def _shape(shape) -> tuple[int, int]:
    if len(shape) != 2 or any(int(s) < 8 for s in shape):
        raise ValueError(f"shape must be (H, W) with H, W >= 8, got {tuple(shape)}")
    return int(shape[0]), int(shape[1])


# --------------------------------------------------------------------------------------------------
# stages and severity
# --------------------------------------------------------------------------------------------------
def _check_stages(stages) -> int:
    if isinstance(stages, bool) or not isinstance(stages, (int, np.integer)) or stages < 2:
        raise ValueError(f"stages must be an integer >= 2 (a sequence), got {stages!r}")
    return int(stages)


def stage_names(stages: int = 6) -> tuple[str, ...]:
    """SOUL-style stage names, two follow-ups per injection: ``s1t1, s1t2, s2t1, s2t2, s3t1, s3t2`` for 6.

    Raises:
        ValueError: ``stages`` not an integer >= 2.
    """
    n = _check_stages(stages)
    return tuple(f"s{1 + i // 2}t{1 + i % 2}" for i in range(n))


def default_severity(stages: int = 6) -> np.ndarray:
    """The default severity curve: :data:`DEFAULT_SEVERITY` for 6 stages, else linearly interpolated over the course.

    Returns:
        (stages,) float64 in [0, 1].
    """
    n = _check_stages(stages)
    ref = np.asarray(DEFAULT_SEVERITY, dtype=np.float64)
    return ref.copy() if n == len(ref) else np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(ref)), ref)


def _severity(severity, stages: int) -> np.ndarray:
    if severity is None:
        return default_severity(stages)
    try:
        s = np.asarray(severity, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"severity must be a sequence of {stages} numbers in [0, 1], got {severity!r}") from e
    if s.ndim != 1 or len(s) != stages:
        raise ValueError(f"severity must hold one value per stage ({stages}), got shape {s.shape}")
    if not np.isfinite(s).all() or s.min() < 0 or s.max() > 1:
        raise ValueError(f"severity values must be in [0, 1] (fraction of the sector non-perfused), got {s.tolist()}")
    return s
