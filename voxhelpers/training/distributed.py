"""Devices, seeding and torchrun: what every run needs before its first batch.

Multi-GPU (or multi-process CPU) training goes through ``torch.distributed`` with torchrun: each process takes its
share of every epoch (a ``DistributedSampler``), gradients are averaged across processes before every optimiser step
(an optimiser step pre-hook, so the systems' step functions stay as they are), BatchNorm statistics follow rank 0,
and only rank 0 writes checkpoints and figures.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch
from torch import nn


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU ``torch.Generator`` seeded with ``seed`` for the run's draws."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when present, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def distributed_world() -> tuple[int, int]:
    """``(rank, world_size)``; starts ``torch.distributed`` from torchrun's environment when WORLD_SIZE > 1
    (NCCL on CUDA, gloo on CPU). A plain run gives ``(0, 1)``."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    return dist.get_rank(), dist.get_world_size()


def average_gradients_before_step(optimizer: torch.optim.Optimizer) -> None:
    """Make ``optimizer.step()`` first average its parameters' gradients over all processes (no-op alone)."""
    import torch.distributed as dist

    def hook(opt, args, kwargs):
        world = dist.get_world_size()
        for group in opt.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    dist.all_reduce(p.grad)
                    p.grad.div_(world)

    if dist.is_initialized() and dist.get_world_size() > 1:
        optimizer.register_step_pre_hook(hook)


def sync_buffers(*models: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every process (no-op alone)."""
    import torch.distributed as dist

    if dist.is_initialized() and dist.get_world_size() > 1:
        for m in models:
            for b in m.buffers():
                dist.broadcast(b, 0)


def mean_over_processes(value: float) -> float:
    """The mean of a float over all processes (the value itself alone)."""
    import torch.distributed as dist

    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t) / dist.get_world_size()


def retain_freed_memory() -> bool:
    """Make this process's C allocator keep freed memory for reuse instead of handing it back to the kernel.

    glibc serves every allocation above 32 MiB (by default: above 128 KiB, adaptively) with a fresh ``mmap`` and
    returns it with ``munmap`` on free, so each large activation of a training step is page-faulted in and zeroed
    by the kernel again, every step. A batch-80 iteration of the conditional voxel GAN took 0.5–0.9 million page faults
    and 1.2–2.5 s of kernel time here; with this call, none after the first iterations, and the iteration is
    1.1–1.3× faster (the same trick as running under jemalloc or tcmalloc, which PyTorch's CPU tuning guide
    recommends). Freed memory is kept, so the process's resident size stays at its peak.

    Sets ``M_MMAP_MAX = 0`` (no mmap-served blocks), ``M_TRIM_THRESHOLD`` and ``M_TOP_PAD`` to 1 GiB (no trimming,
    room to grow) with ``mallopt(3)``. Idempotent.

    Returns:
        True where applied (Linux with glibc), False elsewhere (a no-op).
    """
    import ctypes
    import ctypes.util
    import platform

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_top_pad, m_mmap_max = -1, -2, -4  # <malloc.h>
        ok = [libc.mallopt(m_mmap_max, 0), libc.mallopt(m_trim_threshold, 1 << 30), libc.mallopt(m_top_pad, 1 << 30)]
    except (OSError, AttributeError):
        return False
    return all(r == 1 for r in ok)


def distributed_setup(device: torch.device, seed: int) -> tuple[int, int, torch.device, torch.Generator]:
    """Seed a run and join torchrun when launched by it: ``(rank, world, device, generator)``.

    Every process builds the same initial weights (``seed_everything(seed)``); its generator is then re-seeded per
    rank, so each process draws its own z and ε. Under torchrun with CUDA, ``device`` becomes this process's GPU.
    On CPU, :func:`retain_freed_memory` is applied.
    """
    rank, world = distributed_world()
    if device.type == "cpu":
        retain_freed_memory()
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    generator = seed_everything(seed)
    if world > 1:
        generator.manual_seed(seed + 7919 * rank)
    return rank, world, device, generator
