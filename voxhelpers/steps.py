"""One update function per system, written like the paper's algorithm box.

Each returns a dict of floats with the same keys everywhere it can (``loss_d``, ``loss_g``, ``loss_gp``,
``loss_rec``, ``loss_proj``, plus system-specific ones such as ``loss_pair`` and ``acc_d``).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .losses import (
    discriminator_accuracy,
    gradient_penalty,
    hybrid_loss,
    kl_divergence,
    soft_jaccard_distance,
    wgan_critic_loss,
    wgan_generator_loss,
)
from .nets.voxel_gan import reparameterize, tanh_to_occupancy, voxels_to_tanh
from .transforms import condition_rotation


def autocast_for(device: torch.device | str):
    """bf16 autocast on CUDA (where it pays); a no-op context on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def frozen(model: nn.Module):
    """Turn off ``requires_grad`` on a model's parameters for the block (a critic during a generator step), then
    restore each parameter's own flag, also when the block raises."""
    flags = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    try:
        yield model
    finally:
        for p, flag in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def sample_z(n: int, z_dim: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """z ~ N(0, I), (n, z_dim), drawn on the CPU generator (so runs reproduce on any device), moved to device."""
    return torch.randn(n, z_dim, generator=generator).to(device)


def voxel_cgan_step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                    real: torch.Tensor, gate: dict, loss: str = "bce_bcewithlogits", variant: str = "seed",
                    d_acc_gate: float = 0.95, pairing: bool = True, generator: torch.Generator | None = None,
                    pairing_steps: int = 1, consistency: float = 0.0) -> dict[str, float]:
    """One batch of the hybrid-loss conditional voxel GAN (seed 000, SPEC §1).

    For each condition c: a D step on real grids of condition c against G(z|c) — skipped when D's
    accuracy on the previous batch (the soft accuracy of 3D-CGAN, averaged over the conditions) was
    ≥ ``d_acc_gate`` — then a G step with
    ℓ(D(G(z|c)|c), 1). Then the pairing G step: the mean over conditions of G(z|c) turned back by the
    inverse of condition c's rotation (per sample, spatial axes only — the seed rotated over the batch
    axis) is judged by D as condition 0, which makes all conditions draw the same object (``pairing_steps`` times,
    each with a fresh z; the seed ran it once). D's parameters are frozen
    during the G and pairing steps (its weight gradients there were computed and discarded: the same updates, 9 %
    fewer FLOPs), and a gated-off D step runs D without building a graph. With ``consistency`` > 0 (not in the
    seed) the pairing loss gains ``consistency`` × the mean soft Jaccard distance between the turned-back view of
    each condition c ≥ 1 and that of condition 0 — a differentiable 1 − AVAR.

    Args:
        G, D: generator and discriminator (``D.output`` tells probabilities from logits).
        opt_g, opt_d: their optimizers.
        real: real grids (B, C, 1, D, H, W) in {0, 1}, condition c at index c.
        gate: ``{"acc": float}``, D's accuracy on the previous batch, updated in place (start with 0).
        loss: a name from :data:`voxhelpers.losses.HYBRID_LOSSES`.
        variant: ``"seed"`` or ``"sound"`` (see :func:`voxhelpers.losses.hybrid_loss`).
        d_acc_gate: the seed's 0.95.
        pairing: run the pairing step.
        generator: torch.Generator for z.
        pairing_steps: pairing G updates per batch (≥ 1; the seed: 1).
        consistency: weight of the consistency term in the pairing step (≥ 0; the seed: 0).

    Returns:
        ``loss_d`` and ``loss_g`` (means over conditions), ``loss_pair`` (mean over the pairing steps), ``acc_d``
        (mean over conditions), ``d_steps`` (D updates made); with ``consistency`` > 0 also ``loss_consistency``
        (the soft Jaccard distance, unweighted, mean over the pairing steps).
    """
    if real.ndim != 6 or real.shape[2] != 1:
        raise ValueError(f"real must be (B, C, 1, D, H, W), got {tuple(real.shape)}")
    if pairing_steps < 1:
        raise ValueError(f"pairing_steps must be >= 1 (switch the step off with pairing=False), got {pairing_steps}")
    if not consistency >= 0:
        raise ValueError(f"consistency must be a weight >= 0, got {consistency}")
    B, C = real.shape[:2]
    train_d = gate.get("acc", 0.0) < d_acc_gate  # decided on the previous batch, for every condition
    device, kind, amp = real.device, D.output, autocast_for(real.device)
    ell = lambda out, t: hybrid_loss(out.float(), t, loss, kind, variant)  # noqa: E731
    fmt = next(G.parameters()).is_contiguous(memory_format=torch.channels_last_3d)
    fmt = torch.channels_last_3d if fmt and next(G.parameters()).ndim == 5 else torch.contiguous_format
    out = {"loss_d": 0.0, "loss_g": 0.0, "acc_d": 0.0, "d_steps": 0.0}
    for c in range(C):
        cond = torch.full((B,), c, device=device, dtype=torch.long)
        x_real = real[:, c].contiguous(memory_format=fmt)
        # --- D step: ℓ(D(x|c), 1) + ℓ(D(G(z|c)|c), 0), gated on last batch's accuracy
        with torch.no_grad(), amp:
            fake = G(sample_z(B, G.z_dim, generator, device), cond)
        with torch.set_grad_enabled(train_d), amp:  # a gated-off D step only measures the accuracy
            d_real, d_fake = D(x_real, cond), D(fake.detach(), cond)
        loss_d = ell(d_real, 1.0) + ell(d_fake, 0.0)
        acc = discriminator_accuracy(d_real.detach().float(), d_fake.detach().float(), kind)
        if train_d:
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            out["d_steps"] += 1
        # --- G step: ℓ(D(G(z|c)|c), 1); D frozen, so its backward computes no weight gradients nobody uses
        with frozen(D):
            with amp:
                d_gen = D(G(sample_z(B, G.z_dim, generator, device), cond), cond)
            loss_g = ell(d_gen, 1.0)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
        opt_g.step()
        out["loss_d"] += float(loss_d.detach()) / C
        out["loss_g"] += float(loss_g.detach()) / C
        out["acc_d"] += acc / C
    gate["acc"] = out["acc_d"]
    out["loss_pair"] = float("nan")
    if pairing and C > 1:
        # --- pairing step: all conditions of one z, turned back to condition 0, averaged, judged as c = 0
        losses, distances = [], []
        for _ in range(pairing_steps):
            z = sample_z(B, G.z_dim, generator, device)
            with frozen(D):
                with amp:
                    views = [condition_rotation(G(z, torch.full((B,), c, device=device, dtype=torch.long)), c,
                                                inverse=True) for c in range(C)]
                    paired = torch.stack(views).mean(0)  # (B, 1, D, H, W)
                    d_pair = D(paired.contiguous(memory_format=fmt),
                               torch.zeros(B, device=device, dtype=torch.long))
                loss_pair = ell(d_pair, 1.0)
                if consistency > 0:
                    dist = torch.stack([soft_jaccard_distance(views[0], v).mean() for v in views[1:]]).mean()
                    loss_pair = loss_pair + consistency * dist
                    distances.append(float(dist.detach()))
                opt_g.zero_grad(set_to_none=True)
                loss_pair.backward()
            opt_g.step()
            losses.append(float(loss_pair.detach()))
        out["loss_pair"] = sum(losses) / len(losses)
        if distances:
            out["loss_consistency"] = sum(distances) / len(distances)
    return out


