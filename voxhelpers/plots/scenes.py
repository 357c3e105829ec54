"""A static matplotlib copy of a plotly figure of 3D meshes: the PNG fallback of the saved voxel viewers.

:func:`voxhelpers.viewers.voxel_figure` draws voxel grids as plotly ``Mesh3d`` surfaces, one 3D scene each. A
notebook viewer without plotly.js (GitHub, nbconvert, an offline copy) shows none of it, so the saved outputs also
carry a PNG (:func:`voxhelpers.viewers.figure_png`) drawn here from the same figure: every scene at its layout
domain, every mesh's triangles shaded flat from the scene's camera, the paper annotations (subplot titles, the
label) where plotly puts them. It reads the figure as a plain dict (``fig.to_dict()``, or the JSON in a saved
notebook, typed arrays as ``{"dtype", "bdata"}`` included), so plotly itself is not imported. matplotlib is
imported inside the functions.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from .figures import _new_figure

if TYPE_CHECKING:  # pragma: no cover - typing only
    from matplotlib.figure import Figure

__all__ = ["mesh_scenes_figure", "plotly_array"]

_DEFAULT_EYE = (1.25, 1.25, 1.25)  # plotly's default camera
_DPI = 100
_PX_TO_PT = 72 / _DPI  # plotly font sizes are in pixels, matplotlib's in points


def plotly_array(value: Any) -> np.ndarray:
    """A plotly data array as NumPy: a list / array as is, a typed array ``{"dtype": "f4", "bdata": <base64>}``
    (how plotly ≥ 6 stores NumPy arrays in figure dicts and JSON) decoded little-endian, with its ``shape``."""
    if isinstance(value, Mapping) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]).newbyteorder("<"))
        shape = value.get("shape")
        if isinstance(shape, str):
            shape = tuple(int(s) for s in shape.split(","))
        return array.reshape(shape) if shape else array
    return np.asarray([] if value is None else value)


def _scene_names(fig_dict: Mapping) -> list[str]:
    """The figure's scenes, ``scene``, ``scene2``, ... in number order (from the layout and the traces)."""
    names = {k for k in fig_dict.get("layout", {}) if re.fullmatch(r"scene\d*", k)}
    names |= {t.get("scene", "scene") for t in fig_dict.get("data", []) if t.get("type") == "mesh3d"}
    return sorted(names, key=lambda n: int(n[5:] or 1))


def _view_angles(scene: Mapping) -> tuple[float, float, np.ndarray]:
    """(elevation, azimuth) in degrees matching the scene camera's eye (z up), and the unit view direction."""
    eye = scene.get("camera", {}).get("eye", {})
    e = np.array([eye.get(k, d) for k, d in zip("xyz", _DEFAULT_EYE, strict=True)], dtype=float)
    e = e / (np.linalg.norm(e) or 1.0)
    return float(np.degrees(np.arcsin(np.clip(e[2], -1, 1)))), float(np.degrees(np.arctan2(e[1], e[0]))), e


def _color(value: Any, default: str) -> str:
    """A colour matplotlib reads: ``value`` if it does (names, hex), else ``default`` (e.g. plotly's "rgb(1,2,3)")."""
    from matplotlib.colors import is_color_like

    return value if isinstance(value, str) and is_color_like(value) else default


def _draw_mesh(ax, trace: Mapping, toward_eye: np.ndarray) -> None:
    """Add one ``Mesh3d`` trace to 3D axes: its triangles, flat-shaded from the eye's side (two-sided Lambert)."""
    from matplotlib.colors import to_rgb
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    verts = np.stack([plotly_array(trace.get(k)).astype(float) for k in "xyz"], axis=1)  # (V, 3)
    faces = np.stack([plotly_array(trace.get(k)).astype(np.int64) for k in "ijk"], axis=1)  # (F, 3)
    if len(verts) == 0 or len(faces) == 0:
        return
    tri = verts[faces]  # (F, 3, 3)
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True).clip(1e-12)
    light = toward_eye + np.array([0.0, 0.0, 0.6])  # from the camera and a little above
    shade = 0.4 + 0.6 * np.abs(normals @ (light / np.linalg.norm(light)))
    rgb = np.asarray(to_rgb(_color(trace.get("color"), "#1f77b4")))
    colors = np.concatenate([np.clip(rgb[None] * shade[:, None], 0, 1), np.full((len(tri), 1),
                                                                            float(trace.get("opacity", 1.0)))], 1)
    ax.add_collection3d(Poly3DCollection(tri, facecolors=colors, edgecolors="none"))


