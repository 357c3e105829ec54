"""Array and tensor transforms: voxel rotations (per sample, never over the batch axis).

Rotations act on the last three axes of a grid, the spatial ones: (D, H, W) of a numpy array
(N, D, H, W) or a tensor (B, 1, D, H, W). A plane is given by two of the spatial axes 0, 1, 2.
"""

from __future__ import annotations

import numpy as np
import torch

#: The condition rotations of the voxel cGAN, in order: (quarter turns k, spatial plane).
#: Condition 0 is the identity and condition 1 the seed's 180° turn in the plane of spatial axes (0, 1)
#: (``np.rot90(a, 2, axes=(1, 2))`` on an (N, D, H, W) array), so N = 2 reproduces the seed exactly.
#: Further conditions are distinct rigid rotations of the cube; up to 10 are defined.
CONDITION_ROTATIONS: tuple[tuple[int, tuple[int, int]], ...] = (
    (0, (0, 1)),
    (2, (0, 1)),
    (1, (0, 1)),
    (3, (0, 1)),
    (1, (0, 2)),
    (3, (0, 2)),
    (2, (0, 2)),
    (1, (1, 2)),
    (3, (1, 2)),
    (2, (1, 2)),
)


def rotate_spatial(x, k: int, plane: tuple[int, int] = (0, 1)):
    """Rotate every grid by k quarter turns in a spatial plane, sample by sample.

    Args:
        x: numpy array or tensor (..., D, H, W); leading axes (batch, channel) are untouched.
        k: number of 90° turns (any integer; negative turns the other way).
        plane: two distinct spatial axes in {0, 1, 2}.

    Returns:
        the rotated grids, same type and leading shape as ``x``.

    Raises:
        ValueError: fewer than three axes, or a bad plane.
    """
    if x.ndim < 3:
        raise ValueError(f"expected grids (..., D, H, W) with at least 3 axes, got shape {tuple(x.shape)}")
    if len(plane) != 2 or plane[0] == plane[1] or not set(plane) <= {0, 1, 2}:
        raise ValueError(f"plane must be two distinct spatial axes in {{0, 1, 2}}, got {plane}")
    dims = (x.ndim - 3 + plane[0], x.ndim - 3 + plane[1])
    if isinstance(x, torch.Tensor):
        return torch.rot90(x, k, dims)
    return np.rot90(x, k, axes=dims)


def rot180(x):
    """The seed's condition-1 transform done right: 180° in spatial plane (0, 1), per sample.

    The seed's pairing step called ``torch.rot90(x, 2, (0, 1))`` on a (B, 32, 32, 32) tensor, which turns
    the *batch* axis into a spatial one and mixes samples; here only the last three axes move.
    """
    return rotate_spatial(x, 2, (0, 1))


def condition_rotation(x, condition: int, inverse: bool = False):
    """Apply (or undo) the rotation that defines a condition (see :data:`CONDITION_ROTATIONS`).

    Args:
        x: numpy array or tensor (..., D, H, W).
        condition: index in ``range(len(CONDITION_ROTATIONS))``.
        inverse: undo the rotation instead.

    Raises:
        ValueError: condition out of range.
    """
    if not 0 <= condition < len(CONDITION_ROTATIONS):
        raise ValueError(f"condition must be in [0, {len(CONDITION_ROTATIONS) - 1}], got {condition}")
    k, plane = CONDITION_ROTATIONS[condition]
    return rotate_spatial(x, -k if inverse else k, plane)


def rotate_volumes(x: torch.Tensor, degrees: torch.Tensor, plane: tuple[int, int] = (0, 1)) -> torch.Tensor:
    """Rotate each volume of a batch by its own angle in a spatial plane, trilinear, zeros outside (air in a
    normalised CT), about the volume's centre; differentiable in ``x``.

    Args:
        x: (B, C, D, H, W) float tensor; the rotation is a true one where the plane's two sides have the same voxel
            size (an isotropic cube).
        degrees: (B,) angles; positive turns spatial axis ``plane[0]`` towards ``plane[1]`` (as
            :func:`rotate_spatial` with k = 1 at 90°).
        plane: two distinct spatial axes in {0, 1, 2}.

    Raises:
        ValueError: ``x`` not (B, C, D, H, W) float, ``degrees`` not (B,), or a bad plane.
    """
    import torch.nn.functional as F

    if x.ndim != 5 or not x.is_floating_point():
        raise ValueError(f"volumes must be float (B, C, D, H, W), got {x.dtype} {tuple(x.shape)}")
    degrees = torch.as_tensor(degrees, dtype=torch.float64).reshape(-1)
    if degrees.numel() != x.shape[0]:
        raise ValueError(f"need one angle per volume ({x.shape[0]}), got {degrees.numel()}")
    if len(plane) != 2 or plane[0] == plane[1] or not set(plane) <= {0, 1, 2}:
        raise ValueError(f"plane must be two distinct spatial axes in {{0, 1, 2}}, got {plane}")
    t = torch.deg2rad(degrees)
    c, s = torch.cos(t), torch.sin(t)
    # affine_grid's coordinates are (W, H, D) = spatial axes (2, 1, 0); an output voxel reads the input at R⁻¹·p
    a, b = 2 - plane[0], 2 - plane[1]
    theta = torch.zeros(x.shape[0], 3, 4, dtype=torch.float64)
    theta[:, [0, 1, 2], [0, 1, 2]] = 1.0
    theta[:, a, a], theta[:, b, b] = c, c
    theta[:, a, b], theta[:, b, a] = s, -s
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False).to(x.device)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
