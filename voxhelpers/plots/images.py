"""Static matplotlib figures of RGB images: image → voxel reconstructions and grids of renders.

Images are (N, 3, S, S) or (N, S, S, 3) arrays or tensors with values in [0, 1]; voxel grids follow the
conventions of :mod:`voxhelpers.plots.voxels`. matplotlib is imported inside the functions.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._checks import _as_volume_list, _binarize, _check_finite, _to_numpy
from .figures import _add_label, _new_figure
from .voxels import SEED_COLORS, _draw_voxels

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

__all__ = ["reconstruction_figure", "image_grid_figure"]


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