def mesh_scenes_figure(fig_dict: Mapping, width: int | None = None) -> Figure:
    """Draw a plotly figure of ``Mesh3d`` scenes with matplotlib, laid out as plotly lays it out.

    Each scene (``layout.scene``, ``scene2``, ...) becomes 3D axes at its ``domain`` inside the margins, with the
    axis ranges and ``aspectmode="data"`` box of the layout, the axes hidden and the camera's eye as the view
    direction (plotly's default (1.25, 1.25, 1.25) when unset); each ``Mesh3d`` trace is drawn on its scene
    (:func:`_draw_mesh`); ``paper`` annotations become figure text at their position and anchors (the subplot
    titles, the label under the scenes). Traces of other types are not drawn.

    Args:
        fig_dict: the figure as a dict (``go.Figure.to_dict()`` or its JSON), e.g. from
            :func:`voxhelpers.viewers.voxel_figure`.
        width: figure width in pixels; default ``layout.width``, else one ``height`` per scene (at most 1,000).

    Returns:
        The matplotlib Figure (closed in pyplot), ``width`` × ``layout.height`` (default 450) pixels when saved at
        100 dpi.

    Raises:
        ValueError: the figure has no ``Mesh3d`` trace.
    """
    layout = fig_dict.get("layout", {})
    traces = [t for t in fig_dict.get("data", []) if t.get("type") == "mesh3d"]
    if not traces:
        raise ValueError("the figure has no Mesh3d trace to draw; expected a voxel figure (viewers.voxel_figure)")
    scenes = _scene_names(fig_dict)
    height = int(layout.get("height") or 450)
    width = int(width or layout.get("width") or min(1000, height * len(scenes)))
    margin = {"l": 80, "r": 80, "t": 100, "b": 80, **layout.get("margin", {})}
    paper_w, paper_h = width - margin["l"] - margin["r"], height - margin["t"] - margin["b"]

    def to_figure(x: float, y: float) -> tuple[float, float]:  # paper coordinates → figure fraction
        return (margin["l"] + x * paper_w) / width, (margin["b"] + y * paper_h) / height

    fig = _new_figure((width / _DPI, height / _DPI))
    for name in scenes:
        scene = layout.get(name, {})
        domain = scene.get("domain", {})
        (x0, x1), (y0, y1) = domain.get("x", (0, 1)), domain.get("y", (0, 1))
        left, bottom = to_figure(x0, y0)
        right, top = to_figure(x1, y1)
        ax = fig.add_axes((left, bottom, right - left, top - bottom), projection="3d")
        elev, azim, toward_eye = _view_angles(scene)
        ax.view_init(elev=elev, azim=azim)
        ranges = []
        for axis, set_lim in zip(("xaxis", "yaxis", "zaxis"), (ax.set_xlim, ax.set_ylim, ax.set_zlim), strict=True):
            lo, hi = scene.get(axis, {}).get("range", (0, 1))
            set_lim(lo, hi)
            ranges.append(max(hi - lo, 1e-9))
        ax.set_box_aspect(ranges if scene.get("aspectmode") == "data" else (1, 1, 1), zoom=1.4)
        ax.set_axis_off()
        for trace in traces:
            if trace.get("scene", "scene") == name:
                _draw_mesh(ax, trace, toward_eye)
    anchors = {"bottom": "bottom", "top": "top", "middle": "center", "auto": "center"}
    for note in layout.get("annotations", []):
        if note.get("xref", "paper") != "paper" or note.get("yref", "paper") != "paper":
            continue
        font = note.get("font", {})
        x, y = to_figure(note.get("x", 0.5), note.get("y", 0.5))
        fig.text(x, y, str(note.get("text", "")), fontsize=_PX_TO_PT * font.get("size", 12),
                 color=_color(font.get("color"), "black"), ha=note.get("xanchor", "center").replace("auto", "center"),
                 va=anchors.get(note.get("yanchor", "auto"), "center"))
    return fig


def figure_png(fig: Any, width: int | None = None) -> bytes:
    """Render a voxel figure (:func:`voxel_figure`) to PNG with matplotlib: the static copy of the plotly scenes.

    Draws every ``Mesh3d`` scene where plotly lays it out, from the scene's camera, with the subplot titles and the
    label (:func:`mesh_scenes_figure`); needs neither plotly.js nor a browser (plotly's own
    static export needs kaleido and Chrome).

    Args:
        fig: a plotly figure or its dict (``fig.to_dict()``, typed arrays included).
        width: image width in pixels; default the layout's width, else one figure height per scene (at most 1,000).

    Returns:
        PNG bytes, ``width`` × ``layout.height`` pixels.

    Raises:
        ValueError: the figure has no ``Mesh3d`` trace.
    """
    import io

    import matplotlib.pyplot as plt

    fig_dict = fig if isinstance(fig, Mapping) else fig.to_dict()
    static = mesh_scenes_figure(fig_dict, width=width)
    buffer = io.BytesIO()
    try:
        static.savefig(buffer, format="png", dpi=_DPI)
    finally:
        plt.close(static)
    return buffer.getvalue()
