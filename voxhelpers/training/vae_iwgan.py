"""System 2b training: 3D-VAE-IWGAN single-image reconstruction (Smith & Meger 2017, §3.2; SPEC §2).

An image encoder, the 3D-IWGAN generator and its critic trained jointly on render → voxel pairs. Renders are
drawn fresh every batch (random azimuth/elevation, seeded), so the encoder never sees the same view twice; the
split is by object: train / validation (picks the threshold) / test (the reported metrics).
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..config import VAEIWGANConfig
from .iwgan import describe_source, epoch_summary, export_run, iwgan_data, iwgan_split, training_grids
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


def vae_iwgan_data(cfg: VAEIWGANConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train, validation, test) shapes of a config, bool (N, 32, 32, 32) each, no object in two parts.

    :func:`voxhelpers.training.iwgan_data` holds ``cfg.holdout`` of the distinct shapes back; a second seeded
    split gives ``cfg.val_fraction`` of those to validation and the rest to test.
    """
    train, held = iwgan_data(cfg)
    if len(held) < 2:
        raise ValueError(f"{cfg.data}: {len(held)} held-back shape(s); need at least 2 (validation and test) — raise "
                         "holdout or max_shapes")
    test, val = iwgan_split(held, cfg.val_fraction, cfg.seed + 1)
    return train, val, test


def describe_vae_iwgan_data(cfg: VAEIWGANConfig, n_train: int, n_val: int, n_test: int) -> str:
    """One line naming the data and the by-object split, for model cards."""
    return describe_source(cfg.data, f"{n_train} train / {n_val} validation / {n_test} test distinct objects (split by "
                           f"object, seed {cfg.seed}); renders {cfg.image_size}² from random views, elevation "
                           f"{tuple(cfg.elevation_range)}")


def build_vae_iwgan(cfg: VAEIWGANConfig, device=None) -> tuple[nn.Module, nn.Module]:
    """The image → voxel model (:class:`voxhelpers.nets.VAEIWGAN`: encoder + generator) and the critic."""
    from ..nets import VAEIWGAN, IWGANCritic

    device = default_device(device)
    model = VAEIWGAN(cfg.image_size, cfg.z_dim, 3, cfg.g_channels)
    D = IWGANCritic(**({"channels": tuple(cfg.d_channels)} if cfg.d_channels else {}))
    model.generator.to(memory_format=torch.channels_last_3d)
    return model.to(device), D.to(device, memory_format=torch.channels_last_3d)


def save_reconstruction_sheet(model: nn.Module, images: torch.Tensor, targets: torch.Tensor, path: str | Path,
                              title: str = "", label: str | None = None) -> Path:
    """Render | target | reconstruction (threshold 0.5) for a few fixed validation views, as PNG."""
    from ..inference import reconstruct
    from ..plots import reconstruction_figure, save_figure

    fig = reconstruction_figure(images, targets, reconstruct(model, images), suptitle=title, label=label)
    return save_figure(fig, path)


