"""Benchmark cases of system 4 (Pix2Pix vessel masks): the training step beside a plain port, and inference.

``pix2pix_step_256``: one training step of the ``cpu`` profile (4 one-channel OCTA-like images of 256², G widths
32…256, PatchGAN width 32), FLOPs counted, as a fraction of the GEMM peak — first a *plain port* of the seed's step as
its notebook wrote it (:func:`pix2pix_port_step`: plain PyTorch, the PatchGAN ending in ``nn.Sigmoid`` trained with
``nn.BCELoss``, D not frozen during the G step, no field of view, no augmentation), then ours
(:func:`voxhelpers.systems.pix2pix.step`: logits and a stable BCE, D frozen during the G step, field-of-view masking,
flips and a rotation drawn per image). Both rows in the same run; the second row's notes give ours / port time.
``tests/test_bench_retina.py`` checks that the two compute the same losses on the same inputs and weights (the
augmentation off), so the comparison is between two ways of writing one step.

``pix2pix_inference``: images/s of the generator in eval mode under ``no_grad``, 8 images of 256² per call, for
MONAI's ``UNet`` peer (:class:`voxhelpers.nets.pix2pix.MonaiUNet2D`, the same widths) and for our U-Net.

``crgan_cycle``: one generator step's worth of CRGAN batches (``n_critic`` = 5 critic steps, the first with the
generator step) at the ``cpu`` profile's sizes (16 sequences × 6 stages of 64², G and critic widths 32…256), fp32;
where the device computes bf16 natively (CUDA, a CPU with AMX or AVX-512 BF16) a second row under bf16 autocast
(``--precision auto``), its notes giving its time over the fp32 row's.

``--quick``: the ``smoke`` profile's widths (at 64² for Pix2Pix, 32² for the CRGAN).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .core import BenchCase, BenchOptions, port_and_ours, ratio_rows, register_case

__all__ = ["INFERENCE_BATCH", "pix2pix_port_step", "synthetic_retina_batch"]

#: images per inference call
INFERENCE_BATCH = 8


def _profile(opts: BenchOptions) -> str:
    return "smoke" if opts.quick else "cpu"


def synthetic_retina_batch(batch: int, size: int, seed: int = 1, device=None) -> dict[str, torch.Tensor]:
    """A synthetic batch of one-channel OCTA-like items as :class:`voxhelpers.systems.pix2pix.VesselPairDataset`
    gives them: ``image`` (B, 1, S, S) in [−1, 1], ``mask`` (B, 1, S, S) in {0, 1} (≈ 15 % vessels) and ``fov``
    (B, 1, S, S) all ones (OCTA has no field of view)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(batch, 1, size, size, generator=g) * 2 - 1
    mask = (torch.rand(batch, 1, size, size, generator=g) < 0.15).float()
    return {k: v.to(device) for k, v in {"image": image, "mask": mask, "fov": torch.ones_like(mask)}.items()}


