"""The fast 3D convolution layers equal their torch.nn parents: forward, input, weight and bias gradients."""

import pytest
import torch
from torch import nn

from voxhelpers.nets import fast_conv3d, gemm
from voxhelpers.nets.fast_conv3d import (
    FEW,
    GEMM_BACKENDS,
    SMALL,
    SPLIT_BIAS,
    FastConv3d,
    FastConvTranspose3d,
    conv_transpose3d_k4s2p1,
    fast_paths,
    gemm_backend,
)
from voxhelpers.nets.voxel_gan import CGANDiscriminator, CGANGenerator

CL = torch.channels_last_3d


@pytest.fixture(params=GEMM_BACKENDS)
def backend(request):
    """Run a test on each GEMM backend (MKL's ``torch.mm`` and oneDNN's 1×1 convolution), whatever this CPU picks."""
    with gemm_backend(request.param):
        yield request.param


def _compare(fast: nn.Module, parent_forward, x: torch.Tensor, tol: float = 1e-4) -> None:
    """fast(x) against the parent class's forward on the same parameters, values and all gradients."""
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    y1 = fast(x1)
    y2 = parent_forward(fast, x2)
    assert y1.shape == y2.shape
    scale = y2.abs().max().item()
    assert (y1 - y2).abs().max().item() <= tol * scale
    g = torch.randn_like(y2)
    grads1 = torch.autograd.grad(y1, [x1, *fast.parameters()], g)
    grads2 = torch.autograd.grad(y2, [x2, *fast.parameters()], g)
    for a, b, name in zip(grads1, grads2, ["input", "weight", "bias"][: len(grads1)], strict=True):
        assert a.shape == b.shape, name
        assert (a - b).abs().max().item() <= tol * b.abs().max().item(), name


@pytest.mark.parametrize("fmt", [CL, torch.contiguous_format])
@pytest.mark.parametrize(("cin", "cout", "size"),
                         [(8, 1, 4), (8, 2, 4), (5, 1, 3), (201, 16, 1), (6, 3, 1), (7, 5, SMALL), (6, 4, 3)])
def test_fast_conv_transpose_equals_parent(cin, cout, size, fmt, backend):
    torch.manual_seed(cin + cout + size)
    m = FastConvTranspose3d(cin, cout, 4, 2, 1).to(memory_format=fmt)
    x = torch.randn(3, cin, size, size, size).contiguous(memory_format=fmt)
    _compare(m, nn.ConvTranspose3d.forward, x)


@pytest.mark.parametrize("fmt", [CL, torch.contiguous_format])
@pytest.mark.parametrize(("cin", "cout", "size"),
                         [(1, 4, 8), (2, 4, 8), (2, 3, 6), (16, 1, 2), (16, 5, 2), (4, 4, 4), (7, 5, 2 * SMALL)])
def test_fast_conv_equals_parent(cin, cout, size, fmt, backend):
    torch.manual_seed(cin + cout + size)
    m = FastConv3d(cin, cout, 4, 2, 1).to(memory_format=fmt)
    x = torch.randn(3, cin, size, size, size).contiguous(memory_format=fmt)
    _compare(m, nn.Conv3d.forward, x)


@pytest.mark.parametrize("fmt", [CL, torch.contiguous_format])
def test_small_grid_gemm_paths_without_bias(fmt, backend):
    """The 2³ ↔ 4³ channels-last GEMM paths with ``bias=False``, and a batch of one."""
    torch.manual_seed(1)
    up = FastConvTranspose3d(9, 6, 4, 2, 1, bias=False).to(memory_format=fmt)
    down = FastConv3d(6, 9, 4, 2, 1, bias=False).to(memory_format=fmt)
    for batch in (1, 4):
        _compare(up, nn.ConvTranspose3d.forward, torch.randn(batch, 9, 2, 2, 2).contiguous(memory_format=fmt))
        _compare(down, nn.Conv3d.forward, torch.randn(batch, 6, 4, 4, 4).contiguous(memory_format=fmt))


