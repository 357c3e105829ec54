"""Static matplotlib figures of voxel grids and training histories, saved to ``images/``.

The voxel figures follow the style of the seed (``cihanongun/3D-CGAN``, seed 000): rows of up to four
``ax.voxels`` plots thresholded at 0.5, coloured red / blue / green / purple and titled "Voxel 1..4";
training sheets show condition 0 / condition 1 / combined.

Every function returns a :class:`matplotlib.figure.Figure`; the caller displays or saves it
(:func:`save_figure`). Figures are created through pyplot and closed immediately, so a notebook shows a
returned figure exactly once (as the cell's result) and scripts do not accumulate open figures.
pyplot is imported inside the functions: importing this module has no side effects.

The validation helpers ``_as_volume``, ``_as_volume_list``, ``_binarize`` and ``_check_threshold`` are
shared with :mod:`voxhelpers.viewers`.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .io import atomic_write

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

SEED_COLORS = ("red", "blue", "green", "purple")
SHEET_ROW_LABELS = ("condition 0", "condition 1", "combined")


# ----------------------------------------------------------------------------------------------------------------------
# validation helpers (shared with viewers.py)
# ----------------------------------------------------------------------------------------------------------------------
def _to_numpy(array: Any) -> np.ndarray:
    """Convert a NumPy array, torch tensor or nested sequence to a NumPy array (no copy for NumPy input)."""
    if hasattr(array, "detach"):  # torch.Tensor without importing torch
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"expected a bool or real-valued array, got dtype {array.dtype}")
    return array


def _check_finite(array: np.ndarray, name: str) -> None:
    """Raise ValueError if a float array contains NaN."""
    if array.dtype.kind == "f" and np.isnan(array).any():
        raise ValueError(f"{name} contains NaN; expected bool or probabilities in [0, 1]")


def _check_threshold(threshold: float) -> float:
    """Validate a binarisation threshold and return it as a float in [0, 1]."""
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
    return float(threshold)


def _as_volume(volume: Any, name: str = "volume") -> np.ndarray:
    """Convert one voxel grid to a NumPy array of shape (D, H, W).

    Args:
        volume: NumPy array or torch tensor of shape (D, H, W) or (1, D, H, W), bool or float probabilities in
            [0, 1].
        name: Name used in error messages.

    Returns:
        NumPy array of shape (D, H, W), same dtype as the input.

    Raises:
        ValueError: If the shape is not (D, H, W) or (1, D, H, W), or the values contain NaN.
        TypeError: If the values are not bool or real numbers.
    """
    array = _to_numpy(volume)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3:
        raise ValueError(f"{name} must have shape (D, H, W) or (1, D, H, W), got shape {tuple(array.shape)}")
    _check_finite(array, name)
    return array


def _as_volume_list(volumes: Any, name: str = "volumes") -> list[np.ndarray]:
    """Convert a batch of voxel grids to a list of NumPy arrays of shape (D, H, W).

    Args:
        volumes: A sequence of volumes (each (D, H, W) or (1, D, H, W)), or one array / tensor of shape
            (N, D, H, W) or (N, 1, D, H, W); a single (D, H, W) array counts as one volume.
        name: Name used in error messages.

    Returns:
        List of N NumPy arrays of shape (D, H, W).

    Raises:
        ValueError: If the batch is empty, has the wrong shape, or contains NaN.
    """
    if isinstance(volumes, (list, tuple)):
        result = [_as_volume(v, f"{name}[{i}]") for i, v in enumerate(volumes)]
    else:
        array = _to_numpy(volumes)
        if array.ndim == 3:
            array = array[None]
        elif array.ndim == 5 and array.shape[1] == 1:
            array = array[:, 0]
        if array.ndim != 4:
            raise ValueError(
                f"{name} must have shape (N, D, H, W), (N, 1, D, H, W) or be a sequence of (D, H, W) volumes, "
                f"got shape {tuple(array.shape)}"
            )
        _check_finite(array, name)
        result = list(array)
    if not result:
        raise ValueError(f"{name} is empty; expected at least one (D, H, W) volume")
    return result


def _binarize(volume: Any, threshold: float = 0.5, name: str = "volume") -> np.ndarray:
    """Binarise a voxel grid with ``volume > threshold``.

    Args:
        volume: Array or tensor of shape (D, H, W) or (1, D, H, W), bool or probabilities in [0, 1].
        threshold: Occupancy threshold in [0, 1]; a bool grid is used as is.
        name: Name used in error messages.

    Returns:
        Bool NumPy array of shape (D, H, W).

    Raises:
        ValueError: On a bad shape, NaN values or a threshold outside [0, 1].
    """
    threshold = _check_threshold(threshold)
    array = _as_volume(volume, name)
    if array.dtype == bool:
        return array
    return array > threshold


def _check_titles(titles: Sequence[str] | None, n: int, default: str = "Voxel") -> list[str]:
    """Return ``titles`` as a list of n strings, or the defaults "Voxel 1".."Voxel n"."""
    if titles is None:
        return [f"{default} {i + 1}" for i in range(n)]
    if isinstance(titles, str) or len(titles) != n:
        raise ValueError(f"titles must be a sequence of {n} strings (one per volume), got {titles!r}")
    return [str(t) for t in titles]


# ----------------------------------------------------------------------------------------------------------------------
# figures
# ----------------------------------------------------------------------------------------------------------------------
_FACE_NORMALS = np.array([[-1, 0, 0], [1, 0, 0], [0, -1, 0], [0, 1, 0], [0, 0, -1], [0, 0, 1]], dtype=float)
_LIGHT = np.array([0.35, -0.55, 0.75]) / np.linalg.norm([0.35, -0.55, 0.75])


def voxel_faces(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exposed unit faces of a bool grid, vectorised (what ``ax.voxels`` draws, without its per-voxel loop).

    Args:
        grid: bool (D, H, W).

    Returns:
        ``(quads, normals)``: quads (F, 4, 3) corner coordinates (voxel i spans [i, i + 1]), normals (F, 3).
    """
    padded = np.pad(grid, 1)
    quads, normals = [], []
    corners = {  # the four corners of the face of a unit cube at the origin, per face direction
        0: [(0, 0, 0), (0, 1, 0), (0, 1, 1), (0, 0, 1)],
        1: [(1, 0, 0), (1, 1, 0), (1, 1, 1), (1, 0, 1)],
        2: [(0, 0, 0), (1, 0, 0), (1, 0, 1), (0, 0, 1)],
        3: [(0, 1, 0), (1, 1, 0), (1, 1, 1), (0, 1, 1)],
        4: [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)],
        5: [(0, 0, 1), (1, 0, 1), (1, 1, 1), (0, 1, 1)],
    }
    for f, n in enumerate(_FACE_NORMALS.astype(int)):
        neighbour = np.roll(padded, shift=tuple(-n), axis=(0, 1, 2))  # the voxel across this face
        idx = np.argwhere(padded & ~neighbour) - 1  # (K, 3) voxel coordinates in the unpadded grid
        quads.append(idx[:, None, :] + np.asarray(corners[f])[None])
        normals.append(np.repeat(_FACE_NORMALS[f][None], len(idx), axis=0))
    return np.concatenate(quads).astype(float), np.concatenate(normals)


