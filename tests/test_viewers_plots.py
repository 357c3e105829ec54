"""Tests for voxhelpers.viewers (plotly / ipywidgets) and voxhelpers.plots (matplotlib).

Grids are tiny (at most 8^3) so the whole file runs in a few seconds on CPU with the Agg backend.
"""

import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from voxhelpers import plots, viewers  # noqa: E402


# ----------------------------------------------------------------------------------------------------------------------
# fixtures
# ----------------------------------------------------------------------------------------------------------------------
def cube(size=8, lo=2, hi=5, value=1.0):
    """Grid of shape (size, size, size) with value in [lo:hi]^3 and 0 elsewhere."""
    grid = np.zeros((size, size, size), dtype=np.float32)
    grid[lo:hi, lo:hi, lo:hi] = value
    return grid


def mesh_vertices(mesh):
    return np.stack([np.asarray(mesh.x), np.asarray(mesh.y), np.asarray(mesh.z)], axis=1)


def find_widgets(widget):
    """All widgets below (and including) ``widget``, depth first."""
    found = [widget]
    for child in getattr(widget, "children", ()):
        found.extend(find_widgets(child))
    return found


def by_description(box, description):
    matches = [w for w in find_widgets(box) if getattr(w, "description", None) == description]
    assert len(matches) == 1, f"expected one control described {description!r}, found {len(matches)}"
    return matches[0]


def hue(ax):
    """Face colour of the first voxel collection divided by its largest channel (faces are shaded)."""
    rgb = np.asarray(ax.collections[0].get_facecolor()[0][:3])
    return rgb / rgb.max()


def annotation_texts(fig):
    return [a.text for a in fig.layout.annotations]


# ----------------------------------------------------------------------------------------------------------------------
# voxel_mesh
# ----------------------------------------------------------------------------------------------------------------------
def test_voxel_mesh_single_voxel_is_an_octahedron():
    # One voxel at (3, 3, 3): marching cubes at level 0.5 puts a vertex half-way to each of the 6 empty
    # neighbours -> 6 vertices at (3 +- 0.5, 3, 3) etc., joined by 8 triangles (an octahedron).
    grid = np.zeros((7, 7, 7), dtype=bool)
    grid[3, 3, 3] = True
    mesh = viewers.voxel_mesh(grid)
    verts = mesh_vertices(mesh)
    assert verts.shape == (6, 3)
    assert len(mesh.i) == len(mesh.j) == len(mesh.k) == 8
    np.testing.assert_allclose(verts.min(axis=0), [2.5, 2.5, 2.5])
    np.testing.assert_allclose(verts.max(axis=0), [3.5, 3.5, 3.5])
    # every vertex is 0.5 from the voxel centre along exactly one axis
    np.testing.assert_allclose(np.abs(verts - 3.0).sum(axis=1), 0.5)


def test_voxel_mesh_cube_bounds_and_closed_surface():
    # Voxels 2, 3, 4 filled along each axis; the surface sits half-way to the empty voxels 1 and 5,
    # so it spans [1.5, 4.5] on x, y and z (the pad of 1 voxel is subtracted back).
    mesh = viewers.voxel_mesh(cube(8, 2, 5))
    verts = mesh_vertices(mesh)
    faces = np.stack([mesh.i, mesh.j, mesh.k], axis=1)
    assert len(faces) > 0
    np.testing.assert_allclose(verts.min(axis=0), [1.5, 1.5, 1.5])
    np.testing.assert_allclose(verts.max(axis=0), [4.5, 4.5, 4.5])
    assert faces.min() >= 0 and faces.max() < len(verts)
    # closed triangulated sphere-like surface: E = 3F/2 and V - E + F = 2
    assert len(verts) - len(faces) // 2 == 2
    # coordinates are rounded to 2 decimals and stored compactly
    np.testing.assert_array_equal(verts, np.round(verts, 2))
    assert np.asarray(mesh.x).dtype == np.float32


def test_voxel_mesh_border_touching_shape_is_closed():
    # a full 3^3 grid touches every border; the zero pad closes it at [-0.5, 2.5]
    mesh = viewers.voxel_mesh(np.ones((3, 3, 3)))
    verts = mesh_vertices(mesh)
    np.testing.assert_allclose(verts.min(axis=0), [-0.5] * 3)
    np.testing.assert_allclose(verts.max(axis=0), [2.5] * 3)


