"""Benchmark cases of system 2: 3D-IWGAN critic and generator steps, the 3D-VAE-IWGAN step, the renderer."""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import _FORMATS, BenchCase, BenchOptions, _random_grids, register_case


def _iwgan_models(opts: BenchOptions, fmt: str):
    """3D-IWGAN's G and critic at the paper's sizes (``build_iwgan``, channels-last-3d), converted to ``fmt``, with
    the paper's Adam optimisers."""
    from ..config import IWGANConfig
    from ..training import build_iwgan

    torch.manual_seed(opts.seed)
    cfg = IWGANConfig()
    G, D = build_iwgan(cfg, opts.device)
    if fmt != "channels_last_3d":
        G, D = G.to(memory_format=_FORMATS[fmt]), D.to(memory_format=_FORMATS[fmt])
    G.train(), D.train()
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=cfg.betas)
    return cfg, G, D, opt_g, opt_d


@register_case("iwgan_critic_step")
def _iwgan_critic_step(opts: BenchOptions) -> list[BenchCase]:
    """One 3D-IWGAN critic update at batch 64: G(z) without gradients, D on real and generated grids, the gradient
    penalty on interpolates (a double backward through D), Adam. ``iwgan_step`` with a batch index that is not a
    multiple of ``n_critic``, so no generator update runs. fp32 (the step uses no autocast). One row per format."""
    batch = 4 if opts.quick else 64

    def make(fmt: str) -> Callable[[], Callable[[], object]]:
        def setup() -> Callable[[], object]:
            from ..steps import iwgan_step

            cfg, G, D, opt_g, opt_d = _iwgan_models(opts, fmt)
            real = _random_grids((batch, 1, 32, 32, 32), opts.seed).float().to(opts.device)
            real = real.contiguous(memory_format=_FORMATS[fmt])
            gen = torch.Generator().manual_seed(opts.seed)

            def step() -> dict:
                return iwgan_step(G, D, opt_g, opt_d, real, 1, cfg.gp_weight, cfg.n_critic, gen)  # 1 % 5: critic only

            return step

        return setup

    notes = "critic: G fwd (no grad) + D on real, fake, x̂ + GP double backward, Adam; fp32"
    return [BenchCase("iwgan_critic_step", make(f), batch, batch, f, notes=notes)
            for f in ("channels_last_3d", "contiguous")]


@register_case("iwgan_generator_step")
def _iwgan_generator_step(opts: BenchOptions) -> list[BenchCase]:
    """One 3D-IWGAN generator update at batch 64: −E[D(G(z))] with the critic frozen, backward through D into G,
    Adam — the generator half of ``iwgan_step``. fp32. One row per format."""
    batch = 4 if opts.quick else 64

    def make(fmt: str) -> Callable[[], Callable[[], object]]:
        def setup() -> Callable[[], object]:
            from ..losses import wgan_generator_loss
            from ..steps import sample_z

            _, G, D, opt_g, _ = _iwgan_models(opts, fmt)
            D.requires_grad_(False)  # frozen, as in iwgan_step's generator step
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
    index, 0 — the generator update (``vae_iwgan_step``, summed reconstruction). fp32, channels-last-3d."""
    batch, size = (2, 64) if opts.quick else (32, 128)

    def setup() -> Callable[[], object]:
        from ..config import VAEIWGANConfig
        from ..render import random_views, render_voxels
        from ..steps import vae_iwgan_step
        from ..training import build_vae_iwgan

        torch.manual_seed(opts.seed)
        cfg = VAEIWGANConfig(image_size=size)
        model, D = build_vae_iwgan(cfg, opts.device)
        opts_ = [torch.optim.Adam(m.parameters(), lr=cfg.lr, betas=cfg.betas) for m in (model.encoder,
                                                                                     model.generator, D)]
        real = _random_grids((batch, 1, 32, 32, 32), opts.seed).float().to(opts.device)
        az, el = random_views(batch, torch.Generator().manual_seed(opts.seed))
        images = render_voxels(real > 0.5, az, el, size)
        real = real.contiguous(memory_format=torch.channels_last_3d)
        gen = torch.Generator().manual_seed(opts.seed)

        def step() -> dict:
            return vae_iwgan_step(model.encoder, model.generator, D, *opts_, images, real, 0, cfg.gp_weight,
                                  cfg.n_critic, cfg.rec_weight, cfg.kl_weight, gen, cfg.rec_reduction)

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

        from ..render import random_views, render_voxels
        from ..synthetic import PROCEDURAL_KINDS, procedural_shapes

        per_kind = -(-n // len(PROCEDURAL_KINDS))
        shapes = np.concatenate([procedural_shapes(k, per_kind, seed=opts.seed) for k in PROCEDURAL_KINDS])[:n]
        voxels = torch.as_tensor(shapes).to(opts.device)  # (n, 32, 32, 32) bool
        azimuth, elevation = random_views(n, torch.Generator().manual_seed(opts.seed))

        def render() -> torch.Tensor:
            return render_voxels(voxels, azimuth, elevation, image_size=size)

        return render

    notes = f"{n} procedural 32³ shapes → {n} RGB views of {size}², random azimuth/elevation; samples/s = views/s"
    return [BenchCase("render_64x128", setup, n, n, "bool", count=False, notes=notes)]
