"""Benchmark cases of system 1, the hybrid-loss conditional voxel GAN (and the voxel metrics)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from . import _FORMATS, BenchCase, BenchOptions, _random_grids, register_case


def _voxel_cgan_models(opts: BenchOptions, fmt: str):
    """The seed's G and D (``build_voxel_cgan``, channels-last-3d), converted to ``fmt``."""
    from ..config import VoxelCGANConfig
    from ..training import build_voxel_cgan

    torch.manual_seed(opts.seed)
    cfg = VoxelCGANConfig()
    G, D = build_voxel_cgan(cfg, opts.device)
    if fmt != "channels_last_3d":
        G, D = G.to(memory_format=_FORMATS[fmt]), D.to(memory_format=_FORMATS[fmt])
    return cfg, G, D


def _gate_factory(step: Callable, n_conditions: int) -> Callable[[], dict | list]:
    """A maker of fresh D-accuracy gates of zeros (so every D step runs) in the form ``voxel_cgan_step`` takes.

    The gate was a list of per-condition accuracies and became ``{"acc": float}``; the annotation of the step's
    ``gate`` parameter tells which.
    """
    import inspect

    annotation = inspect.signature(step).parameters["gate"].annotation
    if "dict" in str(annotation):
        return lambda: {"acc": 0.0}
    return lambda: [0.0] * n_conditions


@register_case("voxel_cgan_iteration")
def _voxel_cgan_iteration(opts: BenchOptions) -> list[BenchCase]:
    """One seed training iteration (gated D steps forced on, G steps, pairing step), batch 80, 2 conditions.

    ``voxel_cgan_step`` with RMSprop as in ``train_voxel_cgan``; the D-accuracy gate is reset to zero before every
    call so both D steps always run. One row per memory format. With 80 training shapes one iteration is one epoch, so
    the channels-last row also projects the seed's 401-epoch run.
    """
    batch = 4 if opts.quick else 80

    def make(fmt: str) -> Callable[[], Callable[[], object]]:
        def setup() -> Callable[[], object]:
            from ..steps import voxel_cgan_step

            cfg, G, D = _voxel_cgan_models(opts, fmt)
            G.train(), D.train()
            opt_g = torch.optim.RMSprop(G.parameters(), lr=cfg.lr_g)
            opt_d = torch.optim.RMSprop(D.parameters(), lr=cfg.lr_d)
            real = _random_grids((batch, cfg.n_conditions, 1, cfg.size, cfg.size, cfg.size), opts.seed).float()
            real = real.to(opts.device)
            gen = torch.Generator().manual_seed(opts.seed)
            fresh_gate = _gate_factory(voxel_cgan_step, cfg.n_conditions)

            def step() -> dict:
                # a new gate of zeros every call: the D steps always run
                return voxel_cgan_step(G, D, opt_g, opt_d, real, fresh_gate(), cfg.loss, cfg.variant, cfg.d_acc_gate,
                                       cfg.pairing, gen)

            return step

        return setup

    def project(seconds: float) -> str:
        from ..config import VoxelCGANConfig

        epochs = VoxelCGANConfig().epochs  # the seed's 401; 80 shapes at batch 80: one iteration per epoch
        return f"{epochs}-epoch seed run ≈ {epochs * seconds / 60:.1f} min ({epochs} × this iteration)"

    peak_kind = "bf16" if opts.device.type == "cuda" else "fp32"
    amp = "; bf16 autocast" if opts.device.type == "cuda" else ""
    notes = "2 conditions, gate reset to 0: 2 D + 2 G + pairing step, RMSprop" + amp
    return [
        BenchCase("voxel_cgan_iteration", make("channels_last_3d"), batch, batch, "channels_last_3d",
                  peak_kind=peak_kind, notes=notes, derive=project),
        BenchCase("voxel_cgan_iteration", make("contiguous"), batch, batch, "contiguous", peak_kind=peak_kind,
                  notes=notes),
    ]


@register_case("voxel_cgan_generator_fwd")
def _voxel_cgan_generator_fwd(opts: BenchOptions) -> list[BenchCase]:
    """Generator forward only (eval mode, ``torch.inference_mode``), batch 80, conditions alternating."""
    batch = 4 if opts.quick else 80

    def make(fmt: str) -> Callable[[], Callable[[], object]]:
        def setup() -> Callable[[], object]:
            cfg, G, _ = _voxel_cgan_models(opts, fmt)
            G.eval()
            g = torch.Generator().manual_seed(opts.seed)
            z = torch.randn(batch, cfg.z_dim, generator=g).to(opts.device)
            c = (torch.arange(batch) % cfg.n_conditions).to(opts.device)

            def forward() -> torch.Tensor:
                with torch.inference_mode():
                    return G(z, c)

            return forward

        return setup

    notes = "eval, inference_mode, fp32"
    return [BenchCase("voxel_cgan_generator_fwd", make(f), batch, batch, f, notes=notes, warmup=2)
            for f in ("channels_last_3d", "contiguous")]


@register_case("voxel_metrics_1000x80")
def _voxel_metrics(opts: BenchOptions) -> list[BenchCase]:
    """``voxel_set_metrics`` of 1000 generated against 80 real random 32³ grids (the full evaluation budget)."""
    n_gen, n_real, size = (40, 8, 16) if opts.quick else (1000, 80, 32)

    def setup() -> Callable[[], object]:
        from ..metrics import voxel_set_metrics

        gen = _random_grids((n_gen, size, size, size), opts.seed, 0.12)
        real = _random_grids((n_real, size, size, size), opts.seed + 1, 0.12)

        def run() -> dict:
            return voxel_set_metrics(gen, real)

        return run

    notes = f"{n_gen} generated × {n_real} real grids of {size}³; samples/s = generated shapes/s"
    return [BenchCase("voxel_metrics_1000x80", setup, n_gen, n_gen, "bool", count=False, notes=notes)]
