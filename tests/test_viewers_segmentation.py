"""Tests for voxhelpers.viewers.segmentation: organ meshes in mm (checked against label_meshes and the block's
extent × spacing), the face budget, the slice figure's orientation and colours, the slice viewer's fallback, bad input.

Label maps are tiny (at most 24 voxels a side) so the file runs in a few seconds on CPU with the Agg backend.
"""

import base64
import io
import os

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib.image as mpimg  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from voxhelpers import viewers  # noqa: E402
from voxhelpers.inference.meshes import label_meshes  # noqa: E402
from voxhelpers.plots.segmentation import organ_colors  # noqa: E402

NAMES = ("liver", "RightKidney", "LeftKidney")
SPACING = (0.8, 1.5, 2.0)  # mm, anisotropic: a test in voxels would pass it by accident


def two_organs(shape=(12, 10, 8)):
    """Organ 1 is the block [2:6, 3:5, 1:7], organ 3 the block [8:11, 6:9, 2:4]; organ 2 is absent."""
    labels = np.zeros(shape, np.uint8)
    labels[2:6, 3:5, 1:7] = 1
    labels[8:11, 6:9, 2:4] = 3
    return labels


def trace_vertices(trace):
    return np.stack([np.asarray(trace.x), np.asarray(trace.y), np.asarray(trace.z)], axis=1).astype(float)


def find_widgets(widget):
    found = [widget]
    for child in getattr(widget, "children", ()):
        found.extend(find_widgets(child))
    return found


@pytest.fixture
def saved_output_renderer():
    """``viewers.use_saved_output_renderer()`` for one test, the previous default restored after it."""
    import plotly.io as pio

    previous = viewers.use_saved_output_renderer()
    yield pio
    pio.renderers.default = previous


# ----------------------------------------------------------------------------------------------------------------------
# organ_mesh_figure
# ----------------------------------------------------------------------------------------------------------------------
def test_one_trace_per_present_organ_named_and_coloured_by_organ():
    fig = viewers.organ_mesh_figure(two_organs(), SPACING, NAMES)
    assert [t.type for t in fig.data] == ["mesh3d", "mesh3d"]  # organ 2 is absent: no trace for it
    assert [t.name for t in fig.data] == ["liver", "LeftKidney"]
    colors = organ_colors(3)
    assert [t.color for t in fig.data] == [to_hex(colors[0]), to_hex(colors[2])]  # the static figures' colours
    texts = [a.text for a in fig.layout.annotations]
    assert texts[0] == "labels" and "liver" in texts and "LeftKidney" in texts and "RightKidney" not in texts
    empty = viewers.organ_mesh_figure(np.zeros((4, 4, 4), np.uint8), SPACING, NAMES)
    assert len(empty.data) == 0 and empty.layout.annotations[0].text == "labels (empty)"


def test_mesh_extents_in_mm_are_the_label_extent_times_spacing():
    fig = viewers.organ_mesh_figure(two_organs(), SPACING, NAMES)
    s = np.array(SPACING)
    # marching cubes at the half-voxel level: the block [a:b] spans [(a - 0.5)·s, (b - 0.5)·s] mm on each axis
    for trace, (lo, hi) in zip(fig.data, [((2, 3, 1), (6, 5, 7)), ((8, 6, 2), (11, 9, 4))], strict=True):
        v = trace_vertices(trace)
        np.testing.assert_allclose(v.min(0), (np.array(lo) - 0.5) * s, atol=0.006)  # rounded to 0.01 mm
        np.testing.assert_allclose(v.max(0), (np.array(hi) - 0.5) * s, atol=0.006)
    # the same surface as the reference mesher, vertex for vertex
    ref_verts, ref_faces = label_meshes(two_organs(), SPACING, NAMES)["liver"]
    np.testing.assert_allclose(trace_vertices(fig.data[0]), ref_verts, atol=0.006)
    np.testing.assert_array_equal(np.stack([fig.data[0].i, fig.data[0].j, fig.data[0].k], 1), ref_faces)
    # equal aspect in mm: the scene spans the organs' box in mm (both blocks), 5 % of its longest side around it
    scene = fig.layout.scene
    assert scene.aspectmode == "data"
    lo, hi = (np.array((2, 3, 1)) - 0.5) * s, (np.array((11, 9, 7)) - 0.5) * s
    pad = 0.05 * np.max(hi - lo)
    for axis, a, b in zip((scene.xaxis, scene.yaxis, scene.zaxis), lo, hi, strict=True):
        assert tuple(axis.range) == pytest.approx((a - pad, b + pad), abs=0.01)


