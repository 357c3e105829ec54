"""System 1: the hybrid-loss conditional 3D voxel GAN (seed 000, SPEC §1) declared once.

The seed's algorithm per batch: for each rotation condition c a D step (gated on D's accuracy) and a G step, then
the *pairing* G step that judges the average of every condition's view turned back to condition 0 — per sample,
over the spatial axes (the seed rotated over the batch axis). Additions, all off by default except the EMA: an EMA
of G (the model shipped), one-hot conditions, several pairing steps, a scheduled soft-Jaccard consistency term,
and the small-data remedies of issue 19: DiffAugment in 3D, an R1 penalty and a spectrally normalised D.
"""

from __future__ import annotations

import contextlib

import torch

from ..config.profiles import eval_budget
from ..config.voxel_cgan import VoxelCGANConfig
from ..data.transforms import condition_rotation
from ..losses import adversarial_loss, discriminator_accuracy, scaled_l1_distance, soft_jaccard_distance
from ..nets.fast_conv3d import fast_paths
from ..ops.diffaugment import diff_augment
from .base import Splits, System, autocast_for, frozen, memory_format_of, sample_z


def data(cfg: VoxelCGANConfig, roots=None) -> Splits:
    """The training shapes of a config with their rotation conditions: bool (N, C, 32, 32, 32).

    Every shape is used for training (the seed's protocol: SynthEVox3D-Tiny has 80 shapes a category); the set
    metrics compare generated shapes with these.
    """
    from ..data.shapes import make_conditions
    from ..data.sources import describe_source, load_grids

    grids = load_grids(cfg.data, n=cfg.n_train, seed=cfg.seed, roots=roots)
    grids = grids[: cfg.n_train] if cfg.n_train else grids
    split = f"first {len(grids)} shapes, {cfg.n_conditions} rotation conditions"
    return Splits(make_conditions(grids, cfg.n_conditions), {}, describe_source(cfg.data, split))


def dataset(cfg: VoxelCGANConfig, train) -> torch.utils.data.Dataset:
    """Training grids as a Dataset: (N, C, 32, 32, 32) with C = ``cfg.n_conditions``, or condition-0 grids
    (N, 32, 32, 32) (a user's own array; the conditions are built from them).

    Raises:
        ValueError: another shape or non-binary values (:func:`voxhelpers.data.grids.check_grids`).
    """
    from ..data import VoxelDataset, check_grids, make_conditions
    from ..data.grids import as_grid_array

    train = as_grid_array(train, "volumes", "(N, 32, 32, 32)")
    if train.ndim == 5 and train.shape[1] == cfg.n_conditions and cfg.n_conditions > 1:
        check_grids(train.reshape(-1, *train.shape[2:]), "volumes", size=32)
        return VoxelDataset(train.astype(bool))
    return VoxelDataset(make_conditions(check_grids(train, "volumes", size=32), cfg.n_conditions))


def build(cfg: VoxelCGANConfig, device) -> dict:
    """G, D and G's moving average, on ``device``, channels-last-3d (faster on CPU and GPU)."""
    import copy

    from ..nets import build_network

    G = build_network("voxel_cgan", "generator", cfg).to(device, memory_format=torch.channels_last_3d)
    D = build_network("voxel_cgan", "discriminator", cfg).to(device, memory_format=torch.channels_last_3d)
    return {"G": G, "D": D, "G_ema": copy.deepcopy(G).requires_grad_(False)}


def optimizers(cfg: VoxelCGANConfig, models: dict) -> dict:
    """RMSprop (the seed) or Adam with β = (0.5, 0.999) (its upstream, 3D-CGAN), G and D each their own."""
    make = {"rmsprop": lambda m, lr: torch.optim.RMSprop(m.parameters(), lr=lr),
            "adam": lambda m, lr: torch.optim.Adam(m.parameters(), lr=lr, betas=(0.5, 0.999))}[cfg.optimizer]
    return {"G": make(models["G"], cfg.lr_g), "D": make(models["D"], cfg.lr_d)}


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


def check_scores(scores: torch.Tensor, what: str, step: int) -> None:
    """Raise FloatingPointError when D's outputs are NaN or inf (D or G diverged), before a loss refuses them."""
    if not torch.isfinite(scores).all():
        raise FloatingPointError(f"discriminator output on {what} grids is NaN or inf (batch {step}); training "
                                 "diverged: lower the learning rates or restore the last checkpoint")


