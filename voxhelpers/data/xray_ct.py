"""CT cubes for X-ray → CT: one preparation for training, testing and a user's own CT.

:func:`prepare_ct_cube` reorients a CT to RAS, resamples it to isotropic voxels of ``fov_mm / size`` mm (trilinear,
in HU), cuts a cube of ``size``³ around the centre of the body's bounding box (padding with air), and windows it to
[0, 1] (:func:`voxhelpers.data.ct.clip_normalise`, [−1024, 1024] HU by default). X2CT-GAN resamples LIDC to 1 mm and
crops 320³ before its DRRs; its users asked why (kylekma/X2CT #33): the network needs every CT on one grid, and the
X-rays must be rendered from that same grid so that they show exactly what the network is asked to rebuild.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ct import XRAY_CT_WINDOW, clip_normalise
from .ct_io import CTVolume, reorient
from .segmentation import _crop_or_pad, _resample, body_centre

__all__ = ["CTCube", "prepare_ct_cube"]


@dataclass
class CTCube:
    """A prepared CT: ``ct`` (1, S, S, S) float16 in [0, 1], RAS; ``spacing`` mm (isotropic); ``name``."""

    name: str
    ct: np.ndarray
    spacing: tuple[float, float, float]


def prepare_ct_cube(volume: CTVolume, size: int, fov_mm: float = 320.0, window=XRAY_CT_WINDOW,
                    name: str = "") -> CTCube:
    """A CT as the X-ray → CT system sees it: RAS, isotropic ``fov_mm / size`` mm, ``size``³ around the body, [0, 1].

    Raises:
        ValueError: NaN or inf HU, a size < 1 or a non-positive field of view.
    """
    if size < 1 or not fov_mm > 0:
        raise ValueError(f"need size >= 1 and fov_mm > 0, got {size}, {fov_mm}")
    volume = reorient(volume, "RAS")
    hu = volume.hu
    if hu.dtype.kind == "f" and not np.isfinite(hu).all():
        raise ValueError(f"{name or volume.source}: the CT holds NaN or inf values")
    step = float(fov_mm) / size
    hu, _, spacing = _resample(hu, None, volume.spacing, (step, step, step))
    cube = _crop_or_pad(np.asarray(hu, dtype=np.float32), body_centre(hu), (size,) * 3, np.float32(-1024.0))
    return CTCube(name or str(volume.source), clip_normalise(cube, window).astype(np.float16)[None],
                  (step, step, step))
