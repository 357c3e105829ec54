"""Static figures of retinal vessel segmentation (system 4): image, true mask and predicted probability per row."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .figures import _new_figure

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

__all__ = ["crgan_progress_figure", "density_figure", "joined_figure", "sequence_figure", "vessel_figure"]


def _picture(image) -> np.ndarray:
    """(C, H, W) with C 1 or 3, or (H, W) → what imshow draws: (H, W) or (H, W, 3)."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3):
        a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    if a.ndim != 2 and not (a.ndim == 3 and a.shape[2] == 3):
        raise ValueError(f"images must be (C, H, W) with C 1 or 3, or (H, W), got shape {np.shape(image)}")
    return a


def _title_and_label(fig, title: str, label: str, height: float) -> None:
    """A figure's title and, under it, an italic caption (the SIMULATED label), placed for a figure ``height`` inches
    tall."""
    if title:
        fig.suptitle(title, y=1 - 0.08 / height)
    if label:
        fig.text(0.5, 1 - (0.4 if title else 0.1) / height, label, ha="center", va="top", fontsize=8, style="italic")


def vessel_figure(images: Sequence, truths: Sequence, probs: Sequence, names: Sequence[str] | None = None,
                  title: str = "") -> Figure:
    """One row per image: the image, its true vessel mask and the predicted vessel probability.

    Args:
        images: N images, each (C, H, W) uint8 in [0, 255] (C = 1 or 3) or (H, W).
        truths: N masks (H, W) in {0, 1}.
        probs: N probability maps (H, W) in [0, 1] (a Tanh output mapped by (x + 1) / 2).
        names: N row labels (default none).
        title: the figure title.

    Raises:
        ValueError: no image, counts that differ, sizes that differ within a row, probabilities outside [0, 1] or
            NaN.
    """
    n = len(images)
    if n == 0 or len(truths) != n or len(probs) != n or (names is not None and len(names) != n):
        raise ValueError(f"need one truth, probability map (and name) per image, at least one image; got {n} images, "
                         f"{len(truths)} truths, {len(probs)} probability maps")
    rows = []
    for i, (image, truth, prob) in enumerate(zip(images, truths, probs, strict=True)):
        pic, t, p = _picture(image), np.asarray(truth), np.asarray(prob, dtype=np.float32)
        if t.shape != pic.shape[:2] or p.shape != pic.shape[:2]:
            raise ValueError(f"row {i}: image {pic.shape[:2]}, truth {t.shape} and probability {p.shape} must have "
                             "the same (H, W)")
        if not np.isfinite(p).all() or p.min() < 0 or p.max() > 1:
            raise ValueError(f"row {i}: probabilities must be finite and in [0, 1]")
        rows.append((pic, t, p))
    height = 2.6 * n + (0.4 if title else 0.0)
    fig = _new_figure((7.8, height))
    axes = fig.subplots(n, 3, squeeze=False)
    for r, (pic, t, p) in enumerate(rows):
        shown = (("image", pic, {"cmap": "gray"} if pic.ndim == 2 else {}), ("true mask", t, {"cmap": "gray"}),
                 ("prediction", p, {"cmap": "gray", "vmin": 0, "vmax": 1}))
        for ax, (label, img, style) in zip(axes[r], shown, strict=True):
            ax.imshow(img, interpolation="nearest", **style)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(label)
        if names is not None:
            axes[r][0].set_ylabel(str(names[r]))
    if title:
        fig.suptitle(title, y=1 - 0.1 / height)
    fig.subplots_adjust(left=0.05, right=0.99, top=1 - (0.6 if title else 0.3) / height, bottom=0.01,
                        wspace=0.03, hspace=0.05)
    return fig


