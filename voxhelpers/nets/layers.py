"""Drop-in 3D convolution layers with exact CPU fast paths for the shapes oneDNN runs slowly.

The voxel GANs' up- and down-sampling layers are all ``k=4, s=2, p=1``. Four of their shapes are slow in PyTorch's
CPU kernels (batch 80, 2 threads, measured here against a 2048³ GEMM):

* a transposed convolution to **one output channel** (the generators' last layer, 32 → 1 channels, 16³ → 32³)
  ran at about 10 GFLOP/s, 3 % of the GEMM peak. Here it is one GEMM ``W (4³·C_out, C) · x (C, B·S³)``
  followed by a "fold" that adds each of the 4³ kernel taps into its place of the 2× larger grid (three
  separable shift-adds); the backward is native (the adjoint convolutions, which oneDNN runs well). 3× faster
  forward.
* the **input gradient of a convolution from few channels** (the conditional discriminator's first layer, grid +
  condition plane = 2 channels) is the same kind of transposed convolution, and took 100 ms of the layer's
  110 ms backward: here it is the same GEMM + fold; the forward and weight gradient stay native.
* a transposed convolution from a **1³ input** (the conditional generator's first layer, z → 2³) only ever
  touches the kernel's central 2³ taps: it is one matrix product with them (the native backward took 45 ms).
* a convolution from a **2³ input to 1³** (the conditional discriminator's last layer): the same, a matrix-vector
  product.
* the **4³ ↔ 2³ layers** (the generators' 256 → 128 transposed convolution from 2³, the discriminator's 128 → 256
  convolution to 2³) ran at about a third of the GEMM peak natively: here they are one GEMM on the channels-last
  tensor — im2col of the 4³ side, a single strided view, for the convolution; col2im (64 strided adds) for the
  transposed one — and two GEMMs backward, 1.5× the native layer forward + backward.

Each class subclasses its ``torch.nn`` layer: same parameters, same ``state_dict`` keys, same results to fp32
rounding (the sums run in another order; tested against the parent's forward and all gradients), so existing
weights load unchanged. The fast paths run only on CPU tensors and only for their exact shapes; everything else —
CUDA included, where cuDNN has no such holes — is the parent's ``forward``. They are first-order only (a gradient
penalty's double backward through them raises); :func:`fast_paths` turns them off for a block.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

__all__ = ["FEW", "SMALL", "FastConv3d", "FastConvTranspose3d", "conv_transpose3d_k4s2p1", "fast_paths"]

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


def _is_k4s2p1(m: nn.modules.conv._ConvNd) -> bool:
    return (all(getattr(m, k) == v for k, v in _K4S2P1.items()) and m.groups == 1
            and tuple(m.output_padding) == (0, 0, 0) and m.padding_mode == "zeros")


def _cubic(x: torch.Tensor) -> bool:
    return x.ndim == 5 and x.shape[2] == x.shape[3] == x.shape[4]


def _fold_k4s2(cols: torch.Tensor) -> torch.Tensor:
    """Add kernel-tap columns into the 2× grid of a k=4, s=2, p=1 transposed convolution.

    Along one axis, input position i and tap k land on output 2i − 1 + k; in the output padded by one on both
    sides that is 2i + k, so taps (0, 2) fill the even and taps (1, 3) the odd positions, the second of each pair
    one step later. Done axis by axis (three shift-adds), then the parities are interleaved and the pad cropped.

    Args:
        cols: (4, 4, 4, M, S, S, S): tap (kd, kh, kw) of input voxel (m, i, j, k); M is (channel, batch) flattened.

    Returns:
        (M, 2S, 2S, 2S).
    """
    a = cols
    M, S = cols.shape[3], cols.shape[-1]
    for ax in range(3):  # tap axis ``ax`` becomes a parity axis; spatial axis ``4 + ax`` grows to S + 1
        early, late = a.narrow(ax, 0, 2), a.narrow(ax, 2, 2)  # taps (0, 1) at step i, taps (2, 3) at step i + 1
        d = 4 + ax
        shape = list(early.shape)
        shape[d] = S + 1
        out = a.new_empty(shape)
        out.narrow(d, 0, 1).copy_(early.narrow(d, 0, 1))
        torch.add(early.narrow(d, 1, S - 1), late.narrow(d, 0, S - 1), out=out.narrow(d, 1, S - 1))
        out.narrow(d, S, 1).copy_(late.narrow(d, S - 1, 1))
        a = out
    # (pd, ph, pw, M, S+1, S+1, S+1) → (M, S+1, pd, S+1, ph, S+1, pw) → (M, 2S+2, 2S+2, 2S+2), crop the pad
    a = a.permute(3, 4, 0, 5, 1, 6, 2).reshape(M, 2 * S + 2, 2 * S + 2, 2 * S + 2)
    return a[:, 1:-1, 1:-1, 1:-1]


def _tap_major(weight: torch.Tensor) -> torch.Tensor:
    """A 4³ kernel (A, B, 4, 4, 4) as a (4³·B, A) matrix, row (tap, b) — also the im2col columns' order."""
    A, B = weight.shape[:2]
    return weight.permute(2, 3, 4, 1, 0).reshape(64 * B, A)


