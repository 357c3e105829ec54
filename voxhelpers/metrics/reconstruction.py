"""Reconstruction metrics: predicted occupancy probabilities against the target voxel grids.

Inputs are (N, D, H, W) or (N, 1, D, H, W) grids, torch tensors or numpy arrays; probabilities in [0, 1], targets
binary. :func:`choose_threshold` picks the binarisation threshold with the best mean IoU on validation data;
:func:`voxel_average_precision` is the threshold-free per-shape AP of the 3D-GAN / IKEA protocol.
"""

from __future__ import annotations

import numpy as np
import torch

from ._common import _binarize, _binarize_pair, _to_tensor
from .voxel_sets import iou

__all__ = ["DEFAULT_THRESHOLDS", "choose_threshold", "voxel_average_precision"]

DEFAULT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05, 0.10, …, 0.95


def choose_threshold(probs: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray,
                     thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS) -> tuple[float, dict[float, float]]:
    """The occupancy threshold with the highest mean paired IoU (pick it on VALIDATION data, report on test).

    Args:
        probs: predicted occupancy probabilities (N, D, H, W) or (N, 1, D, H, W) in [0, 1].
        targets: the true grids, same shape, binary.
        thresholds: candidates in [0, 1); ties go to the lowest threshold.

    Returns:
        ``(best, {threshold: mean IoU})``.

    Raises:
        ValueError: no candidates, or the errors of :func:`iou`.
    """
    if not thresholds:
        raise ValueError("thresholds must hold at least one candidate in [0, 1)")
    _binarize_pair(probs, targets, 0.5, ("probs", "targets"), paired=True)  # errors name these, not iou's a and b
    scores = {float(t): float(iou(probs, targets, float(t)).mean()) for t in thresholds}
    best = max(scores, key=lambda t: (scores[t], -t))
    return best, scores


def voxel_average_precision(probs: torch.Tensor | np.ndarray, targets: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Average precision over the voxels of each shape (scikit-learn ``average_precision_score``).

    The 3D-GAN / IKEA protocol of reconstruction AP: voxels ranked by predicted probability against the true
    occupancy, AP = Σ (R_k − R_{k−1}) P_k (no interpolation). Threshold-free. A target with no occupied voxel
    has no defined AP and is rejected.

    Args:
        probs: (N, D, H, W) or (N, 1, D, H, W) probabilities in [0, 1].
        targets: same shape, binary, each with at least one occupied voxel.

    Returns:
        float64 tensor (N,) in [0, 1].

    Raises:
        ValueError: shapes differ, NaN or values outside [0, 1], non-binary or empty targets.
    """
    from sklearn.metrics import average_precision_score

    _binarize(probs, 0.5, "probs")  # validates the shape, NaN and the [0, 1] range
    t = _binarize(targets, 0.5, "targets")  # (N, V) bool; rejects non-binary integers, NaN
    p = _to_tensor(probs, "probs").double()
    p_grid, t_grid = (x.shape[2:] if x.ndim == 5 else x.shape[1:] for x in (p, _to_tensor(targets, "targets")))
    p = p.reshape(p.shape[0], -1)
    if p.shape != t.shape or p_grid != t_grid:
        raise ValueError(f"probs and targets must have the same (N, D, H, W) shape, got {tuple(p.shape)} and "
                         f"{tuple(t.shape)} voxels")
    tf = torch.as_tensor(targets)
    if tf.is_floating_point() and not torch.isin(tf, torch.tensor([0.0, 1.0], dtype=tf.dtype)).all():
        raise ValueError("targets must be binary voxels {0, 1}, got fractional values")
    empty = (~t.any(dim=1)).nonzero().flatten().tolist()
    if empty:
        raise ValueError(f"targets {empty[:8]} have no occupied voxel: average precision is undefined for them")
    pn, tn = p.numpy(), t.numpy()
    return torch.tensor([average_precision_score(tn[i], pn[i]) for i in range(len(pn))], dtype=torch.float64)
