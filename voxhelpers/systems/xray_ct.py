"""System 3: a CT volume from two X-rays (PA + lateral), X2CT-GAN style, on real patients (SPEC §3).

A batch holds prepared CT cubes. The step mirrors each left-right at random (on the run's generator) and, when asked,
turns it by a small angle about its superior-inferior axis (``rotate``), renders its PA and lateral radiographs with
the differentiable projector (cone beam with X2CT-GAN's 541 / 949 mm geometry, or parallel), normalises each to
[0, 1] (with ``intensity``, scales and shifts each view at random), then takes one PatchGAN step (LSGAN: real CT → 1,
generated → 0, both conditioned on the X-rays) and one generator step: λ_adv·LSGAN + λ_voxel·MSE + λ_proj·L1 of the
mean projections along the three axes (X2CT-GAN's 0.1 / 10 / 10). ``adv_weight=0`` trains the same generator without
the critic (the no-GAN variant of the evaluation). Both learning rates decay linearly to 0 after ``decay_start`` of
the epochs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..config.xray_ct import XrayCTConfig
from ..losses import adversarial_loss
from .base import Splits, System, autocast_for, frozen, generator_update, guard_bf16_convs


class CTCubeDataset(torch.utils.data.Dataset):
    """Prepared cubes as items ``{"ct": (1, S, S, S) float32, "index"}``."""

    def __init__(self, cubes, size: int):
        if not cubes:
            raise ValueError("no training CTs")
        for c in cubes:
            if c.ct.shape != (1, size, size, size):
                raise ValueError(f"CT {c.name} has shape {c.ct.shape}, expected (1, {size}, {size}, {size})")
        self.cubes = list(cubes)

    def __len__(self) -> int:
        return len(self.cubes)

    def __getitem__(self, i: int) -> dict:
        return {"ct": torch.from_numpy(self.cubes[i].ct).float(), "index": i}


def _list(cfg: XrayCTConfig, roots=None) -> tuple[list, list]:
    """(train items, test items) as (name, loader argument) pairs."""
    source, _, folder = cfg.data.partition(":")
    if source == "openkbp":
        from ..data.segmentation import list_cases

        train, test = list_cases("openkbp:train", roots), list_cases("openkbp:validation", roots)
    else:
        from pathlib import Path

        from ..config.paths import DatasetNotFoundError
        from ..data.grids import split_holdout

        paths = sorted(p for p in Path(folder).expanduser().glob("*") if p.name.endswith((".nii", ".nii.gz")))
        if len(paths) < 2:
            raise DatasetNotFoundError(f"{folder}: need at least two .nii/.nii.gz CTs (one to train, one to test)")
        kept, held = split_holdout(np.arange(len(paths)), 0.2, cfg.seed)
        train = [(paths[i].name, paths[i]) for i in kept]
        test = [(paths[i].name, paths[i]) for i in held]
    if cfg.max_cases:
        train, test = train[: cfg.max_cases], test[: max(1, cfg.max_cases // 2)]
    return train, test


def prepare(cfg: XrayCTConfig, name: str, item):
    """Read and prepare one CT with ``cfg``'s preprocessing."""
    from ..data.ct import load_ct
    from ..data.xray_ct import prepare_ct_cube

    volume = load_ct(getattr(item, "path", item))  # an OpenKBP patient record, or a NIfTI path
    return prepare_ct_cube(volume, cfg.size, cfg.fov_mm, cfg.window, name)


def data(cfg: XrayCTConfig, roots=None) -> Splits:
    """Training cubes and the held-out ``test`` cubes (OpenKBP: its own validation split, never trained on)."""
    train, test = _list(cfg, roots)
    tr = [prepare(cfg, n, i) for n, i in train]
    te = [prepare(cfg, n, i) for n, i in test]
    what = "OpenKBP head-and-neck CT (screened): train split / validation split as test" \
        if cfg.data == "openkbp" else f"NIfTI CTs in {cfg.data[6:]}: a seeded 80 / 20 split"
    return Splits(tr, {"test": te}, f"{what}, {len(tr)} train / {len(te)} test CTs; cubes {cfg.size}³ of "
                                    f"{cfg.fov_mm:g} mm, HU {cfg.window[0]:g}..{cfg.window[1]:g}")


