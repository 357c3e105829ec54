"""Interactive plotly / ipywidgets viewers for voxel grids.

Functions return plotly figures and ipywidgets; the notebook displays them. plotly, ipywidgets and
scikit-image are imported inside the functions, so importing this module stays light and has no side
effects. Surfaces are extracted with marching cubes and drawn as ``Mesh3d`` traces, which stays small in a
saved notebook (a few thousand vertices for a 32^3 grid) and renders live as well as from saved outputs, with a
static PNG copy for viewers without plotly.js (see :func:`use_saved_output_renderer`, :func:`figure_png`).

Coordinates: voxel ``(i, j, k)`` is centred at ``(x, y, z) = (i, j, k)``; the surface of an occupied
voxel lies half a voxel from its centre, so a grid of shape (D, H, W) spans ``[-0.5, D - 0.5]`` along x.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..plots._checks import _as_groups, _as_volume_list, _binarize, _check_index, _check_titles
from ..plots.scenes import figure_png

if TYPE_CHECKING:  # pragma: no cover - typing only
    import ipywidgets
    import plotly.graph_objects as go

#: red, blue, green, purple (matplotlib tab10), the seed's colour order
DEFAULT_COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#9467bd")
#: the plotly renderer that adds a static PNG of a voxel figure (registered by :func:`use_saved_output_renderer`)
PNG_RENDERER = "voxel_png"
SAVED_OUTPUT_RENDERER = f"plotly_mimetype+{PNG_RENDERER}"


def _png_renderer():
    """A plotly ``MimetypeRenderer`` adding ``image/png`` (base64, :func:`figure_png`) to a figure's MIME bundle;
    figures without a ``Mesh3d`` trace, or with other traces it cannot draw, get nothing from it."""
    import base64

    from plotly.io.base_renderers import MimetypeRenderer

    class VoxelPNGRenderer(MimetypeRenderer):
        """``image/png`` of a voxel figure, drawn with matplotlib (see :func:`figure_png`)."""

        def to_mimebundle(self, fig_dict):
            data = fig_dict.get("data", [])
            if not data or any(t.get("type") != "mesh3d" for t in data):
                return {}
            return {"image/png": base64.b64encode(figure_png(fig_dict)).decode("ascii")}

    return VoxelPNGRenderer()


def use_saved_output_renderer() -> str:
    """Make plotly figures render live and read as a static picture wherever plotly.js is not there.

    Registers the ``"voxel_png"`` renderer (:func:`_png_renderer`) and sets ``plotly.io.renderers.default =
    "plotly_mimetype+voxel_png"``. Every displayed voxel figure then carries two representations:

    * ``application/vnd.plotly.v1+json`` (the ``plotly_mimetype`` renderer), drawn interactively by JupyterLab,
      Notebook 7, VS Code and nteract with their own copy of plotly.js (it ranks above images there);
    * ``image/png``, a static render of the same meshes (:func:`figure_png`, matplotlib, no CDN and no browser),
      which GitHub, nbconvert/nbviewer, the classic notebook and any offline copy show.

    No ``text/html`` is saved: HTML outranks PNG in GitHub's and nbconvert's choice, and plotly's HTML either loads
    plotly.js from a CDN (shown blank offline and on GitHub, which strips scripts) or embeds the several-MB bundle.
    Figures are stored twice (JSON and PNG), so keep them small: see :func:`voxel_mesh`.

    Returns:
        The previous value of ``plotly.io.renderers.default`` (to restore it if needed).
    """
    import plotly.io as pio

    if PNG_RENDERER not in pio.renderers:
        pio.renderers[PNG_RENDERER] = _png_renderer()
    previous = pio.renderers.default
    pio.renderers.default = SAVED_OUTPUT_RENDERER
    return previous


def voxel_mesh(
    volume: Any,
    threshold: float = 0.5,
    color: str = "#1f77b4",
    name: str | None = None,
    opacity: float = 1.0,
) -> go.Mesh3d:
    """Build the surface of a voxel grid as a plotly ``Mesh3d``.

    The grid is binarised (``value > threshold``), padded with one voxel of zeros on every side (so shapes
    touching the border are closed) and passed to ``skimage.measure.marching_cubes`` at level 0.5; vertices
    are shifted back by the pad, so voxel ``(i, j, k)`` is centred at ``(i, j, k)`` and a filled block
    ``[a:b]`` along x spans ``[a - 0.5, b - 0.5]``. Coordinates are rounded to 2 decimals and stored as
    float32 (faces as int16 below 32768 vertices, else int32) to keep saved notebooks small: a ball of radius
    12 in a 32^3 grid costs about 85 kB per mesh in each saved representation.

    Args:
        volume: NumPy array or torch tensor of shape (D, H, W) or (1, D, H, W), bool or probabilities in [0, 1].
        threshold: Occupancy threshold in [0, 1].
        color: Mesh colour (any plotly colour).
        name: Trace name shown on hover / legend.
        opacity: Mesh opacity in [0, 1].

    Returns:
        ``plotly.graph_objects.Mesh3d``; an empty mesh (``x = y = z = []``) when no voxel is occupied.

    Raises:
        ValueError: On a bad shape, NaN values or a threshold outside [0, 1].
    """
    import plotly.graph_objects as go

    grid = _binarize(volume, threshold)
    style = dict(
        color=color,
        name=name,
        opacity=opacity,
        flatshading=True,
        lighting=dict(ambient=0.5, diffuse=0.8, specular=0.1, roughness=0.9),
        hoverinfo="skip",
        showlegend=False,
    )
    if not grid.any():
        return go.Mesh3d(x=[], y=[], z=[], i=[], j=[], k=[], **style)

    from skimage.measure import marching_cubes

    padded = np.pad(grid.astype(np.float32), 1)
    verts, faces, _normals, _values = marching_cubes(padded, level=0.5, allow_degenerate=False)
    verts = np.round(verts - 1.0, 2).astype(np.float32)
    faces = faces.astype(np.int16 if len(verts) <= np.iinfo(np.int16).max else np.int32)
    return go.Mesh3d(
        x=verts[:, 0],
        y=verts[:, 1],
        z=verts[:, 2],
        i=faces[:, 0],
        j=faces[:, 1],
        k=faces[:, 2],
        **style,
    )


def voxel_figure(
    volumes: Any,
    titles: Sequence[str] | None = None,
    threshold: float = 0.5,
    colors: Sequence[str] | None = None,
    height: int = 400,
    label: str | None = None,
) -> go.Figure:
    """Show voxel grids side by side, one interactive 3D scene per volume.

    Each scene holds one :func:`voxel_mesh` trace, uses ``aspectmode="data"`` with the axis ranges fixed to
    the grid (``[-0.5, D - 0.5]`` ...), so shapes keep their proportions and the frame does not jump between
    samples, and hides its axes. ``uirevision`` is set so a camera moved by the user survives updates.

    Args:
        volumes: Sequence of N volumes of shape (D, H, W) or (1, D, H, W), or an array / tensor of shape
            (N, D, H, W) or (N, 1, D, H, W); bool or probabilities in [0, 1].
        titles: N scene titles; default "Voxel 1".."Voxel N". Empty volumes get the suffix " (empty)".
        threshold: Occupancy threshold in [0, 1].
        colors: Mesh colours cycled over the volumes; default red / blue / green / purple.
        height: Figure height in pixels.
        label: Optional note shown under the scenes, e.g. "procedural stand-in data".

    Returns:
        ``plotly.graph_objects.Figure`` with N scenes (``scene``, ``scene2``, ...) and N ``Mesh3d`` traces.

    Raises:
        ValueError: On bad shapes, NaN values, a threshold outside [0, 1], a wrong number of titles, empty
            ``colors`` or a non-positive ``height``.
    """
    from plotly.subplots import make_subplots

    vols = _as_volume_list(volumes)
    grids = [_binarize(v, threshold, f"volumes[{i}]") for i, v in enumerate(vols)]
    n = len(grids)
    titles = _check_titles(titles, n)
    colors = DEFAULT_COLORS if colors is None else colors
    if isinstance(colors, str) or len(colors) == 0:
        raise ValueError(f"colors must be a non-empty sequence of colours, got {colors!r}")
    if isinstance(height, bool) or not isinstance(height, numbers.Integral) or height <= 0:
        raise ValueError(f"height must be a positive integer (pixels), got {height!r}")

    titles = [t if grid.any() else f"{t} (empty)" for t, grid in zip(titles, grids, strict=True)]
    fig = make_subplots(
        rows=1,
        cols=n,
        specs=[[{"type": "scene"}] * n],
        subplot_titles=titles,
        horizontal_spacing=0.02 if n > 1 else 0.0,
    )
    hidden = dict(visible=False, showspikes=False)
    for index, grid in enumerate(grids):
        fig.add_trace(
            voxel_mesh(grid, threshold, color=colors[index % len(colors)], name=titles[index]),
            row=1,
            col=index + 1,
        )
        depth, height_, width = (max(s, 1) for s in grid.shape)
        fig.update_scenes(
            aspectmode="data",
            xaxis=dict(range=[-0.5, depth - 0.5], **hidden),
            yaxis=dict(range=[-0.5, height_ - 0.5], **hidden),
            zaxis=dict(range=[-0.5, width - 0.5], **hidden),
            row=1,
            col=index + 1,
        )
    if label:
        fig.add_annotation(
            text=label,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.0,
            xanchor="center",
            yanchor="top",
            showarrow=False,
            font=dict(size=11, color="dimgray"),
        )
    fig.update_layout(
        template="none",  # the default template adds ~8 kB of JSON per saved figure
        height=int(height),
        margin=dict(l=0, r=0, t=40, b=30 if label else 10),
        showlegend=False,
        uirevision="voxels",
    )
    return fig


def _viewer_figure(
    groups: Mapping[str, Any],
    sample: int,
    condition: int,
    threshold: float,
    height: int = 400,
    label: str | None = None,
) -> go.Figure:
    """Build the figure :func:`voxel_viewer` shows for one state of its controls.

    Each group is one scene, titled ``"<group> (sample s, condition c)"`` with the indices actually shown:
    ``sample`` and ``condition`` are clamped to ``N - 1`` and ``C - 1`` of each group, so groups of
    different sizes can be browsed together (a 4-D group has one condition and shows it for every
    ``condition``).

    Args:
        groups: Dict mapping a column title to an array / tensor of shape (N, C, D, H, W) or (N, D, H, W).
        sample: Sample index, >= 0.
        condition: Condition index, >= 0.
        threshold: Occupancy threshold in [0, 1].
        height: Figure height in pixels.
        label: Optional note under the scenes, e.g. "procedural stand-in data".

    Returns:
        ``plotly.graph_objects.Figure`` with one scene and one ``Mesh3d`` trace per group, in dict order.

    Raises:
        ValueError: On empty ``groups``, bad shapes, NaN values, negative indices or a bad threshold.
    """
    groups = _as_groups(groups)
    sample = _check_index(sample, "sample")
    condition = _check_index(condition, "condition")
    volumes, titles = [], []
    for title, array in groups.items():
        s = min(sample, array.shape[0] - 1)
        c = min(condition, array.shape[1] - 1)
        volumes.append(array[s, c])
        titles.append(f"{title} (sample {s}, condition {c})")
    return voxel_figure(volumes, titles=titles, threshold=threshold, height=height, label=label)


def _has_anywidget() -> bool:
    """Return True if ``anywidget`` (needed by ``plotly.graph_objects.FigureWidget``) can be imported."""
    try:
        import anywidget  # noqa: F401
    except ImportError:
        return False
    return True


def _mimebundle(fig: go.Figure) -> dict[str, Any]:
    """Render a figure to a Jupyter MIME bundle with the default plotly renderers (no side effects)."""
    import plotly.io as pio

    fig_dict = fig.to_dict()
    bundle: dict[str, Any] = {}
    for renderer_name in filter(None, (pio.renderers.default or "").split("+")):
        renderer = pio.renderers[renderer_name]
        if hasattr(renderer, "to_mimebundle"):
            bundle.update(renderer.to_mimebundle(dict(fig_dict)))
    if not bundle:  # e.g. "browser" as the default renderer: fall back on the plotly MIME type
        bundle.update(pio.renderers["plotly_mimetype"].to_mimebundle(dict(fig_dict)))
    bundle.setdefault("text/plain", "<voxel viewer figure>")
    return bundle


def voxel_viewer(
    groups: Mapping[str, Any],
    threshold: float = 0.5,
    height: int = 400,
    label: str | None = None,
    sample_description: str = "sample",
) -> ipywidgets.VBox:
    """Browse batches of voxel grids side by side with sample / condition / threshold controls.

    Controls: an ``IntSlider`` "sample" (0..max N - 1), a ``Dropdown`` "condition" (0..max C - 1) and a
    ``FloatSlider`` "threshold" (0.05..0.95). Each group is a column (one 3D scene); indices are clamped per
    group (see :func:`_viewer_figure`). The figure is a ``plotly.graph_objects.FigureWidget`` updated in place
    when ``anywidget`` is installed (the camera is kept), else an ``ipywidgets.Output`` whose content is
    replaced by the new figure's MIME bundle (default plotly renderers, see
    :func:`use_saved_output_renderer`) on every change. A live kernel is needed for the controls; for a
    figure that survives in a saved notebook use :func:`voxel_figure`.

    Args:
        groups: Dict mapping a column title (e.g. "real", "generated") to an array / tensor of shape
            (N, C, D, H, W) or (N, D, H, W) (one condition); bool or probabilities in [0, 1]. Groups may have
            different N and C.
        threshold: Initial occupancy threshold in [0.05, 0.95].
        height: Figure height in pixels.
        label: Optional note under the scenes, e.g. "procedural stand-in data".
        sample_description: the sample slider's label (e.g. "step" for a latent interpolation).

    Returns:
        ``ipywidgets.VBox`` holding an ``HBox`` of the three controls and the figure (``FigureWidget`` or
        ``Output``).

    Raises:
        ValueError: On empty ``groups``, bad shapes, NaN values or a threshold outside [0.05, 0.95].
    """
    import ipywidgets as widgets

    groups = _as_groups(groups)  # convert tensors once, not on every slider move
    if isinstance(threshold, bool) or not isinstance(threshold, numbers.Real) or not 0.05 <= threshold <= 0.95:
        raise ValueError(f"threshold must be a number in [0.05, 0.95] (the slider range), got {threshold!r}")
    n_max = max(a.shape[0] for a in groups.values())
    c_max = max(a.shape[1] for a in groups.values())

    sample = widgets.IntSlider(value=0, min=0, max=n_max - 1, description=sample_description,
                                continuous_update=False)
    condition = widgets.Dropdown(options=list(range(c_max)), value=0, description="condition")
    thresh = widgets.FloatSlider(
        value=float(threshold),
        min=0.05,
        max=0.95,
        step=0.05,
        description="threshold",
        continuous_update=False,
        readout_format=".2f",
    )

    def build() -> go.Figure:
        return _viewer_figure(groups, sample.value, condition.value, thresh.value, height=height, label=label)

    from . import _has_anywidget as has_anywidget  # looked up on the package: patching viewers._has_anywidget works

    if has_anywidget():
        import plotly.graph_objects as go

        display = go.FigureWidget(build())

        def update(_change: Any = None) -> None:
            new = build()
            with display.batch_update():
                for trace, new_trace in zip(display.data, new.data, strict=True):
                    trace.update(
                        x=new_trace.x, y=new_trace.y, z=new_trace.z, i=new_trace.i, j=new_trace.j, k=new_trace.k
                    )
                display.layout.annotations = new.layout.annotations

    else:
        display = widgets.Output()

        def update(_change: Any = None) -> None:
            bundle = _mimebundle(build())
            display.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)

        update()

    for control in (sample, condition, thresh):
        control.observe(update, names="value")
    return widgets.VBox([widgets.HBox([sample, condition, thresh]), display])
