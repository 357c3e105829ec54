"""Latent walks, samplers, the encoder, generator comparison, 3D-IWGAN model cards and tables, the image → voxel
figures, the data-string helpers, the viewer's slider label and the threshold tie rule.

Tiny networks, 8³ / 16² inputs where the function allows it; CPU only, a few seconds in all."""

import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from voxhelpers import plots, viewers
from voxhelpers.data.sources import data_available, grid_up
from voxhelpers.inference import encode, generate_unconditional, interpolate_latents, make_sampler
from voxhelpers.metrics import choose_threshold, voxel_set_metrics
from voxhelpers.nets import VAEIWGAN, CGANGenerator, IWGANGenerator
from voxhelpers.reports import compare_generators, iwgan_cards, iwgan_table

REPO = Path(__file__).resolve().parents[1]
SET_KEYS = ("cov", "mmd", "one_nna", "occupancy_error")


# --------------------------------------------------------------------------------------------------
# interpolate_latents
# --------------------------------------------------------------------------------------------------
def _orthogonal_pair(dim=16, norm=3.0, seed=0):
    """Two orthogonal float64 vectors of the same norm (Gram-Schmidt on two random draws)."""
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(dim), rng.standard_normal(dim)
    b = b - (a @ b) / (a @ a) * a
    return norm * a / np.linalg.norm(a), norm * b / np.linalg.norm(b)


def test_slerp_keeps_the_norm_and_matches_the_closed_form():
    a, b = _orthogonal_pair()
    z0, z1 = torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    path = interpolate_latents(z0, z1, steps=5, mode="slerp")
    assert path.shape == (5, 16) and path.dtype == torch.float32
    torch.testing.assert_close(path[0], z0, rtol=0, atol=1e-6)
    torch.testing.assert_close(path[-1], z1, rtol=0, atol=1e-6)
    assert float(path[2].norm()) == pytest.approx(3.0, abs=1e-5)  # mid-point on the sphere
    assert torch.allclose(path.norm(dim=1), torch.full((5,), 3.0), atol=1e-5)
    # closed form at t = 1/4, ω from the float64 vectors (π/2 here)
    omega = math.acos(float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert omega == pytest.approx(math.pi / 2)
    t = 0.25
    expected = (math.sin((1 - t) * omega) * a + math.sin(t * omega) * b) / math.sin(omega)
    np.testing.assert_allclose(path[1].numpy(), expected, atol=1e-5)
    # a generic (60°) pair of different norms: the same closed form
    c = 0.5 * a + math.sqrt(3) / 2 * b
    p2 = interpolate_latents(torch.tensor(a), torch.tensor(2 * c), steps=4)
    omega2 = math.pi / 3
    t = 2 / 3
    expected = (math.sin((1 - t) * omega2) * a + math.sin(t * omega2) * 2 * c) / math.sin(omega2)
    np.testing.assert_allclose(p2[2].numpy(), expected, atol=1e-5)


def test_linear_mode_ends_are_exact_and_mid_point_is_the_average():
    a, b = _orthogonal_pair(seed=1)
    z0, z1 = torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
    path = interpolate_latents(z0, z1, steps=3, mode="linear")
    assert torch.equal(path[0], z0) and torch.equal(path[-1], z1)
    torch.testing.assert_close(path[1], (z0 + z1) / 2)
    assert float(path[1].norm()) == pytest.approx(3.0 / math.sqrt(2), abs=1e-5)  # linear mid-points shrink
    steps = interpolate_latents(z0, z1, steps=6, mode="linear")
    torch.testing.assert_close(steps[1:] - steps[:-1], ((z1 - z0) / 5).expand(5, -1))  # evenly spaced


def test_slerp_ends_are_exactly_the_inputs():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):  # the formula alone left ~40 % of random pairs one ulp off at an end
        z0, z1 = torch.randn(32, generator=gen), torch.randn(32, generator=gen)
        path = interpolate_latents(z0, z1, steps=7)
        assert torch.equal(path[0], z0) and torch.equal(path[-1], z1)


def test_parallel_ends_fall_back_to_linear():
    z0 = torch.ones(4)
    z1 = 3 * z0  # cos = 12 / (2 · 6) = 1 exactly: ω = 0, slerp's formula would be 0/0
    path = interpolate_latents(z0, z1, steps=5)
    assert torch.isfinite(path).all()
    assert torch.equal(path, interpolate_latents(z0, z1, steps=5, mode="linear"))
    torch.testing.assert_close(path[2], 2 * z0)


