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

Command line::

    python -m voxhelpers.bench                       # all cases, writes bench_results/bench.md
    python -m voxhelpers.bench --cases voxel_cgan_iteration --repeats 5
    python -m voxhelpers.bench --quick --out /tmp/b.md  # tiny sizes, one repeat (what the tests run)
"""

from __future__ import annotations

import argparse
import datetime
import gc
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

__all__ = [
    "CASES",
    "COLUMNS",
    "BenchCase",
    "BenchOptions",
    "BenchReport",
    "CaseResult",
    "GemmPeak",
    "PeakProbe",
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

#: Columns of the result table, in order.
COLUMNS = ("case", "format", "batch", "samples/s", "GFLOP/s", "% of peak", "peak RSS MB", "notes")
#: Side of the square GEMM that measures the peak (2·n³ FLOPs).
GEMM_N = 2048
#: Side used by ``--quick``.
QUICK_GEMM_N = 256
DEFAULT_OUT = Path("bench_results") / "bench.md"
DASH = "—"


# --------------------------------------------------------------------------------------------------
# Timing, FLOP counting, memory
# --------------------------------------------------------------------------------------------------
def _sync(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], repeats: int = 3, warmup: int = 1,
               device: torch.device | str | None = None) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls.

    Args:
        fn: the work to time; called with no arguments.
        repeats: timed calls (>= 1).
        warmup: untimed calls first (allocator, oneDNN primitive caches, cuDNN autotuning).
        device: on CUDA the device is synchronised before each timer is read.

    Returns:
        one duration per timed call, in seconds, in call order.

    Raises:
        ValueError: ``repeats`` < 1 or ``warmup`` < 0.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return times


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of one call of ``fn`` (forward and any backward it runs), by :class:`FlopCounterMode`.

    Counts the matrix products and convolutions (2 FLOPs per multiply-add) that the call dispatches; element-wise
    ops, normalisation and optimiser updates count zero, so the figure is the GEMM work of the call. ``fn`` is
    really run once (weights it updates stay updated).
    """
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    if hasattr(counter, "mod_tracker"):
        # only the total is read; the per-module tracker's backward hooks break ``torch.autograd.grad`` with respect
        # to a leaf input (the gradient penalty's interpolates: "A leaf node was passed to
        # _will_engine_execute_node ..."), so count everything under the one "Global" scope instead
        counter.mod_tracker = _GlobalScope()
    with counter:
        fn()
    return int(counter.get_total_flops())


def time_counted_ops(fn: Callable[[], object]) -> tuple[float, int]:
    """Seconds one call of ``fn`` spends inside the ops :func:`count_flops` counts, and how many such calls it makes.

    Each matrix product and convolution (forward and backward: the ops in FlopCounterMode's registry) is timed on
    its own under a dispatch mode; everything else — normalisation, activations, copies, optimiser updates — runs
    untimed. FLOPs / these seconds is the rate the call would reach were every other op free: the ceiling of its %
    of the peak. CPU only (CUDA ops return before they finish). ``fn`` is really run once.
    """
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class _Timer(TorchDispatchMode):
        seconds, calls = 0.0, 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            if func.overloadpacket not in flop_registry:
                return func(*args, **kwargs)
            t0 = time.perf_counter()
            out = func(*args, **kwargs)
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            return out

    with _Timer() as timer:
        fn()
    return timer.seconds, timer.calls


class _GlobalScope:
    """A stand-in for FlopCounterMode's module tracker that attributes every FLOP to "Global" only."""

    parents = frozenset({"Global"})

    def __enter__(self):
        return self

    def __exit__(self, *args) -> None:
        return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ≥ 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_mb(per_case: bool) -> float:
    """Peak resident set size in MB: VmHWM since the last reset when ``per_case``, else ``ru_maxrss``."""
    if per_case:
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) / 1024  # kB
        except OSError:
            pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, kB on Linux


