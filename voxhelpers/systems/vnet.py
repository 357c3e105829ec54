"""System 5: multi-organ CT segmentation — the seed's VNet and two MONAI peers, k-fold by patient (SPEC §5).

One run trains one network on one fold: the cases of the other folds train, this fold's cases validate (never a
patient on both sides: :func:`voxhelpers.data.ct.kfold_patients`). A batch holds whole prepared volumes; the step
draws one patch per volume on the run's generator (``pos_fraction`` centred on an organ voxel), mirrors it left-right
with the left/right organ labels swapped, jitters its intensity, and takes one Adam step on soft Dice (class weights
on the per-class loss, classes not delineated for a patient masked out) + softmax focal loss. Because every random
draw comes from the checkpointed generator, a resumed run makes the same updates as an uninterrupted one.
Validation predicts each whole volume with a Gaussian-blended sliding window and measures per organ.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from ..config.vnet import VNetConfig, parse_label_map
from .base import Splits, System, autocast_for, guard_bf16_convs


class SegmentationDataset(torch.utils.data.Dataset):
    """Prepared cases as a Dataset: ``patches_per_case`` items per case, each the whole case (the step crops).

    Items: ``{"image": (1, X, Y, Z) float32, "labels": (X, Y, Z) int64, "labelled": (K + 1,) bool (background
    first, always True), "index": case index, "class_weights": (K + 1,)}``; the class weights (``"auto"``:
    N / (C · N_c) counted on the training labels, scaled to mean 1; ``"none"``: ones) ride along with every item.
    """

    def __init__(self, cases, patches_per_case: int = 1, n_classes: int | None = None, class_weights: str = "none"):
        if not cases:
            raise ValueError("no training cases: the fold's training split is empty")
        shapes = {c.labels.shape for c in cases}
        if len(shapes) != 1:
            raise ValueError(f"cases must share one shape to be batched (set volume_shape), got {sorted(shapes)}")
        self.cases, self.repeat = list(cases), int(patches_per_case)
        n_classes = n_classes or 1 + len(cases[0].labelled)
        self.weights = torch.ones(n_classes)
        if class_weights == "auto":  # N / (C_present · N_c) on the training labels, mean 1 over the classes present
            from ..losses.segmentation import class_weights_from_labels

            w = class_weights_from_labels([c.labels for c in self.cases], n_classes)
            self.weights = w / w[w > 0].mean()

    def __len__(self) -> int:
        return len(self.cases) * self.repeat

    def __getitem__(self, i: int) -> dict:
        c = self.cases[i % len(self.cases)]
        return {"image": torch.from_numpy(c.image).float(), "labels": torch.from_numpy(c.labels).long(),
                "labelled": torch.from_numpy(np.concatenate([[True], c.labelled])), "index": i % len(self.cases),
                "class_weights": self.weights}


def fold_names(cfg: VNetConfig, roots=None) -> tuple[list, list, list]:
    """(listed cases, training names, validation names) of ``cfg.fold`` of ``cfg.n_folds`` (seed ``cfg.seed``)."""
    from ..data.ct import kfold_patients
    from ..data.segmentation import list_cases

    listed = list_cases(cfg.data, roots)
    if cfg.max_cases:
        listed = listed[: cfg.max_cases]
    if len(listed) < cfg.n_folds:
        raise ValueError(f"{cfg.data}: {len(listed)} cases, fewer than n_folds={cfg.n_folds}")
    train, val = kfold_patients([name for name, _ in listed], cfg.n_folds, cfg.seed)[cfg.fold]
    return listed, train, val


def prepare(cfg: VNetConfig, item, name: str):
    """Read and prepare one listed case with ``cfg``'s preprocessing."""
    from ..data.segmentation import load_case, prepare_case

    return prepare_case(load_case(item), cfg.n_classes, cfg.window, cfg.spacing, cfg.volume_shape,
                        parse_label_map(cfg.label_map), name)


def data(cfg: VNetConfig, roots=None) -> Splits:
    """This fold's prepared training cases and held-out ``validation`` cases."""
    listed, train, val = fold_names(cfg, roots)
    items = dict(listed)
    tr = [prepare(cfg, items[n], n) for n in train]
    va = [prepare(cfg, items[n], n) for n in val]
    what = {"openkbp": "OpenKBP head-and-neck CT (screened)", "flare22": "FLARE22 abdominal CT"}.get(
        cfg.data.partition(":")[0], cfg.data)
    desc = (f"{what}: fold {cfg.fold} of {cfg.n_folds} by patient (seed {cfg.seed}), {len(tr)} train / {len(va)} "
            f"validation cases; volumes {'x'.join(map(str, cfg.volume_shape))} at "
            f"{'source spacing' if cfg.spacing is None else 'x'.join(f'{s:g}' for s in cfg.spacing) + ' mm'}, "
            f"HU window {cfg.window[0]:g}..{cfg.window[1]:g}")
    return Splits(tr, {"validation": va}, desc)


