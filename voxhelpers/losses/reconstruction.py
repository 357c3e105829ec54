"""Reconstruction-side terms: the VAE's KL divergence and two differentiable distances between occupancy grids
(1 − soft IoU, and an L1 mismatch over a fixed scale that shared mass cannot lower)."""

from __future__ import annotations

import torch


def soft_jaccard_distance(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """1 − soft IoU of two occupancy grids, per sample: 1 − Σ ab / Σ (a + b − ab).

    On binary grids this is 1 − IoU, the mismatch the AAD metric averages (:func:`voxhelpers.metrics.aad`), so
    it is a differentiable stand-in for 1 − AVAR. Used by the cGAN's optional consistency term.

    Args:
        a, b: occupancy probabilities (B, ...) in [0, 1], same shape.
        eps: keeps two empty grids at distance 0.

    Returns:
        (B,) distances in [0, 1].
    """
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"a and b must be (B, ...) of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    a, b = a.float().flatten(1), b.float().flatten(1)
    inter = (a * b).sum(1)
    return 1.0 - (inter + eps) / (a.sum(1) + b.sum(1) - inter + eps)


def scaled_l1_distance(a: torch.Tensor, b: torch.Tensor, scale: float | torch.Tensor) -> torch.Tensor:
    """Σ |a − b| / ``scale`` per sample: the voxels two occupancy grids disagree on, over a fixed scale.

    Unlike :func:`soft_jaccard_distance` it cannot be lowered by mass both grids share — adding the same walls to
    two different shapes leaves it unchanged, while their soft-Jaccard distance falls (on SynthEVox3D chairs, two
    walls on opposite faces cut a chair's distance to its 180° turn from 0.74 to 0.49; docs/voxel_cgan.md). With
    ``scale`` = 2 × the mean occupied voxels of real shapes, two disjoint shapes of that size are at distance 1.

    Args:
        a, b: occupancy probabilities (B, ...) in [0, 1], same shape.
        scale: > 0, a number or a 0-d tensor (treated as a constant: no gradient flows into it).

    Returns:
        (B,) distances ≥ 0.
    """
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"a and b must be (B, ...) of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    scale = torch.as_tensor(scale, dtype=torch.float32).detach()
    if scale.ndim != 0 or not bool(scale > 0) or not bool(torch.isfinite(scale)):
        raise ValueError(f"scale must be one finite number > 0, got {scale}")
    return (a.float() - b.float()).abs().flatten(1).sum(1) / scale.to(a.device)


def kl_divergence(mu: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) in closed form, summed over latent dims and averaged over the batch.

    Per dimension ½(μ² + σ² − 1) − log σ (Kingma & Welling 2014, appendix B), with σ = exp(log σ). The
    original 3D-VAE-IWGAN used the same per-dimension term but averaged it over the dims too (a 1/200 smaller
    weight).

    Args:
        mu: means (B, z_dim).
        log_sigma: log standard deviations (B, z_dim).

    Returns:
        scalar tensor ≥ 0 (0 exactly when μ = 0 and log σ = 0).

    Raises:
        ValueError: shapes differ or are not (B, z_dim).
    """
    if mu.shape != log_sigma.shape or mu.ndim != 2:
        raise ValueError(f"mu and log_sigma must both be (B, z_dim), got {tuple(mu.shape)} "
                         f"and {tuple(log_sigma.shape)}")
    mu, log_sigma = mu.float(), log_sigma.float()
    per_dim = 0.5 * (mu**2 + torch.exp(2 * log_sigma) - 1) - log_sigma  # (B, z_dim)
    return per_dim.sum(dim=1).mean()
