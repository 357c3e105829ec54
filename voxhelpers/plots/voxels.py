"""Static matplotlib figures of voxel grids in the style of the seed.

The voxel figures follow the style of the seed (``cihanongun/3D-CGAN``, seed 000): rows of up to four
``ax.voxels`` plots thresholded at 0.5, coloured red / blue / green / purple and titled "Voxel 1..4";
training sheets show condition 0 / condition 1 / combined. Faces are drawn as one shaded
``Poly3DCollection`` of exposed faces (:func:`voxel_faces`) rather than with ``ax.voxels``'s per-voxel loop.
matplotlib is imported inside the functions.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ._checks import _as_volume_list, _binarize, _check_titles
from .figures import _add_label, _new_figure

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["SEED_COLORS", "SHEET_ROW_LABELS", "voxel_faces", "voxel_row_figure", "sample_sheet_figure"]

SEED_COLORS = ("red", "blue", "green", "purple")
SHEET_ROW_LABELS = ("condition 0", "condition 1", "combined")


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
    row_titles: Sequence[str] | None = None,
) -> Figure:
    """Plot the seed's training sheet: condition 0 / condition 1 / combined rows of up to 4 samples each.

    Row labels ("condition 0", "condition 1", "combined") are written left of each row; columns are titled
    "Voxel 1".."Voxel 4" and coloured red / blue / green / purple. Only the first 4 samples of each row are
    drawn and rows with fewer samples leave their last cells without axes. With ``row_titles`` each row is
    headed by its title instead (e.g. "condition 1: the same z, asked for the shape turned 180°") and the
    columns are titled "sample 1".."sample 4" (a column is one latent z throughout).

    Args:
        cond0: Samples generated for condition 0, shape (N, D, H, W) or a sequence of (D, H, W) volumes.
        cond1: Samples generated for condition 1, same conventions.
        combined: The combined (paired) samples, same conventions.
        threshold: Occupancy threshold in [0, 1].
        suptitle: Optional figure title, e.g. "epoch 100".
        label: Optional small note at the bottom of the figure, e.g. "procedural stand-in data".
        row_titles: Optional 3 headings, one above each row, saying what the row shows.

    Returns:
        The matplotlib Figure with ``sum(min(N_row, 4))`` 3D axes (12 for 4 samples per row).

    Raises:
        ValueError: On bad shapes, NaN values, a threshold outside [0, 1] or not 3 ``row_titles``.
    """
    if row_titles is not None and (isinstance(row_titles, str) or len(row_titles) != 3):
        raise ValueError(f"row_titles must be 3 strings (condition 0, condition 1, combined), got {row_titles!r}")
    rows = []
    for row_name, batch in zip(("cond0", "cond1", "combined"), (cond0, cond1, combined), strict=True):
        vols = _as_volume_list(batch, row_name)[:4]
        rows.append([_binarize(v, threshold, f"{row_name}[{i}]") for i, v in enumerate(vols)])
    ncols = max(len(r) for r in rows)

    fig = _new_figure((4.0 * ncols, 12.0 + (0.5 if suptitle else 0.0) + (0.9 if row_titles else 0.0)))
    if row_titles:
        fig.subplots_adjust(hspace=0.45)
    for r, grids in enumerate(rows):
        for c, grid in enumerate(grids):
            ax = fig.add_subplot(3, ncols, r * ncols + c + 1, projection="3d")
            _draw_voxels(ax, grid, SEED_COLORS[c % len(SEED_COLORS)], f"sample {c + 1}" if row_titles else
                         f"Voxel {c + 1}")
            if row_titles and c == 0:
                top = ax.get_subplotspec().get_position(fig).y1
                fig.text(0.5, top + 0.035, row_titles[r], ha="center", va="bottom", fontsize=13, weight="bold")
            elif c == 0:
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
