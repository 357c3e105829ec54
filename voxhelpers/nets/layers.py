"""Drop-in 3D convolution layers with exact CPU fast paths for the shapes oneDNN runs slowly.

The voxel GANs' up- and down-sampling layers are all ``k=4, s=2, p=1``. Several of their shapes are slow in
PyTorch's CPU kernels (batch 80, 2 threads; times on the AMD EPYC of 2026-11-23 unless said otherwise):

* a transposed convolution to **one output channel** (the generators' last layer, 32 → 1 channels, 16³ → 32³)
  ran at about 10 GFLOP/s natively on an Intel Xeon. Here it is one GEMM ``x (B·S³, C) · Wᵀ`` giving each input
  voxel's 4³·C_out tap columns, then a "fold" that adds every tap into its place of the 2× larger grid (three
  separable shift-adds, the last one writing straight into the interleaved output); the backward is oneDNN's (the
  adjoint convolution and the layer's own weight gradient). Forward + backward 29 ms against 79 ms natively.
* the **input gradient of a convolution from few channels** (the conditional discriminator's first layer, grid +
  condition plane = 2 channels) is the same kind of transposed convolution: the same GEMM + fold, for the grid's
  channel only when the condition planes come in as ``extra`` (they are constants); the forward and weight
  gradient stay native. That input gradient takes 14 ms against 62 ms natively.
* a transposed convolution from a **1³ input** (the conditional generator's first layer, z → 2³) only ever
  touches the kernel's central 2³ taps: it is one matrix product with them (the native backward took 45 ms).
* a convolution from a **2³ input to 1³** (the conditional discriminator's last layer): the same, a matrix-vector
  product.
* the **4³ ↔ 2³ layers** (the generators' 256 → 128 transposed convolution from 2³, the discriminator's 128 → 256
  convolution to 2³) ran at about a third of the GEMM peak natively on the Intel Xeon: there they are one GEMM on
  the channels-last tensor — im2col of the 4³ side, a single strided view, for the convolution; col2im (64 strided
  adds) for the transposed one — and two GEMMs backward, 1.5× the native layers. Where oneDNN does the GEMMs (below)
  its own layers do better: the transposed one runs native, the convolution keeps the im2col + GEMM forward
  (7.8 ms against 10.6) with oneDNN's own backward (18 ms against 23).
* every other **transposed convolution with a bias** runs natively, but its bias gradient is summed apart: oneDNN's
  backward with a bias is slow (G 64 → 32, 8³ → 16³: weight + bias gradients 40 ms, the weight's alone 28 ms, the
  bias's as a sum 1 ms).

**GEMM backend** (:data:`GEMM_BACKEND`): the GEMMs run on Intel MKL (``torch.mm``) on Intel CPUs and on oneDNN,
reached as a channels-last 1×1 convolution, elsewhere: MKL runs its AVX-512 kernels on Intel CPUs only, and on the
AMD EPYC (AVX-512) a 2048³ ``torch.mm`` ran at 218–227 GFLOP/s, the same product on oneDNN at 415–452.
:func:`gemm_backend` switches it for a block.

Each class subclasses its ``torch.nn`` layer: same parameters, same ``state_dict`` keys, same results to fp32
rounding (the sums run in another order; tested against the parent's forward and all gradients, on both backends),
so existing weights load unchanged. The fast paths run only on CPU tensors and only for their exact shapes;
everything else — CUDA included, where cuDNN has no such holes — is the parent's ``forward``. They are first-order
only (a gradient penalty's double backward through them raises); :func:`fast_paths` turns them off for a block.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = ["FEW", "GEMM_BACKENDS", "SMALL", "SPLIT_BIAS", "FastConv3d", "FastConvTranspose3d",
           "conv_transpose3d_k4s2p1", "cpuinfo", "fast_paths", "gemm_backend"]

_ENABLED = True


@contextlib.contextmanager
def fast_paths(enabled: bool = True):
    """Turn the fast paths of :class:`FastConv3d` / :class:`FastConvTranspose3d` on or off for a block (they are
    on by default): ``with fast_paths(False): ...`` runs the plain ``torch.nn`` layers, for comparison or debugging.
    """
    global _ENABLED
    before, _ENABLED = _ENABLED, bool(enabled)
    try:
        yield
    finally:
        _ENABLED = before


#: at most this many channels on the thin side of a layer take the GEMM + fold path
FEW = 2
#: side of the coarse grid (2 → 4 transposed, 4 → 2 convolution) whose layers take the channels-last GEMM path
SMALL = 2
_K4S2P1 = {"kernel_size": (4, 4, 4), "stride": (2, 2, 2), "padding": (1, 1, 1), "dilation": (1, 1, 1)}


def cpuinfo(field: str) -> str:
    """A field of the first CPU in ``/proc/cpuinfo`` ("vendor_id" → "GenuineIntel", "model name", …; "" where
    there is none)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":", 1)[0].strip() == field:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


