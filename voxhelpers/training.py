"""One ``fit()`` loop for every system, and the per-system training entry points.

``fit`` gives every system: a tqdm progress bar, the history as a pandas DataFrame, atomic checkpoints
(weights, optimisers, RNG states, epoch, history) and exact resume — a run stopped and resumed from its
checkpoint produces the same weights as an uninterrupted one. A NaN or inf loss stops training with a
clear message and leaves the last good checkpoint intact.

Multi-GPU (or multi-process CPU) training goes through ``torch.distributed`` with torchrun: each process takes
its share of every batch, gradients are averaged across processes before every optimiser step (an optimiser
step pre-hook, so the systems' step functions stay as they are), BatchNorm statistics follow rank 0, and only
rank 0 writes checkpoints and figures::

    torchrun --nproc_per_node 4 -m voxhelpers.training voxel_cgan --category airplane --loss bce

Command line (the same function the training notebook calls)::

    VOXHELPERS_PROFILE=full python -m voxhelpers.training voxel_cgan --category airplane --loss all --out runs
    VOXHELPERS_PROFILE=full python -m voxhelpers.training iwgan --data modelnet10:chair --export models/iwgan --evaluate
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .config import VoxelCGANConfig, get_profile, voxel_cgan_config
from .io import load_checkpoint, save_checkpoint

CHECKPOINT_NAME = "checkpoint.pt"


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


@dataclass
class TrainState:
    """Everything a run needs to continue exactly: models, optimisers, the draw generator, epoch, history."""

    models: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    generator: torch.Generator
    epoch: int = 0  # epochs completed
    history: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)  # system state such as the D-accuracy gate
    config: dict = field(default_factory=dict)

    def state_dict(self) -> dict:
        return {
            "models": {k: m.state_dict() for k, m in self.models.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "epoch": self.epoch,
            "history": self.history,
            "extra": self.extra,
            "config": self.config,
        }

    def load_state_dict(self, ckpt: dict, source: str = "checkpoint") -> None:
        """Restore from :meth:`state_dict`; a checkpoint of another run (other models or config) is refused."""
        budget_keys = {"epochs", "sample_every"}  # a resumed run may extend its budget
        old = {k: v for k, v in ckpt.get("config", {}).items() if k not in budget_keys}
        new = {k: v for k, v in self.config.items() if k not in budget_keys}
        missing = set(self.models) - set(ckpt.get("models", {}))
        if missing or old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(f"{source} belongs to another run (models missing: {sorted(missing)}, config differs in "
                             f"{diff}); delete it or choose another run folder to start over")
        for k, m in self.models.items():
            m.load_state_dict(ckpt["models"][k])
        for k, o in self.optimizers.items():
            o.load_state_dict(ckpt["optimizers"][k])
        self.generator.set_state(ckpt["generator"])
        torch.set_rng_state(ckpt["torch_rng"])
        if torch.cuda.is_available() and ckpt["cuda_rng"]:
            torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
        self.epoch, self.history, self.extra = ckpt["epoch"], list(ckpt["history"]), dict(ckpt["extra"])


def fit(state: TrainState, run_epoch: Callable[[TrainState], dict], epochs: int, out_dir: str | Path | None = None,
        checkpoint_every: int = 1, resume: bool = True, on_epoch_end: Callable[[TrainState, dict], None] | None = None,
        progress: bool = True, desc: str = "train") -> pd.DataFrame:
    """Run ``run_epoch`` until ``epochs`` epochs are completed, with checkpoints and exact resume.

    Args:
        state: models, optimisers and generator (freshly built; loaded from the checkpoint when resuming).
        run_epoch: does one epoch and returns a dict of floats (losses, accuracies).
        epochs: total number of epochs of the run.
        out_dir: where ``checkpoint.pt`` lives; None keeps nothing on disk.
        checkpoint_every: write the checkpoint every k epochs (and always after the last).
        resume: continue from ``out_dir/checkpoint.pt`` when it exists.
        on_epoch_end: called with (state, row) after each epoch (sample sheets, logging).
        progress: show a tqdm bar.
        desc: the bar's label.

    Returns:
        the history, one row per epoch (column ``epoch`` = 0-based epoch index).

    Raises:
        FloatingPointError: a loss became NaN or inf; the last good checkpoint is kept.
    """
    from tqdm.auto import tqdm

    rank, _ = distributed_world()
    ckpt_path = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None
    if resume and ckpt_path is not None and ckpt_path.is_file():
        state.load_state_dict(load_checkpoint(ckpt_path), str(ckpt_path))
    if rank != 0:
        ckpt_path, progress = None, False  # only rank 0 writes
    bar = tqdm(total=epochs, initial=state.epoch, desc=desc, disable=not progress, leave=False)
    try:
        while state.epoch < epochs:
            row = {"epoch": state.epoch, **run_epoch(state)}
            bad = [k for k, v in row.items() if isinstance(v, float) and math.isinf(v) or
                   (isinstance(v, float) and math.isnan(v) and k in ("loss_d", "loss_g", "loss_gp", "loss_rec"))]
            if bad:
                where = f"; the last good checkpoint is kept at {ckpt_path}" if ckpt_path else ""
                raise FloatingPointError(f"{desc}: {bad} became NaN/inf at epoch {state.epoch}{where}")
            state.history.append(row)
            state.epoch += 1
            if on_epoch_end is not None:
                on_epoch_end(state, row)
            if ckpt_path is not None and (state.epoch % checkpoint_every == 0 or state.epoch == epochs):
                save_checkpoint(ckpt_path, state.state_dict())
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k.startswith(("loss", "acc"))})
    finally:
        bar.close()
    return pd.DataFrame(state.history)


# --------------------------------------------------------------------------------------------------
# System 1: hybrid-loss conditional voxel GAN
# --------------------------------------------------------------------------------------------------
def voxel_cgan_data(cfg: VoxelCGANConfig) -> np.ndarray:
    """The training grids of a config: bool (N, C, 32, 32, 32), real SynthEVox3D or procedural stand-ins."""
    from .datasets import load_synthevox3d, make_conditions, resolve_category
    from .synthetic import procedural_shapes

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
    from .datasets import resolve_category

    name, synset = resolve_category(cfg.category)
    n = cfg.n_train or 80
    if cfg.data == "procedural":
        return f"procedural stand-in {name} shapes (not real data), {n} shapes, {cfg.n_conditions} conditions"
    return f"SynthEVox3D-Tiny {name} ({synset}), first {n} shapes, {cfg.n_conditions} rotation conditions"


def build_voxel_cgan(cfg: VoxelCGANConfig, device=None) -> tuple[nn.Module, nn.Module]:
    """Generator and discriminator of a config, on ``device``, channels-last-3d (faster on CPU and GPU)."""
    from .nets import CGANDiscriminator, CGANGenerator

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
    from .datasets import check_grids

    device = default_device(device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    volumes = voxel_cgan_data(cfg) if volumes is None else volumes
    if volumes.ndim != 5 or volumes.shape[1] != cfg.n_conditions:
        raise ValueError(f"volumes must be (N, {cfg.n_conditions}, D, H, W), got {volumes.shape}")
    check_grids(volumes.reshape(-1, *volumes.shape[2:]), "volumes")
    rank, world = distributed_world()
    if world > 1 and device.type == "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    generator = seed_everything(cfg.seed)  # the same initial weights in every process
    if world > 1:
        generator.manual_seed(cfg.seed + 7919 * rank)  # each process draws its own z
    G, D = build_voxel_cgan(cfg, device)
    opt_g, opt_d = make_optimizer(cfg.optimizer, G, cfg.lr_g), make_optimizer(cfg.optimizer, D, cfg.lr_d)
    for opt in (opt_g, opt_d):
        average_gradients_before_step(opt)
    G_ema = copy.deepcopy(G).requires_grad_(False)  # the moving-average generator (shipped when ema_decay > 0)
    state = TrainState({"G": G, "D": D, "G_ema": G_ema}, {"G": opt_g, "D": opt_d}, generator,
                       extra={"gate": {"acc": 0.0}}, config=cfg.to_dict())
    data = torch.as_tensor(volumes, dtype=torch.float32)[:, :, None]  # (N, C, 1, D, H, W), kept on the CPU
    fixed_z = torch.randn(4, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 12345))

    def run_epoch(st: TrainState) -> dict:
        from .steps import voxel_cgan_step

        G.train(), D.train()
        # the same order in every process (with torchrun each takes every world-th shape of a batch)
        shared = st.generator if world == 1 else torch.Generator().manual_seed(cfg.seed * 100_003 + st.epoch)
        order = torch.randperm(len(data), generator=shared)
        rows = []
        for i in range(0, len(data), cfg.batch_size):
            batch = data[order[i: i + cfg.batch_size][rank::world]].to(device, non_blocking=True)
            rows.append(voxel_cgan_step(G, D, opt_g, opt_d, batch, st.extra["gate"], cfg.loss, cfg.variant,
                                        cfg.d_acc_gate, cfg.pairing, st.generator))
            if world > 1:  # one gate decision and one set of BatchNorm statistics for all processes
                st.extra["gate"]["acc"] = mean_over_processes(st.extra["gate"]["acc"])
                sync_buffers(G, D)
            update_ema(G_ema, G, cfg.ema_decay)
        return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}

    def on_epoch_end(st: TrainState, row: dict) -> None:
        e = st.epoch - 1
        if out_dir is not None and rank == 0 and (e % cfg.sample_every == 0 or st.epoch == cfg.epochs):
            sheet = Path(out_dir) / "samples" / f"epoch_{e:04d}.png"
            save_sample_sheet(G_ema if cfg.ema_decay > 0 else G, fixed_z, sheet,
                              title=f"{cfg.category} · {cfg.loss} · epoch {e}", data=cfg.data)

    history = fit(state, run_epoch, cfg.epochs, out_dir, checkpoint_every=cfg.sample_every, resume=resume,
                  on_epoch_end=on_epoch_end, progress=progress, desc=f"{cfg.category}/{cfg.loss}")
    return (G_ema if cfg.ema_decay > 0 else G), D, history


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
    from .inference import generate_conditions
    from .plots import sample_sheet_figure, save_figure
    from .synthetic import STAND_IN_LABEL
    from .transforms import condition_rotation

    grids = generate_conditions(G, z)  # (B, C, D, H, W)
    cond0, cond1 = grids[:, 0], grids[:, min(1, grids.shape[1] - 1)]
    combined = (cond0 + condition_rotation(cond1, 1, inverse=True)) / 2
    fig = sample_sheet_figure(cond0, cond1, combined, suptitle=title,
                              label=STAND_IN_LABEL if data == "procedural" else None)
    return save_figure(fig, path)


def _main(argv=None) -> None:
    from .losses import HYBRID_LOSSES

    p = argparse.ArgumentParser(prog="python -m voxhelpers.training", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="system", required=True)
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
    q.add_argument("--variant", default="seed", choices=("seed", "sound"),
                   help="loss formulas: the seed's verbatim (D outputs probabilities) or sound (D outputs logits)")
    _add_iwgan_parser(sub)
    args = p.parse_args(argv)
    profile = get_profile(args.profile)
    if args.system == "iwgan":
        return _main_iwgan(args, profile)
    losses = HYBRID_LOSSES if args.loss == "all" else (args.loss,)
    for loss in losses:
        extra = {"variant": "sound", "output": "logits"} if args.variant == "sound" else {}
        cfg = voxel_cgan_config(profile, category=args.category, loss=loss, optimizer=args.optimizer,
                                ema_decay=args.ema, seed=args.seed, **extra)
        run = Path(args.out) / cfg.category / loss
        G, _, history = train_voxel_cgan(cfg, run, args.device)
        if distributed_world()[0] != 0:
            continue  # with torchrun only rank 0 writes
        history.to_csv(run / "history.csv", index=False)
        if args.export:
            from .inference import save_pretrained

            command = (f"VOXHELPERS_PROFILE={profile} python -m voxhelpers.training voxel_cgan --category "
                       f"{args.category} --loss {args.loss} --optimizer {args.optimizer} --ema {args.ema} "
                       f"--seed {args.seed} --variant {args.variant} --out {args.out} --export {args.export}")
            if args.evaluate:
                command += " --evaluate"
            path = save_pretrained(G, "voxel_cgan", cfg.to_dict(), Path(args.export) / f"{loss}.safetensors",
                                   profile=profile, command=command, data=describe_data(cfg), dtype="int8")
            if args.evaluate:
                evaluate_pretrained_voxel_cgan(path, profile)


def evaluate_pretrained_voxel_cgan(path: str | Path, profile: str | None = None, write: bool = True) -> dict:
    """Evaluate stored cGAN weights (as shipped, int8 included) on their category and write the card metrics.

    Uses the profile's evaluation budget (``full``: 1,000 latents for consistency, 80 shapes for the set metrics).
    """
    from .config import eval_budget
    from .inference import evaluate_voxel_cgan, load_pretrained, update_card

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


# --------------------------------------------------------------------------------------------------
# System 2: 3D-IWGAN unconditional voxel generation (SPEC §2)
# --------------------------------------------------------------------------------------------------
def unique_grids(grids: np.ndarray) -> np.ndarray:
    """Drop exact duplicate grids, keeping the first of each in the original order.

    ModelNet10's 889 training chairs hold 839 distinct 32³ grids; without this a held-out "unseen" shape could
    be a copy of a training shape.

    Args:
        grids: (N, D, H, W) binary.

    Returns:
        bool (K, D, H, W), K ≤ N.
    """
    grids = np.asarray(grids, dtype=bool)
    packed = np.packbits(grids.reshape(len(grids), -1), axis=1)  # (N, V/8) uint8: cheap to compare
    _, first = np.unique(packed, axis=0, return_index=True)
    return grids[np.sort(first)]


def iwgan_split(grids: np.ndarray, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split shapes into (train, held_out) by a seeded permutation; round(holdout·N) shapes held out.

    With ``holdout > 0`` at least one shape lands on each side. Each side keeps the original order.

    Raises:
        ValueError: holdout outside [0, 1), or holdout > 0 with fewer than 2 shapes.
    """
    if not 0 <= holdout < 1:
        raise ValueError(f"holdout must be a fraction in [0, 1), got {holdout}")
    n = len(grids)
    if holdout > 0 and n < 2:
        raise ValueError(f"need at least 2 shapes to hold some back, got {n}")
    n_held = min(max(round(holdout * n), 1), n - 1) if holdout > 0 else 0
    perm = np.random.default_rng(seed).permutation(n)
    return grids[np.sort(perm[n_held:])], grids[np.sort(perm[:n_held])]