def test_antiparallel_ends_fall_back_to_linear():
    z0 = torch.ones(4)
    path = interpolate_latents(z0, -z0, steps=9)
    torch.testing.assert_close(path, interpolate_latents(z0, -z0, steps=9, mode="linear"))


def test_interpolate_latents_rejects_bad_input():
    z = torch.zeros(8)
    with pytest.raises(ValueError, match="steps must be >= 2"):
        interpolate_latents(z, z, steps=1)
    with pytest.raises(ValueError, match="must both be"):
        interpolate_latents(z, torch.zeros(9))
    with pytest.raises(ValueError, match="must both be"):
        interpolate_latents(torch.zeros(2, 8), torch.zeros(2, 8))
    with pytest.raises(ValueError, match="mode must be"):
        interpolate_latents(z, z + 1, mode="cubic")


# --------------------------------------------------------------------------------------------------
# make_sampler, encode
# --------------------------------------------------------------------------------------------------
def test_make_sampler_unconditional_iwgan():
    torch.manual_seed(0)
    G = IWGANGenerator(200, channels=(16, 8, 8, 4))
    G.train()
    sample = make_sampler(G)
    a, b, c = sample(3, 7), sample(3, 7), sample(3, 8)
    assert a.shape == (3, 32, 32, 32) and a.dtype == torch.float32
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, b)  # the seed fixes the latents
    assert not torch.equal(a, c)
    z = torch.randn(3, 200, generator=torch.Generator().manual_seed(7))  # z ~ N(0, I) from that seed
    assert torch.equal(a, generate_unconditional(G, z)[:, 0])
    assert G.training  # sampling is done in eval mode and the mode is given back


def test_make_sampler_conditional_cgan():
    torch.manual_seed(0)
    G = CGANGenerator(z_dim=16, n_conditions=2, channels=(16, 8, 8, 4))
    s0, s1 = make_sampler(G, condition=0), make_sampler(G, condition=1)
    a = s0(2, 3)
    assert a.shape == (2, 32, 32, 32)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert torch.equal(a, s0(2, 3))
    assert not torch.equal(a, s0(2, 4))
    assert not torch.allclose(a, s1(2, 3))  # the condition changes the output


def test_encode_returns_the_eval_mode_means():
    torch.manual_seed(0)
    model = VAEIWGAN(64, 200, 3, (16, 8, 8, 4))
    images = torch.rand(3, 3, 64, 64)
    model.train()
    bn = [m for m in model.encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    stats = [m.running_mean.clone() for m in bn]
    mu = encode(model, images)
    assert model.training  # mode restored
    assert all(torch.equal(s, m.running_mean) for s, m in zip(stats, bn, strict=True))  # no BatchNorm update
    assert mu.shape == (3, 200) and mu.dtype == torch.float32 and mu.device.type == "cpu"
    assert not mu.requires_grad
    model.eval()
    with torch.no_grad():
        expected = model.encoder(images)[0]
    torch.testing.assert_close(mu, expected)
    model.train()
    with torch.no_grad():
        train_mu = model.encoder(images)[0]
    assert not torch.allclose(mu, train_mu)  # batch statistics would give other means
    model.eval()
    assert not encode(model, images).requires_grad and not model.training  # eval stays eval


# --------------------------------------------------------------------------------------------------
# compare_generators
# --------------------------------------------------------------------------------------------------
def _reference(n=4, size=8):
    grids = torch.zeros(n, size, size, size)
    for i in range(n):  # distinct boxes
        grids[i, i: i + 3, 1: 2 + i, 2:6] = 1
    return grids.bool()


def test_compare_generators_against_independent_metrics():
    ref_a, ref_b = _reference(4), _reference(5)[1:]
    calls = []

    def exact(n, seed):
        calls.append(("exact", n, seed))
        return ref_a[:n].float()

    def noise(n, seed):
        calls.append(("noise", n, seed))
        return torch.rand(n, 8, 8, 8, generator=torch.Generator().manual_seed(seed))

    df = compare_generators({"exact": exact, "noise": noise}, {"a": ref_a, "b": ref_b}, n=4, repeats=3, seed=5)
    # each generator draws once per repeat (seeds seed … seed + repeats − 1), shared by the references
    assert calls == [("exact", 4, s) for s in (5, 6, 7)] + [("noise", 4, s) for s in (5, 6, 7)]
    assert len(df) == 4
    assert list(zip(df["generator"], df["reference"], strict=True)) == [("exact", "a"), ("exact", "b"),
                                                                       ("noise", "a"), ("noise", "b")]
    assert set(SET_KEYS) | {f"{k}_std" for k in SET_KEYS} <= set(df.columns)
    assert (df["n"] == 4).all() and (df["repeats"] == 3).all()
    same = df.iloc[0]
    assert same["cov"] == 1.0 and same["mmd"] == 0.0 and same["occupancy_error"] == 0.0
    assert all(same[f"{k}_std"] == 0.0 for k in SET_KEYS)
    refs = {"a": ref_a, "b": ref_b}
    for _, row in df.iterrows():
        sampler = exact if row["generator"] == "exact" else noise
        ms = [voxel_set_metrics(sampler(4, 5 + r), refs[row["reference"]]) for r in range(3)]
        for k in SET_KEYS:
            vals = np.array([m[k] for m in ms])
            assert row[k] == pytest.approx(vals.mean())
            assert row[f"{k}_std"] == pytest.approx(vals.std())
    noisy = df.iloc[2]
    assert noisy["mmd"] > 0.1 and noisy["mmd_std"] > 0  # different draws, different scores


# --------------------------------------------------------------------------------------------------
# iwgan_cards / iwgan_table
# --------------------------------------------------------------------------------------------------
def _write_card(folder, tag, name, card):
    path = folder / tag / name
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(card))
    return path