def _cpu_busy_seconds() -> tuple[float, float] | None:
    """(busy CPU seconds of the whole machine, CPU seconds of this process) now; None without ``/proc/stat``."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:]]
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, AttributeError):
        return None
    busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / hz  # user..steal, less idle and iowait
    own = resource.getrusage(resource.RUSAGE_SELF)
    return busy, own.ru_utime + own.ru_stime


def cpu_model() -> str:
    """The CPU's name from ``/proc/cpuinfo`` ("model name"), else :func:`platform.processor`."""
    from ..nets.layers import cpuinfo

    return cpuinfo("model name") or platform.processor() or platform.machine() or "unknown"


# --------------------------------------------------------------------------------------------------
# GEMM peak
# --------------------------------------------------------------------------------------------------
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

    On CUDA, TF32 is switched off for the measurement (true fp32) and a bf16 ``torch.mm`` is measured as well,
    in ``extra["bf16_mm"]``.

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
            if cuda:
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


# --------------------------------------------------------------------------------------------------
# Cases and their registry
# --------------------------------------------------------------------------------------------------
@dataclass
class BenchOptions:
    """What every case builder receives.

    Attributes:
        device: torch device the case runs on.
        quick: tiny sizes (tests); the row is then not a measurement of the real workload.
        seed: seed for the case's random inputs.
    """

    device: torch.device
    quick: bool = False
    seed: int = 0


@dataclass
class BenchCase:
    """One row of the table: how to set the case up and what one timed call processes.

    Attributes:
        name: the case name (the registry key).
        setup: builds models and inputs (called right before timing, so peak RSS is the case's own) and returns
            the function timed; one call of it is one step of ``samples`` samples.
        batch: batch size shown in the table.
        samples: samples processed per call (for samples/s).
        fmt: memory format or layout shown in the ``format`` column.
        count: whether to count FLOPs (False: GFLOP/s and % of peak show "—").
        peak_kind: ``"fp32"`` or ``"bf16"`` (cases that run under bf16 autocast on CUDA).
        notes: free text for the ``notes`` column.
        warmup: untimed calls before the timed ones (the FLOP-counting call comes first in any case).
        derive: optional ``f(seconds_per_call) -> str`` appended to the notes (e.g. a projected training time).
        split: on CPU, time two more calls with their matrix products and convolutions timed apart
            (:func:`time_counted_ops`) and add to the notes their seconds, their own % of the peak (the ceiling were
            every other op free) and what the other ops take.
    """

    name: str
    setup: Callable[[], Callable[[], object]]
    batch: int
    samples: int
    fmt: str = DASH
    count: bool = True
    peak_kind: str = "fp32"
    notes: str = ""
    warmup: int = 1
    derive: Callable[[float], str] | None = None
    split: bool = False


@dataclass
class CaseResult:
    """A measured case.

    Attributes:
        name, fmt, batch, notes: as in :class:`BenchCase` (notes include derived figures).
        seconds: per-call wall times of the timed repeats.
        flops: FLOPs of one call (None when not counted).
        peak_gflops: the peak the case is compared with.
        peak_rss_mb: peak resident memory while the case ran (see ``rss_scope``).
        rss_scope: ``"case"`` (the kernel's peak mark reset before the case) or ``"process"`` (``ru_maxrss``).
        samples: samples per call.
        peak_kind: which peak ``peak_gflops`` is (``"fp32"`` or ``"bf16"``, :meth:`GemmPeak.peak_for`).
        paired_peaks: the GEMM peak (GFLOP/s) probed right before each timed call (:class:`PeakProbe`), in call
            order; empty when not probed.
    """

    name: str
    fmt: str
    batch: int
    seconds: list[float]
    flops: int | None
    peak_gflops: float
    peak_rss_mb: float
    rss_scope: str
    samples: int
    notes: str = ""
    peak_kind: str = "fp32"
    paired_peaks: list[float] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        """Median seconds per call."""
        return statistics.median(self.seconds)

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.median_s

    @property
    def gflops(self) -> float | None:
        """Achieved GFLOP/s (median time), None when FLOPs were not counted."""
        return None if self.flops is None else self.flops / self.median_s / 1e9

    @property
    def pct_of_peak(self) -> float | None:
        g = self.gflops
        return None if g is None or not self.peak_gflops else 100.0 * g / self.peak_gflops

    @property
    def pct_of_paired_peak(self) -> float | None:
        """Median over the timed calls of (the call's GFLOP/s) / (the peak probed right before it), in %; None
        without FLOPs or probes."""
        if self.flops is None or not self.paired_peaks or len(self.paired_peaks) != len(self.seconds):
            return None
        return statistics.median(_paired_ratios(self.flops, self.seconds, self.paired_peaks))