def test_truth_and_prediction_side_by_side_in_two_scenes():
    truth = two_organs()
    pred = truth.copy()
    pred[pred == 3] = 0
    pred[0:2, 0:2, 0:2] = 2  # one organ missed, one hallucinated
    fig = viewers.organ_mesh_figure(torch.from_numpy(truth), SPACING, NAMES, prediction=pred)
    assert [(t.name, t.scene) for t in fig.data] == [("liver", "scene"), ("LeftKidney", "scene"),
                                                      ("liver", "scene2"), ("RightKidney", "scene2")]
    assert tuple(fig.layout.scene.xaxis.range) == tuple(fig.layout.scene2.xaxis.range)  # one scale for both
    assert [a.text for a in fig.layout.annotations][:2] == ["truth", "prediction"]
    assert fig.data[0].color == fig.data[2].color  # an organ has one colour in both scenes


def test_face_budget_coarsens_large_organs_and_keeps_small_ones():
    shape = (40, 40, 40)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    labels = (np.linalg.norm(grid - 19.5, axis=-1) <= 15).astype(np.uint8)  # a big ball: ~11,000 faces
    labels[1:3, 1:3, 1:3] = 2  # a tiny cube: 44 faces
    full = label_meshes(labels, (1.0, 1.0, 1.0))
    assert len(full["label_1"][1]) > 5000
    fig = viewers.organ_mesh_figure(labels, (1.0, 1.0, 1.0), ("ball", "speck"), max_faces=2000)
    faces = {t.name: len(t.i) for t in fig.data}
    assert sum(faces.values()) <= 2000
    assert faces["speck"] == len(full["label_2"][1])  # small organs keep their full mesh
    ball = trace_vertices(fig.data[0])
    np.testing.assert_allclose((ball.max(0) - ball.min(0)) / 2, 15.0, atol=1.5)  # coarser, still the same ball


def test_mesh_figure_carries_a_png_in_saved_outputs(saved_output_renderer):
    fig = viewers.organ_mesh_figure(two_organs(), SPACING, NAMES, prediction=two_organs(), height=300)
    bundle = fig._repr_mimebundle_()
    assert set(bundle) == {"application/vnd.plotly.v1+json", "image/png"}
    assert mpimg.imread(io.BytesIO(base64.b64decode(bundle["image/png"])), format="png").shape[:2] == (300, 600)


def test_mesh_figure_rejects_bad_input():
    labels = two_organs()
    with pytest.raises(ValueError, match="shape"):
        viewers.organ_mesh_figure(labels, SPACING, NAMES, prediction=labels[:-1])
    with pytest.raises(ValueError, match=r"\(X, Y, Z\)"):
        viewers.organ_mesh_figure(labels[0], SPACING, NAMES)
    with pytest.raises(ValueError, match="NaN"):
        viewers.organ_mesh_figure(np.where(labels > 0, np.nan, 0.0), SPACING, NAMES)
    with pytest.raises(ValueError, match="2 names"):
        viewers.organ_mesh_figure(labels, SPACING, NAMES[:2])  # label 3 has no name
    with pytest.raises(ValueError, match="spacing"):
        viewers.organ_mesh_figure(labels, (1.0, 0.0, 1.0), NAMES)
    with pytest.raises(ValueError, match="max_faces"):
        viewers.organ_mesh_figure(labels, SPACING, NAMES, max_faces=10)
    with pytest.raises(ValueError, match="titles"):
        viewers.organ_mesh_figure(labels, SPACING, NAMES, prediction=labels, titles=["only one"])


# ----------------------------------------------------------------------------------------------------------------------
# ct_slice_figure / ct_slice_viewer
# ----------------------------------------------------------------------------------------------------------------------
def ct_and_labels(shape=(6, 5, 4)):
    """A CT of grey 0.5 with one organ-1 voxel at the patient's far right and front, (X-1, Y-1) in slice 2."""
    image = np.full(shape, 0.5, np.float32)
    labels = np.zeros(shape, np.uint8)
    labels[-1, -1, 2] = 1
    return image, labels


