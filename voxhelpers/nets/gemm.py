"""The GEMMs of the CPU fast paths in :mod:`voxhelpers.nets.fast_conv3d`: the backend, and the grid ↔ column layouts.

The fast paths reduce each slow k=4, s=2, p=1 (transposed) convolution to one or two large matrix products
``x · wᵀ`` (:func:`_mm_nt`) between a channels-last grid read as a matrix (B·S³, C) and a kernel read tap-major
(4³·C_out, C_in) or as its central 2³ taps, plus a rearrangement: im2col (:func:`_im2col_cl`), col2im
(:func:`_col2im_cl`) or the fold of tap columns into the 2× grid (:func:`_fold_k4s2`). None of these is autograd-aware;
the autograd functions that combine them live in :mod:`voxhelpers.nets.fast_conv3d`.

Two libraries can run the GEMMs on CPU: Intel MKL, through ``torch.mm``, and oneDNN, through a channels-last 1×1
convolution of the same size (exactly the same FLOPs). MKL uses its fastest (AVX-512) kernels on Intel CPUs only,
so :data:`GEMM_BACKEND` is MKL on Intel CPUs and oneDNN elsewhere (measurements: ``docs/speed.md``);
:func:`gemm_backend` switches it for a block. It is a module global that :func:`gemm_backend` rebinds: read it as
``gemm.GEMM_BACKEND`` (or ``fast_conv3d.GEMM_BACKEND``, which forwards here), never copy it with
``from ... import GEMM_BACKEND`` into a module that needs to see the switch.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

__all__ = ["GEMM_BACKENDS", "cpuinfo", "gemm_backend"]


def cpuinfo(field: str) -> str:
    """A field of the first CPU in ``/proc/cpuinfo``.

    Args:
        field: the field name, e.g. ``"vendor_id"`` (→ ``"GenuineIntel"``) or ``"model name"``.

    Returns:
        the field's value, or ``""`` where there is no such field or no ``/proc/cpuinfo``.
    """
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
#: the backend in use: MKL on Intel CPUs, oneDNN elsewhere (module docstring); rebound by :func:`gemm_backend`
GEMM_BACKEND = "mkl" if cpuinfo("vendor_id") == "GenuineIntel" or not torch.backends.mkldnn.is_available() else "onednn"


@contextlib.contextmanager
def gemm_backend(name: str):
    """Run the fast paths' GEMMs on ``name`` for a block, for comparison or tests.

    Args:
        name: one of :data:`GEMM_BACKENDS`.

    Raises:
        ValueError: an unknown backend name.
    """
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


def _centre_taps(weight: torch.Tensor) -> torch.Tensor:
    """The central 2³ taps of a 4³ kernel (A, B, 4, 4, 4) → (A, B, 2, 2, 2): the only ones a 1³ or 2³ grid meets."""
    return weight[:, :, 1:3, 1:3, 1:3]


def _scatter_to_grid(cols: torch.Tensor, channels: int, batch: int, size: int) -> torch.Tensor:
    """(B·S³, 4³·C) tap columns, column (tap, c), → (B, C, 2S, 2S, 2S) by :func:`_fold_k4s2`."""
    return _fold_k4s2(cols.view(batch, size, size, size, 4, 4, 4, channels))


def _cl_matrix(x: torch.Tensor) -> torch.Tensor:
    """(B, C, S, S, S) → (B·S³, C), a view when x is channels-last."""
    return x.permute(0, 2, 3, 4, 1).reshape(-1, x.shape[1])


def _from_cl_matrix(m: torch.Tensor, batch: int, size: int) -> torch.Tensor:
    """(B·S³, C) → (B, C, S, S, S), channels-last."""
    return m.view(batch, size, size, size, m.shape[1]).permute(0, 4, 1, 2, 3)


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
