"""Issue 19's small-data remedies in the voxel cGAN's step: DiffAugment before D (real and generated), the R1
penalty (its value on a hand-computed case), a spectrally normalised D, their config checks, and exact resume."""

import numpy as np
import pytest
import torch
from torch import nn

from voxhelpers.config import voxel_cgan_config
from voxhelpers.data.shapes import make_conditions
from voxhelpers.data.synthetic import procedural_shapes
from voxhelpers.nets import CGANDiscriminator, CGANGenerator
from voxhelpers.nets.voxel_gan import MinibatchStd
from voxhelpers.systems.voxel_cgan import step
from voxhelpers.training import TrainState, fit


def _cfg(**kw):
    return voxel_cgan_config("smoke", **{"data": "procedural:car", "consistency": 0.0, "consistency_start": 0.0,
                                         "variant": "sound", **kw})


def _batch(n=4):
    return {"voxels": torch.as_tensor(make_conditions(procedural_shapes("car", n), 2), dtype=torch.float32)[:, :, None]}


def _state(models, opts):
    return TrainState(models, opts, torch.Generator().manual_seed(0), extra={"gate": {"acc": 0.0}})


class _LinearD(nn.Module):
    """D(x | c) = Σ w·x per sample (logits): ∇ₓD = w for every sample, so R1 = ‖w‖² exactly."""

    output = "logits"

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(1)) * 0.01)

    def forward(self, x, c):
        return (self.w * x).sum((1, 2, 3, 4))


def test_r1_is_the_squared_input_gradient_norm_of_d_on_real_grids():
    torch.manual_seed(0)
    models = {"G": CGANGenerator(channels=(16, 8, 8, 4)), "D": _LinearD()}
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.0) for k, m in models.items()}  # nothing moves
    expected = float(models["D"].w.detach().square().sum())
    out = step(models, opts, _batch(), _cfg(loss="bce", r1=10.0), _state(models, opts))
    assert out["loss_r1"] == pytest.approx(expected, rel=1e-5)
    out0 = step(models, opts, _batch(), _cfg(loss="bce", r1=0.0), _state(models, opts))
    assert "loss_r1" not in out0 and out["loss_d"] == pytest.approx(out0["loss_d"] + 0.5 * 10.0 * expected, rel=1e-5)


def test_robust_step_runs_with_spectral_norm_augmentation_and_r1():
    torch.manual_seed(0)
    D = CGANDiscriminator(channels=(4, 8, 8, 16), output="logits", norm="spectral")
    assert not any(isinstance(m, nn.BatchNorm3d) for m in D.modules())
    models = {"G": CGANGenerator(channels=(16, 8, 8, 4)), "D": D}
    opts = {k: torch.optim.Adam(m.parameters(), 1e-3, betas=(0.5, 0.999)) for k, m in models.items()}
    cfg = _cfg(loss="bce", augment="flip+translate+cutout", r1=1.0, d_norm="spectral")
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in models.items()}
    for _ in range(3):
        out = step(models, opts, _batch(), cfg, _state(models, opts))
    assert out["loss_r1"] > 0 and all(np.isfinite(v) for v in out.values())
    for k, m in models.items():
        assert any(not torch.equal(a, p) for a, p in zip(before[k], m.parameters(), strict=True)), k
    D.eval()
    for conv in (m for m in D.modules() if isinstance(m, nn.Conv3d)):  # spectral norm: largest singular value ≈ 1
        sigma = torch.linalg.matrix_norm(conv.weight.detach().reshape(conv.weight.shape[0], -1), ord=2)
        assert float(sigma) == pytest.approx(1.0, abs=0.15)



def test_bf16_precision_runs_both_networks_in_bf16_with_r1_and_keeps_fp32_weights():
    """``precision="bf16"`` (what ``auto`` means on a CPU with AMX): G's and D's convolutions compute in bf16 (the
    fast paths step aside), R1's double backward still works, weights and losses stay fp32; the default ``cuda``
    leaves the CPU in fp32."""
    torch.manual_seed(0)
    models = {"G": CGANGenerator(channels=(16, 8, 8, 4)),
              "D": CGANDiscriminator(channels=(4, 8, 8, 16), output="logits")}
    opts = {k: torch.optim.Adam(m.parameters(), 1e-3, betas=(0.5, 0.999)) for k, m in models.items()}
    seen = {"G": set(), "D": set()}
    for key, m in models.items():
        for conv in (c for c in m.modules() if isinstance(c, (nn.Conv3d, nn.ConvTranspose3d))):
            conv.register_forward_hook(lambda mod, i, o, k=key: seen[k].add(o.dtype))
    before = {k: [p.detach().clone() for p in m.parameters()] for k, m in models.items()}
    out = step(models, opts, _batch(), _cfg(loss="bce", r1=1.0, precision="bf16"), _state(models, opts))
    assert seen == {"G": {torch.bfloat16}, "D": {torch.bfloat16}}
    assert out["loss_r1"] > 0 and all(np.isfinite(v) for v in out.values())
    for k, m in models.items():
        assert all(p.dtype == torch.float32 for p in m.parameters())
        assert any(not torch.equal(a, p) for a, p in zip(before[k], m.parameters(), strict=True)), k
    seen = {"G": set(), "D": set()}
    step(models, opts, _batch(), _cfg(loss="bce"), _state(models, opts))
    assert _cfg().precision == "cuda" and seen == {"G": {torch.float32}, "D": {torch.float32}}

