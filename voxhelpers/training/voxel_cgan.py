"""System 1 training: the hybrid-loss conditional voxel GAN the seed's way (SPEC §1), with an EMA of G."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config import VoxelCGANConfig, voxel_cgan_config
from .loop import (
    TrainState,
    average_gradients_before_step,
    config_defaults,
    default_device,
    distributed_setup,
    distributed_world,
    epoch_order,
    fit,
    mean_over_processes,
    sync_buffers,
)


# --------------------------------------------------------------------------------------------------
# System 1: hybrid-loss conditional voxel GAN
# --------------------------------------------------------------------------------------------------
def voxel_cgan_data(cfg: VoxelCGANConfig) -> np.ndarray:
    """The training grids of a config: bool (N, C, 32, 32, 32), real SynthEVox3D or procedural stand-ins."""
    from ..datasets import load_synthevox3d, make_conditions, resolve_category
    from ..synthetic import procedural_shapes

    if cfg.data == "synthevox3d":
        volumes = load_synthevox3d(cfg.category, cfg.n_conditions)
    elif cfg.data == "procedural":
        kind = resolve_category(cfg.category)[0]
        volumes = make_conditions(procedural_shapes(kind, n=cfg.n_train or 80, seed=cfg.seed), cfg.n_conditions)
    else:
        raise ValueError(f"data must be 'synthevox3d' or 'procedural', got {cfg.data!r}")
    return volumes[: cfg.n_train] if cfg.n_train else volumes


def describe_data(cfg: VoxelCGANConfig) -> str:
    """One line naming the training data of a config, for model cards."""
    from ..datasets import resolve_category

    name, synset = resolve_category(cfg.category)
    n = cfg.n_train or 80
    if cfg.data == "procedural":
        return f"procedural stand-in {name} shapes (not real data), {n} shapes, {cfg.n_conditions} conditions"
    return f"SynthEVox3D-Tiny {name} ({synset}), first {n} shapes, {cfg.n_conditions} rotation conditions"


def build_voxel_cgan(cfg: VoxelCGANConfig, device=None) -> tuple[nn.Module, nn.Module]:
    """Generator and discriminator of a config, on ``device``, channels-last-3d (faster on CPU and GPU)."""
    from ..nets import CGANDiscriminator, CGANGenerator

    device = default_device(device)
    G = CGANGenerator(cfg.z_dim, cfg.n_conditions, cfg.condition)
    D = CGANDiscriminator(cfg.n_conditions, cfg.condition, cfg.output)
    return (G.to(device, memory_format=torch.channels_last_3d), D.to(device, memory_format=torch.channels_last_3d))


def make_optimizer(name: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """``"rmsprop"`` (the hybrid-loss seed) or ``"adam"`` with β = (0.5, 0.999) (its upstream, 3D-CGAN)."""
    if name == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=lr)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, betas=(0.5, 0.999))
    raise ValueError(f"optimizer must be 'rmsprop' or 'adam', got {name!r}")


def train_voxel_cgan(cfg: VoxelCGANConfig, out_dir: str | Path | None = None, device=None,
                     volumes: np.ndarray | None = None, resume: bool = True,
                     progress: bool = True) -> tuple[nn.Module, nn.Module, pd.DataFrame]:
    """Train the hybrid-loss cGAN the seed's way (RMSprop, gated D step, G step, pairing step per batch).

    Args:
        cfg: the config (profile budgets already applied, see :func:`voxhelpers.config.voxel_cgan_config`).
        out_dir: run folder: ``checkpoint.pt`` and ``samples/epoch_XXXX.png`` (sheets every
            ``cfg.sample_every`` epochs, named by the true epoch index — the seed named epoch-360 weights 400).
        device: torch device (default CUDA when present).
        volumes: training grids (N, C, D, H, W) {0, 1}; default: :func:`voxel_cgan_data`.
        resume: continue from ``out_dir/checkpoint.pt``.
        progress: tqdm bar.

    Returns:
        ``(G, D, history)``; G is the moving average of the generator's weights when ``cfg.ema_decay > 0``
        (an addition to the seed: the seed's high generator learning rate makes single snapshots oscillate).
    """
    from ..datasets import check_grids

    device = default_device(device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    volumes = voxel_cgan_data(cfg) if volumes is None else volumes
    if volumes.ndim != 5 or volumes.shape[1] != cfg.n_conditions:
        raise ValueError(f"volumes must be (N, {cfg.n_conditions}, D, H, W), got {volumes.shape}")
    check_grids(volumes.reshape(-1, *volumes.shape[2:]), "volumes")
    consistency_weight(0, cfg.epochs, cfg.consistency, cfg.consistency_start)  # refuses a bad schedule up front
    rank, world, device, generator = distributed_setup(device, cfg.seed)
    G, D = build_voxel_cgan(cfg, device)
    opt_g, opt_d = make_optimizer(cfg.optimizer, G, cfg.lr_g), make_optimizer(cfg.optimizer, D, cfg.lr_d)
    for opt in (opt_g, opt_d):
        average_gradients_before_step(opt)
    G_ema = copy.deepcopy(G).requires_grad_(False)  # the moving-average generator (shipped when ema_decay > 0)
    state = TrainState({"G": G, "D": D, "G_ema": G_ema}, {"G": opt_g, "D": opt_d}, generator,
                       extra={"gate": {"acc": 0.0}}, config=cfg.to_dict(),
                       config_defaults=config_defaults(cfg))
    data = torch.as_tensor(volumes, dtype=torch.float32)[:, :, None]  # (N, C, 1, D, H, W), kept on the CPU
    fixed_z = torch.randn(4, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 12345))

    def run_epoch(st: TrainState) -> dict:
        from ..steps import voxel_cgan_step

        G.train(), D.train()
        order = epoch_order(len(data), st.generator, world, cfg.seed, st.epoch)
        weight = consistency_weight(st.epoch, cfg.epochs, cfg.consistency, cfg.consistency_start)
        rows = []
        for i in range(0, len(data), cfg.batch_size):
            batch = data[order[i: i + cfg.batch_size][rank::world]].to(device, non_blocking=True)
            rows.append(voxel_cgan_step(G, D, opt_g, opt_d, batch, st.extra["gate"], cfg.loss, cfg.variant,
                                        cfg.d_acc_gate, cfg.pairing, st.generator, cfg.pairing_steps,
                                        weight))
            if world > 1:  # one gate decision and one set of BatchNorm statistics for all processes
                st.extra["gate"]["acc"] = mean_over_processes(st.extra["gate"]["acc"])
                sync_buffers(G, D)
            update_ema(G_ema, G, cfg.ema_decay)
        row = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
        return {**row, "consistency_weight": weight} if cfg.consistency else row

    def on_epoch_end(st: TrainState, row: dict) -> None:
        e = st.epoch - 1
        if out_dir is not None and rank == 0 and (e % cfg.sample_every == 0 or st.epoch == cfg.epochs):
            sheet = Path(out_dir) / "samples" / f"epoch_{e:04d}.png"
            save_sample_sheet(G_ema if cfg.ema_decay > 0 else G, fixed_z, sheet,
                              title=f"{cfg.category} · {cfg.loss} · epoch {e}", data=cfg.data)

    history = fit(state, run_epoch, cfg.epochs, out_dir, checkpoint_every=cfg.sample_every, resume=resume,
                  on_epoch_end=on_epoch_end, progress=progress, desc=f"{cfg.category}/{cfg.loss}")
    return (G_ema if cfg.ema_decay > 0 else G), D, history


def consistency_weight(epoch: int, epochs: int, weight: float, start: float = 0.0) -> float:
    """The consistency term's weight in epoch ``epoch`` (0-based) of ``epochs``.

    ``weight`` throughout when ``start`` is 0; otherwise 0 for the first ``start`` fraction of the epochs, then a
    linear ramp to ``weight`` over the next 10 % of the epochs (so that G first learns to draw varied shapes, and
    the term then makes the conditions agree), and ``weight`` after that.
    """
    if not 0.0 <= start < 1.0:
        raise ValueError(f"consistency_start must be a fraction in [0, 1), got {start}")
    if start == 0.0:
        return float(weight)
    return float(weight) * min(1.0, max(0.0, round((epoch / epochs - start) * 10, 9)))


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema ← decay · ema + (1 − decay) · model for parameters; buffers (BatchNorm statistics) copied.

    ``decay = 0`` makes ``ema`` a copy of ``model``.
    """
    if not 0 <= decay < 1:
        raise ValueError(f"ema decay must be in [0, 1), got {decay}")
    for pe, p in zip(ema.parameters(), model.parameters(), strict=False):
        pe.lerp_(p, 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers(), strict=False):
        be.copy_(b)


def save_sample_sheet(G: nn.Module, z: torch.Tensor, path: str | Path, title: str = "", data: str = "synthevox3d"):
    """The seed's training sheet: condition 0, condition 1 and combined (paired) rows for fixed z."""
    from ..inference import generate_conditions
    from ..plots import sample_sheet_figure, save_figure
    from ..synthetic import STAND_IN_LABEL
    from ..transforms import condition_rotation

    grids = generate_conditions(G, z)  # (B, C, D, H, W)
    cond0, cond1 = grids[:, 0], grids[:, min(1, grids.shape[1] - 1)]
    combined = (cond0 + condition_rotation(cond1, 1, inverse=True)) / 2
    fig = sample_sheet_figure(cond0, cond1, combined, suptitle=title,
                              label=STAND_IN_LABEL if data == "procedural" else None)
    return save_figure(fig, path)


def evaluate_pretrained_voxel_cgan(path: str | Path, profile: str | None = None, write: bool = True) -> dict:
    """Evaluate stored cGAN weights (as shipped, int8 included) on their category and write the card metrics.

    Uses the profile's evaluation budget (``full``: 1,000 latents for consistency, 80 shapes for the set metrics).
    """
    from ..config import eval_budget
    from ..inference import evaluate_voxel_cgan, load_pretrained, update_card

    G, card = load_pretrained(path)
    cfg = VoxelCGANConfig(**card["config"])
    budget = eval_budget(profile)
    real = voxel_cgan_data(cfg)
    metrics = evaluate_voxel_cgan(G, real, budget.n_consistency, budget.n_generated, seed=cfg.seed + 1)
    metrics["n_consistency"], metrics["n_generated"], metrics["n_real"] = (
        budget.n_consistency, budget.n_generated, len(real))
    if write:
        update_card(path, metrics=metrics)
    return metrics


def _add_voxel_cgan_parser(sub) -> None:
    from ..losses import HYBRID_LOSSES
    from ..nets.voxel_gan import CONDITION_MODES

    q = sub.add_parser("voxel_cgan", help="hybrid-loss conditional voxel GAN")
    q.add_argument("--category", default="airplane")
    q.add_argument("--loss", default="all", help=f"one of {HYBRID_LOSSES} or 'all'")
    q.add_argument("--profile", default=None)
    q.add_argument("--out", default="runs/voxel_cgan")
    q.add_argument("--device", default=None)
    q.add_argument("--export", default=None, help="folder for <loss>.safetensors + <loss>.json (e.g. models/...)")
    q.add_argument("--evaluate", action="store_true", help="evaluate the exported weights and write the card metrics")
    q.add_argument("--optimizer", default="rmsprop", choices=("rmsprop", "adam"))
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--ema", type=float, default=0.98, help="EMA decay of G's weights per batch (0: off, the seed)")
    q.add_argument("--pairing-steps", type=int, default=1, help="pairing G steps per batch (the seed: 1)")
    q.add_argument("--consistency", type=float, default=0.0,
                   help="weight of a soft-Jaccard term between the conditions' turned-back views (the seed: 0)")
    q.add_argument("--consistency-start", type=float, default=0.0,
                   help="fraction of the epochs before the consistency term switches on (then a 10 %% ramp)")
    q.add_argument("--condition", default="scalar", choices=CONDITION_MODES,
                   help="how G and D see the condition: one scalar input (the seed) or one-hot")
    q.add_argument("--variant", default="seed", choices=("seed", "sound"),
                   help="loss formulas: the seed's verbatim (D outputs probabilities) or sound (D outputs logits)")


def _main_voxel_cgan(args, profile: str) -> None:
    from ..losses import HYBRID_LOSSES

    losses = HYBRID_LOSSES if args.loss == "all" else (args.loss,)
    for loss in losses:
        extra = {"variant": "sound", "output": "logits"} if args.variant == "sound" else {}
        cfg = voxel_cgan_config(profile, category=args.category, loss=loss, optimizer=args.optimizer,
                                ema_decay=args.ema, seed=args.seed, pairing_steps=args.pairing_steps,
                                condition=args.condition, consistency=args.consistency,
                                consistency_start=args.consistency_start, **extra)
        run = Path(args.out) / cfg.category / loss
        G, _, history = train_voxel_cgan(cfg, run, args.device)
        if distributed_world()[0] != 0:
            continue  # with torchrun only rank 0 writes
        history.to_csv(run / "history.csv", index=False)
        if args.export:
            from ..inference import save_pretrained

            command = (f"VOXHELPERS_PROFILE={profile} python -m voxhelpers.training voxel_cgan --category "
                       f"{args.category} --loss {args.loss} --optimizer {args.optimizer} --ema {args.ema} "
                       f"--seed {args.seed} --variant {args.variant} --out {args.out} --export {args.export}")
            if args.pairing_steps != 1:
                command += f" --pairing-steps {args.pairing_steps}"
            if args.consistency:
                command += f" --consistency {args.consistency:g}"
            if args.consistency_start:
                command += f" --consistency-start {args.consistency_start:g}"
            if args.condition != "scalar":
                command += f" --condition {args.condition}"
            if args.evaluate:
                command += " --evaluate"
            path = save_pretrained(G, "voxel_cgan", cfg.to_dict(), Path(args.export) / f"{loss}.safetensors",
                                   profile=profile, command=command, data=describe_data(cfg), dtype="int8")
            if args.evaluate:
                evaluate_pretrained_voxel_cgan(path, profile)