def test_voxel_mesh_empty_and_threshold():
    empty = viewers.voxel_mesh(np.zeros((4, 4, 4)))
    assert len(empty.x) == len(empty.y) == len(empty.z) == 0
    # 0.4 probabilities are below the default threshold 0.5 -> empty; above threshold 0.3 -> a cube
    assert len(viewers.voxel_mesh(cube(value=0.4)).x) == 0
    assert len(viewers.voxel_mesh(cube(value=0.4), threshold=0.3).x) > 0
    # exactly at the threshold is not occupied (strict >)
    assert len(viewers.voxel_mesh(cube(value=0.5)).x) == 0


def test_voxel_mesh_accepts_torch_and_leading_channel():
    tensor = torch.from_numpy(cube())[None].requires_grad_(True)  # (1, D, H, W), needs detach
    mesh = viewers.voxel_mesh(tensor, color="red", name="t", opacity=0.5)
    assert len(mesh.x) == len(viewers.voxel_mesh(cube()).x)
    assert mesh.name == "t" and mesh.opacity == 0.5


# ----------------------------------------------------------------------------------------------------------------------
# voxel_figure / _viewer_figure / voxel_viewer
# ----------------------------------------------------------------------------------------------------------------------
def test_voxel_figure_scenes_titles_label():
    vols = np.stack([cube(), cube(lo=1, hi=7), np.zeros((8, 8, 8))])  # (3, D, H, W)
    fig = viewers.voxel_figure(vols, label="procedural stand-in data")
    scenes = list(fig.select_scenes())
    assert len(scenes) == len(fig.data) == 3
    assert [t.scene for t in fig.data] == ["scene", "scene2", "scene3"]
    assert all(s.aspectmode == "data" for s in scenes)
    assert all(s.xaxis.visible is False for s in scenes)
    assert tuple(scenes[0].xaxis.range) == (-0.5, 7.5)
    texts = annotation_texts(fig)
    assert {"Voxel 1", "Voxel 2", "Voxel 3 (empty)", "procedural stand-in data"} <= set(texts)
    assert len(fig.data[2].x) == 0
    assert fig.layout.height == 400


def test_voxel_figure_custom_titles_and_colors():
    fig = viewers.voxel_figure([cube(), cube()], titles=["a", "b"], colors=["#000000"], height=250)
    assert annotation_texts(fig) == ["a", "b"]
    assert [t.color for t in fig.data] == ["#000000", "#000000"]
    with pytest.raises(ValueError, match="2 strings"):
        viewers.voxel_figure([cube(), cube()], titles=["only one"])


def make_groups():
    """real: 5 samples, cubes of growing size; generated: 2 samples x 2 conditions, condition 1 empty."""
    real = np.stack([cube(8, 1, 2 + k) for k in range(5)])  # (5, 8, 8, 8)
    generated = np.zeros((2, 2, 8, 8, 8), dtype=np.float32)  # (N, C, D, H, W)
    generated[:, 0] = cube()
    return {"real": real, "generated": torch.from_numpy(generated)}


def test_viewer_figure_clamps_sample_and_selects_condition():
    groups = make_groups()
    fig = viewers._viewer_figure(groups, sample=4, condition=1, threshold=0.5)
    assert len(fig.data) == 2
    titles = annotation_texts(fig)
    # generated has N = 2 -> sample clamped to 1; real has one condition -> condition clamped to 0
    assert titles == ["real (sample 4, condition 0)", "generated (sample 1, condition 1) (empty)"]
    assert len(fig.data[0].x) > 0
    assert len(fig.data[1].x) == 0  # condition 1 is empty
    fig0 = viewers._viewer_figure(groups, sample=4, condition=0, threshold=0.5)
    assert len(fig0.data[1].x) > 0  # condition 0 holds the cube
    # real sample 4 is the cube [1:6]^3 -> surface up to 5.5; sample 10 is clamped to the same sample
    assert np.max(fig0.data[0].x) == pytest.approx(5.5)
    fig_big = viewers._viewer_figure(groups, sample=10, condition=0, threshold=0.5)
    np.testing.assert_array_equal(fig_big.data[0].x, fig0.data[0].x)
    # sample 0 is the single voxel [1:2]^3 -> surface up to 1.5
    assert np.max(viewers._viewer_figure(groups, 0, 0, 0.5).data[0].x) == pytest.approx(1.5)
    with pytest.raises(ValueError, match="non-negative"):
        viewers._viewer_figure(groups, sample=-1, condition=0, threshold=0.5)