def test_augmentation_changes_what_d_sees_and_nothing_else_by_default():
    seen = []

    class Spy(_LinearD):
        def forward(self, x, c):
            seen.append(x.detach().clone())
            return super().forward(x, c)

    torch.manual_seed(0)
    models = {"G": CGANGenerator(channels=(16, 8, 8, 4)), "D": Spy()}
    opts = {k: torch.optim.SGD(m.parameters(), lr=0.0) for k, m in models.items()}
    batch = _batch()
    step(models, opts, batch, _cfg(loss="bce", pairing=False), _state(models, opts))
    assert torch.equal(seen[0], batch["voxels"][:, 0])  # default: the real grids themselves
    seen.clear()
    step(models, opts, batch, _cfg(loss="bce", pairing=False, augment="cutout"), _state(models, opts))
    assert not torch.equal(seen[0], batch["voxels"][:, 0]) and seen[0].sum() < batch["voxels"][:, 0].sum()


@pytest.mark.parametrize("kw,match", [
    ({"augment": "rotate"}, "augment must be"),
    ({"augment": "flip", "n_conditions": 6}, "conditions 0-3"),
    ({"r1": -1.0}, "r1 >= 0"),
    ({"augment_p": 1.5}, "augment_p"),
    ({"d_norm": "layer"}, "d_norm must be one of"),
    ({"d_mbstd": -1}, "d_mbstd >= 0"),
])
def test_bad_robust_options(kw, match):
    with pytest.raises(ValueError, match=match):
        _cfg(**kw)


def test_robust_run_resumes_exactly(tmp_path):
    cfg = voxel_cgan_config("smoke", data="procedural:car", n_train=4, batch_size=4, epochs=2, sample_every=100,
                            variant="sound", augment="translate+cutout", r1=1.0, d_norm="spectral")
    a = fit("voxel_cgan", cfg, tmp_path / "a", "cpu", progress=False)
    fit("voxel_cgan", cfg, tmp_path / "b", "cpu", progress=False, max_minutes=0)
    b = fit("voxel_cgan", cfg, tmp_path / "b", "cpu", progress=False)
    for key in a.models:
        for name, v in a.models[key].state_dict().items():
            assert torch.equal(v, b.models[key].state_dict()[name]), f"{key}.{name}"
    assert a.history.equals(b.history) and "loss_r1" in a.history


def test_minibatch_std_is_the_groups_mean_feature_std_by_hand():
    x = torch.zeros(4, 2, 1, 1, 2)  # groups of 2: samples (0, 2) and (1, 3), as ProGAN's reshape
    x[0, 0, 0, 0, 0], x[2, 0, 0, 0, 0] = 1.0, 3.0  # one feature spreads by 1 (population std), the others not
    x[1, 1, 0, 0, 1], x[3, 1, 0, 0, 1] = 2.0, -2.0  # spread 2
    y = MinibatchStd(2)(x)
    assert y.shape == (4, 3, 1, 1, 2) and torch.equal(y[:, :2], x)
    expected = torch.tensor([1.0, 2.0, 1.0, 2.0]) / 4  # mean of the 4 features' stds (√1e-8 ≈ 1e-4 for the others)
    assert torch.allclose(y[:, 2, 0, 0, 0], expected, atol=2e-4) and torch.equal(y[:, 2, 0, 0, 0], y[:, 2, 0, 0, 1])
    three = MinibatchStd(4)(x[:3])[:, 2].flatten(1)  # 3 samples, groups of 4 asked: one group of 3 (the divisor)
    reference = np.sqrt(x[:3].flatten(1).numpy().var(0) + 1e-8).mean()
    assert torch.allclose(three, torch.full_like(three, float(reference)), atol=1e-6)
    assert MinibatchStd(4)(x[:1])[:, 2].abs().max() == 0  # one sample: no spread
    with pytest.raises(ValueError, match="group_size"):
        MinibatchStd(0)


def test_minibatch_std_lets_d_tell_a_collapsed_batch_from_a_varied_one():
    """A D that sees only the minibatch-std channel separates 8 copies of one grid from 8 different grids (a learnt
    threshold). Without the layer no D can: the varied batch's first grid is the collapsed batch's grid itself."""
    torch.manual_seed(0)
    varied = torch.as_tensor(procedural_shapes("car", 8), dtype=torch.float32)[:, None]
    collapsed = varied[:1].expand(8, -1, -1, -1, -1).contiguous()
    D = CGANDiscriminator(channels=(4, 8, 8, 16), output="logits", mbstd=4)
    assert isinstance(D.net[-2], MinibatchStd) and D.net[-1].in_channels == 17
    opt = torch.optim.Adam(D.parameters(), 1e-2)
    c = torch.zeros(8, dtype=torch.long)
    for _ in range(60):
        loss = nn.functional.softplus(-D(varied, c)).mean() + nn.functional.softplus(D(collapsed, c)).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    D.eval()
    with torch.no_grad():
        assert D(varied, c).min() > D(collapsed, c).max()
