"""The one validator of voxel grids, duplicates and held-out splits — what every reader and trainer calls.

Checking happens before any work starts: a set that training cannot use (wrong shape, non-binary values, NaN,
no shapes, every shape empty) is refused with a message naming what was expected, not deep in torch.
"""

from __future__ import annotations

import numpy as np


def check_grids(grids, name: str = "grids", size: int | None = None, allow_empty_set: bool = False) -> np.ndarray:
    """Validate a set of binary voxel grids and return it as bool (N, D, H, W).

    Args:
        grids: array-like (N, D, H, W) or (N, 1, D, H, W) (a channel axis of one is dropped), bool or numbers in
            {0, 1}.
        name: what the grids are, for messages (a file name, ``"volumes"``...).
        size: the side every grid must have (32 for the voxel GANs); None: any 3-D shape.
        allow_empty_set: accept a set in which every grid is empty (a model cannot learn from it; off by default).

    Returns:
        bool array (N, D, H, W).

    Raises:
        ValueError: wrong number of axes or side, no grids, NaN / inf, values other than 0 and 1 (the message shows
            some), or every grid empty. TypeError: a non-numeric dtype.
    """
    expected = f"(N, {size}, {size}, {size})" if size else "(N, D, H, W)"
    grids = as_grid_array(grids, name, expected)
    if grids.ndim == 5 and grids.shape[1] == 1:
        grids = grids[:, 0]
    if grids.ndim != 4 or grids.shape[0] == 0 or 0 in grids.shape[1:]:
        raise ValueError(f"{name}: expected a non-empty set of 3-D grids {expected} (or (N, 1, D, H, W)), "
                         f"got shape {grids.shape}")
    if size is not None and grids.shape[1:] != (size,) * 3:
        raise ValueError(f"{name}: expected grids {expected}, got shape {grids.shape}")
    if grids.dtype != bool:
        if grids.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected binary voxels (bool or numbers 0/1), got dtype {grids.dtype}")
        if grids.dtype.kind == "f" and not np.isfinite(grids).all():
            raise ValueError(f"{name}: contains NaN or inf; expected binary voxels {{0, 1}}")
        bad = ~np.isin(grids, (0, 1))
        if bad.any():
            seen = np.unique(grids[bad])[:4]
            raise ValueError(f"{name}: expected binary voxel values 0 and 1, found {', '.join(f'{v:g}' for v in seen)}"
                             " (threshold occupancy probabilities first, e.g. grids > 0.5)")
        grids = grids.astype(bool)
    if not allow_empty_set and not grids.any():
        raise ValueError(f"{name}: every one of the {len(grids)} grids is empty; expected occupied voxels")
    return grids


def as_grid_array(grids, name: str = "grids", expected: str = "(N, D, H, W)") -> np.ndarray:
    """``np.asarray(grids)``, a torch tensor detached first; a ragged nest of lists is a ValueError naming ``expected``.

    Raises:
        ValueError: ``grids`` does not form a rectangular array.
    """
    if hasattr(grids, "detach") and hasattr(grids, "cpu"):  # a torch tensor, maybe requiring grad or on a GPU
        grids = grids.detach().cpu()
    try:
        return np.asarray(grids)
    except ValueError as e:  # numpy: "setting an array element with a sequence ... inhomogeneous shape"
        raise ValueError(f"{name}: expected an array of grids {expected}, got nested sequences of unequal "
                         f"lengths ({e})") from e


def unique_grids(grids: np.ndarray) -> np.ndarray:
    """Drop exact duplicate grids, keeping the first of each in the original order.

    ModelNet10's 889 training chairs hold 839 distinct 32³ grids; without this a held-out "unseen" shape could
    be a copy of a training shape.

    Args:
        grids: (N, D, H, W) binary.

    Returns:
        bool (K, D, H, W), K ≤ N.
    """
    grids = np.asarray(grids, dtype=bool)
    packed = np.packbits(grids.reshape(len(grids), -1), axis=1)  # (N, V/8) uint8: cheap to compare
    _, first = np.unique(packed, axis=0, return_index=True)
    return grids[np.sort(first)]


def split_holdout(items: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split items into (kept, held_out) by a seeded permutation; round(holdout·N) items held out.

    With ``holdout > 0`` at least one item lands on each side. Each side keeps the original order.

    Raises:
        ValueError: holdout outside [0, 1), or holdout > 0 with fewer than 2 items.
    """
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout must be a fraction in [0, 1), got {holdout}")
    n = len(items)
    if holdout > 0 and n < 2:
        raise ValueError(f"need at least 2 items to hold some back, got {n}")
    n_held = min(max(round(holdout * n), 1), n - 1) if holdout > 0 else 0
    perm = np.random.default_rng(seed).permutation(n)
    return items[np.sort(perm[n_held:])], items[np.sort(perm[:n_held])]