def dataset(cfg: XrayCTConfig, train) -> torch.utils.data.Dataset:
    """The training cubes (:class:`voxhelpers.data.xray_ct.CTCube`)."""
    return CTCubeDataset(train, cfg.size)


def build(cfg: XrayCTConfig, device) -> dict:
    """Generator and (unless ``adv_weight`` is 0) the PatchGAN."""
    from ..nets import build_network

    models = {"G": build_network("xray_ct", "generator", cfg).to(device)}
    if cfg.adv_weight > 0:
        models["D"] = build_network("xray_ct", "discriminator", cfg).to(device)
    return guard_bf16_convs(models, device)  # fp32 where this CPU's bf16 weight gradient is wrong (base.py)


def init_models(models: dict, train: torch.utils.data.Dataset, cfg: XrayCTConfig) -> None:
    """Initialise the generator's prior (if it has one) from the mean training CT, made left-right symmetric when
    the training mirrors the CTs (``flip_lr``)."""
    G = models["G"]
    if getattr(G, "prior", None) is None:
        return
    total = torch.zeros((cfg.size,) * 3, dtype=torch.float64)
    for i in range(len(train)):
        total += torch.as_tensor(train[i]["ct"], dtype=torch.float64).reshape(total.shape)
    mean = total / max(len(train), 1)
    if cfg.flip_lr:
        mean = 0.5 * (mean + mean.flip(0))  # axis 0: R-L in RAS, as the augmentation in step
    G.init_prior(mean.float().to(G.prior.device))


def optimizers(cfg: XrayCTConfig, models: dict) -> dict:
    """Adam(lr, betas) for each network (X2CT-GAN: 2e-4, (0.5, 0.99))."""
    return {k: torch.optim.Adam(m.parameters(), lr=cfg.lr, betas=tuple(cfg.betas)) for k, m in models.items()}


