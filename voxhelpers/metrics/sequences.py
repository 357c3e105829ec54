"""Metrics of stage sequences (system 4's CRGAN and the joined pipeline): generated sequences against true ones,
and vessel density inside an occluded sector.

- :func:`sector_density`: Σ mask·sector / Σ sector over the last two axes, for any leading axes (NaN for an empty
  sector); of a vessel mask it is the vessel density, of an image the mean intensity in the sector;
- :func:`masks_of`: a segmenter (images (M, S, S) → masks) applied to images of any leading shape, its output checked;
- :func:`sequence_scores`: per (sequence, draw, stage) SSIM, MSE, sector intensity error and, with a segmenter, the
  vessel-density error in the sector.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["masks_of", "sector_density", "sequence_scores"]


def sector_density(masks: np.ndarray, sector: np.ndarray) -> np.ndarray:
    """Vessel density inside a sector: Σ mask·sector / Σ sector over the last two axes.

    Args:
        masks: (..., H, W) bool or {0, 1} (or intensities: then the mean intensity in the sector).
        sector: (H, W) or broadcastable to ``masks``, bool; an empty sector gives NaN.

    Returns:
        The density, ``masks.shape[:-2]``, float64 in [0, 1].
    """
    m = np.asarray(masks, dtype=np.float64)
    s = np.broadcast_to(np.asarray(sector, dtype=bool), m.shape)
    area = s.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(area > 0, (m * s).sum(axis=(-2, -1)) / np.maximum(area, 1), np.nan)


def masks_of(segment: Callable[[np.ndarray], np.ndarray], images: np.ndarray) -> np.ndarray:
    """``segment`` (images (M, S, S) in [0, 1] → bool masks) applied to images (..., S, S): masks of the same shape.

    Raises:
        ValueError: the segmenter returned another number or size of masks.
    """
    images = np.asarray(images)
    flat = images.reshape(-1, *images.shape[-2:])
    masks = np.asarray(segment(flat))
    if masks.shape != flat.shape:
        raise ValueError(f"the segmenter must return one {flat.shape[1:]} mask per image, got {masks.shape} for "
                         f"{len(flat)} images")
    return masks.reshape(images.shape)


def sequence_scores(generated: np.ndarray, truth: np.ndarray, sector: np.ndarray | None,
                    segment: Callable[[np.ndarray], np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Per-(sequence, draw, stage) SSIM, MSE, sector-intensity error and vessel-density error of generated vs true
    sequences.

    Args:
        generated: (N, K, T, S, S) in [0, 1].
        truth: (N, T, S, S) in [0, 1], the same sequences' true images for the same stages.
        sector: (N, S, S) bool, each sequence's occluded sector, or None (no ``sector_error``).
        segment: optional images (M, S, S) → bool vessel masks (with a sector: ``density_error``).

    Returns:
        ``ssim`` (data_range 1, 7 × 7 window), ``mse`` and, with sectors, ``sector_error`` (|mean over the sector,
        generated − true|, 0 for an empty sector) and, with a segmenter too, ``density_error`` (|vessel density in
        the sector of the generated image's mask − that of the true image's mask|), each (N, K, T).
    """
    from skimage.metrics import structural_similarity

    n, k, t = generated.shape[:3]
    if truth.shape != (n, t, *generated.shape[3:]):
        raise ValueError(f"truth must be (N, T, S, S) = {(n, t, *generated.shape[3:])}, got {truth.shape}")
    ssim = np.empty((n, k, t))
    for i in range(n):
        for j in range(k):
            for s in range(t):
                ssim[i, j, s] = structural_similarity(generated[i, j, s].astype(np.float64),
                                                      truth[i, s].astype(np.float64), data_range=1.0)
    out = {"ssim": ssim, "mse": ((generated - truth[:, None]) ** 2).mean(axis=(-2, -1))}
    if sector is not None:
        sec = np.asarray(sector, bool)[:, None, None]  # (N, 1, 1, S, S)
        gap = sector_density(generated, sec) - sector_density(truth[:, None], sec)  # NaN where the sector is empty
        out["sector_error"] = np.nan_to_num(np.abs(gap))
        if segment is not None:
            out["density_error"] = np.abs(sector_density(masks_of(segment, generated), sec)
                                          - sector_density(masks_of(segment, truth)[:, None], sec))
    return out
