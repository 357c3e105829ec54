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
    """Whether ``device`` multiplies bf16 in hardware: any CUDA device, or a CPU with AMX tiles (Intel Sapphire Rapids
    and later) or AVX-512 BF16 (AMD Zen 4 and later), where oneDNN runs bf16 convolutions faster than fp32 (our VNet's
    cpu-profile step on one thread: 4.10 → 1.26 s on a Xeon with AMX, 3.9 → 2.4 s on an AMD EPYC with AVX-512 BF16).
    CPUs with neither emulate bf16, slower than fp32. On the EPYC one oneDNN kernel is wrong in bf16
    (:func:`bf16_weight_grad_faulty`); :func:`guard_bf16_convs`, which the VNet and X-ray → CT systems' ``build``
    apply, steps around it."""
    device = torch.device(device)
    if device.type == "cuda":
        return True
    return device.type == "cpu" and (_cpu_has("_is_amx_tile_supported") or _cpu_has("_is_avx512_bf16_supported"))


def _cpu_has(probe: str) -> bool:
    """What ``torch.cpu.<probe>()`` says (False where this torch has no such probe)."""
    fn = getattr(torch.cpu, probe, None)
    return fn is not None and bool(fn())


def bf16_weight_grad_faulty(device: torch.device | str) -> bool:
    """Whether ``device`` is a CPU with AVX-512 BF16 and no AMX, where oneDNN's bf16 ``conv3d`` **weight gradient** is
    wrong for a stride-1 convolution whose input is smaller than its kernel. Measured on an AMD EPYC (torch 2.13.0,
    one thread, 2026-12-01) against fp32: relative error 0.9–1.1 or non-finite in every draw at 2³ with a 3³ kernel and
    at 1³, 2³, 4³ with a 5³ kernel — the deepest blocks of a VNet on 64³ patches — and 0.3 % (bf16 rounding) at 1³ and
    4³ with 3³, 6³ and more with 5³, for strided and transposed convolutions at every size tried, and for the forward
    pass and the input gradient always. Unguarded, bf16 training there stopped on a NaN loss within an epoch."""
    return (torch.device(device).type == "cpu" and _cpu_has("_is_avx512_bf16_supported")
            and not _cpu_has("_is_amx_tile_supported"))


class SmallInputFp32Conv3d(torch.nn.Conv3d):
    """``nn.Conv3d`` that computes in fp32 under CPU autocast where it is stride 1 and its input is smaller than its
    kernel along some axis (the case :func:`bf16_weight_grad_faulty` names); everywhere else exactly ``nn.Conv3d``.
    Same parameters and state dict."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and torch.is_autocast_enabled("cpu") and all(s == 1 for s in self.stride)
                and any(n < k for n, k in zip(x.shape[2:], self.kernel_size, strict=True))):
            with torch.autocast("cpu", enabled=False):
                return super().forward(x.float())
        return super().forward(x)


def guard_bf16_convs(models, device: torch.device | str, force: bool = False):
    """On a CPU where :func:`bf16_weight_grad_faulty` (or with ``force``), turn every plain ``nn.Conv3d`` of
    ``models`` (a module or a dict of them) into :class:`SmallInputFp32Conv3d` in place (its class only: weights,
    state dict and optimiser state unchanged); elsewhere leave them be. Returns ``models``."""
    if not (force or bf16_weight_grad_faulty(device)):
        return models
    for model in models.values() if isinstance(models, dict) else (models,):
        for module in model.modules():
            if type(module) is torch.nn.Conv3d:
                module.__class__ = SmallInputFp32Conv3d
    return models


def resolve_precision(device: torch.device | str, precision: str) -> str:
    """``bf16`` or ``fp32``: what ``precision`` (one of ``PRECISIONS``) means on ``device``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
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
