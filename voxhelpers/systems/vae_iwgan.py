"""System 2b: 3D-VAE-IWGAN single-image reconstruction (Smith & Meger 2017, §3.2; SPEC §2).

An image encoder, the 3D-IWGAN generator and its critic trained jointly on render → voxel pairs. Renders are drawn
fresh every batch (random azimuth / elevation on the run's generator), so the encoder never sees the same view twice
and a resumed run draws the same views; the split is by object: train / validation (picks the occupancy threshold)
/ test (the reported metrics).
"""

from __future__ import annotations

import copy

import torch

from ..config.iwgan import VAEIWGANConfig
from ..losses import adversarial_loss, gradient_penalty, kl_divergence
from ..nets.iwgan import reparameterize, tanh_to_occupancy, voxels_to_tanh
from .base import Splits, System, frozen
from .iwgan import check_scores, dataset, shapes


def data(cfg: VAEIWGANConfig, roots=None) -> Splits:
    """(train, validation, test) objects, bool (N, 32, 32, 32) each, no object in two parts.

    :func:`voxhelpers.systems.iwgan.shapes` holds ``cfg.holdout`` of the distinct shapes back; a second seeded split
    gives ``cfg.val_fraction`` of those to validation and the rest to test.
    """
    from ..data.grids import split_holdout
    from ..data.sources import describe_source

    train, held = shapes(cfg, roots)
    if len(held) < 2:
        raise ValueError(f"{cfg.data}: {len(held)} held-back shape(s); need at least 2 (validation and test) — raise "
                         "holdout or max_shapes")
    test, val = split_holdout(held, cfg.val_fraction, cfg.seed + 1)
    split = (f"{len(train)} train / {len(val)} validation / {len(test)} test distinct objects (split by object, seed "
             f"{cfg.seed}); renders {cfg.image_size}² from random views, elevation {tuple(cfg.elevation_range)}")
    return Splits(train, {"validation": val, "test": test}, describe_source(cfg.data, split))


def build(cfg: VAEIWGANConfig, device) -> dict:
    """The image → voxel model (:class:`voxhelpers.nets.VAEIWGAN`: encoder + generator), the critic and the model's
    moving average."""
    from ..nets import build_network

    model = build_network("vae_iwgan", "generator", cfg)
    model.generator.to(memory_format=torch.channels_last_3d)
    D = build_network("vae_iwgan", "discriminator", cfg).to(device, memory_format=torch.channels_last_3d)
    model = model.to(device)
    return {"model": model, "D": D, "ema": copy.deepcopy(model).requires_grad_(False)}


def optimizers(cfg: VAEIWGANConfig, models: dict) -> dict:
    """Adam(lr, betas) for the encoder, the generator and the critic, each its own."""
    adam = lambda m: torch.optim.Adam(m.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))  # noqa: E731
    model = models["model"]
    return {"E": adam(model.encoder), "G": adam(model.generator), "D": adam(models["D"])}


