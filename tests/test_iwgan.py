"""3D-IWGAN (SPEC §2): networks, the tanh mapping, WGAN-GP losses on analytic critics, the KL term, one step."""

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from voxhelpers.config import IWGANConfig, VAEIWGANConfig
from voxhelpers.data.io import load_weights, save_weights
from voxhelpers.losses import gradient_penalty, kl_divergence, wgan_critic_loss, wgan_generator_loss
from voxhelpers.nets import (
    VAEIWGAN,
    ImageEncoder,
    IWGANCritic,
    IWGANGenerator,
    build_network,
    count_parameters,
)
from voxhelpers.nets.iwgan import reparameterize, tanh_to_occupancy, voxels_to_tanh
from voxhelpers.systems import get_system
from voxhelpers.systems.iwgan import step as iwgan_step

CASES = [
    ("generator", lambda: IWGANGenerator()),
    ("critic", lambda: IWGANCritic()),
    ("encoder 64", lambda: ImageEncoder(image_size=64)),
    ("encoder 128", lambda: ImageEncoder()),
]


def _forward(net, B=2):
    if isinstance(net, IWGANGenerator):
        return net(torch.randn(B, net.z_dim))
    if isinstance(net, IWGANCritic):
        return net(torch.rand(B, 1, 32, 32, 32) * 2 - 1)
    return net(torch.rand(B, 3, net.image_size, net.image_size))


@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_shape_backward_roundtrip(name, make, tmp_path):
    torch.manual_seed(0)
    net = make()
    out = _forward(net)
    if isinstance(net, IWGANGenerator):
        assert out.shape == (2, 1, 32, 32, 32)
        assert -1 <= out.min() and out.max() <= 1
        total = out.sum()
    elif isinstance(net, IWGANCritic):
        assert out.shape == (2,)
        total = out.sum()
    else:
        mu, log_sigma = out
        assert mu.shape == log_sigma.shape == (2, 200)
        total = mu.sum() + log_sigma.sum()
    total.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no gradient for {missing}"
    save_weights(tmp_path / "w.safetensors", net.state_dict(), dtype="fp32")
    twin = make()
    twin.load_state_dict(load_weights(tmp_path / "w.safetensors"))
    net.eval(), twin.eval()
    torch.manual_seed(1)
    a = _forward(net)
    torch.manual_seed(1)
    b = _forward(twin)
    torch.testing.assert_close(a, b)


def test_parameter_counts_and_registry():
    # generator: Linear 200·2048 + 2048 = 411,648; BN3d(256) 512; ConvT 256→128 2,097,280 + BN 256;
    # 128→64 524,352 + BN 128; 64→32 131,104 + BN 64; 32→1 2,049 → 3,167,393 (SPEC ≈ 3.2 M)
    assert count_parameters(IWGANGenerator()) == 3_167_393
    # critic: 2,080 + 131,136 + 524,416 + 2,097,408 + Linear 2,049 = 2,757,089
    assert count_parameters(IWGANCritic()) == 2_757_089
    # encoder: convs 1,568 + 32,768 + 131,072 + 524,288 + 1,638,400; BN 128 + 256 + 512 + 800; heads 2·80,200
    assert count_parameters(ImageEncoder()) == 2_490_192
    assert count_parameters(ImageEncoder(image_size=256)) == 2_490_192  # global pooling: size-independent
    # one place builds every network from its system's config
    cfg = IWGANConfig(z_dim=16, g_channels=(8, 8, 4, 4), d_channels=(4, 4, 8, 8))
    G, D = build_network("iwgan", "generator", cfg), build_network("iwgan", "discriminator", cfg)
    assert isinstance(G, IWGANGenerator) and (G.z_dim, G.channels) == (16, (8, 8, 4, 4))
    assert isinstance(D, IWGANCritic)
    assert count_parameters(build_network("iwgan", "generator", IWGANConfig())) == 3_167_393  # paper widths
    assert count_parameters(build_network("iwgan", "discriminator", IWGANConfig())) == 2_757_089
    vae = VAEIWGANConfig(image_size=64, z_dim=16, g_channels=(8, 8, 4, 4))
    assert isinstance(build_network("vae_iwgan", "generator", vae), VAEIWGAN)
    assert isinstance(build_network("vae_iwgan", "discriminator", vae), IWGANCritic)
    assert get_system("iwgan").step is iwgan_step
    with pytest.raises(ValueError, match="unknown system 'gan3d'"):
        build_network("gan3d", "generator", cfg)
    with pytest.raises(ValueError, match="no 'encoder' network"):
        build_network("iwgan", "encoder", cfg)