def _paired_ratios(flops: int, seconds: Sequence[float], peaks: Sequence[float]) -> list[float]:
    """Each call's GFLOP/s as a % of the peak probed right before it, in call order."""
    return [100.0 * flops / t / 1e9 / p for t, p in zip(seconds, peaks, strict=True)]


@dataclass
class BenchReport:
    """Everything one run measured.

    Attributes:
        peak: the GEMM peak.
        results: one per table row.
        device: where it ran.
        repeats: timed calls per case.
        quick: tiny sizes (not a measurement).
        wall_s: wall time of the whole run.
        other_cpu_s: CPU seconds other processes used during the run (None where unknown): when that is a sizeable
            share of ``wall_s × cores`` the figures are low, because other work competed for the cores.
        memory_retained: freed memory was kept for reuse (:func:`voxhelpers.training.retain_freed_memory`, as
            training on CPU does).
    """

    peak: GemmPeak
    results: list[CaseResult]
    device: torch.device
    repeats: int
    quick: bool = False
    wall_s: float = float("nan")
    other_cpu_s: float | None = None
    memory_retained: bool = False


#: The registry: case name → builder ``f(BenchOptions) -> list[BenchCase]`` (one case may give several rows).
CASES: dict[str, Callable[[BenchOptions], list[BenchCase]]] = {}


def register_case(name: str) -> Callable:
    """Decorator adding a builder ``f(BenchOptions) -> list[BenchCase]`` to :data:`CASES` under ``name``.

    Raises:
        ValueError: the name is taken.
    """

    def add(builder: Callable[[BenchOptions], list[BenchCase]]) -> Callable[[BenchOptions], list[BenchCase]]:
        if name in CASES:
            raise ValueError(f"benchmark case {name!r} is already registered")
        CASES[name] = builder
        return builder

    return add


