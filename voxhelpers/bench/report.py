"""The benchmark report: measured cases (:class:`CaseResult`), a whole run (:class:`BenchReport`) and its markdown.

:func:`format_markdown` writes a header (date, versions, threads, CPU, the GEMM peak, the CPU time other processes
took) and one table row per result, in :data:`COLUMNS`, then the speed ratios between rows of the same run
(channels-last against contiguous, the layers' fast paths against plain ``torch.nn``, one GEMM backend against the
other); :func:`write_atomic` writes it.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .peak import GemmPeak
from .timing import cpu_model

__all__ = ["COLUMNS", "DASH", "BenchReport", "CaseResult", "format_markdown", "write_atomic"]

#: Columns of the result table, in order.
COLUMNS = ("case", "format", "batch", "samples/s", "GFLOP/s", "% of peak", "peak RSS MB", "notes")
DASH = "—"


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
        memory_retained: freed memory was kept for reuse
            (:func:`voxhelpers.training.distributed.retain_freed_memory`, as training on CPU does).
    """

    peak: GemmPeak
    results: list[CaseResult]
    device: torch.device
    repeats: int
    quick: bool = False
    wall_s: float = float("nan")
    other_cpu_s: float | None = None
    memory_retained: bool = False


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
    from ..nets import fast_conv3d

    return fast_conv3d.GEMM_BACKEND


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
        f"- GEMMs of the layers' CPU fast paths: {_gemm_backend()} (voxhelpers.nets.fast_conv3d: MKL on Intel CPUs, "
        "oneDNN elsewhere)",
        "- allocator: freed memory " + ("kept for reuse (voxhelpers.training.distributed.retain_freed_memory, as in "
                                        "training)" if report.memory_retained
                                        else "returned to the system (glibc default)"),
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
    """Write ``text`` to ``path`` atomically (see :func:`voxhelpers.data.io.atomic_write`; parents made)."""
    from ..data.io import atomic_write

    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