def pix2pix_port_step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                      image: torch.Tensor, mask: torch.Tensor, l1_weight: float = 200.0, mse_weight: float = 10.0,
                      adv_weight: float = 1.0) -> dict[str, float]:
    """The seed's Pix2Pix step as a user writes it in plain PyTorch (SPEC §4: G = BCE + 200·L1 + 10·MSE,
    D = ½(real + fake), separate Adam optimisers).

    The generator draws the mask once; the PatchGAN (ending in ``nn.Sigmoid``) scores cat(image, true mask) and
    cat(image, drawn mask, detached) and takes one ``nn.BCELoss`` step; then the generator takes one step on the
    PatchGAN's BCE of its drawn mask against "real" plus the weighted ``nn.L1Loss`` and ``nn.MSELoss`` against the
    target 2·mask − 1. No field-of-view masking, no augmentation, D not frozen during the G step (its weight gradients
    are computed and discarded, as in a notebook that never calls ``requires_grad_(False)``), default ``zero_grad``.

    Args:
        G: the generator, image (B, C, S, S) in [−1, 1] → (B, 1, S, S) in [−1, 1].
        D: the PatchGAN with a Sigmoid output (``PatchDiscriminator(..., output="probs")``), (image, mask) → (B, 1,
            h, w) in (0, 1).
        opt_g, opt_d: their optimisers.
        image: (B, C, S, S) in [−1, 1]; mask: (B, 1, S, S) in {0, 1}.
        l1_weight, mse_weight, adv_weight: the loss weights (the seed's 200, 10, 1).

    Returns:
        ``loss_d``, ``loss_g``, ``loss_rec`` (L1), ``loss_mse``, ``loss_adv`` as floats (the keys of our step).
    """
    bce, l1, mse = nn.BCELoss(), nn.L1Loss(), nn.MSELoss()
    target = 2 * mask - 1
    fake = G(image)

    d_real = D(image, target)
    d_fake = D(image, fake.detach())
    loss_d = (bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))) / 2
    opt_d.zero_grad()
    loss_d.backward()
    opt_d.step()

    d_fake = D(image, fake)
    adv = bce(d_fake, torch.ones_like(d_fake))
    loss_l1, loss_mse = l1(fake, target), mse(fake, target)
    loss_g = adv_weight * adv + l1_weight * loss_l1 + mse_weight * loss_mse
    opt_g.zero_grad()
    loss_g.backward()
    opt_g.step()
    return {"loss_d": loss_d.item(), "loss_g": loss_g.item(), "loss_rec": loss_l1.item(), "loss_mse": loss_mse.item(),
            "loss_adv": adv.item()}


def port_models(cfg, device) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer, torch.optim.Optimizer]:
    """The plain port's networks and optimisers for a Pix2Pix config: the same generator class, the PatchGAN with the
    seed's Sigmoid, Adam G ``lr`` / D ``lr_d`` with ``betas`` (the seed's 2e-4 / 1e-4, (0.5, 0.999))."""
    from ..nets import build_network
    from ..nets.pix2pix import PatchDiscriminator

    G = build_network("pix2pix", "generator", cfg).to(device)
    D = PatchDiscriminator(cfg.in_channels, cfg.d_channels, output="probs").to(device)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=tuple(cfg.betas))
    return G, D, opt_g, opt_d


@register_case("pix2pix_step_256")
def _pix2pix_step(opts: BenchOptions) -> list[BenchCase]:
    """One Pix2Pix training step at the ``cpu`` profile's sizes (``smoke`` with ``quick``): the plain port, then
    ours (see the module docstring)."""
    from ..config.pix2pix import pix2pix_config
    from ..systems import get_system
    from ..training.state import TrainState

    profile = _profile(opts)
    cfg = pix2pix_config(profile)
    system = get_system("pix2pix")

    def setup_port() -> Callable[[], object]:
        torch.manual_seed(opts.seed)
        G, D, opt_g, opt_d = port_models(cfg, opts.device)
        batch = synthetic_retina_batch(cfg.batch_size, cfg.size, device=opts.device)
        return lambda: pix2pix_port_step(G, D, opt_g, opt_d, batch["image"], batch["mask"], cfg.l1_weight,
                                         cfg.mse_weight, cfg.adv_weight)

    def setup_ours() -> Callable[[], object]:
        torch.manual_seed(opts.seed)
        models = system.build(cfg, opts.device)
        optimizers = system.optimizers(cfg, models)
        state = TrainState(models, optimizers, torch.Generator().manual_seed(opts.seed))
        batch = synthetic_retina_batch(cfg.batch_size, cfg.size, device=opts.device)
        return lambda: system.step(models, optimizers, batch, cfg, state)

    common = (f"{profile} profile: {cfg.batch_size} one-channel {cfg.size}² images, G widths "
              f"{'-'.join(map(str, cfg.channels))}, PatchGAN {cfg.d_channels}; G = BCE + {cfg.l1_weight:g}·L1 + "
              f"{cfg.mse_weight:g}·MSE, D = ½(real + fake), Adam; fp32")
    return port_and_ours(
        "pix2pix_step_256", setup_port, setup_ours, cfg.batch_size,
        f"the seed's step in plain PyTorch (Sigmoid + nn.BCELoss, D not frozen in the G step, no field of view, no "
        f"augmentation); {common}",
        f"voxhelpers.systems.pix2pix.step (logits + stable BCE, D frozen in the G step, field-of-view masking, flips + "
        f"rotation up to {cfg.rotate:g}°); {common}")