def _scatter_to_grid(cols: torch.Tensor, channels: int, batch: int, size: int) -> torch.Tensor:
    """(4³·C, B·S³) tap columns, row (tap, c), → (B, C, 2S, 2S, 2S) by :func:`_fold_k4s2`."""
    S = size
    cols = cols.view(4, 4, 4, channels * batch, S, S, S)  # rows (tap, c), columns (b, voxel) → M = (c, b)
    return _fold_k4s2(cols).view(channels, batch, 2 * S, 2 * S, 2 * S).transpose(0, 1)


def _cl_matrix(x: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S, S) → (B·S³, C), a view when x is channels-last."""
    return x.permute(0, 2, 3, 4, 1).reshape(-1, x.shape[1])


def _from_cl_matrix(m: torch.Tensor, batch: int, size: int) -> torch.Tensor:
    """(B·S³, C) → (B, C, S, S, S), channels-last."""
    return m.view(batch, size, size, size, m.shape[1]).permute(0, 4, 1, 2, 3)


class _ConvTransposeGemm(torch.autograd.Function):
    """``conv_transpose3d(x, w, b, stride=2, padding=1)`` with a 4³ kernel as one GEMM + fold. Backward native: the
    input gradient of a transposed convolution is the convolution ``conv3d(grad, w, stride=2, padding=1)`` (few
    input channels, which oneDNN runs well) and its weight gradient that convolution's weight gradient with ``x`` as
    the output gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        B, S, cout = x.shape[0], x.shape[2], weight.shape[1]
        xm, w = _cl_matrix(x), _tap_major(weight)  # (B·S³, C_in), (4³·C_out, C_in)
        out = _scatter_to_grid(torch.mm(w, xm.t()), cout, B, S)  # one GEMM, then the fold
        if bias is not None:
            out = out + bias.view(1, -1, 1, 1, 1)
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return out.contiguous()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = F.conv3d(grad, weight, None, 2, 1)  # (B, C_in, S, S, S)
        if ctx.needs_input_grad[1]:
            gw = torch.ops.aten.convolution_backward(x, grad, weight, None, [2] * 3, [1] * 3, [1] * 3, False,
                                                     [0] * 3, 1, [False, True, False])[1]
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3, 4))
        return gx, gw, gb


class _ConvFewIn(torch.autograd.Function):
    """``conv3d(x, w, b, stride=2, padding=1)`` with a 4³ kernel: native forward and weight gradient; the input
    gradient (a transposed convolution to few channels, slow natively) as one GEMM + fold."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return F.conv3d(x, weight, bias, 2, 1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            B, cin, S = x.shape[0], x.shape[1], grad.shape[2]
            cols = torch.mm(_tap_major(weight), _cl_matrix(grad).t())  # (4³·C_in, B·S³)
            gx = _scatter_to_grid(cols, cin, B, S)
        if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
            mask = [False, bool(ctx.needs_input_grad[1]), bool(ctx.has_bias and ctx.needs_input_grad[2])]
            _, gw, gb = torch.ops.aten.convolution_backward(grad, x, weight, [weight.shape[0]] if ctx.has_bias
                                                            else None, [2] * 3, [1] * 3, [1] * 3, False, [0] * 3, 1,
                                                            mask)
        return gx, gw, gb


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
    """``conv3d(x, w, b, stride=2, padding=1)`` with a 4³ kernel as im2col + one GEMM; backward two GEMMs + col2im."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        B, S = x.shape[0], x.shape[2] // 2
        cols, w = _im2col_cl(x), _tap_major(weight)  # (B·S³, 4³·C_in), (4³·C_in, C_out)
        out = torch.mm(cols, w) if bias is None else torch.addmm(bias, cols, w)
        ctx.save_for_backward(x, w)
        ctx.has_bias = bias is not None
        return _from_cl_matrix(out, B, S)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        x, w = ctx.saved_tensors
        B, cin, S = x.shape[0], x.shape[1], x.shape[2] // 2
        g = _cl_matrix(grad)  # (B·S³, C_out)
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = _col2im_cl(torch.mm(g, w.t()), B, cin, S)
        if ctx.needs_input_grad[1]:
            gw = torch.mm(_im2col_cl(x).t(), g).view(4, 4, 4, cin, -1).permute(4, 3, 0, 1, 2)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = g.sum(0)
        return gx, gw, gb


