"""Benchmark cases of system 2: 3D-IWGAN critic and generator steps, the 3D-VAE-IWGAN step, the renderer."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import torch

from .core import _FORMATS, BenchCase, BenchOptions, _random_grids, register_case


def _iwgan_models(opts: BenchOptions, fmt: str):
    """3D-IWGAN's G and critic at the paper's sizes (``get_system("iwgan").build``, channels-last-3d), converted to
    ``fmt``, with the paper's Adam optimisers (``.optimizers``).

    Returns:
        ``(system, cfg, {"G": G, "D": D}, {"G": opt_g, "D": opt_d})``: the EMA copy ``build`` also makes is dropped
        (the step never updates it; the training loop does).
    """
    from ..config import IWGANConfig
    from ..systems import get_system

    system = get_system("iwgan")
    torch.manual_seed(opts.seed)
    cfg = IWGANConfig()
    models = system.build(cfg, opts.device)
    models = {"G": models["G"], "D": models["D"]}
    if fmt != "channels_last_3d":
        models = {k: m.to(memory_format=_FORMATS[fmt]) for k, m in models.items()}
    models["G"].train(), models["D"].train()
    return system, cfg, models, system.optimizers(cfg, models)


def _state(seed: int, step: int) -> SimpleNamespace:
    """The run state the IWGAN steps read: z and the penalty's ε drawn on ``generator`` (seeded once, advancing from
    call to call) and the batch index ``step``, the same for every call (the generator steps when
    ``step % n_critic == 0``)."""
    return SimpleNamespace(generator=torch.Generator().manual_seed(seed), extra={}, epoch=0, step=step)


@register_case("iwgan_critic_step")
def _iwgan_critic_step(opts: BenchOptions) -> list[BenchCase]:
    """One 3D-IWGAN critic update at batch 64: G(z) without gradients, D on real and generated grids, the gradient
    penalty on interpolates (a double backward through D), Adam. :func:`voxhelpers.systems.iwgan.step` with a batch
    index (``state.step`` = 1) that is not a multiple of ``n_critic``, so no generator update runs. fp32 (the step uses
    no autocast). One row per format."""
    batch = 4 if opts.quick else 64

    def make(fmt: str) -> Callable[[], Callable[[], object]]:
        def setup() -> Callable[[], object]:
            system, cfg, models, optimizers = _iwgan_models(opts, fmt)
            real = _random_grids((batch, 1, 32, 32, 32), opts.seed).float().to(opts.device)
            voxels = {"voxels": real.contiguous(memory_format=_FORMATS[fmt])}
            state = _state(opts.seed, 1)  # 1 % 5: critic only, on every call
            assert state.step % cfg.n_critic != 0

            def step() -> dict:
                return system.step(models, optimizers, voxels, cfg, state)

            return step

        return setup

    notes = "critic: G fwd (no grad) + D on real, fake, x̂ + GP double backward, Adam; fp32"
    return [BenchCase("iwgan_critic_step", make(f), batch, batch, f, notes=notes)
            for f in ("channels_last_3d", "contiguous")]


@register_case("iwgan_generator_step")
def _iwgan_generator_step(opts: BenchOptions) -> list[BenchCase]:
    """One 3D-IWGAN generator update at batch 64: −E[D(G(z))] with the critic frozen, backward through D into G,
    Adam — the generator half of :func:`voxhelpers.systems.iwgan.step`. fp32. One row per format."""
    batch = 4 if opts.quick else 64

    def make(fmt: str) -> Callable[[], Callable[[], object]]:
        def setup() -> Callable[[], object]:
            from ..losses import wgan_generator_loss
            from ..systems.base import sample_z

            _, _, models, optimizers = _iwgan_models(opts, fmt)
            G, D, opt_g = models["G"], models["D"], optimizers["G"]
            D.requires_grad_(False)  # frozen, as in the step's generator update
            gen = torch.Generator().manual_seed(opts.seed)

            def step() -> float:
                loss_g = wgan_generator_loss(D(G(sample_z(batch, G.z_dim, gen, opts.device))))
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                return float(loss_g.detach())

            return step

        return setup

    notes = "generator: G fwd + D fwd (frozen) + backward through D into G, Adam; fp32"
    return [BenchCase("iwgan_generator_step", make(f), batch, batch, f, notes=notes)
            for f in ("channels_last_3d", "contiguous")]


@register_case("vae_iwgan_step")
def _vae_iwgan_step(opts: BenchOptions) -> list[BenchCase]:
    """One 3D-VAE-IWGAN batch at 32 renders of 128² (the reconstruction system's training step with the renders
    given): encoder + G forward, critic update with the gradient penalty, encoder update, and — on this batch
    index (``state.step`` = 0) — the generator update (:func:`voxhelpers.systems.vae_iwgan.step`, summed
    reconstruction). fp32, channels-last-3d."""
    batch, size = (2, 64) if opts.quick else (32, 128)

    def setup() -> Callable[[], object]:
        from ..config import VAEIWGANConfig
        from ..ops.render import random_views, render_voxels
        from ..systems import get_system

        system = get_system("vae_iwgan")
        torch.manual_seed(opts.seed)
        cfg = VAEIWGANConfig(image_size=size)
        models = system.build(cfg, opts.device)
        models = {"model": models["model"], "D": models["D"]}  # not the EMA copy: the step never updates it
        optimizers = system.optimizers(cfg, models)  # Adam for the encoder, the generator and the critic
        real = _random_grids((batch, 1, 32, 32, 32), opts.seed).float().to(opts.device)
        az, el = random_views(batch, torch.Generator().manual_seed(opts.seed))
        images = render_voxels(real > 0.5, az, el, size)  # given: the step renders nothing itself
        voxels = {"voxels": real.contiguous(memory_format=torch.channels_last_3d), "images": images}
        state = _state(opts.seed, 0)  # batch index 0 on every call: the generator update runs
        assert state.step % cfg.n_critic == 0

        def step() -> dict:
            return system.step(models, optimizers, voxels, cfg, state)

        return step

    notes = f"E + G fwd, critic step with GP, encoder step, generator step (batch index 0); {size}² renders; fp32"
    return [BenchCase("vae_iwgan_step", setup, batch, batch, "channels_last_3d", notes=notes)]


@register_case("render_64x128")
def _render_64x128(opts: BenchOptions) -> list[BenchCase]:
    """``render_voxels`` of 64 procedural 32³ shapes (airplanes, cars, chairs) at 128², random views (the image
    encoder's inputs). No FLOP count: the renderer is splatting and scatter work, not GEMM."""
    n, size = (4, 32) if opts.quick else (64, 128)

    def setup() -> Callable[[], object]:
        import numpy as np

        from ..data.synthetic import PROCEDURAL_KINDS, procedural_shapes
        from ..ops.render import random_views, render_voxels

        per_kind = -(-n // len(PROCEDURAL_KINDS))
        shapes = np.concatenate([procedural_shapes(k, per_kind, seed=opts.seed) for k in PROCEDURAL_KINDS])[:n]
        voxels = torch.as_tensor(shapes).to(opts.device)  # (n, 32, 32, 32) bool
        azimuth, elevation = random_views(n, torch.Generator().manual_seed(opts.seed))

        def render() -> torch.Tensor:
            return render_voxels(voxels, azimuth, elevation, image_size=size)

        return render

    notes = f"{n} procedural 32³ shapes → {n} RGB views of {size}², random azimuth/elevation; samples/s = views/s"
    return [BenchCase("render_64x128", setup, n, n, "bool", count=False, notes=notes)]
