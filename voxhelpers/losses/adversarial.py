"""One adversarial loss for every GAN of the project, and the WGAN-GP gradient penalty.

:func:`adversarial_loss` is to this package what pix2pix's ``GANLoss`` is to its networks: one object-free function
that every system's step calls with a ``mode``:

* ``"vanilla"`` — binary cross-entropy on logits (Goodfellow et al. 2014; pix2pix's default);
* ``"lsgan"`` — least squares against 1 / 0 (Mao et al. 2017; X2CT-GAN's and pix2pix's recommended option);
* ``"wgangp"`` — the Wasserstein critic's signed mean (Arjovsky et al. 2017, with :func:`gradient_penalty`);
* the seed's hybrid losses (``"bce"``, ``"bce_bcewithlogits"``, ``"bce_mse_60_40"``, ``"bce_mse_40_60"``,
  ``"triple"``; :mod:`voxhelpers.losses.hybrid`), which read probabilities or logits (``output_kind``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .hybrid import HYBRID_LOSSES, hybrid_loss

ADVERSARIAL_MODES = ("vanilla", "lsgan", "wgangp", *HYBRID_LOSSES)


def adversarial_loss(prediction: torch.Tensor, target: bool | float, mode: str = "vanilla",
                     output_kind: str = "logits", variant: str = "sound") -> torch.Tensor:
    """The adversarial loss of a discriminator's (or critic's) output against "real" or "fake".

    Args:
        prediction: D's output (B,) or (B, 1, ...) (a PatchGAN's map): logits for ``"vanilla"`` / ``"lsgan"`` (LSGAN
            compares the raw output with 1 / 0), unbounded scores for ``"wgangp"``, probabilities or logits
            (``output_kind``) for the hybrids.
        target: True / 1.0 for "real", False / 0.0 for "fake". ``"wgangp"`` takes only the two ends.
        mode: one of :data:`ADVERSARIAL_MODES`.
        output_kind: for the hybrids: ``"probs"`` (D ends in a sigmoid, the seed) or ``"logits"``.
        variant: for the hybrids: ``"seed"`` (the seed's formulas verbatim) or ``"sound"``.

    Returns:
        scalar tensor: ≥ 0 for every mode but ``"wgangp"`` (E[D(fake)] for fake, −E[D(real)] for real: their sum is
        the critic's loss E[D(fake)] − E[D(real)], of either sign).

    Raises:
        ValueError: an unknown mode (the valid ones listed) or a ``"wgangp"`` target strictly between 0 and 1.
    """
    t = float(target)
    if mode == "vanilla":
        return F.binary_cross_entropy_with_logits(prediction.float(), torch.full_like(prediction.float(), t))
    if mode == "lsgan":
        return F.mse_loss(prediction.float(), torch.full_like(prediction.float(), t))
    if mode == "wgangp":
        if t not in (0.0, 1.0):
            raise ValueError(f"wgangp takes target real (1) or fake (0), got {target!r}")
        mean = prediction.float().mean()
        return -mean if t == 1.0 else mean
    if mode in HYBRID_LOSSES:
        return hybrid_loss(prediction.float(), t, mode, output_kind, variant)
    raise ValueError(f"unknown adversarial loss mode {mode!r}; expected one of {ADVERSARIAL_MODES}")


# --------------------------------------------------------------------------------------------------
# WGAN-GP (3D-IWGAN, SPEC §2)
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
    return adversarial_loss(fake_scores, False, "wgangp") + adversarial_loss(real_scores, True, "wgangp")


def wgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """The WGAN generator loss −E[D(fake)] (Arjovsky et al. 2017; 3D-IWGAN's ``g_loss`` without reconstruction).

    Args:
        fake_scores: critic scores (B,) of generated samples, unbounded.

    Returns:
        scalar tensor (any sign).
    """
    return adversarial_loss(fake_scores, True, "wgangp")
