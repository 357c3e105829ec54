"""Benchmarks: training and inference throughput as a fraction of this machine's measured GEMM peak.

Every figure is a ratio taken in one run: the machine's fp32 GEMM peak is measured first (a 2048³ ``torch.mm``
and the same product as a channels-last 1×1 convolution, which oneDNN runs on a different kernel), then each
benchmark case is timed and its FLOPs — counted once with :class:`torch.utils.flop_counter.FlopCounterMode`,
forward and backward of exactly what the case runs — are divided by its median time. Absolute timings drift
between runs on shared machines, and so does the peak within one run: each timed call is therefore also paired with
a quick GEMM probe taken right before it (:class:`PeakProbe`), and the notes give the median of those per-call
ratios, the figure least moved by drift.

Cases live in a registry, :data:`CASES` (name → builder); each system adds its own with :func:`register_case`, in
one module per system: :mod:`voxhelpers.bench.voxel_cgan`, :mod:`voxhelpers.bench.iwgan`.

Modules: :mod:`~voxhelpers.bench.timing` (timing, FLOP counting, memory), :mod:`~voxhelpers.bench.peak` (the GEMM
peak), :mod:`~voxhelpers.bench.report` (results and the markdown report), :mod:`~voxhelpers.bench.core` (cases, the
registry, the runner and the command line).

Command line (``python -m voxhelpers.bench`` takes the same flags)::

    python -m voxhelpers bench                       # all cases, writes bench_results/bench.md
    python -m voxhelpers bench --cases voxel_cgan_iteration --repeats 5
    python -m voxhelpers bench --quick --out /tmp/b.md  # tiny sizes, one repeat (what the tests run)
"""

from __future__ import annotations

from .core import CASES, DEFAULT_OUT, BenchCase, BenchOptions, main, register_case, run_benchmarks, run_case
from .peak import GEMM_N, QUICK_GEMM_N, GemmPeak, PeakProbe, best_peak, gemm_operands, measure_gemm_peak
from .report import COLUMNS, DASH, BenchReport, CaseResult, format_markdown, write_atomic
from .timing import count_flops, cpu_model, time_calls, time_counted_ops

__all__ = [
    "CASES",
    "COLUMNS",
    "DASH",
    "DEFAULT_OUT",
    "GEMM_N",
    "QUICK_GEMM_N",
    "BenchCase",
    "BenchOptions",
    "BenchReport",
    "CaseResult",
    "GemmPeak",
    "PeakProbe",
    "best_peak",
    "count_flops",
    "cpu_model",
    "format_markdown",
    "gemm_operands",
    "main",
    "measure_gemm_peak",
    "register_case",
    "run_benchmarks",
    "run_case",
    "time_calls",
    "time_counted_ops",
    "write_atomic",
]

# the systems' cases register themselves on import, in system order
# isort: off
from . import voxel_cgan  # noqa: E402, F401
from . import iwgan  # noqa: E402, F401
from . import xray_ct  # noqa: E402, F401
from . import xray_ct_steps  # noqa: E402, F401
from . import segmentation  # noqa: E402, F401
from . import retina  # noqa: E402, F401
# isort: on
