"""The one training loop: ``fit(system, config)`` for every system.

What every system gets from it: a torch ``DataLoader`` over the system's Dataset (a ``DistributedSampler`` shuffles
it with the run's seed, one order per epoch, shared under torchrun), a tqdm bar, the history as a DataFrame, the
moving average of weights, atomic checkpoints (every ``sample_every`` epochs, every few minutes of wall time, at a
time cap and at the end), exact resume — a run stopped and resumed from its checkpoint makes the same weights as an
uninterrupted one — and a NaN / inf stop that keeps the last good checkpoint. Sample sheets and other per-epoch
work are callbacks handed in by the caller (notebooks, the command line); nothing here draws.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from ..systems import System, get_system, summarise_epoch
from .distributed import (
    average_gradients_before_step,
    default_device,
    distributed_setup,
    mean_over_processes,
    sync_buffers,
)
from .state import CHECKPOINT_NAME, TrainState, read_checkpoint, update_ema

#: history keys whose NaN stops a run (elsewhere NaN means "no such update on this batch")
GUARDED = ("loss", "loss_d", "loss_g", "loss_gp", "loss_rec")


@dataclass
class FitResult:
    """What :func:`fit` returns: every model, the history, the final state, and the model to ship."""

    models: dict[str, nn.Module]
    history: pd.DataFrame
    state: TrainState
    shipped: str

    @property
    def model(self) -> nn.Module:
        """The model exported and evaluated (the moving average when the config keeps one)."""
        return self.models[self.shipped]


def _loader(dataset, cfg, world: int, rank: int, epoch: int) -> DataLoader:
    sampler = DistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=True, seed=cfg.seed)
    sampler.set_epoch(epoch)  # one order per epoch, the same in every process: exact resume needs nothing saved
    return DataLoader(dataset, batch_size=max(1, math.ceil(cfg.batch_size / world)), sampler=sampler)


def _sync_extra(extra: dict, keys: Sequence[str]) -> None:
    """Average the named system state over processes (one gate decision for all of them)."""
    for k in keys:
        if isinstance(extra.get(k), dict):
            extra[k] = {kk: mean_over_processes(float(v)) for kk, v in extra[k].items()}
        elif k in extra:
            extra[k] = mean_over_processes(float(extra[k]))


def fit(system: str | System, config, out_dir: str | Path | None = None, device=None, data=None,
        resume: bool = True, progress: bool = True, max_minutes: float | None = None,
        checkpoint_minutes: float = 5.0, callbacks: Sequence[Callable[[TrainState, dict], None]] = (),
        log: Callable[[str], None] | None = None) -> FitResult:
    """Train a system from its config.

    Args:
        system: a :class:`voxhelpers.systems.System` or its name (``"voxel_cgan"``, ``"iwgan"``, ``"vae_iwgan"``).
        config: the system's config dataclass (profile budgets applied: ``Config.for_profile``).
        out_dir: the run folder (``checkpoint.pt``); None keeps nothing on disk.
        device: torch device (default CUDA when present).
        data: training items (voxel grids for the voxel systems: a user's own array); default: the train part of
            ``system.data(config)``. Validated before any model is built.
        resume: continue from ``out_dir/checkpoint.pt`` when it exists (a checkpoint of another config is refused).
        progress: show a tqdm bar.
        max_minutes: stop after the first epoch that ends past this wall time (checkpointed there, so a later call
            resumes); None: no limit. The history says how many epochs ran.
        checkpoint_minutes: also checkpoint after the first epoch that ends this long after the last checkpoint.
        callbacks: called as ``callback(state, row)`` after every epoch on rank 0 (sample sheets, logging).
        log: where one-line messages go (resuming, NaN stop); default: standard error.

    Returns:
        :class:`FitResult` (``.model`` is the model to ship, ``.history`` one row per epoch with column ``epoch``).

    Raises:
        ValueError: bad data or a checkpoint of another run; FloatingPointError: a loss became NaN or inf (the last
        good checkpoint is kept, the message names it).
    """
    from tqdm.auto import tqdm

    system = get_system(system)
    cfg = config
    log = log or (lambda msg: print(msg, file=sys.stderr))
    device = default_device(device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    dataset = system.dataset(cfg, system.data(cfg).train if data is None else data)
    rank, world, device, generator = distributed_setup(device, cfg.seed)
    models = system.build(cfg, device)
    optimizers = system.optimizers(cfg, models)
    for opt in optimizers.values():
        average_gradients_before_step(opt)
    state = TrainState(models, optimizers, generator, extra=system.initial_extra(cfg), config=cfg.to_dict())
    ckpt_path = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    resuming = resume and ckpt_path is not None and ckpt_path.is_file()
    if system.init_models is not None and not resuming:
        system.init_models(models, dataset, cfg)
    if resuming:
        state.load_state_dict(read_checkpoint(ckpt_path), str(ckpt_path),
                              upgrade=lambda d: type(cfg).from_dict(d).to_dict())
        if rank == 0:
            log(f"resuming from epoch {state.epoch} of {cfg.epochs}, {ckpt_path}")
    if rank != 0:
        ckpt_path, progress, callbacks = None, False, ()  # only rank 0 writes
    trained = [m for k, m in models.items() if system.ema is None or k != system.ema[0]]
    ema_on = system.ema is not None and getattr(cfg, "ema_decay", 0) > 0
    bar = tqdm(total=cfg.epochs, initial=state.epoch, desc=f"{system.name}", disable=not progress, leave=False)
    start = last_save = time.monotonic()
    try:
        while state.epoch < cfg.epochs:
            for m in trained:
                m.train()
            rows = []
            for batch in _loader(dataset, cfg, world, rank, state.epoch):
                batch = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
                try:
                    out = system.step(models, optimizers, batch, cfg, state)
                except FloatingPointError as e:
                    kept = f"; the last good checkpoint is kept at {ckpt_path}" if ckpt_path else ""
                    where = f"{system.name}: epoch {state.epoch}, batch {state.step}"
                    raise FloatingPointError(f"{where}: {e}{kept}") from e
                # checked per batch: the epoch's row averages over finite values and repeats the last one, so a
                # NaN loss would never reach it (a NaN loss_g with g_steps 0 only means "no generator step")
                skipped = ("loss_g",) if out.get("g_steps") == 0 else ()
                bad = [k for k, v in out.items()
                       if math.isinf(v) or (math.isnan(v) and k in GUARDED and k not in skipped)]
                if bad:
                    kept = f"; the last good checkpoint is kept at {ckpt_path}" if ckpt_path else ""
                    raise FloatingPointError(f"{system.name}: {bad} became NaN/inf at epoch {state.epoch}, batch "
                                             f"{state.step}{kept}")
                state.step += 1
                if world > 1:
                    _sync_extra(state.extra, system.sync_extra)
                    sync_buffers(*trained)  # one set of BatchNorm statistics (rank 0's) in every process
                if ema_on and system.ema_when(out):
                    update_ema(models[system.ema[0]], models[system.ema[1]], cfg.ema_decay)
                rows.append(out)
            state.history.append({"epoch": state.epoch, **summarise_epoch(rows, state.extra.setdefault("last", {}))})
            row = state.history[-1]
            state.epoch += 1
            for callback in callbacks:
                callback(state, row)
            now = time.monotonic()
            out_of_time = max_minutes is not None and now - start > 60 * max_minutes
            if max_minutes is not None and world > 1:  # every process stops at the same epoch
                out_of_time = mean_over_processes(float(out_of_time)) > 0
            due = (state.epoch % cfg.sample_every == 0 or state.epoch == cfg.epochs or out_of_time
                   or now - last_save > 60 * checkpoint_minutes)
            if ckpt_path is not None and due:
                state.save(ckpt_path)
                last_save = now
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k.startswith(("loss", "acc"))})
            if out_of_time:
                break
    finally:
        bar.close()
    return FitResult(models, pd.DataFrame(state.history), state, system.shipped_key(cfg))
