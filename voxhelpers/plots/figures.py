"""Figure life cycle and training curves: creating, labelling and saving figures; the history plot.

Figures are created through pyplot and closed immediately (:func:`_new_figure`), so a notebook shows a returned
figure exactly once (as the cell's result) and scripts do not accumulate open figures; :func:`save_figure` writes
them as PNG atomically. pyplot (and :func:`voxhelpers.data.io.atomic_write`, which brings torch) is imported
inside the functions.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

__all__ = ["history_figure", "save_figure"]


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

    from ..data.io import atomic_write  # here, not at the top: voxhelpers.data imports torch

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"path must end in .png, got {str(path)!r}")
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)
