"""Benchmark cases of system 5 (VNet segmentation): sliding-window prediction, ours against MONAI's.

:func:`voxhelpers.inference.sliding_window.sliding_window_predict` wraps :func:`monai.inferers.sliding_window_inference`
(adding checks, flip test-time augmentation and the softmax); this case times both on the same network, volume and
settings, so the table shows what the wrapper costs (it should be nothing beyond the softmax).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .core import BenchCase, BenchOptions, register_case

#: full size: a 128³ volume (an OpenKBP CT) through 64³ windows; quick: 32³ through 16³ (VNet needs multiples of 16)
VOLUME, ROI, QUICK_VOLUME, QUICK_ROI = 128, 64, 32, 16
OVERLAP, SW_BATCH, SIGMA_SCALE = 0.5, 4, 0.125


def _vnet(opts: BenchOptions) -> torch.nn.Module:
    from ..nets.vnet import VNet

    torch.manual_seed(opts.seed)
    return VNet(out_channels=8, width=0.25).to(opts.device).eval()


@register_case("sliding_window_vnet")
def _sliding_window_vnet(opts: BenchOptions) -> list[BenchCase]:
    """Sliding-window prediction of a whole volume by a VNet (width 0.25, 8 classes, eval mode, no gradients):
    MONAI's ``sliding_window_inference`` (logits), then ours (:func:`sliding_window_predict`, probabilities), with the
    same windows, overlap 0.5, Gaussian blending (σ = 0.125 · window), 4 windows per network call. The second row's
    notes give its time over the first's (the median of each)."""
    side, roi = (QUICK_VOLUME, QUICK_ROI) if opts.quick else (VOLUME, ROI)
    medians: dict[str, float] = {}

    def make(which: str) -> Callable[[], Callable[[], object]]:
        def setup() -> Callable[[], object]:
            net = _vnet(opts)
            x = torch.rand((1, 1, side, side, side), generator=torch.Generator().manual_seed(opts.seed))
            x = x.to(opts.device)
            if which == "monai":
                from monai.inferers import sliding_window_inference

                def call() -> torch.Tensor:
                    with torch.no_grad():
                        return sliding_window_inference(x, (roi,) * 3, SW_BATCH, net, overlap=OVERLAP,
                                                        mode="gaussian", sigma_scale=SIGMA_SCALE)
            else:
                from ..inference.sliding_window import sliding_window_predict

                def call() -> torch.Tensor:
                    return sliding_window_predict(x, net, roi, overlap=OVERLAP, sw_batch_size=SW_BATCH,
                                                  mode="gaussian", sigma_scale=SIGMA_SCALE)

            return call

        return setup

    def remember(seconds: float) -> str:
        medians["monai"] = seconds
        return "reference row"

    def ratio(seconds: float) -> str:
        ref = medians.get("monai")
        return f"ours / MONAI time = {seconds / ref:.3f}" if ref else "ours / MONAI: MONAI row not run"

    n_windows = (2 * (side - roi) // roi + 1) ** 3  # overlap 0.5: a window every roi / 2
    common = f"{side}³ volume, {roi}³ windows ({n_windows}), overlap {OVERLAP}, gaussian, VNet w0.25 8 classes"
    return [
        BenchCase("sliding_window_vnet", make("monai"), 1, 1, "contiguous", count=False, warmup=0,
                  notes=f"MONAI sliding_window_inference (logits); {common}", derive=remember),
        BenchCase("sliding_window_vnet", make("ours"), 1, 1, "contiguous", count=False, warmup=0,
                  notes=f"voxhelpers sliding_window_predict (probabilities: + checks + softmax); {common}",
                  derive=ratio),
    ]


@register_case("vnet_step")
def _vnet_step(opts: BenchOptions) -> list[BenchCase]:
    """One training step of the ``cpu`` profile (2 patches of 64³, soft Dice + focal, Adam) for our VNet and the two
    MONAI peers trained identically (smoke sizes with ``quick``): FLOPs counted, as a fraction of the GEMM peak."""
    from ..config.vnet import vnet_config
    from ..systems import get_system
    from ..training.state import TrainState

    profile = "smoke" if opts.quick else "cpu"
    system = get_system("vnet")
    rows = []
    # quick: MONAI's VNet (45.6 M parameters) left out; it takes seconds even at 32³
    for network in ("vnet", "monai_unet") if opts.quick else ("vnet", "monai_unet", "monai_vnet"):
        cfg = vnet_config(profile, network=network, data="openkbp")

        def setup(cfg=cfg) -> Callable[[], object]:
            torch.manual_seed(opts.seed)
            models = system.build(cfg, opts.device)
            optimizers = system.optimizers(cfg, models)
            state = TrainState(models, optimizers, torch.Generator().manual_seed(opts.seed))
            g = torch.Generator().manual_seed(1)
            shape = cfg.volume_shape
            labels = torch.randint(0, cfg.n_classes, (cfg.batch_size, *shape), generator=g)
            batch = {"image": torch.rand(cfg.batch_size, 1, *shape, generator=g), "labels": labels,
                     "labelled": torch.ones(cfg.batch_size, cfg.n_classes, dtype=torch.bool),
                     "class_weights": torch.ones(cfg.batch_size, cfg.n_classes)}
            batch = {k: v.to(opts.device) for k, v in batch.items()}
            return lambda: system.step(models, optimizers, batch, cfg, state)

        width = f", width {cfg.width:g}" if network == "vnet" else ""
        patch = "×".join(map(str, cfg.patch_size))
        rows.append(BenchCase("vnet_step", setup, cfg.batch_size, cfg.batch_size, network,
                              notes=f"{profile} profile: {cfg.batch_size} patches of {patch}{width}, soft Dice + "
                                    "focal, Adam; fp32"))
    return rows