def test_iwgan_cards_and_tables_from_fake_cards(tmp_path):
    gen = {"cov": 0.5, "mmd": 0.25, "one_nna": 0.75, "occupancy_error": 0.1, "avar_real": 0.4}
    p1 = _write_card(tmp_path, "x_y", "generation.json",
                     {"system": "iwgan", "config": {"data": "x:y"}, "epochs": 3, "profile": "smoke", "metrics": gen})
    p2 = _write_card(tmp_path, "x_z", "generation.json",
                     {"system": "iwgan", "config": {"data": "x:z"}, "epochs": 5, "profile": "full",
                      "metrics": {"cov": 0.125}})
    rec = {"iou": 0.3, "ap": 0.4, "threshold": 0.25, "baseline_iou": 0.2, "oracle_iou": 0.5, "iou_05": 0.28,
           "n_test": 6, "n_test_views": 24}
    p3 = _write_card(tmp_path, "x_y_rec", "reconstruction.json",
                     {"system": "vae_iwgan", "config": {"data": "x:y"}, "epochs": 2, "profile": "smoke",
                      "metrics": rec})
    _write_card(tmp_path, "airplane", "triple.json",
                {"system": "voxel_cgan", "config": {"category": "airplane", "loss": "triple"}, "metrics": {}})
    cards = iwgan_cards(tmp_path)
    assert set(cards) == {("iwgan", "x:y"), ("iwgan", "x:z"), ("vae_iwgan", "x:y")}
    assert cards[("iwgan", "x:y")]["path"] == str(p1)
    assert cards[("iwgan", "x:z")]["path"] == str(p2)
    assert cards[("vae_iwgan", "x:y")]["path"] == str(p3)
    assert cards[("iwgan", "x:y")]["metrics"] == gen

    gt = iwgan_table(cards, "iwgan")
    assert list(gt.columns) == ["data", "epochs", "profile", "cov", "mmd", "one_nna", "occupancy_error", "avar_real"]
    assert gt["data"].tolist() == ["x:y", "x:z"]
    assert gt["epochs"].tolist() == [3, 5] and gt["profile"].tolist() == ["smoke", "full"]
    assert gt.iloc[0][["cov", "mmd", "one_nna", "occupancy_error", "avar_real"]].tolist() == [0.5, 0.25, 0.75,
                                                                                             0.1, 0.4]
    assert gt.iloc[1]["cov"] == 0.125 and gt.iloc[1][["mmd", "one_nna"]].isna().all()  # missing metrics: empty

    rt = iwgan_table(cards, "vae_iwgan")
    assert list(rt.columns) == ["data", "epochs", "profile", *rec]
    assert len(rt) == 1 and rt.iloc[0]["data"] == "x:y"
    assert rt.iloc[0][list(rec)].tolist() == list(rec.values())


