"""Reconstruction-side terms: the VAE's KL divergence and a differentiable 1 − IoU between occupancy grids."""

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