def test_critic_has_no_batch_norm():
    # WGAN-GP penalises per-sample gradients; batch norm couples the samples of a batch
    norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    assert not [m for m in IWGANCritic().modules() if isinstance(m, norms)]


def test_critic_scores_do_not_depend_on_the_rest_of_the_batch():
    torch.manual_seed(0)
    D = IWGANCritic()
    x = torch.rand(3, 1, 32, 32, 32) * 2 - 1
    torch.testing.assert_close(D(x)[:1], D(x[:1]))


def test_tanh_mapping_round_trip_and_bad_input():
    v = torch.tensor([[0, 1], [1, 0]], dtype=torch.bool)
    y = voxels_to_tanh(v)
    assert y.dtype == torch.float32 and y.tolist() == [[-1.0, 1.0], [1.0, -1.0]]
    assert torch.equal(tanh_to_occupancy(y), v.float())
    assert tanh_to_occupancy(torch.tensor([-1.0, 0.0, 0.5])).tolist() == [0.0, 0.5, 0.75]
    assert voxels_to_tanh(torch.tensor([0, 1])).tolist() == [-1.0, 1.0]  # integers
    with pytest.raises(ValueError, match=r"binary occupancy in \{0, 1\}"):
        voxels_to_tanh(torch.tensor([0.0, 0.5, 1.0]))
    with pytest.raises(ValueError, match="binary"):
        voxels_to_tanh(torch.tensor([float("nan")]))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        tanh_to_occupancy(torch.tensor([1.5]))
    with pytest.raises(ValueError, match="floating-point"):
        tanh_to_occupancy(torch.tensor([1]))