def dataset(cfg: VNetConfig, train) -> torch.utils.data.Dataset:
    """The fold's training cases (a list of :class:`voxhelpers.data.segmentation.SegmentationCase`)."""
    for c in train:
        if c.labels.shape != tuple(cfg.volume_shape):
            raise ValueError(f"case {c.name} has shape {c.labels.shape}, expected volume_shape {cfg.volume_shape}")
    return SegmentationDataset(train, cfg.patches_per_case, cfg.n_classes, cfg.class_weights)


def build(cfg: VNetConfig, device) -> dict:
    """The segmentation network (``cfg.network``); on a CPU whose bf16 ``conv3d`` weight gradient is wrong for inputs
    smaller than the kernel, those convolutions compute in fp32 under autocast (``guard_bf16_convs``)."""
    from ..nets import build_network

    return guard_bf16_convs({"net": build_network("vnet", "segmenter", cfg).to(device)}, device)


def optimizers(cfg: VNetConfig, models: dict) -> dict:
    """Adam(lr, weight decay)."""
    return {"net": torch.optim.Adam(models["net"].parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)}


def _crop_batch(batch: dict, cfg: VNetConfig, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One augmented patch per item: (B, 1, *patch) images, (B, *patch) labels."""
    from ..data.segmentation import LR_AXIS, lr_swap, patch_start

    images, labels = batch["image"], batch["labels"]
    swap = torch.from_numpy(lr_swap(cfg.class_names).astype(np.int64)).to(labels.device)
    p = cfg.patch_size
    xs, ys = [], []
    for b in range(images.shape[0]):
        u = torch.rand(4, generator=generator)
        x0, y0, z0 = patch_start(labels[b].cpu(), p, bool(u[0] < cfg.pos_fraction), generator,
                                 by_class=cfg.pos_sampling == "class")
        x = images[b, :, x0:x0 + p[0], y0:y0 + p[1], z0:z0 + p[2]]
        y = labels[b, x0:x0 + p[0], y0:y0 + p[1], z0:z0 + p[2]]
        if cfg.flip_lr and u[1] < 0.5:
            x, y = x.flip(1 + LR_AXIS), swap[y.flip(LR_AXIS)]
        if cfg.intensity > 0:
            scale = 1 + cfg.intensity * (2 * float(u[2]) - 1)
            shift = cfg.intensity * (2 * float(u[3]) - 1)
            x = x * scale + shift
        xs.append(x)
        ys.append(y)
    return torch.stack(xs), torch.stack(ys)


def learning_rate(cfg: VNetConfig, epoch: int) -> float:
    """The learning rate in ``epoch``: constant, or a cosine from ``lr`` (first epoch) to 1 % of it (last)."""
    if cfg.lr_schedule == "constant" or cfg.epochs <= 1:
        return cfg.lr
    t = min(epoch / (cfg.epochs - 1), 1.0)
    return cfg.lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t)))


def step(models: dict, optimizers: dict, batch: dict, cfg: VNetConfig, state) -> dict[str, float]:
    """One Adam step on λ_dice · soft Dice + λ_focal · focal of one patch per volume.

    Returns ``loss`` (the total), ``loss_dice``, ``loss_focal`` and ``lr``.
    """
    from ..losses.segmentation import focal_loss, soft_dice_loss

    net, opt = models["net"], optimizers["net"]
    x, y = _crop_batch(batch, cfg, state.generator)
    for group in opt.param_groups:
        group["lr"] = learning_rate(cfg, state.epoch)
    with autocast_for(x.device, cfg.precision):
        logits = net(x)
    marginal = cfg.unlabelled == "marginal"
    dice = soft_dice_loss(logits, y, weight=batch["class_weights"][0].float(), labelled=batch["labelled"],
                          marginal=marginal)
    focal = focal_loss(logits, y, gamma=cfg.focal_gamma, labelled=batch["labelled"] if marginal else None)
    loss = cfg.dice_weight * dice + cfg.focal_weight * focal
    if not torch.isfinite(loss):
        terms = f"Dice {float(dice.detach()):.4g}, focal {float(focal.detach()):.4g}"
        raise FloatingPointError(f"the segmentation loss is NaN or inf ({terms}); lower the learning rate or "
                                 "restore the last checkpoint")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return {"loss": float(loss.detach()), "loss_dice": float(dice.detach()), "loss_focal": float(focal.detach()),
            "lr": float(opt.param_groups[0]["lr"])}


def keep_largest_components(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """A label map (X, Y, Z) with every foreground class 1..n_classes−1 reduced to its largest connected component
    (face-connected, each class on its own; MONAI's ``KeepLargestConnectedComponent``). A new array."""
    from monai.transforms import KeepLargestConnectedComponent

    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be one label map (X, Y, Z), got shape {labels.shape}")
    keep = KeepLargestConnectedComponent(applied_labels=list(range(1, n_classes)), independent=True, connectivity=1)
    return np.asarray(keep(torch.from_numpy(labels[None].copy()))[0]).astype(labels.dtype)  # copy: MONAI edits in place


def predict(model, image: np.ndarray | torch.Tensor, cfg: VNetConfig, device=None) -> np.ndarray:
    """Label map (X, Y, Z) uint8 of one prepared image (1, X, Y, Z): a Gaussian-blended sliding window of
    ``cfg.patch_size`` windows; with ``cfg.flip_tta`` the softmax is averaged with that of the left-right mirror,
    whose left and right organ channels are swapped back (a plain flip would average a right parotid with a left);
    with ``cfg.keep_largest`` each organ keeps only its largest connected component."""
    from ..data.segmentation import LR_AXIS, lr_swap
    from ..inference.sliding_window import sliding_window_predict

    x = torch.as_tensor(np.asarray(image, dtype=np.float32))[None]  # (1, 1, X, Y, Z)
    device = device or next(model.parameters()).device
    run = lambda v: sliding_window_predict(v, model, cfg.patch_size, overlap=cfg.overlap,  # noqa: E731
                                           sw_batch_size=cfg.sw_batch_size, device=device, out_device="cpu")
    probs = run(x)
    if cfg.flip_tta:
        swap = torch.from_numpy(lr_swap(cfg.class_names).astype(np.int64))
        mirrored = run(x.flip(2 + LR_AXIS)).flip(2 + LR_AXIS)
        probs = 0.5 * (probs + mirrored[:, swap])
    labels = probs[0].argmax(0).to(torch.uint8).numpy()
    return keep_largest_components(labels, cfg.n_classes) if cfg.keep_largest else labels


def evaluate_cases(model, cfg: VNetConfig, cases, device=None, hd: bool = True) -> pd.DataFrame:
    """Per-case metrics, one row per case: ``case``, ``dice_<organ>``, ``iou_<organ>``, ``hd95_<organ>`` (mm),
    ``mean_dice``, ``mean_iou``, ``accuracy``. NaN where an organ is not labelled (or absent from both)."""
    from ..metrics.segmentation import segmentation_metrics

    model.eval()
    rows = []
    with torch.no_grad():
        for c in cases:
            pred = predict(model, c.image, cfg, device)
            labelled = np.concatenate([[True], c.labelled])[None]
            m = segmentation_metrics(pred[None], c.labels[None], cfg.n_classes, spacing=c.spacing,
                                     labelled=labelled, hd=hd)
            row = {"case": c.name}
            for key in ("dice", "iou", "hd95"):
                if key in m:
                    row.update({f"{key}_{n}": float(v) for n, v in zip(cfg.class_names, m[key][0], strict=True)})
            row.update({k: float(m[k][0]) for k in ("mean_dice", "mean_iou", "accuracy")})
            rows.append(row)
    return pd.DataFrame(rows)


def summarise_cases(table: pd.DataFrame, names) -> dict[str, float]:
    """Card metrics from per-case rows: the means over cases (NaN and inf skipped), per organ and overall."""
    out: dict[str, float] = {"n_cases": float(len(table))}
    for col in table.columns:
        if col == "case":
            continue
        v = table[col].to_numpy(dtype=float)
        v = v[np.isfinite(v)]
        out[col] = float(v.mean()) if len(v) else float("nan")
    hd = table[[f"hd95_{n}" for n in names if f"hd95_{n}" in table]].to_numpy(dtype=float)
    if hd.size:
        out["hd95_missed"] = float(np.isinf(hd).sum())
        out["mean_hd95"] = float(np.nanmean(np.where(np.isinf(hd), np.nan, hd))) if np.isfinite(hd).any() else \
            float("nan")
    return out


def details(model, cfg: VNetConfig, splits: Splits, device=None) -> tuple[dict, pd.DataFrame]:
    """(card metrics, per-case rows) over the fold's validation cases."""
    table = evaluate_cases(model, cfg, splits.held_out["validation"], device)
    return summarise_cases(table, cfg.class_names), table


def evaluate(model, cfg: VNetConfig, splits: Splits, profile: str | None = None, device=None) -> dict:
    """Per-organ Dice, IoU and HD95 over the fold's validation cases (whole volumes, sliding window)."""
    return details(model, cfg, splits, device)[0]


def sheet_inputs(cfg: VNetConfig, splits: Splits):
    """The first validation case (the first training case when there is none)."""
    cases = splits.held_out.get("validation") or splits.train
    return cases[0]


def figure(model, cfg: VNetConfig, case, title: str = ""):
    """Axial, coronal and sagittal slices through the case's organs: CT, truth and prediction."""
    from ..plots.segmentation import segmentation_figure

    pred = predict(model.eval(), case.image, cfg)
    return segmentation_figure(case.image[0], case.labels, pred, cfg.class_names, title=title or case.name,
                               spacing=case.spacing)


def run_name(cfg: VNetConfig) -> str:
    """``openkbp_vnet_fold0``."""
    source = cfg.data.partition(":")[0]
    return f"{source}_{cfg.network}_fold{cfg.fold}"


SYSTEM = System(
    name="vnet", title="VNet organ segmentation", config=VNetConfig, build=build, optimizers=optimizers, data=data,
    dataset=dataset, step=step, evaluate=evaluate, sheet_inputs=sheet_inputs, figure=figure,
    weights_name=lambda cfg: f"{cfg.network}_fold{cfg.fold}.safetensors", run_name=run_name,
    shipped="net", shipped_role="segmenter", ema=None, weights_dtype="fp16", details=details,
)
