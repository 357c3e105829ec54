"""Interactive plotly / ipywidgets viewers for CT segmentations (system 5): organ meshes and a slice browser.

* :func:`organ_mesh_figure`: one ``Mesh3d`` per organ (:func:`voxhelpers.inference.meshes.label_meshes`, in mm, in
  the colours of :func:`voxhelpers.plots.segmentation.organ_colors`), the truth and a prediction side by side.
  Being made of ``Mesh3d`` traces only, it carries a static PNG in saved notebooks after
  :func:`~voxhelpers.viewers.use_saved_output_renderer`, like the voxel figures.
* :func:`ct_slice_figure` / :func:`ct_slice_viewer`: one axial slice of the CT with the label maps overlaid, and a
  slider over the slices. Without ``anywidget`` the viewer is an ``ipywidgets.Output`` holding each state's MIME
  bundle, which gets an ``image/png`` of the slice when the saved-output renderer is the default.

Volumes are (X, Y, Z) in RAS as :func:`voxhelpers.data.segmentation.prepare_case` makes them; slices are drawn as in
:mod:`voxhelpers.plots.segmentation` (anterior up, the patient's right on the viewer's left) and meshes are seen from
the front. plotly, ipywidgets, matplotlib and scikit-image are imported inside the functions.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..plots._checks import _to_numpy

if TYPE_CHECKING:  # pragma: no cover - typing only
    import ipywidgets
    import plotly.graph_objects as go

#: default face budget of :func:`organ_mesh_figure` (both scenes together): ~0.3 MB per saved representation
MAX_FACES = 20_000
_FRONT = dict(eye=dict(x=0.0, y=2.0, z=0.35), up=dict(x=0, y=0, z=1))  # from anterior (+y), superior up


def _label_map(labels: Any, name: str, shape: tuple[int, ...] | None, n_names: int) -> np.ndarray:
    """An (X, Y, Z) integer label map (int64) with ids in 0..n_names (any ids without names), checked."""
    a = _to_numpy(labels)
    if a.dtype.kind == "f" and not (np.isfinite(a).all() and (a == np.round(a)).all()):
        raise ValueError(f"{name} holds NaN, inf or fractions; expected an integer label map (0 = background)")
    if a.ndim != 3 or (shape is not None and a.shape != shape):
        raise ValueError(f"{name} must be an (X, Y, Z) label map" + (f" of the image's shape {shape}" if shape else "")
                         + f", got shape {a.shape}")
    a = a.astype(np.int64)
    if a.size and (a.min() < 0 or (n_names and a.max() > n_names)):
        raise ValueError(f"{name} holds ids {a.min()}..{a.max()}; expected 0 = background and organs 1.."
                         f"{n_names or 'K'}" + (f" (the {n_names} names)" if n_names else ""))
    return a


def _spacing(spacing: Any) -> tuple[float, float, float]:
    s = tuple(float(v) for v in np.ravel(spacing))
    if len(s) != 3 or not all(np.isfinite(v) and v > 0 for v in s):
        raise ValueError(f"spacing must be 3 positive mm values, got {spacing!r}")
    return s


def _options(names: Any, height: Any) -> tuple[tuple[str, ...], int]:
    """Checked organ names (labels 1..K) and figure height (pixels)."""
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ValueError(f"names must be a sequence of organ names (labels 1..K), got {names!r}")
    if isinstance(height, bool) or not isinstance(height, numbers.Integral) or height <= 0:
        raise ValueError(f"height must be a positive integer (pixels), got {height!r}")
    return tuple(str(n) for n in names), int(height)


def _hex_colors(n: int) -> list[str]:
    """``organ_colors(n)`` as hex strings (plotly and matplotlib both read them)."""
    from matplotlib.colors import to_hex

    from ..plots.segmentation import organ_colors

    return [to_hex(c) for c in organ_colors(max(n, 1))]


def _legend(present: Sequence[int], names: Sequence[str], colors: Sequence[str], paper_h: float,
            label: str | None, per_row: int) -> list[dict]:
    """Paper annotations under the plot: the organ names in their colours, ``per_row`` a row, then ``label``."""
    notes = []
    for n, c in enumerate(present):
        row, col = divmod(n, per_row)
        in_row = min(per_row, len(present) - per_row * row)
        x = 0.5 + (col - (in_row - 1) / 2) / per_row  # centred rows
        notes.append(dict(text=names[c - 1] if c <= len(names) else f"label_{c}", x=x, y=-(6 + 16 * row) / paper_h,
                          font=dict(size=12, color=colors[c - 1])))
    if label:
        rows = -(-len(present) // per_row)
        notes.append(dict(text=label, x=0.5, y=-(6 + 16 * rows) / paper_h, font=dict(size=11, color="dimgray")))
    return [dict(xref="paper", yref="paper", xanchor="center", yanchor="top", showarrow=False, **n) for n in notes]


def _organ_mesh(labels: np.ndarray, organ: int, spacing, fine: tuple, cap: int) -> tuple[np.ndarray, np.ndarray]:
    """One organ's surface, re-meshed with coarser marching-cubes steps until it has at most ``cap`` faces (or the
    coarsest found, when a coarser step loses the organ: skimage raises "No surface found")."""
    from ..inference.meshes import label_meshes

    mesh, step = fine, 1
    while len(mesh[1]) > cap and step < max(labels.shape):
        step = max(step + 1, int(np.ceil(np.sqrt(len(fine[1]) / max(cap, 1)))))
        try:
            coarse = label_meshes((labels == organ).astype(np.uint8), spacing, {1: "organ"}, step_size=step)["organ"]
        except RuntimeError:
            break
        if not len(coarse[1]):
            break
        mesh = coarse
    return mesh


def _scene_meshes(maps: Sequence[np.ndarray], spacing, max_faces: int) -> list[dict[int, tuple]]:
    """Per label map, ``{organ id: (verts mm, faces)}``; the face budget shared by water-filling (small organs keep
    their full mesh, the large ones share what is left evenly)."""
    from ..inference.meshes import label_meshes

    fine = [{int(k.split("_")[1]): v for k, v in label_meshes(m, spacing).items()} for m in maps]
    order = sorted(((len(f[1]), s, c) for s, per in enumerate(fine) for c, f in per.items()))
    out: list[dict[int, tuple]] = [{} for _ in maps]
    remaining = int(max_faces)
    for i, (n_faces, s, c) in enumerate(order):
        cap = remaining // (len(order) - i)
        mesh = fine[s][c] if n_faces <= cap else _organ_mesh(maps[s], c, spacing, fine[s][c], cap)
        out[s][c] = mesh
        remaining -= len(mesh[1])
    return out


def _mesh_trace(verts: np.ndarray, faces: np.ndarray, color: str, name: str) -> go.Mesh3d:
    """A compact ``Mesh3d``: vertices rounded to 0.01 mm as float32, faces int16 when they fit (as ``voxel_mesh``)."""
    import plotly.graph_objects as go

    verts = np.round(verts, 2).astype(np.float32)
    faces = faces.astype(np.int16 if len(verts) <= np.iinfo(np.int16).max else np.int32)
    return go.Mesh3d(x=verts[:, 0], y=verts[:, 1], z=verts[:, 2], i=faces[:, 0], j=faces[:, 1], k=faces[:, 2],
                     color=color, name=name, flatshading=True, hovertemplate=f"{name}<extra></extra>",
                     lighting=dict(ambient=0.5, diffuse=0.8, specular=0.1, roughness=0.9), showlegend=False)


def organ_mesh_figure(labels: Any, spacing: Any, names: Sequence[str], prediction: Any = None,
                      max_faces: int = MAX_FACES, titles: Sequence[str] | None = None, height: int = 450,
                      label: str | None = None) -> go.Figure:
    """Organ surfaces of a label map in mm, one ``Mesh3d`` per organ; the truth and a prediction side by side.

    Surfaces come from :func:`voxhelpers.inference.meshes.label_meshes` (marching cubes at the half-voxel level, so a
    block of voxels ``[a:b]`` along an axis spans ``[(a − 0.5)·s, (b − 0.5)·s]`` mm for spacing ``s``). The scenes
    have equal aspect in mm (``aspectmode="data"``) and the same axis ranges: the box of all the organs of both maps,
    plus 5 % of its longest side (the whole grid when no organ is present), so truth and prediction are at one scale.
    They are seen from the front (+y, anterior in RAS, z up), in the colours of
    :func:`voxhelpers.plots.segmentation.organ_colors`, with the names of the organs present written under them.
    When the meshes together exceed ``max_faces`` triangles, the largest organs are re-meshed with a coarser
    marching-cubes step (2, 3, ...) until they fit; small organs keep their full mesh.

    Args:
        labels: (X, Y, Z) integer label map (0 = background, organ c = ``names[c - 1]``), e.g. a prepared case's
            truth in RAS; a NumPy array or a torch tensor.
        spacing: voxel size in mm along the three axes.
        names: the organ names of labels 1..K.
        prediction: optional (X, Y, Z) label map of the same shape, shown in a second scene.
        max_faces: triangle budget of the whole figure (both scenes), >= 100; a saved figure holds its meshes twice
            (plotly JSON and a PNG), so keep it small.
        titles: scene titles; default ``["truth", "prediction"]`` (``["labels"]`` without a prediction). A scene
            without an organ gets " (empty)".
        height: figure height in pixels.
        label: optional note under the scenes, e.g. "procedural stand-in data".

    Returns:
        ``plotly.graph_objects.Figure`` with one scene per map and one ``Mesh3d`` trace per organ present in each
        map (named by the organ, in increasing label order, truth first); no trace for an all-background map.

    Raises:
        ValueError: maps not 3-D, of different shapes, holding NaN, negative ids or ids above ``len(names)``; bad
            spacing, ``max_faces``, ``titles`` or ``height``.
    """
    from plotly.subplots import make_subplots

    names, height = _options(names, height)
    truth = _label_map(labels, "labels", None, len(names))
    maps = [truth] if prediction is None else [truth, _label_map(prediction, "prediction", truth.shape, len(names))]
    spacing = _spacing(spacing)
    if isinstance(max_faces, bool) or not isinstance(max_faces, numbers.Integral) or max_faces < 100:
        raise ValueError(f"max_faces must be an integer >= 100 (triangles in the whole figure), got {max_faces!r}")
    titles = list(titles) if titles is not None else (["labels"] if prediction is None else ["truth", "prediction"])
    if len(titles) != len(maps):
        raise ValueError(f"titles must name the {len(maps)} scene(s), got {titles!r}")

    meshes = _scene_meshes(maps, spacing, max_faces)
    present = sorted({c for per in meshes for c in per})
    colors = _hex_colors(max([len(names), *present]))
    titles = [t if per else f"{t} (empty)" for t, per in zip(titles, meshes, strict=True)]
    fig = make_subplots(rows=1, cols=len(maps), specs=[[{"type": "scene"}] * len(maps)], subplot_titles=titles,
                        horizontal_spacing=0.02 if len(maps) > 1 else 0.0)
    every = [v for per in meshes for v, _ in per.values()]
    lo, hi = (np.min([v.min(0) for v in every], 0), np.max([v.max(0) for v in every], 0)) if every else \
        (-0.5 * np.array(spacing), (np.array(truth.shape) - 0.5) * spacing)  # the organs' box, else the grid's
    pad = 0.05 * float(np.max(hi - lo))
    ranges = [[float(a) - pad, float(b) + pad] for a, b in zip(lo, hi, strict=True)]
    for col, per in enumerate(meshes, start=1):
        for c, (verts, faces) in sorted(per.items()):
            name = names[c - 1] if c <= len(names) else f"label_{c}"
            fig.add_trace(_mesh_trace(verts, faces, colors[c - 1], name), row=1, col=col)
        fig.update_scenes(aspectmode="data", camera=_FRONT, row=1, col=col,
                          **{f"{a}axis": dict(range=r, title=f"{a} (mm)", showspikes=False)
                             for a, r in zip("xyz", ranges, strict=True)})
    per_row = 3 * len(maps)  # organ names a row: about 150 px each in a scene as wide as it is high
    margin = dict(l=0, r=0, t=40, b=10 + 16 * (-(-len(present) // per_row) + (1 if label else 0)))
    notes = _legend(present, names, colors, height - margin["t"] - margin["b"], label, per_row)
    fig.update_layout(template="none", height=height, margin=margin, showlegend=False, uirevision="organs",
                      annotations=[*fig.layout.annotations, *notes])
    return fig


def _slice_inputs(image, labels, prediction, names, spacing, height):
    """Checked (image (X, Y, Z) float32 in [0, 1], {"truth": map, "prediction": map}, names, spacing, height)."""
    img = _to_numpy(image).astype(np.float32)
    img = img[0] if img.ndim == 4 and img.shape[0] == 1 else img
    if img.ndim != 3:
        raise ValueError(f"image must be (X, Y, Z) or (1, X, Y, Z), got shape {img.shape}")
    if not np.isfinite(img).all():
        raise ValueError("image holds NaN or inf values")
    if img.size and (img.min() < -1e-3 or img.max() > 1 + 1e-3):
        raise ValueError(f"image must be a windowed CT in [0, 1] (voxhelpers.data.ct.clip_normalise), got values in "
                         f"[{img.min():.4g}, {img.max():.4g}]")
    names, height = _options(names, height)
    maps = {k: _label_map(v, "labels" if k == "truth" else k, img.shape, len(names))
            for k, v in (("truth", labels), ("prediction", prediction)) if v is not None}
    spacing = (1.0, 1.0, 1.0) if spacing is None else _spacing(spacing)
    return np.clip(img, 0, 1), maps, names, spacing, height


def _composite(ct: np.ndarray, overlay: np.ndarray | None, colors: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: the grey CT slice with the organs blended in at 55 % opacity."""
    rgb = np.repeat(ct[..., None], 3, axis=-1)
    if overlay is not None:
        for c in np.unique(overlay[overlay > 0]):
            rgb[overlay == c] = 0.45 * rgb[overlay == c] + 0.55 * colors[c - 1, :3]
    return np.round(rgb * 255).astype(np.uint8)