def train_vae_iwgan(cfg: VAEIWGANConfig, out_dir: str | Path | None = None, device=None,
                    volumes: np.ndarray | None = None, resume: bool = True, progress: bool = True,
                    max_minutes: float | None = None) -> tuple[nn.Module, nn.Module, pd.DataFrame]:
    """Train 3D-VAE-IWGAN: encoder + generator + critic on render → voxel pairs
    (:func:`voxhelpers.steps.vae_iwgan_step`).

    Every batch renders each of its objects from a fresh random view (:func:`voxhelpers.render.random_views` on
    the run's generator, :func:`voxhelpers.render.render_voxels` on ``device``, the data's up axis), so a resumed
    run draws the same views as an uninterrupted one. Under torchrun each process takes every N-th object of a
    batch, gradients are averaged before every optimiser step and BatchNorm statistics follow rank 0.

    Args:
        cfg: a :class:`voxhelpers.config.VAEIWGANConfig` (:func:`voxhelpers.config.vae_iwgan_config`).
        out_dir: run folder: ``checkpoint.pt`` and ``samples/epoch_XXXX.png`` (render | target | reconstruction
            of fixed validation views) every ``cfg.sample_every`` epochs and after the last.
        device: torch device (default CUDA when present).
        volumes: training grids (N, 32, 32, 32) binary; default: the train part of :func:`vae_iwgan_data`.
        resume: continue from ``out_dir/checkpoint.pt``.
        progress: tqdm bar.
        max_minutes: stop at the first epoch boundary after this much wall time (a checkpoint is written); the
            history says how many epochs ran. None: run all ``cfg.epochs``.

    Returns:
        ``(model, D, history)``: model is the :class:`voxhelpers.nets.VAEIWGAN` (its moving average when
        ``cfg.ema_decay > 0``). History columns: ``epoch``, ``loss_d``, ``loss_gp``, ``wasserstein``,
        ``loss_rec``, ``loss_kl``, ``loss_e`` (epoch means), ``loss_g`` (mean over the epoch's generator steps),
        ``g_steps``.

    Raises:
        ValueError: bad volumes; FloatingPointError: the critic diverged — the last good checkpoint is kept.
    """
    from ..datasets import grid_up
    from ..render import random_views, render_voxels
    from ..steps import vae_iwgan_step
    from ..synthetic import STAND_IN_LABEL

    device = default_device(device)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    if volumes is None:
        volumes, val, _ = vae_iwgan_data(cfg)
    else:
        val = None
    volumes = training_grids(volumes)
    up = grid_up(cfg.data)
    rank, world, device, generator = distributed_setup(device, cfg.seed)
    model, D = build_vae_iwgan(cfg, device)
    E, G = model.encoder, model.generator
    betas = tuple(cfg.betas)
    opt_e = torch.optim.Adam(E.parameters(), lr=cfg.lr, betas=betas)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=betas)
    for opt in (opt_e, opt_g, opt_d):
        average_gradients_before_step(opt)
    ema = copy.deepcopy(model).requires_grad_(False)
    state = TrainState({"model": model, "D": D, "ema": ema}, {"E": opt_e, "G": opt_g, "D": opt_d}, generator,
                       extra={"step": 0, "loss_g": float("nan")}, config=cfg.to_dict(),
                       config_defaults=config_defaults(cfg))
    data = torch.as_tensor(volumes)[:, None]  # (N, 1, 32, 32, 32) bool on the CPU
    sheet_grids = (val if val is not None else volumes)[:4]
    sheet_img = render_voxels(torch.as_tensor(sheet_grids), 30.0, 20.0, cfg.image_size, up=up)
    ckpt_path = Path(out_dir) / CHECKPOINT_NAME if out_dir is not None else None

    def run_epoch(st: TrainState) -> dict:
        model.train(), D.train()
        order = epoch_order(len(data), st.generator, world, cfg.seed, st.epoch)
        rows = []
        for i in range(0, len(data), cfg.batch_size):
            batch = data[order[i: i + cfg.batch_size][rank::world]].to(device, non_blocking=True)
            az, el = random_views(len(batch), st.generator, tuple(cfg.elevation_range))
            images = render_voxels(batch, az, el, cfg.image_size, up=up)  # (B, 3, S, S) on device
            real = batch.float().contiguous(memory_format=torch.channels_last_3d)
            step = st.extra["step"]
            try:
                out = vae_iwgan_step(E, G, D, opt_e, opt_g, opt_d, images, real, step, cfg.gp_weight, cfg.n_critic,
                                     cfg.rec_weight, cfg.kl_weight, st.generator, cfg.rec_reduction,
                                     cfg.g_rec_every_batch)
            except FloatingPointError as e:
                kept = f"; the last good checkpoint is kept at {ckpt_path}" if ckpt_path else ""
                raise FloatingPointError(f"vae_iwgan/{cfg.data}: epoch {st.epoch}, batch {step}: {e}{kept}") from e
            st.extra["step"] = step + 1
            if world > 1:
                sync_buffers(model)  # one set of BatchNorm statistics (rank 0's) in every process
            if not math.isnan(out["loss_g"]):
                st.extra["loss_g"] = out["loss_g"]
            update_ema(ema, model, cfg.ema_decay)
            rows.append(out)
        return epoch_summary(rows, ("loss_d", "loss_gp", "wasserstein", "loss_rec", "loss_kl", "loss_e"),
                             st.extra["loss_g"])

    def on_epoch_end(st: TrainState, row: dict) -> None:
        e = st.epoch - 1
        if out_dir is not None and rank == 0 and (e % cfg.sample_every == 0 or st.epoch == cfg.epochs):
            label = STAND_IN_LABEL if cfg.data.startswith("procedural:") else None
            save_reconstruction_sheet(ema if cfg.ema_decay > 0 else model, sheet_img,
                                      torch.as_tensor(sheet_grids), Path(out_dir) / "samples" / f"epoch_{e:04d}.png",
                                      f"3D-VAE-IWGAN · {cfg.data} · epoch {e}", label)

    history = fit(state, run_epoch, cfg.epochs, out_dir, checkpoint_every=cfg.sample_every, resume=resume,
                  on_epoch_end=on_epoch_end, progress=progress, desc=f"vae_iwgan/{cfg.data}",
                  max_minutes=max_minutes)
    return (ema if cfg.ema_decay > 0 else model), D, history


