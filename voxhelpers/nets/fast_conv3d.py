"""Drop-in 3D convolution layers with exact CPU fast paths for the shapes PyTorch's CPU kernels run slowly.

The voxel GANs' up- and down-sampling layers are all ``k=4, s=2, p=1``. For several of their shapes oneDNN's CPU
kernels reach only a fraction of the machine's GEMM peak; each is rewritten here as one or two large GEMMs on the
channels-last tensor (measured: ``docs/speed.md``, "The CPU fast paths of nets/fast_conv3d.py"):

* **transposed convolution to few output channels** (≤ :data:`FEW`; the generators' last layer, 32 → 1 channels,
  16³ → 32³): one GEMM ``x (B·S³, C_in) · Wᵀ`` → (B·S³, 4³·C_out), each input voxel's tap columns, then a fold that
  adds every tap into its place of the 2× grid (three separable shift-adds). Backward native (the adjoint
  convolution reads few channels, which oneDNN runs well).
* **input gradient of a convolution from few input channels** (the conditional discriminator's first layer, grid +
  condition plane): that gradient is the transposed convolution above, so the same GEMM + fold — for the grid's
  channels only when the constant condition planes come in as ``extra``; forward and weight gradient stay native.
* **1³ → 2³ transposed convolution** (the conditional generator's first layer), **2³ → 1³ convolution** (the
  discriminator's last): only the kernel's central 2³ taps meet the grid, so each is one matrix product with them.
* **2³ ↔ 4³ layers** (:data:`SMALL`; G 256 → 128, D 128 → 256): the convolution is im2col of the 4³ grid (one
  strided view, (B·2³, 4³·C_in)) and one GEMM, the transposed one a GEMM and col2im (64 strided adds); backward two
  GEMMs. On oneDNN, whose own layers do better here, the transposed one runs native and the convolution keeps only
  its GEMM forward.
* **any other transposed convolution with a bias** runs natively, its bias gradient a plain sum taken apart:
  oneDNN's backward is much slower with a bias than without.

**GEMM backend** (:mod:`voxhelpers.nets.gemm`, re-exported here): Intel MKL (``torch.mm``) on Intel CPUs, where
alone it runs its AVX-512 kernels, oneDNN (a channels-last 1×1 convolution) elsewhere. ``fast_conv3d.GEMM_BACKEND``
reads the one in use; :func:`gemm_backend` switches it for a block.

Each class subclasses its ``torch.nn`` layer: same parameters, ``state_dict`` keys and results to fp32 rounding
(tested against the parent's forward and all gradients, on both backends), so existing weights load unchanged. The
fast paths run only on fp32 CPU tensors of their exact shapes outside CPU autocast, else (CUDA and bf16 included) the
parent's ``forward``; they are first-order only (a double backward through them raises), and :func:`fast_paths`
turns them off for a block.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from . import gemm as _gemm
from .gemm import (
    GEMM_BACKENDS,
    _centre_taps,
    _cl_matrix,
    _col2im_cl,
    _from_cl_matrix,
    _im2col_cl,
    _mm_nt,
    _scatter_to_grid,
    _tap_major,
    cpuinfo,
    gemm_backend,
)

__all__ = ["FEW", "GEMM_BACKENDS", "SMALL", "SPLIT_BIAS", "FastConv3d", "FastConvTranspose3d",
           "conv_transpose3d_k4s2p1", "cpuinfo", "fast_paths", "gemm_backend"]


def __getattr__(name: str):
    """``GEMM_BACKEND``, read live from :mod:`voxhelpers.nets.gemm`, where :func:`gemm_backend` rebinds it."""
    if name == "GEMM_BACKEND":
        return _gemm.GEMM_BACKEND
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def _cpu_fp32(x: torch.Tensor) -> bool:
    """``x`` on the CPU in fp32 arithmetic: an fp32 tensor and no CPU autocast around (under bf16 autocast the parent
    layers run oneDNN's bf16 kernels, faster on AMX than any fp32 path)."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")


def _is_k4s2p1(m: nn.modules.conv._ConvNd) -> bool:
    return (all(getattr(m, k) == v for k, v in _K4S2P1.items()) and m.groups == 1
            and tuple(m.output_padding) == (0, 0, 0) and m.padding_mode == "zeros")


def _cubic(x: torch.Tensor) -> bool:
    return x.ndim == 5 and x.shape[2] == x.shape[3] == x.shape[4]


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
    input channels, which oneDNN runs well), the weight gradient the transposed convolution's own (oneDNN; faster
    than the same gradient taken as that convolution's weight gradient)."""

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


class _ConvIm2colGemm(torch.autograd.Function):
    """``conv3d(x, w, b, stride=2, padding=1)`` with a 4³ kernel as im2col + one GEMM. Backward: two GEMMs + col2im
    on MKL; oneDNN's own backward on the oneDNN backend (faster there than the GEMMs + col2im)."""

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
        if _gemm.GEMM_BACKEND == "onednn":
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
    backward of a transposed convolution is much slower with a bias than without, and the bias gradient is a
    plain sum over (B, S, S, S)."""

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
        if _ENABLED and output_size is None and _cpu_fp32(x) and _cubic(x) and _is_k4s2p1(self):
            if x.shape[2] == 1:
                return CENTRE_TAPS
            if self.out_channels <= FEW:
                return GEMM_FOLD
            if x.shape[2] == SMALL and _gemm.GEMM_BACKEND == "mkl":  # oneDNN's own layer is faster than it on oneDNN
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
        return self._path(x.shape, x)

    def _path(self, shape: tuple[int, ...], x: torch.Tensor) -> str | None:
        cubic = len(shape) == 5 and shape[2] == shape[3] == shape[4]
        if _ENABLED and _cpu_fp32(x) and cubic and shape[2] % 2 == 0 and _is_k4s2p1(self):
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
            if self._path((x.shape[0], self.in_channels, *x.shape[2:]), x) == GEMM_FOLD_INPUT_GRAD:
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
