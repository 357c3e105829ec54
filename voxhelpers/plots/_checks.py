"""Input checks shared by the static figures of :mod:`voxhelpers.plots` and the viewers of :mod:`voxhelpers.viewers`.

Voxel grids arrive as NumPy arrays, torch tensors (converted without importing torch) or nested sequences, of
shape (D, H, W) or (1, D, H, W) per volume, bool or float probabilities in [0, 1]; these helpers convert them to
NumPy, reject NaN and bad shapes with a ValueError naming the expected shape, and binarise with
``volume > threshold``.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def _to_numpy(array: Any) -> np.ndarray:
    """Convert a NumPy array, torch tensor or nested sequence to a NumPy array (no copy for NumPy input)."""
    if hasattr(array, "detach"):  # torch.Tensor without importing torch
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"expected a bool or real-valued array, got dtype {array.dtype}")
    return array


def _check_finite(array: np.ndarray, name: str) -> None:
    """Raise ValueError if a float array contains NaN."""
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise ValueError(f"{name} contains NaN; expected bool or probabilities in [0, 1]")


def _check_threshold(threshold: float) -> float:
    """Validate a binarisation threshold and return it as a float in [0, 1]."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


def _as_volume(volume: Any, name: str = "volume") -> np.ndarray:
    """Convert one voxel grid to a NumPy array of shape (D, H, W).

    Args:
        volume: NumPy array or torch tensor of shape (D, H, W) or (1, D, H, W), bool or float probabilities in
            [0, 1].
        name: Name used in error messages.

    Returns:
        NumPy array of shape (D, H, W), same dtype as the input.

    Raises:
        ValueError: If the shape is not (D, H, W) or (1, D, H, W), or the values contain NaN.
        TypeError: If the values are not bool or real numbers.
    """
    array = _to_numpy(volume)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise ValueError(f"{name} must have shape (D, H, W) or (1, D, H, W), got shape {tuple(array.shape)}")
    _check_finite(array, name)
    return array


def _as_volume_list(volumes: Any, name: str = "volumes") -> list[np.ndarray]:
    """Convert a batch of voxel grids to a list of NumPy arrays of shape (D, H, W).

    Args:
        volumes: A sequence of volumes (each (D, H, W) or (1, D, H, W)), or one array / tensor of shape
            (N, D, H, W) or (N, 1, D, H, W); a single (D, H, W) array counts as one volume.
        name: Name used in error messages.

    Returns:
        List of N NumPy arrays of shape (D, H, W).

    Raises:
        ValueError: If the batch is empty, has the wrong shape, or contains NaN.
    """
    if isinstance(volumes, (list, tuple)):
        result = [_as_volume(v, f"{name}[{i}]") for i, v in enumerate(volumes)]
    else:
        array = _to_numpy(volumes)
        if array.ndim == 3:
            array = array[None]
        elif array.ndim == 5 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 4:
            raise ValueError(
                f"{name} must have shape (N, D, H, W), (N, 1, D, H, W) or be a sequence of (D, H, W) volumes, "
                f"got shape {tuple(array.shape)}"
            )
        _check_finite(array, name)
        result = list(array)
    if not result:
        raise ValueError(f"{name} is empty; expected at least one (D, H, W) volume")
    return result


def _binarize(volume: Any, threshold: float = 0.5, name: str = "volume") -> np.ndarray:
    """Binarise a voxel grid with ``volume > threshold``.

    Args:
        volume: Array or tensor of shape (D, H, W) or (1, D, H, W), bool or probabilities in [0, 1].
        threshold: Occupancy threshold in [0, 1]; a bool grid is used as is.
        name: Name used in error messages.

    Returns:
        Bool NumPy array of shape (D, H, W).

    Raises:
        ValueError: On a bad shape, NaN values or a threshold outside [0, 1].
    """
    threshold = _check_threshold(threshold)
    array = _as_volume(volume, name)
    if array.dtype == bool:
        return array
    return array > threshold


def _check_titles(titles: Sequence[str] | None, n: int, default: str = "Voxel") -> list[str]:
    """Return ``titles`` as a list of n strings, or the defaults "Voxel 1".."Voxel n"."""
    if titles is None:
        return [f"{default} {i + 1}" for i in range(n)]
    if isinstance(titles, str) or len(titles) != n:
        raise ValueError(f"titles must be a sequence of {n} strings (one per volume), got {titles!r}")
    return [str(t) for t in titles]


def _as_group(array: Any, name: str) -> np.ndarray:
    """Convert a viewer group to a NumPy array of shape (N, C, D, H, W) (C = 1 for 4-D input)."""
    array = _to_numpy(array)
    if array.ndim == 4:
        array = array[:, None]
    if array.ndim != 5 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"group {name!r} must have shape (N, C, D, H, W) or (N, D, H, W) with N, C >= 1, "
            f"got shape {tuple(array.shape)}"
        )
    _check_finite(array, f"group {name!r}")
    return array


def _as_groups(groups: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Validate the ``groups`` mapping of :func:`voxel_viewer` and convert every value to (N, C, D, H, W)."""
    if not isinstance(groups, Mapping) or not groups:
        raise ValueError("groups must be a non-empty dict mapping a column title to an (N, C, D, H, W) array")
    return {str(title): _as_group(array, str(title)) for title, array in groups.items()}


def _check_index(value: int, name: str) -> int:
    """Validate a non-negative integer control value."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)