def _draw_voxels(ax: Axes, grid: np.ndarray, color: str, title: str) -> None:
    """Draw a bool grid (D, H, W) as shaded exposed faces (one Poly3DCollection); empty grids get "(empty)"."""
    from matplotlib.colors import to_rgb
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    depth, height, width = grid.shape
    if grid.any():
        quads, normals = voxel_faces(grid)
        shade = 0.45 + 0.55 * np.clip(normals @ _LIGHT, 0, 1)  # Lambert + ambient
        colors = np.clip(np.asarray(to_rgb(color))[None] * shade[:, None], 0, 1)
        ax.add_collection3d(Poly3DCollection(quads, facecolors=colors, edgecolors=(0, 0, 0, 0.25), linewidths=0.1))
    else:
        title = f"{title} (empty)"
    depth, height, width = max(depth, 1), max(height, 1), max(width, 1)
    ax.set_xlim(0, depth)
    ax.set_ylim(0, height)
    ax.set_zlim(0, width)
    ax.set_box_aspect((depth, height, width))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_zticks([])
    ax.set_title(title)


def _add_label(fig: Figure, label: str | None) -> None:
    """Write ``label`` (e.g. "procedural stand-in data") in small grey text at the bottom of the figure."""
    if label:
        fig.text(0.5, 0.005, label, ha="center", va="bottom", fontsize=9, style="italic", color="dimgray")


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """Create a figure through pyplot (so the inline backend can display it) and close it at once."""
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=figsize)
    plt.close(fig)  # the caller displays or saves it; a closed figure is not shown a second time by Jupyter
    return fig