def _slice_panels(img, maps, names, index: int) -> tuple[list[str], list[np.ndarray], list[int]]:
    """Panel titles, (H, W, 3) uint8 panels of axial slice ``index`` and the organ ids shown."""
    from ..plots.segmentation import _slice, organ_colors

    present = sorted({int(c) for m in maps.values() for c in np.unique(m[:, :, index]) if c > 0})
    colors = organ_colors(max([len(names), *present, 1]))
    ct = _slice(img, 2, index)
    panels = [_composite(ct, None, colors)] + [_composite(ct, _slice(m, 2, index), colors) for m in maps.values()]
    return ["CT", *maps], panels, present


def _default_slice(img: np.ndarray, maps: dict) -> int:
    """The axial slice through the organs' centre of mass (truth first, then prediction), else the middle one."""
    ref = next((m for m in maps.values() if (m > 0).any()), None)
    return int(round(np.argwhere(ref > 0)[:, 2].mean())) if ref is not None else img.shape[2] // 2


def ct_slice_figure(image: Any, labels: Any = None, prediction: Any = None, names: Sequence[str] = (),
                    spacing: Any = None, index: int | None = None, height: int = 360,
                    label: str | None = None) -> go.Figure:
    """One axial slice of a CT side by side with the truth and the prediction overlaid (plotly ``Image`` traces).

    Panels: "CT", then "truth" (``labels``) and "prediction" when given, each the grey slice with the organs blended
    in at 55 % in :func:`voxhelpers.plots.segmentation.organ_colors`; anterior up, the patient's right on the left;
    pixels ``spacing[0]`` × ``spacing[1]`` mm with equal axis scales (so the slice keeps its shape in mm). The organ
    names on the slice are written under the panels in their colours.

    Args:
        image: (X, Y, Z) or (1, X, Y, Z) windowed CT in [0, 1] (a prepared case's ``image``), RAS.
        labels: optional (X, Y, Z) integer label map (the truth).
        prediction: optional (X, Y, Z) integer label map.
        names: organ names of labels 1..K (ids above K raise); empty: any ids, coloured by id.
        spacing: voxel size in mm (default 1 mm).
        index: the axial slice (0..Z−1); default the one through the organs' centre of mass.
        height: figure height in pixels.
        label: optional note under the panels, e.g. "procedural stand-in data".

    Returns:
        ``plotly.graph_objects.Figure`` with one ``Image`` trace per panel (``z``: (Y, X, 3) uint8).

    Raises:
        ValueError: shapes that differ or are not 3-D, NaN, an image outside [0, 1], bad ids, spacing or index.
    """
    img, maps, names, spacing, height = _slice_inputs(image, labels, prediction, names, spacing, height)
    index = _default_slice(img, maps) if index is None else index
    if isinstance(index, bool) or not isinstance(index, numbers.Integral) or not 0 <= index < img.shape[2]:
        raise ValueError(f"index must be an axial slice in [0, {img.shape[2] - 1}], got {index!r}")
    return _slice_figure(img, maps, names, spacing, int(index), height, label)