def test_iwgan_cards_of_the_shipped_models():
    folder = REPO / "models" / "iwgan"
    if not folder.is_dir():
        pytest.skip("models/iwgan not present")
    cards = iwgan_cards(folder)
    assert {("iwgan", "synthevox3d:airplane"), ("vae_iwgan", "modelnet10:chair")} <= set(cards)
    rec = cards[("vae_iwgan", "modelnet10:chair")]["metrics"]
    for k in ("iou", "ap", "baseline_iou"):
        assert isinstance(rec[k], float) and 0.0 <= rec[k] <= 1.0, k
    generation = [c for (s, _), c in cards.items() if s == "iwgan"]
    assert generation
    for card in generation:
        assert {"cov", "mmd", "one_nna"} <= set(card["metrics"]), card["path"]
        assert Path(card["path"]).name == "generation.json"
    assert Path(cards[("vae_iwgan", "modelnet10:chair")]["path"]).name == "reconstruction.json"
    table = iwgan_table(cards, "vae_iwgan")
    assert "modelnet10:chair" in table["data"].tolist()
    assert "synthevox3d:airplane" in iwgan_table(cards, "iwgan")["data"].tolist()


# --------------------------------------------------------------------------------------------------
# reconstruction_figure / image_grid_figure
# --------------------------------------------------------------------------------------------------
def _cubes(n, size=8):
    grids = np.zeros((n, size, size, size), dtype=np.float32)
    for i in range(n):
        grids[i, 1: 3 + i, 2:5, 2:6] = 1
    return grids


def _axes(fig):
    flat = [a for a in fig.axes if a.name != "3d"]
    return flat, [a for a in fig.axes if a.name == "3d"]


def test_reconstruction_figure_rows_and_titles():
    rng = np.random.default_rng(0)
    images = rng.random((2, 3, 16, 16)).astype(np.float32)
    targets, recs = _cubes(2), _cubes(2) * 0.9
    fig = plots.reconstruction_figure(images, targets)
    try:
        flat, three = _axes(fig)
        assert (len(flat), len(three)) == (2, 2)
        assert all(a.get_subplotspec().get_geometry()[:2] == (2, 2) for a in fig.axes)  # 2 rows × N columns
        assert [a.get_title() for a in flat] == ["input render", ""]
        assert {a.get_title() for a in three} == {"voxels"}
        np.testing.assert_allclose(flat[0].images[0].get_array(), images[0].transpose(1, 2, 0))
    finally:
        plt.close(fig)
    fig = plots.reconstruction_figure(images.transpose(0, 2, 3, 1), targets, recs, ious=[0.5, 0.25],
                                      titles=["view a", "view b"])
    try:
        flat, three = _axes(fig)
        assert (len(flat), len(three)) == (2, 4)
        assert all(a.get_subplotspec().get_geometry()[:2] == (3, 2) for a in fig.axes)  # 3 rows × N columns
        assert [a.get_title() for a in flat] == ["view a", "view b"]
        titles = [a.get_title() for a in three]
        assert titles.count("target") == 2
        assert "reconstruction\nIoU 0.50" in titles and "reconstruction\nIoU 0.25" in titles
        np.testing.assert_allclose(flat[1].images[0].get_array(), images[1].transpose(1, 2, 0))
    finally:
        plt.close(fig)


def test_reconstruction_figure_rejects_bad_input():
    images, targets = np.zeros((2, 3, 16, 16), dtype=np.float32), _cubes(2)
    with pytest.raises(ValueError, match="as many targets"):
        plots.reconstruction_figure(images, _cubes(3))
    with pytest.raises(ValueError, match="as many targets"):
        plots.reconstruction_figure(images, targets, _cubes(1))
    with pytest.raises(ValueError, match="images must be"):
        plots.reconstruction_figure(np.zeros((2, 4, 16, 16)), targets)
    with pytest.raises(ValueError, match="images must be"):
        plots.reconstruction_figure(np.zeros((3, 16, 16)), targets)
    bad = images.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        plots.reconstruction_figure(bad, targets)
    with pytest.raises(ValueError, match="ious must hold 2"):
        plots.reconstruction_figure(images, targets, targets, ious=[0.5])
    with pytest.raises(ValueError, match="titles must hold 2"):
        plots.reconstruction_figure(images, targets, titles=["a", "b", "c"])
    assert not plt.get_fignums()  # nothing left open by the failures