def test_fast_paths_are_taken_and_others_fall_back(monkeypatch):
    """The seven fast paths really run for their shapes (the parent's forward is never called) and not otherwise; on
    oneDNN the 2³ → 4³ transposed layer is oneDNN's own, with the bias gradient summed apart."""
    calls = []
    for parent in (nn.ConvTranspose3d, nn.Conv3d):
        orig = parent.forward
        monkeypatch.setattr(parent, "forward",
                            lambda self, *a, _o=orig, **k: calls.append(type(self)) or _o(self, *a, **k))
    FastConvTranspose3d(7, 1, 4, 2, 1)(torch.randn(2, 7, 4, 4, 4))  # few outputs
    FastConvTranspose3d(7, 9, 4, 2, 1)(torch.randn(2, 7, 1, 1, 1))  # 1³ input
    FastConv3d(7, 3, 4, 2, 1)(torch.randn(2, 7, 2, 2, 2))  # 2³ → 1³
    FastConv3d(FEW, 3, 4, 2, 1)(torch.randn(2, FEW, 4, 4, 4))  # few inputs
    with gemm_backend("mkl"):
        FastConvTranspose3d(7, 9, 4, 2, 1)(torch.randn(2, 7, SMALL, SMALL, SMALL))  # 2³ → 4³
    FastConv3d(7, 9, 4, 2, 1)(torch.randn(2, 7, 2 * SMALL, 2 * SMALL, 2 * SMALL))  # 4³ → 2³
    assert calls == []
    wide = FastConvTranspose3d(7, 9, 4, 2, 1)  # a wide transposed layer on a larger grid: native, the bias gradient
    assert wide.fast_path(torch.randn(2, 7, 3, 3, 3)) == SPLIT_BIAS  # summed apart
    wide(torch.randn(2, 7, 3, 3, 3))
    with gemm_backend("onednn"):  # the 2³ → 4³ layer too, on oneDNN
        assert wide.fast_path(torch.randn(2, 7, SMALL, SMALL, SMALL)) == SPLIT_BIAS
    assert calls == []
    FastConvTranspose3d(7, 9, 4, 2, 1, bias=False)(torch.randn(2, 7, 3, 3, 3))  # no bias: the parent
    FastConv3d(7, 9, 4, 2, 1)(torch.randn(2, 7, 8, 8, 8))
    FastConv3d(7, 3, 3, 1, 1)(torch.randn(2, 7, 4, 4, 4))  # another kernel: the parent
    FastConvTranspose3d(7, 1, 3, 2, 1)(torch.randn(2, 7, 4, 4, 4))
    assert len(calls) == 4
    with fast_paths(False):  # switched off: every shape runs the parent
        FastConvTranspose3d(7, 1, 4, 2, 1)(torch.randn(2, 7, 4, 4, 4))
        FastConv3d(7, 3, 4, 2, 1)(torch.randn(2, 7, 2, 2, 2))
    assert len(calls) == 6
    FastConv3d(7, 3, 4, 2, 1)(torch.randn(2, 7, 2, 2, 2))  # and back on after the block
    assert len(calls) == 6



def test_fast_paths_step_aside_under_cpu_autocast_and_for_bf16_tensors():
    """Under CPU bf16 autocast (the precision option) and for bf16 inputs every layer runs the parent's forward —
    oneDNN's bf16 kernels — and gives exactly the plain layer's result; outside it the fast path again."""
    torch.manual_seed(0)
    layers = [(FastConvTranspose3d(7, 1, 4, 2, 1), nn.ConvTranspose3d, torch.randn(2, 7, 4, 4, 4)),
              (FastConv3d(FEW, 3, 4, 2, 1), nn.Conv3d, torch.randn(2, FEW, 4, 4, 4)),
              (FastConv3d(7, 3, 4, 2, 1), nn.Conv3d, torch.randn(2, 7, 2, 2, 2))]
    for fast, parent, x in layers:
        assert fast.fast_path(x) is not None
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert fast.fast_path(x) is None
            out = fast(x)
            plain = parent.forward(fast, x)
        assert out.dtype == torch.bfloat16 and torch.equal(out, plain)
        assert fast.fast_path(x.bfloat16()) is None and fast.fast_path(x) is not None

