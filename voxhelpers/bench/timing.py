"""Timing, FLOP counting and memory of one benchmark call: the measuring instruments of :mod:`voxhelpers.bench`.

* :func:`time_calls`: wall-clock seconds per call (CUDA synchronised).
* :func:`count_flops`: FLOPs of one call, forward and backward, by :class:`torch.utils.flop_counter.FlopCounterMode`.
* :func:`time_counted_ops`: the seconds a call spends in exactly those counted ops (matrix products, convolutions).
* peak resident memory per case, the CPU time other processes take, and :func:`cpu_model`.
"""

from __future__ import annotations

import os
import platform
import resource
import sys
import time
from collections.abc import Callable

import torch

__all__ = ["count_flops", "cpu_model", "time_calls", "time_counted_ops"]


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
    from ..nets.fast_conv3d import cpuinfo

    return cpuinfo("model name") or platform.processor() or platform.machine() or "unknown"


def _default_device(device=None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
