"""Benchmark cases of system 5 (VNet segmentation): sliding-window prediction, ours against MONAI's.

:func:`voxhelpers.inference.sliding_window.sliding_window_predict` wraps :func:`monai.inferers.sliding_window_inference`
(adding checks, flip test-time augmentation and the softmax); this case times both on the same network, volume and
settings, so the table shows what the wrapper costs (it should be nothing beyond the softmax).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .core import BenchCase, BenchOptions, ratio_rows, register_case

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


def vnet_port_step(net: torch.nn.Module, opt: torch.optim.Optimizer, image: torch.Tensor, labels: torch.Tensor,
                   patch: tuple[int, int, int], loss_fn, generator: torch.Generator) -> float:
    """The VNet step as a user writes it from the seed and MONAI's tutorials: one patch per volume at a uniformly
    random place, MONAI's ``DiceFocalLoss(softmax=True, to_onehot_y=True)`` (``loss_fn``), Adam — no organ-centred
    patches, no left-right mirror, no class weights, no not-labelled mask."""
    xs, ys = [], []
    for b in range(image.shape[0]):
        start = [int(torch.randint(0, n - p + 1, (1,), generator=generator)) for n, p in zip(image.shape[2:], patch,
                                                                                          strict=True)]
        window = tuple(slice(a, a + p) for a, p in zip(start, patch, strict=True))
        xs.append(image[(b, slice(None), *window)])
        ys.append(labels[(b, *window)])
    x, y = torch.stack(xs), torch.stack(ys)[:, None]
    loss = loss_fn(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


@register_case("vnet_step")
def _vnet_step(opts: BenchOptions) -> list[BenchCase]:
    """One training step of the ``cpu`` profile (2 patches of 64³, soft Dice + focal, Adam): a plain port of our
    VNet's step (:func:`vnet_port_step`), ours, and the two MONAI peers trained identically (smoke sizes with
    ``quick``): FLOPs counted, as a fraction of the GEMM peak."""
    from ..config.vnet import vnet_config
    from ..systems import get_system
    from ..systems.base import native_bf16
    from ..training.state import TrainState

    profile = "smoke" if opts.quick else "cpu"
    system = get_system("vnet")
    remember, ratio = ratio_rows("port")
    port_cfg = vnet_config(profile, network="vnet", data="openkbp", precision="fp32")

    def setup_port() -> Callable[[], object]:
        from monai.losses import DiceFocalLoss

        torch.manual_seed(opts.seed)
        net = system.build(port_cfg, opts.device)["net"]
        opt = torch.optim.Adam(net.parameters(), lr=port_cfg.lr, weight_decay=port_cfg.weight_decay)
        g = torch.Generator().manual_seed(1)
        shape = port_cfg.volume_shape
        labels = torch.randint(0, port_cfg.n_classes, (port_cfg.batch_size, *shape), generator=g).to(opts.device)
        image = torch.rand(port_cfg.batch_size, 1, *shape, generator=g).to(opts.device)
        loss_fn = DiceFocalLoss(softmax=True, to_onehot_y=True)
        draws = torch.Generator().manual_seed(opts.seed)
        return lambda: vnet_port_step(net, opt, image, labels, port_cfg.patch_size, loss_fn, draws)

    patch = "×".join(map(str, port_cfg.patch_size))
    rows = [BenchCase("vnet_step", setup_port, port_cfg.batch_size, port_cfg.batch_size, "vnet, plain port",
                      derive=remember,
                      notes=f"{profile} profile: our VNet (width {port_cfg.width:g}), {port_cfg.batch_size} patches "
                            f"of {patch} at random places, MONAI DiceFocalLoss(softmax, to_onehot_y), Adam; fp32")]
    # each network in fp32 and, where the device computes bf16 natively (CUDA, a CPU with AMX or AVX-512 BF16), under
    # bf16 autocast (what the cpu profile's precision "auto" trains with there); quick: MONAI's VNet (45.6 M
    # parameters) left out
    networks = ("vnet", "monai_unet") if opts.quick else ("vnet", "monai_unet", "monai_vnet")
    precisions = ("fp32", "bf16") if native_bf16(opts.device) else ("fp32",)
    for network, precision in ((n, p) for n in networks for p in precisions):
        cfg = vnet_config(profile, network=network, data="openkbp", precision=precision)

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
        arithmetic = "fp32" if precision == "fp32" else "bf16 autocast, % of the bf16 GEMM peak"
        rows.append(BenchCase("vnet_step", setup, cfg.batch_size, cfg.batch_size,
                              network if precision == "fp32" else f"{network}, bf16", peak_kind=precision,
                              derive=ratio if (network, precision) == ("vnet", "fp32") else None,
                              notes=f"{profile} profile: {cfg.batch_size} patches of {patch}{width} (organ-centred "
                                    f"draws, mirror), soft Dice (class weights) + softmax focal, Adam; {arithmetic}"))
    return rows