def step(models: dict, optimizers: dict, batch: dict, cfg: VoxelCGANConfig, state) -> dict[str, float]:
    """One batch of the hybrid-loss conditional voxel GAN (seed 000, SPEC §1).

    For each condition c: a D step on real grids of condition c against G(z|c) — skipped when D's accuracy on the
    previous batch (the soft accuracy of 3D-CGAN, averaged over the conditions) was ≥ ``cfg.d_acc_gate`` — then a
    G step with ℓ(D(G(z|c)|c), 1). Then the pairing G step: the mean over conditions of G(z|c) turned back by the
    inverse of condition c's rotation (per sample, spatial axes only — the seed rotated over the batch axis) is
    judged by D as condition 0, which makes all conditions draw the same object (``cfg.pairing_steps`` times, each
    with a fresh z). D's parameters are frozen during the G and pairing steps (the same updates, 9 % fewer FLOPs),
    and a gated-off D step runs D without building a graph. With a consistency weight > 0 (not in the seed;
    :func:`consistency_weight` of the epoch) the pairing loss gains that weight × the mean soft Jaccard distance
    between the turned-back view of each condition c ≥ 1 and that of condition 0 — a differentiable 1 − AVAR — or,
    with ``cfg.consistency_distance="l1"``, their :func:`~voxhelpers.losses.scaled_l1_distance` over twice the
    batch's mean occupied voxels (real shapes), which mass both views share cannot lower. With
    ``cfg.consistency_anchor`` condition 0's view is a fixed target (no gradient through it): the term moves the other
    conditions onto it, and cannot be lowered by shrinking every view together.

    Args:
        models: ``G`` and ``D`` (``D.output`` tells probabilities from logits).
        optimizers: ``G`` and ``D``.
        batch: ``{"voxels": (B, C, 1, D, H, W)}`` in {0, 1} (bool or float), condition c at index c.
        cfg: the run's config (loss, variant, gate, pairing, consistency schedule).
        state: ``state.extra["gate"]`` (``{"acc": float}``, D's accuracy on the previous batch, updated in place),
            ``state.generator`` (z), ``state.epoch`` (the consistency schedule).

    Returns:
        ``loss_d`` and ``loss_g`` (means over conditions), ``loss_pair`` (mean over the pairing steps; NaN without
        pairing), ``acc_d`` (mean over conditions), ``d_steps`` (D updates made); with a consistency term also
        ``loss_consistency`` (the soft Jaccard distance, unweighted) and ``consistency_weight``; with ``cfg.r1``
        also ``loss_r1`` (the unweighted penalty, mean over conditions; 0 where D was gated off).

    With ``cfg.augment`` every grid D sees — real or generated, in every step — is DiffAugmented first
    (:func:`voxhelpers.ops.diffaugment.diff_augment`, each sample its own draw from ``state.generator``), and G's
    losses back-propagate through the augmentation. ``cfg.r1`` adds R1's γ/2 · E‖∇ₓD(x)‖² on the real grids.

    Raises:
        ValueError: a batch of another shape.
        FloatingPointError: D's output is NaN or inf (the run diverged).
    """
    G, D, opt_g, opt_d = models["G"], models["D"], optimizers["G"], optimizers["D"]
    real, gate, generator = batch["voxels"], state.extra["gate"], state.generator
    if real.ndim != 6 or real.shape[2] != 1 or real.shape[1] != cfg.n_conditions:
        raise ValueError(f"batch['voxels'] must be (B, {cfg.n_conditions}, 1, D, H, W), got {tuple(real.shape)}")
    consistency = consistency_weight(state.epoch, cfg.epochs, cfg.consistency, cfg.consistency_start)
    B, C = real.shape[:2]
    real = real.float()
    train_d = gate.get("acc", 0.0) < cfg.d_acc_gate  # decided on the previous batch, for every condition
    device, kind, amp = real.device, D.output, autocast_for(real.device, cfg.precision)
    ell = lambda out, t: adversarial_loss(out, t, cfg.loss, kind, cfg.variant)  # noqa: E731
    fmt = memory_format_of(G)

    def aug(x: torch.Tensor) -> torch.Tensor:  # what D sees: DiffAugment (or x itself), in D's memory format
        return diff_augment(x, cfg.augment, generator, cfg.augment_p).contiguous(memory_format=fmt)

    out = {"loss_d": 0.0, "loss_g": 0.0, "acc_d": 0.0, "d_steps": 0.0}
    if cfg.r1 > 0:
        out["loss_r1"] = 0.0
    for c in range(C):
        cond = torch.full((B,), c, device=device, dtype=torch.long)
        x_real = real[:, c].contiguous(memory_format=fmt)
        # --- D step: ℓ(D(x|c), 1) + ℓ(D(G(z|c)|c), 0), gated on last batch's accuracy
        with torch.no_grad(), amp:
            fake = G(sample_z(B, G.z_dim, generator, device), cond)
        penalise = train_d and cfg.r1 > 0
        with torch.set_grad_enabled(train_d), amp:  # a gated-off D step only measures the accuracy
            x_seen = aug(x_real).detach().requires_grad_(penalise)
            with fast_paths(False) if penalise else contextlib.nullcontext():  # R1's double backward: plain layers
                d_real = D(x_seen, cond)
            d_fake = D(aug(fake.detach()), cond)
        check_scores(torch.cat([d_real.detach(), d_fake.detach()]), "real and generated", state.step)
        loss_d = ell(d_real, 1.0) + ell(d_fake, 0.0)
        if penalise:  # R1: γ/2 · E‖∇ₓ D(x)‖² on the real grids D saw
            (grad,) = torch.autograd.grad(d_real.float().sum(), x_seen, create_graph=True)
            r1 = grad.float().square().sum((1, 2, 3, 4)).mean()
            loss_d = loss_d + 0.5 * cfg.r1 * r1
            out["loss_r1"] += float(r1.detach()) / C
        acc = discriminator_accuracy(d_real.detach().float(), d_fake.detach().float(), kind)
        if train_d:
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            out["d_steps"] += 1
        # --- G step: ℓ(D(G(z|c)|c), 1); D frozen, so its backward computes no weight gradients nobody uses
        with frozen(D):
            with amp:
                d_gen = D(aug(G(sample_z(B, G.z_dim, generator, device), cond)), cond)
            check_scores(d_gen.detach(), "generated", state.step)
            loss_g = ell(d_gen, 1.0)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
        opt_g.step()
        out["loss_d"] += float(loss_d.detach()) / C
        out["loss_g"] += float(loss_g.detach()) / C
        out["acc_d"] += acc / C
    gate["acc"] = out["acc_d"]
    out["loss_pair"] = float("nan")
    if cfg.pairing and C > 1:
        if cfg.consistency_distance == "l1":  # over twice the real shapes' mean occupied voxels: a fixed scale
            scale = 2 * real[:, 0].sum((1, 2, 3, 4)).mean().clamp_min(1.0)
            distance = lambda a, b: scaled_l1_distance(a, b, scale)  # noqa: E731
        else:
            distance = soft_jaccard_distance
        # --- pairing step: all conditions of one z, turned back to condition 0, averaged, judged as c = 0
        losses, distances = [], []
        for _ in range(cfg.pairing_steps):
            z = sample_z(B, G.z_dim, generator, device)
            with frozen(D):
                with amp:
                    views = [condition_rotation(G(z, torch.full((B,), c, device=device, dtype=torch.long)), c,
                                                inverse=True) for c in range(C)]
                    paired = torch.stack(views).mean(0)  # (B, 1, D, H, W)
                    d_pair = D(aug(paired), torch.zeros(B, device=device, dtype=torch.long))
                check_scores(d_pair.detach(), "paired", state.step)
                loss_pair = ell(d_pair, 1.0)
                if consistency > 0:
                    anchor = views[0].detach() if cfg.consistency_anchor else views[0]
                    dist = torch.stack([distance(anchor, v).mean() for v in views[1:]]).mean()
                    loss_pair = loss_pair + consistency * dist
                    distances.append(float(dist.detach()))
                opt_g.zero_grad(set_to_none=True)
                loss_pair.backward()
            opt_g.step()
            losses.append(float(loss_pair.detach()))
        out["loss_pair"] = sum(losses) / len(losses)
        if distances:
            out["loss_consistency"] = sum(distances) / len(distances)
    if cfg.consistency:
        out["consistency_weight"] = consistency
    return out


