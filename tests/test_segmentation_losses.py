"""Segmentation losses of system 5 on hand-worked tensors, their range under any weights, gradients, and MONAI."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from voxhelpers.losses.segmentation import (
    class_weights_from_labels,
    dice_focal_loss,
    focal_loss,
    soft_dice,
    soft_dice_loss,
)

# One sample, 3 classes, 4 voxels (shape (1, 3, 1, 1, 4)). Logits (ln 2, 0, 0) everywhere → softmax p = (1/2, 1/4,
# 1/4) at every voxel. Target [0, 1, 1, 2].
LOGITS = torch.tensor([math.log(2.0), 0.0, 0.0]).reshape(1, 3, 1, 1, 1).expand(1, 3, 1, 1, 4).contiguous()
TARGET = torch.tensor([0, 1, 1, 2]).reshape(1, 1, 1, 4)
# class 0: I = 1/2,          P = 4 · 1/2 = 2, G = 1 → D0 = 2 · 1/2 / 3 = 1/3
# class 1: I = 2 · 1/4 = 1/2, P = 1,           G = 2 → D1 = 1 / 3       = 1/3
# class 2: I = 1/4,          P = 1,           G = 1 → D2 = (1/2) / 2   = 1/4
DICE = (1 / 3, 1 / 3, 1 / 4)
NO_SMOOTH = {"smooth_nr": 0.0, "smooth_dr": 0.0}
# focal, γ = 2: voxel 0 has p_t = 1/2 → (1/2)² · ln 2 = 0.17329; voxels 1-3 have p_t = 1/4 → (3/4)² · ln 4 = 0.77979
FL0, FL1 = 0.25 * math.log(2), 0.5625 * math.log(4)


def test_soft_dice_hand_worked():
    assert torch.allclose(soft_dice(LOGITS, TARGET, **NO_SMOOTH), torch.tensor([DICE]))


def test_soft_dice_loss_hand_worked():
    # equal weights: mean of 1 − D = (2/3 + 2/3 + 3/4) / 3 = 25/36 = 0.69444
    assert soft_dice_loss(LOGITS, TARGET, **NO_SMOOTH).item() == pytest.approx(25 / 36)
    # w = (0, 1, 3): (1 · 2/3 + 3 · 3/4) / (0 + 1 + 3) = (2/3 + 9/4) / 4 = 35/48 = 0.72917
    assert soft_dice_loss(LOGITS, TARGET, weight=[0, 1, 3], **NO_SMOOTH).item() == pytest.approx(35 / 48)
    # no background, and its weight (100) drops out: (2/3 + 3/4) / 2 = 17/24
    loss = soft_dice_loss(LOGITS, TARGET, weight=[100, 1, 1], include_background=False, **NO_SMOOTH)
    assert loss.item() == pytest.approx(17 / 24)
    # a (B, 1, *S) target is the same label map
    assert soft_dice_loss(LOGITS, TARGET[:, None], **NO_SMOOTH).item() == pytest.approx(25 / 36)


def test_labelled_mask_drops_a_class_from_numerator_and_weights():
    # two copies of the sample; class 2 not annotated in the second one; w = (1, 1, 2)
    logits, target = LOGITS.repeat(2, 1, 1, 1, 1), TARGET.repeat(2, 1, 1, 1)
    labelled = torch.tensor([[True, True, True], [True, True, False]])
    # numerator 2 · (2/3 + 2/3 + 2 · 3/4) − 2 · 3/4 = 2 · 17/6 − 3/2 = 25/6; weight sum 2 · 4 − 2 = 6 → 25/36
    loss = soft_dice_loss(logits, target, weight=[1, 1, 2], labelled=labelled, **NO_SMOOTH)
    assert loss.item() == pytest.approx(25 / 36)
    # nothing labelled: 0, and still differentiable
    logits = logits.clone().requires_grad_()
    zero = soft_dice_loss(logits, target, labelled=torch.zeros(2, 3, dtype=torch.bool))
    zero.backward()
    assert zero.item() == 0.0 and torch.equal(logits.grad, torch.zeros_like(logits))


def test_marginal_losses_hand_worked():
    # class 2 not annotated in this patient: its voxel is background in the label map, target [0, 1, 1, 0]; the
    # marginal losses count p_0 + p_2 = 3/4 as the background's probability at every voxel
    target = torch.tensor([0, 1, 1, 0]).reshape(1, 1, 1, 4)
    labelled = torch.tensor([[True, True, False]])
    # focal γ = 2: background voxels (1/4)² ln(4/3), class-1 voxels FL1 as before
    fl_bg = 0.0625 * math.log(4 / 3)
    assert focal_loss(LOGITS, target, labelled=labelled).item() == pytest.approx((2 * fl_bg + 2 * FL1) / 4)
    # plain: background voxels p_t = 1/2 → FL0
    assert focal_loss(LOGITS, target).item() == pytest.approx((2 * FL0 + 2 * FL1) / 4)
    # Dice: class 0 I = 2 · 3/4, P = 4 · 3/4, G = 2 → 3/5; class 1 1/3; class 2 dropped → (2/5 + 2/3) / 2 = 8/15
    loss = soft_dice_loss(LOGITS, target, labelled=labelled, marginal=True, **NO_SMOOTH)
    assert loss.item() == pytest.approx(8 / 15)
    assert soft_dice(LOGITS, target, **NO_SMOOTH, marginal=labelled)[0, :2].tolist() == pytest.approx([3 / 5, 1 / 3])
    with pytest.raises(ValueError, match="needs the labelled mask"):
        soft_dice_loss(LOGITS, target, marginal=True)
    with pytest.raises(ValueError, match="bool mask"):
        focal_loss(LOGITS, target, labelled=torch.ones(1, 2, dtype=torch.bool))


def test_marginal_losses_do_not_push_an_unannotated_organ_to_background():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 3, 4, 5, generator=gen)
    target = torch.randint(0, 4, (2, 3, 4, 5), generator=gen)
    target[1][target[1] == 3] = 0  # class 3 is not drawn in the second patient: its voxels read background
    labelled = torch.tensor([[True, True, True, True], [True, True, True, False]])
    # moving mass between background and the unannotated class at the second patient's background voxels ...
    swapped = logits.clone()
    bg = target[1] == 0
    swapped[1, 0][bg], swapped[1, 3][bg] = logits[1, 3][bg], logits[1, 0][bg]
    kw = {"weight": [0.5, 1, 2, 3], "alpha": [1, 2, 2, 2], "labelled": labelled}
    # ... changes nothing for the marginal loss, and changes the plain one (it would teach "not oesophagus")
    assert dice_focal_loss(swapped, target, marginal=True, **kw).item() == pytest.approx(
        dice_focal_loss(logits, target, marginal=True, **kw).item(), rel=1e-6)
    assert dice_focal_loss(swapped, target, **kw).item() != pytest.approx(dice_focal_loss(logits, target, **kw).item())
    # every class annotated: the marginal losses are the plain ones
    everywhere = torch.ones(2, 4, dtype=torch.bool)
    assert focal_loss(logits, target, labelled=everywhere).item() == pytest.approx(focal_loss(logits, target).item())
    assert soft_dice_loss(logits, target, labelled=everywhere, marginal=True).item() == pytest.approx(
        soft_dice_loss(logits, target, labelled=everywhere).item())
    # gradients stay finite; at the second patient's background voxels the background and the unannotated class
    # move together, in proportion to their probabilities (p_3 / p_0): neither is pushed against the other
    x = logits.clone().requires_grad_()
    focal_loss(x, target, labelled=labelled).backward()
    assert torch.isfinite(x.grad).all()
    r = x.grad[1, 3][bg] / x.grad[1, 0][bg]
    assert torch.allclose(r, torch.exp(logits[1, 3][bg] - logits[1, 0][bg]), rtol=1e-4)


def test_focal_loss_hand_worked():
    # α = None: (FL0 + 3 FL1) / 4 = (0.17329 + 3 · 0.77979) / 4 = 0.62817
    assert focal_loss(LOGITS, TARGET).item() == pytest.approx((FL0 + 3 * FL1) / 4)
    # α = (1, 2, 3): (1 · FL0 + 2 · 2 FL1 + 3 · FL1) / 4
    assert focal_loss(LOGITS, TARGET, alpha=[1, 2, 3]).item() == pytest.approx((FL0 + 7 * FL1) / 4)
    # scalar α scales every class (the seed's α = 0.25)
    assert focal_loss(LOGITS, TARGET, alpha=0.25).item() == pytest.approx(0.25 * (FL0 + 3 * FL1) / 4)
    # γ = 0, α = None: the cross-entropy (ln 2 + 3 ln 4) / 4
    assert focal_loss(LOGITS, TARGET, gamma=0).item() == pytest.approx((math.log(2) + 3 * math.log(4)) / 4)


def test_dice_focal_combination():
    loss = dice_focal_loss(LOGITS, TARGET, weight=[0, 1, 3], alpha=0.25, lambda_dice=2.0, lambda_focal=0.5,
                           **NO_SMOOTH)
    assert loss.item() == pytest.approx(2.0 * 35 / 48 + 0.5 * 0.25 * (FL0 + 3 * FL1) / 4)


def test_perfect_prediction_is_zero():
    target = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]]).reshape(2, 1, 2, 2)
    logits = 60.0 * F.one_hot(target, 4).movedim(-1, 1).float()
    assert soft_dice_loss(logits, target).item() < 1e-6
    assert focal_loss(logits, target).item() < 1e-6
    assert dice_focal_loss(logits, target, weight=[0.26, 22.53, 22.53, 26.21], alpha=0.25).item() < 1e-6


def test_never_negative_never_above_one_for_any_weights():
    # the seed's BraTS weights multiplied the Dice score and drove its loss to −4.47; here any weights stay in [0, 1]
    gen = torch.Generator().manual_seed(0)
    for trial in range(100):
        b, c = 1 + trial % 3, 2 + trial % 4
        logits = 10 * torch.randn(b, c, 3, 3, 2, generator=gen) * torch.rand(1, generator=gen)
        target = torch.randint(0, c, (b, 3, 3, 2), generator=gen)
        weight = torch.rand(c, generator=gen) * 30 * (torch.rand(c, generator=gen) > 0.3)
        labelled = torch.rand(b, c, generator=gen) > 0.3
        smooth_dr = float(torch.rand(1, generator=gen))
        loss = soft_dice_loss(logits, target, weight=weight, include_background=bool(trial % 2),
                              smooth_nr=smooth_dr * float(torch.rand(1, generator=gen)), smooth_dr=smooth_dr,
                              labelled=labelled)
        assert 0.0 <= loss.item() <= 1.0 + 1e-6, (trial, loss.item())
        assert focal_loss(logits, target, alpha=weight, gamma=float(trial % 3)).item() >= 0.0
    seed_weights = [0.26, 22.53, 22.53, 26.21]
    logits, target = torch.randn(2, 4, 4, 4, 4, generator=gen), torch.randint(0, 4, (2, 4, 4, 4), generator=gen)
    assert 0.0 <= soft_dice_loss(logits, target, weight=seed_weights).item() <= 1.0


def test_gradient_flows():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, 4, requires_grad=True)
    target = torch.randint(0, 3, (2, 4, 4, 4))
    dice_focal_loss(logits, target, weight=[0.5, 1, 2], alpha=[0.25, 1, 1]).backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # saturated logits (p_t rounds to 1) with γ < 1: a zero gradient, not NaN
    saturated = (60.0 * F.one_hot(target, 3).movedim(-1, 1).float()).requires_grad_()
    focal_loss(saturated, target, gamma=0.5).backward()
    assert torch.equal(saturated.grad, torch.zeros_like(saturated))
    # the gradient lowers the loss
    with torch.no_grad():
        before = dice_focal_loss(logits, target).item()
        after = dice_focal_loss(logits - 0.5 * logits.grad / logits.grad.norm(), target).item()
    assert after < before


@pytest.mark.parametrize("include_background", [True, False])
def test_dice_matches_monai(include_background):
    monai_losses = pytest.importorskip("monai.losses")
    torch.manual_seed(1)
    logits, target = torch.randn(3, 5, 6, 5, 4, dtype=torch.float64), torch.randint(0, 5, (3, 6, 5, 4))
    ours = soft_dice_loss(logits, target, include_background=include_background)
    ref = monai_losses.DiceLoss(softmax=True, to_onehot_y=True, include_background=include_background)(
        logits, target[:, None])
    assert ours.item() == pytest.approx(ref.item(), abs=1e-6)


def test_focal_matches_monai_softmax_focal():
    monai_losses = pytest.importorskip("monai.losses")
    torch.manual_seed(2)
    logits, target = torch.randn(2, 4, 5, 5, 3), torch.randint(0, 4, (2, 5, 5, 3))
    for alpha in (None, [0.5, 1.0, 2.0, 3.0]):
        focal = monai_losses.FocalLoss(use_softmax=True, to_onehot_y=True, gamma=2.0, alpha=alpha)
        ref = focal(logits, target[:, None])
        # MONAI's mean runs over the C one-hot channels too (all but one of them 0 per voxel): ours = C · MONAI
        assert focal_loss(logits, target, alpha=alpha).item() == pytest.approx(4 * ref.item(), abs=1e-6)
    # γ = 0: the cross-entropy
    assert focal_loss(logits, target, gamma=0).item() == pytest.approx(F.cross_entropy(logits, target).item(),
                                                                       abs=1e-6)


def test_class_weights_from_labels():
    # 4 voxels: 3 of class 0, 1 of class 1, none of class 2 → C_present = 2, N = 4
    # w0 = 4 / (2 · 3) = 2/3, w1 = 4 / (2 · 1) = 2, w2 = 0 (absent, with a warning); Σ N_c w_c = 3 · 2/3 + 2 = N
    with pytest.warns(UserWarning, match=r"\[2\]"):
        w = class_weights_from_labels(torch.tensor([[0, 0], [0, 1]]), 3)
    assert torch.allclose(w, torch.tensor([2 / 3, 2.0, 0.0]))
    # volumes of different sizes, numpy and torch mixed: counts (3, 2, 1), N = 6, C = 3 → 6 / (3 N_c)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = class_weights_from_labels([np.array([0, 0, 1], dtype=np.uint8), torch.tensor([[0, 1, 2]])], 3)
    assert torch.allclose(w, torch.tensor([2 / 3, 1.0, 2.0]))
    with pytest.raises(TypeError):
        class_weights_from_labels(np.zeros(3), 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        class_weights_from_labels(np.array([0, 2]), 2)


def test_input_checks():
    with pytest.raises(TypeError, match="integer"):
        soft_dice_loss(LOGITS, TARGET.float())
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        focal_loss(LOGITS, TARGET + 1)
    with pytest.raises(ValueError, match="label map"):
        soft_dice_loss(LOGITS, TARGET[..., :2])
    with pytest.raises(ValueError, match="one entry per class"):
        soft_dice_loss(LOGITS, TARGET, weight=[1, 1])
    with pytest.raises(ValueError, match=">= 0"):
        soft_dice_loss(LOGITS, TARGET, weight=[1, -1, 1])
    with pytest.raises(ValueError, match="smooth_nr <= smooth_dr"):
        soft_dice_loss(LOGITS, TARGET, smooth_nr=1.0, smooth_dr=1e-5)
    with pytest.raises(ValueError, match=r"\(1, 3\)"):
        soft_dice_loss(LOGITS, TARGET, labelled=torch.ones(1, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="gamma"):
        focal_loss(LOGITS, TARGET, gamma=-1)
    with pytest.raises(ValueError, match="C >= 2"):
        soft_dice_loss(LOGITS[:, :1], TARGET * 0)