def voxel_row_figure(
    volumes: Any,
    titles: Sequence[str] | None = None,
    threshold: float = 0.5,
    colors: Sequence[str] = SEED_COLORS,
    ncols: int = 4,
    suptitle: str | None = None,
    label: str | None = None,
) -> Figure:
    """Plot voxel grids as rows of ``ax.voxels`` 3D subplots, like the seed's sample images.

    Volumes are laid out on a grid of ``ceil(N / ncols)`` rows by ``min(N, ncols)`` columns; only N axes are
    created (6 volumes with ``ncols=4`` give 6 axes on a 2 x 4 grid). Voxel ``(i, j, k)`` fills the unit cube
    ``[i, i+1] x [j, j+1] x [k, k+1]``.

    Args:
        volumes: Sequence of N volumes of shape (D, H, W) or (1, D, H, W), or an array / tensor of shape
            (N, D, H, W) or (N, 1, D, H, W); bool or probabilities in [0, 1].
        titles: N subplot titles; default "Voxel 1".."Voxel N". Empty volumes get the suffix " (empty)".
        threshold: Occupancy threshold in [0, 1]; a voxel is drawn where ``value > threshold``.
        colors: Face colours, cycled over the volumes (seed: red, blue, green, purple).
        ncols: Number of columns, at least 1.
        suptitle: Optional figure title.
        label: Optional small note at the bottom of the figure, e.g. "procedural stand-in data".

    Returns:
        The matplotlib Figure (already closed in pyplot; display it or pass it to :func:`save_figure`).

    Raises:
        ValueError: On bad shapes, NaN values, a threshold outside [0, 1], ``ncols < 1``, empty ``colors`` or
            a wrong number of titles.
    """
    grids = [_binarize(v, threshold, f"volumes[{i}]") for i, v in enumerate(_as_volume_list(volumes))]
    n = len(grids)
    titles = _check_titles(titles, n)
    if isinstance(ncols, bool) or not isinstance(ncols, numbers.Integral) or ncols < 1:
        raise ValueError(f"ncols must be an integer >= 1, got {ncols!r}")
    if isinstance(colors, str) or len(colors) == 0:
        raise ValueError(f"colors must be a non-empty sequence of colours, got {colors!r}")
    ncols = min(int(ncols), n)
    nrows = math.ceil(n / ncols)

    fig = _new_figure((4.0 * ncols, 4.0 * nrows + (0.5 if suptitle else 0.0)))
    for index, grid in enumerate(grids):
        ax = fig.add_subplot(nrows, ncols, index + 1, projection="3d")
        _draw_voxels(ax, grid, colors[index % len(colors)], titles[index])
    if suptitle:
        fig.suptitle(suptitle)
    _add_label(fig, label)
    return fig


def sample_sheet_figure(
    cond0: Any,
    cond1: Any,
    combined: Any,
    threshold: float = 0.5,
    suptitle: str | None = None,
    label: str | None = None,
) -> Figure:
    """Plot the seed's training sheet: condition 0 / condition 1 / combined rows of up to 4 samples each.

    Row labels ("condition 0", "condition 1", "combined") are written left of each row; columns are titled
    "Voxel 1".."Voxel 4" and coloured red / blue / green / purple. Only the first 4 samples of each row are
    drawn and rows with fewer samples leave their last cells without axes.

    Args:
        cond0: Samples generated for condition 0, shape (N, D, H, W) or a sequence of (D, H, W) volumes.
        cond1: Samples generated for condition 1, same conventions.
        combined: The combined (paired) samples, same conventions.
        threshold: Occupancy threshold in [0, 1].
        suptitle: Optional figure title, e.g. "epoch 100".
        label: Optional small note at the bottom of the figure, e.g. "procedural stand-in data".

    Returns:
        The matplotlib Figure with ``sum(min(N_row, 4))`` 3D axes (12 for 4 samples per row).

    Raises:
        ValueError: On bad shapes, NaN values or a threshold outside [0, 1].
    """
    rows = []
    for row_name, batch in zip(("cond0", "cond1", "combined"), (cond0, cond1, combined), strict=True):
        vols = _as_volume_list(batch, row_name)[:4]
        rows.append([_binarize(v, threshold, f"{row_name}[{i}]") for i, v in enumerate(vols)])
    ncols = max(len(r) for r in rows)

    fig = _new_figure((4.0 * ncols, 12.0 + (0.5 if suptitle else 0.0)))
    for r, grids in enumerate(rows):
        for c, grid in enumerate(grids):
            ax = fig.add_subplot(3, ncols, r * ncols + c + 1, projection="3d")
            _draw_voxels(ax, grid, SEED_COLORS[c % len(SEED_COLORS)], f"Voxel {c + 1}")
            if c == 0:
                ax.text2D(
                    -0.1,
                    0.5,
                    SHEET_ROW_LABELS[r],
                    transform=ax.transAxes,
                    rotation=90,
                    ha="center",
                    va="center",
                    fontsize=12,
                )
    if suptitle:
        fig.suptitle(suptitle)
    _add_label(fig, label)
    return fig