def iwgan_step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
               real: torch.Tensor, step: int, gp_weight: float = 10.0, n_critic: int = 5,
               generator: torch.Generator | None = None) -> dict[str, float]:
    """One batch of 3D-IWGAN (Smith & Meger, CoRL 2017, arXiv 1707.09557; WGAN-GP, Gulrajani et al. 2017).

    Critic step (every batch): x = 2·real − 1 (:func:`voxhelpers.nets.voxel_gan.voxels_to_tanh`),
    x̃ = G(z) without gradients to G, and
    loss_d = E[D(x̃)] − E[D(x)] + ``gp_weight``·GP (:func:`voxhelpers.losses.gradient_penalty`, per-sample
    norm). Generator step (only when ``step % n_critic == 0``, the paper's one G update per 5 critic updates),
    with D's parameters frozen: loss_g = −E[D(G(z))]. Runs in fp32 (no autocast: the penalty's double
    backward needs the precision). z ~ N(0, I) is drawn with :func:`sample_z` on ``generator``.

    Args:
        G: generator mapping z (B, G.z_dim) to (B, 1, 32, 32, 32) in [−1, 1], e.g. ``IWGANGenerator``.
        D: critic mapping (B, 1, 32, 32, 32) to (B,) scores, e.g. ``IWGANCritic``.
        opt_g, opt_d: their optimizers (the paper: Adam, lr 1e-4, betas (0.5, 0.9)).
        real: real grids (B, 1, 32, 32, 32) in {0, 1}.
        step: index of this batch (0, 1, 2, …); the generator is updated when ``step % n_critic == 0``.
        gp_weight: λ of the gradient penalty (10).
        n_critic: critic updates per generator update (5).
        generator: torch.Generator for z and the penalty's ε.

    Returns:
        ``loss_d`` (with the weighted penalty), ``loss_gp`` (the penalty before weighting), ``wasserstein``
        (E[D(x)] − E[D(x̃)], the critic's estimate of the Wasserstein-1 distance), ``loss_g`` (NaN on batches
        without a generator update).

    Raises:
        ValueError: ``real`` not (B, 1, D, H, W) or not binary, ``step`` < 0, ``n_critic`` < 1, ``gp_weight`` < 0.
        FloatingPointError: the critic returned NaN or inf (the update that caused it has already been applied;
            lower the learning rate or restore a checkpoint).
    """
    if real.ndim != 5 or real.shape[1] != 1:
        raise ValueError(f"real must be (B, 1, 32, 32, 32) in {{0, 1}}, got {tuple(real.shape)}")
    if step < 0 or n_critic < 1 or gp_weight < 0:
        raise ValueError(f"need step >= 0, n_critic >= 1 and gp_weight >= 0, got {step}, {n_critic}, {gp_weight}")
    B, device = real.shape[0], real.device
    x_real = voxels_to_tanh(real).float()  # (B, 1, 32, 32, 32) in {-1, 1}

    def _check(scores: torch.Tensor, what: str) -> None:
        _check_scores(scores, what, step)

    # --- critic step: E[D(G(z))] - E[D(x)] + λ·GP, every batch
    with torch.no_grad():
        fake = G(sample_z(B, G.z_dim, generator, device))
    d_real, d_fake = D(x_real), D(fake)
    _check(d_real.detach(), "real")
    _check(d_fake.detach(), "generated")
    loss_w = wgan_critic_loss(d_real, d_fake)
    loss_gp = gradient_penalty(D, x_real, fake, generator)
    loss_d = loss_w + gp_weight * loss_gp
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    out = {"loss_d": float(loss_d.detach()), "loss_gp": float(loss_gp.detach()),
           "wasserstein": float(-loss_w.detach()), "loss_g": float("nan")}
    # --- generator step: -E[D(G(z))], every n_critic-th batch, D frozen
    if step % n_critic == 0:
        with frozen(D):
            d_gen = D(G(sample_z(B, G.z_dim, generator, device)))
            _check(d_gen.detach(), "generated")
            loss_g = wgan_generator_loss(d_gen)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
        out["loss_g"] = float(loss_g.detach())
    return out