def sequence_figure(truths, generated, stage_names: Sequence[str] | None = None, names: Sequence[str] | None = None,
                    title: str = "", label: str = "") -> Figure:
    """Stage sequences, real above generated: two rows per sequence, one column per stage (system 4's CRGAN).

    Args:
        truths: (N, T, H, W) true images, uint8 in [0, 255] or float in [0, 1].
        generated: (N, T, H, W) generated images of the same sequences and stages, float in [0, 1].
        stage_names: T column titles (default ``stage 0`` …).
        names: N sequence names, written on each pair's rows.
        title: the figure title.
        label: a caption under the title (e.g. :data:`voxhelpers.data.brvo.SIMULATED_LABEL`).

    Raises:
        ValueError: shapes that differ or are not (N, T, H, W) with N, T >= 1; generated values outside [0, 1] or NaN;
            names or stage names of the wrong count.
    """
    t_arr, g_arr = np.asarray(truths), np.asarray(generated, dtype=np.float32)
    if t_arr.ndim != 4 or t_arr.shape != g_arr.shape or 0 in t_arr.shape[:2]:
        raise ValueError(f"truths and generated must both be (N, T, H, W) with N, T >= 1, got {t_arr.shape} and "
                         f"{g_arr.shape}")
    if not np.isfinite(g_arr).all() or g_arr.min() < 0 or g_arr.max() > 1:
        raise ValueError("generated images must be finite and in [0, 1] ((output + 1) / 2)")
    n, t = t_arr.shape[:2]
    stage_names = list(stage_names) if stage_names is not None else [f"stage {s}" for s in range(t)]
    if len(stage_names) != t or (names is not None and len(names) != n):
        raise ValueError(f"need {t} stage names and {n} names, got {len(stage_names)} and "
                         f"{'none' if names is None else len(names)}")
    scale = 255.0 if t_arr.dtype == np.uint8 else 1.0
    head = (0.35 if title else 0.0) + (0.3 if label else 0.0) + 0.25
    height = 1.3 * 2 * n + head
    fig = _new_figure((1.3 * t + 0.6, height))
    axes = fig.subplots(2 * n, t, squeeze=False)
    for i in range(n):
        for r, (kind, seq) in enumerate((("real", t_arr[i] / scale), ("generated", g_arr[i]))):
            for s in range(t):
                ax = axes[2 * i + r][s]
                ax.imshow(seq[s], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
                if i == 0 and r == 0:
                    ax.set_title(str(stage_names[s]), fontsize=9)
            who = f"{names[i]}\n{kind}" if names is not None else kind
            axes[2 * i + r][0].set_ylabel(who, fontsize=8)
    _title_and_label(fig, title, label, height)
    fig.subplots_adjust(left=0.08, right=0.99, top=1 - head / height, bottom=0.01, wspace=0.03, hspace=0.05)
    return fig


def joined_figure(result, index: int = 0, draw: int = 0, title: str = "", label: str = "") -> Figure:
    """The joined pipeline for one sequence: four rows — true image, its Pix2Pix mask, the CRGAN's image, its Pix2Pix
    mask — one column per stage, with the sector's vessel density of each mask written under it.

    Args:
        result: a :class:`voxhelpers.inference.retina.JoinedResult`.
        index: which sequence; draw: which noise draw of it.
        title: the figure title; label: a caption (:data:`voxhelpers.data.brvo.SIMULATED_LABEL`).

    Raises:
        ValueError: ``index`` or ``draw`` out of range.
    """
    n, k, t = result.generated.shape[:3]
    if not (0 <= index < n and 0 <= draw < k):
        raise ValueError(f"index must be in [0, {n}) and draw in [0, {k}), got {index}, {draw}")
    rows = (("true image", result.truth[index], None),
            ("its mask", result.truth_masks[index], result.density_truth[index]),
            ("CRGAN image", result.generated[index, draw], None),
            ("its mask", result.generated_masks[index, draw], result.density_generated[index, draw]))
    head = (0.35 if title else 0.0) + (0.3 if label else 0.0) + 0.25
    height = 1.45 * 4 + head
    fig = _new_figure((1.3 * t + 0.8, height))
    axes = fig.subplots(4, t, squeeze=False)
    for r, (kind, seq, density) in enumerate(rows):
        for s in range(t):
            ax = axes[r][s]
            ax.imshow(np.asarray(seq[s], dtype=np.float32), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
            ax.contour(result.sector[index], levels=[0.5], colors="tab:orange", linewidths=0.6)
            ax.set_xticks([]), ax.set_yticks([])
            if density is not None:
                ax.set_xlabel(f"{density[s]:.2f}", fontsize=7, labelpad=1)
            if r == 0:
                ax.set_title(str(result.stage_names[s]), fontsize=9)
        axes[r][0].set_ylabel(kind, fontsize=8)
    _title_and_label(fig, title, label, height)
    fig.subplots_adjust(left=0.08, right=0.99, top=1 - head / height, bottom=0.03, wspace=0.03, hspace=0.25)
    return fig


def density_figure(result, title: str = "", label: str = "") -> Figure:
    """Vessel density in the occluded sector per stage: the simulator's own (its masks at the source size), the
    segmenter's reading of the true images, and of the CRGAN's images (mean ± standard deviation over sequences and
    draws)."""
    t = result.generated.shape[2]
    x = np.arange(t)
    fig = _new_figure((6.4, 3.6))
    ax = fig.subplots()
    gen = result.density_generated.reshape(-1, t)
    lines = [("true images → Pix2Pix", result.density_truth, "tab:blue"), ("CRGAN images → Pix2Pix", gen, "tab:red")]
    if result.density_simulated is not None:
        lines.insert(0, ("simulated truth (its own masks)", result.density_simulated, "0.4"))
    for name, values, colour in lines:
        mean, std = np.nanmean(values, axis=0), np.nanstd(values, axis=0)
        ax.plot(x, mean, "o-", color=colour, label=name)
        ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.15)
    ax.set_xticks(x, [str(s) for s in result.stage_names])
    ax.set_xlabel("treatment stage")
    ax.set_ylabel("vessel density in the sector")
    ax.legend(fontsize=8)
    ax.set_title("\n".join(w for w in (title, label) if w), fontsize=9)
    fig.tight_layout()
    return fig


def crgan_progress_figure(progress, history=None, title: str = "") -> Figure:
    """The CRGAN's convergence: held-out SSIM, MSE and (when measured) vessel-density error per snapshot epoch
    (:func:`voxhelpers.systems.crgan.progress`), per stage in thin lines and over stages in bold; with the run's
    ``history`` also the critic's Wasserstein estimate per epoch.

    Raises:
        ValueError: a progress table without ``epoch``, ``ssim`` and ``mse``.
    """
    if not {"epoch", "ssim", "mse"} <= set(progress.columns):
        raise ValueError("progress must have columns epoch, ssim, mse (voxhelpers.systems.crgan.progress)")
    keys = [k for k in ("ssim", "mse", "density_error", "sector_error") if k in progress.columns][:3]
    panels = keys + (["wasserstein"] if history is not None and "wasserstein" in history.columns else [])
    fig = _new_figure((3.2 * len(panels), 3.2))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    names = {"ssim": "held-out SSIM ↑", "mse": "held-out MSE ↓", "density_error": "vessel-density error ↓",
             "sector_error": "sector intensity error ↓", "wasserstein": "critic's Wasserstein estimate"}
    for ax, key in zip(axes, panels, strict=True):
        if key == "wasserstein":
            ax.plot(history["epoch"], history["wasserstein"], color="tab:purple", lw=0.8)
        else:
            stages = sorted((c for c in progress.columns if c.startswith(f"{key}_s")),
                            key=lambda c: int(c[len(key) + 2:]))
            for c in stages:
                ax.plot(progress["epoch"], progress[c], lw=0.7, alpha=0.6, label=c.rsplit("_", 1)[1])
            ax.plot(progress["epoch"], progress[key], "k-o", lw=1.8, ms=3, label="all stages")
            if key == "ssim":
                ax.legend(fontsize=6, ncol=2)
        ax.set_title(names[key], fontsize=9)
        ax.set_xlabel("epoch")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