def _as_images(images: Any) -> np.ndarray:
    """Validate RGB images (N, 3, S, S) or (N, S, S, 3), N ≥ 1, finite; return float32 (N, S, S, 3)."""
    imgs = _to_numpy(images).astype(np.float32)
    if imgs.ndim != 4 or 3 not in (imgs.shape[1], imgs.shape[-1]) or len(imgs) == 0:
        raise ValueError(f"images must be a non-empty (N, 3, S, S) or (N, S, S, 3) array, got {imgs.shape}")
    _check_finite(imgs, "images")
    if imgs.shape[1] == 3 and imgs.shape[-1] != 3:
        imgs = imgs.transpose(0, 2, 3, 1)
    return imgs


def reconstruction_figure(
    images: Any,
    targets: Any,
    reconstructions: Any | None = None,
    threshold: float = 0.5,
    suptitle: str | None = None,
    label: str | None = None,
    ious: Sequence[float] | None = None,
    titles: Sequence[str] | None = None,
) -> Figure:
    """Image → voxel results: one column per example, rows input render / target voxels / reconstruction.

    With ``reconstructions=None`` only the first two rows are drawn (renders beside the voxels they came from).

    Args:
        images: (N, 3, S, S) or (N, S, S, 3) renders in [0, 1] (the encoder's input).
        targets: (N, D, H, W) true grids.
        reconstructions: (N, D, H, W) predicted occupancy in [0, 1] (drawn where ``> threshold``), or None.
        threshold: occupancy threshold in [0, 1].
        suptitle: optional figure title.
        label: optional small note at the bottom (e.g. "procedural stand-in data").
        ious: optional N IoU values written under the reconstructions.
        titles: optional N titles for the renders (default: "input render" over the first).

    Returns:
        The matplotlib Figure (N 2D axes and N or 2·N 3D axes).

    Raises:
        ValueError: different counts, bad image shapes, NaN, a threshold outside [0, 1].
    """
    imgs = _as_images(images)
    n = len(imgs)
    tgt = [_binarize(v, 0.5, f"targets[{i}]") for i, v in enumerate(_as_volume_list(targets, "targets"))]
    rec = None if reconstructions is None else [
        _binarize(v, threshold, f"reconstructions[{i}]")
        for i, v in enumerate(_as_volume_list(reconstructions, "reconstructions"))]
    if len(tgt) != n or (rec is not None and len(rec) != n):
        raise ValueError(f"need as many targets (and reconstructions) as images ({n}), got {len(tgt)}"
                         + ("" if rec is None else f" and {len(rec)}"))
    if ious is not None and len(ious) != n:
        raise ValueError(f"ious must hold {n} values, got {len(ious)}")
    if titles is not None and len(titles) != n:
        raise ValueError(f"titles must hold {n} strings, got {len(titles)}")
    rows = 2 if rec is None else 3
    fig = _new_figure((3.2 * n, 3.2 * rows + (0.5 if suptitle else 0.0)))
    for i in range(n):
        ax = fig.add_subplot(rows, n, i + 1)
        ax.imshow(np.clip(imgs[i], 0, 1))
        ax.set_axis_off()
        ax.set_title(titles[i] if titles is not None else ("input render" if i == 0 else ""))
        _draw_voxels(fig.add_subplot(rows, n, n + i + 1, projection="3d"), tgt[i], SEED_COLORS[1], "voxels"
                     if rec is None else "target")
        if rec is not None:
            title = "reconstruction" + (f"\nIoU {ious[i]:.2f}" if ious is not None else "")
            _draw_voxels(fig.add_subplot(rows, n, 2 * n + i + 1, projection="3d"), rec[i], SEED_COLORS[0], title)
    if suptitle:
        fig.suptitle(suptitle)
    _add_label(fig, label)
    return fig