def _default_device(device=None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


_FORMATS = {"channels_last_3d": torch.channels_last_3d, "contiguous": torch.contiguous_format}


def _random_grids(shape: tuple[int, ...], seed: int, density: float = 0.15) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < density


# --------------------------------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------------------------------
def run_case(case: BenchCase, peak: GemmPeak, repeats: int = 3, device=None,
             probe: PeakProbe | None = None) -> CaseResult:
    """Set a case up, count its FLOPs once (outside the timed loop), time it and record its peak RSS.

    The FLOP-counting call doubles as the first warm-up call; ``case.warmup`` more follow. With a ``probe`` (and
    counted FLOPs) the GEMM peak is probed right before each timed call (:attr:`CaseResult.paired_peaks`).
    """
    device = _default_device(device)
    gc.collect()
    per_case = _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    fn = case.setup()
    flops = count_flops(fn) if case.count else None
    if not case.count:
        fn()  # first call, untimed, as for counted cases
    cpu0, t0 = _cpu_busy_seconds(), time.perf_counter()
    paired: list[float] = []
    if probe is not None and flops is not None:
        for _ in range(case.warmup):
            fn()
        seconds = []
        for _ in range(repeats):
            paired.append(probe(case.peak_kind))
            seconds += time_calls(fn, 1, 0, device)
    else:
        seconds = time_calls(fn, repeats, case.warmup, device)
    cpu1, wall = _cpu_busy_seconds(), time.perf_counter() - t0
    rss = _peak_rss_mb(per_case)
    split = min(time_counted_ops(fn) for _ in range(2)) if case.split and flops and device.type == "cpu" else None
    notes = [case.notes] if case.notes else []
    if cpu0 is not None and cpu1 is not None and wall > 0:
        other = max(0.0, (cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1])) / (wall * (os.cpu_count() or 1))
        if other > 0.05:
            notes.append(f"**other processes took {100 * other:.0f} % of the CPU while timing: figures low**")
    if len(seconds) > 1:
        notes.append(f"median of {len(seconds)}: {statistics.median(seconds):.3g} s (min {min(seconds):.3g})")
    else:
        notes.append(f"{seconds[0]:.3g} s")
    if paired:
        ratios = sorted(_paired_ratios(flops, seconds, paired))
        notes.append(f"against the GEMM peak probed right before each call: {statistics.median(ratios):.1f} % "
                     f"(median; {ratios[0]:.1f}–{ratios[-1]:.1f}; probes {min(paired):.0f}–{max(paired):.0f} GFLOP/s)")
    if split is not None:
        (gemm_s, calls), median = split, statistics.median(seconds)
        rest = max(0.0, median - gemm_s)
        notes.append(f"its {calls} matrix products and convolutions alone (each timed apart, best of 2 more calls): "
                     f"{gemm_s:.2f} s at {100 * flops / gemm_s / 1e9 / peak.peak_for(case.peak_kind):.1f} % of the "
                     f"peak, the ceiling were every other op free; the other ops ≈ {rest:.2f} s "
                     f"({100 * rest / median:.0f} % of the median call)")
    if device.type == "cuda":
        notes.append(f"GPU peak {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MB")
    if case.derive is not None:
        notes.append(case.derive(statistics.median(seconds)))
    del fn
    gc.collect()
    return CaseResult(case.name, case.fmt, case.batch, seconds, flops, peak.peak_for(case.peak_kind), rss,
                      "case" if per_case else "process", case.samples, "; ".join(notes), case.peak_kind, paired)


def run_benchmarks(names: Sequence[str] | None = None, repeats: int = 3, quick: bool = False, device=None,
                   gemm_repeats: int | None = None, log: Callable[[str], None] | None = None) -> BenchReport:
    """Measure the GEMM peak, then every selected case, in this process.

    Args:
        names: case names from :data:`CASES` (default: all, in registry order).
        repeats: timed calls per case.
        quick: tiny sizes, for tests.
        device: torch device (default CUDA when present).
        gemm_repeats: timed products per GEMM variant (default ``max(repeats, 5)``; 1 with ``quick``).
        log: progress messages (e.g. ``print``); None is silent.

    Returns:
        a :class:`BenchReport`.

    Raises:
        KeyError: an unknown case name.
    """
    device = _default_device(device)
    names = list(CASES) if names is None else list(names)
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise KeyError(f"unknown benchmark case(s) {unknown}; known: {sorted(CASES)}")
    say = log or (lambda _msg: None)
    retained = False
    if device.type == "cpu":  # as every training run on CPU does (voxhelpers.training.distributed_setup)
        from ..training import retain_freed_memory

        retained = retain_freed_memory()
    t0, cpu0 = time.perf_counter(), _cpu_busy_seconds()
    n = QUICK_GEMM_N if quick else GEMM_N
    gemm_repeats = gemm_repeats or (1 if quick else max(repeats, 5))
    say(f"GEMM peak: {n}³ fp32 on {device} ...")
    peak = measure_gemm_peak(n, gemm_repeats, device, warmup=1 if quick else 2)
    say(f"  mm {peak.mm_gflops:.1f}, conv {peak.conv_gflops:.1f} GFLOP/s")
    opts = BenchOptions(device, quick)
    probe = PeakProbe(n, device)
    results = []
    for name in names:
        for case in CASES[name](opts):
            say(f"{case.name} [{case.fmt}] ...")
            results.append(run_case(case, peak, repeats, device, probe))
            r = results[-1]
            say(f"  {r.samples_per_s:.3g} samples/s, {_fmt(r.gflops, 1)} GFLOP/s, {_fmt(r.pct_of_peak, 1)} %")
    if not quick and results:
        # the machine drifts: measure the peak again after the cases and compare every case with the larger of the
        # two, so a slow moment at the start cannot flatter the percentages
        say("GEMM peak again, after the cases ...")
        again = measure_gemm_peak(n, gemm_repeats, device, warmup=2)
        say(f"  mm {again.mm_gflops:.1f}, conv {again.conv_gflops:.1f} GFLOP/s")
        peak = best_peak(peak, again)
        for r in results:
            r.peak_gflops = peak.peak_for(r.peak_kind)
    cpu1 = _cpu_busy_seconds()
    other = None if cpu0 is None or cpu1 is None else max(0.0, (cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1]))
    return BenchReport(peak, results, device, repeats, quick, time.perf_counter() - t0, other, retained)


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------
def _fmt(x: float | None, digits: int) -> str:
    if x is None or not math.isfinite(x):
        return DASH
    return f"{x:,.{digits}f}"


