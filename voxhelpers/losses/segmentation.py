"""Segmentation losses for system 5 (SPEC §5): a class-weighted soft Dice loss, a softmax focal loss, both combined.

The seed (PrathamKumar125/3D-Segmentation-Model_VNET) trained with a Dice loss whose class weights multiplied the
Dice *score* (so the loss went to −4.47) plus a categorical focal loss (α 0.25, γ 2). Here the weights apply to the
per-class *loss* 1 − Dice_c, so the weighted Dice loss stays in [0, 1], and the focal term is the softmax
(categorical) one of Lin et al. 2017 — not the sigmoid focal term that MONAI's ``DiceFocalLoss`` uses even with
``softmax=True``.

Every loss takes raw logits (B, C, *S) — the softmax happens inside — and an integer label map (B, *S) (or
(B, 1, *S)) with values in [0, C); the one-hot encoding happens inside too. *S is (D, H, W), or (H, W) for slices.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["class_weights_from_labels", "dice_focal_loss", "focal_loss", "soft_dice", "soft_dice_loss"]


def _check_inputs(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate logits (B, C, *S) and an integer label map (B, *S) or (B, 1, *S); return float logits (float32 at
    least) and the label map as int64 (B, *S)."""
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(f"logits and target must be torch tensors, got {type(logits).__name__} and "
                        f"{type(target).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a float tensor (B, C, *S), got dtype {logits.dtype}")
    if logits.ndim < 3 or logits.shape[1] < 2:
        raise ValueError(f"logits must be (B, C, *S) with C >= 2 classes (background included), got "
                         f"{tuple(logits.shape)}")
    if target.ndim == logits.ndim and target.shape[1] == 1:
        target = target[:, 0]
    if tuple(target.shape) != (logits.shape[0], *logits.shape[2:]):
        raise ValueError(f"target must be an integer label map (B, *S) = {(logits.shape[0], *logits.shape[2:])} "
                         f"or (B, 1, *S) matching logits {tuple(logits.shape)}, got {tuple(target.shape)}")
    if target.is_floating_point() or target.is_complex():
        raise TypeError(f"target must hold integer class indices (dtype int or bool), got {target.dtype}; "
                        f"use target.long() on a label map, never a one-hot or a probability map")
    c = logits.shape[1]
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= c):
        raise ValueError(f"target values must be class indices in [0, {c}), got range "
                         f"[{int(target.min())}, {int(target.max())}]")
    if logits.dtype not in (torch.float32, torch.float64):
        logits = logits.float()  # half / bfloat16: the sums over a volume need float32
    return logits, target.long()


def _class_vector(values, n: int, name: str, like: torch.Tensor) -> torch.Tensor:
    """``values`` (a length-``n`` sequence, array or tensor of non-negative finite numbers) as a (n,) tensor."""
    v = torch.as_tensor(values, dtype=like.dtype, device=like.device).reshape(-1)
    if v.numel() != n:
        raise ValueError(f"{name} must have one entry per class ({n}, background included), got {v.numel()}")
    if not torch.isfinite(v).all() or (v < 0).any():
        raise ValueError(f"{name} must be finite and >= 0, got {v.tolist()}")
    return v


def _merge_mask(labelled, b: int, c: int, device) -> torch.Tensor:
    """(B, C) bool: the classes whose probability counts as background in sample b — background itself and every
    class not annotated there (``labelled`` (B, C) bool, True = annotated)."""
    labelled = torch.as_tensor(labelled, device=device)
    if tuple(labelled.shape) != (b, c) or labelled.dtype != torch.bool:
        raise ValueError(f"labelled must be a (B, C) = {(b, c)} bool mask (True where class c is annotated in "
                         f"sample b), got {labelled.dtype} {tuple(labelled.shape)}")
    merge = ~labelled
    merge[:, 0] = True
    return merge


