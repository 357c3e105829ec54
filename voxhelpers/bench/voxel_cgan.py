"""Benchmark cases of system 1, the hybrid-loss conditional voxel GAN (and the voxel metrics)."""

from __future__ import annotations

import contextlib
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
    call so both D steps always run. One row per memory format, a third with the layers' CPU fast paths off
    (:func:`voxhelpers.nets.layers.fast_paths`) and, on CPU, a fourth with their GEMMs on the backend this CPU does
    not pick (:func:`voxhelpers.nets.layers.gemm_backend`), to show what each brings in the same run. With 80
    training shapes one iteration is one epoch, so the channels-last row also projects the seed's 401-epoch run; it
    also splits its time into the matrix products and convolutions and the rest (``BenchCase.split``).
    """
    batch = 4 if opts.quick else 80

    def make(fmt: str, fast: bool = True, backend: str | None = None) -> Callable[[], Callable[[], object]]:
        def setup() -> Callable[[], object]:
            from ..nets.layers import fast_paths, gemm_backend
            from ..steps import voxel_cgan_step

            cfg, G, D = _voxel_cgan_models(opts, fmt)
            G.train(), D.train()
            opt_g = torch.optim.RMSprop(G.parameters(), lr=cfg.lr_g)
            opt_d = torch.optim.RMSprop(D.parameters(), lr=cfg.lr_d)
            real = _random_grids((batch, cfg.n_conditions, 1, cfg.size, cfg.size, cfg.size), opts.seed).float()
            real = real.to(opts.device)
            gen = torch.Generator().manual_seed(opts.seed)
            fresh_gate = _gate_factory(voxel_cgan_step, cfg.n_conditions)

            on_backend = (lambda: gemm_backend(backend)) if backend else contextlib.nullcontext

            def step() -> dict:
                # a new gate of zeros every call: the D steps always run
                with fast_paths(fast), on_backend():
                    return voxel_cgan_step(G, D, opt_g, opt_d, real, fresh_gate(), cfg.loss, cfg.variant,
                                           cfg.d_acc_gate, cfg.pairing, gen, cfg.pairing_steps,
                                           cfg.consistency)

            return step

        return setup

    def project(seconds: float) -> str:
        from ..config import VoxelCGANConfig

        epochs = VoxelCGANConfig().epochs  # the seed's 401; 80 shapes at batch 80: one iteration per epoch
        return f"{epochs}-epoch seed run ≈ {epochs * seconds / 60:.1f} min ({epochs} × this iteration)"

    peak_kind = "bf16" if opts.device.type == "cuda" else "fp32"
    amp = "; bf16 autocast" if opts.device.type == "cuda" else ""
    notes = "2 conditions, gate reset to 0: 2 D + 2 G + pairing step, RMSprop" + amp
    rows = [
        BenchCase("voxel_cgan_iteration", make("channels_last_3d"), batch, batch, "channels_last_3d",
                  peak_kind=peak_kind, notes=notes, derive=project, split=True),
        BenchCase("voxel_cgan_iteration", make("contiguous"), batch, batch, "contiguous", peak_kind=peak_kind,
                  notes=notes),
        BenchCase("voxel_cgan_iteration", make("channels_last_3d", fast=False), batch, batch, "channels_last_3d",
                  peak_kind=peak_kind, notes=notes + "; plain torch.nn layers (fast_paths(False))"),
    ]
    if opts.device.type == "cpu":
        from ..nets import layers

        other = next(b for b in layers.GEMM_BACKENDS if b != layers.GEMM_BACKEND)
        rows.append(BenchCase("voxel_cgan_iteration", make("channels_last_3d", backend=other), batch, batch,
                              "channels_last_3d", peak_kind=peak_kind,
                              notes=notes + f"; the fast paths' GEMMs on the other backend (gemm_backend({other!r}))"))
    return rows


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


@register_case("voxel_cgan_layers")
def _voxel_cgan_layers(opts: BenchOptions) -> list[BenchCase]:
    """Each convolution of the seed's G and D alone, forward + backward, batch 80, channels-last-3d.

    Shows where an iteration's time goes and which shapes run far below the GEMM peak. The backward computes the
    weight gradient, and the input gradient for every layer but the first of each network (as in the D step; the G
    step also needs D's first-layer input gradient). Layers are the networks' own
    (:class:`~voxhelpers.nets.layers.FastConvTranspose3d` / :class:`~voxhelpers.nets.layers.FastConv3d`, fast paths
    on); the notes name the path taken.
    """
    from ..nets.voxel_gan import CGANDiscriminator, CGANGenerator

    batch = 4 if opts.quick else 80
    torch.manual_seed(opts.seed)
    ups = [m for m in CGANGenerator().net if isinstance(m, torch.nn.ConvTranspose3d)]  # inputs 1³, 2³, …, 16³
    downs = [m for m in CGANDiscriminator().net if isinstance(m, torch.nn.Conv3d)]  # inputs 32³, 16³, …, 2³
    convs = [("G", m, 1 << i) for i, m in enumerate(ups)] + [("D", m, 32 >> i) for i, m in enumerate(downs)]

    def describe(net: str, m: torch.nn.Module, size: int) -> str:
        from ..nets import layers

        out = size * 2 if isinstance(m, torch.nn.ConvTranspose3d) else size // 2
        path = m.fast_path(torch.empty(1, m.in_channels, size, size, size))
        if path is None:
            path = "native (oneDNN)"
        elif path == layers.IM2COL_GEMM and layers.GEMM_BACKEND == "onednn":
            path += " forward (GEMM on onednn), oneDNN's own backward"
        elif path in (layers.GEMM_FOLD, layers.GEMM_FOLD_INPUT_GRAD, layers.GEMM_COL2IM, layers.IM2COL_GEMM):
            path += f" (GEMMs on {layers.GEMM_BACKEND})"
        return f"{net} {type(m).__name__} {m.in_channels}→{m.out_channels}, {size}³→{out}³: {path}"

    def make(m: torch.nn.Module, size: int, first: bool) -> Callable[[], Callable[[], object]]:
        def setup() -> Callable[[], object]:
            layer = m.to(opts.device, memory_format=torch.channels_last_3d)
            x = torch.randn(batch, m.in_channels, size, size, size, device=opts.device)
            x = x.contiguous(memory_format=torch.channels_last_3d).requires_grad_(not first)
            grad = torch.randn_like(layer(x.detach()))

            def step() -> None:
                layer.zero_grad(set_to_none=True)
                layer(x).backward(grad)

            return step

        return setup

    return [BenchCase("voxel_cgan_layers", make(m, s, i in (0, 5)), batch, batch, "channels_last_3d",
                      notes=describe(net, m, s), warmup=2)
            for i, (net, m, s) in enumerate(convs)]
