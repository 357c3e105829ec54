"""Benchmark cases of system 1, the hybrid-loss conditional voxel GAN (and the voxel metrics)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from types import SimpleNamespace

import torch

from .core import _FORMATS, BenchCase, BenchOptions, _random_grids, register_case


def _voxel_cgan_models(opts: BenchOptions, fmt: str, precision: str = "cuda"):
    """The seed's G and D (``get_system("voxel_cgan").build``, channels-last-3d), converted to ``fmt``; the config's
    training arithmetic ``precision`` (default: bf16 autocast on CUDA only).

    Returns:
        ``(system, cfg, {"G": G, "D": D})``: the EMA copy ``build`` also makes is dropped (the step never updates
        it; the training loop does).
    """
    from ..config import VoxelCGANConfig
    from ..systems import get_system

    system = get_system("voxel_cgan")
    torch.manual_seed(opts.seed)
    cfg = VoxelCGANConfig(precision=precision)
    models = system.build(cfg, opts.device)
    models = {"G": models["G"], "D": models["D"]}
    if fmt != "channels_last_3d":
        models = {k: m.to(memory_format=_FORMATS[fmt]) for k, m in models.items()}
    return system, cfg, models


def _fresh_state(seed: int) -> SimpleNamespace:
    """The run state the step reads: z drawn on ``generator`` (seeded once, advancing from call to call), the
    D-accuracy gate ``extra["gate"]`` (``{"acc": 0.0}``: every D step runs), epoch 0 (the consistency schedule's
    start; the seed has no consistency term) and the batch counter (unused by this system)."""
    return SimpleNamespace(generator=torch.Generator().manual_seed(seed), extra={"gate": {"acc": 0.0}}, epoch=0,
                           step=0)


@register_case("voxel_cgan_iteration")
def _voxel_cgan_iteration(opts: BenchOptions) -> list[BenchCase]:
    """One seed training iteration (gated D steps forced on, G steps, pairing step), batch 80, 2 conditions.

    :func:`voxhelpers.systems.voxel_cgan.step` with the system's RMSprop optimisers, as in training; the D-accuracy
    gate (``state.extra["gate"]``) is reset to zero before every call so both D steps always run. One row per memory
    format, a third with the layers' CPU fast paths off (:func:`voxhelpers.nets.fast_conv3d.fast_paths`) and, on
    CPU, a fourth with their GEMMs on the backend this CPU does not pick
    (:func:`voxhelpers.nets.fast_conv3d.gemm_backend`) and, where the CPU computes bf16 natively (AMX, AVX-512 BF16), a
    fifth under bf16 autocast (``--precision auto``; the fast paths step aside), to show what each brings in the same
    run.
    With 80 training shapes one iteration is one epoch, so the channels-last rows also project the seed's 401-epoch
    run; the first also splits its time into the matrix products and convolutions and the rest (``BenchCase.split``).
    """
    batch = 4 if opts.quick else 80

    def make(fmt: str, fast: bool = True, backend: str | None = None,
             precision: str = "cuda") -> Callable[[], Callable[[], object]]:
        def setup() -> Callable[[], object]:
            from ..nets.fast_conv3d import fast_paths, gemm_backend

            system, cfg, models = _voxel_cgan_models(opts, fmt, precision)
            models["G"].train(), models["D"].train()
            optimizers = system.optimizers(cfg, models)
            real = _random_grids((batch, cfg.n_conditions, 1, 32, 32, 32), opts.seed).float()
            voxels = {"voxels": real.to(opts.device)}
            state = _fresh_state(opts.seed)

            on_backend = (lambda: gemm_backend(backend)) if backend else contextlib.nullcontext

            def step() -> dict:
                state.extra["gate"] = {"acc": 0.0}  # a new gate of zeros every call: the D steps always run
                with fast_paths(fast), on_backend():
                    return system.step(models, optimizers, voxels, cfg, state)

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
        from ..nets import fast_conv3d as layers

        other = next(b for b in layers.GEMM_BACKENDS if b != layers.GEMM_BACKEND)
        rows.append(BenchCase("voxel_cgan_iteration", make("channels_last_3d", backend=other), batch, batch,
                              "channels_last_3d", peak_kind=peak_kind,
                              notes=notes + f"; the fast paths' GEMMs on the other backend (gemm_backend({other!r}))"))
        from ..systems.base import native_bf16

        if native_bf16(opts.device):  # bf16 units: --precision auto (bf16 autocast; the fast paths step aside)
            rows.append(BenchCase("voxel_cgan_iteration", make("channels_last_3d", precision="bf16"), batch, batch,
                                  "channels_last_3d, bf16", peak_kind="bf16", derive=project,
                                  notes=notes + "; bf16 autocast (--precision auto there), % of the bf16 GEMM peak"))
    return rows


@register_case("voxel_cgan_generator_fwd")
def _voxel_cgan_generator_fwd(opts: BenchOptions) -> list[BenchCase]:
    """Generator forward only (eval mode, ``torch.inference_mode``), batch 80, conditions alternating."""
    batch = 4 if opts.quick else 80

    def make(fmt: str) -> Callable[[], Callable[[], object]]:
        def setup() -> Callable[[], object]:
            _, cfg, models = _voxel_cgan_models(opts, fmt)
            G = models["G"].eval()
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
    (:class:`~voxhelpers.nets.fast_conv3d.FastConvTranspose3d` / :class:`~voxhelpers.nets.fast_conv3d.FastConv3d`,
    fast paths on); the notes name the path taken.
    """
    from ..nets.voxel_gan import CGANDiscriminator, CGANGenerator

    batch = 4 if opts.quick else 80
    torch.manual_seed(opts.seed)
    ups = [m for m in CGANGenerator().net if isinstance(m, torch.nn.ConvTranspose3d)]  # inputs 1³, 2³, …, 16³
    downs = [m for m in CGANDiscriminator().net if isinstance(m, torch.nn.Conv3d)]  # inputs 32³, 16³, …, 2³
    convs = [("G", m, 1 << i) for i, m in enumerate(ups)] + [("D", m, 32 >> i) for i, m in enumerate(downs)]

    def describe(net: str, m: torch.nn.Module, size: int) -> str:
        from ..nets import fast_conv3d as layers

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