def test_gemm_backends_compute_the_same_product():
    """``_mm_nt`` (x · wᵀ + bias) on either backend equals a float64 reference, for views of any strides."""
    torch.manual_seed(3)
    x, w, b = torch.randn(37, 12), torch.randn(9, 12), torch.randn(9)
    want = (x.double() @ w.double().t() + b.double()).float()
    for name in GEMM_BACKENDS:
        with gemm_backend(name):
            assert fast_conv3d.GEMM_BACKEND == name
            got = fast_conv3d._mm_nt(x, w, b)
            assert got.shape == (37, 9) and got.is_contiguous()
            torch.testing.assert_close(got, want)
            torch.testing.assert_close(fast_conv3d._mm_nt(x.t().contiguous().t(), w.t().contiguous().t()), want - b)
    with pytest.raises(ValueError, match="GEMM backend must be one of"):
        with gemm_backend("openblas"):
            pass


def test_gemm_backend_switch_reaches_the_fast_paths(monkeypatch):
    """The backend lives in ``nets.gemm``; ``fast_conv3d.GEMM_BACKEND`` reads it live, and a switch made through
    either module's ``gemm_backend`` changes the GEMMs the layers run: on oneDNN the 4³ → 2³ im2col path's GEMM is a
    1×1 ``conv2d``, on MKL an ``addmm``, and the 2³ → 4³ layer's path follows (GEMM + col2im on MKL only)."""
    from voxhelpers.nets.fast_conv3d import GEMM_BACKEND, cpuinfo  # still importable by name

    assert GEMM_BACKEND in GEMM_BACKENDS and isinstance(cpuinfo("vendor_id"), str)
    assert fast_conv3d.gemm_backend is gemm.gemm_backend and fast_conv3d.GEMM_BACKENDS is gemm.GEMM_BACKENDS
    conv2d_calls, addmm_calls = [], []
    conv2d, addmm = torch.nn.functional.conv2d, torch.addmm
    monkeypatch.setattr(torch.nn.functional, "conv2d", lambda *a, **k: conv2d_calls.append(1) or conv2d(*a, **k))
    monkeypatch.setattr(torch, "addmm", lambda *a, **k: addmm_calls.append(1) or addmm(*a, **k))
    down, up = FastConv3d(7, 9, 4, 2, 1), FastConvTranspose3d(7, 9, 4, 2, 1)
    x_down, x_up = torch.randn(2, 7, 2 * SMALL, 2 * SMALL, 2 * SMALL), torch.randn(2, 7, SMALL, SMALL, SMALL)
    before = gemm.GEMM_BACKEND
    for name, switch in [("onednn", gemm.gemm_backend), ("mkl", gemm.gemm_backend),
                         ("onednn", gemm_backend), ("mkl", gemm_backend)]:
        conv2d_calls.clear(), addmm_calls.clear()
        with switch(name):
            assert fast_conv3d.GEMM_BACKEND == gemm.GEMM_BACKEND == name
            down(x_down)
            want_up = fast_conv3d.GEMM_COL2IM if name == "mkl" else SPLIT_BIAS
            assert up.fast_path(x_up) == want_up
        assert (len(conv2d_calls), len(addmm_calls)) == ((1, 0) if name == "onednn" else (0, 1))
        assert fast_conv3d.GEMM_BACKEND == gemm.GEMM_BACKEND == before  # restored after the block


def test_discriminator_input_follows_its_layer_format():
    """D builds its grid + condition input in its first layer's memory format; the result and x's gradient match."""
    torch.manual_seed(4)
    D = CGANDiscriminator()
    x, c = torch.rand(3, 1, 32, 32, 32), torch.tensor([0, 1, 1])
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    out1 = D(x1, c)
    out2 = D.to(memory_format=CL)(x2, c)
    torch.testing.assert_close(out1, out2)
    out1.sum().backward()
    out2.sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad)
    assert x1.grad.abs().sum() > 0


