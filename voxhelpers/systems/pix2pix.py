"""System 4, Pix2Pix: a retinal image → its vessel mask, on real OCTA-500 or DRIVE images (SPEC §4, seed 002).

**Data.** OCTA-500 (3 mm, en-face OCTA, grayscale, large-vessel masks): the dataset's own 10 ``validation``
images are the held-out *test*; a seeded 14 of its 140 ``train`` images are our *validation* (the threshold is
chosen there); the other 126 train. DRIVE (RGB fundus, field-of-view masks): its 20 training images split by image
12 / 3 / 5 (train / validation / test). A pair of folders: a seeded 10 % / 10 % validation / test (at least one
each). Every image is brought to ``size``² by ``fit`` (:func:`voxhelpers.data.retina.fit_sample`).

**Items** (:class:`VesselPairDataset`): ``image`` (C, S, S) in [−1, 1] (the generator's Tanh range, as pix2pix's
``Normalize(0.5, 0.5)``), ``mask`` (1, S, S) in {0, 1}, ``fov`` (1, S, S) in {0, 1} (all ones without a field of
view), ``index``.

**Augmentation** (in the step, drawn on the run's generator, so a resumed run repeats it): a random horizontal and
a random vertical flip (``flip``), then a random rotation by up to ± ``rotate`` degrees (bilinear for the image,
which is black past the frame, nearest-neighbour for mask and field of view; the pixels that come from outside the
frame leave the field of view).

**Step** (pix2pix's update rule, read top to bottom): the generator draws the mask once; the PatchGAN takes one
step on cat(image, true mask) → real and cat(image, drawn mask) → fake, ½(real + fake), with ``gan_loss``
(``vanilla``: the seed's BCE, on logits; ``lsgan``); then, the PatchGAN frozen, the generator takes one step on
adv_weight·adversarial + l1_weight·L1 + mse_weight·MSE against 2·mask − 1 (the seed: 1 / 200 / 10; pix2pix:
1 / 100 / 0, LSGAN). The field of view is respected: L1 and MSE average over its pixels only, and outside it the
drawn mask is set to background (−1) before the PatchGAN sees it, as the true masks are. Both learning rates
follow the seed's StepLR (× ``lr_gamma`` every ``lr_step`` epochs). ``adv_weight=0`` trains the same U-Net
without the PatchGAN (the no-GAN variant: does the GAN help?).

**Evaluation.** The predicted probability (output + 1) / 2 (the model in eval mode: no dropout), 0 outside the
field of view; the threshold with the best mean Dice on the validation split (:func:`choose_vessel_threshold`),
then :func:`vessel_metrics` over the whole test split at that threshold, at the training size (masks brought to
``size``² by nearest-neighbour, as the seed's evaluation at 256²).

**Peers.** ``adv_weight=0`` is the same U-Net without the PatchGAN; ``network="monai_unet"`` is MONAI's ``UNet``
(:class:`voxhelpers.nets.pix2pix.MonaiUNet2D`) trained identically (``--network monai_unet --adv-weight 0``).

**Crops.** With ``crop`` the step trains on one random ``crop``² window per augmented image (:func:`random_crop`;
DRIVE brought to 512² by ``fov_resize`` and trained on 256² windows keeps its thin vessels), and evaluation still
predicts whole ``size``² images (the U-Net is fully convolutional).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..config.pix2pix import Pix2PixConfig
from ..losses import adversarial_loss
from .base import Splits, System, autocast_for, frozen, generator_update


class VesselPairDataset(torch.utils.data.Dataset):
    """Retinal images with their vessel masks as training items (see the module docstring for the keys).

    Args:
        samples: :class:`voxhelpers.data.retina.RetinaSample` objects, image (C, S, S) uint8, mask (S, S) {0, 1},
            fov (S, S) {0, 1} or None.
        in_channels: C, 1 or 3.
        size: S.

    Raises:
        ValueError: no samples; an image with another channel count or size; a mask or field of view of another
            size or not binary.
    """

    def __init__(self, samples, in_channels: int, size: int):
        samples = list(samples)
        if not samples:
            raise ValueError("no training images")
        kind = {1: "grayscale", 3: "RGB"}.get(in_channels, "?")
        for s in samples:
            image, mask = np.asarray(s.image), np.asarray(s.mask)
            if image.ndim != 3 or image.shape[0] != in_channels:
                raise ValueError(f"image {s.name} has shape {image.shape}, expected ({in_channels}, {size}, {size}): "
                                 f"in_channels={in_channels} ({kind}) was configured")
            if image.shape[1:] != (size, size) or image.dtype != np.uint8:
                raise ValueError(f"image {s.name} is {image.dtype} {image.shape}, expected uint8 ({in_channels}, "
                                 f"{size}, {size}) (bring it to size with voxhelpers.data.retina.fit_sample)")
            for name, m in (("mask", mask), ("field-of-view mask", s.fov)):
                if m is None:
                    continue
                m = np.asarray(m)
                if m.shape != (size, size) or not np.isin(m, (0, 1)).all():
                    raise ValueError(f"{name} of {s.name} must be ({size}, {size}) in {{0, 1}}, got {m.dtype} "
                                     f"{m.shape} with values {np.unique(m)[:4].tolist()}")
        self.names = [s.name for s in samples]
        self.images = torch.from_numpy(np.stack([np.asarray(s.image) for s in samples]))  # (N, C, S, S) uint8
        self.masks = torch.from_numpy(np.stack([np.asarray(s.mask, np.uint8) for s in samples]))[:, None]
        self.fovs = torch.from_numpy(np.stack([np.ones((size, size), np.uint8) if s.fov is None
                                               else np.asarray(s.fov, np.uint8) for s in samples]))[:, None]

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i].float() / 127.5 - 1, "mask": self.masks[i].float(),
                "fov": self.fovs[i].float(), "index": i}


# --------------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------------
def _pairs(cfg: Pix2PixConfig, roots=None) -> dict[str, list]:
    """{"train", "validation", "test"} lists of :class:`voxhelpers.data.retina.PairPaths`."""
    from ..data import retina

    source, _, rest = cfg.data.partition(":")
    if source == "octa500":
        return retina.octa500_splits(seed=cfg.seed, roots=roots)
    if source == "drive":
        return retina.drive_splits(seed=cfg.seed, roots=roots)
    pairs = retina.folder_pairs(*rest.split(":"))
    if len(pairs) < 3:
        raise ValueError(f"{rest}: {len(pairs)} image/mask pair(s); need at least 3 (train, validation and test)")
    k = max(1, round(0.1 * len(pairs)))
    names = retina.split_by_image([p.name for p in pairs], k, k, cfg.seed)
    by_name = {p.name: p for p in pairs}
    return {part: [by_name[n] for n in names[part]] for part in ("train", "validation", "test")}


def data(cfg: Pix2PixConfig, roots=None) -> Splits:
    """Training images and the held-out ``validation`` (threshold) and ``test`` (metrics) images, fitted to size."""
    from ..data.retina import load_pairs
    from ..data.retina_io import enhance, fit_sample

    pairs = _pairs(cfg, roots)
    if cfg.max_images:
        pairs["train"] = pairs["train"][: cfg.max_images]
    # read once at the images' own pixels: fitted for the networks, kept as read for scoring the held-out images
    read = {k: load_pairs(v, channels=cfg.in_channels) for k, v in pairs.items()}
    parts = {k: [enhance(fit_sample(s, cfg.size, cfg.fit), cfg.enhance) for s in v] for k, v in read.items()}
    what = {"octa500": "OCTA-500 3 mm en-face OCTA with large-vessel masks: validation drawn from its train folder "
                       "(seed {seed}), its validation folder as test",
            "drive": "DRIVE training images with manual masks and fields of view, split by image (seed {seed})",
            "folder": "image/mask folders, split by image (seed {seed})"}[cfg.data.partition(":")[0]]
    n = {k: len(v) for k, v in parts.items()}
    native = {f"{k}_native": read[k] for k in ("validation", "test")}
    return Splits(parts["train"], {"validation": parts["validation"], "test": parts["test"], **native},
                  f"{what.format(seed=cfg.seed)}; {n['train']} train / {n['validation']} validation / {n['test']} "
                  f"test images, {cfg.fit} to {cfg.size}²")


def dataset(cfg: Pix2PixConfig, train) -> torch.utils.data.Dataset:
    """The training images (:class:`VesselPairDataset`)."""
    return VesselPairDataset(train, cfg.network_channels, cfg.size)


def build(cfg: Pix2PixConfig, device) -> dict:
    """The U-Net generator and (unless ``adv_weight`` is 0) the PatchGAN (logits)."""
    from ..nets import build_network

    models = {"G": build_network("pix2pix", "generator", cfg).to(device)}
    if cfg.adv_weight > 0:
        models["D"] = build_network("pix2pix", "discriminator", cfg).to(device)
    return models


def optimizers(cfg: Pix2PixConfig, models: dict) -> dict:
    """Adam for each network: G at ``lr``, D at ``lr_d``, both with ``betas`` (the seed: 2e-4, 1e-4, (0.5, 0.999))."""
    lrs = {"G": cfg.lr, "D": cfg.lr_d}
    return {k: torch.optim.Adam(m.parameters(), lr=lrs[k], betas=tuple(cfg.betas)) for k, m in models.items()}


# --------------------------------------------------------------------------------------------------
# step
# --------------------------------------------------------------------------------------------------
def learning_rates(cfg: Pix2PixConfig, epoch: int) -> dict[str, float]:
    """The seed's StepLR: each learning rate × ``lr_gamma`` ** (epoch // ``lr_step``)."""
    factor = cfg.lr_gamma ** (epoch // cfg.lr_step)
    return {"G": cfg.lr * factor, "D": cfg.lr_d * factor}


def augment(image: torch.Tensor, mask: torch.Tensor, fov: torch.Tensor, cfg: Pix2PixConfig,
            generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random flips and a small rotation of a batch, the same for image, mask and field of view.

    Args:
        image: (B, C, S, S) in [−1, 1]; mask, fov: (B, 1, S, S) in {0, 1}.
        cfg: ``flip`` and ``rotate`` (degrees).
        generator: the CPU generator of the draws (the run's).

    Returns:
        (image, mask, fov) of the same shapes; pixels rotated in from outside the frame are black (−1) in the image
        and 0 in mask and field of view.
    """
    b = image.shape[0]
    if cfg.flip:
        for dim in (-1, -2):  # horizontal, then vertical
            pick = (torch.rand(b, generator=generator) < 0.5).to(image.device)[:, None, None, None]
            image, mask, fov = (torch.where(pick, t.flip(dim), t) for t in (image, mask, fov))
    if cfg.rotate > 0:
        angle = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(cfg.rotate)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack([torch.stack([cos, -sin, torch.zeros(b)], 1),
                             torch.stack([sin, cos, torch.zeros(b)], 1)], 1).to(image)  # (B, 2, 3)
        grid = F.affine_grid(theta, list(image.shape), align_corners=False)
        image = F.grid_sample(image + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
        mask, fov = (F.grid_sample(t, grid, mode="nearest", padding_mode="zeros", align_corners=False)
                     for t in (mask, fov))
    return image, mask, fov


def random_crop(image: torch.Tensor, mask: torch.Tensor, fov: torch.Tensor, crop: int,
                generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One random ``crop``² window per image of a batch (the same window for its mask and field of view), drawn on
    ``generator``; (B, C, S, S) → (B, C, crop, crop). ``crop`` equal to S returns the batch unchanged."""
    s = image.shape[-1]
    if crop >= s:
        return image, mask, fov
    b = image.shape[0]
    top = torch.randint(0, s - crop + 1, (b,), generator=generator).tolist()
    left = torch.randint(0, s - crop + 1, (b,), generator=generator).tolist()
    windows = list(enumerate(zip(top, left, strict=True)))
    return tuple(torch.stack([t[i, :, y:y + crop, x:x + crop] for i, (y, x) in windows]) for t in (image, mask, fov))


def masked_mean(values: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Σ values·weight / Σ weight (over every axis): a loss averaged over the field of view's pixels only."""
    return (values * weight).sum() / weight.sum().clamp_min(1.0)


def step(models: dict, optimizers: dict, batch: dict, cfg: Pix2PixConfig, state) -> dict[str, float]:
    """One PatchGAN step (when there is one) and one generator step; see the module docstring."""
    G = models["G"]
    image, mask, fov = augment(batch["image"], batch["mask"], batch["fov"], cfg, state.generator)
    if cfg.crop is not None:
        image, mask, fov = random_crop(image, mask, fov, cfg.crop, state.generator)
    target = 2 * mask - 1  # (B, 1, S, S) in {−1, 1}: the Tanh range
    inside = fov > 0
    lrs = learning_rates(cfg, state.epoch)
    for k, opt in optimizers.items():
        for group in opt.param_groups:
            group["lr"] = lrs[k]
    amp = autocast_for(image.device, cfg.precision)  # the networks under it; every loss in fp32
    with amp:
        u = G.logits(image).float()  # pre-Tanh: G(image) = tanh(u)
    fake = torch.where(inside, torch.tanh(u), -1.0)  # background outside the field of view, as the masks
    out = {}  # no "loss_d" without a critic: a NaN there would read as a diverged critic
    if "D" in models:
        D, opt_d = models["D"], optimizers["D"]
        with amp:
            d_real, d_fake = D(image, target).float(), D(image, fake.detach()).float()
        loss_d = 0.5 * (adversarial_loss(d_real, True, cfg.gan_loss) + adversarial_loss(d_fake, False, cfg.gan_loss))
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        out["loss_d"] = float(loss_d.detach())
    l1 = masked_mean((fake - target).abs(), fov)
    mse = masked_mean((fake - target) ** 2, fov)
    loss_g = cfg.l1_weight * l1 + cfg.mse_weight * mse
    if cfg.bce_weight > 0:  # σ(2u) is the mask probability (output + 1) / 2
        bce = masked_mean(F.binary_cross_entropy_with_logits(2 * u, mask, reduction="none"), fov)
        loss_g = loss_g + cfg.bce_weight * bce
        out["loss_bce"] = float(bce.detach())
    adv = torch.zeros(())
    if "D" in models:
        with frozen(models["D"]), amp:
            adv = adversarial_loss(models["D"](image, fake).float(), True, cfg.gan_loss)
        loss_g = loss_g + cfg.adv_weight * adv
    generator_update(optimizers["G"], loss_g)
    return {**out, "loss_g": float(loss_g.detach()), "loss_rec": float(l1.detach()), "loss_mse": float(mse.detach()),
            "loss_adv": float(adv.detach()), "lr": lrs["G"]}


# --------------------------------------------------------------------------------------------------
# prediction and evaluation
# --------------------------------------------------------------------------------------------------
def predict(model, samples, cfg: Pix2PixConfig, device=None, batch_size: int = 8) -> np.ndarray:
    """Vessel probabilities (N, S, S) float32 in [0, 1] of fitted samples: (G(image) + 1) / 2 in eval mode, 0
    outside the field of view."""
    device = device or next(model.parameters()).device
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(samples), batch_size):
            chunk = samples[i:i + batch_size]
            x = torch.from_numpy(np.stack([s.image for s in chunk])).float().to(device) / 127.5 - 1
            p = ((model(x) + 1) / 2).clamp(0, 1)[:, 0].float().cpu().numpy()
            for j, s in enumerate(chunk):
                if s.fov is not None:
                    p[j] *= s.fov
            out.append(p)
    return np.concatenate(out)


def masks_and_fovs(samples) -> tuple[list, list | None]:
    """(masks, fields of view or None when no sample has one)."""
    fovs = None
    if any(s.fov is not None for s in samples):
        fovs = [np.ones_like(s.mask) if s.fov is None else s.fov for s in samples]
    return [s.mask for s in samples], fovs


def _native(probs: np.ndarray, native, cfg: Pix2PixConfig) -> list[np.ndarray]:
    """Fitted-size probabilities brought back to the held-out images' own pixels (:func:`unfit_map`)."""
    from ..data.retina_io import unfit_map

    return [unfit_map(p, s, cfg.fit) for p, s in zip(probs, native, strict=True)]


def details(model, cfg: Pix2PixConfig, splits: Splits, device=None):
    """(metrics, per-image DataFrame of the test split): the threshold chosen on validation, then every vessel
    metric over the whole test split (:func:`evaluate` has the keys). Where the splits hold the held-out images as
    read (``validation_native``, ``test_native``: :func:`data` adds them), the same metrics are taken again at the
    images' own pixels — the probabilities brought back by :func:`voxhelpers.data.retina_io.unfit_map`, the
    threshold chosen again there on validation — as ``native_<metric>``."""
    from ..metrics.vessels import choose_vessel_threshold, vessel_metrics, vessel_metrics_per_image

    val, test = splits.held_out["validation"], splits.held_out["test"]
    val_probs, probs = predict(model, val, cfg, device), predict(model, test, cfg, device)
    threshold, scores = choose_vessel_threshold(val_probs, *masks_and_fovs(val))
    truths, fovs = masks_and_fovs(test)
    metrics = {k: float(v) for k, v in vessel_metrics(probs, truths, fovs, threshold).items()}
    metrics.update({"validation_dice": scores[threshold], "n_validation": float(len(val))})
    if "test_native" in splits.held_out:
        nval, ntest = splits.held_out["validation_native"], splits.held_out["test_native"]
        t_native, _ = choose_vessel_threshold(_native(val_probs, nval, cfg), *masks_and_fovs(nval))
        native = vessel_metrics(_native(probs, ntest, cfg), *masks_and_fovs(ntest), t_native)
        metrics.update({f"native_{k}": float(v) for k, v in native.items()})
    table = vessel_metrics_per_image(probs, truths, fovs, threshold, names=[s.name for s in test])
    return metrics, table


def evaluate(model, cfg: Pix2PixConfig, splits: Splits, profile: str | None = None, device=None) -> dict:
    """The card's metrics on the test split: ``dice``, ``cldice``, ``auc``, ``accuracy``, ``sensitivity``,
    ``specificity``, ``mse``, ``ssim``, ``cosine`` (per-image means; inside the field of view for DRIVE), the pooled
    counts (``dice_pooled``, ``auc_pooled``, ...), ``n_images``, ``threshold`` (chosen on validation),
    ``validation_dice`` and ``n_validation``; the same again at the images' own pixels as ``native_<key>``
    (:func:`details`)."""
    return details(model, cfg, splits, device)[0]


def sheet_inputs(cfg: Pix2PixConfig, splits: Splits):
    """The first three test images (validation or training images when there are none)."""
    return (splits.held_out.get("test") or splits.held_out.get("validation") or splits.train)[:3]


def figure(model, cfg: Pix2PixConfig, samples, title: str = ""):
    """Image, true mask and predicted probability, one row per sample."""
    from ..plots.retina import vessel_figure

    probs = predict(model, samples, cfg)
    return vessel_figure([s.image for s in samples], [s.mask for s in samples], probs,
                         names=[s.name for s in samples], title=title)


def variant(cfg: Pix2PixConfig) -> str:
    """What weights and run folders are named by: ``""`` (the seed's U-Net and BCE GAN), ``"_lsgan"``, ``"_no_gan"``,
    and ``"_monai_unet"`` before either for MONAI's UNet (``"_monai_unet_no_gan"``)."""
    net = "" if cfg.network == "pix2pix" else f"_{cfg.network}"
    if cfg.adv_weight == 0:
        return f"{net}_no_gan"
    return net + ("" if cfg.gan_loss == "vanilla" else f"_{cfg.gan_loss}")


def run_name(cfg: Pix2PixConfig) -> str:
    """The run folder: ``<source>_<size>[_crop<crop>][_<fit>]<variant>`` (``drive_512_crop256_fov_resize_no_gan``), so
    runs of other fits, crops or variants never share a checkpoint."""
    crop = f"_crop{cfg.crop}" if cfg.crop else ""
    fit = "" if cfg.fit == "resize" else f"_{cfg.fit}"
    return f"{cfg.data.partition(':')[0]}_{cfg.size}{crop}{fit}{variant(cfg)}"


SYSTEM = System(
    name="pix2pix", title="Pix2Pix vessel masks", config=Pix2PixConfig, build=build, optimizers=optimizers,
    data=data, dataset=dataset, step=step, evaluate=evaluate, sheet_inputs=sheet_inputs, figure=figure,
    weights_name=lambda cfg: f"generator{variant(cfg)}.safetensors", run_name=run_name,
    shipped="G", shipped_role="generator", ema=None, weights_dtype="fp16", details=details,
)