def test_voxel_viewer_output_fallback(monkeypatch):
    monkeypatch.setattr(viewers, "_has_anywidget", lambda: False)
    box = viewers.voxel_viewer(make_groups(), label="procedural stand-in data")
    import ipywidgets

    assert isinstance(box, ipywidgets.VBox)
    sample = by_description(box, "sample")
    condition = by_description(box, "condition")
    threshold = by_description(box, "threshold")
    assert isinstance(sample, ipywidgets.IntSlider) and (sample.min, sample.max) == (0, 4)
    assert list(condition.options) == [0, 1]
    assert isinstance(threshold, ipywidgets.FloatSlider)
    assert (threshold.min, threshold.max, threshold.value) == (0.05, 0.95, 0.5)

    output = next(w for w in find_widgets(box) if isinstance(w, ipywidgets.Output))

    def shown_titles():
        (item,) = output.outputs
        layout = item["data"]["application/vnd.plotly.v1+json"]["layout"]
        return [a["text"] for a in layout["annotations"]]

    assert shown_titles()[:2] == ["real (sample 0, condition 0)", "generated (sample 0, condition 0)"]
    sample.value = 3
    condition.value = 1
    assert shown_titles()[:2] == ["real (sample 3, condition 0)", "generated (sample 1, condition 1) (empty)"]
    assert "procedural stand-in data" in shown_titles()


def png_image(b64):
    """Decode a base64 ``image/png`` bundle entry: (H, W, C) floats, after checking the PNG signature."""
    import base64
    import io

    raw = base64.b64decode(b64)
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(io.BytesIO(raw), format="png")


@pytest.fixture
def saved_output_renderer():
    """``viewers.use_saved_output_renderer()`` for one test, the previous default restored after it."""
    import plotly.io as pio

    previous = viewers.use_saved_output_renderer()
    yield pio
    pio.renderers.default = previous


def test_voxel_viewer_saved_output_renderer(monkeypatch, saved_output_renderer):
    monkeypatch.setattr(viewers, "_has_anywidget", lambda: False)
    assert saved_output_renderer.renderers.default == "plotly_mimetype+voxel_png"
    box = viewers.voxel_viewer({"x": np.stack([cube()] * 2)})
    output = find_widgets(box)[-1]
    (item,) = output.outputs
    assert "application/vnd.plotly.v1+json" in item["data"]  # interactive where plotly.js is (JupyterLab, VS Code)
    assert png_image(item["data"]["image/png"]).shape[:2] == (400, 400)  # static elsewhere: one 400 px scene
    assert "text/html" not in item["data"]  # no CDN script: HTML would outrank the PNG on GitHub / nbconvert


def test_saved_figure_mimebundle_has_a_png_fallback(saved_output_renderer):
    fig = viewers.voxel_figure([cube(), cube(lo=0, hi=8)], titles=["small", "full"], height=300, label="note")
    bundle = fig._repr_mimebundle_()  # what Jupyter saves when the figure is a cell's result
    assert set(bundle) == {"application/vnd.plotly.v1+json", "image/png"}
    image = png_image(bundle["image/png"])
    assert image.shape[:2] == (300, 600)  # height × one height per scene
    rgb = image[..., :3]
    red = (rgb[..., 0] > 0.5) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)  # scene 1: #d62728, shaded
    blue = (rgb[..., 2] > 0.4) & (rgb[..., 0] < 0.3)  # scene 2: #1f77b4, shaded
    assert red[:, :300].sum() > 100 and red[:, 300:].sum() == 0
    assert blue[:, 300:].sum() > 100 and blue[:, :300].sum() == 0
    assert blue[:, 300:].sum() > red[:, :300].sum()  # the full grid draws bigger than the 3³ cube
    # the figure's own JSON is unchanged and still carries the meshes
    assert bundle["application/vnd.plotly.v1+json"]["data"][0]["type"] == "mesh3d"


def test_figure_png_reads_the_figure_dict_and_its_typed_arrays():
    fig = viewers.voxel_figure([cube()], titles=["one"], height=200)
    fig_dict = fig.to_dict()
    assert "bdata" in fig_dict["data"][0]["x"]  # plotly stores NumPy arrays as base64 typed arrays
    from_dict, from_fig = viewers.figure_png(fig_dict), viewers.figure_png(fig)
    assert from_dict == from_fig
    assert mpimg.imread(__import__("io").BytesIO(from_dict), format="png").shape[:2] == (200, 200)
    assert viewers.figure_png(fig, width=320)[16:24] == (320).to_bytes(4, "big") + (200).to_bytes(4, "big")  # IHDR


def test_plotly_array_decodes_typed_arrays_and_lists():
    from voxhelpers.plots.scenes import plotly_array

    values = np.array([[1, -2, 3], [4, 5, -6]], dtype="<i2")
    typed = {"dtype": "i2", "bdata": __import__("base64").b64encode(values.tobytes()).decode(), "shape": "2, 3"}
    np.testing.assert_array_equal(plotly_array(typed), values)
    np.testing.assert_array_equal(plotly_array([0.5, 1.5]), [0.5, 1.5])
    assert plotly_array(None).shape == (0,)