def soft_dice(logits: torch.Tensor, target: torch.Tensor, smooth_nr: float = 1e-5,
              smooth_dr: float = 1e-5, marginal: torch.Tensor | None = None) -> torch.Tensor:
    """Soft Dice score per sample and class of softmax probabilities against a label map.

    D_bc = (2 Σ p·g + smooth_nr) / (Σ p + Σ g + smooth_dr), sums over the voxels of sample b, p = softmax(logits)
    of class c, g = [target == c] (Milletari et al. 2016, eq. 1 with a plain sum in the denominator as in MONAI).

    Args:
        logits: (B, C, *S) raw scores.
        target: (B, *S) or (B, 1, *S) integer label map in [0, C).
        smooth_nr, smooth_dr: added to numerator and denominator, ≥ 0 (MONAI's names and defaults).
        marginal: None, or a (B, C) bool ``labelled`` mask (True where class c is annotated in sample b): the
            probability of every class not annotated in sample b is then added to its background's, p'_0 = p_0 +
            Σ_{c not annotated} p_c (the marginal loss of Shi et al., MedIA 2021): background voxels of a patient
            whose oesophagus was never drawn may be oesophagus. Those classes' own scores are then meaningless (the
            losses drop them through the same mask).

    Returns:
        (B, C) scores in [0, smooth_nr / smooth_dr]; in [0, 1] when smooth_nr ≤ smooth_dr.
    """
    logits, target = _check_inputs(logits, target)
    probs = logits.softmax(1)  # (B, C, *S)
    if marginal is not None:
        merge = _merge_mask(marginal, *probs.shape[:2], probs.device)  # (B, C)
        shape = (*merge.shape, *(1,) * (probs.ndim - 2))
        probs = torch.cat([(probs * merge.reshape(shape)).sum(1, keepdim=True), probs[:, 1:]], dim=1)
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(probs.dtype)  # (B, C, *S)
    dims = tuple(range(2, logits.ndim))
    intersection = (probs * onehot).sum(dims)  # (B, C)
    denominator = probs.sum(dims) + onehot.sum(dims)  # (B, C)
    return (2.0 * intersection + smooth_nr) / (denominator + smooth_dr)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, weight=None, include_background: bool = True,
                   smooth_nr: float = 1e-5, smooth_dr: float = 1e-5,
                   labelled: torch.Tensor | None = None, marginal: bool = False) -> torch.Tensor:
    """Class-weighted soft Dice loss: Σ_bc m_bc w_c (1 − D_bc) / Σ_bc m_bc w_c, always in [0, 1].

    D_bc is :func:`soft_dice`; w_c the class weight; m_bc = 1 when class c is labelled in sample b (the
    ``labelled`` mask; a class not annotated in a patient then adds nothing to the numerator nor to the weight
    sum). The weights scale each class's *loss*, never its score: the seed multiplied the score and reached −4.47.
    With equal weights, ``labelled=None`` and ``include_background=True`` this is MONAI's
    ``DiceLoss(softmax=True, to_onehot_y=True)`` (mean over samples and classes). A class absent from a labelled
    sample counts too: its Dice is ≈ 1 only when the network predicts (almost) none of it.

    Args:
        logits: (B, C, *S) raw scores (no softmax).
        target: (B, *S) or (B, 1, *S) integer label map in [0, C).
        weight: per-class weights (C,), ≥ 0, background included (index = label), e.g. from
            :func:`class_weights_from_labels`; None = all 1.
        include_background: whether class 0 takes part (MONAI's name); when False, class 0 and its weight drop out.
        smooth_nr, smooth_dr: see :func:`soft_dice`; smooth_nr ≤ smooth_dr keeps the loss ≥ 0.
        labelled: (B, C) bool, True where class c is annotated in sample b; None = every class everywhere.
        marginal: with ``labelled``, the background's Dice takes the probabilities of sample b's unannotated
            classes as background too (:func:`soft_dice`'s ``marginal``); False: those voxels are plain background,
            so the background term still pushes an unannotated organ's probability down.

    Returns:
        scalar tensor in [0, 1]; 0 (still attached to the graph) when no labelled class has a positive weight.

    Raises:
        ValueError: shapes, labels out of range, negative weights, smooth_nr > smooth_dr.
        TypeError: float target, non-float logits.
    """
    if not 0 <= smooth_nr <= smooth_dr:
        raise ValueError(f"need 0 <= smooth_nr <= smooth_dr (else an empty class can score Dice > 1 and the loss go "
                         f"negative), got smooth_nr={smooth_nr}, smooth_dr={smooth_dr}")
    if marginal and labelled is None:
        raise ValueError("marginal=True needs the labelled mask (which classes each sample annotates)")
    dice = soft_dice(logits, target, smooth_nr, smooth_dr, labelled if marginal else None)  # (B, C)
    b, c = dice.shape
    w = torch.ones(c, dtype=dice.dtype, device=dice.device) if weight is None else _class_vector(
        weight, c, "weight", dice)
    m = torch.ones_like(dice)
    if labelled is not None:
        labelled = torch.as_tensor(labelled, device=dice.device)
        if tuple(labelled.shape) != (b, c):
            raise ValueError(f"labelled must be a (B, C) = {(b, c)} mask, got {tuple(labelled.shape)}")
        m = labelled.to(dice.dtype)
    wm = w[None, :] * m  # (B, C)
    if not include_background:
        wm = wm[:, 1:]
        dice = dice[:, 1:]
    total = wm.sum()
    if total <= 0:
        return dice.sum() * 0.0  # nothing to learn from, but keep the graph for backward()
    return (wm * (1.0 - dice)).sum() / total


def focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha=None, gamma: float = 2.0,
               labelled: torch.Tensor | None = None) -> torch.Tensor:
    """Softmax (categorical) focal loss averaged over voxels: mean of −α_t (1 − p_t)^γ log p_t.

    p_t is the softmax probability of the true class at a voxel and α_t its class's α (Lin et al., "Focal Loss for
    Dense Object Detection", ICCV 2017, eq. 5, in its multi-class form). γ = 0 with α = None is the cross-entropy.
    A scalar α scales every class alike — the seed's ``CategoricalFocalLoss(alpha=0.25)`` of segmentation_models_3D;
    MONAI's ``FocalLoss(use_softmax=True)`` instead gives a scalar α to the foreground and 1 − α to class 0, and its
    mean divides by C as well (the loss is spread over C one-hot channels), i.e. MONAI = this / C for α = None.

    Args:
        logits: (B, C, *S) raw scores.
        target: (B, *S) or (B, 1, *S) integer label map in [0, C).
        alpha: None (1 for every class), a scalar ≥ 0, or per-class (C,) ≥ 0 weights (background included).
        gamma: focusing exponent ≥ 0 (the seed: 2).
        labelled: None, or (B, C) bool, True where class c is annotated in sample b: the marginal focal loss. At a
            background voxel of sample b, p_t is then p_0 + Σ_{c not annotated in b} p_c (Shi et al., "Marginal
            loss and exclusion loss for partially supervised multi-organ segmentation", MedIA 2021): an organ nobody
            drew in that patient is not taught to be background. None: every voxel's label is the truth.

    Returns:
        scalar tensor ≥ 0 (in nats), the mean over the B · |S| voxels.

    Raises:
        ValueError: shapes, labels out of range, negative α or γ.
    """
    if not gamma >= 0:
        raise ValueError(f"gamma must be >= 0, got {gamma!r}")
    logits, target = _check_inputs(logits, target)
    log_p = logits.log_softmax(1)  # (B, C, *S)
    log_pt = log_p.gather(1, target.unsqueeze(1)).squeeze(1)  # (B, *S), log p of the true class
    if labelled is not None:  # background voxels: log of the background's and the unannotated classes' summed p
        merge = _merge_mask(labelled, *log_p.shape[:2], log_p.device)
        merged = log_p.masked_fill(~merge.reshape(*merge.shape, *(1,) * (log_p.ndim - 2)), float("-inf"))
        log_pt = torch.where(target == 0, merged.logsumexp(1), log_pt)
    if gamma == 0:
        loss = -log_pt  # (B, *S)
    else:  # 1 − p_t, kept off 0 so that (1 − p_t)^γ has a finite gradient for γ < 1 where p_t rounds to 1
        loss = -(-torch.expm1(log_pt)).clamp_min(torch.finfo(log_pt.dtype).tiny).pow(gamma) * log_pt  # (B, *S)
    if alpha is not None:
        a = torch.as_tensor(alpha, dtype=loss.dtype, device=loss.device)
        if a.ndim == 0:
            if not (torch.isfinite(a) and a >= 0):
                raise ValueError(f"alpha must be >= 0, got {float(a)}")
            loss = a * loss
        else:
            loss = _class_vector(a, logits.shape[1], "alpha", loss)[target] * loss  # α of each voxel's class
    return loss.mean()