def render_xrays(ct: torch.Tensor, cfg: XrayCTConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """PA and lateral radiographs of CT cubes (B, 1, S, S, S) in [0, 1]: each (B, 1, S, S) in [0, 1], bone bright."""
    from ..data.ct import denormalise
    from ..ops.projector import hu_to_attenuation, normalise_drr, project_views

    mu = hu_to_attenuation(denormalise(ct, cfg.window))
    step = cfg.fov_mm / cfg.size
    extra = {"image_size": cfg.size} if cfg.beam == "cone" else {}
    views = project_views(mu, (step, step, step), "RAS", ("pa", "lateral"), beam=cfg.beam, **extra)
    return normalise_drr(views["pa"]), normalise_drr(views["lateral"])


def augment_ct(ct: torch.Tensor, cfg: XrayCTConfig, generator: torch.Generator) -> torch.Tensor:
    """CT cubes (B, 1, S, S, S) turned about the superior-inferior axis by their own angle in ± ``cfg.rotate``
    degrees (RAS: the plane of the R-L and A-P axes), trilinear, air shifted in; unchanged when ``rotate`` is 0."""
    if cfg.rotate <= 0:
        return ct
    from ..data.transforms import rotate_volumes

    angles = cfg.rotate * (2 * torch.rand(ct.shape[0], generator=generator, dtype=torch.float64) - 1)
    return rotate_volumes(ct, angles, (0, 1))


def augment_xrays(pa: torch.Tensor, lateral: torch.Tensor, cfg: XrayCTConfig,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Each rendered view (B, 1, S, S) of each sample scaled by 1 ± ``cfg.intensity`` and shifted by ± it (its own
    draw: radiographs differ in exposure), clipped to [0, 1]; unchanged when ``intensity`` is 0."""
    if cfg.intensity <= 0:
        return pa, lateral
    out = []
    for view in (pa, lateral):
        u = (2 * torch.rand(2, view.shape[0], generator=generator) - 1).to(view.device, view.dtype)
        scale, shift = 1 + cfg.intensity * u[0], cfg.intensity * u[1]
        out.append((view * scale[:, None, None, None] + shift[:, None, None, None]).clamp(0, 1))
    return out[0], out[1]


def learning_rate(cfg: XrayCTConfig, epoch: int) -> float:
    """``lr`` until ``decay_start`` of the epochs, then linearly to 0 at the end (X2CT-GAN's 50 + 50)."""
    start = int(cfg.decay_start * cfg.epochs)
    if epoch < start or cfg.epochs <= start:
        return cfg.lr
    return cfg.lr * (1 - (epoch - start) / (cfg.epochs - start))


def projection_l1(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """X2CT-GAN's projection loss: L1 between the mean projections along each of the three axes, averaged."""
    return sum(F.l1_loss(fake.mean(d), real.mean(d)) for d in (2, 3, 4)) / 3


def step(models: dict, optimizers: dict, batch: dict, cfg: XrayCTConfig, state) -> dict[str, float]:
    """One PatchGAN step (when there is a critic) and one generator step; see the module docstring."""
    G = models["G"]
    ct = batch["ct"]
    if cfg.flip_lr:
        flip = torch.rand(ct.shape[0], generator=state.generator) < 0.5
        ct = torch.where(flip.to(ct.device)[:, None, None, None, None], ct.flip(2), ct)  # axis 2: R-L in RAS
    ct = augment_ct(ct, cfg, state.generator)
    with torch.no_grad():
        pa, lateral = augment_xrays(*render_xrays(ct, cfg), cfg, state.generator)
    for opt in optimizers.values():
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, state.epoch)
    out = {}  # no "loss_d" without a critic: a NaN there would read as a diverged critic
    # one generator forward serves both steps (its instance norms keep no running statistics and it has no dropout,
    # so a second forward would give the same volume: the bench's plain port showed the cost, 1.2x)
    amp = autocast_for(ct.device, cfg.precision)  # the networks under it; every loss in fp32
    with amp:
        fake = G(pa, lateral).float()
    if "D" in models:
        D, opt_d = models["D"], optimizers["D"]
        with amp:
            d_real, d_fake = D(ct, pa, lateral).float(), D(fake.detach(), pa, lateral).float()
        loss_d = 0.5 * (adversarial_loss(d_real, True, cfg.gan_loss) + adversarial_loss(d_fake, False, cfg.gan_loss))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        out["loss_d"] = float(loss_d.detach())
    rec = F.mse_loss(fake, ct) if cfg.voxel_loss == "mse" else F.l1_loss(fake, ct)
    proj = projection_l1(fake, ct)
    loss_g = cfg.voxel_weight * rec + cfg.proj_weight * proj
    adv = torch.zeros(())
    if "D" in models:
        with frozen(models["D"]), amp:
            adv = adversarial_loss(models["D"](fake, pa, lateral).float(), True, cfg.gan_loss)
        loss_g = loss_g + cfg.adv_weight * adv
    generator_update(optimizers["G"], loss_g)
    return {**out, "loss_g": float(loss_g.detach()), "loss_rec": float(rec.detach()),
            "loss_proj": float(proj.detach()), "loss_adv": float(adv.detach()), "lr": learning_rate(cfg, state.epoch)}


def generate(model, cubes, cfg: XrayCTConfig, device=None, batch_size: int = 4) -> np.ndarray:
    """Generated CTs (N, S, S, S) float32 in [0, 1] from the rendered X-rays of prepared cubes."""
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(cubes), batch_size):
            ct = torch.stack([torch.from_numpy(c.ct).float() for c in cubes[i:i + batch_size]]).to(device)
            out.append(model(*render_xrays(ct, cfg)).cpu().numpy()[:, 0])
    return np.concatenate(out)


def baselines(cfg: XrayCTConfig, train, test) -> dict[str, np.ndarray]:
    """The evaluation's baselines on the test cubes: ``mean CT`` (the mean training CT) and ``back-projection``
    (the two views spread back along the rays they were rendered with — the exact adjoint of the same projector,
    cone or parallel beam — averaged, and mapped to CT values by a least-squares line fitted on the training CTs)."""
    from ..ops.backprojection import backproject

    step = (cfg.fov_mm / cfg.size,) * 3

    def bp(cubes):
        ct = torch.stack([torch.from_numpy(c.ct).float() for c in cubes])
        pa, lat = render_xrays(ct, cfg)
        shape = (cfg.size,) * 3
        return (0.5 * (backproject(pa, shape, step, "pa", beam=cfg.beam)
                       + backproject(lat, shape, step, "lateral", beam=cfg.beam)))[:, 0].numpy()

    mean_ct = np.mean([c.ct[0].astype(np.float32) for c in train], axis=0)
    x = np.concatenate([bp(train[i:i + 8]).ravel() for i in range(0, len(train), 8)])
    y = np.concatenate([c.ct[0].astype(np.float32).ravel() for c in train])
    a, b = np.polyfit(x, y, 1)
    return {"mean CT": np.broadcast_to(mean_ct, (len(test), *mean_ct.shape)),
            "back-projection": np.clip(a * bp(test) + b, 0, 1)}


def evaluate(model, cfg: XrayCTConfig, splits: Splits, profile: str | None = None, device=None) -> dict:
    """MAE (HU), PSNR (3-D and slice-averaged, data range = the window), SSIM (three axes), cosine over the test
    CTs, for the model and (keys prefixed ``mean_ct_`` and ``backprojection_``) for the two baselines."""
    from ..metrics.volumes import volume_metrics

    test = splits.held_out["test"]
    real = np.stack([c.ct[0].astype(np.float32) for c in test])
    base = baselines(cfg, splits.train, test)
    results = {"": generate(model, test, cfg, device), "mean_ct_": base["mean CT"],
               "backprojection_": base["back-projection"]}
    out: dict[str, float] = {"n_test": float(len(test))}
    for prefix, pred in results.items():
        m = volume_metrics(pred, real, window=cfg.window)
        out.update({f"{prefix}{k}": float(np.mean(v)) for k, v in m.items()})
    return out


def sheet_inputs(cfg: XrayCTConfig, splits: Splits):
    """The first test CT (the first training CT when there is none)."""
    return (splits.held_out.get("test") or splits.train)[0]


def figure(model, cfg: XrayCTConfig, cube, title: str = ""):
    """The two X-rays, then orthogonal slices of the real and the generated CT."""
    from ..plots.xray_ct import xray_ct_figure

    ct = torch.from_numpy(cube.ct).float()[None]
    pa, lateral = render_xrays(ct, cfg)
    fake = generate(model, [cube], cfg)[0]
    return xray_ct_figure(pa[0, 0].numpy(), lateral[0, 0].numpy(), cube.ct[0].astype(np.float32), fake,
                          title=title or cube.name)


SYSTEM = System(
    name="xray_ct", title="X-ray → CT", config=XrayCTConfig, build=build, optimizers=optimizers, data=data,
    dataset=dataset, step=step, evaluate=evaluate, sheet_inputs=sheet_inputs, figure=figure,
    weights_name=lambda cfg: "generator.safetensors" if cfg.adv_weight > 0 else "generator_no_gan.safetensors",
    run_name=lambda cfg: f"{cfg.data.partition(':')[0]}_{cfg.size}" + ("" if cfg.adv_weight > 0 else "_no_gan"),
    shipped="G", shipped_role="generator", ema=None, weights_dtype="fp16", init_models=init_models,
)