@register_case("pix2pix_inference")
def _pix2pix_inference(opts: BenchOptions) -> list[BenchCase]:
    """Generator inference (eval mode, ``no_grad``) on 8 one-channel images per call at the ``cpu`` profile's sizes
    (``smoke`` with ``quick``): MONAI's UNet, then our U-Net, at the same widths."""
    from ..config.pix2pix import pix2pix_config
    from ..nets import build_network

    profile = _profile(opts)
    rows = []
    remember, ratio = ratio_rows("MONAI")
    for network, derive in (("monai_unet", remember), ("pix2pix", ratio)):
        cfg = pix2pix_config(profile, network=network)

        def setup(cfg=cfg) -> Callable[[], object]:
            torch.manual_seed(opts.seed)
            G = build_network("pix2pix", "generator", cfg).to(opts.device).eval()
            x = synthetic_retina_batch(INFERENCE_BATCH, cfg.size, device=opts.device)["image"]

            def call() -> torch.Tensor:
                with torch.no_grad():
                    return G(x)

            return call

        what = ("MONAI UNet (2 residual units per level, batch norm, Tanh head)" if network == "monai_unet"
                else "our Pix2Pix U-Net (the seed's layout)")
        rows.append(BenchCase("pix2pix_inference", setup, INFERENCE_BATCH, INFERENCE_BATCH, network,
                              notes=f"{what}, widths {'-'.join(map(str, cfg.channels))} ({profile} profile); eval "
                                    f"mode, no_grad, {INFERENCE_BATCH} one-channel {cfg.size}² images per call; fp32; "
                                    "samples/s = images/s", derive=derive))
    return rows


@register_case("crgan_cycle")
def _crgan_cycle(opts: BenchOptions) -> list[BenchCase]:
    """``n_critic`` CRGAN batches (one generator step) on random sequences at the ``cpu`` profile's sizes (``smoke``
    with ``quick``): fp32, then bf16 autocast where the device computes bf16 natively."""
    from ..config.crgan import crgan_config
    from ..systems import get_system
    from ..systems.base import native_bf16
    from ..training.state import TrainState

    profile = _profile(opts)
    system = get_system("crgan")
    remember, ratio = ratio_rows("fp32")
    rows = []
    for precision, derive in (("fp32", remember), ("bf16", ratio)):
        if precision == "bf16" and not native_bf16(opts.device):
            continue
        cfg = crgan_config(profile, precision=precision)
        s, t, b = cfg.image_size, cfg.n_stages, cfg.batch_size

        def setup(cfg=cfg, s=s, t=t, b=b) -> Callable[[], object]:
            torch.manual_seed(opts.seed)
            models = system.build(cfg, opts.device)
            optimizers = system.optimizers(cfg, models)
            state = TrainState(models, optimizers, torch.Generator().manual_seed(opts.seed))
            g = torch.Generator().manual_seed(opts.seed)
            batch = {"images": (torch.rand(b, t, 1, s, s, generator=g) * 2 - 1).to(opts.device),
                     "patient": torch.randint(0, cfg.unknown_patient, (b,), generator=g).to(opts.device),
                     "stages": torch.arange(t).expand(b, t).to(opts.device)}

            def call() -> None:
                for i in range(cfg.n_critic):  # the first batch of a cycle takes the generator step
                    state.step = i
                    system.step(models, optimizers, batch, cfg, state)

            return call

        rows.append(BenchCase(
            "crgan_cycle", setup, b * t, b * t, precision, peak_kind=precision, derive=derive,
            notes=f"{profile} profile: {cfg.n_critic} WGAN-GP critic steps + 1 generator step on {b} sequences × {t} "
                  f"stages of {s}² (G {cfg.g_channels}…{cfg.max_channels}, LSTM {cfg.hidden_dim}, critic "
                  f"{cfg.d_channels}…{cfg.max_channels}); " + ("fp32" if precision == "fp32" else
                                                                 "bf16 autocast (--precision auto), % of the bf16 "
                                                                 "GEMM peak") + "; samples/s = frames/s"))
    return rows
