"""Set metrics of a generated set of voxel grids against a real (reference) set.

Every function takes two sets of grids, torch tensors or numpy arrays of shape (N, D, H, W) or (N, 1, D, H, W), of
dtype bool, integer {0, 1}, or float probabilities in [0, 1] (binarised as ``x > threshold``). Distances are the
Jaccard distance ``1 - IoU`` (0 for two empty shapes), computed once per pair of sets by the chunked IoU matrix of
:mod:`voxhelpers.metrics.voxel_sets`.

Metrics: :func:`aad_nearest`, :func:`avar_nearest`, :func:`coverage`, :func:`minimum_matching_distance`,
:func:`one_nna`, :func:`occupancy_error`, and :func:`voxel_set_metrics`, which computes all of them from one set of
distance matrices; :func:`self_distance_summary` gives a real set's reference values against itself.
"""

from __future__ import annotations

import numpy as np
import torch

from ._common import _binarize, _binarize_pair, _check_threshold
from .voxel_sets import _pairwise_iou_bool

__all__ = [
    "aad_nearest",
    "avar_nearest",
    "coverage",
    "minimum_matching_distance",
    "one_nna",
    "occupancy_error",
    "voxel_set_metrics",
    "self_distance_summary",
]


# --------------------------------------------------------------------------------------------------
# Reductions of the distance matrices
# --------------------------------------------------------------------------------------------------
def _first_min(d: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum along ``dim`` and the *lowest* index attaining it (deterministic tie-breaking)."""
    values = d.amin(dim=dim, keepdim=True)
    index = torch.arange(d.shape[dim]).reshape([-1 if k == dim else 1 for k in range(d.ndim)])
    big = torch.full_like(index, d.shape[dim])
    first = torch.where(d == values, index, big).amin(dim=dim)
    return values.squeeze(dim), first


def _aad_nearest_from(d_gr: torch.Tensor) -> float:
    """Mean over generated rows of the distance to the nearest real column."""
    return float(d_gr.amin(dim=1).mean())


def _coverage_from(d_gr: torch.Tensor) -> float:
    """Fraction of real columns that are the (lowest-index) nearest neighbour of at least one generated row."""
    _, nearest = _first_min(d_gr, dim=1)
    return torch.unique(nearest).numel() / d_gr.shape[1]


def _mmd_from(d_gr: torch.Tensor) -> float:
    """Mean over real columns of the distance to the nearest generated row."""
    return float(d_gr.amin(dim=0).mean())


def _one_nna_from(d_gg: torch.Tensor, d_gr: torch.Tensor, d_rr: torch.Tensor) -> float:
    """Leave-one-out 1-NN accuracy on [generated, real]; ties go to the lowest concatenated index.

    Generated indices come first, so a tie between a generated and a real neighbour is resolved in favour of the
    generated one; ties within one set do not change the predicted label.
    """
    n, m = d_gr.shape
    inf = torch.tensor(float("inf"), dtype=d_gg.dtype)
    d_gg = torch.where(torch.eye(n, dtype=torch.bool), inf, d_gg)
    d_rr = torch.where(torch.eye(m, dtype=torch.bool), inf, d_rr)
    # Generated sample i is classified correctly iff its nearest neighbour is generated (wins ties).
    correct_gen = d_gg.amin(dim=1) <= d_gr.amin(dim=1)
    # Real sample j is classified correctly iff a real neighbour is strictly closer than every generated one.
    correct_real = d_rr.amin(dim=1) < d_gr.amin(dim=0)
    return (int(correct_gen.sum()) + int(correct_real.sum())) / (n + m)


def _occupancy_error_from(g: torch.Tensor, r: torch.Tensor) -> float:
    occ_g = int(g.sum(dtype=torch.int64)) / g.numel()
    occ_r = int(r.sum(dtype=torch.int64)) / r.numel()
    if occ_r == 0:
        raise ValueError("occupancy_error: the real set has zero occupancy (every grid empty); the error is undefined")
    return abs(occ_g - occ_r) / occ_r


# --------------------------------------------------------------------------------------------------
# Set metrics (generated vs real)
# --------------------------------------------------------------------------------------------------
def aad_nearest(generated: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray, threshold: float = 0.5) -> float:
    """AAD of each generated shape to its nearest real shape, averaged over the generated set.

    ``mean_g min_r (1 - IoU(g, r))``: the project's AAD (see :func:`aad`) for unpaired samples, pairing every
    generated shape with the real shape closest to it. Measures fidelity only (a generator that copies one real
    shape scores 0); read it together with :func:`coverage` and :func:`one_nna`.

    Args:
        generated: N grids, (N, D, H, W) or (N, 1, D, H, W); bool, integer {0, 1} or float in [0, 1].
        real: M reference grids of the same spatial size.
        threshold: binarisation threshold for float input (``x > threshold``), in [0, 1].

    Returns:
        Python float in [0, 1]; lower is better.

    Raises:
        TypeError, ValueError: on invalid input (see :func:`binarize`); ValueError if the spatial sizes differ.
    """
    g, r = _binarize_pair(generated, real, threshold, ("generated", "real"))
    return _aad_nearest_from(1.0 - _pairwise_iou_bool(g, r))


def avar_nearest(
    generated: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray, threshold: float = 0.5
) -> float:
    """AVAR with nearest-real pairing: ``1 - aad_nearest(generated, real)``, the mean IoU to the nearest real shape.

    Args:
        generated: N grids, (N, D, H, W) or (N, 1, D, H, W); bool, integer {0, 1} or float in [0, 1].
        real: M reference grids of the same spatial size.
        threshold: binarisation threshold for float input (``x > threshold``), in [0, 1].

    Returns:
        Python float in [0, 1]; higher is better.

    Raises:
        TypeError, ValueError: as :func:`aad_nearest`.
    """
    return 1.0 - aad_nearest(generated, real, threshold)


def coverage(generated: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray, threshold: float = 0.5) -> float:
    """Coverage (COV) of the real set by the generated set.

    Implements COV of Achlioptas et al. 2018 ("Learning Representations and Generative Models for 3D Point
    Clouds") with the voxel distance ``1 - IoU`` in place of Chamfer/EMD: the fraction of real shapes that are the
    nearest neighbour of at least one generated shape. Ties go to the real shape with the lowest index.

    Args:
        generated: N grids, (N, D, H, W) or (N, 1, D, H, W); bool, integer {0, 1} or float in [0, 1].
        real: M reference grids of the same spatial size.
        threshold: binarisation threshold for float input (``x > threshold``), in [0, 1].

    Returns:
        Python float in [1/M, min(1, N/M)]; higher is better, a mode-collapsed generator gives about 1/M.

    Raises:
        TypeError, ValueError: on invalid input (see :func:`binarize`); ValueError if the spatial sizes differ.
    """
    g, r = _binarize_pair(generated, real, threshold, ("generated", "real"))
    return _coverage_from(1.0 - _pairwise_iou_bool(g, r))


def minimum_matching_distance(
    generated: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray, threshold: float = 0.5
) -> float:
    """Minimum Matching Distance (MMD) from the real set to the generated set.

    Implements MMD of Achlioptas et al. 2018 with the voxel distance ``1 - IoU``: for every real shape the distance
    to its nearest generated shape, averaged over the real set. (Not the Maximum Mean Discrepancy.)

    Args:
        generated: N grids, (N, D, H, W) or (N, 1, D, H, W); bool, integer {0, 1} or float in [0, 1].
        real: M reference grids of the same spatial size.
        threshold: binarisation threshold for float input (``x > threshold``), in [0, 1].

    Returns:
        Python float in [0, 1]; lower is better.

    Raises:
        TypeError, ValueError: on invalid input (see :func:`binarize`); ValueError if the spatial sizes differ.
    """
    g, r = _binarize_pair(generated, real, threshold, ("generated", "real"))
    return _mmd_from(1.0 - _pairwise_iou_bool(g, r))


def one_nna(generated: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray, threshold: float = 0.5) -> float:
    """1-nearest-neighbour accuracy (1-NNA) of telling generated from real shapes.

    Implements 1-NNA (Lopez-Paz & Oquab 2017, used for 3D shapes by Yang et al. 2019, PointFlow) with the voxel
    distance ``1 - IoU``: every shape of the union [generated, real] is classified by the label of its nearest
    neighbour among all *other* shapes (leave-one-out; the self-distance is +inf), and the accuracy is returned.

    Tie-breaking: among equally near neighbours the one with the lowest index in the concatenated
    [generated, real] order wins, i.e. a generated neighbour beats a real one at equal distance.

    Reading it: 0.5 is ideal (the sets are indistinguishable); a mode-collapsed generator, or one whose samples are
    unlike the real shapes, gives values near 1.0. Values well below 0.5 mean generated shapes sit on top of the
    real ones: exact copies of the reference set give 0.0 under this tie rule (each shape's twin is its
    neighbour), so evaluate against held-out shapes.

    Args:
        generated: N grids, (N, D, H, W) or (N, 1, D, H, W); bool, integer {0, 1} or float in [0, 1].
        real: M reference grids of the same spatial size.
        threshold: binarisation threshold for float input (``x > threshold``), in [0, 1].

    Returns:
        Python float in [0, 1], a fraction (not a percentage).

    Raises:
        TypeError, ValueError: on invalid input (see :func:`binarize`); ValueError if the spatial sizes differ.
    """
    g, r = _binarize_pair(generated, real, threshold, ("generated", "real"))
    return _one_nna_from(1.0 - _pairwise_iou_bool(g, g), 1.0 - _pairwise_iou_bool(g, r), 1.0 - _pairwise_iou_bool(r, r))


def occupancy_error(
    generated: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray, threshold: float = 0.5
) -> float:
    """Relative error of the mean occupancy of the generated set with respect to the real set.

    ``|occ(generated) - occ(real)| / occ(real)`` where ``occ`` is the fraction of occupied voxels over all grids of
    a set (after binarisation). Catches generators that are systematically too thin or too bloated.

    Args:
        generated: N grids, (N, D, H, W) or (N, 1, D, H, W); bool, integer {0, 1} or float in [0, 1].
        real: M reference grids of the same spatial size.
        threshold: binarisation threshold for float input (``x > threshold``), in [0, 1].

    Returns:
        Python float >= 0; 0 is a perfect match.

    Raises:
        TypeError, ValueError: on invalid input (see :func:`binarize`); ValueError if the spatial sizes differ or
            every real grid is empty (zero occupancy).
    """
    g, r = _binarize_pair(generated, real, threshold, ("generated", "real"))
    return _occupancy_error_from(g, r)


def voxel_set_metrics(
    generated: torch.Tensor | np.ndarray, real: torch.Tensor | np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """All set metrics of a generated set against a real set, from one computation of the distance matrices.

    Computes the generated-real, generated-generated and real-real ``1 - IoU`` matrices once and derives from them
    the same values as :func:`aad_nearest`, :func:`avar_nearest`, :func:`coverage`,
    :func:`minimum_matching_distance`, :func:`one_nna` and :func:`occupancy_error`.

    Args:
        generated: N grids, (N, D, H, W) or (N, 1, D, H, W); bool, integer {0, 1} or float in [0, 1].
        real: M reference grids of the same spatial size.
        threshold: binarisation threshold for float input (``x > threshold``), in [0, 1].

    Returns:
        dict of Python floats: ``aad_real`` (AAD to the nearest real shape, [0, 1], lower better), ``avar_real``
        (``1 - aad_real``), ``cov`` ([0, 1], higher better), ``mmd`` ([0, 1], lower better), ``one_nna``
        ([0, 1], 0.5 ideal), ``occupancy_error`` (>= 0, lower better), ``iou_nearest`` (mean IoU to the nearest
        real shape; equals ``avar_real`` up to rounding).

    Raises:
        TypeError, ValueError: on invalid input (see :func:`binarize`); ValueError if the spatial sizes differ or
            every real grid is empty.
    """
    g, r = _binarize_pair(generated, real, threshold, ("generated", "real"))
    occ_err = _occupancy_error_from(g, r)  # fail fast on an empty real set
    iou_gr = _pairwise_iou_bool(g, r)
    d_gr = 1.0 - iou_gr
    aad_real = _aad_nearest_from(d_gr)
    return {
        "aad_real": aad_real,
        "avar_real": 1.0 - aad_real,
        "cov": _coverage_from(d_gr),
        "mmd": _mmd_from(d_gr),
        "one_nna": _one_nna_from(1.0 - _pairwise_iou_bool(g, g), d_gr, 1.0 - _pairwise_iou_bool(r, r)),
        "occupancy_error": occ_err,
        "iou_nearest": float(iou_gr.amax(dim=1).mean()),
    }


def self_distance_summary(real: torch.Tensor | np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Reference values of a real set against itself, to read AAD numbers against (distance 1 − IoU).

    Args:
        real: (N, D, H, W) or (N, 1, D, H, W) shapes, N ≥ 2.

    Returns:
        ``random_pair`` (mean distance over all pairs i ≠ j), ``nearest_neighbour`` (mean over shapes of the
        distance to the nearest other shape), ``mismatch`` (mean whole-grid mismatch |A xor B| / V over pairs)
        and ``occupancy`` (mean occupied fraction).
    """
    flat = _binarize(real, _check_threshold(threshold), "real")
    n = flat.shape[0]
    if n < 2:
        raise ValueError(f"expected at least 2 shapes, got {n}")
    iou = _pairwise_iou_bool(flat, flat)
    off = ~torch.eye(n, dtype=torch.bool)
    d = 1.0 - iou
    f = flat.double()
    counts = f.sum(1)
    inter = f @ f.T
    mismatch = (counts[:, None] + counts[None, :] - 2 * inter) / flat.shape[1]
    return {
        "random_pair": float(d[off].mean()),
        "nearest_neighbour": float(d.masked_fill(~off, float("inf")).min(1).values.mean()),
        "mismatch": float(mismatch[off].mean()),
        "occupancy": float(f.mean()),
    }
