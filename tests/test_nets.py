"""Every network: output shape and range, gradients reach every parameter, state-dict round trip, sizes."""

import pytest
import torch

from voxhelpers.config import VoxelCGANConfig
from voxhelpers.data.io import load_weights, save_weights
from voxhelpers.nets import NETWORKS, CGANDiscriminator, CGANGenerator, build_network, count_parameters
from voxhelpers.nets.iwgan import reparameterize
from voxhelpers.systems import get_system

#: every system × role of the registry, plus the cGAN's one-hot conditions and logits output, the MONAI peers and
#: Pix2Pix on RGB images
CASES = [(system, role, {}) for system in NETWORKS for role in NETWORKS[system]] + [
    ("voxel_cgan", "generator", {"n_conditions": 4, "condition": "onehot"}),
    ("voxel_cgan", "discriminator", {"n_conditions": 4, "condition": "onehot", "variant": "sound"}),
    ("vnet", "segmenter", {"network": "monai_unet"}),
    ("vnet", "segmenter", {"network": "monai_vnet"}),
    ("pix2pix", "generator", {"data": "drive"}),  # RGB fundus images (in_channels 3); OCTA's are grayscale
    ("pix2pix", "discriminator", {"data": "drive"}),
]


def _config(system, overrides):
    return get_system(system).config.for_profile("smoke", **overrides)


def _inputs(system, role, cfg, B=2):
    """A tiny batch for a network, drawn from the global RNG: what its forward takes."""
    if role == "segmenter":
        return (torch.rand(B, 1, *cfg.patch_size),)  # a windowed CT patch in [0, 1]
    if system == "pix2pix":
        image = torch.rand(B, cfg.in_channels, cfg.size, cfg.size) * 2 - 1  # an image in [-1, 1]
        return (image,) if role == "generator" else (image, torch.rand(B, 1, cfg.size, cfg.size).round() * 2 - 1)
    if system == "crgan":
        patient = torch.arange(B) % cfg.n_patients
        if role == "generator":  # noise, patient, a sequence of 3 stages
            return torch.randn(B, cfg.z_dim), patient, torch.arange(3).repeat(B, 1) % cfg.n_stages
        return torch.rand(B, 1, cfg.image_size, cfg.image_size) * 2 - 1, patient, torch.arange(B) % cfg.n_stages
    if system == "xray_ct":
        xrays = (torch.rand(B, 1, cfg.size, cfg.size), torch.rand(B, 1, cfg.size, cfg.size))  # PA, lateral
        return xrays if role == "generator" else (torch.rand(B, 1, cfg.size, cfg.size, cfg.size), *xrays)
    if role == "generator" and system == "vae_iwgan":
        return (torch.rand(B, 3, cfg.image_size, cfg.image_size),)  # renders in [0, 1]
    if role == "generator":
        z = torch.randn(B, cfg.z_dim)
        return (z, torch.arange(B) % cfg.n_conditions) if system == "voxel_cgan" else (z,)
    x = torch.rand(B, 1, 32, 32, 32).round()  # a binary grid
    return (x, torch.arange(B) % cfg.n_conditions) if system == "voxel_cgan" else (2 * x - 1,)  # the critic: {-1, 1}


def _training_forward(net, system, role, inputs):
    """The forward of training: 3D-VAE-IWGAN's model samples z = μ + σ·ε (its forward decodes μ alone, leaving
    log σ without a gradient); every other network is called as it is."""
    if system == "vae_iwgan" and role == "generator":
        mu, log_sigma = net.encoder(*inputs)
        return net.generator(reparameterize(mu, log_sigma, torch.Generator().manual_seed(0)))
    return net(*inputs)


IDS = ["-".join([s, r, *map(str, o.values())]) for s, r, o in CASES]


