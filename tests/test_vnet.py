"""VNet of system 5: shapes, backward, state-dict round trip, widths, parameter count, dropout placement, input
checks, the config constructor."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from voxhelpers.nets import count_parameters
from voxhelpers.nets.vnet import NETWORKS, VNet


@pytest.mark.parametrize("act", ["relu", "prelu"])
def test_shape_backward_and_state_dict_round_trip(act):
    torch.manual_seed(0)
    net = VNet(in_channels=1, out_channels=5, width=0.125, act=act)
    x = torch.randn(2, 1, 16, 16, 16)
    y = net(x)
    assert y.shape == (2, 5, 16, 16, 16)  # logits, no softmax: rows do not sum to 1
    assert not torch.allclose(y.softmax(1).sum(1), y.sum(1))
    y.square().mean().backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.stem[0].weight.grad.abs().sum() > 0  # the gradient reaches the first layer

    twin = VNet(in_channels=1, out_channels=5, width=0.125, act=act)
    twin.load_state_dict(net.state_dict())
    net.eval(), twin.eval()
    with torch.no_grad():
        assert torch.equal(net(x), twin(x))


def test_instance_norm_and_2d():
    net = VNet(out_channels=3, width=0.125, norm="instance")
    assert net(torch.randn(1, 1, 32, 16, 16)).shape == (1, 3, 32, 16, 16)  # bottleneck 2 × 1 × 1: enough
    assert any(isinstance(m, nn.InstanceNorm3d) for m in net.modules())
    net2d = VNet(spatial_dims=2, in_channels=2, out_channels=4, width=0.25)
    assert net2d(torch.randn(2, 2, 32, 16)).shape == (2, 4, 32, 16)


def test_widths_and_parameter_count():
    assert VNet(width=1.0).widths == (16, 32, 64, 128, 256)
    assert VNet(width=0.25).widths == (4, 8, 16, 32, 64)
    assert VNet(width=0.125).widths == (2, 4, 8, 16, 32)
    # documented in the docstring; the Keras seed reports 44.2 M, MONAI's VNet has 45.6 M
    assert count_parameters(VNet(width=1.0)) == 30_666_328
    assert count_parameters(VNet(width=0.25)) == 1_917_868
    assert count_parameters(VNet(width=0.125)) == 479_878


def test_dropout_in_the_encoder_only_by_default():
    net = VNet(width=0.125)
    enc = [m.p for d in net.downs for m in d.modules() if isinstance(m, nn.Dropout)]
    dec = [m.p for u in net.ups for m in u.modules() if isinstance(m, nn.Dropout)]
    assert enc == [0.2] * 4 and dec == []  # MONAI's UpTransition would add 0.5 here (MONAI #6116)
    net = VNet(width=0.125, dropout=0.0, dropout_up=0.1)
    assert [m.p for m in net.modules() if isinstance(m, nn.Dropout)] == [0.1] * 4
    net.eval()  # dropout off: deterministic
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


def test_input_checks():
    net = VNet(width=0.125)
    with pytest.raises(ValueError, match=r"\(24, 16, 16\)"):
        net(torch.randn(2, 1, 24, 16, 16))
    with pytest.raises(ValueError, match="VNet expects"):
        net(torch.randn(2, 3, 16, 16, 16))
    with pytest.raises(ValueError, match="bottleneck"):  # batch norm, B = 1, 16³: one value per channel
        net(torch.randn(1, 1, 16, 16, 16))
    net.eval()
    assert net(torch.randn(1, 1, 16, 16, 16)).shape == (1, 8, 16, 16, 16)  # running stats: fine in eval
    with pytest.raises(ValueError, match="'batch', 'instance'"):
        VNet(norm="group")
    with pytest.raises(ValueError, match="'relu', 'prelu'"):
        VNet(act="gelu")
    with pytest.raises(ValueError, match="spatial_dims"):
        VNet(spatial_dims=1)
    with pytest.raises(ValueError, match="dropout"):
        VNet(dropout=1.0)
    with pytest.raises(ValueError, match="width"):
        VNet(width=0)


def test_config_constructor():
    cfg = SimpleNamespace(in_channels=1, out_channels=5, width=0.125, dropout=0.1, norm="instance")
    net = NETWORKS["vnet"]["segmenter"](cfg)
    assert isinstance(net, VNet) and net.out_channels == 5 and net.widths[0] == 2 and net.norm == "instance"
    assert any(isinstance(m, nn.ReLU) for m in net.modules())  # no cfg.act: relu
    cfg.act = "prelu"
    assert any(isinstance(m, nn.PReLU) for m in NETWORKS["vnet"]["segmenter"](cfg).modules())
