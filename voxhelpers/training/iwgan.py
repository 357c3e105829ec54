"""System 2 training: 3D-IWGAN unconditional voxel generation with WGAN-GP (SPEC §2)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from .loop import (
    CHECKPOINT_NAME,
    TrainState,
    add_run_arguments,
    average_gradients_before_step,
    config_defaults,
    default_device,
    distributed_setup,
    distributed_world,
    epoch_order,
    fit,
    sync_buffers,
)
from .voxel_cgan import update_ema


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
    from ..datasets import check_grids, load_modelnet10, load_synthevox3d
    from ..synthetic import procedural_shapes

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
    return describe_source(cfg.data, f"{n_train} train / {n_held} held-out distinct shapes (split seed {cfg.seed})")


def describe_source(data: str, split: str) -> str:
    """``"<dataset> <name>, <split>"`` for a data string, with procedural stand-ins labelled as not real data."""
    source, _, name = data.partition(":")
    if source == "procedural":
        return f"procedural stand-in {name} shapes (not real data), {split}"
    where = {"synthevox3d": "SynthEVox3D-Tiny", "modelnet10": "ModelNet10 32³"}[source]
    return f"{where} {name}, {split}"


def training_grids(volumes) -> np.ndarray:
    """Validate training grids (N, 32, 32, 32) or (N, 1, 32, 32, 32), binary; return them bool (N, 32, 32, 32).

    Raises:
        ValueError: another shape, NaN or non-binary values.
    """
    from ..datasets import check_grids

    volumes = np.asarray(volumes)
    if volumes.ndim == 5 and volumes.shape[1] == 1:
        volumes = volumes[:, 0]
    volumes = check_grids(volumes, "volumes")
    if volumes.shape[1:] != (32, 32, 32):
        raise ValueError(f"volumes must be (N, 32, 32, 32), got {volumes.shape}")
    return volumes


def epoch_summary(rows: list[dict], keys: tuple[str, ...], last_loss_g: float) -> dict:
    """An epoch's history row: the mean of ``keys`` over its batches, ``loss_g`` (mean over the batches with a
    generator step; ``last_loss_g`` when there was none) and ``g_steps``."""
    row = {k: float(np.mean([r[k] for r in rows])) for k in keys}
    g_losses = [r["loss_g"] for r in rows if not math.isnan(r["loss_g"])]
    row["loss_g"] = float(np.mean(g_losses)) if g_losses else float(last_loss_g)
    row["g_steps"] = float(len(g_losses))
    return row


def build_iwgan(cfg, device=None) -> tuple[nn.Module, nn.Module]:
    """3D-IWGAN generator and critic of a config, on ``device``, channels-last-3d (faster on CPU and GPU)."""
    from ..nets import IWGANCritic, IWGANGenerator

    device = default_device(device)
    G = IWGANGenerator(cfg.z_dim, **({"channels": tuple(cfg.g_channels)} if cfg.g_channels else {}))
    D = IWGANCritic(**({"channels": tuple(cfg.d_channels)} if cfg.d_channels else {}))
    return (G.to(device, memory_format=torch.channels_last_3d), D.to(device, memory_format=torch.channels_last_3d))


def save_iwgan_sheet(G: nn.Module, z: torch.Tensor, path: str | Path, title: str = "",
                     label: str | None = None) -> Path:
    """A row of samples (G(z) + 1) / 2 > 0.5 for fixed z (:func:`voxhelpers.plots.voxel_row_figure`), as PNG."""
    from ..inference import generate_unconditional
    from ..plots import save_figure, voxel_row_figure

    fig = voxel_row_figure(generate_unconditional(G, z)[:, 0], suptitle=title, label=label)
    return save_figure(fig, path)


def train_iwgan(cfg, out_dir: str | Path | None = None, device=None, volumes: np.ndarray | None = None,
                resume: bool = True, progress: bool = True,
                max_minutes: float | None = None) -> tuple[nn.Module, nn.Module, pd.DataFrame]:
    """Train 3D-IWGAN (Smith & Meger, CoRL 2017): WGAN-GP, Adam(lr, betas), a critic step every batch and a
    generator step every ``cfg.n_critic``-th batch (:func:`voxhelpers.steps.iwgan_step`).

    Under torchrun (``torchrun --nproc_per_node N -m voxhelpers.training iwgan ...``) each process takes every N-th
    shape of each batch, gradients are averaged before every optimiser step and G's BatchNorm statistics follow
    rank 0 (as :func:`voxhelpers.training.train_voxel_cgan`); only rank 0 writes.

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
        max_minutes: stop at the first epoch boundary after this much wall time (see :func:`fit`).

    Returns:
        ``(G, D, history)``; G is the moving average of the generator when ``cfg.ema_decay > 0``. History
        columns: ``epoch``, ``loss_d`` (with the weighted penalty), ``loss_gp``, ``wasserstein`` (the critic's
        E[D(x)] − E[D(G(z))]) — means over the epoch's batches — ``loss_g`` (mean over the epoch's generator
        steps; an epoch without one repeats the last generator loss) and ``g_steps``.

    Raises:
        ValueError: bad volumes; FloatingPointError: the critic diverged (NaN/inf scores) — training stops and
            the last good checkpoint in ``out_dir`` is kept.
    """
    from ..steps import iwgan_step

    device = default_device(device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    volumes = training_grids(iwgan_data(cfg)[0] if volumes is None else volumes)
    rank, world, device, generator = distributed_setup(device, cfg.seed)
    G, D = build_iwgan(cfg, device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    for opt in (opt_g, opt_d):
        average_gradients_before_step(opt)
    G_ema = copy.deepcopy(G).requires_grad_(False)  # the moving-average generator (shipped when ema_decay > 0)
    state = TrainState({"G": G, "D": D, "G_ema": G_ema}, {"G": opt_g, "D": opt_d}, generator,
                       extra={"step": 0, "loss_g": float("nan")}, config=cfg.to_dict(),
                       config_defaults=config_defaults(cfg))
    data = torch.as_tensor(volumes)[:, None]  # (N, 1, 32, 32, 32) bool, kept on the CPU
    fixed_z = torch.randn(4, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 12345))
    ckpt_path = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None

    def run_epoch(st: TrainState) -> dict:
        G.train(), D.train()
        order = epoch_order(len(data), st.generator, world, cfg.seed, st.epoch)
        rows = []
        for i in range(0, len(data), cfg.batch_size):
            batch = data[order[i: i + cfg.batch_size][rank::world]].to(device, non_blocking=True).float()
            batch = batch.contiguous(memory_format=torch.channels_last_3d)  # (B, 1, 32, 32, 32) in {0, 1}
            step = st.extra["step"]
            try:
                out = iwgan_step(G, D, opt_g, opt_d, batch, step, cfg.gp_weight, cfg.n_critic, st.generator)
            except FloatingPointError as e:
                kept = f"; the last good checkpoint is kept at {ckpt_path}" if ckpt_path else ""
                raise FloatingPointError(f"iwgan/{cfg.data}: epoch {st.epoch}, batch {step}: {e}{kept}") from e
            st.extra["step"] = step + 1
            if world > 1:
                sync_buffers(G)  # one set of BatchNorm statistics (rank 0's) in every process
            if not math.isnan(out["loss_g"]):
                st.extra["loss_g"] = out["loss_g"]
                if cfg.ema_decay > 0:
                    update_ema(G_ema, G, cfg.ema_decay)
            rows.append(out)
        return epoch_summary(rows, ("loss_d", "loss_gp", "wasserstein"), st.extra["loss_g"])

    def on_epoch_end(st: TrainState, row: dict) -> None:
        from ..synthetic import STAND_IN_LABEL

        e = st.epoch - 1
        if out_dir is not None and rank == 0 and (e % cfg.sample_every == 0 or st.epoch == cfg.epochs):
            label = STAND_IN_LABEL if cfg.data.startswith("procedural:") else None
            save_iwgan_sheet(G_ema if cfg.ema_decay > 0 else G, fixed_z,
                             Path(out_dir) / "samples" / f"epoch_{e:04d}.png", f"3D-IWGAN · {cfg.data} · epoch {e}",
                             label)

    history = fit(state, run_epoch, cfg.epochs, out_dir, checkpoint_every=cfg.sample_every, resume=resume,
                  on_epoch_end=on_epoch_end, progress=progress, desc=f"iwgan/{cfg.data}",
                  max_minutes=max_minutes)
    return (G_ema if cfg.ema_decay > 0 else G), D, history


def evaluate_pretrained_iwgan(path: str | Path, write: bool = True) -> dict:
    """Evaluate stored 3D-IWGAN weights (as shipped) against their config's HELD-OUT shapes; write the card metrics.

    The held-out set is rebuilt from the card's config (:func:`iwgan_data`, the same seeded split as training);
    as many shapes are generated as are held out (:func:`voxhelpers.inference.evaluate_iwgan`, latent seed
    ``seed + 1``).
    """
    from ..config import IWGANConfig
    from ..inference import evaluate_iwgan, load_pretrained, update_card

    G, card = load_pretrained(path)
    cfg = IWGANConfig(**card["config"])
    _, held_out = iwgan_data(cfg)
    metrics = evaluate_iwgan(G, held_out, n=len(held_out), seed=cfg.seed + 1)
    if write:
        update_card(path, metrics=metrics)
    return metrics


def export_run(model: nn.Module, system: str, cfg, args, profile: str, epochs: int, filename: str, data: str,
               flags: str = "") -> Path:
    """Write a CLI run's weights (fp16) and card into ``args.export``, with the command that reproduces the run
    (the epochs actually run, so a time-capped run is reproduced by a plain one)."""
    from ..inference import save_pretrained

    command = (f"VOXHELPERS_PROFILE={profile} python -m voxhelpers.training {system} --data {args.data} "
               f"--seed {args.seed} --ema {args.ema} --epochs {epochs} --sample-every {cfg.sample_every} {flags}"
               f"--out {args.out} --export {args.export}" + (" --evaluate" if args.evaluate else ""))
    return save_pretrained(model, system, {**cfg.to_dict(), "epochs": epochs}, Path(args.export) / filename,
                           profile=profile, command=command, epochs=epochs, data=data, dtype="fp16")


def _add_iwgan_parser(sub) -> None:
    q = sub.add_parser("iwgan", help="3D-IWGAN unconditional voxel generation (WGAN-GP)")
    add_run_arguments(q, "modelnet10:chair", "runs/iwgan",
                      "folder for generation.safetensors + generation.json (fp16)",
                      "evaluate against the held-out shapes; card metrics with --export, else <run>/metrics.json",
                      "EMA decay of G's weights per generator step (0: off)")


def _main_iwgan(args, profile: str) -> None:
    from ..config import iwgan_config
    from ..inference import evaluate_iwgan
    from ..io import write_json

    extra = {k: v for k, v in (("epochs", args.epochs), ("sample_every", args.sample_every)) if v is not None}
    cfg = iwgan_config(profile, data=args.data, seed=args.seed, ema_decay=args.ema, **extra)
    train, held_out = iwgan_data(cfg)
    run = Path(args.out) / cfg.data.replace(":", "_")
    G, _, history = train_iwgan(cfg, run, args.device, volumes=train, max_minutes=args.max_minutes)
    if distributed_world()[0] != 0:
        return  # with torchrun only rank 0 writes
    history.to_csv(run / "history.csv", index=False)
    epochs = len(history)
    z = torch.randn(4, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 12345))
    save_iwgan_sheet(G, z, run / "samples" / "final.png", f"3D-IWGAN · {cfg.data} · {epochs} epochs")
    if args.export:
        path = export_run(G, "iwgan", cfg, args, profile, epochs, "generation.safetensors",
                          describe_iwgan_data(cfg, len(train), len(held_out)))
        if args.evaluate:
            evaluate_pretrained_iwgan(path)
    elif args.evaluate:
        write_json(run / "metrics.json", evaluate_iwgan(G, held_out, n=len(held_out), seed=cfg.seed + 1))