def test_png_renderer_skips_figures_it_cannot_draw(saved_output_renderer):
    import plotly.graph_objects as go

    line = go.Figure(go.Scatter(x=[0, 1], y=[1, 0]))
    assert "image/png" not in line._repr_mimebundle_()  # no Mesh3d: no (misleading) picture
    empty = viewers.voxel_figure([np.zeros((4, 4, 4))])  # an empty mesh: the picture holds the "(empty)" title
    assert "image/png" in empty._repr_mimebundle_()
    with pytest.raises(ValueError, match="Mesh3d"):
        viewers.figure_png(line)


def test_voxel_viewer_figure_widget():
    pytest.importorskip("anywidget")
    import plotly.graph_objects as go

    box = viewers.voxel_viewer(make_groups())
    fig = next(w for w in find_widgets(box) if isinstance(w, go.FigureWidget))
    by_description(box, "condition").value = 1
    assert len(fig.data[1].x) == 0
    assert fig.layout.annotations[1].text == "generated (sample 0, condition 1) (empty)"


def test_voxel_viewer_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\(N, C, D, H, W\) or \(N, D, H, W\)"):
        viewers.voxel_viewer({"x": np.zeros((8, 8, 8))})
    with pytest.raises(ValueError, match="non-empty dict"):
        viewers.voxel_viewer({})
    with pytest.raises(ValueError, match=r"\[0.05, 0.95\]"):
        viewers.voxel_viewer({"x": np.zeros((1, 4, 4, 4))}, threshold=0.99)


# ----------------------------------------------------------------------------------------------------------------------
# plots
# ----------------------------------------------------------------------------------------------------------------------
def test_voxel_row_figure_layout_titles_and_empty():
    vols = [cube(6, 1, 1 + k) for k in range(6)]  # vols[0] is empty
    fig = plots.voxel_row_figure(vols, suptitle="samples", label="procedural stand-in data")
    # 6 volumes, 4 per row -> a 2 x 4 grid with only the 6 used axes created
    assert len(fig.axes) == 6
    assert all(ax.get_subplotspec().get_geometry()[:2] == (2, 4) for ax in fig.axes)
    assert [ax.name for ax in fig.axes] == ["3d"] * 6
    assert [ax.get_title() for ax in fig.axes] == ["Voxel 1 (empty)"] + [f"Voxel {i}" for i in range(2, 7)]
    assert "procedural stand-in data" in [t.get_text() for t in fig.texts]
    assert len(fig.axes[0].collections) == 0  # nothing drawn for the empty volume
    assert len(fig.axes[1].collections) > 0
    # colours cycle red / blue / green / purple: volume 5 (index 4) is red again
    np.testing.assert_allclose(hue(fig.axes[4]), [1.0, 0.0, 0.0])  # red, like volume 1
    np.testing.assert_allclose(hue(fig.axes[1]), [0.0, 0.0, 1.0])  # blue


def test_voxel_row_figure_all_empty_and_batch_tensor():
    fig = plots.voxel_row_figure(torch.zeros(2, 1, 4, 4, 4), titles=["a", "b"])  # (N, 1, D, H, W)
    assert [ax.get_title() for ax in fig.axes] == ["a (empty)", "b (empty)"]
    assert all(ax.get_subplotspec().get_geometry()[:2] == (1, 2) for ax in fig.axes)


def test_save_figure_writes_png_atomically(tmp_path):
    fig = plots.voxel_row_figure([cube(4, 1, 3), np.zeros((4, 4, 4))], label="stand-in")
    target = tmp_path / "images" / "nested" / "row.png"
    out = plots.save_figure(fig, target, dpi=20)
    assert out == target
    image = mpimg.imread(target)
    assert image.ndim == 3 and image.shape[2] == 4 and min(image.shape[:2]) > 10
    assert os.listdir(target.parent) == ["row.png"]  # no temporary file left behind
    assert os.stat(target).st_mode & 0o644 == 0o644


