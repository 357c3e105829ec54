"""The machine's fp32 GEMM peak, the yardstick of every benchmark figure.

Measured as a 2048³ ``torch.mm`` and as the same product as a channels-last 1×1 convolution (oneDNN runs it on a
different kernel); the larger of the two is the peak (:class:`GemmPeak`). The peak drifts on shared machines, so
:class:`PeakProbe` takes a quick one right before each timed call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .timing import _default_device, time_calls

__all__ = ["GEMM_N", "QUICK_GEMM_N", "GemmPeak", "PeakProbe", "best_peak", "gemm_operands", "measure_gemm_peak"]

#: Side of the square GEMM that measures the peak (2·n³ FLOPs).
GEMM_N = 2048
#: Side used by ``--quick``.
QUICK_GEMM_N = 256


@dataclass
class GemmPeak:
    """The machine's measured GEMM throughput (GFLOP/s) of an n×n×n product, best of the timed repeats.

    Attributes:
        mm_gflops: ``torch.mm`` of two (n, n) matrices.
        conv_gflops: the same product as a 1×1 convolution, input (1, n, 1, n) and weight (n, n, 1, 1), both
            channels-last: the input is an NHWC matrix of n pixels × n channels, exactly 2·n³ FLOPs.
        n: the matrix side.
        device: where it ran.
        dtype: ``"float32"`` (on CUDA with TF32 off).
        extra: other measured peaks by name (on CUDA: ``"bf16_mm"``).
    """

    mm_gflops: float
    conv_gflops: float
    n: int
    device: str
    dtype: str = "float32"
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def peak_gflops(self) -> float:
        """The larger of the two fp32 figures: the peak every case is compared with."""
        return max(self.mm_gflops, self.conv_gflops)

    def peak_for(self, kind: str = "fp32") -> float:
        """The peak a case is compared with: ``"fp32"``, or ``"bf16"`` where measured (falls back to fp32)."""
        if kind == "bf16" and "bf16_mm" in self.extra:
            return self.extra["bf16_mm"]
        return self.peak_gflops


def best_peak(a: GemmPeak, b: GemmPeak) -> GemmPeak:
    """The larger of two measurements of the same GEMM peak, figure by figure."""
    extra = {k: max(a.extra.get(k, 0.0), b.extra.get(k, 0.0)) for k in {*a.extra, *b.extra}}
    return GemmPeak(max(a.mm_gflops, b.mm_gflops), max(a.conv_gflops, b.conv_gflops), a.n, a.device, a.dtype, extra)


def gemm_operands(n: int, device=None, dtype: torch.dtype = torch.float32, seed: int = 0) -> dict[str, torch.Tensor]:
    """The operands of the peak GEMMs: ``a``, ``b`` (n, n) and channels-last ``x`` (1, n, 1, n), ``w`` (n, n, 1, 1).

    ``conv2d(x, w)`` computes, for each of the n pixels of ``x``, ``w`` (n×n) times that pixel's n channels:
    n·n·n multiply-adds, the same 2·n³ FLOPs as ``a @ b``.
    """
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, n, generator=g).to(device, dtype)
    b = torch.randn(n, n, generator=g).to(device, dtype)
    x = torch.randn(1, n, 1, n, generator=g).to(device, dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(n, n, 1, 1, generator=g).to(device, dtype).contiguous(memory_format=torch.channels_last)
    return {"a": a, "b": b, "x": x, "w": w}


def measure_gemm_peak(n: int = GEMM_N, repeats: int = 5, device=None, warmup: int = 2,
                      ops: dict[str, torch.Tensor] | None = None) -> GemmPeak:
    """Measure the fp32 GEMM peak: the best of ``repeats`` timed n×n×n products, as ``torch.mm`` and as a conv.

    On CUDA, TF32 is switched off for the measurement (true fp32). Where the device multiplies bf16 natively (CUDA,
    a CPU with AMX or AVX-512 BF16: :func:`~voxhelpers.systems.base.native_bf16`) a bf16 ``torch.mm`` is measured as
    well, in ``extra["bf16_mm"]``.

    Args:
        n: matrix side (2·n³ FLOPs per product).
        repeats: timed products per variant; the fastest counts.
        device: torch device (default: CUDA when present, else CPU).
        warmup: untimed products first.
        ops: operands from :func:`gemm_operands` of side ``n`` on ``device`` (default: made here).

    Returns:
        a :class:`GemmPeak`.
    """
    import torch.nn.functional as F

    from ..systems.base import native_bf16

    device = _default_device(device)
    flops = 2.0 * n**3
    ops = gemm_operands(n, device) if ops is None else ops
    cuda = device.type == "cuda"
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) if cuda else None
    try:
        if cuda:
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        with torch.no_grad():
            t_mm = min(time_calls(lambda: torch.mm(ops["a"], ops["b"]), repeats, warmup, device))
            t_conv = min(time_calls(lambda: F.conv2d(ops["x"], ops["w"]), repeats, warmup, device))
            extra = {}
            if native_bf16(device):  # CUDA, or a CPU with bf16 units: the peak bf16-autocast cases are compared with
                a16, b16 = ops["a"].bfloat16(), ops["b"].bfloat16()
                extra["bf16_mm"] = flops / min(time_calls(lambda: torch.mm(a16, b16), repeats, warmup, device)) / 1e9
    finally:
        if saved is not None:
            torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
    return GemmPeak(flops / t_mm / 1e9, flops / t_conv / 1e9, n, str(device), "float32", extra)


class PeakProbe:
    """A quick GEMM peak taken right before each timed call, so every call has a peak from the same moment.

    The machine drifts (±20 % over minutes on a shared host): a case timed at a slow moment and compared with a
    peak measured minutes earlier at a fast one reads low, and the reverse reads high. Each probe is
    :func:`measure_gemm_peak` with two timed products of each kind and no warm-up, on operands made once.

    Shapes:
        ``probe(kind)`` → GFLOP/s (float): :meth:`GemmPeak.peak_for` ``kind``.
    """

    def __init__(self, n: int = GEMM_N, device=None):
        self.n, self.device = n, _default_device(device)
        self.ops = gemm_operands(n, self.device)

    def __call__(self, kind: str = "fp32") -> float:
        return measure_gemm_peak(self.n, 2, self.device, warmup=0, ops=self.ops).peak_for(kind)
