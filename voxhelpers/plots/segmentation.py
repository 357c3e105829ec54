"""Static figures of CT segmentations: slices of the CT with the truth and a prediction overlaid, organ by organ.

Volumes are (X, Y, Z) in RAS (:func:`voxhelpers.data.segmentation.prepare_case`: axis 0 runs towards the patient's
right, 1 anterior, 2 superior). Slices are drawn as radiologists read them: superior (or anterior, axially) up, the
patient's right on the viewer's left, the face on the left of a sagittal cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from .figures import _new_figure

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

__all__ = ["organ_colors", "segmentation_figure"]

#: slice views: (name, array axis cut)
VIEWS = (("axial", 2), ("coronal", 1), ("sagittal", 0))


def organ_colors(n: int) -> np.ndarray:
    """(n, 4) RGBA, one distinct colour per organ (matplotlib's tab10, then tab20)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return np.array([cmap(i % cmap.N) for i in range(n)])


def _slice(a: np.ndarray, axis: int, index: int) -> np.ndarray:
    """A 2-D cut shown with the patient's superior side up and right side on the viewer's left."""
    s = np.take(a, index, axis=axis)  # the two remaining RAS axes, in order
    return np.rot90(s)[:, ::-1]  # second axis bottom → top; first axis right → left (patient's right on the left)


def _overlay(labels: np.ndarray, colors: np.ndarray) -> np.ndarray:
    rgba = np.zeros((*labels.shape, 4))
    for c in range(1, len(colors) + 1):
        rgba[labels == c] = colors[c - 1] * np.array([1, 1, 1, 0.55])
    return rgba


def segmentation_figure(image, truth, prediction, names: Sequence[str], title: str = "",
                        centre: tuple[int, int, int] | None = None, spacing=None) -> Figure:
    """CT slices (axial, coronal, sagittal) through the organs, with the truth and the prediction overlaid.

    Args:
        image: (X, Y, Z) windowed CT in [0, 1].
        truth: (X, Y, Z) label map (0 = background), or None.
        prediction: (X, Y, Z) label map, or None.
        names: the foreground class names 1..K (legend).
        title: the figure title.
        centre: the voxel the three slices pass through (default: the centre of mass of the truth's organs, else of
            the prediction's, else the volume's centre).
        spacing: voxel size in mm per axis, so that each slice is drawn with its true aspect (default: square voxels).

    Raises:
        ValueError: arrays not 3-D or of different shapes, NaN in the image.
    """
    image = np.asarray(image, dtype=np.float32)
    maps = {"truth": truth, "prediction": prediction}
    if image.ndim != 3:
        raise ValueError(f"image must be (X, Y, Z), got shape {image.shape}")
    if not np.isfinite(image).all():
        raise ValueError("image holds NaN or inf values")
    for k, v in maps.items():
        if v is not None and np.shape(v) != image.shape:
            raise ValueError(f"{k} of shape {np.shape(v)} does not match the image {image.shape}")
    shown = {k: np.asarray(v) for k, v in maps.items() if v is not None}
    if centre is None:
        ref = next((v for v in shown.values() if (v > 0).any()), None)
        centre = tuple(int(round(c)) for c in (np.argwhere(ref > 0).mean(0) if ref is not None else
                                                np.array(image.shape) / 2 - 0.5))
    colors = organ_colors(len(names))
    columns = ["CT", *shown]
    fig = _new_figure((3.0 * len(columns), 3.0 * len(VIEWS) + 0.6))
    axes = fig.subplots(len(VIEWS), len(columns), squeeze=False)
    sp = (1.0, 1.0, 1.0) if spacing is None else tuple(float(x) for x in spacing)
    for r, (view, axis) in enumerate(VIEWS):
        ct = _slice(image, axis, centre[axis])
        across, up = (sp[a] for a in range(3) if a != axis)  # after _slice: rows run along `up`, columns `across`
        for c, col in enumerate(columns):
            ax = axes[r][c]
            ax.imshow(ct, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect=up / across)
            if col != "CT":
                ax.imshow(_overlay(_slice(shown[col], axis, centre[axis]), colors), interpolation="nearest",
                          aspect=up / across)
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(col)
            if c == 0:
                ax.set_ylabel(f"{view} {centre[axis]}")
    from matplotlib.patches import Patch

    present = sorted({int(v) for m in shown.values() for v in np.unique(m) if v > 0})
    handles = [Patch(color=colors[i - 1], label=names[i - 1]) for i in present if i - 1 < len(names)]
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(4, len(handles)), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title)
    fig.subplots_adjust(left=0.06, right=0.98, top=0.92, bottom=0.1, wspace=0.03, hspace=0.06)
    return fig