def iwgan_data(cfg) -> tuple[np.ndarray, np.ndarray]:
    """The (train, held_out) shapes of a 3D-IWGAN config: bool arrays (N, 32, 32, 32) with no shape in both.

    ``cfg.data`` picks the reader: ``"synthevox3d:<category>"`` (condition-0 SynthEVox3D grids),
    ``"modelnet10:<category>"`` (ModelNet10 32³, empty grids dropped) or ``"procedural:<kind>"`` (stand-ins from
    :func:`voxhelpers.synthetic.procedural_shapes`, ``max_shapes`` or 80 of them, seeded by ``cfg.seed``). Exact
    duplicates are dropped (:func:`unique_grids`), then the first ``cfg.max_shapes`` are kept, then
    :func:`iwgan_split` holds ``cfg.holdout`` of them back (seed ``cfg.seed``).

    Raises:
        ValueError: a bad ``data`` string or category; DatasetNotFoundError: real data absent.
    """
    from .datasets import check_grids, load_modelnet10, load_synthevox3d
    from .synthetic import procedural_shapes

    source, _, name = cfg.data.partition(":")
    if source == "synthevox3d":
        grids = load_synthevox3d(name, 1)[:, 0]
    elif source == "modelnet10":
        grids = load_modelnet10(name)
    elif source == "procedural":
        grids = procedural_shapes(name, n=cfg.max_shapes or 80, seed=cfg.seed)
    else:
        raise ValueError(f"data must start with 'synthevox3d:', 'modelnet10:' or 'procedural:', got {cfg.data!r}")
    grids = unique_grids(check_grids(grids, cfg.data))
    if cfg.max_shapes:
        grids = grids[: cfg.max_shapes]
    if grids.shape[1:] != (32, 32, 32):
        raise ValueError(f"3D-IWGAN needs 32³ grids, {cfg.data} has {grids.shape[1:]}")
    return iwgan_split(grids, cfg.holdout, cfg.seed)


