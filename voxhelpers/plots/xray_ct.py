"""Static figures of X-ray → CT: the two radiographs, then orthogonal slices of the real and the generated CT."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .figures import _new_figure
from .segmentation import VIEWS, _slice

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

__all__ = ["xray_ct_figure"]


def xray_ct_figure(pa, lateral, real, generated, title: str = "", extra: dict | None = None) -> Figure:
    """Row 1: the PA and lateral X-rays; then one row per CT (real, generated, and any ``extra`` such as a baseline)
    with its axial, coronal and sagittal mid-slices, drawn as radiologists read them (RAS volumes: patient's right on
    the viewer's left, superior up).

    Args:
        pa, lateral: (S, S) X-rays in [0, 1], rows superior → inferior.
        real, generated: (S, S, S) CTs in [0, 1] (windowed), RAS; either may be None (a user's own X-rays have no
            real CT; a prepared CT alone has no generated one), not both unless ``extra`` holds a volume.
        title: the figure title.
        extra: more named (S, S, S) volumes to show below.

    Raises:
        ValueError: volumes that are not 3-D cubes of one size, or hold NaN.
    """
    vols = {k: v for k, v in {"real CT": real, "generated CT": generated, **(extra or {})}.items() if v is not None}
    shapes = {np.shape(v) for v in vols.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3:
        raise ValueError(f"CT volumes must be (S, S, S) of one shape, got {sorted(shapes)}")
    for k, v in vols.items():
        if not np.isfinite(np.asarray(v, dtype=np.float32)).all():
            raise ValueError(f"{k} holds NaN or inf values")
    height = 3.0 * (len(vols) + 1)
    fig = _new_figure((9.0, height))
    axes = fig.subplots(len(vols) + 1, 3, squeeze=False)
    for ax, (name, img) in zip(axes[0], (("PA X-ray", pa), ("lateral X-ray", lateral), ("", None)), strict=True):
        ax.set_xticks([]), ax.set_yticks([])
        if img is None:
            ax.axis("off")
            continue
        ax.imshow(np.asarray(img), cmap="gray", vmin=0, vmax=1)
        ax.set_title(name)
    for r, (name, v) in enumerate(vols.items(), start=1):
        v = np.asarray(v, dtype=np.float32)
        for j, (view, axis) in enumerate(VIEWS):
            ax = axes[r][j]
            ax.imshow(_slice(v, axis, v.shape[axis] // 2), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name)
            if r == 1:
                ax.set_title(view)
    if title:
        fig.suptitle(title, y=1 - 0.1 / height)  # placed in inches from the top, whatever the figure's height
    top = 1 - (0.7 if title else 0.35) / height  # inches kept above the first row: the suptitle clears its titles
    fig.subplots_adjust(left=0.06, right=0.98, top=top, bottom=0.02, wspace=0.04, hspace=0.1)
    return fig