def _contention(report: BenchReport) -> str:
    """How much CPU other processes took during the run, in words."""
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        load = "unknown"
    if report.other_cpu_s is None or not math.isfinite(report.wall_s) or report.wall_s <= 0:
        return f"load average at the end {load} (1/5/15 min)"
    share = 100.0 * report.other_cpu_s / (report.wall_s * (os.cpu_count() or 1))
    warn = " — other work competed for the cores: every figure is low" if share > 5 else ""
    return (f"used {report.other_cpu_s:.1f} CPU·s during the {report.wall_s:.0f} s run ({share:.1f} % of the "
            f"machine){warn}; load average at the end {load}")


def _gemm_backend() -> str:
    from ..nets import layers

    return layers.GEMM_BACKEND


def _format_ratios(results: Sequence[CaseResult]) -> list[str]:
    """Speed ratios within the run: channels-last-3d against contiguous format (the first row of each), the
    layers' fast paths against plain ``torch.nn`` layers (a row whose notes say ``fast_paths(False)``), and their
    GEMM backend against the other one (a row whose notes say ``gemm_backend(…)``)."""
    lines = []
    by_name: dict[str, dict[str, CaseResult]] = {}
    plain, other_gemm = [], []
    for r in results:
        if "fast_paths(False)" in r.notes:
            plain.append(r)
        elif "gemm_backend(" in r.notes:
            other_gemm.append(r)
        else:
            by_name.setdefault(r.name, {}).setdefault(r.fmt, r)
    for name, rows in by_name.items():
        if "channels_last_3d" in rows and "contiguous" in rows:
            ratio = rows["contiguous"].median_s / rows["channels_last_3d"].median_s
            lines.append(f"- `{name}`: channels_last_3d is {ratio:.2f}× the speed of contiguous (same run)")
    for r in plain:
        fast = by_name.get(r.name, {}).get(r.fmt)
        if fast is not None:
            lines.append(f"- `{r.name}` [{r.fmt}]: the layers' CPU fast paths are {r.median_s / fast.median_s:.2f}× "
                         "the speed of plain torch.nn layers (same run)")
    for r in other_gemm:
        fast = by_name.get(r.name, {}).get(r.fmt)
        if fast is not None:
            lines.append(f"- `{r.name}` [{r.fmt}]: the fast paths' GEMMs on {_gemm_backend()} are "
                         f"{r.median_s / fast.median_s:.2f}× the speed of the same on the other backend (same run)")
    return lines