def describe_iwgan_data(cfg, n_train: int, n_held: int) -> str:
    """One line naming the data and split of a 3D-IWGAN config, for model cards."""
    source, _, name = cfg.data.partition(":")
    split = f"{n_train} train / {n_held} held-out distinct shapes (split seed {cfg.seed})"
    if source == "procedural":
        return f"procedural stand-in {name} shapes (not real data), {split}"
    where = {"synthevox3d": "SynthEVox3D-Tiny", "modelnet10": "ModelNet10 32³"}[source]
    return f"{where} {name}, {split}"


def build_iwgan(cfg, device=None) -> tuple[nn.Module, nn.Module]:
    """3D-IWGAN generator and critic of a config, on ``device``, channels-last-3d (faster on CPU and GPU)."""
    from .nets import IWGANCritic, IWGANGenerator

    device = default_device(device)
    G = IWGANGenerator(cfg.z_dim, **({"channels": tuple(cfg.g_channels)} if cfg.g_channels else {}))
    D = IWGANCritic(**({"channels": tuple(cfg.d_channels)} if cfg.d_channels else {}))
    return (G.to(device, memory_format=torch.channels_last_3d), D.to(device, memory_format=torch.channels_last_3d))


def save_iwgan_sheet(G: nn.Module, z: torch.Tensor, path: str | Path, title: str = "",
                     label: str | None = None) -> Path:
    """A row of samples (G(z) + 1) / 2 > 0.5 for fixed z (:func:`voxhelpers.plots.voxel_row_figure`), as PNG."""
    from .inference import generate_unconditional
    from .plots import save_figure, voxel_row_figure

    fig = voxel_row_figure(generate_unconditional(G, z)[:, 0], suptitle=title, label=label)
    return save_figure(fig, path)