def test_image_grid_figure_layout_and_titles():
    rng = np.random.default_rng(1)
    images = rng.random((5, 16, 16, 3)).astype(np.float32)
    fig = plots.image_grid_figure(images, titles=[f"v{i}" for i in range(5)], ncols=2)
    try:
        assert len(fig.axes) == 5
        assert [a.get_title() for a in fig.axes] == ["v0", "v1", "v2", "v3", "v4"]
        assert fig.axes[0].get_subplotspec().get_geometry()[:2] == (3, 2)
        np.testing.assert_allclose(fig.axes[4].images[0].get_array(), images[4])
    finally:
        plt.close(fig)
    fig = plots.image_grid_figure(torch.tensor(images).permute(0, 3, 1, 2), ncols=8)  # channels first, ncols > N
    try:
        assert len(fig.axes) == 5 and fig.axes[0].get_subplotspec().get_geometry()[:2] == (1, 5)
        assert all(a.get_title() == "" for a in fig.axes)
        np.testing.assert_allclose(fig.axes[2].images[0].get_array(), images[2])
    finally:
        plt.close(fig)


def test_image_grid_figure_rejects_bad_input():
    images = np.zeros((3, 3, 16, 16), dtype=np.float32)
    with pytest.raises(ValueError, match="ncols must be"):
        plots.image_grid_figure(images, ncols=0)
    with pytest.raises(ValueError, match="titles must hold 3"):
        plots.image_grid_figure(images, titles=["a", "b"])
    with pytest.raises(ValueError, match="images must be"):
        plots.image_grid_figure(np.zeros((3, 2, 16, 16)))
    with pytest.raises(ValueError, match="images must be"):
        plots.image_grid_figure(np.zeros((0, 3, 16, 16)))
    bad = images.copy()
    bad[1, 2, 3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        plots.image_grid_figure(bad)
    assert not plt.get_fignums()


# --------------------------------------------------------------------------------------------------
# grid_up / data_available
# --------------------------------------------------------------------------------------------------
def test_grid_up():
    assert grid_up("synthevox3d:airplane") == "z"
    assert grid_up("modelnet10:chair") == "z"
    assert grid_up("procedural:chair") == "y"
    with pytest.raises(ValueError, match="unknown data source 'shapenet'"):
        grid_up("shapenet:chair")


def test_data_available_with_the_real_data(data_root):
    assert data_available("procedural:chair")
    assert data_available("synthevox3d:airplane") == (data_root / "synthevox3d" / "02691156").is_dir()
    assert data_available("synthevox3d:airplane")
    assert data_available("modelnet10:chair") == (data_root / "modelnet10" / "chair.npy.gz").is_file()
    assert not data_available("modelnet10:table")
    # an unknown source: the one data-string resolver's message, listing the valid sources
    sources = r"source in \('synthevox3d', 'modelnet10', 'procedural', 'npy'\).*'shapenet:chair'"
    with pytest.raises(ValueError, match=sources):
        data_available("shapenet:chair")


def test_data_available_without_data(monkeypatch, tmp_path):
    package_data = REPO / "data"
    if (package_data / "synthevox3d").exists() or (package_data / "modelnet10").exists():
        pytest.skip("the package's own data/ folder holds real data")
    monkeypatch.setenv("VOXHELPERS_DATA", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    assert data_available("procedural:chair")
    for data in ("synthevox3d:airplane", "synthevox3d:chair", "modelnet10:chair", "modelnet10:table"):
        assert not data_available(data), data


# --------------------------------------------------------------------------------------------------
# voxel_viewer's slider label, choose_threshold's ties
# --------------------------------------------------------------------------------------------------
def test_voxel_viewer_sample_description(monkeypatch):
    import ipywidgets

    monkeypatch.setattr(viewers, "_has_anywidget", lambda: False)
    box = viewers.voxel_viewer({"walk": _cubes(3)}, sample_description="step")
    assert isinstance(box, ipywidgets.VBox) and isinstance(box.children[0], ipywidgets.HBox)
    slider = box.children[0].children[0]
    assert isinstance(slider, ipywidgets.IntSlider)
    assert slider.description == "step" and (slider.min, slider.max) == (0, 2)
    default = viewers.voxel_viewer({"walk": _cubes(3)})
    assert default.children[0].children[0].description == "sample"


def test_choose_threshold_ties_go_to_the_lowest():
    target = torch.from_numpy(_cubes(2)).bool()
    probs = target.float() * 0.9  # every threshold below 0.9 reproduces the target: IoU 1
    best, scores = choose_threshold(probs, target, thresholds=(0.7, 0.3, 0.5, 0.95))
    assert scores == {0.7: 1.0, 0.3: 1.0, 0.5: 1.0, 0.95: 0.0}
    assert best == 0.3


def test_compare_generators_rejects_empty_budgets():
    ref = torch.zeros(2, 4, 4, 4)
    ref[:, 1:3, 1:3, 1:3] = 1
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        compare_generators({"g": lambda n, seed: ref[:n]}, {"r": ref}, n=2, repeats=0)
