"""Losses: the seed's hybrid adversarial losses and their numerically sound variants.

Each function maps tensors to a scalar tensor; shapes are in the docstrings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: The hybrid losses of the seed (Va-un/Hybridized-Loss-Functions-for-3D-Conditional-GANs) and the plain
#: BCE baseline of its upstream 3D-CGAN. Names are the ones the API, the weights and the cards use.
HYBRID_LOSSES = ("bce", "bce_bcewithlogits", "bce_mse_60_40", "bce_mse_40_60", "triple")
HYBRID_LOSS_TITLES = {
    "bce": "BCE (3D-CGAN baseline)",
    "bce_bcewithlogits": "BCE + BCEWithLogits (0.7 + 0.3)",
    "bce_mse_60_40": "BCE + MSE (0.6 + 0.4)",
    "bce_mse_40_60": "BCE + MSE (0.4 + 0.6)",
    "triple": "Triple: BCE + L1 + (BCEWithLogits + MSE) (0.4 + 0.3 + 0.3)",
}
OUTPUT_KINDS = ("probs", "logits")
VARIANTS = ("seed", "sound")


def _check_output(output: torch.Tensor, kind: str) -> None:
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"output kind must be one of {OUTPUT_KINDS}, got {kind!r}")
    if not output.is_floating_point():
        raise TypeError(f"expected a floating-point discriminator output, got {output.dtype}")
    if torch.isnan(output).any():
        raise ValueError("discriminator output contains NaN")
    if kind == "probs" and (output.min() < 0 or output.max() > 1):
        raise ValueError("output='probs' expects values in [0, 1] (a sigmoid output); pass output='logits' instead")


def hybrid_loss(output: torch.Tensor, target: float, name: str = "bce", output_kind: str = "probs",
                variant: str = "seed") -> torch.Tensor:
    """One of the seed's hybrid adversarial losses of a discriminator output against a constant target.

    With p the discriminator's probability and t the all-ones / all-zeros target (each term a mean over
    the batch), the seed's formulas are:

    ====================  ===========================================================
    ``bce``               BCE(p, t)
    ``bce_bcewithlogits`` 0.7·BCE(p, t) + 0.3·BCEWithLogits(p, t)
    ``bce_mse_60_40``     0.6·BCE(p, t) + 0.4·MSE(p, t)
    ``bce_mse_40_60``     0.4·BCE(p, t) + 0.6·MSE(p, t)
    ``triple``            0.4·BCE(p, t) + 0.3·L1(p, t) + 0.3·(BCEWithLogits(p, t) + MSE(σ(p), t))
    ====================  ===========================================================

    ``variant="seed"`` keeps them verbatim, including the "with logits" terms applied to p, which had
    already passed a sigmoid (a double sigmoid). ``variant="sound"`` needs logits x (p = σ(x)) and gives
    every term the input it was designed for: BCE and BCEWithLogits both become ``BCEWithLogits(x, t)``
    (stable for any x, no clamp at log 0) and σ(p) becomes p. Then ``bce_bcewithlogits`` equals ``bce``
    and ``triple`` is 0.7·BCE + 0.3·L1 + 0.3·MSE.

    Args:
        output: discriminator output (B,) — probabilities in [0, 1] (``output_kind="probs"``) or logits.
        target: 1.0 (real) or 0.0 (fake); any value in [0, 1] is accepted (label smoothing).
        name: one of :data:`HYBRID_LOSSES`.
        output_kind: what ``output`` holds, ``"probs"`` or ``"logits"``. With logits and the seed variant,
            p = σ(x) and the BCE term is computed from x (same value, stable).
        variant: ``"seed"`` or ``"sound"``.

    Returns:
        scalar tensor, ≥ 0.

    Raises:
        ValueError: unknown name, kind or variant; NaN output; probabilities outside [0, 1];
            ``variant="sound"`` with probabilities.
    """
    if name not in HYBRID_LOSSES:
        raise ValueError(f"unknown hybrid loss {name!r}; expected one of {HYBRID_LOSSES}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    _check_output(output, output_kind)
    if variant == "sound" and output_kind != "logits":
        raise ValueError("variant='sound' needs logits: build the discriminator with output='logits'")
    output = output.float()
    t = torch.full_like(output, float(target))
    if output_kind == "logits":
        p = torch.sigmoid(output)
        bce = F.binary_cross_entropy_with_logits(output, t)
    else:
        p = output
        bce = F.binary_cross_entropy(p, t)
    if variant == "sound":
        with_logits, sig_p = bce, p  # BCEWithLogits on logits; σ(logits) = p
    else:
        with_logits, sig_p = F.binary_cross_entropy_with_logits(p, t), torch.sigmoid(p)
    if name == "bce":
        return bce
    if name == "bce_bcewithlogits":
        return 0.7 * bce + 0.3 * with_logits
    if name == "bce_mse_60_40":
        return 0.6 * bce + 0.4 * F.mse_loss(p, t)
    if name == "bce_mse_40_60":
        return 0.4 * bce + 0.6 * F.mse_loss(p, t)
    return 0.4 * bce + 0.3 * F.l1_loss(p, t) + 0.3 * (with_logits + F.mse_loss(sig_p, t))


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


def discriminator_accuracy(real_out: torch.Tensor, fake_out: torch.Tensor, output_kind: str = "probs",
                           mode: str = "soft") -> float:
    """Discriminator accuracy on one batch, as the D-step gate reads it.

    ``mode="soft"`` is what 3D-CGAN (cihanongun/3D-CGAN, the seed's upstream) computes:
    (mean p_real + (1 − mean p_fake)) / 2, the mean probability given to the right answer.
    ``mode="hard"`` counts decisions at p = 0.5: the fraction of the 2B outputs on the right side.

    Args:
        real_out, fake_out: discriminator outputs (B,) — probabilities or logits (``output_kind``).
        output_kind: ``"probs"`` or ``"logits"``.
        mode: ``"soft"`` or ``"hard"``.

    Returns:
        accuracy in [0, 1].
    """
    if mode not in ("soft", "hard"):
        raise ValueError(f"mode must be 'soft' or 'hard', got {mode!r}")
    if output_kind == "logits":
        real_out, fake_out = torch.sigmoid(real_out), torch.sigmoid(fake_out)
    if mode == "soft":
        return float((real_out.float().mean() + 1 - fake_out.float().mean()) / 2)
    correct = torch.cat([(real_out > 0.5).float(), (fake_out <= 0.5).float()])
    return float(correct.mean())


# --------------------------------------------------------------------------------------------------
# WGAN-GP (3D-IWGAN, SPEC §2) and the VAE's KL term
# --------------------------------------------------------------------------------------------------
def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """The WGAN-GP gradient penalty E[(‖∇ₓ̂ D(x̂)‖₂ − 1)²] (Gulrajani et al., NeurIPS 2017, arXiv 1704.00028).

    x̂ = ε·real + (1 − ε)·fake with one ε ~ U(0, 1) per sample (shape (B, 1, …, 1)), drawn on the CPU
    ``generator`` and detached from both inputs, so the penalty trains the critic only. The gradient of
    ``critic(x̂).sum()`` with respect to x̂ is taken with ``create_graph=True`` (the penalty is backpropagated),
    and its L2 norm is taken **per sample over all non-batch axes**. The original 3D-IWGAN
    (``tf.reduce_sum(tf.square(g), reduction_indices=[1])`` on (B, 32, 32, 32) grids) summed over one spatial
    axis only, penalising 32² partial norms per sample instead of one; kaolin's port fixed it.

    Args:
        critic: a module or callable mapping (B, …) to (B,) (or (B, 1)) scores, e.g. :class:`IWGANCritic`.
        real: real samples (B, …), rank ≥ 2, in the critic's input range (e.g. (B, 1, 32, 32, 32) in [−1, 1]).
        fake: generated samples of the same shape.
        generator: torch.Generator for ε.

    Returns:
        scalar tensor ≥ 0, differentiable with respect to the critic's parameters.

    Raises:
        ValueError: shapes differ, rank < 2, or an empty batch.
    """
    if real.shape != fake.shape:
        raise ValueError(f"real and fake must have the same shape (B, ...), got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}")
    if real.ndim < 2 or real.shape[0] == 0:
        raise ValueError(f"expected a non-empty batch (B, ...) with rank >= 2, got {tuple(real.shape)}")
    b = real.shape[0]
    eps = torch.rand((b,) + (1,) * (real.ndim - 1), generator=generator).to(real.device, real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    norms = torch.linalg.vector_norm(grad.reshape(b, -1), ord=2, dim=1)  # (B,): one norm per sample
    return ((norms - 1) ** 2).mean()


def wgan_critic_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """The WGAN critic loss E[D(fake)] − E[D(real)] (Arjovsky et al. 2017; 3D-IWGAN's ``d_loss`` without the GP).

    Args:
        real_scores: critic scores (B,) of real samples, unbounded.
        fake_scores: critic scores (B',) of generated samples.

    Returns:
        scalar tensor (any sign); its negative estimates the Wasserstein-1 distance.
    """
    return fake_scores.float().mean() - real_scores.float().mean()


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The WGAN generator loss −E[D(fake)] (Arjovsky et al. 2017; 3D-IWGAN's ``g_loss`` without reconstruction).

    Args:
        fake_scores: critic scores (B,) of generated samples, unbounded.

    Returns:
        scalar tensor (any sign).
    """
    return -fake_scores.float().mean()


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
