"""Input checks and binarisation shared by the voxel metrics of :mod:`voxhelpers.metrics`.

Every metric takes sets of voxel grids as torch tensors or numpy arrays of shape (N, D, H, W) or
(N, 1, D, H, W), of dtype bool, integer {0, 1}, or float probabilities in [0, 1] (binarised as
``x > threshold``); :func:`binarize` validates such a set and flattens it to an (N, V) boolean matrix.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np
import torch

__all__ = ["binarize"]


def _check_threshold(threshold: Any) -> float:
    """Return ``threshold`` as a float in [0, 1]; TypeError for non-numbers (bool included), ValueError otherwise."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real):
        raise TypeError(f"threshold must be a real number in [0, 1], got {type(threshold).__name__}")
    t = float(threshold)
    if not 0.0 <= t <= 1.0:  # also rejects NaN
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    return t


def _to_tensor(x: Any, name: str) -> torch.Tensor:
    """Return a tensor or numpy array (bool, integer or float) as a detached tensor, without checking its shape."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        kind = x.dtype.kind
        if kind not in "biuf":
            raise TypeError(f"{name} must have dtype bool, integer or float, got numpy dtype {x.dtype}")
        if not x.dtype.isnative:
            x = x.astype(x.dtype.newbyteorder("="))
        if kind == "u" and x.dtype.itemsize > 1:
            x = x.astype(np.int64)  # torch has only partial support for uint16/32/64
        return torch.from_numpy(np.ascontiguousarray(x))  # copies arrays with negative strides (np.flip)
    raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray of shape (N, D, H, W), got {type(x).__name__}")


def _binarize(x: Any, threshold: float, name: str) -> torch.Tensor:
    """Validate one set of grids and return it as a (N, V) bool tensor on the input's device."""
    t = _to_tensor(x, name)
    shape = tuple(t.shape)
    if t.ndim == 5:
        if shape[1] != 1:
            raise ValueError(
                f"{name} must have shape (N, D, H, W) or (N, 1, D, H, W); got {shape} (channel dim {shape[1]} != 1)"
            )
        t = t[:, 0]
    elif t.ndim != 4:
        raise ValueError(f"{name} must have shape (N, D, H, W) or (N, 1, D, H, W); got {t.ndim}-D shape {shape}")
    if t.shape[0] < 1:
        raise ValueError(f"{name} is an empty set (N=0, shape {shape}); expected at least one shape")
    if any(s < 1 for s in t.shape[1:]):
        raise ValueError(f"{name} has an empty spatial size {tuple(t.shape[1:])}; expected D, H, W >= 1")
    if t.dtype.is_complex:
        raise TypeError(f"{name} must have dtype bool, integer or float, got {t.dtype}")

    if t.dtype == torch.bool:
        out = t
    elif t.dtype.is_floating_point:
        lo, hi = (float(e) for e in torch.aminmax(t))  # NaN propagates to both
        if math.isnan(lo) or math.isnan(hi):
            count = int(torch.isnan(t).sum())
            raise ValueError(f"{name} contains NaN ({count} voxels); expected probabilities in [0, 1]")
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name}: expected probabilities in [0, 1] or a binary grid, got values in [{lo:g}, {hi:g}]"
            )
        out = t > threshold
    else:
        bad = (t != 0) & (t != 1)
        if bool(bad.any()):
            example = t[bad][:3].tolist()
            raise ValueError(
                f"{name}: integer grids must contain only 0 and 1 (a binary grid), got values such as {example}"
            )
        out = t != 0
    return out.reshape(out.shape[0], -1)


def binarize(x: torch.Tensor | np.ndarray, threshold: float = 0.5) -> torch.Tensor:
    """Validate a set of voxel grids and flatten it to a boolean occupancy matrix.

    The shared input check of every metric in :mod:`voxhelpers.metrics`. Bool grids are kept as they are, integer
    grids must hold only 0 and 1, float grids are probabilities in [0, 1] binarised as ``x > threshold``.

    Args:
        x: set of grids, shape (N, D, H, W) or (N, 1, D, H, W), N >= 1; dtype bool, integer in {0, 1} or float
            in [0, 1]. A torch tensor (any device) or a numpy array.
        threshold: binarisation threshold in [0, 1] for float input; ignored for bool and integer input.

    Returns:
        torch.BoolTensor of shape (N, V) with V = D * H * W, on the device of ``x`` (CPU for numpy input).

    Raises:
        TypeError: if ``x`` is not a tensor/array of bool, integer or float dtype, or ``threshold`` is not a number.
        ValueError: on a wrong number of dimensions, a channel dim other than 1, N = 0, NaN, floats outside
            [0, 1], integers other than 0/1, or a threshold outside [0, 1].
    """
    return _binarize(x, _check_threshold(threshold), "x")


def _binarize_pair(
    a: Any, b: Any, threshold: float, names: tuple[str, str], paired: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """Binarise two sets to (N, V) and (M, V) bool tensors on ``a``'s device; same (D, H, W), and N == M if paired."""
    t = _check_threshold(threshold)
    fa, fb = _binarize(a, t, names[0]), _binarize(b, t, names[1])
    sa, sb = tuple(a.shape), tuple(b.shape)
    spatial_a, spatial_b = sa[-3:], sb[-3:]
    if spatial_a != spatial_b:
        raise ValueError(
            f"{names[0]} and {names[1]} must have the same spatial size (D, H, W); "
            f"got {names[0]} shape {sa} and {names[1]} shape {sb}"
        )
    if paired and fa.shape[0] != fb.shape[0]:
        raise ValueError(
            f"paired metric needs the same number of shapes in both sets; "
            f"got {names[0]} with N={fa.shape[0]} (shape {sa}) and {names[1]} with N={fb.shape[0]} (shape {sb})"
        )
    if fb.device != fa.device:
        fb = fb.to(fa.device)
    return fa, fb