def format_markdown(report: BenchReport) -> str:
    """The report: a header (date, versions, threads, CPU, the GEMM peak) and one table row per result."""
    peak, results, device, repeats = report.peak, report.results, report.device, report.repeats
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    dev = str(device)
    if device.type == "cuda":
        dev += f" ({torch.cuda.get_device_name(device)})"
    scope = {r.rss_scope for r in results}
    rss_note = ("per case (kernel peak mark reset before each case; includes the interpreter and torch)"
                if scope == {"case"} else "process peak so far (ru_maxrss)")
    lines = [
        "# voxhelpers benchmark" + (" (--quick: tiny sizes, not a measurement)" if report.quick else ""),
        "",
        f"- date: {now}",
        f"- torch {torch.__version__}, Python {platform.python_version()}, device: {dev}",
        f"- threads: {torch.get_num_threads()} (torch.get_num_threads), {os.cpu_count()} logical CPUs",
        f"- CPU: {cpu_model()}",
        f"- GEMMs of the layers' CPU fast paths: {_gemm_backend()} (voxhelpers.nets.layers: MKL on Intel CPUs, "
        "oneDNN elsewhere)",
        "- allocator: freed memory " + ("kept for reuse (voxhelpers.training.retain_freed_memory, as in training)"
                                        if report.memory_retained else "returned to the system (glibc default)"),
        f"- other processes: {_contention(report)}",
        f"- GEMM {peak.n}³ {peak.dtype}: torch.mm {peak.mm_gflops:,.1f} GFLOP/s, channels-last 1×1 conv "
        f"{peak.conv_gflops:,.1f} GFLOP/s → **peak {peak.peak_gflops:,.1f} GFLOP/s** (best of the timed repeats"
        + ("" if report.quick else ", measured before and again after the cases") + ")",
    ]
    for k, v in peak.extra.items():
        lines.append(f"- GEMM {peak.n}³ {k}: {v:,.1f} GFLOP/s (the peak for bf16-autocast cases)")
    lines += [
        "- samples/s and GFLOP/s from the median call" + (f" of {repeats} timed repeat(s)" if repeats else "")
        + "; FLOPs counted once by FlopCounterMode (matmul/conv forward + backward)",
        f"- peak RSS: {rss_note}",
        "- paired ratio (notes): each timed call is preceded by a quick GEMM probe (best of two `torch.mm` and two "
        "channels-last 1×1 conv products of the same size); the median of the calls' ratios to their own probe",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * 5 + ["---"]) + "|",
    ]
    for r in results:
        cells = [f"`{r.name}`", r.fmt, str(r.batch), _fmt(r.samples_per_s, 1), _fmt(r.gflops, 1),
                 _fmt(r.pct_of_peak, 1), _fmt(r.peak_rss_mb, 0), r.notes.replace("|", "/")]
        lines.append("| " + " | ".join(cells) + " |")
    ratios = _format_ratios(results)
    if ratios:
        lines += ["", *ratios]
    return "\n".join(lines) + "\n"


def write_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`voxhelpers.io.atomic_write`; parents made)."""
    from ..io import atomic_write

    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run the benchmarks, print the markdown report and write it to ``--out``.

    Returns:
        the exit status (0).
    """
    p = argparse.ArgumentParser(prog="python -m voxhelpers.bench", description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help=f"markdown report (default {DEFAULT_OUT})")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per case (default 3)")
    p.add_argument("--cases", default="all", help=f"comma-separated case names or 'all': {', '.join(CASES)}")
    p.add_argument("--quick", action="store_true", help="tiny sizes and one repeat (tests)")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error("--repeats must be >= 1")
    names = None if args.cases.strip() in ("", "all") else [n.strip() for n in args.cases.split(",") if n.strip()]
    if names is not None:
        unknown = [n for n in names if n not in CASES]
        if unknown:
            p.error(f"unknown case(s) {unknown}; known: {', '.join(CASES)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 1 if args.quick else args.repeats
    device = _default_device(args.device)
    report = run_benchmarks(names, repeats, args.quick, device, log=lambda m: print(m, file=sys.stderr, flush=True))
    text = format_markdown(report)
    out = write_atomic(args.out, text)
    print(text)
    print(f"written to {out}", file=sys.stderr)
    return 0


# the systems' cases register themselves on import, in system order
# isort: off
from . import voxel_cgan  # noqa: E402, F401
from . import iwgan  # noqa: E402, F401
# isort: on