def evaluate_vae_iwgan(model: nn.Module, cfg: VAEIWGANConfig, train, val, test, device=None) -> dict:
    """:func:`voxhelpers.inference.evaluate_reconstruction` with a config's protocol (views, seeds, up axis)."""
    from ..datasets import grid_up
    from ..inference import evaluate_reconstruction

    return evaluate_reconstruction(model, train, val, test, grid_up(cfg.data), cfg.image_size, cfg.eval_views,
                                   cfg.retrieval_views, cfg.seed, tuple(cfg.elevation_range), device)


def evaluate_pretrained_vae_iwgan(path: str | Path, write: bool = True, device=None) -> dict:
    """Evaluate stored 3D-VAE-IWGAN weights (as shipped) on their config's held-out TEST objects; write the card.

    The split is rebuilt from the card's config (:func:`vae_iwgan_data`); see
    :func:`voxhelpers.inference.evaluate_reconstruction` for the protocol. The card gets every scalar metric.
    """
    from ..inference import load_pretrained, update_card

    model, card = load_pretrained(path, device or "cpu")
    cfg = VAEIWGANConfig(**card["config"])
    m = evaluate_vae_iwgan(model, cfg, *vae_iwgan_data(cfg), device)
    scalars = {k: v for k, v in m.items() if k != "per_view"}
    if write:
        update_card(path, metrics=scalars)
    return m


def _add_vae_iwgan_parser(sub) -> None:
    q = sub.add_parser("vae_iwgan", help="3D-VAE-IWGAN single-image reconstruction (encoder + WGAN-GP)")
    add_run_arguments(q, "modelnet10:chair", "runs/vae_iwgan",
                      "folder for reconstruction.safetensors + reconstruction.json (fp16)",
                      "evaluate on the held-out test objects; card metrics with --export, else <run>/metrics.json",
                      "EMA decay of encoder + generator weights (0: off)")
    q.add_argument("--rec-weight", type=float, default=None, help="δ (default: the config's 1)")
    q.add_argument("--rec-reduction", default=None, choices=("mean", "sum"),
                   help="squared error mean or sum over voxels")
    q.add_argument("--g-rec-every-batch", action="store_true", help="G takes δ·rec on every batch, not every 5th")


def _main_vae_iwgan(args, profile: str) -> None:
    from ..config import vae_iwgan_config
    from ..io import write_json

    given = (("epochs", args.epochs), ("sample_every", args.sample_every), ("rec_weight", args.rec_weight),
             ("rec_reduction", args.rec_reduction))
    extra = {k: v for k, v in given if v is not None}
    if args.g_rec_every_batch:
        extra["g_rec_every_batch"] = True
    cfg = vae_iwgan_config(profile, data=args.data, seed=args.seed, ema_decay=args.ema, **extra)
    train, val, test = vae_iwgan_data(cfg)
    run = Path(args.out) / cfg.data.replace(":", "_")
    model, _, history = train_vae_iwgan(cfg, run, args.device, volumes=train, max_minutes=args.max_minutes)
    if distributed_world()[0] != 0:
        return  # with torchrun only rank 0 writes
    history.to_csv(run / "history.csv", index=False)
    epochs = len(history)
    if args.export:
        flags = (f"--rec-weight {cfg.rec_weight} --rec-reduction {cfg.rec_reduction} "
                 + ("--g-rec-every-batch " if cfg.g_rec_every_batch else ""))
        path = export_run(model, "vae_iwgan", cfg, args, profile, epochs, "reconstruction.safetensors",
                          describe_vae_iwgan_data(cfg, len(train), len(val), len(test)), flags)
        if args.evaluate:
            evaluate_pretrained_vae_iwgan(path, device=args.device)
    elif args.evaluate:
        m = evaluate_vae_iwgan(model, cfg, train, val, test, args.device)
        write_json(run / "metrics.json", {k: v for k, v in m.items() if k != "per_view"})