def train_iwgan(cfg, out_dir: str | Path | None = None, device=None, volumes: np.ndarray | None = None,
                resume: bool = True, progress: bool = True) -> tuple[nn.Module, nn.Module, pd.DataFrame]:
    """Train 3D-IWGAN (Smith & Meger, CoRL 2017): WGAN-GP, Adam(lr, betas), a critic step every batch and a
    generator step every ``cfg.n_critic``-th batch (:func:`voxhelpers.steps.iwgan_step`).

    The batch counter that decides the generator steps runs across epochs and lives in the checkpoint
    (``state.extra["step"]``), so a resumed run makes exactly the updates of an uninterrupted one.

    Args:
        cfg: an :class:`voxhelpers.config.IWGANConfig` (see :func:`voxhelpers.config.iwgan_config`).
        out_dir: run folder: ``checkpoint.pt`` (every ``cfg.sample_every`` epochs and after the last) and
            ``samples/epoch_XXXX.png`` (4 fixed latents, every ``cfg.sample_every`` epochs and after the last,
            named by the true 0-based epoch).
        device: torch device (default CUDA when present).
        volumes: training grids (N, 32, 32, 32) or (N, 1, 32, 32, 32), binary; default: the train part of
            :func:`iwgan_data` (the held-out part is never seen).
        resume: continue from ``out_dir/checkpoint.pt``.
        progress: tqdm bar.

    Returns:
        ``(G, D, history)``; G is the moving average of the generator when ``cfg.ema_decay > 0``. History
        columns: ``epoch``, ``loss_d`` (with the weighted penalty), ``loss_gp``, ``wasserstein`` (the critic's
        E[D(x)] − E[D(G(z))]) — means over the epoch's batches — ``loss_g`` (mean over the epoch's generator
        steps; an epoch without one repeats the last generator loss) and ``g_steps``.

    Raises:
        ValueError: bad volumes; FloatingPointError: the critic diverged (NaN/inf scores) — training stops and
            the last good checkpoint in ``out_dir`` is kept.
    """
    from .datasets import check_grids
    from .steps import iwgan_step

    device = default_device(device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    volumes = iwgan_data(cfg)[0] if volumes is None else np.asarray(volumes)
    if volumes.ndim == 5 and volumes.shape[1] == 1:
        volumes = volumes[:, 0]
    volumes = check_grids(volumes, "volumes")
    if volumes.shape[1:] != (32, 32, 32):
        raise ValueError(f"volumes must be (N, 32, 32, 32), got {volumes.shape}")
    generator = seed_everything(cfg.seed)
    G, D = build_iwgan(cfg, device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    G_ema = copy.deepcopy(G).requires_grad_(False)  # the moving-average generator (shipped when ema_decay > 0)
    state = TrainState({"G": G, "D": D, "G_ema": G_ema}, {"G": opt_g, "D": opt_d}, generator,
                       extra={"step": 0, "loss_g": float("nan")}, config=cfg.to_dict())
    data = torch.as_tensor(volumes)[:, None]  # (N, 1, 32, 32, 32) bool, kept on the CPU
    fixed_z = torch.randn(4, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 12345))
    ckpt_path = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None

    def run_epoch(st: TrainState) -> dict:
        G.train(), D.train()
        order = torch.randperm(len(data), generator=st.generator)
        rows = []
        for i in range(0, len(data), cfg.batch_size):
            batch = data[order[i: i + cfg.batch_size]].to(device, non_blocking=True).float()
            batch = batch.contiguous(memory_format=torch.channels_last_3d)  # (B, 1, 32, 32, 32) in {0, 1}
            step = st.extra["step"]
            try:
                out = iwgan_step(G, D, opt_g, opt_d, batch, step, cfg.gp_weight, cfg.n_critic, st.generator)
            except FloatingPointError as e:
                kept = f"; the last good checkpoint is kept at {ckpt_path}" if ckpt_path else ""
                raise FloatingPointError(f"iwgan/{cfg.data}: epoch {st.epoch}, batch {step}: {e}{kept}") from e
            st.extra["step"] = step + 1
            if not math.isnan(out["loss_g"]):
                st.extra["loss_g"] = out["loss_g"]
                if cfg.ema_decay > 0:
                    update_ema(G_ema, G, cfg.ema_decay)
            rows.append(out)
        row = {k: float(np.mean([r[k] for r in rows])) for k in ("loss_d", "loss_gp", "wasserstein")}
        g_losses = [r["loss_g"] for r in rows if not math.isnan(r["loss_g"])]
        row["loss_g"] = float(np.mean(g_losses)) if g_losses else float(st.extra["loss_g"])
        row["g_steps"] = float(len(g_losses))
        return row

    def on_epoch_end(st: TrainState, row: dict) -> None:
        from .synthetic import STAND_IN_LABEL

        e = st.epoch - 1
        if out_dir is not None and (e % cfg.sample_every == 0 or st.epoch == cfg.epochs):
            label = STAND_IN_LABEL if cfg.data.startswith("procedural:") else None
            save_iwgan_sheet(G_ema if cfg.ema_decay > 0 else G, fixed_z,
                             Path(out_dir) / "samples" / f"epoch_{e:04d}.png", f"3D-IWGAN · {cfg.data} · epoch {e}",
                             label)

    history = fit(state, run_epoch, cfg.epochs, out_dir, checkpoint_every=cfg.sample_every, resume=resume,
                  on_epoch_end=on_epoch_end, progress=progress, desc=f"iwgan/{cfg.data}")
    return (G_ema if cfg.ema_decay > 0 else G), D, history


def evaluate_pretrained_iwgan(path: str | Path, write: bool = True) -> dict:
    """Evaluate stored 3D-IWGAN weights (as shipped) against their config's HELD-OUT shapes; write the card metrics.

    The held-out set is rebuilt from the card's config (:func:`iwgan_data`, the same seeded split as training);
    as many shapes are generated as are held out (:func:`voxhelpers.inference.evaluate_iwgan`, latent seed
    ``seed + 1``).
    """
    from .config import IWGANConfig
    from .inference import evaluate_iwgan, load_pretrained, update_card

    G, card = load_pretrained(path)
    cfg = IWGANConfig(**card["config"])
    _, held_out = iwgan_data(cfg)
    metrics = evaluate_iwgan(G, held_out, n=len(held_out), seed=cfg.seed + 1)
    if write:
        update_card(path, metrics=metrics)
    return metrics


def _add_iwgan_parser(sub) -> None:
    q = sub.add_parser("iwgan", help="3D-IWGAN unconditional voxel generation (WGAN-GP)")
    q.add_argument("--data", default="modelnet10:chair",
                   help="'modelnet10:<category>', 'synthevox3d:<category>' or 'procedural:<kind>'")
    q.add_argument("--profile", default=None)
    q.add_argument("--out", default="runs/iwgan")
    q.add_argument("--device", default=None)
    q.add_argument("--export", default=None, help="folder for generation.safetensors + generation.json (fp16)")
    q.add_argument("--evaluate", action="store_true",
                   help="evaluate against the held-out shapes; card metrics with --export, else <run>/metrics.json")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--ema", type=float, default=0.0, help="EMA decay of G's weights per generator step (0: off)")


def _main_iwgan(args, profile: str) -> None:
    from .config import iwgan_config
    from .inference import evaluate_iwgan, save_pretrained
    from .io import write_json

    cfg = iwgan_config(profile, data=args.data, seed=args.seed, ema_decay=args.ema)
    train, held_out = iwgan_data(cfg)
    run = Path(args.out) / cfg.data.replace(":", "_")
    G, _, history = train_iwgan(cfg, run, args.device, volumes=train)
    history.to_csv(run / "history.csv", index=False)
    if args.export:
        command = (f"VOXHELPERS_PROFILE={profile} python -m voxhelpers.training iwgan --data {args.data} "
                   f"--seed {args.seed} --ema {args.ema} --out {args.out} --export {args.export}")
        command += " --evaluate" if args.evaluate else ""
        path = save_pretrained(G, "iwgan", cfg.to_dict(), Path(args.export) / "generation.safetensors",
                               profile=profile, command=command,
                               data=describe_iwgan_data(cfg, len(train), len(held_out)), dtype="fp16")
        if args.evaluate:
            evaluate_pretrained_iwgan(path)
    elif args.evaluate:
        write_json(run / "metrics.json", evaluate_iwgan(G, held_out, n=len(held_out), seed=cfg.seed + 1))


if __name__ == "__main__":
    _main()
