"""The seed's hybrid adversarial losses (SPEC §1) and their numerically sound variants; D's accuracy gate.

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
