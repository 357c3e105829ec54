"""The one adversarial loss (every mode), the seed's hybrid losses on hand-computed values and their numerically
sound variants, D's accuracy, the soft Jaccard distance."""

import math

import pytest
import torch

from voxhelpers.losses import (
    ADVERSARIAL_MODES,
    HYBRID_LOSSES,
    adversarial_loss,
    discriminator_accuracy,
    hybrid_loss,
    scaled_l1_distance,
    soft_jaccard_distance,
    wgan_critic_loss,
    wgan_generator_loss,
)


def _bce(p, t):  # binary cross-entropy of one probability
    return -(t * math.log(p) + (1 - t) * math.log(1 - p))


def _sig(x):
    return 1 / (1 + math.exp(-x))


# D outputs p = 0.8 and 0.4 against the all-ones target
P, T = (0.8, 0.4), 1.0
BCE = (_bce(0.8, 1) + _bce(0.4, 1)) / 2  # (0.2231 + 0.9163) / 2 = 0.5697
BCEWL = (_bce(_sig(0.8), 1) + _bce(_sig(0.4), 1)) / 2  # the seed's double sigmoid: σ(0.8)=0.690, σ(0.4)=0.599
MSE = ((1 - 0.8) ** 2 + (1 - 0.4) ** 2) / 2  # (0.04 + 0.36) / 2 = 0.2
L1 = ((1 - 0.8) + (1 - 0.4)) / 2  # 0.4
MSE_SIG = ((1 - _sig(0.8)) ** 2 + (1 - _sig(0.4)) ** 2) / 2
EXPECTED = {
    "bce": BCE,
    "bce_bcewithlogits": 0.7 * BCE + 0.3 * BCEWL,
    "bce_mse_60_40": 0.6 * BCE + 0.4 * MSE,
    "bce_mse_40_60": 0.4 * BCE + 0.6 * MSE,
    "triple": 0.4 * BCE + 0.3 * L1 + 0.3 * (BCEWL + MSE_SIG),
}


@pytest.mark.parametrize("name", HYBRID_LOSSES)
def test_seed_formulas_on_hand_computed_values(name):
    got = hybrid_loss(torch.tensor(P), T, name)
    assert got.item() == pytest.approx(EXPECTED[name], rel=1e-6)


@pytest.mark.parametrize("name", HYBRID_LOSSES)
def test_logits_input_gives_the_seed_value(name):
    # D returning logits x with σ(x) = p must give the same seed-formula value, computed stably
    x = torch.logit(torch.tensor(P))
    assert hybrid_loss(x, T, name, output_kind="logits").item() == pytest.approx(EXPECTED[name], rel=1e-5)


def test_sound_variant_formulas():
    x = torch.logit(torch.tensor(P))
    # BCEWithLogits on logits = BCE, so the 0.7 + 0.3 mix collapses to BCE, and triple to 0.7 BCE + 0.3 L1 + 0.3 MSE
    assert hybrid_loss(x, T, "bce_bcewithlogits", "logits", "sound").item() == pytest.approx(BCE, rel=1e-5)
    triple = 0.7 * BCE + 0.3 * L1 + 0.3 * MSE
    assert hybrid_loss(x, T, "triple", "logits", "sound").item() == pytest.approx(triple, rel=1e-5)


def test_fake_target():
    got = hybrid_loss(torch.tensor([0.25]), 0.0, "bce_mse_40_60")
    assert got.item() == pytest.approx(0.4 * _bce(0.25, 0) + 0.6 * 0.0625, rel=1e-6)