class LinearCritic(nn.Module):
    """x ↦ Σ w·x per sample: its gradient with respect to x is w everywhere, whatever x is."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w.clone())

    def forward(self, x):
        return (self.w * x).flatten(1).sum(1)


def _axis1_penalty(w, B):
    # the original 3D-IWGAN: norm over axis 1 only of (B, 4, 4, 4) gradients → (B, 4, 4) partial norms
    g = w.expand(B, *w.shape[1:])
    return ((g.pow(2).sum(1).sqrt() - 1) ** 2).mean().item()


@pytest.mark.parametrize("value,norm,expected", [(0.375, 3.0, 4.0), (0.125, 1.0, 0.0)])
def test_gradient_penalty_on_a_linear_critic(value, norm, expected):
    # w = value on 4·4·4 = 64 voxels: ‖w‖ = √(64·value²) = 8·value → 3 or 1; penalty (‖w‖ − 1)² = 4 or 0
    w = torch.full((1, 4, 4, 4), value)
    assert w.norm().item() == pytest.approx(norm)
    critic = LinearCritic(w)
    g = torch.Generator().manual_seed(0)
    real, fake = torch.rand(5, 4, 4, 4, generator=g), torch.rand(5, 4, 4, 4, generator=g)
    gp = gradient_penalty(critic, real, fake, generator=g)
    assert gp.item() == pytest.approx(expected, abs=1e-6)
    # the one-axis norm of the original gives another number: √(4·0.375²) = 0.75 → 0.0625; √(4·0.125²) = 0.25 → 0.5625
    assert _axis1_penalty(w, 5) == pytest.approx({4.0: 0.0625, 0.0: 0.5625}[expected])
    # the penalty trains the critic: d(‖w‖ − 1)²/dw = 2(‖w‖ − 1)·w/‖w‖ = 2·2·0.375/3 = 0.5 per voxel (‖w‖ = 3)
    gp.backward()
    torch.testing.assert_close(critic.w.grad, torch.full_like(w, 2 * (norm - 1) * value / norm))


def test_gradient_penalty_any_rank_and_direction():
    # a non-uniform w in (B, 1, 2, 2, 2) grids and in (B, 8) vectors: penalty (‖w‖ − 1)² either way
    w = torch.tensor([1.0, -2.0, 0.0, 2.0, 0.0, 0.0, 0.0, 0.0])  # ‖w‖ = 3
    for shape in ((1, 1, 2, 2, 2), (1, 8)):
        critic = LinearCritic(w.reshape(shape))
        real = torch.zeros((3,) + shape[1:])
        assert gradient_penalty(critic, real, torch.ones_like(real)).item() == pytest.approx(4.0)
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(critic, torch.zeros(2, 8), torch.zeros(3, 8))


def test_wgan_losses_on_hand_made_scores():
    real, fake = torch.tensor([1.0, 3.0]), torch.tensor([-1.0, 0.0])
    # E[D(fake)] − E[D(real)] = −0.5 − 2 = −2.5; generator −E[D(fake)] = 0.5
    assert wgan_critic_loss(real, fake).item() == pytest.approx(-2.5)
    assert wgan_generator_loss(fake).item() == pytest.approx(0.5)


def test_kl_divergence():
    assert kl_divergence(torch.zeros(4, 200), torch.zeros(4, 200)).item() == 0.0
    # row 0: μ = (1, 0), σ = (1, 2): ½(1 + 1 − 1) − 0 = 0.5 and ½(0 + 4 − 1) − ln 2 = 0.806853 → 1.306853
    # row 1: μ = 0, σ = 1 → 0; mean over the batch = 0.653426
    mu = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    log_sigma = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    assert kl_divergence(mu, log_sigma).item() == pytest.approx((0.5 + 1.5 - math.log(2)) / 2, rel=1e-6)
    with pytest.raises(ValueError, match=r"\(B, z_dim\)"):
        kl_divergence(torch.zeros(2, 3), torch.zeros(2, 4))


def test_encoder_sample_is_the_reparameterisation():
    torch.manual_seed(0)
    enc = ImageEncoder(image_size=64, z_dim=8).eval()
    img = torch.rand(2, 3, 64, 64)
    z = enc.sample(img, generator=torch.Generator().manual_seed(3))
    mu, log_sigma = enc(img)
    eps = torch.randn(2, 8, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(z, mu + log_sigma.exp() * eps)
    torch.testing.assert_close(reparameterize(mu, log_sigma, torch.Generator().manual_seed(3)), z)


def test_bad_input_messages():
    with pytest.raises(ValueError, match=r"z must be \(B, 200\)"):
        IWGANGenerator()(torch.randn(2, 100))
    with pytest.raises(ValueError, match=r"x must be \(B, 1, 32, 32, 32\)"):
        IWGANCritic()(torch.rand(2, 32, 32, 32))
    with pytest.raises(ValueError, match=r"img must be \(B, 3, 64, 64\)"):
        ImageEncoder(image_size=64)(torch.rand(2, 3, 128, 128))
    with pytest.raises(ValueError, match=r"img must be \(B, 3, 64, 64\)"):
        ImageEncoder(image_size=64)(torch.rand(2, 1, 64, 64))
    with pytest.raises(ValueError, match="power of two >= 64"):
        ImageEncoder(image_size=96)
    with pytest.raises(ValueError, match="four positive widths"):
        IWGANGenerator(channels=(64, 32))


CFG = IWGANConfig()  # the paper's λ = 10, n_critic = 5


def _tiny():
    torch.manual_seed(0)
    G = IWGANGenerator(z_dim=8, channels=(8, 8, 4, 4))
    D = IWGANCritic(channels=(4, 4, 8, 8))
    opts = {"G": torch.optim.Adam(G.parameters(), lr=1e-3, betas=(0.5, 0.9)),
            "D": torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.9))}
    real = (torch.rand(2, 1, 32, 32, 32, generator=torch.Generator().manual_seed(1)) > 0.7).float()
    return {"G": G, "D": D}, opts, real


def _state(step, generator=None):
    """The run state a step reads: the batch index and the draw generator."""
    return SimpleNamespace(generator=generator or torch.Generator().manual_seed(0), extra={}, epoch=0, step=step)


def test_iwgan_step_updates_critic_every_batch_and_generator_every_fifth():
    models, opts, real = _tiny()
    G, D = models["G"], models["D"]
    g = torch.Generator().manual_seed(0)
    for step in (0, 1, 3, 5, 6):  # G moves at 0 and 5 only
        before_g = [p.detach().clone() for p in G.parameters()]
        before_d = [p.detach().clone() for p in D.parameters()]
        out = iwgan_step(models, opts, {"voxels": real}, CFG, _state(step, g))
        assert set(out) == {"loss_d", "loss_gp", "wasserstein", "loss_g", "g_steps"}
        assert out["g_steps"] == (1.0 if step % 5 == 0 else 0.0), step
        # every critic parameter moves except the output bias, whose gradient is identically 0: it cancels in
        # E[D(fake)] − E[D(real)] and does not enter ∇ₓD
        d_moved = {n: not torch.equal(a, p) for a, (n, p) in zip(before_d, D.named_parameters(), strict=True)}
        assert d_moved.pop("fc.bias") is False and all(d_moved.values()), step
        g_moved = [not torch.equal(a, p) for a, p in zip(before_g, G.parameters(), strict=True)]
        if step % 5 == 0:
            assert all(g_moved) and math.isfinite(out["loss_g"]), step
        else:
            assert not any(g_moved) and math.isnan(out["loss_g"]), step
        # loss_d = E[D(fake)] − E[D(real)] + 10·GP = −wasserstein + 10·loss_gp
        assert out["loss_d"] == pytest.approx(-out["wasserstein"] + 10 * out["loss_gp"], rel=1e-5, abs=1e-6)
        assert out["loss_gp"] >= 0
    assert all(p.requires_grad for p in D.parameters())  # D unfrozen after the G step


def test_iwgan_step_reads_gp_weight_and_n_critic_from_the_config():
    models, opts, real = _tiny()
    # n_critic 2: the generator steps at batches 0, 2, 4; λ = 3: loss_d = −wasserstein + 3·loss_gp
    cfg = dataclasses.replace(CFG, n_critic=2, gp_weight=3.0)
    g = torch.Generator().manual_seed(0)
    for step in (0, 1, 2, 3, 4):
        out = iwgan_step(models, opts, {"voxels": real}, cfg, _state(step, g))
        assert out["g_steps"] == (1.0 if step % 2 == 0 else 0.0) and math.isnan(out["loss_g"]) == bool(step % 2)
        assert out["loss_d"] == pytest.approx(-out["wasserstein"] + 3 * out["loss_gp"], rel=1e-5, abs=1e-6)


def test_iwgan_step_is_reproducible():
    outs = []
    for _ in range(2):
        models, opts, real = _tiny()
        outs.append(iwgan_step(models, opts, {"voxels": real}, CFG, _state(0, torch.Generator().manual_seed(5))))
    assert outs[0] == outs[1]
    # bool voxels (what VoxelDataset yields) are the same batch as float {0, 1}
    models, opts, real = _tiny()
    as_bool = iwgan_step(models, opts, {"voxels": real.bool()}, CFG, _state(0, torch.Generator().manual_seed(5)))
    assert as_bool == outs[0]


def test_iwgan_step_errors():
    models, opts, real = _tiny()
    with pytest.raises(ValueError, match="binary"):
        iwgan_step(models, opts, {"voxels": real * 0.5}, CFG, _state(0))
    with pytest.raises(ValueError, match=r"batch\['voxels'\] must be \(B, 1, 32, 32, 32\)"):
        iwgan_step(models, opts, {"voxels": real[:, 0]}, CFG, _state(0))
    with pytest.raises(ValueError, match="state.step"):
        iwgan_step(models, opts, {"voxels": real}, CFG, _state(-1))
    # λ, n_critic are validated where they are set: the config
    for bad in ({"gp_weight": -1.0}, {"n_critic": 0}):
        with pytest.raises(ValueError, match="gp_weight|n_critic"):
            IWGANConfig(**bad)
    with torch.no_grad():
        models["D"].fc.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        iwgan_step(models, opts, {"voxels": real}, CFG, _state(1))


class _SpyCritic(nn.Module):
    """Wraps a critic and keeps every input it judges."""

    def __init__(self, critic):
        super().__init__()
        self.critic, self.seen = critic, []

    def forward(self, x):
        self.seen.append(x.detach().clone())
        return self.critic(x)


def test_iwgan_augmentation_shows_the_critic_augmented_grids_with_empty_voxels_shifted_in():
    models, opts, real = _tiny()
    spy = _SpyCritic(models["D"])
    models["D"] = spy
    iwgan_step(models, opts, {"voxels": real}, CFG, _state(1))  # default: the real grids themselves
    assert torch.equal(spy.seen[0], voxels_to_tanh(real))
    spy.seen.clear()
    cfg = dataclasses.replace(CFG, augment="translate+cutout")
    before = [p.detach().clone() for p in models["G"].parameters()]
    out = iwgan_step(models, opts, {"voxels": real}, cfg, _state(0))
    seen_real = spy.seen[0]
    # in tanh space still {-1, 1}: what comes in (shifted in, cut out) is empty (−1), never the 0 of "half full"
    assert set(seen_real.unique().tolist()) <= {-1.0, 1.0}
    assert (seen_real > 0).sum() < (real > 0).sum() and not torch.equal(seen_real, voxels_to_tanh(real))
    assert math.isfinite(out["loss_g"]) and out["loss_gp"] >= 0
    assert all(not torch.equal(a, p) for a, p in zip(before, models["G"].parameters(), strict=True))  # G learned
    with pytest.raises(ValueError, match="augment must be"):
        IWGANConfig(augment="rotate")
    with pytest.raises(ValueError, match="augment_p"):
        IWGANConfig(augment="cutout", augment_p=2.0)
    with pytest.raises(ValueError, match="generation only|reconstruction system takes none"):
        VAEIWGANConfig(augment="cutout")