def evaluate(model, cfg: VoxelCGANConfig, splits: Splits, profile: str | None = None, device=None) -> dict:
    """The card metrics of a generator on its config's shapes (:func:`voxhelpers.inference.evaluate_voxel_cgan`),
    with the profile's budget (``full``: 1,000 latents for consistency, 80 shapes for the set metrics)."""
    from ..inference import evaluate_voxel_cgan

    budget = eval_budget(profile)
    metrics = evaluate_voxel_cgan(model, splits.train, budget.n_consistency, budget.n_generated, seed=cfg.seed + 1)
    return {**metrics, "n_consistency": budget.n_consistency, "n_generated": budget.n_generated,
            "n_real": len(splits.train)}


def sheet_inputs(cfg: VoxelCGANConfig, splits: Splits) -> torch.Tensor:
    """Four fixed latents (seed ``cfg.seed + 12345``) for every sample sheet of a run."""
    return torch.randn(4, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 12345))


def figure(model, cfg: VoxelCGANConfig, z: torch.Tensor, title: str = ""):
    """The seed's training sheet: condition 0, condition 1 and combined (paired) rows for fixed z."""
    from ..data.synthetic import STAND_IN_LABEL
    from ..inference import generate_conditions
    from ..plots import sample_sheet_figure

    grids = generate_conditions(model, z)  # (B, C, D, H, W)
    cond0, cond1 = grids[:, 0], grids[:, min(1, grids.shape[1] - 1)]
    combined = (cond0 + condition_rotation(cond1, 1, inverse=True)) / 2
    label = STAND_IN_LABEL if cfg.data.startswith("procedural:") else None
    return sample_sheet_figure(cond0, cond1, combined, suptitle=title, label=label)


SYSTEM = System(
    name="voxel_cgan", title="hybrid-loss conditional voxel GAN", config=VoxelCGANConfig, build=build,
    optimizers=optimizers, data=data, dataset=dataset, step=step, evaluate=evaluate, sheet_inputs=sheet_inputs,
    figure=figure, weights_name=lambda cfg: f"{cfg.loss}.safetensors",
    run_name=lambda cfg: f"{cfg.data.replace(':', '_')}/{cfg.loss}", shipped="G", ema=("G_ema", "G"),
    sync_extra=("gate",), weights_dtype="int8", initial_extra=lambda cfg: {"gate": {"acc": 0.0}},
)