@pytest.mark.parametrize("name", HYBRID_LOSSES)
def test_never_negative_and_stable_for_extreme_logits(name):
    x = torch.tensor([-80.0, 0.0, 80.0], requires_grad=True)
    for target in (0.0, 1.0):
        loss = hybrid_loss(x, target, name, "logits", "sound")
        assert loss.item() >= 0 and math.isfinite(loss.item())
        (g,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(g).all()
    # at x = -80 the true BCE against 1 is 80; the probability path clamps log(0) at -100, the logit path is exact
    assert hybrid_loss(torch.tensor([-80.0]), 1.0, "bce", "logits").item() == pytest.approx(80.0, rel=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="unknown hybrid loss"):
        hybrid_loss(torch.tensor([0.5]), 1.0, "hinge")
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        hybrid_loss(torch.tensor([1.5]), 1.0)
    with pytest.raises(ValueError, match="NaN"):
        hybrid_loss(torch.tensor([float("nan")]), 1.0)
    with pytest.raises(ValueError, match="needs logits"):
        hybrid_loss(torch.tensor([0.5]), 1.0, "bce", "probs", "sound")
    with pytest.raises(TypeError, match="floating-point"):
        hybrid_loss(torch.tensor([1]), 1.0)


def test_discriminator_accuracy():
    # real: 0.9 right, 0.4 wrong; fake: 0.1 right, 0.7 wrong -> 2 of 4
    assert discriminator_accuracy(torch.tensor([0.9, 0.4]), torch.tensor([0.1, 0.7]), mode="hard") == 0.5
    # soft (3D-CGAN): (mean real 0.65 + (1 - mean fake 0.4)) / 2 = 0.625
    assert discriminator_accuracy(torch.tensor([0.9, 0.4]), torch.tensor([0.1, 0.7])) == pytest.approx(0.625)
    assert discriminator_accuracy(torch.tensor([2.0, 1.0]), torch.tensor([-1.0, -3.0]), "logits", "hard") == 1.0


def test_soft_jaccard_distance_hand_cases_and_binary_iou():
    """1 − Σab / Σ(a + b − ab): hand values; on binary grids it is 1 − IoU (numpy set arithmetic as the oracle)."""
    a = torch.tensor([[1.0, 1, 0, 0], [0.5, 0, 0, 0], [0, 0, 0, 0]])
    b = torch.tensor([[1.0, 0, 1, 0], [0.5, 0, 0, 0], [0, 0, 0, 0]])
    d = soft_jaccard_distance(a, b)
    assert d.shape == (3,)
    assert torch.allclose(d, torch.tensor([1 - 1 / 3, 1 - 0.25 / 0.75, 0.0]), atol=1e-5)  # empty pair: 0
    import numpy as np

    rng = np.random.default_rng(0)
    x, y = rng.random((5, 1, 8, 8, 8)) > 0.6, rng.random((5, 1, 8, 8, 8)) > 0.6
    iou = (x & y).reshape(5, -1).sum(1) / (x | y).reshape(5, -1).sum(1)
    got = soft_jaccard_distance(torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32))
    assert np.allclose(got.numpy(), 1 - iou, atol=1e-6)
    p = torch.rand(2, 1, 4, 4, 4, requires_grad=True)
    soft_jaccard_distance(p, torch.rand(2, 1, 4, 4, 4)).sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="one shape"):
        soft_jaccard_distance(torch.zeros(2, 8), torch.zeros(2, 9))



def test_scaled_l1_distance_hand_case_and_shared_mass():
    """Σ|a − b| / scale: a hand value; the same walls added to both grids leave it unchanged, while the soft Jaccard
    distance falls (why the consistency term has the l1 choice)."""
    a = torch.tensor([[1.0, 1, 0, 0], [0.5, 0, 0, 0]])
    b = torch.tensor([[1.0, 0, 1, 0], [0.25, 0, 0, 0]])
    assert torch.allclose(scaled_l1_distance(a, b, 4.0), torch.tensor([0.5, 0.0625]))
    x = torch.zeros(1, 1, 8, 8, 8)
    y = torch.zeros(1, 1, 8, 8, 8)
    x[..., 2:4, 2:4, 2:4], y[..., 3:5, 2:4, 2:4] = 1, 1  # two cubes overlapping by half
    walls = torch.zeros_like(x)
    walls[..., 0, :, :] = walls[..., -1, :, :] = 1
    xw, yw = torch.maximum(x, walls), torch.maximum(y, walls)
    assert torch.equal(scaled_l1_distance(xw, yw, 16.0), scaled_l1_distance(x, y, 16.0))  # 8 / 16
    assert float(scaled_l1_distance(x, y, 16.0)) == pytest.approx(0.5)
    assert float(soft_jaccard_distance(xw, yw)) < 0.2 * float(soft_jaccard_distance(x, y))  # 1 − 4/12 → 1 − 132/140
    p = torch.rand(2, 1, 4, 4, 4, requires_grad=True)
    scaled_l1_distance(p, torch.rand(2, 1, 4, 4, 4), torch.tensor(3.0, requires_grad=True)).sum().backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="one shape"):
        scaled_l1_distance(torch.zeros(2, 8), torch.zeros(2, 9), 1.0)
    for bad in (0.0, -1.0, float("nan"), torch.ones(2)):
        with pytest.raises(ValueError, match="scale must be one finite number > 0"):
            scaled_l1_distance(a, b, bad)

