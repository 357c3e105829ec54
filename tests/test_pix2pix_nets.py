"""System 4's networks (SPEC §4): the seed's Pix2Pix U-Net and PatchGAN, the CRGAN generator and critic."""

import functools
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from voxhelpers.losses import gradient_penalty, wgan_critic_loss, wgan_generator_loss
from voxhelpers.nets import count_parameters
from voxhelpers.nets import crgan as crgan_nets
from voxhelpers.nets import pix2pix as pix2pix_nets
from voxhelpers.nets.crgan import CRGANCritic, CRGANGenerator, flatten_sequence
from voxhelpers.nets.pix2pix import PatchDiscriminator, Pix2PixGenerator

#: system 4's registry: its two network files
NETWORKS = {**pix2pix_nets.NETWORKS, **crgan_nets.NETWORKS}

#: small widths for the tests that backpropagate (the seed's layout, narrower)
SMALL = (8, 16, 32, 32, 32, 32)


@pytest.fixture(autouse=True)
def one_thread():
    """One thread for this module, restored after each test: its tensors are tiny, and on a busy 2-core machine two
    threads fight (the 40 steps of the learning test: 1 s with one thread, 20 s with two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# --------------------------------------------------------------------------------------------------
# Pix2Pix: shapes, range, parameter counts
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("in_channels", [1, 3])
def test_seed_networks_at_256_shapes_range_and_counts(in_channels):
    torch.manual_seed(0)
    G, D = Pix2PixGenerator(in_channels).eval(), PatchDiscriminator(in_channels).eval()
    # SPEC §4 "≈29.2 M"; by hand from the seed's layers (docstring of Pix2PixGenerator): encoder
    # 16·c_in·64 + 64 (first, no BN), then 16·a·b + b + 2b: 131,456 + 525,056 + 2,098,688 + 2 × 4,195,840;
    # decoder 4,195,840 + 8,390,144 + 4,195,072 + 1,048,960 + 262,336 + (16·128 + 1 = 2,049)
    # → 29,244,417 with RGB (first conv 3,136), 2,048 fewer with grayscale (1,088).
    assert count_parameters(G) == {3: 29_244_417, 1: 29_242_369}[in_channels]
    # PatchGAN: 16·(c_in + 1)·64 + 64, 131,456, 525,056, 2,098,688, 16·512 + 1 = 8,193
    assert count_parameters(D) == {3: 2_767_553, 1: 2_765_505}[in_channels]
    x = torch.rand(1, in_channels, 256, 256) * 2 - 1
    with torch.no_grad():
        y = G(x)
        assert y.shape == (1, 1, 256, 256)  # one-channel mask whatever the input's channels
        assert -1 <= y.min() and y.max() <= 1  # Tanh
        assert D(x, y).shape == (1, 1, 30, 30)  # SPEC §4: a 30 × 30 map at 256²
    assert sum(isinstance(m, nn.Dropout) and m.p == 0.5 for m in G.modules()) == 2
    assert G.depth == 6 and G.channels == (64, 128, 256, 512, 512, 512)


def test_any_size_divisible_by_two_to_the_depth():
    torch.manual_seed(0)
    G = Pix2PixGenerator(1, channels=SMALL).eval()  # depth 6: multiples of 64
    with torch.no_grad():
        assert G(torch.rand(2, 1, 64, 128)).shape == (2, 1, 64, 128)
    G4 = Pix2PixGenerator(3, channels=(8, 16, 32, 32)).eval()  # depth 4: multiples of 16
    with torch.no_grad():
        assert G4(torch.rand(1, 3, 48, 32)).shape == (1, 1, 48, 32)


def test_discriminator_probs_restores_the_seed_sigmoid():
    torch.manual_seed(0)
    D = PatchDiscriminator(1, channels=8, output="probs").eval()
    with torch.no_grad():
        out = D(torch.rand(3, 1, 64, 64) * 20, torch.rand(3, 1, 64, 64))
    assert out.shape == (3, 1, 6, 6)  # 64 / 8 − 2
    assert 0 <= out.min() and out.max() <= 1
    assert isinstance(D.net[-1], nn.Sigmoid)
    assert not any(isinstance(m, nn.Sigmoid) for m in PatchDiscriminator(1).modules())  # logits by default


# --------------------------------------------------------------------------------------------------
# every network: gradients reach every parameter; the registry builds them
# --------------------------------------------------------------------------------------------------
def _small_networks():
    return {
        "pix2pix_g": (Pix2PixGenerator(3, channels=SMALL), (torch.rand(2, 3, 64, 64),)),
        "pix2pix_d": (PatchDiscriminator(1, channels=8), (torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32))),
        "crgan_g": (CRGANGenerator(n_patients=3, n_stages=4, z_dim=8, embed_dim=4, hidden_dim=16, image_size=16,
                                   channels=8),
                    (torch.randn(2, 8), torch.tensor([0, 2]), torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]]))),
        "crgan_d": (CRGANCritic(n_patients=3, n_stages=4, image_size=16, channels=8),
                    (torch.rand(5, 1, 16, 16), torch.tensor([0, 1, 2, 0, 1]), torch.tensor([0, 1, 2, 3, 3]))),
    }


@pytest.mark.parametrize("name", ["pix2pix_g", "pix2pix_d", "crgan_g", "crgan_d"])
def test_gradients_reach_every_parameter_and_state_dict_round_trips(name):
    torch.manual_seed(0)
    net, inputs = _small_networks()[name]
    # a random projection, not .sum(): a sum would give a mean-subtracting norm's weights an exactly zero gradient
    out = net(*inputs)
    (out * torch.randn_like(out)).sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()
               or not p.grad.abs().sum() > 0]
    assert not missing, f"no (finite, non-zero) gradient for {missing}"
    torch.manual_seed(1)
    twin = _small_networks()[name][0]
    twin.load_state_dict(net.state_dict())
    net.eval(), twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(*inputs), twin(*inputs), rtol=0, atol=0)


def test_registry_builds_each_role_from_a_config():
    cfg = SimpleNamespace(in_channels=1, channels=SMALL, n_patients=3, n_stages=4, image_size=16, g_channels=8,
                          d_channels=8, hidden_dim=16)
    assert set(NETWORKS) == {"pix2pix", "crgan"}
    nets = {(s, r): build(cfg) for s, roles in NETWORKS.items() for r, build in roles.items()}
    assert isinstance(nets["pix2pix", "generator"], Pix2PixGenerator) and nets["pix2pix", "generator"].in_channels == 1
    assert nets["pix2pix", "discriminator"].output == "logits"
    assert nets["crgan", "generator"].image_size == 16 and isinstance(nets["crgan", "discriminator"], CRGANCritic)
    # the defaults are the seed's
    seed = SimpleNamespace(in_channels=3, n_patients=53, n_stages=6)
    assert count_parameters(NETWORKS["pix2pix"]["generator"](seed)) == 29_244_417
    assert count_parameters(NETWORKS["crgan"]["generator"](seed)) == 5_286_625


# --------------------------------------------------------------------------------------------------
# the PatchGAN's grid and receptive field
# --------------------------------------------------------------------------------------------------
def test_patchgan_receptive_field_is_70_by_perturbing_one_pixel():
    torch.manual_seed(0)
    D = PatchDiscriminator(1, channels=8).double().eval()  # eval: batch norm from running stats, no batch coupling
    img, mask = torch.rand(1, 1, 128, 128, dtype=torch.float64), torch.rand(1, 1, 128, 128, dtype=torch.float64)
    with torch.no_grad():
        ref = D(img, mask)
        assert ref.shape == (1, 1, 14, 14)  # 128 / 8 − 2
        p, q = 64, 40
        img2 = img.clone()
        img2[..., p, q] += 5.0
        changed = (D(img2, mask) - ref).abs()[0, 0] > 1e-12
    # cell i sees rows 8i − 23 … 8i + 46 (docstring): it changes iff p lies there
    rows = [i for i in range(14) if 8 * i - 23 <= p <= 8 * i + 46]
    cols = [j for j in range(14) if 8 * j - 23 <= q <= 8 * j + 46]
    expected = torch.zeros(14, 14, dtype=torch.bool)
    expected[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
    assert torch.equal(changed, expected), changed.nonzero()
    assert len(rows) == 8  # ⌈70 / 8⌉ − 1 cells overlap any interior pixel
    # the other way: the input pixels one interior cell depends on span exactly 70 × 70
    x = img.clone().requires_grad_(True)
    D(x, mask)[0, 0, 7, 7].backward()
    r, c = (x.grad[0, 0].abs() > 0).nonzero().unbind(1)
    assert (r.min().item(), r.max().item(), c.min().item(), c.max().item()) == (33, 102, 33, 102)  # 8·7 − 23, 8·7 + 46
    assert r.max() - r.min() + 1 == PatchDiscriminator.receptive_field == 70


# --------------------------------------------------------------------------------------------------
# dropout; bad input
# --------------------------------------------------------------------------------------------------
def test_dropout_is_on_in_train_and_off_in_eval():
    torch.manual_seed(0)
    G = Pix2PixGenerator(1, channels=SMALL)
    x = torch.rand(2, 1, 64, 64)
    # train: batch norm is deterministic for one batch, so two passes differ only by dropout
    assert not torch.equal(G(x), G(x))
    G.eval()
    with torch.no_grad():
        assert torch.equal(G(x), G(x))
    G0 = Pix2PixGenerator(1, channels=SMALL, dropout=0.0)
    assert torch.equal(G0(x), G0(x)) and not any(isinstance(m, nn.Dropout) for m in G0.modules())


def test_bad_channels_and_sizes_raise_clear_errors():
    G, D = Pix2PixGenerator(3, channels=SMALL), PatchDiscriminator(3, channels=8)
    with pytest.raises(ValueError, match=r"image must have 3 channel\(s\), \(B, 3, H, W\); got 1 channel\(s\) "
                                         r"\(a grayscale image; build with in_channels=1"):
        G(torch.rand(2, 1, 64, 64))
    with pytest.raises(ValueError, match=r"must have 1 channel\(s\).*got 3 channel\(s\) \(an RGB image"):
        Pix2PixGenerator(1, channels=SMALL)(torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"image must be \(B, 3, H, W\), got shape \(3, 64, 64\)"):
        G(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match=r"multiples of 2\^6 = 64 .* got 100×64"):
        G(torch.rand(2, 3, 100, 64))
    with pytest.raises(ValueError, match="bottleneck needs more than one value per channel"):
        G(torch.rand(1, 3, 64, 64))  # batch norm on a 1×1 bottleneck with one sample, in training
    with pytest.raises(ValueError, match=r"in_channels must be 1 \(grayscale, e.g. OCTA\) or 3"):
        Pix2PixGenerator(4)
    with pytest.raises(ValueError, match=r"out_channels must be 1 \(a one-channel vessel mask\), got 3"):
        Pix2PixGenerator(3, 3)
    with pytest.raises(ValueError, match=r"in_channels must be 1"):
        PatchDiscriminator(2)
    with pytest.raises(ValueError, match="output must be one of"):
        PatchDiscriminator(output="sigmoid")
    with pytest.raises(ValueError, match=r"mask must have 1 channel\(s\)"):
        D(torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64))
    with pytest.raises(ValueError, match="image and mask must have the same batch and size"):
        D(torch.rand(2, 3, 64, 64), torch.rand(2, 1, 64, 32))
    with pytest.raises(ValueError, match="at least 24 pixels"):
        D(torch.rand(2, 3, 16, 16), torch.rand(2, 1, 16, 16))


# --------------------------------------------------------------------------------------------------
# CRGAN
# --------------------------------------------------------------------------------------------------
def _crgan(image_size=64, **kw):
    torch.manual_seed(0)
    return CRGANGenerator(n_patients=5, n_stages=6, image_size=image_size, **kw).eval()


@pytest.mark.parametrize("image_size,channels", [(64, 64), (128, 16)])
def test_crgan_generator_shapes_and_range(image_size, channels):
    G = _crgan(image_size, channels=channels)
    stages = torch.tensor([[0, 1, 2], [3, 4, 5]])
    with torch.no_grad():
        x = G(torch.randn(2, 100), torch.tensor([0, 4]), stages)  # one noise per sequence
        assert x.shape == (2, 3, 1, image_size, image_size)  # (B, T, C, H, W)
        assert -1 <= x.min() and x.max() <= 1
        assert G(torch.randn(2, 3, 100), torch.tensor([0, 4]), stages).shape == x.shape  # one noise per step


def test_crgan_defaults_are_the_slides_and_counted_by_hand():
    # generator: embeddings 53·32 + 6·32; LSTM 4·256·(100 + 64 + 256) + 2·4·256; decoder 16·256·512 + 2·512,
    # 16·512·256 + 2·256, 16·256·128 + 2·128, 16·128·64 + 2·64, 16·64·1 + 1
    assert count_parameters(CRGANGenerator()) == 1_888 + 432_128 + 4_852_609 == 5_286_625
    # critic: planes (53 + 6)·64², convs 16·3·64 + 64, 16·64·128 + 2·128, 16·128·256 + 2·256, 16·256·512 + 2·512,
    # 16·512 + 1
    assert count_parameters(CRGANCritic()) == 241_664 + 2_765_633 == 3_007_297
    widths = [m.out_channels for m in CRGANGenerator().decoder if isinstance(m, nn.ConvTranspose2d)]
    assert widths == [512, 256, 128, 64, 1]  # the slides' 512 → 256 → 128 → 64 → C, 4² → 64²


def test_crgan_output_depends_on_stage_and_patient():
    G = _crgan(channels=16)
    z, patient = torch.randn(2, 100), torch.tensor([2])
    with torch.no_grad():
        per_stage = torch.cat([G(z[:1], patient, torch.tensor([[s]])) for s in range(6)], dim=1)  # (1, 6, 1, 64, 64)
        other_patient = G(z[:1], torch.tensor([3]), torch.tensor([[0]]))
        other_noise = G(z[1:], patient, torch.tensor([[0]]))
    # untrained, the image is mostly the last bias (std ~1e-4 around it), so compare with what the noise moves
    noise_gap = (other_noise[0, 0] - per_stage[0, 0]).abs().max().item()
    gaps = [(per_stage[0, s] - per_stage[0, t]).abs().max().item() for s in range(6) for t in range(s + 1, 6)]
    assert min(gaps) > 0.1 * noise_gap > 0  # same noise, same patient, different stage → a different image
    assert (other_patient[0, 0] - per_stage[0, 0]).abs().max() > 0.1 * noise_gap


def test_crgan_lstm_carries_state_forward_only():
    G = _crgan(channels=16)
    z, patient = torch.randn(2, 100), torch.tensor([1])
    with torch.no_grad():
        a = G(z[:1], patient, torch.tensor([[0, 1, 2]]))
        b = G(z[:1], patient, torch.tensor([[5, 1, 2]]))  # step 1's condition changed
        c = G(z[:1], patient, torch.tensor([[0, 1, 4]]))  # step 3's condition changed
        noise_gap = (G(z[1:], patient, torch.tensor([[0, 1, 2]]))[0, 2] - a[0, 2]).abs().max().item()
    assert (a[0, 2] - b[0, 2]).abs().max() > 0.05 * noise_gap > 0  # step 3 remembers step 1
    assert (a[0, 1] - b[0, 1]).abs().max() > 0.05 * noise_gap
    torch.testing.assert_close(a[0, :2], c[0, :2], rtol=0, atol=0)  # causal: the future does not change the past


def test_crgan_critic_is_linear_and_unbounded_and_takes_the_gradient_penalty():
    torch.manual_seed(0)
    G = CRGANGenerator(n_patients=4, n_stages=3, image_size=32, channels=16)
    D = CRGANCritic(n_patients=4, n_stages=3, image_size=32, channels=16)
    assert not any(isinstance(m, (nn.Sigmoid, nn.Tanh)) for m in D.modules())
    patient, stages = torch.tensor([0, 3]), torch.tensor([[0, 1, 2], [2, 1, 0]])
    fake = G(torch.randn(2, 100), patient, stages)  # (2, 3, 1, 32, 32)
    real = torch.rand_like(fake) * 2 - 1
    frames_real, p, s = flatten_sequence(real, patient, stages)
    frames_fake = flatten_sequence(fake, patient, stages)[0]
    assert frames_real.shape == (6, 1, 32, 32) and p.tolist() == [0, 0, 0, 3, 3, 3] and s.tolist() == [0, 1, 2, 2, 1, 0]
    scores = D(frames_real, p, s)
    assert scores.shape == (6,)
    # a linear head: scaling its weight and bias by 100 scales every score by 100 — far outside any sigmoid's (0, 1)
    head = D.net[-1]
    with torch.no_grad():
        head.weight.mul_(100), head.bias.mul_(100)
        big = D(frames_real, p, s)
    torch.testing.assert_close(big, 100 * scores.detach(), rtol=1e-4, atol=1e-4)
    assert big.abs().max() > 1
    # WGAN-GP through the package's losses, with the conditions bound: finite, ≥ 0, trains the critic only
    critic = functools.partial(D, patient=p, stage=s)
    gp = gradient_penalty(critic, frames_real, frames_fake, generator=torch.Generator().manual_seed(0))
    loss_d = wgan_critic_loss(critic(frames_real), critic(frames_fake.detach())) + 10 * gp
    assert torch.isfinite(gp) and gp >= 0
    loss_d.backward()
    assert all(prm.grad is not None and torch.isfinite(prm.grad).all() for prm in D.parameters())
    assert all(prm.grad is None for prm in G.parameters())  # the penalty and the critic loss leave G alone
    # and the generator's loss reaches G through the critic, with the sign of −E[D(fake)]
    loss_g = wgan_generator_loss(critic(frames_fake))
    torch.testing.assert_close(loss_g, -critic(frames_fake).mean())
    loss_g.backward()
    assert all(prm.grad is not None for prm in G.parameters())


def test_crgan_bad_input_raises():
    G, D = _crgan(channels=16), CRGANCritic(n_patients=5, n_stages=6)
    with pytest.raises(ValueError, match=r"stages indices must be in \[0, 6\), got min 0, max 6"):
        G(torch.randn(1, 100), torch.tensor([0]), torch.tensor([[0, 6]]))
    with pytest.raises(ValueError, match=r"patient indices must be in \[0, 5\)"):
        G(torch.randn(1, 100), torch.tensor([5]), torch.tensor([[0]]))
    with pytest.raises(ValueError, match=r"stages must be \(B, T\)"):
        G(torch.randn(1, 100), torch.tensor([0]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"z must be \(B, 100\) or \(B, T, 100\) with \(B, T\) = \(1, 2\)"):
        G(torch.randn(1, 64), torch.tensor([0]), torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match=r"x must be frames \(N, 1, 64, 64\)"):
        D(torch.rand(2, 3, 1, 64, 64), torch.tensor([0, 1]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"stage must be integer indices of shape \(2,\)"):
        D(torch.rand(2, 1, 64, 64), torch.tensor([0, 1]), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match=r"image_size must be a power of two ≥ 8"):
        CRGANGenerator(image_size=96)
    with pytest.raises(ValueError, match=r"patient must be \(2,\) and stages \(2, 3\)"):
        flatten_sequence(torch.rand(2, 3, 1, 8, 8), torch.tensor([0]), torch.zeros(2, 3, dtype=torch.long))


# --------------------------------------------------------------------------------------------------
# a tiny model that learns
# --------------------------------------------------------------------------------------------------
def _stripes(n=4, size=32, seed=0):
    """Synthetic image → mask pairs in [−1, 1]: oblique bright stripes ("vessels") over uniform noise; the mask
    is where the stripes are. Seeded, so the test is deterministic."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    masks, images = [], []
    for _ in range(n):
        a, b = torch.rand(2, generator=g)
        m = (torch.sin(xx * (0.3 + 0.4 * a) + yy * (0.2 + 0.5 * b)) > 0.6).float()
        masks.append(m)
        images.append(0.6 * m + 0.4 * torch.rand(size, size, generator=g))
    return torch.stack(images)[:, None] * 2 - 1, torch.stack(masks)[:, None] * 2 - 1


def test_tiny_generator_fits_a_few_masks_with_l1():
    # the seed's layout (dropout 0.5 on two blocks, batch norm, Tanh) at 32² with widths 16-32-64-64-64 (depth 5)
    torch.manual_seed(0)
    x, y = _stripes()
    G = Pix2PixGenerator(1, channels=(16, 32, 64, 64, 64))
    opt = torch.optim.Adam(G.parameters(), lr=2e-3, betas=(0.5, 0.999))
    losses = []
    for _ in range(40):
        loss = (G(x) - y).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    # L1 starts near 0.9 (a random Tanh against ±1 targets); 40 Adam steps bring it to ≈ 0.04 (train) / 0.06 (eval)
    assert losses[0] > 0.5
    assert losses[-1] < 0.1
    G.eval()
    with torch.no_grad():
        assert (G(x) - y).abs().mean() < 0.15