def _slice_figure(img, maps, names, spacing, index: int, height: int, label: str | None) -> go.Figure:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    titles, panels, present = _slice_panels(img, maps, names, index)
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=titles, horizontal_spacing=0.02)
    for col, panel in enumerate(panels, start=1):
        fig.add_trace(go.Image(z=panel, dx=spacing[0], dy=spacing[1], name=titles[col - 1],
                               hovertemplate="x %{x:.0f} mm, y %{y:.0f} mm<extra></extra>"), row=1, col=col)
        fig.update_xaxes(visible=False, row=1, col=col)
        fig.update_yaxes(visible=False, scaleanchor=f"x{col if col > 1 else ''}", row=1, col=col)
    colors = _hex_colors(max([len(names), *present, 1]))
    per_row = 2 * len(panels)
    margin = dict(l=0, r=0, t=60, b=10 + 16 * (-(-len(present) // per_row) + (1 if label else 0)))
    title = f"axial slice {index} of {img.shape[2]} (z = {index * spacing[2]:.1f} mm)"
    notes = _legend(present, names, colors, height - margin["t"] - margin["b"], label, per_row)
    fig.update_layout(template="none", height=height, margin=margin, title=dict(text=title, x=0.5, font_size=13),
                      annotations=[*fig.layout.annotations, *notes])
    return fig


def _slice_png(img, maps, names, spacing, index: int, height: int, label: str | None) -> bytes:
    """A static PNG of :func:`ct_slice_figure` (matplotlib): the panels at their mm aspect, titles, organ legend."""
    import io

    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    from ..plots.figures import _new_figure

    titles, panels, present = _slice_panels(img, maps, names, index)
    rows, cols = panels[0].shape[:2]
    aspect = cols * spacing[0] / (rows * spacing[1])  # width / height of one panel in mm
    inches = height / 100
    static = _new_figure((max(3.0, len(panels) * 0.7 * inches * aspect), inches))
    axes = static.subplots(1, len(panels), squeeze=False)[0]
    for ax, title, panel in zip(axes, titles, panels, strict=True):
        ax.imshow(panel, extent=(0, cols * spacing[0], rows * spacing[1], 0), interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    colors = _hex_colors(max([len(names), *present, 1]))
    handles = [Patch(color=colors[c - 1], label=names[c - 1] if c <= len(names) else f"label_{c}") for c in present]
    if handles:
        static.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False)
    if label:
        static.text(0.99, 0.01, label, ha="right", va="bottom", fontsize=8, color="dimgray")
    static.suptitle(f"axial slice {index} of {img.shape[2]} (z = {index * spacing[2]:.1f} mm)", fontsize=10)
    static.subplots_adjust(left=0.01, right=0.99, top=0.84, bottom=0.14 if handles or label else 0.02, wspace=0.03)
    buffer = io.BytesIO()
    try:
        static.savefig(buffer, format="png", dpi=100)
    finally:
        plt.close(static)
    return buffer.getvalue()


def ct_slice_viewer(image: Any, labels: Any = None, prediction: Any = None, names: Sequence[str] = (),
                    spacing: Any = None, height: int = 360, label: str | None = None) -> ipywidgets.VBox:
    """Browse the axial slices of a CT with the truth and the prediction overlaid: an ``IntSlider`` over the slices.

    The figure is :func:`ct_slice_figure` of the slider's slice (starting at the organs' centre of mass). As in
    :func:`~voxhelpers.viewers.voxel_viewer`, it is a ``plotly.graph_objects.FigureWidget`` updated in place when
    ``anywidget`` is installed, else an ``ipywidgets.Output`` whose content is replaced by the new figure's MIME
    bundle (default plotly renderers) on every move; with :func:`~voxhelpers.viewers.use_saved_output_renderer` that
    bundle also holds a static PNG of the slice, so a saved notebook shows the last slice without plotly.js. A live
    kernel is needed for the slider.

    Args:
        image: (X, Y, Z) or (1, X, Y, Z) windowed CT in [0, 1] (a prepared case's ``image``), RAS.
        labels: optional (X, Y, Z) integer label map (the truth).
        prediction: optional (X, Y, Z) integer label map.
        names: organ names of labels 1..K (ids above K raise); empty: any ids, coloured by id.
        spacing: voxel size in mm (default 1 mm): the pixels' aspect and the slice position in mm.
        height: figure height in pixels.
        label: optional note under the panels, e.g. "procedural stand-in data".

    Returns:
        ``ipywidgets.VBox`` holding the slider (described "axial slice") and the figure (``FigureWidget`` or
        ``Output``).

    Raises:
        ValueError: shapes that differ or are not 3-D, NaN, an image outside [0, 1], bad ids or spacing.
    """
    import ipywidgets as widgets

    img, maps, names, spacing, height = _slice_inputs(image, labels, prediction, names, spacing, height)  # once
    slider = widgets.IntSlider(value=_default_slice(img, maps), min=0, max=img.shape[2] - 1,
                               description="axial slice", continuous_update=False)

    def build() -> go.Figure:
        return _slice_figure(img, maps, names, spacing, slider.value, height, label)

    from . import _has_anywidget  # looked up on the package, as voxel_viewer does (tests patch it there)

    if _has_anywidget():
        import plotly.graph_objects as go

        display = go.FigureWidget(build())

        def update(_change: Any = None) -> None:
            new = build()
            with display.batch_update():
                for trace, new_trace in zip(display.data, new.data, strict=True):
                    trace.z = new_trace.z
                display.layout.title.text = new.layout.title.text
                display.layout.annotations = new.layout.annotations

    else:
        import base64

        import plotly.io as pio

        from .voxels import PNG_RENDERER, _mimebundle

        display = widgets.Output()

        def update(_change: Any = None) -> None:
            bundle = {**_mimebundle(build()), "text/plain": "<CT slice viewer figure>"}
            if PNG_RENDERER in (pio.renderers.default or "").split("+"):  # saved outputs get a static PNG, as voxels do
                png = _slice_png(img, maps, names, spacing, slider.value, height, label)
                bundle["image/png"] = base64.b64encode(png).decode("ascii")
            display.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)

        update()

    slider.observe(update, names="value")
    return widgets.VBox([slider, display])