def image_grid_figure(images: Any, titles: Sequence[str] | None = None, ncols: int = 4,
                      suptitle: str | None = None) -> Figure:
    """A grid of RGB images (e.g. renders from several views).

    Args:
        images: (N, 3, S, S) or (N, S, S, 3) in [0, 1].
        titles: optional N titles.
        ncols: columns, ≥ 1.
        suptitle: optional figure title.

    Raises:
        ValueError: bad shapes, NaN, wrong number of titles, ``ncols`` < 1.
    """
    imgs = _as_images(images)
    if isinstance(ncols, bool) or not isinstance(ncols, numbers.Integral) or ncols < 1:
        raise ValueError(f"ncols must be an integer >= 1, got {ncols!r}")
    if titles is not None and len(titles) != len(imgs):
        raise ValueError(f"titles must hold {len(imgs)} strings, got {len(titles)}")
    ncols = min(int(ncols), len(imgs))
    nrows = math.ceil(len(imgs) / ncols)
    fig = _new_figure((2.2 * ncols, 2.2 * nrows + (0.5 if suptitle else 0.0)))
    for i, img in enumerate(imgs):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.imshow(np.clip(img, 0, 1))
        ax.set_axis_off()
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def history_figure(history: Any) -> Figure:
    """Plot training curves from a history DataFrame, one line per numeric column against ``epoch``.

    Loss-like columns (``loss_d``, ``loss_g``, ``loss_gp``, ``loss_rec``, ``loss_proj``, ``loss_pair``, ...) share
    the first axes; columns whose name starts with ``acc`` (``acc_d``, ...) go to a second axes below when
    present. Rows with the same epoch (per-iteration records) are averaged per epoch; non-numeric columns are
    ignored.

    Args:
        history: pandas DataFrame with an ``epoch`` column and numeric metric columns.

    Returns:
        The matplotlib Figure with 1 axes (losses) or 2 axes (losses, accuracies).

    Raises:
        TypeError: If ``history`` is not a DataFrame.
        ValueError: If there is no ``epoch`` column or no numeric column besides it.
    """
    if not hasattr(history, "columns") or not hasattr(history, "select_dtypes"):
        raise TypeError(f"history must be a pandas DataFrame, got {type(history).__name__}")
    if "epoch" not in history.columns:
        raise ValueError(f"history must have an 'epoch' column, got columns {list(history.columns)}")
    numeric = [c for c in history.select_dtypes("number").columns if c != "epoch"]
    if not numeric:
        raise ValueError(f"history has no numeric column besides 'epoch', got columns {list(history.columns)}")
    acc_cols = [c for c in numeric if str(c).startswith("acc")]
    loss_cols = [c for c in numeric if c not in acc_cols]
    per_epoch = history[["epoch", *numeric]].groupby("epoch", sort=True).mean()

    groups = [(cols, ylabel) for cols, ylabel in ((loss_cols, "loss"), (acc_cols, "accuracy")) if cols]
    fig = _new_figure((8.0, 3.5 * len(groups)))
    axes = fig.subplots(len(groups), 1, sharex=True, squeeze=False)[:, 0]
    marker = "o" if len(per_epoch) < 30 else None
    for ax, (cols, ylabel) in zip(axes, groups, strict=True):
        for col in cols:
            ax.plot(per_epoch.index, per_epoch[col], marker=marker, markersize=3, label=str(col))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize=9)
    axes[-1].set_xlabel("epoch")
    axes[0].set_title("training history")
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 100) -> Path:
    """Save a figure as PNG atomically, then close it.

    The PNG is written to a temporary file in the target directory and moved into place with ``os.replace``,
    so a reader never sees a half-written image and no temporary file is left behind on error.

    Args:
        fig: The matplotlib Figure to save.
        path: Destination path ending in ``.png``; parent directories are created.
        dpi: Resolution in dots per inch.

    Returns:
        The destination path as a :class:`pathlib.Path`.

    Raises:
        ValueError: If ``path`` does not end in ``.png``.
    """
    import matplotlib.pyplot as plt

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)