def dice_focal_loss(logits: torch.Tensor, target: torch.Tensor, weight=None, alpha=None, gamma: float = 2.0,
                    lambda_dice: float = 1.0, lambda_focal: float = 1.0, include_background: bool = True,
                    smooth_nr: float = 1e-5, smooth_dr: float = 1e-5,
                    labelled: torch.Tensor | None = None, marginal: bool = False) -> torch.Tensor:
    """λ_dice · :func:`soft_dice_loss` + λ_focal · :func:`focal_loss`, the seed's objective made sound.

    The seed used class weights on the Dice term and a categorical focal term with α 0.25, γ 2. ``labelled`` drops
    unannotated classes from the Dice term; with ``marginal`` both terms also count their probability as background
    (a partially labelled patient's background may hold them); without it the focal term takes every voxel's label
    as the truth (a class not annotated in a patient is background there). ``include_background``: Dice term only.

    Args:
        logits: (B, C, *S) raw scores.
        target: (B, *S) or (B, 1, *S) integer label map in [0, C).
        weight: per-class Dice weights (C,) ≥ 0, or None.
        alpha: focal α: None, scalar or (C,).
        gamma: focal γ ≥ 0.
        lambda_dice, lambda_focal: term weights ≥ 0.
        include_background, smooth_nr, smooth_dr, labelled, marginal: see :func:`soft_dice_loss`.

    Returns:
        scalar tensor ≥ 0 (≤ λ_dice + λ_focal · the focal term).
    """
    if lambda_dice < 0 or lambda_focal < 0:
        raise ValueError(f"lambda_dice and lambda_focal must be >= 0, got {lambda_dice} and {lambda_focal}")
    dice = soft_dice_loss(logits, target, weight, include_background, smooth_nr, smooth_dr, labelled, marginal)
    return lambda_dice * dice + lambda_focal * focal_loss(logits, target, alpha, gamma, labelled if marginal else None)


def class_weights_from_labels(labels, n_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights N / (C_present · N_c) counted on training label maps.

    N is the number of voxels, N_c those of class c, C_present the number of classes that occur (scikit-learn's
    "balanced" rule, so that Σ_c N_c w_c = N: the voxel-average weight is 1). A class that never occurs gets
    weight 0 and a warning: it has nothing to be weighted by, and a zero weight keeps it out of
    :func:`soft_dice_loss`. Count on the training split only (the seed copied BraTS weights instead).

    Args:
        labels: an integer label map (tensor or array, any shape) or a sequence of them (volumes may differ in size).
        n_classes: C, background included.

    Returns:
        (C,) float32 tensor on the CPU.

    Raises:
        ValueError: n_classes < 2, labels outside [0, C), no voxels at all.
        TypeError: float label maps.
    """
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2 (background included), got {n_classes}")
    maps = labels if isinstance(labels, Sequence) and not isinstance(labels, str) else [labels]
    counts = np.zeros(n_classes, dtype=np.int64)
    for i, lab in enumerate(maps):
        a = lab.detach().cpu().numpy() if isinstance(lab, torch.Tensor) else np.asarray(lab)
        if a.dtype.kind not in "biu":
            raise TypeError(f"label map {i} must hold integer class indices, got dtype {a.dtype}")
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(f"label map {i} has values in [{a.min()}, {a.max()}], expected [0, {n_classes})")
        counts += np.bincount(a.ravel().astype(np.int64), minlength=n_classes)
    total = counts.sum()
    if total == 0:
        raise ValueError("no voxels in labels")
    present = counts > 0
    if not present.all():
        warnings.warn(f"classes {np.flatnonzero(~present).tolist()} never occur in the label maps: weight 0",
                      stacklevel=2)
    weights = np.zeros(n_classes)
    weights[present] = total / (present.sum() * counts[present])
    return torch.as_tensor(weights, dtype=torch.float32)
