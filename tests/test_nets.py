"""Every network: output shape and range, gradients reach every parameter, state-dict round trip, sizes."""

import pytest
import torch

from voxhelpers.io import load_weights, save_weights
from voxhelpers.nets import CGANDiscriminator, CGANGenerator, build_discriminator, build_generator, count_parameters

CASES = [
    ("G scalar", lambda: CGANGenerator(), 2),
    ("G onehot", lambda: CGANGenerator(n_conditions=4, condition="onehot"), 4),
    ("D scalar", lambda: CGANDiscriminator(), 2),
    ("D onehot logits", lambda: CGANDiscriminator(n_conditions=4, condition="onehot", output="logits"), 4),
]


def _forward(net, n_cond, B=2):
    c = torch.arange(B) % n_cond
    if isinstance(net, CGANGenerator):
        return net(torch.randn(B, net.z_dim), c)
    return net(torch.rand(B, 1, 32, 32, 32), c)


@pytest.mark.parametrize("name,make,n_cond", CASES, ids=[c[0] for c in CASES])
def test_shape_backward_roundtrip(name, make, n_cond, tmp_path):
    torch.manual_seed(0)
    net = make()
    out = _forward(net, n_cond)
    if isinstance(net, CGANGenerator):
        assert out.shape == (2, 1, 32, 32, 32)
        assert 0 <= out.min() and out.max() <= 1
    else:
        assert out.shape == (2,)
        if net.output == "probs":
            assert 0 <= out.min() and out.max() <= 1
    out.sum().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"no gradient for {missing}"
    # state-dict round trip through safetensors (fp32 exact)
    save_weights(tmp_path / "w.safetensors", net.state_dict(), dtype="fp32")
    twin = make()
    twin.load_state_dict(load_weights(tmp_path / "w.safetensors"))
    net.eval(), twin.eval()
    torch.manual_seed(1)
    a = _forward(net, n_cond)
    torch.manual_seed(1)
    b = _forward(twin, n_cond)
    torch.testing.assert_close(a, b)


def test_parameter_counts_match_the_seed():
    # SPEC §1: 6,049,185 (G) and 2,774,433 (D) with the scalar condition
    assert count_parameters(CGANGenerator()) == 6_049_185
    assert count_parameters(CGANDiscriminator()) == 2_774_433


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
    with pytest.raises(ValueError, match="unknown generator"):
        build_generator("nope")
    with pytest.raises(ValueError, match="unknown discriminator"):
        build_discriminator("nope")