#: GEMM backends of the fast paths: ``torch.mm`` (Intel MKL) or oneDNN, reached through a 1×1 convolution
GEMM_BACKENDS = ("mkl", "onednn")
#: the backend in use (module docstring): MKL on Intel CPUs, oneDNN elsewhere; read it as ``layers.GEMM_BACKEND``
GEMM_BACKEND = "mkl" if cpuinfo("vendor_id") == "GenuineIntel" or not torch.backends.mkldnn.is_available() else "onednn"


@contextlib.contextmanager
def gemm_backend(name: str):
    """Run the fast paths' GEMMs on ``name`` (one of :data:`GEMM_BACKENDS`) for a block, for comparison or tests."""
    global GEMM_BACKEND
    if name not in GEMM_BACKENDS:
        raise ValueError(f"GEMM backend must be one of {GEMM_BACKENDS}, got {name!r}")
    before, GEMM_BACKEND = GEMM_BACKEND, name
    try:
        yield
    finally:
        GEMM_BACKEND = before


def _mm_nt(x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``x @ w.T (+ bias)`` for x (n, k) and w (m, k), any strides → (n, m) contiguous, on :data:`GEMM_BACKEND`.

    oneDNN's route is a 1×1 convolution of the channels-last image (1, k, n, 1) — n pixels of k channels, ``x``'s
    rows — with the (m, k, 1, 1) kernel ``w``: exactly the same 2·n·k·m FLOPs.
    """
    if GEMM_BACKEND == "onednn":
        n, k = x.shape
        image = x.contiguous().view(1, n, 1, k).permute(0, 3, 1, 2)  # (1, k, n, 1), channels-last
        out = F.conv2d(image, w.reshape(w.shape[0], k, 1, 1), bias)  # (1, m, n, 1), channels-last
        return out.permute(0, 2, 3, 1).reshape(n, w.shape[0])
    return torch.mm(x, w.t()) if bias is None else torch.addmm(bias, x, w.t())


def _is_k4s2p1(m: nn.modules.conv._ConvNd) -> bool:
    return (all(getattr(m, k) == v for k, v in _K4S2P1.items()) and m.groups == 1
            and tuple(m.output_padding) == (0, 0, 0) and m.padding_mode == "zeros")


def _cubic(x: torch.Tensor) -> bool:
    return x.ndim == 5 and x.shape[2] == x.shape[3] == x.shape[4]


def _fold_k4s2(cols: torch.Tensor) -> torch.Tensor:
    """Add kernel-tap columns into the 2× grid of a k=4, s=2, p=1 transposed convolution.

    Along one axis, input position i and tap k land on output 2i − 1 + k; in the output padded by one on both
    sides that is 2i + k, so taps (0, 2) fill the even and taps (1, 3) the odd positions, the second of each pair
    one step later. Done axis by axis (three shift-adds); the last writes each parity straight into its interleaved
    place of the padded grid, which is then cropped.

    Args:
        cols: (B, S, S, S, 4, 4, 4, C): tap (kd, kh, kw) of channel c from input voxel (b, i, j, k), the row-major
            view of a (B·S³, 4³·C) GEMM product.

    Returns:
        (B, C, 2S, 2S, 2S), a channels-last view of the padded grid.
    """
    a = cols
    B, S, C = cols.shape[0], cols.shape[1], cols.shape[-1]
    P = 2 * S + 2
    grid = cols.new_empty(B, S + 1, 2, S + 1, 2, S + 1, 2, C)  # (b, i, pd, j, ph, k, pw, c) = the padded P³ grid
    for ax in range(3):  # tap axis 4 + ax becomes a parity axis; spatial axis 1 + ax grows to S + 1
        t, d = 4 + ax, 1 + ax
        early, late = a.narrow(t, 0, 2), a.narrow(t, 2, 2)  # taps (0, 1) at step i, taps (2, 3) at step i + 1
        if ax < 2:
            shape = list(early.shape)
            shape[d] = S + 1
            out = a.new_empty(shape)
        else:  # (b, i, j, k, pd, ph, pw, c) order of the interleaved grid
            out = grid.permute(0, 1, 3, 5, 2, 4, 6, 7)
        out.narrow(d, 0, 1).copy_(early.narrow(d, 0, 1))
        torch.add(early.narrow(d, 1, S - 1), late.narrow(d, 0, S - 1), out=out.narrow(d, 1, S - 1))
        out.narrow(d, S, 1).copy_(late.narrow(d, S - 1, 1))
        a = out
    return grid.view(B, P, P, P, C)[:, 1:-1, 1:-1, 1:-1].permute(0, 4, 1, 2, 3)


def _tap_major(weight: torch.Tensor) -> torch.Tensor:
    """A 4³ kernel (A, B, 4, 4, 4) as a (4³·B, A) matrix, row (tap, b) — also the im2col columns' order."""
    A, B = weight.shape[:2]
    return weight.permute(2, 3, 4, 1, 0).reshape(64 * B, A)


def _scatter_to_grid(cols: torch.Tensor, channels: int, batch: int, size: int) -> torch.Tensor:
    """(B·S³, 4³·C) tap columns, column (tap, c), → (B, C, 2S, 2S, 2S) by :func:`_fold_k4s2`."""
    return _fold_k4s2(cols.view(batch, size, size, size, 4, 4, 4, channels))


def _cl_matrix(x: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S, S) → (B·S³, C), a view when x is channels-last."""
    return x.permute(0, 2, 3, 4, 1).reshape(-1, x.shape[1])


def _from_cl_matrix(m: torch.Tensor, batch: int, size: int) -> torch.Tensor:
    """(B·S³, C) → (B, C, S, S, S), channels-last."""
    return m.view(batch, size, size, size, m.shape[1]).permute(0, 4, 1, 2, 3)


def _backward_k4s2p1(grad: torch.Tensor, inp: torch.Tensor, weight: torch.Tensor, mask: list[bool],
                     transposed: bool = False) -> tuple:
    """oneDNN's backward of a k=4, s=2, p=1 (transposed) convolution: ``(input, weight, bias)`` gradients, each
    ``None`` where ``mask`` is False (``mask[2]``: the bias gradient, as a sum over ``grad``)."""
    bias_sizes = [grad.shape[1]] if mask[2] else None
    return torch.ops.aten.convolution_backward(grad, inp, weight, bias_sizes, [2] * 3, [1] * 3, [1] * 3, transposed,
                                               [0] * 3, 1, [bool(m) for m in mask])


class _ConvTransposeGemm(torch.autograd.Function):
    """``conv_transpose3d(x, w, b, stride=2, padding=1)`` with a 4³ kernel as one GEMM + fold. Backward native: the
    input gradient of a transposed convolution is the convolution ``conv3d(grad, w, stride=2, padding=1)`` (few
    input channels, which oneDNN runs well), the weight gradient the transposed convolution's own (oneDNN; 1.8× the
    same gradient taken as that convolution's weight gradient, on the AMD EPYC)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        B, S, cout = x.shape[0], x.shape[2], weight.shape[1]
        xm, w = _cl_matrix(x), _tap_major(weight)  # (B·S³, C_in), (4³·C_out, C_in)
        out = _scatter_to_grid(_mm_nt(xm, w), cout, B, S)  # one GEMM (B·S³, 4³·C_out), then the fold
        out = out + bias.view(1, -1, 1, 1, 1) if bias is not None else out.clone(memory_format=torch.channels_last_3d)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = F.conv3d(grad, weight, None, 2, 1)  # (B, C_in, S, S, S)
        if ctx.needs_input_grad[1]:
            gw = _backward_k4s2p1(grad, x, weight, [False, True, False], transposed=True)[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3, 4))
        return gx, gw, gb


