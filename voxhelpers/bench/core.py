"""Benchmark cases, their registry, and the runner: the GEMM peak first, then every case, timed and counted.

Each system registers its cases with :func:`register_case` in its own module (:mod:`voxhelpers.bench.voxel_cgan`,
:mod:`voxhelpers.bench.iwgan`); :func:`run_benchmarks` measures them in one run and :func:`main` is the command line
(``python -m voxhelpers bench``, or ``python -m voxhelpers.bench``; see :mod:`voxhelpers.bench`).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from .peak import GEMM_N, QUICK_GEMM_N, GemmPeak, PeakProbe, best_peak, measure_gemm_peak
from .report import DASH, BenchReport, CaseResult, _fmt, _paired_ratios, format_markdown, write_atomic
from .timing import (
    _cpu_busy_seconds,
    _default_device,
    _peak_rss_mb,
    _reset_peak_rss,
    count_flops,
    time_calls,
    time_counted_ops,
)

__all__ = ["CASES", "DEFAULT_OUT", "BenchCase", "BenchOptions", "main", "port_and_ours", "ratio_rows", "register_case",
           "run_benchmarks", "run_case"]

#: The command line's description (the first line of :mod:`voxhelpers.bench`'s docstring).
_DESCRIPTION = "Benchmarks: training and inference throughput as a fraction of this machine's measured GEMM peak."
DEFAULT_OUT = Path("bench_results") / "bench.md"


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


_FORMATS = {"channels_last_3d": torch.channels_last_3d, "contiguous": torch.contiguous_format}


def ratio_rows(reference: str) -> tuple[Callable[[float], str], Callable[[float], str]]:
    """derive functions for a reference row and the row compared with it: ``ours / <reference> time``."""
    medians: dict[str, float] = {}

    def remember(seconds: float) -> str:
        medians["ref"] = seconds
        return "reference row"

    def ratio(seconds: float) -> str:
        ref = medians.get("ref")
        if not ref:
            return f"ours / {reference}: the {reference} row was not run"
        return f"ours / {reference} time = {seconds / ref:.3f} (ours {ref / seconds:.2f}× as fast)"

    return remember, ratio


def port_and_ours(name: str, setup_port: Callable, setup_ours: Callable, batch: int, port_notes: str,
                  ours_notes: str) -> list[BenchCase]:
    """A training step's two rows in one run: a plain port (the reference) and ours, the second's notes giving
    ours / port time (:func:`ratio_rows`)."""
    remember, ratio = ratio_rows("port")
    return [BenchCase(name, setup_port, batch, batch, "plain port", notes=port_notes, derive=remember),
            BenchCase(name, setup_ours, batch, batch, "ours", notes=ours_notes, derive=ratio)]


def _random_grids(shape: tuple[int, ...], seed: int, density: float = 0.15) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) < density


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
    return CaseResult(case.name, case.fmt, case.batch, seconds, flops, _case_peak(peak, case.peak_kind, paired), rss,
                      "case" if per_case else "process", case.samples, "; ".join(notes), case.peak_kind, paired)


def _case_peak(peak: GemmPeak, kind: str, paired: Sequence[float]) -> float:
    """The peak a case is compared with: the session's measurement, or the best probe taken beside the case where
    that was faster (the same GEMM: a busy moment during the session's measurement cannot push a case above 100 %)."""
    return max(peak.peak_for(kind), max(paired, default=0.0))


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
    if device.type == "cpu":  # as every training run on CPU does (voxhelpers.training.distributed)
        from ..training.distributed import retain_freed_memory

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
            r.peak_gflops = _case_peak(peak, r.peak_kind, r.paired_peaks)
    cpu1 = _cpu_busy_seconds()
    other = None if cpu0 is None or cpu1 is None else max(0.0, (cpu1[0] - cpu0[0]) - (cpu1[1] - cpu0[1]))
    return BenchReport(peak, results, device, repeats, quick, time.perf_counter() - t0, other, retained)


def main(argv: Sequence[str] | None = None, prog: str = "python -m voxhelpers bench") -> int:
    """Command line: run the benchmarks, print the markdown report and write it to ``--out``.

    ``python -m voxhelpers bench [flags]`` (:func:`voxhelpers.cli.main` hands it the flags) and
    ``python -m voxhelpers.bench [flags]`` both land here.

    Args:
        argv: the flags (default ``sys.argv[1:]``).
        prog: the program name shown in ``--help`` and usage errors.

    Returns:
        the exit status (0).
    """
    p = argparse.ArgumentParser(prog=prog, description=_DESCRIPTION)
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