def _check_scores(scores: torch.Tensor, what: str, step: int) -> None:
    if not torch.isfinite(scores).all():
        raise FloatingPointError(f"critic output on {what} samples is NaN or inf (step {step}); the critic "
                                 "diverged: lower the learning rate or restore the last checkpoint")


def vae_iwgan_step(E: nn.Module, G: nn.Module, D: nn.Module, opt_e: torch.optim.Optimizer,
                   opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer, images: torch.Tensor,
                   real: torch.Tensor, step: int, gp_weight: float = 10.0, n_critic: int = 5,
                   rec_weight: float = 100.0, kl_weight: float = 0.005,
                   generator: torch.Generator | None = None, rec_reduction: str = "mean",
                   g_rec_every_batch: bool = False) -> dict[str, float]:
    """One batch of 3D-VAE-IWGAN (Smith & Meger, CoRL 2017, §3.2): encoder, generator and critic trained jointly.

    With μ, log σ = E(images), z = μ + σ·ε (:func:`reparameterize`) and x̃ = G(z) (the reconstruction, in
    [−1, 1]); x = 2·real − 1; p̃ = (x̃ + 1)/2 the reconstructed occupancy:

    * critic (every batch): E[D(x̃)] − E[D(x)] + ``gp_weight``·GP, x̃ detached — as in the original, the
      critic's fakes are the reconstructions;
    * encoder (every batch): ``rec_weight``·rec + ``kl_weight``·KL, rec = (p̃ − real)² averaged over voxels and
      batch (``rec_reduction="mean"``, the original) or summed over each shape's voxels and averaged over the batch
      (``"sum"``: 32,768× larger for 32³, so that reconstruction outweighs the critic, whose gradient on a shape
      has norm ≈ 1 spread over all its voxels); KL = :func:`voxhelpers.losses.kl_divergence` (summed over dims,
      mean over the batch);
    * generator (when ``step % n_critic == 0``): −E[D(x̃)] + ``rec_weight``·rec; with ``g_rec_every_batch`` also
      ``rec_weight``·rec alone on the other batches (the original updates G on every 5th batch only).

    Each network gets the gradient of its own loss only (``torch.autograd.grad`` on its parameters), so the
    adversarial term never reaches the encoder and the KL never reaches the generator. fp32, like
    :func:`iwgan_step`.

    Args:
        E: image encoder returning (mu, log_sigma), each (B, z_dim), e.g. ``ImageEncoder``.
        G: generator z (B, z_dim) → (B, 1, 32, 32, 32) in [−1, 1].
        D: critic (B, 1, 32, 32, 32) → (B,).
        opt_e, opt_g, opt_d: their optimizers (the paper: Adam, lr 1e-4, betas (0.5, 0.9)).
        images: renders (B, C, S, S) of the objects in ``real``, same order.
        real: target grids (B, 1, 32, 32, 32) in {0, 1}.
        step: batch index (0, 1, …); G is updated when ``step % n_critic == 0``.
        gp_weight, n_critic, rec_weight, kl_weight: λ, critic steps per G step, δ and the KL weight.
        generator: torch.Generator for ε and the penalty's interpolation.
        rec_reduction: ``"mean"`` or ``"sum"`` (see above).
        g_rec_every_batch: also step G on the reconstruction term alone between its adversarial steps.

    Returns:
        ``loss_d``, ``loss_gp``, ``wasserstein``, ``loss_rec`` (the voxel MSE), ``loss_kl``, ``loss_e`` and
        ``loss_g`` (NaN on batches without a generator update).

    Raises:
        ValueError: ``real`` not (B, 1, D, H, W) or not binary, ``images`` not (B, C, S, S) with the same B, bad
            step / weights.
        FloatingPointError: the critic returned NaN or inf.
    """
    if real.ndim != 5 or real.shape[1] != 1:
        raise ValueError(f"real must be (B, 1, 32, 32, 32) in {{0, 1}}, got {tuple(real.shape)}")
    if images.ndim != 4 or images.shape[0] != real.shape[0]:
        raise ValueError(f"images must be (B, C, S, S) with B = {real.shape[0]} (one render per target), "
                         f"got {tuple(images.shape)}")
    if rec_reduction not in ("mean", "sum"):
        raise ValueError(f"rec_reduction must be 'mean' or 'sum', got {rec_reduction!r}")
    if step < 0 or n_critic < 1 or min(gp_weight, rec_weight, kl_weight) < 0:
        raise ValueError(f"need step >= 0, n_critic >= 1 and non-negative weights, got {step}, {n_critic}, "
                         f"{gp_weight}, {rec_weight}, {kl_weight}")
    x_real = voxels_to_tanh(real).float()  # (B, 1, 32, 32, 32) in {-1, 1}
    real = real.float()

    mu, log_sigma = E(images)  # (B, z_dim) each
    fake = G(reparameterize(mu, log_sigma, generator))  # (B, 1, 32, 32, 32) in [-1, 1]

    # --- critic: E[D(x~)] - E[D(x)] + λ·GP, every batch
    d_real, d_fake = D(x_real), D(fake.detach())
    _check_scores(d_real.detach(), "real", step)
    _check_scores(d_fake.detach(), "reconstructed", step)
    loss_w = wgan_critic_loss(d_real, d_fake)
    loss_gp = gradient_penalty(D, x_real, fake.detach(), generator)
    loss_d = loss_w + gp_weight * loss_gp
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()

    # --- encoder (every batch) and generator (every n_critic-th batch), each on its own loss
    sq = (tanh_to_occupancy(fake) - real) ** 2  # (B, 1, 32, 32, 32)
    loss_rec = sq.mean()
    rec_term = loss_rec if rec_reduction == "mean" else sq.flatten(1).sum(1).mean()
    loss_kl = kl_divergence(mu, log_sigma)
    loss_e = rec_weight * rec_term + kl_weight * loss_kl
    e_params = [p for p in E.parameters() if p.requires_grad]
    g_step = step % n_critic == 0
    out = {"loss_d": float(loss_d.detach()), "loss_gp": float(loss_gp.detach()), "wasserstein": float(-loss_w.detach()),
           "loss_rec": float(loss_rec.detach()), "loss_kl": float(loss_kl.detach()), "loss_e": float(loss_e.detach()),
           "loss_g": float("nan")}
    if g_step:
        with frozen(D):
            d_gen = D(fake)
            _check_scores(d_gen.detach(), "reconstructed", step)
            loss_g = wgan_generator_loss(d_gen) + rec_weight * rec_term
            g_params = [p for p in G.parameters() if p.requires_grad]
            grads_e = torch.autograd.grad(loss_e, e_params, retain_graph=True)
            grads_g = torch.autograd.grad(loss_g, g_params)
        for p, g in zip(g_params, grads_g, strict=True):
            p.grad = g
        opt_g.step()
        out["loss_g"] = float(loss_g.detach())
    elif g_rec_every_batch:
        g_params = [p for p in G.parameters() if p.requires_grad]
        grads_e = torch.autograd.grad(loss_e, e_params, retain_graph=True)
        for p, g in zip(g_params, torch.autograd.grad(rec_weight * rec_term, g_params), strict=True):
            p.grad = g
        opt_g.step()
    else:
        grads_e = torch.autograd.grad(loss_e, e_params)
    for p, g in zip(e_params, grads_e, strict=True):
        p.grad = g
    opt_e.step()
    return out