def test_slice_figure_orientation_colours_and_pixel_size():
    image, labels = ct_and_labels()
    fig = viewers.ct_slice_figure(image, labels, labels, NAMES, spacing=SPACING)
    assert [t.type for t in fig.data] == ["image"] * 3
    assert [a.text for a in fig.layout.annotations][:3] == ["CT", "truth", "prediction"]
    assert "axial slice 2 of 4" in fig.layout.title.text  # the organs' slice, at z = 2 × 2 mm
    assert "4.0 mm" in fig.layout.title.text
    ct, truth = np.asarray(fig.data[0].z), np.asarray(fig.data[1].z)
    assert ct.shape == (5, 6, 3) and (fig.data[1].dx, fig.data[1].dy) == (0.8, 1.5)  # rows: Y (mm), columns: X
    assert (ct == 128).all()  # round(0.5 · 255)
    # anterior (y = Y-1) at the top, the patient's right (x = X-1) on the viewer's left: pixel (0, 0)
    expected = np.round((0.45 * 0.5 + 0.55 * organ_colors(3)[0, :3]) * 255)
    np.testing.assert_allclose(truth[0, 0], expected, atol=1)
    assert (truth.reshape(-1, 3)[1:] == 128).all()  # nothing else coloured


def test_slice_viewer_output_fallback_follows_the_slider(monkeypatch, saved_output_renderer):
    import ipywidgets

    monkeypatch.setattr(viewers, "_has_anywidget", lambda: False)
    image, labels = ct_and_labels()
    box = viewers.ct_slice_viewer(image[None], labels=labels, names=NAMES, spacing=SPACING, label="stand-in")
    slider = next(w for w in find_widgets(box) if isinstance(w, ipywidgets.IntSlider))
    output = next(w for w in find_widgets(box) if isinstance(w, ipywidgets.Output))
    assert (slider.min, slider.max, slider.value, slider.description) == (0, 3, 2, "axial slice")

    def shown():
        (item,) = output.outputs
        return item["data"]

    data = shown()
    assert "axial slice 2 of 4" in data["application/vnd.plotly.v1+json"]["layout"]["title"]["text"]
    png = mpimg.imread(io.BytesIO(base64.b64decode(data["image/png"])), format="png")  # static copy for GitHub
    assert png.shape[0] == 360 and "text/html" not in data
    slider.value = 0
    assert "axial slice 0 of 4" in shown()["application/vnd.plotly.v1+json"]["layout"]["title"]["text"]


def test_slice_viewer_without_the_saved_output_renderer_has_no_png(monkeypatch):
    import ipywidgets
    import plotly.io as pio

    monkeypatch.setattr(viewers, "_has_anywidget", lambda: False)
    monkeypatch.setattr(pio.renderers, "default", "plotly_mimetype")
    box = viewers.ct_slice_viewer(*ct_and_labels())
    output = next(w for w in find_widgets(box) if isinstance(w, ipywidgets.Output))
    assert "image/png" not in output.outputs[0]["data"]


def test_both_viewers_ask_the_package_for_anywidget(monkeypatch):
    calls = []
    monkeypatch.setattr(viewers, "_has_anywidget", lambda: calls.append(1) or False)
    viewers.ct_slice_viewer(*ct_and_labels())
    viewers.voxel_viewer({"x": np.zeros((1, 4, 4, 4))})
    assert len(calls) == 2  # patching voxhelpers.viewers._has_anywidget reaches both modules


def test_slice_viewer_rejects_bad_input():
    image, labels = ct_and_labels()
    with pytest.raises(ValueError, match="shape"):
        viewers.ct_slice_viewer(image, labels[:, :, :3])
    with pytest.raises(ValueError, match="shape"):
        viewers.ct_slice_viewer(image, labels=labels, prediction=labels[1:])
    with pytest.raises(ValueError, match="NaN"):
        viewers.ct_slice_viewer(np.where(labels > 0, np.nan, image), labels)
    with pytest.raises(ValueError, match=r"\(X, Y, Z\)"):
        viewers.ct_slice_viewer(image[0], None)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        viewers.ct_slice_viewer(np.full(image.shape, 40.0), labels)  # 40 HU of soft tissue, not windowed
    with pytest.raises(ValueError, match="index"):
        viewers.ct_slice_figure(image, labels, index=4)
