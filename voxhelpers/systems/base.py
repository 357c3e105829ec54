"""What a system is: one declaration of config → networks, optimisers, step, data, evaluation and figures.

Every trainable model of the project is a :class:`System`; :func:`voxhelpers.training.fit` trains any of them, the
command line (``python -m voxhelpers train <system>``) exposes them, and :mod:`voxhelpers.systems` holds the one
registry. See ``docs/adding_a_system.md`` for the recipe.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..config.profiles import PRECISIONS


@dataclass
class Splits:
    """A system's data for one config: the training items, any held-out parts, and a line for model cards.

    Attributes:
        train: what :attr:`System.dataset` turns into the training Dataset (voxel grids for the voxel systems).
        held_out: named held-out parts (``{"test": ...}``, ``{"validation": ..., "test": ...}``), never trained on.
        description: one line naming the data and split, written into model cards.
    """

    train: Any
    held_out: dict[str, Any] = field(default_factory=dict)
    description: str = ""


def always(_: dict) -> bool:
    """An EMA rule: update after every batch."""
    return True


def generator_stepped(out: dict) -> bool:
    """An EMA rule: update only after batches where the generator took a step (WGAN-GP's n_critic schedule)."""
    return not math.isnan(out.get("loss_g", float("nan")))


@dataclass(frozen=True)
class System:
    """One trainable system, declared once.

    Attributes:
        name: the registry key and command-line name (``"voxel_cgan"``).
        title: a human title for progress bars and figures.
        config: its config dataclass (a :class:`voxhelpers.config.Config`).
        build: ``(config, device) -> {name: module}``: every network of a run, EMA copies included.
        optimizers: ``(config, models) -> {name: optimizer}``.
        data: ``(config, roots) -> Splits``: reads and splits the data (``roots``: data roots, None = default).
        dataset: ``(config, train) -> torch Dataset`` of dict items; validates ``train`` (a user's array too).
        step: ``(models, optimizers, batch, config, state) -> {str: float}``: one batch's update; keys shared across
            systems (``loss_d``, ``loss_g``, ``loss_gp``, ``loss_rec``...). Keys ending in ``_steps`` are summed
            over an epoch, the rest averaged (NaN = "no such update on this batch").
        evaluate: ``(model, config, splits, profile, device) -> {str: float}``: the card metrics of a shipped model.
        sheet_inputs: ``(config, splits) -> inputs`` for :attr:`figure`, made once per run (fixed z, fixed views).
        figure: ``(model, config, inputs, title) -> matplotlib Figure``: a sample sheet.
        weights_name: ``config -> file name`` of the exported weights (``"bce.safetensors"``).
        run_name: ``config -> folder name`` of a run under ``runs/<profile>/<system>/``.
        shipped: the model key exported (``"G"``); with ``ema`` and ``config.ema_decay > 0`` its EMA copy instead.
        shipped_role: the :func:`voxhelpers.nets.build_network` role that rebuilds the shipped model from a card.
        ema: ``(ema key, model key)`` for the moving average of weights, or None.
        ema_when: after which batches the EMA is updated (:func:`always`, :func:`generator_stepped`).
        sync_extra: keys of ``state.extra`` averaged over processes after each batch under torchrun.
        weights_dtype: ``"fp16"`` or ``"int8"`` (per-channel) for exported weights.
        initial_extra: ``config -> dict``: system state kept in checkpoints (the cGAN's D gate).
        details: optional ``(model, config, splits, device) -> (metrics, per-case DataFrame)``: :attr:`evaluate`
            with its per-case rows kept; the command line writes them to ``cases.csv`` beside the metrics.
        init_models: optional ``(models, dataset, config) -> None``: initialises fresh models from the training data
            (the X-ray generator's mean-CT prior); not called when a checkpoint is resumed.
        snapshots: the command line's sample sheets also keep the shipped model's weights
            (``samples/epoch_XXXX.safetensors``), so held-out metrics can be traced over epochs after the run (the
            CRGAN's convergence plot).
    """

    name: str
    title: str
    config: type
    build: Callable[..., dict[str, nn.Module]]
    optimizers: Callable[..., dict[str, torch.optim.Optimizer]]
    data: Callable[..., Splits]
    dataset: Callable[..., torch.utils.data.Dataset]
    step: Callable[..., dict[str, float]]
    evaluate: Callable[..., dict]
    sheet_inputs: Callable[..., Any]
    figure: Callable[..., Any]
    weights_name: Callable[[Any], str]
    run_name: Callable[[Any], str]
    shipped: str = "G"
    shipped_role: str = "generator"
    ema: tuple[str, str] | None = ("G_ema", "G")
    ema_when: Callable[[dict], bool] = always
    sync_extra: tuple[str, ...] = ()
    weights_dtype: str = "fp16"
    initial_extra: Callable[[Any], dict] = lambda cfg: {}
    details: Callable[..., Any] | None = None
    init_models: Callable[..., None] | None = None
    snapshots: bool = False

    def shipped_key(self, config) -> str:
        """The key of the model that is exported and evaluated for ``config``."""
        if self.ema is not None and getattr(config, "ema_decay", 0) > 0:
            return self.ema[0]
        return self.shipped


def summarise_epoch(rows: list[dict], last: dict) -> dict:
    """An epoch's history row from its batches' step outputs.

    Keys ending in ``_steps`` are summed (updates made in the epoch); the others are averaged over the batches
    where they are finite; a key with no finite value in the epoch repeats ``last[key]`` (its previous value, e.g.
    the generator's loss in an epoch without a generator step) or is NaN. ``last`` is updated in place.
    """
    row = {}
    for k in rows[0]:
        values = np.array([r[k] for r in rows], dtype=float)
        if k.endswith("_steps"):
            row[k] = float(values.sum())
            continue
        finite = values[~np.isnan(values)]
        row[k] = float(finite.mean()) if len(finite) else float(last.get(k, float("nan")))
        if len(finite):
            last[k] = row[k]
    return row


def generator_update(optimizer: torch.optim.Optimizer, loss_g: torch.Tensor) -> None:
    """One optimiser step on a generator loss; a NaN or inf loss raises ``FloatingPointError`` before any update
    (fit then names the epoch and batch and keeps the last good checkpoint)."""
    if not torch.isfinite(loss_g):
        raise FloatingPointError("the generator loss is NaN or inf; lower the learning rate or restore the last "
                                 "checkpoint")
    optimizer.zero_grad(set_to_none=True)
    loss_g.backward()
    optimizer.step()


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` trains in bf16 natively and safely: any CUDA device, or a CPU with AMX tiles (Sapphire
    Rapids and later), where oneDNN runs bf16 convolutions several times faster than fp32 (our VNet's cpu-profile
    step 4.10 → 1.26 s on one thread). A CPU with AVX-512 BF16 but no AMX (AMD Zen 4, seen 2026-12-01 on an EPYC,
    torch 2.13.0) is faster in bf16 too (1.6×) but is left out: there oneDNN's bf16 ``conv3d`` weight gradient comes
    back NaN now and then (:func:`bf16_weight_grad_faulty`). CPUs with neither emulate bf16, slower than fp32."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return device.type == "cpu" and probe is not None and bool(probe())


def bf16_weight_grad_faulty(device: torch.device | str) -> bool:
    """Whether ``device`` is a CPU with AVX-512 BF16 and no AMX. On such an AMD EPYC with torch 2.13.0, oneDNN's bf16
    ``conv3d`` weight gradient had non-finite entries in 1–3 of 10 random draws at 2–4³ inputs with 64–128 channels
    (3³ and 5³ kernels; the input gradient and the forward pass were finite), so bf16 training stopped on a NaN loss
    within an epoch (our VNet at the cpu profile, and the 16³ phantom test at step 0). fp32 is unaffected."""
    device = torch.device(device)
    if device.type != "cpu" or native_bf16(device):
        return False
    probe = getattr(torch.cpu, "_is_avx512_bf16_supported", None)
    return probe is not None and bool(probe())


def resolve_precision(device: torch.device | str, precision: str) -> str:
    """``bf16`` or ``fp32``: what ``precision`` (one of ``PRECISIONS``) means on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if precision == "bf16" and bf16_weight_grad_faulty(device):
        import warnings

        warnings.warn("bf16 training on this CPU (AVX-512 BF16, no AMX): oneDNN's bf16 conv3d weight gradient comes "
                      "back NaN now and then here, so the loss may turn NaN; use --precision fp32 (or auto)",
                      RuntimeWarning, stacklevel=2)
    if precision == "cuda":
        return "bf16" if torch.device(device).type == "cuda" else "fp32"
    return precision


def autocast_for(device: torch.device | str, precision: str | None = None):
    """The autocast context of a training step: one of ``PRECISIONS`` (``resolve_precision``) — bf16 autocast or a
    no-op context; ``None`` is ``"cuda"`` (bf16 autocast on CUDA, a no-op on CPU)."""
    import contextlib

    device = torch.device(device)
    if resolve_precision(device, precision or "cuda") == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


class frozen:  # noqa: N801 - used as a context manager, like torch.no_grad
    """Turn off ``requires_grad`` on a model's parameters for the block (a critic during a generator step), then
    restore each parameter's own flag, also when the block raises."""

    def __init__(self, model: nn.Module):
        self.model = model

    def __enter__(self) -> nn.Module:
        self.flags = [p.requires_grad for p in self.model.parameters()]
        self.model.requires_grad_(False)
        return self.model

    def __exit__(self, *exc) -> None:
        for p, flag in zip(self.model.parameters(), self.flags, strict=True):
            p.requires_grad_(flag)


def sample_z(n: int, z_dim: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """z ~ N(0, I), (n, z_dim), drawn on the CPU generator (so runs reproduce on any device), moved to device."""
    return torch.randn(n, z_dim, generator=generator).to(device)


def memory_format_of(model: nn.Module) -> torch.memory_format:
    """channels-last-3d when the model's first 5-D parameter is laid out that way, else contiguous."""
    p = next(model.parameters())
    if p.ndim == 5 and p.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format