def step(models: dict, optimizers: dict, batch: dict, cfg: VAEIWGANConfig, state) -> dict[str, float]:
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
    * generator (when ``state.step % n_critic == 0``): −E[D(x̃)] + ``rec_weight``·rec; with ``g_rec_every_batch``
      also ``rec_weight``·rec alone on the other batches (the original updates G on every 5th batch only).

    Each network gets the gradient of its own loss only (``torch.autograd.grad`` on its parameters), so the
    adversarial term never reaches the encoder and the KL never reaches the generator. fp32.

    Args:
        models: ``model`` (:class:`voxhelpers.nets.VAEIWGAN`: ``encoder`` and ``generator``) and ``D``.
        optimizers: ``E``, ``G`` and ``D``.
        batch: ``{"voxels": (B, 1, 32, 32, 32)}`` in {0, 1} and, optionally, ``"images"`` (B, C, S, S): renders of
            those objects; without them each object is rendered from a random view drawn on ``state.generator``
            (elevation in ``cfg.elevation_range``, the data's up axis).
        cfg: λ, n_critic, δ, the KL weight, the reduction, ``g_rec_every_batch``, the image size.
        state: ``state.step`` (the batch index; G is updated when ``step % n_critic == 0``), ``state.generator``.

    Returns:
        ``loss_d``, ``loss_gp``, ``wasserstein``, ``loss_rec`` (the voxel MSE), ``loss_kl``, ``loss_e``, ``loss_g``
        (NaN on batches without a generator update) and ``g_steps``.

    Raises:
        ValueError: voxels not (B, 1, D, H, W) or not binary, images not (B, C, S, S) with the same B,
            ``state.step`` < 0.
        FloatingPointError: the critic returned NaN or inf.
    """
    from ..data.sources import grid_up
    from ..ops.render import random_views, render_voxels

    E, G, D = models["model"].encoder, models["model"].generator, models["D"]
    opt_e, opt_g, opt_d = optimizers["E"], optimizers["G"], optimizers["D"]
    real, generator, index = batch["voxels"], state.generator, state.step
    if real.ndim != 5 or real.shape[1] != 1:
        raise ValueError(f"batch['voxels'] must be (B, 1, 32, 32, 32) in {{0, 1}}, got {tuple(real.shape)}")
    if index < 0:
        raise ValueError(f"state.step must be the batch index >= 0 (the n_critic schedule reads it), got {index}")
    images = batch.get("images")
    if images is None:
        az, el = random_views(len(real), generator, tuple(cfg.elevation_range))
        images = render_voxels(real, az, el, cfg.image_size, up=grid_up(cfg.data))  # (B, 3, S, S) on real's device
    if images.ndim != 4 or images.shape[0] != real.shape[0]:
        raise ValueError(f"batch['images'] must be (B, C, S, S) with B = {real.shape[0]} (one render per target), "
                         f"got {tuple(images.shape)}")
    real = real.contiguous(memory_format=torch.channels_last_3d)
    x_real = voxels_to_tanh(real).float()  # (B, 1, 32, 32, 32) in {-1, 1}
    real = real.float()

    mu, log_sigma = E(images)  # (B, z_dim) each
    fake = G(reparameterize(mu, log_sigma, generator))  # (B, 1, 32, 32, 32) in [-1, 1]

    # --- critic: E[D(x~)] - E[D(x)] + λ·GP, every batch
    d_real, d_fake = D(x_real), D(fake.detach())
    check_scores(d_real.detach(), "real", index)
    check_scores(d_fake.detach(), "reconstructed", index)
    loss_w = adversarial_loss(d_fake, False, "wgangp") + adversarial_loss(d_real, True, "wgangp")
    loss_gp = gradient_penalty(D, x_real, fake.detach(), generator)
    loss_d = loss_w + cfg.gp_weight * loss_gp
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()

    # --- encoder (every batch) and generator (every n_critic-th batch), each on its own loss
    sq = (tanh_to_occupancy(fake) - real) ** 2  # (B, 1, 32, 32, 32)
    loss_rec = sq.mean()
    rec_term = loss_rec if cfg.rec_reduction == "mean" else sq.flatten(1).sum(1).mean()
    loss_kl = kl_divergence(mu, log_sigma)
    loss_e = cfg.rec_weight * rec_term + cfg.kl_weight * loss_kl
    e_params = [p for p in E.parameters() if p.requires_grad]
    g_step = index % cfg.n_critic == 0
    out = {"loss_d": float(loss_d.detach()), "loss_gp": float(loss_gp.detach()), "wasserstein": float(-loss_w.detach()),
           "loss_rec": float(loss_rec.detach()), "loss_kl": float(loss_kl.detach()), "loss_e": float(loss_e.detach()),
           "loss_g": float("nan"), "g_steps": float(g_step)}
    if g_step:
        with frozen(D):
            d_gen = D(fake)
            check_scores(d_gen.detach(), "reconstructed", index)
            loss_g = adversarial_loss(d_gen, True, "wgangp") + cfg.rec_weight * rec_term
            g_params = [p for p in G.parameters() if p.requires_grad]
            grads_e = torch.autograd.grad(loss_e, e_params, retain_graph=True)
            grads_g = torch.autograd.grad(loss_g, g_params)
        for p, g in zip(g_params, grads_g, strict=True):
            p.grad = g
        opt_g.step()
        out["loss_g"] = float(loss_g.detach())
    elif cfg.g_rec_every_batch:
        g_params = [p for p in G.parameters() if p.requires_grad]
        grads_e = torch.autograd.grad(loss_e, e_params, retain_graph=True)
        for p, g in zip(g_params, torch.autograd.grad(cfg.rec_weight * rec_term, g_params), strict=True):
            p.grad = g
        opt_g.step()
    else:
        grads_e = torch.autograd.grad(loss_e, e_params)
    for p, g in zip(e_params, grads_e, strict=True):
        p.grad = g
    opt_e.step()
    return out


def evaluate(model, cfg: VAEIWGANConfig, splits: Splits, profile: str | None = None, device=None) -> dict:
    """IoU / AP on the held-out TEST objects with the threshold chosen on validation, beside the retrieval baseline
    (:func:`voxhelpers.inference.evaluate_reconstruction`); the per-view table is left out of the card."""
    from ..data.sources import grid_up
    from ..inference import evaluate_reconstruction

    m = evaluate_reconstruction(model, splits.train, splits.held_out["validation"], splits.held_out["test"],
                                grid_up(cfg.data), cfg.image_size, cfg.eval_views, cfg.retrieval_views, cfg.seed,
                                tuple(cfg.elevation_range), device)
    return {k: v for k, v in m.items() if k != "per_view"}


def sheet_inputs(cfg: VAEIWGANConfig, splits: Splits) -> tuple[torch.Tensor, torch.Tensor]:
    """Renders (azimuth 30°, elevation 20°) of four fixed validation objects, and those objects."""
    from ..data.sources import grid_up
    from ..ops.render import render_voxels

    grids = torch.as_tensor(splits.held_out.get("validation", splits.train)[:4])
    return render_voxels(grids, 30.0, 20.0, cfg.image_size, up=grid_up(cfg.data)), grids


def figure(model, cfg: VAEIWGANConfig, inputs, title: str = ""):
    """Render | target | reconstruction (threshold 0.5) for the fixed validation views."""
    from ..data.synthetic import STAND_IN_LABEL
    from ..inference import reconstruct
    from ..plots import reconstruction_figure

    images, targets = inputs
    label = STAND_IN_LABEL if cfg.data.startswith("procedural:") else None
    return reconstruction_figure(images, targets, reconstruct(model, images), suptitle=title, label=label)


SYSTEM = System(
    name="vae_iwgan", title="3D-VAE-IWGAN", config=VAEIWGANConfig, build=build, optimizers=optimizers, data=data,
    dataset=dataset, step=step, evaluate=evaluate, sheet_inputs=sheet_inputs, figure=figure,
    weights_name=lambda cfg: "reconstruction.safetensors", run_name=lambda cfg: cfg.data.replace(":", "_"),
    shipped="model", ema=("ema", "model"), weights_dtype="fp16",
)
