"""Metrics, one module per kind of input.

- :mod:`~voxhelpers.metrics.voxel_sets`: paired metrics on voxel grids, ``a[i]`` against ``b[i]`` (IoU, Dice,
  AAD, AVAR, condition consistency) and the all-pairs IoU matrix.
- :mod:`~voxhelpers.metrics.generation`: a generated set of voxel grids against a real set (AAD to the nearest
  real shape, coverage, minimum matching distance, 1-NNA, occupancy error).
- :mod:`~voxhelpers.metrics.reconstruction`: predicted occupancy probabilities against target grids (threshold
  choice, voxel average precision).
- :mod:`~voxhelpers.metrics.segmentation`: label maps against label maps (per-class Dice, IoU, HD95 in mm, accuracy,
  with the empty and not-labelled cases defined; the per-organ table); imported as a submodule (it needs scipy).
- :mod:`~voxhelpers.metrics.volumes`: intensity volumes against volumes (MAE in HU, PSNR 3-D and slice-averaged,
  SSIM over the three axes with its data range given, cosine similarity; the methods table) — X-ray → CT.
- :mod:`~voxhelpers.metrics.vessels` and :mod:`~voxhelpers.metrics.sequences`: vessel masks (Dice, clDice, AUC
  inside the field of view) and stage sequences (SSIM / MSE per stage, vessel density in a sector) — system 4;
  imported as submodules.

Shared input checks live in :mod:`~voxhelpers.metrics._common`; :func:`binarize` is the public one. Every public
name is re-exported here, so ``voxhelpers.metrics.iou`` and ``from voxhelpers.metrics import iou`` both work.
"""

from ._common import binarize
from .generation import (
    aad_nearest,
    avar_nearest,
    coverage,
    minimum_matching_distance,
    occupancy_error,
    one_nna,
    self_distance_summary,
    voxel_set_metrics,
)
from .reconstruction import DEFAULT_THRESHOLDS, choose_threshold, voxel_average_precision
from .volumes import cosine_similarity, mae_hu, metrics_table, psnr_3d, psnr_slices, ssim_3axes, volume_metrics
from .voxel_sets import aad, avar, condition_consistency, dice_score, iou, pairwise_iou

__all__ = [
    "binarize",
    "pairwise_iou",
    "iou",
    "dice_score",
    "aad",
    "avar",
    "aad_nearest",
    "avar_nearest",
    "coverage",
    "minimum_matching_distance",
    "one_nna",
    "occupancy_error",
    "voxel_set_metrics",
    "condition_consistency",
    "self_distance_summary",
    "DEFAULT_THRESHOLDS",
    "choose_threshold",
    "voxel_average_precision",
    "mae_hu",
    "psnr_3d",
    "psnr_slices",
    "ssim_3axes",
    "cosine_similarity",
    "volume_metrics",
    "metrics_table",
]