# --------------------------------------------------------------------------------------------------
# adversarial_loss: every mode on hand-worked tensors
# --------------------------------------------------------------------------------------------------
LN3 = math.log(3.0)  # σ(ln 3) = 3 / 4
ADVERSARIAL_CASES = [
    # vanilla, logits [0, ln 3]: real −log σ(x) = (ln 2 + ln 4/3) / 2 = 0.4904; fake −log(1 − σ(x)) = (ln 2 + ln 4) / 2
    ("vanilla", [0.0, LN3], True, (math.log(2) + math.log(4 / 3)) / 2),
    ("vanilla", [0.0, LN3], False, (math.log(2) + math.log(4)) / 2),
    # lsgan, raw outputs [0, 2]: against 1 ((0 − 1)² + (2 − 1)²) / 2 = 1; against 0 (0² + 2²) / 2 = 2
    ("lsgan", [0.0, 2.0], True, 1.0),
    ("lsgan", [0.0, 2.0], 0.0, 2.0),
    # wgangp, scores [1, 3]: real −E[D(x)] = −2; fake E[D(x̃)] = +2 (their sum is the critic's loss)
    ("wgangp", [1.0, 3.0], True, -2.0),
    ("wgangp", [1.0, 3.0], False, 2.0),
    ("wgangp", [1.0, 3.0], 1.0, -2.0),
]


@pytest.mark.parametrize("mode,prediction,target,expected", ADVERSARIAL_CASES)
def test_adversarial_loss_on_hand_worked_values(mode, prediction, target, expected):
    got = adversarial_loss(torch.tensor(prediction), target, mode)
    assert got.ndim == 0 and got.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", HYBRID_LOSSES)
def test_adversarial_loss_hybrid_modes_are_the_seed_formulas(name):
    # the hybrids through the one entry point: D's probabilities [0.8, 0.4] against "real" give the values above
    assert adversarial_loss(torch.tensor(P), True, name, "probs", "seed").item() == pytest.approx(EXPECTED[name],
                                                                                                  rel=1e-6)
    x = torch.logit(torch.tensor(P))  # logits with σ(x) = p: the same value, the stable way
    assert adversarial_loss(x, 1.0, name, "logits", "seed").item() == pytest.approx(EXPECTED[name], rel=1e-5)


def test_adversarial_modes_and_patch_outputs():
    assert ADVERSARIAL_MODES == ("vanilla", "lsgan", "wgangp", *HYBRID_LOSSES)
    # a PatchGAN's map (B, 1, 2, 2) is averaged over every score: lsgan of [0, 0, 0, 2] against 0 = (0+0+0+4) / 4 = 1
    patch = torch.tensor([0.0, 0.0, 0.0, 2.0]).reshape(1, 1, 2, 2)
    assert adversarial_loss(patch, False, "lsgan").item() == pytest.approx(1.0)
    # WGAN helpers: critic E[D(x̃)] − E[D(x)] = mean[0, −2] − mean[1, 3] = −1 − 2 = −3; generator −E[D(x̃)] = 1
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([0.0, -2.0])
    assert wgan_critic_loss(real, fake).item() == pytest.approx(-3.0)
    assert wgan_generator_loss(fake).item() == pytest.approx(1.0)
    # gradients have the sign of the objective: the critic raises real scores, lowers fake ones
    s = torch.tensor([1.0, 3.0], requires_grad=True)
    (g,) = torch.autograd.grad(adversarial_loss(s, True, "wgangp"), s)
    assert torch.equal(g, torch.tensor([-0.5, -0.5]))


def test_adversarial_loss_bad_mode_and_target():
    with pytest.raises(ValueError, match=r"unknown adversarial loss mode 'hinge'; expected one of \('vanilla', "
                                         r"'lsgan', 'wgangp', 'bce', 'bce_bcewithlogits'"):
        adversarial_loss(torch.zeros(2), True, "hinge")
    with pytest.raises(ValueError, match=r"wgangp takes target real \(1\) or fake \(0\), got 0.5"):
        adversarial_loss(torch.zeros(2), 0.5, "wgangp")
