"""Benchmark cases of system 3 (X-ray → CT): the differentiable cone-beam DRR projector (:mod:`..ops.projector`).

``drr_cone_128``: X2CT-GAN's biplanar DRRs (Ying et al., CVPR 2019: source–isocentre 541 mm, source–detector 949 mm,
PA and lateral, 128² X-rays) of 128³ volumes, forward and backward — what a projection loss costs per training step.
When ``diffdrr`` (Gopalakrishnan & Golland, 2022) is importable, a second row times its Siddon renderer on the same
volume and the same rays (source and pixel centres from :func:`~voxhelpers.ops.projector.cone_beam_rays`) and notes
the largest image difference; diffdrr is never a dependency (imported lazily, skipped with a note when absent or when
its renderer's interface is not one this module knows).
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable

import torch

from .core import BenchCase, BenchOptions, register_case

_VIEWS = ("pa", "lateral")


def diffdrr_available() -> bool:
    """Whether ``diffdrr`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec("diffdrr") is not None
    except (ImportError, ValueError):  # a broken installation, or a module without a spec
        return False


def _phantom(n: int, batch: int, seed: int) -> torch.Tensor:
    """(batch, 1, n, n, n) chest-like volumes in [0, 1] (the network range, window (−1024, 1024) HU), RAS, 2.5 mm
    voxels at n = 128: air, an elliptic water body, two lungs (−800 HU), a spine (+700 HU), light noise."""
    c = (torch.arange(n) + 0.5) / n * 2 - 1
    x, y, z = c[:, None, None], c[None, :, None], c[None, None, :]
    hu = torch.full((n, n, n), -1000.0)
    hu[((x / 0.8) ** 2 + (y / 0.55) ** 2 < 1).expand(n, n, n)] = 0.0
    for side in (-0.35, 0.35):
        hu[((x - side) / 0.25) ** 2 + ((y - 0.05) / 0.35) ** 2 + (z / 0.8) ** 2 < 1] = -800.0
    hu[((x / 0.08) ** 2 + ((y + 0.4) / 0.08) ** 2 < 1).expand(n, n, n)] = 700.0
    noise = torch.randn(batch, 1, n, n, n, generator=torch.Generator().manual_seed(seed)) * 20
    return ((hu + noise + 1024) / 2048).clamp(0, 1)


def _spacing(n: int) -> tuple[float, float, float]:
    return (320.0 / n,) * 3  # a 320 mm field of view, as X2CT-GAN's cropped CTs


@register_case("drr_cone_128")
def _drr_cone_128(opts: BenchOptions) -> list[BenchCase]:
    """PA + lateral cone-beam DRRs (128²) of 4 volumes of 128³ (X2CT-GAN's batch), from the network's [0, 1] range
    through :func:`hu_to_attenuation` and :func:`project_cone`, an L1 projection loss against fixed targets, backward
    into the volumes. ``opts.quick``: 1 volume of 32³ to 32² views. No FLOP count: trilinear sampling is gathers and
    scatters, not GEMM."""
    from ..ops.projector import hu_to_attenuation, project_cone

    n, batch = (32, 1) if opts.quick else (128, 4)
    spacing = _spacing(n)

    def setup() -> Callable[[], object]:
        volume = _phantom(n, batch, opts.seed).to(opts.device).requires_grad_(True)
        with torch.no_grad():
            mu = hu_to_attenuation(volume, normalised=True)
            targets = {v: project_cone(mu.roll(3, dims=-1), spacing, v, image_size=n) for v in _VIEWS}

        def step() -> float:
            volume.grad = None
            mu = hu_to_attenuation(volume, normalised=True)
            loss = sum((project_cone(mu, spacing, v, image_size=n) - targets[v]).abs().mean() for v in _VIEWS)
            loss.backward()
            return float(loss.detach())

        return step

    notes = (f"{batch} volume(s) of {n}³ ({spacing[0]:g} mm) → PA + lateral {n}² cone-beam DRRs (SOD 541, SID 949 mm), "
             f"{n} samples per ray, L1 loss, backward into the volumes; fp32; samples/s = volumes/s")
    cases = [BenchCase("drr_cone_128", setup, batch, batch, "ours (grid_sample)", count=False, notes=notes)]
    if not diffdrr_available():
        cases[0].notes += "; diffdrr not installed: comparison row skipped"
        return cases
    renderer, why = _diffdrr_renderer()
    if renderer is None:
        cases[0].notes += f"; diffdrr comparison skipped: {why}"
        return cases
    cases.append(_diffdrr_case(opts, n, batch, spacing, renderer))
    return cases


def _call_renderer(renderer, volume: torch.Tensor, spacing: torch.Tensor, source: torch.Tensor,
                   target: torch.Tensor) -> torch.Tensor:
    """diffdrr's renderer on one volume: (D, H, W) densities, spacing (3,), source (1, N, 3), target (1, N, 3) in
    the volume's mm frame (voxel i spans [i·s, (i + 1)·s]). Knows ``forward(volume, spacing, source, target)``,
    ``forward(volume, origin, spacing, source, target)`` and 0.6's ``forward(volume, source, target, img)`` (rays in
    voxel indices, voxel i centred on i; ``img`` the rays' lengths in mm, which the sampled lengths scale)."""
    params = list(inspect.signature(renderer.forward).parameters)
    if "img" in params:
        lengths = (target - source).norm(dim=-1).unsqueeze(1)  # (1, 1, N) mm
        return renderer(volume, source / spacing - 0.5, target / spacing - 0.5, lengths)
    if "origin" in params:
        return renderer(volume, torch.zeros(3, dtype=spacing.dtype, device=spacing.device), spacing, source, target)
    return renderer(volume, spacing, source, target)


def _diffdrr_renderer():
    """(diffdrr's Siddon renderer, "") if it answers a known line integral (8 mm of μ = 1 along the axis of an
    8³ volume), else (None, why)."""
    try:
        from diffdrr.renderers import Siddon

        renderer = Siddon()
        source = torch.tensor([[[4.0, -50.0, 4.0]]])
        target = torch.tensor([[[4.0, 60.0, 4.0]]])
        value = float(_call_renderer(renderer, torch.ones(8, 8, 8), torch.ones(3), source, target).reshape(-1)[0])
    except Exception as exc:  # any failure of an optional third-party package means "skip", never a crashed run
        return None, f"diffdrr's renderer interface is not one this case knows ({type(exc).__name__}: {exc})"
    if abs(value - 8.0) > 0.4:
        return None, f"diffdrr's renderer gave {value:.3g} for an 8 mm path of μ = 1 (expected 8)"
    return renderer, ""


def _diffdrr_case(opts: BenchOptions, n: int, batch: int, spacing, renderer) -> BenchCase:
    """The same step as ``drr_cone_128`` with diffdrr's Siddon renderer on the same rays, volume by volume."""
    from ..ops.projector import cone_beam_rays, hu_to_attenuation, project_cone

    found: dict[str, str] = {}
    dev = opts.device
    rays = {v: cone_beam_rays((n, n, n), spacing, v, image_size=n) for v in _VIEWS}
    rays = {v: (s.float().reshape(1, 1, 3).to(dev), p.float().reshape(1, -1, 3).to(dev)) for v, (s, p) in rays.items()}
    spacing_t = torch.tensor(spacing, device=dev)

    def render(mu: torch.Tensor, view: str) -> torch.Tensor:
        source, target = rays[view]
        return torch.stack([_call_renderer(renderer, m[0], spacing_t, source, target).reshape(n, n) for m in mu])

    def setup() -> Callable[[], object]:
        volume = _phantom(n, batch, opts.seed).to(dev).requires_grad_(True)
        with torch.no_grad():
            mu = hu_to_attenuation(volume, normalised=True)
            targets = {v: render(mu.roll(3, dims=-1), v) for v in _VIEWS}
            diffs = [(render(mu, v) - project_cone(mu, spacing, v, image_size=n)[:, 0]).abs().max() for v in _VIEWS]
            peak = max(float(project_cone(mu, spacing, v, image_size=n).max()) for v in _VIEWS)
            found["diff"] = f"max |diffdrr − ours| = {max(map(float, diffs)):.3g} (image max {peak:.3g}), same rays"

        def step() -> float:
            volume.grad = None
            mu = hu_to_attenuation(volume, normalised=True)
            loss = sum((render(mu, v) - targets[v]).abs().mean() for v in _VIEWS)
            loss.backward()
            return float(loss.detach())

        return step

    notes = f"diffdrr Siddon (exact ray–voxel lengths), {batch} × {n}³ → PA + lateral {n}², fwd + bwd, volume by volume"
    return BenchCase("drr_cone_128", setup, batch, batch, "diffdrr (Siddon)", count=False, notes=notes,
                     derive=lambda _s: found.get("diff", "image difference not measured"))
