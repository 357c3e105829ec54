"""System 2a: 3D-IWGAN unconditional voxel generation with WGAN-GP (Smith & Meger, CoRL 2017; SPEC §2).

A critic step on every batch and a generator step on every ``n_critic``-th (the batch counter runs across epochs
and lives in the checkpoint, so a resumed run makes exactly the updates of an uninterrupted one). Evaluation is on
held-out shapes: exact duplicates are dropped before the seeded split, so no held-out shape is a training shape.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from ..config.iwgan import IWGANConfig
from ..losses import adversarial_loss, gradient_penalty
from ..nets.iwgan import voxels_to_tanh
from ..ops.diffaugment import diff_augment
from .base import Splits, System, frozen, generator_stepped, sample_z


def shapes(cfg: IWGANConfig, roots=None) -> tuple[np.ndarray, np.ndarray]:
    """The (train, held_out) shapes of a config: bool (N, 32, 32, 32) each, no shape in both.

    ``cfg.data`` names the shapes (:func:`voxhelpers.data.sources.load_grids`; procedural stand-ins: ``max_shapes``
    or 80 of them, seeded by ``cfg.seed``). Exact duplicates are dropped, then the first ``cfg.max_shapes`` are
    kept, then ``cfg.holdout`` of them are held back (seed ``cfg.seed``).
    """
    from ..data.grids import split_holdout, unique_grids
    from ..data.sources import load_grids

    grids = unique_grids(load_grids(cfg.data, n=cfg.max_shapes, seed=cfg.seed, roots=roots))
    if cfg.max_shapes:
        grids = grids[: cfg.max_shapes]
    return split_holdout(grids, cfg.holdout, cfg.seed)


def data(cfg: IWGANConfig, roots=None) -> Splits:
    """Training shapes and the held-out ``test`` shapes the card's metrics are measured on."""
    from ..data.sources import describe_source

    train, held = shapes(cfg, roots)
    split = f"{len(train)} train / {len(held)} held-out distinct shapes (split seed {cfg.seed})"
    return Splits(train, {"test": held}, describe_source(cfg.data, split))


def dataset(cfg: IWGANConfig, train) -> torch.utils.data.Dataset:
    """Training grids (N, 32, 32, 32) or (N, 1, 32, 32, 32), binary, as a Dataset of (1, 32, 32, 32) items.

    Raises:
        ValueError: another shape, NaN or non-binary values.
    """
    from ..data import VoxelDataset, check_grids

    return VoxelDataset(check_grids(train, "volumes", size=32))


def build(cfg: IWGANConfig, device) -> dict:
    """Generator, critic and the generator's moving average, channels-last-3d."""
    from ..nets import build_network

    G = build_network("iwgan", "generator", cfg).to(device, memory_format=torch.channels_last_3d)
    D = build_network("iwgan", "discriminator", cfg).to(device, memory_format=torch.channels_last_3d)
    return {"G": G, "D": D, "G_ema": copy.deepcopy(G).requires_grad_(False)}