@pytest.mark.parametrize("fmt", [CL, torch.contiguous_format])
def test_extra_channels_are_appended_and_get_no_gradient(fmt, backend):
    """``FastConv3d(x, extra=planes)`` equals the parent on ``cat([x, planes])`` — output, x's gradient, weight and
    bias gradients — fast path on or off; wrong channel counts are refused."""
    torch.manual_seed(5)
    m = FastConv3d(2, 4, 4, 2, 1).to(memory_format=fmt)
    x = torch.randn(3, 1, 8, 8, 8).contiguous(memory_format=fmt)
    planes = torch.tensor([0.0, 1.0, 1.0])[:, None, None, None, None].expand(-1, 1, 8, 8, 8)
    g = torch.randn(3, 4, 4, 4, 4)
    results = []
    for fast in (True, False):
        with fast_paths(fast):
            x1 = x.clone().requires_grad_()
            out = m(x1, extra=planes)
            results.append([out, *torch.autograd.grad(out, [x1, m.weight, m.bias], g)])
    x2 = x.clone().requires_grad_()
    out = nn.Conv3d.forward(m, torch.cat([x2, planes], 1))
    want = [out, *torch.autograd.grad(out, [x2, m.weight, m.bias], g)]
    for got in results:
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="must hold 2 channels"):
        m(x, extra=torch.zeros(3, 2, 8, 8, 8))


def test_networks_keep_their_parameters_and_state_dict():
    G, D = CGANGenerator(), CGANDiscriminator()
    assert sum(p.numel() for p in G.parameters()) == 6_049_185
    assert sum(p.numel() for p in D.parameters()) == 2_774_433
    plain = nn.Sequential(nn.ConvTranspose3d(32, 1, 4, 2, 1))
    fast = nn.Sequential(FastConvTranspose3d(32, 1, 4, 2, 1))
    fast.load_state_dict(plain.state_dict())  # same keys and shapes: old weights load
    x = torch.randn(2, 32, 4, 4, 4)
    assert torch.allclose(fast(x), plain(x), atol=1e-5)


def test_whole_generator_and_discriminator_match_plain_layers(backend):
    """A G → D pass with its backward equals the same pass with torch.nn's own layer forwards."""
    torch.manual_seed(0)
    G, D = CGANGenerator().to(memory_format=CL), CGANDiscriminator().to(memory_format=CL)
    z, c = torch.randn(4, 200), torch.tensor([0, 1, 0, 1])

    def run():
        G.zero_grad(), D.zero_grad()
        out = D(G(z, c), c)
        out.sum().backward()
        return out.detach(), [p.grad.clone() for p in [*G.parameters(), *D.parameters()]]

    out1, g1 = run()
    with fast_paths(False):
        out2, g2 = run()
    assert torch.allclose(out1, out2, atol=1e-5)
    scale = max(b.abs().max() for b in g2)  # biases before a batch norm have gradients of rounding size only
    for a, b in zip(g1, g2, strict=True):
        assert (a - b).abs().max() <= 1e-3 * b.abs().max() + 1e-5 * scale


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="weight must be"):
        conv_transpose3d_k4s2p1(torch.randn(1, 3, 4, 4, 4), torch.randn(4, 1, 4, 4, 4))
    with pytest.raises(ValueError, match=r"x must be \(B, C, S, S, S\)"):
        conv_transpose3d_k4s2p1(torch.randn(1, 3, 4, 4, 5), torch.randn(3, 1, 4, 4, 4))


def test_double_backward_is_refused_clearly():
    """The GEMM paths are first-order only: a gradient penalty through them must fail loudly, not silently."""
    m = FastConv3d(1, 4, 4, 2, 1)
    x = torch.randn(2, 1, 8, 8, 8, requires_grad=True)
    (g,) = torch.autograd.grad(m(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError, match="once_differentiable|double backward|does not require grad"):
        g.pow(2).sum().backward()