class _ConvTransposeGemmCol2im(torch.autograd.Function):
    """``conv_transpose3d(x, w, b, stride=2, padding=1)`` with a 4³ kernel as one GEMM + col2im (the adjoint of
    :class:`_ConvIm2colGemm`); backward im2col + two GEMMs."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        B, S, cout = x.shape[0], x.shape[2], weight.shape[1]
        xm, w = _cl_matrix(x), _tap_major(weight)  # (B·S³, C_in), (4³·C_out, C_in)
        out = _col2im_cl(torch.mm(xm, w.t()), B, cout, S)  # (B, C_out, 2S, 2S, 2S), a cropped view
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
            gx = _from_cl_matrix(torch.mm(gcols, w), B, S)
        if ctx.needs_input_grad[1]:
            gw = torch.mm(gcols.t(), xm).view(4, 4, 4, -1, xm.shape[1]).permute(4, 3, 0, 1, 2)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            gb = grad.sum((0, 2, 3, 4))
        return gx, gw, gb


def conv_transpose3d_k4s2p1(x: torch.Tensor, weight: torch.Tensor,
                                    bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv_transpose3d(x, weight, bias, stride=2, padding=1)`` for a 4³ kernel with few output channels.

    Args:
        x: (B, C, S, S, S), any memory format (channels-last avoids a copy).
        weight: (C, C_out, 4, 4, 4).
        bias: (C_out,) or None.

    Returns:
        (B, C_out, 2S, 2S, 2S), contiguous; differentiable with respect to all three (first order).

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


def _centre_taps(weight: torch.Tensor) -> torch.Tensor:
    """The central 2³ taps of a 4³ kernel (A, B, 4, 4, 4) → (A, B, 2, 2, 2): the only ones a 1³ or 2³ grid meets."""
    return weight[:, :, 1:3, 1:3, 1:3]


class FastConvTranspose3d(nn.ConvTranspose3d):
    """``nn.ConvTranspose3d`` with exact CPU fast paths for k=4, s=2, p=1 (see the module docstring).

    * input 1³ → output 2³: ``out[b, o, d, h, w] = Σ_i x[b, i] · W[i, o, d+1, h+1, w+1] + bias[o]``, one matrix
      product with the central taps, returned channels-last;
    * few output channels (≤ :data:`FEW`): :func:`conv_transpose3d_k4s2p1` (one GEMM + fold).
    * input 2³ (:data:`SMALL`) → output 4³: one GEMM + col2im on the channels-last tensor.

    Any other shape, device or setting runs the parent's ``forward``.

    Shapes:
        forward(x (B, C_in, S, S, S)) → (B, C_out, 2S, 2S, 2S), as ``nn.ConvTranspose3d``.
    """

    def fast_path(self, x: torch.Tensor, output_size: list[int] | None = None) -> str | None:
        """The fast path ``forward(x)`` takes (:data:`CENTRE_TAPS`, :data:`GEMM_FOLD` or :data:`GEMM_COL2IM`), None
        for the parent's."""
        if _ENABLED and output_size is None and x.device.type == "cpu" and _cubic(x) and _is_k4s2p1(self):
            if x.shape[2] == 1:
                return CENTRE_TAPS
            if self.out_channels <= FEW:
                return GEMM_FOLD
            if x.shape[2] == SMALL:
                return GEMM_COL2IM
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
        return super().forward(x, output_size)


class FastConv3d(nn.Conv3d):
    """``nn.Conv3d`` with exact CPU fast paths for k=4, s=2, p=1 (see the module docstring).

    * input 2³ → output 1³: ``out[b, o] = Σ_{i,d,h,w} x[b, i, d, h, w] · W[o, i, d+1, h+1, w+1] + bias[o]``, one
      matrix product with the central taps (the others meet only padding);
    * few input channels (≤ :data:`FEW`): the native forward and weight gradient, the input gradient (a transposed
      convolution to few channels) as one GEMM + fold.
    * input 4³ → output 2³ (:data:`SMALL`): im2col + one GEMM on the channels-last tensor.

    Shapes:
        forward(x (B, C_in, S, S, S)) → (B, C_out, S/2, S/2, S/2), as ``nn.Conv3d``.
    """

    def fast_path(self, x: torch.Tensor) -> str | None:
        """The fast path ``forward(x)`` takes (:data:`CENTRE_TAPS`, :data:`GEMM_FOLD_INPUT_GRAD` or
        :data:`IM2COL_GEMM`), None for the parent's."""
        if _ENABLED and x.device.type == "cpu" and _cubic(x) and x.shape[2] % 2 == 0 and _is_k4s2p1(self):
            if x.shape[2] == 2:
                return CENTRE_TAPS
            if self.in_channels <= FEW:
                return GEMM_FOLD_INPUT_GRAD
            if x.shape[2] == 2 * SMALL:
                return IM2COL_GEMM
        return None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        path = self.fast_path(x)
        if path == CENTRE_TAPS:
            B, cin, cout = x.shape[0], self.in_channels, self.out_channels
            w = _centre_taps(self.weight).reshape(cout, cin * 8)  # (C_out, C_in·2³)
            return F.linear(x.reshape(B, cin * 8), w, self.bias).view(B, cout, 1, 1, 1)
        if path == GEMM_FOLD_INPUT_GRAD:
            return _ConvFewIn.apply(x, self.weight, self.bias)
        if path == IM2COL_GEMM:
            return _ConvIm2colGemm.apply(x, self.weight, self.bias)
        return super().forward(x)