def optimizers(cfg: IWGANConfig, models: dict) -> dict:
    """Adam(lr, betas) for each trained network (the paper: 1e-4, (0.5, 0.9))."""
    return {k: torch.optim.Adam(models[k].parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
            for k in models if not k.endswith("ema")}


def check_scores(scores: torch.Tensor, what: str, step: int) -> None:
    """Raise FloatingPointError when a critic's scores are NaN or inf (the critic diverged)."""
    if not torch.isfinite(scores).all():
        raise FloatingPointError(f"critic output on {what} samples is NaN or inf (step {step}); the critic "
                                 "diverged: lower the learning rate or restore the last checkpoint")


def step(models: dict, optimizers: dict, batch: dict, cfg: IWGANConfig, state) -> dict[str, float]:
    """One batch of 3D-IWGAN (Smith & Meger, CoRL 2017, arXiv 1707.09557; WGAN-GP, Gulrajani et al. 2017).

    Critic step (every batch): x = 2·real − 1 (:func:`voxhelpers.nets.iwgan.voxels_to_tanh`), x̃ = G(z) without
    gradients to G, and loss_d = E[D(x̃)] − E[D(x)] + ``cfg.gp_weight``·GP (:func:`voxhelpers.losses.gradient_penalty`,
    per-sample norm). Generator step (only when ``state.step % cfg.n_critic == 0``, the paper's one G update per 5
    critic updates), with D's parameters frozen: loss_g = −E[D(G(z))]. Runs in fp32 (no autocast: the penalty's
    double backward needs the precision). z and the penalty's ε are drawn on ``state.generator``.

    With ``cfg.augment`` (DiffAugment, Zhao et al. 2020) the critic sees every grid — real or generated, in both
    steps — augmented in occupancy space (2·T((x + 1)/2) − 1, so what a shift or cutout brings in is empty, −1),
    each sample its own draw from ``state.generator``; the penalty is taken between the augmented real and
    generated grids, and G's loss back-propagates through the augmentation.

    Args:
        models: ``G`` (z (B, z_dim) → (B, 1, 32, 32, 32) in [−1, 1]) and ``D`` ((B, 1, 32, 32, 32) → (B,)).
        optimizers: ``G`` and ``D`` (the paper: Adam, lr 1e-4, betas (0.5, 0.9)).
        batch: ``{"voxels": (B, 1, 32, 32, 32)}`` in {0, 1}.
        cfg: ``gp_weight`` (λ, 10) and ``n_critic`` (5).
        state: ``state.step`` (index of this batch in the run) and ``state.generator``.

    Returns:
        ``loss_d`` (with the weighted penalty), ``loss_gp`` (the penalty before weighting), ``wasserstein``
        (E[D(x)] − E[D(x̃)], the critic's estimate of the Wasserstein-1 distance), ``loss_g`` (NaN on batches
        without a generator update) and ``g_steps`` (1 or 0).

    Raises:
        ValueError: voxels not (B, 1, D, H, W) or not binary, or ``state.step`` < 0.
        FloatingPointError: the critic returned NaN or inf (the update that caused it has already been applied;
            lower the learning rate or restore a checkpoint).
    """
    G, D, opt_g, opt_d = models["G"], models["D"], optimizers["G"], optimizers["D"]
    real, generator, index = batch["voxels"], state.generator, state.step
    if real.ndim != 5 or real.shape[1] != 1:
        raise ValueError(f"batch['voxels'] must be (B, 1, 32, 32, 32) in {{0, 1}}, got {tuple(real.shape)}")
    if index < 0:
        raise ValueError(f"state.step must be the batch index >= 0 (the n_critic schedule reads it), got {index}")
    B, device = real.shape[0], real.device
    x_real = voxels_to_tanh(real.contiguous(memory_format=torch.channels_last_3d)).float()  # {-1, 1}

    def aug(x: torch.Tensor) -> torch.Tensor:  # DiffAugment in occupancy space ([0, 1]: zeros in = empty)
        if cfg.augment == "none":
            return x
        return (2 * diff_augment((x + 1) / 2, cfg.augment, generator, cfg.augment_p) - 1).contiguous(
            memory_format=torch.channels_last_3d)

    # --- critic step: E[D(G(z))] - E[D(x)] + λ·GP, every batch
    with torch.no_grad():
        fake = G(sample_z(B, G.z_dim, generator, device))
    x_real, fake = aug(x_real), aug(fake)
    d_real, d_fake = D(x_real), D(fake)
    check_scores(d_real.detach(), "real", index)
    check_scores(d_fake.detach(), "generated", index)
    loss_w = adversarial_loss(d_fake, False, "wgangp") + adversarial_loss(d_real, True, "wgangp")
    loss_gp = gradient_penalty(D, x_real, fake, generator)
    loss_d = loss_w + cfg.gp_weight * loss_gp
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    out = {"loss_d": float(loss_d.detach()), "loss_gp": float(loss_gp.detach()),
           "wasserstein": float(-loss_w.detach()), "loss_g": float("nan"), "g_steps": 0.0}
    # --- generator step: -E[D(G(z))], every n_critic-th batch, D frozen
    if index % cfg.n_critic == 0:
        with frozen(D):
            d_gen = D(aug(G(sample_z(B, G.z_dim, generator, device))))
            check_scores(d_gen.detach(), "generated", index)
            loss_g = adversarial_loss(d_gen, True, "wgangp")
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
        out["loss_g"], out["g_steps"] = float(loss_g.detach()), 1.0
    return out


def evaluate(model, cfg: IWGANConfig, splits: Splits, profile: str | None = None, device=None) -> dict:
    """Set metrics against the HELD-OUT shapes, as many generated as held out (latent seed ``seed + 1``)."""
    from ..inference import evaluate_iwgan

    held = splits.held_out["test"]
    return evaluate_iwgan(model, held, n=len(held), seed=cfg.seed + 1)


def sheet_inputs(cfg: IWGANConfig, splits: Splits) -> torch.Tensor:
    """Four fixed latents (seed ``cfg.seed + 12345``)."""
    return torch.randn(4, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 12345))


def figure(model, cfg: IWGANConfig, z: torch.Tensor, title: str = ""):
    """A row of samples (G(z) + 1) / 2 > 0.5 for fixed z."""
    from ..data.synthetic import STAND_IN_LABEL
    from ..inference import generate_unconditional
    from ..plots import voxel_row_figure

    label = STAND_IN_LABEL if cfg.data.startswith("procedural:") else None
    return voxel_row_figure(generate_unconditional(model, z)[:, 0], suptitle=title, label=label)


SYSTEM = System(
    name="iwgan", title="3D-IWGAN", config=IWGANConfig, build=build, optimizers=optimizers, data=data,
    dataset=dataset, step=step, evaluate=evaluate, sheet_inputs=sheet_inputs, figure=figure,
    weights_name=lambda cfg: "generation.safetensors", run_name=lambda cfg: cfg.data.replace(":", "_"),
    shipped="G", ema=("G_ema", "G"), ema_when=generator_stepped, weights_dtype="fp16",
)