@pytest.mark.parametrize("system,role,overrides", CASES, ids=IDS)
def test_shape_backward_roundtrip(system, role, overrides, tmp_path):
    cfg = _config(system, overrides)
    torch.manual_seed(0)
    net = build_network(system, role, cfg)
    inputs = _inputs(system, role, cfg)
    # output shape and range for a batch of two
    out = net(*inputs)
    if role == "segmenter":
        assert out.shape == (2, cfg.n_classes, *cfg.patch_size)  # logits of background + 7 organs
    elif system == "pix2pix":
        side = cfg.size // 8 - 2  # the PatchGAN's grid: three halvings, two k4 stride-1 convolutions
        assert out.shape == ((2, 1, cfg.size, cfg.size) if role == "generator" else (2, 1, side, side))
        if role == "generator":
            assert -1 <= out.min() and out.max() <= 1  # Tanh: the mask is (out + 1) / 2
    elif system == "crgan":
        s = cfg.image_size
        assert out.shape == ((2, 3, 1, s, s) if role == "generator" else (2,))  # a frame per stage; a linear score
        if role == "generator":
            assert -1 <= out.min() and out.max() <= 1
    elif system == "xray_ct":
        side = cfg.size // 8 - 2  # the PatchGAN's grid: three halvings, two k4 stride-1 convolutions
        assert out.shape == ((2, 1, cfg.size, cfg.size, cfg.size) if role == "generator" else (2, 1, side, side, side))
        if role == "generator":
            assert 0 <= out.min() and out.max() <= 1  # a windowed CT
    elif role == "generator":
        assert out.shape == (2, 1, 32, 32, 32)
        low = 0.0 if system == "voxel_cgan" else -1.0  # the cGAN's sigmoid; the WGANs' tanh
        assert low <= out.min() and out.max() <= 1
    else:
        assert out.shape == (2,)
        if getattr(net, "output", None) == "probs":
            assert 0 <= out.min() and out.max() <= 1
    # backward: a finite gradient for every parameter
    _training_forward(net, system, role, inputs).sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no finite gradient for {missing}"
    # state-dict round trip through safetensors (fp32: exact) into a fresh build of the same config
    save_weights(tmp_path / "w.safetensors", net.state_dict(), dtype="fp32")
    torch.manual_seed(1)
    twin = build_network(system, role, cfg)
    twin.load_state_dict(load_weights(tmp_path / "w.safetensors"))
    net.eval(), twin.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(*inputs), twin(*inputs), rtol=0, atol=0)


def test_every_network_of_every_system_is_covered():
    assert {(s, r) for s, r, _ in CASES} == {(s, r) for s in NETWORKS for r in NETWORKS[s]}
    assert set(NETWORKS) == {"voxel_cgan", "iwgan", "vae_iwgan", "xray_ct", "pix2pix", "crgan", "vnet"}


def test_parameter_counts_match_the_seed():
    # SPEC §1: 6,049,185 (G) and 2,774,433 (D) with the scalar condition, also as built from the seed's config
    assert count_parameters(CGANGenerator()) == 6_049_185
    assert count_parameters(CGANDiscriminator()) == 2_774_433
    cfg = VoxelCGANConfig()
    assert count_parameters(build_network("voxel_cgan", "generator", cfg)) == 6_049_185
    assert count_parameters(build_network("voxel_cgan", "discriminator", cfg)) == 2_774_433


def test_shipped_cards_name_the_size_of_the_network_their_config_builds():
    import json
    from pathlib import Path

    from voxhelpers.inference.pretrained import card_config

    cards = sorted((Path(__file__).resolve().parents[1] / "models").glob("*/*/*.json"))
    assert cards
    for path in cards:
        card = json.loads(path.read_text())
        net = build_network(card["system"], "generator", card_config(card))
        assert count_parameters(net) == card["parameters"], path


def test_config_chooses_the_discriminators_output():
    assert build_network("voxel_cgan", "discriminator", VoxelCGANConfig(variant="seed")).output == "probs"
    assert build_network("voxel_cgan", "discriminator", VoxelCGANConfig(variant="sound")).output == "logits"


def test_batch_of_one_keeps_batch_axis():
    # the seed's squeeze() dropped the batch axis when B = 1
    G, D = CGANGenerator().eval(), CGANDiscriminator().eval()
    x = G(torch.randn(1, 200), torch.tensor([1]))
    assert x.shape == (1, 1, 32, 32, 32)
    assert D(x, torch.tensor([1])).shape == (1,)


def test_condition_changes_output():
    torch.manual_seed(0)
    G = CGANGenerator().eval()
    z = torch.randn(2, 200)
    assert not torch.allclose(G(z, torch.tensor([0, 0])), G(z, torch.tensor([1, 1])))


def test_channels_last_gives_same_result():
    torch.manual_seed(0)
    G = CGANGenerator().eval()
    z, c = torch.randn(3, 200), torch.tensor([0, 1, 0])
    ref = G(z, c)
    G.to(memory_format=torch.channels_last_3d)
    torch.testing.assert_close(G(z, c), ref, atol=1e-5, rtol=1e-4)


def test_bad_input_messages():
    G, D = CGANGenerator(), CGANDiscriminator()
    with pytest.raises(ValueError, match=r"z must be \(B, 200\)"):
        G(torch.randn(2, 100), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"condition indices must be in \[0, 2\)"):
        G(torch.randn(2, 200), torch.tensor([0, 2]))
    with pytest.raises(ValueError, match=r"x must be \(B, 1, D, H, W\)"):
        D(torch.rand(2, 32, 32, 32), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="condition must be one of"):
        CGANGenerator(condition="both")
    with pytest.raises(ValueError, match="output must be one of"):
        CGANDiscriminator(output="sigmoid")
    with pytest.raises(ValueError, match=r"unknown system 'nope'; expected one of \['crgan', 'iwgan', 'pix2pix', "):
        build_network("nope", "generator", VoxelCGANConfig())
    with pytest.raises(ValueError, match=r"no 'encoder' network; expected one of \['discriminator', 'generator'\]"):
        build_network("voxel_cgan", "encoder", VoxelCGANConfig())