def _append_channels(x: torch.Tensor, extra: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """``torch.cat([x, extra], 1)`` written in memory format ``fmt`` (differentiable with respect to both)."""
    out = torch.empty((x.shape[0], x.shape[1] + extra.shape[1], *x.shape[2:]), dtype=x.dtype, device=x.device,
                      memory_format=fmt)
    out[:, : x.shape[1]].copy_(x)
    out[:, x.shape[1]:].copy_(extra)
    return out


def _format_of(weight: torch.Tensor) -> torch.memory_format:
    """channels-last-3d for a channels-last kernel (A, B, k, k, k) with B > 1, else contiguous."""
    cl = torch.channels_last_3d
    return cl if weight.is_contiguous(memory_format=cl) and not weight.is_contiguous() else torch.contiguous_format


class _ConvFewIn(torch.autograd.Function):
    """``conv3d(cat([x, extra]), w, b, stride=2, padding=1)`` with a 4³ kernel: native forward and weight gradient;
    the input gradient (a transposed convolution to few channels, slow natively) as one GEMM + fold, for ``x``'s
    channels only (``extra``, constant channels such as condition planes, gets none)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                extra: torch.Tensor | None) -> torch.Tensor:
        inp = x if extra is None else _append_channels(x, extra, _format_of(weight))
        ctx.save_for_backward(inp, weight)
        ctx.has_bias, ctx.grad_channels = bias is not None, x.shape[1]
        return F.conv3d(inp, weight, bias, 2, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        inp, weight = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            B, k, S = inp.shape[0], ctx.grad_channels, grad.shape[2]
            cols = _mm_nt(_cl_matrix(grad), _tap_major(weight[:, :k]))  # (B·S³, 4³·k)
            gx = _scatter_to_grid(cols, k, B, S)
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            mask = [False, bool(ctx.needs_input_grad[1]), bool(ctx.has_bias and ctx.needs_input_grad[2])]
            _, gw, gb = _backward_k4s2p1(grad, inp, weight, mask)
        return gx, gw, gb, None


def _im2col_cl(x: torch.Tensor) -> torch.Tensor:
    """Columns of a k=4, s=2, p=1 convolution on a channels-last grid: (B, C, 2S, 2S, 2S) → (B·S³, 4³·C).

    Row (b, i, j, k), column (kd, kh, kw, c): the input padded by one at (2i + kd, 2j + kh, 2k + kw), channel c. One
    strided view of the padded grid, then one copy.
    """
    B, C, N = x.shape[:3]
    S, P = N // 2, N + 2
    xp = F.pad(x.permute(0, 2, 3, 4, 1), (0, 0, 1, 1, 1, 1, 1, 1)).contiguous()  # (B, P, P, P, C)
    strides = (P ** 3 * C, 2 * P * P * C, 2 * P * C, 2 * C, P * P * C, P * C, C, 1)
    return xp.as_strided((B, S, S, S, 4, 4, 4, C), strides).reshape(B * S ** 3, 64 * C)


def _col2im_cl(cols: torch.Tensor, batch: int, channels: int, size: int) -> torch.Tensor:
    """The adjoint of :func:`_im2col_cl`: (B·S³, 4³·C) columns added into their places, → (B, C, 2S, 2S, 2S)
    channels-last. One strided add per kernel tap (no two voxels of one tap meet the same place)."""
    B, C, S = batch, channels, size
    P = 2 * S + 2
    out = cols.new_zeros(B, P, P, P, C)
    taps = cols.view(B, S, S, S, 4, 4, 4, C)
    strides = (P ** 3 * C, 2 * P * P * C, 2 * P * C, 2 * C, 1)
    for kd in range(4):
        for kh in range(4):
            for kw in range(4):
                place = out.as_strided((B, S, S, S, C), strides, (kd * P * P + kh * P + kw) * C)
                place.add_(taps[:, :, :, :, kd, kh, kw])
    return out[:, 1:-1, 1:-1, 1:-1].permute(0, 4, 1, 2, 3)


class _ConvIm2colGemm(torch.autograd.Function):
    """``conv3d(x, w, b, stride=2, padding=1)`` with a 4³ kernel as im2col + one GEMM. Backward: two GEMMs + col2im
    on MKL; oneDNN's own backward on the oneDNN backend (there, 1.3× the GEMMs + col2im)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        B, S = x.shape[0], x.shape[2] // 2
        cols = _im2col_cl(x)  # (B·S³, 4³·C_in), column (tap, c)
        out = _mm_nt(cols, weight.permute(0, 2, 3, 4, 1).reshape(weight.shape[0], -1), bias)  # (B·S³, C_out)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _from_cl_matrix(out, B, S)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        need_b = ctx.has_bias and ctx.needs_input_grad[2]
        if GEMM_BACKEND == "onednn":
            mask = [bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]), need_b]
            return _backward_k4s2p1(grad, x, weight, mask)
        B, cin, S = x.shape[0], x.shape[1], x.shape[2] // 2
        g, w = _cl_matrix(grad), _tap_major(weight)  # (B·S³, C_out), (4³·C_in, C_out)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _col2im_cl(_mm_nt(g, w), B, cin, S)
        if ctx.needs_input_grad[1]:
            gw = _mm_nt(_im2col_cl(x).t(), g.t()).view(4, 4, 4, cin, -1).permute(4, 3, 0, 1, 2)
        if need_b:
            gb = g.sum(0)
        return gx, gw, gb