def test_save_figure_cleans_up_on_error(tmp_path, monkeypatch):
    fig = plots.voxel_row_figure([cube(4, 1, 3)])

    def broken_savefig(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(fig, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        plots.save_figure(fig, tmp_path / "row.png")
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match=r"\.png"):
        plots.save_figure(fig, tmp_path / "row.jpg")


def test_sample_sheet_figure():
    batch = np.stack([cube(4, 0, k + 1) for k in range(4)])  # (4, 4, 4, 4)
    fig = plots.sample_sheet_figure(batch, batch[::-1], np.zeros((5, 4, 4, 4)), suptitle="epoch 1", label="x")
    assert len(fig.axes) == 12
    assert all(ax.get_subplotspec().get_geometry()[:2] == (3, 4) for ax in fig.axes)
    row_labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert row_labels == ["condition 0", "condition 1", "combined"]
    assert [ax.get_title() for ax in fig.axes[8:]] == [f"Voxel {i} (empty)" for i in range(1, 5)]


def test_sample_sheet_figure_row_titles():
    batch = np.stack([cube(4, 0, k + 1) for k in range(2)])  # (2, 4, 4, 4)
    titles = ("condition 0: as generated", "condition 1: turned", "combined: judged")
    fig = plots.sample_sheet_figure(batch, batch, batch, row_titles=titles)
    assert [t.get_text() for t in fig.texts] == list(titles)  # one heading per row, top to bottom
    tops = [t.get_position()[1] for t in fig.texts]
    assert tops == sorted(tops, reverse=True)
    assert [ax.get_title() for ax in fig.axes[:2]] == ["sample 1", "sample 2"]
    assert all(not ax.texts for ax in fig.axes)  # no rotated short labels beside the headings
    with pytest.raises(ValueError, match="3 strings"):
        plots.sample_sheet_figure(batch, batch, batch, row_titles=titles[:2])


def test_history_figure():
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "loss_d": [1.0, 0.8, 0.6],
            "loss_g": [2.0, 1.5, 1.2],
            "acc_d": [0.5, 0.7, 0.9],
            "profile": ["tiny"] * 3,  # non-numeric: ignored
        }
    )
    fig = plots.history_figure(history)
    assert len(fig.axes) == 2
    assert sorted(line.get_label() for line in fig.axes[0].get_lines()) == ["loss_d", "loss_g"]
    assert [line.get_label() for line in fig.axes[1].get_lines()] == ["acc_d"]
    np.testing.assert_allclose(fig.axes[0].get_lines()[0].get_ydata(), [1.0, 0.8, 0.6])
    # no accuracy column -> one axes; repeated epochs are averaged: (1 + 3) / 2 = 2
    fig1 = plots.history_figure(pd.DataFrame({"epoch": [1, 1, 2], "loss_g": [1.0, 3.0, 5.0]}))
    assert len(fig1.axes) == 1
    np.testing.assert_allclose(fig1.axes[0].get_lines()[0].get_ydata(), [2.0, 5.0])
    with pytest.raises(ValueError, match="'epoch' column"):
        plots.history_figure(pd.DataFrame({"loss_g": [1.0]}))
    with pytest.raises(TypeError, match="DataFrame"):
        plots.history_figure({"epoch": [1], "loss_g": [1.0]})


# ----------------------------------------------------------------------------------------------------------------------
# bad input, everywhere
# ----------------------------------------------------------------------------------------------------------------------
def nan_cube():
    grid = cube()
    grid[0, 0, 0] = np.nan
    return grid


@pytest.mark.parametrize(
    "call",
    [
        lambda v: viewers.voxel_mesh(v),
        lambda v: viewers.voxel_figure([v]),
        lambda v: plots.voxel_row_figure([v]),
        lambda v: plots.sample_sheet_figure([v], [v], [v]),
    ],
    ids=["voxel_mesh", "voxel_figure", "voxel_row_figure", "sample_sheet_figure"],
)
def test_bad_volumes_raise(call):
    with pytest.raises(ValueError, match=r"\(D, H, W\)"):
        call(np.zeros((8, 8)))
    with pytest.raises(ValueError, match="NaN"):
        call(nan_cube())


def test_bad_batches_and_thresholds_raise():
    with pytest.raises(ValueError, match=r"\(N, D, H, W\)"):
        plots.voxel_row_figure(np.zeros((8, 8)))
    with pytest.raises(ValueError, match=r"\(N, D, H, W\)"):
        viewers.voxel_figure(np.zeros((2, 3, 8, 8, 8)))
    with pytest.raises(ValueError, match="NaN"):
        viewers.voxel_figure(nan_cube()[None])
    with pytest.raises(ValueError, match="NaN"):
        viewers._viewer_figure({"x": nan_cube()[None]}, 0, 0, 0.5)
    with pytest.raises(ValueError, match="empty"):
        plots.voxel_row_figure([])
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\]"):
        viewers.voxel_mesh(cube(), threshold=1.5)
    with pytest.raises(ValueError, match="ncols"):
        plots.voxel_row_figure([cube()], ncols=0)