class _ConvTransposeGemmCol2im(torch.autograd.Function):
    """``conv_transpose3d(x, w, b, stride=2, padding=1)`` with a 4³ kernel as one GEMM + col2im (the adjoint of
    :class:`_ConvIm2colGemm`); backward im2col + two GEMMs."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        B, S, cout = x.shape[0], x.shape[2], weight.shape[1]
        xm, w = _cl_matrix(x), _tap_major(weight)  # (B·S³, C_in), (4³·C_out, C_in)
        out = _col2im_cl(_mm_nt(xm, w), B, cout, S)  # (B, C_out, 2S, 2S, 2S), a cropped view
        out = out + bias.view(1, -1, 1, 1, 1) if bias is not None else out.clone(memory_format=torch.channels_last_3d)
        ctx.save_for_backward(xm, w)
        ctx.dims, ctx.has_bias = (B, S), bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        xm, w = ctx.saved_tensors
        B, S = ctx.dims
        gcols = _im2col_cl(grad)  # (B·S³, 4³·C_out)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _from_cl_matrix(_mm_nt(gcols, w.t()), B, S)
        if ctx.needs_input_grad[1]:
            gw = _mm_nt(gcols.t(), xm.t()).view(4, 4, 4, -1, xm.shape[1]).permute(4, 3, 0, 1, 2)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3, 4))
        return gx, gw, gb


class _ConvTransposeSplitBias(torch.autograd.Function):
    """``conv_transpose3d(x, w, b, stride=2, padding=1)`` natively, the bias gradient summed apart: oneDNN's
    backward of a transposed convolution with a bias is slow (G 64 → 32, 8³ → 16³, batch 80: weight + bias gradients
    40 ms, the weight's alone 28 ms, the bias's as a sum 1 ms)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.conv_transpose3d(x, weight, bias, 2, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        mask = [bool(ctx.needs_input_grad[0]), bool(ctx.needs_input_grad[1]), False]
        gx, gw, _ = _backward_k4s2p1(grad, x, weight, mask, transposed=True)
        return gx, gw, grad.sum((0, 2, 3, 4)) if ctx.needs_input_grad[2] else None


def conv_transpose3d_k4s2p1(x: torch.Tensor, weight: torch.Tensor,
                                    bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv_transpose3d(x, weight, bias, stride=2, padding=1)`` for a 4³ kernel with few output channels.

    Args:
        x: (B, C, S, S, S), any memory format (channels-last avoids a copy).
        weight: (C, C_out, 4, 4, 4).
        bias: (C_out,) or None.

    Returns:
        (B, C_out, 2S, 2S, 2S), channels-last (contiguous too when C_out = 1); differentiable with respect to all
        three (first order).

    Raises:
        ValueError: shapes other than these.
    """
    if not _cubic(x):
        raise ValueError(f"x must be (B, C, S, S, S), got {tuple(x.shape)}")
    if weight.ndim != 5 or tuple(weight.shape[::2]) != (x.shape[1], 4, 4) or tuple(weight.shape[3:]) != (4, 4):
        raise ValueError(f"weight must be ({x.shape[1]}, C_out, 4, 4, 4), got {tuple(weight.shape)}")
    if bias is not None and tuple(bias.shape) != (weight.shape[1],):
        raise ValueError(f"bias must be ({weight.shape[1]},), got {tuple(bias.shape)}")
    return _ConvTransposeGemm.apply(x, weight, bias)


#: names of the fast paths, as :meth:`FastConvTranspose3d.fast_path` / :meth:`FastConv3d.fast_path` return them
CENTRE_TAPS, GEMM_FOLD, GEMM_FOLD_INPUT_GRAD = ("central-taps matrix product", "GEMM + fold",
                                                "native forward, GEMM + fold input gradient")
GEMM_COL2IM, IM2COL_GEMM = "channels-last GEMM + col2im", "channels-last im2col + GEMM"
SPLIT_BIAS = "native, bias gradient summed apart"


def _centre_taps(weight: torch.Tensor) -> torch.Tensor:
    """The central 2³ taps of a 4³ kernel (A, B, 4, 4, 4) → (A, B, 2, 2, 2): the only ones a 1³ or 2³ grid meets."""
    return weight[:, :, 1:3, 1:3, 1:3]


class FastConvTranspose3d(nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` with exact CPU fast paths for k=4, s=2, p=1 (see the module docstring).

    * input 1³ → output 2³: ``out[b, o, d, h, w] = Σ_i x[b, i] · W[i, o, d+1, h+1, w+1] + bias[o]``, one matrix
      product with the central taps, returned channels-last;
    * few output channels (≤ :data:`FEW`): :func:`conv_transpose3d_k4s2p1` (one GEMM + fold).
    * input 2³ (:data:`SMALL`) → output 4³, GEMMs on MKL: one GEMM + col2im on the channels-last tensor.
    * any other shape with a bias: native, the bias gradient summed apart (:data:`SPLIT_BIAS`).

    Any other shape, device or setting runs the parent's ``forward``.

    Shapes:
        forward(x (B, C_in, S, S, S)) → (B, C_out, 2S, 2S, 2S), as ``nn.ConvTranspose3d``.
    """

    def fast_path(self, x: torch.Tensor, output_size: list[int] | None = None) -> str | None:
        """The fast path ``forward(x)`` takes (:data:`CENTRE_TAPS`, :data:`GEMM_FOLD`, :data:`GEMM_COL2IM` or
        :data:`SPLIT_BIAS`), None for the parent's."""
        if _ENABLED and output_size is None and x.device.type == "cpu" and _cubic(x) and _is_k4s2p1(self):
            if x.shape[2] == 1:
                return CENTRE_TAPS
            if self.out_channels <= FEW:
                return GEMM_FOLD
            if x.shape[2] == SMALL and GEMM_BACKEND == "mkl":  # oneDNN's own layer is faster than it on oneDNN
                return GEMM_COL2IM
            if self.bias is not None:
                return SPLIT_BIAS
        return None

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        path = self.fast_path(x, output_size)
        if path == CENTRE_TAPS:
            B, cin, cout = x.shape[0], self.in_channels, self.out_channels
            w = _centre_taps(self.weight).permute(0, 2, 3, 4, 1).reshape(cin, 8 * cout)  # (C_in, 2³·C_out)
            out = torch.mm(x.reshape(B, cin), w).view(B, 2, 2, 2, cout)
            if self.bias is not None:
                out = out + self.bias
            return out.permute(0, 4, 1, 2, 3)  # (B, C_out, 2, 2, 2), channels-last
        if path == GEMM_FOLD:
            return conv_transpose3d_k4s2p1(x, self.weight, self.bias)
        if path == GEMM_COL2IM:
            return _ConvTransposeGemmCol2im.apply(x, self.weight, self.bias)
        if path == SPLIT_BIAS:
            return _ConvTransposeSplitBias.apply(x, self.weight, self.bias)
        return super().forward(x, output_size)


class FastConv3d(nn.Conv3d):
    """``nn.Conv3d`` with exact CPU fast paths for k=4, s=2, p=1 (see the module docstring).

    * input 2³ → output 1³: ``out[b, o] = Σ_{i,d,h,w} x[b, i, d, h, w] · W[o, i, d+1, h+1, w+1] + bias[o]``, one
      matrix product with the central taps (the others meet only padding);
    * few input channels (≤ :data:`FEW`): the native forward and weight gradient, the input gradient (a transposed
      convolution to few channels) as one GEMM + fold — for ``x``'s channels only when constant channels come in as
      ``extra``.
    * input 4³ → output 2³ (:data:`SMALL`): im2col + one GEMM on the channels-last tensor; backward two GEMMs +
      col2im on MKL, oneDNN's own on oneDNN.

    Shapes:
        forward(x (B, C, S, S, S), extra (B, C_in − C, S, S, S) or None) → (B, C_out, S/2, S/2, S/2), as
        ``nn.Conv3d`` on ``cat([x, extra], 1)``.
    """

    def fast_path(self, x: torch.Tensor) -> str | None:
        """The fast path ``forward(x)`` takes (:data:`CENTRE_TAPS`, :data:`GEMM_FOLD_INPUT_GRAD` or
        :data:`IM2COL_GEMM`), None for the parent's; ``x`` with all ``in_channels`` (``extra`` included)."""
        return self._path(x.shape, x.device)

    def _path(self, shape: tuple[int, ...], device: torch.device) -> str | None:
        cubic = len(shape) == 5 and shape[2] == shape[3] == shape[4]
        if _ENABLED and device.type == "cpu" and cubic and shape[2] % 2 == 0 and _is_k4s2p1(self):
            if shape[2] == 2:
                return CENTRE_TAPS
            if self.in_channels <= FEW:
                return GEMM_FOLD_INPUT_GRAD
            if shape[2] == 2 * SMALL:
                return IM2COL_GEMM
        return None

    def forward(self, x: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            x: (B, C, S, S, S).
            extra: (B, C_in − C, S, S, S) constant channels appended to ``x`` — a conditional discriminator's
                condition planes — or None. Nothing that needs their gradient may pass them here: the
                few-input-channel fast path computes none for them.
        """
        if extra is not None:
            if extra.shape[0] != x.shape[0] or extra.shape[2:] != x.shape[2:] \
                    or x.shape[1] + extra.shape[1] != self.in_channels:
                raise ValueError(f"x {tuple(x.shape)} and extra {tuple(extra.shape)} must hold {self.in_channels} "
                                 "channels of one grid together")
            if self._path((x.shape[0], self.in_channels, *x.shape[2:]), x.device) == GEMM_FOLD_INPUT_GRAD:
                return _ConvFewIn.apply(x, self.weight, self.bias, extra)
            x = _append_channels(x, extra, _format_of(self.weight))
        path = self.fast_path(x)
        if path == CENTRE_TAPS:
            B, cin, cout = x.shape[0], self.in_channels, self.out_channels
            w = _centre_taps(self.weight).reshape(cout, cin * 8)  # (C_out, C_in·2³)
            return F.linear(x.reshape(B, cin * 8), w, self.bias).view(B, cout, 1, 1, 1)
        if path == GEMM_FOLD_INPUT_GRAD:
            return _ConvFewIn.apply(x, self.weight, self.bias, None)
        if path == IM2COL_GEMM:
            return _ConvIm2colGemm.apply(x, self.weight, self.bias)
        return super().forward(x)
