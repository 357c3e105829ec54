"""No silent garbage: broken weights, empty generated sets and unusable data fail loudly or are flagged."""

import numpy as np
import pytest
import torch

from voxhelpers.config import voxel_cgan_config
from voxhelpers.data.shapes import available_synthevox3d
from voxhelpers.inference import evaluate_iwgan, evaluate_voxel_cgan
from voxhelpers.nets import CGANGenerator, IWGANGenerator
from voxhelpers.training import fit


def test_nan_weights_fail_evaluation_instead_of_a_perfect_score():
    G = CGANGenerator(z_dim=8)
    with torch.no_grad():
        next(G.parameters())[0].fill_(float("nan"))  # one NaN parameter: every output voxel becomes NaN
    with pytest.raises(FloatingPointError, match="NaN"):
        evaluate_voxel_cgan(G, None, n_consistency=4, n_generated=4)
    H = IWGANGenerator(z_dim=8)
    with torch.no_grad():
        next(H.parameters())[0].fill_(float("nan"))
    with pytest.raises(ValueError, match="NaN"):  # tanh_to_occupancy refuses it before any threshold
        evaluate_iwgan(H, np.ones((4, 32, 32, 32), bool), n=4)


def test_an_all_empty_generated_set_is_flagged_not_perfect():
    G = CGANGenerator(z_dim=8)
    with torch.no_grad():  # the last layer's bias at -100: sigmoid ≈ 0 everywhere, every shape empty
        last = [m for m in G.modules() if isinstance(m, torch.nn.ConvTranspose3d)][-1]
        last.weight.zero_()
        last.bias.fill_(-100.0)
    m = evaluate_voxel_cgan(G, None, n_consistency=4, n_generated=4)
    assert m["empty_fraction"] == 1.0
    assert np.isnan(m["avar"]) and np.isnan(m["aad"]) and "empty" in m["flag"]


def test_an_all_empty_training_set_is_refused_before_anything_is_written(tmp_path):
    cfg = voxel_cgan_config("smoke", data="procedural:car")
    with pytest.raises(ValueError, match="empty"):
        fit("voxel_cgan", cfg, tmp_path / "run", data=np.zeros((8, 32, 32, 32), bool), progress=False)
    assert not (tmp_path / "run").exists()


def test_wrong_grid_sizes_are_refused_with_the_expected_shape(tmp_path):
    cfg = voxel_cgan_config("smoke", data="procedural:car")
    for shape in ((8, 16, 16, 16), (8, 32, 32, 31)):
        with pytest.raises(ValueError, match=r"\(N, 32, 32, 32\)"):
            fit("voxel_cgan", cfg, tmp_path / "run", data=np.ones(shape, bool), progress=False)
    assert not (tmp_path / "run").exists()


def test_a_corrupt_category_file_is_not_offered(tmp_path):
    good, bad = tmp_path / "synthevox3d" / "02691156", tmp_path / "synthevox3d" / "02958343"
    good.mkdir(parents=True), bad.mkdir(parents=True)
    grids = np.zeros((3, 32, 32, 32), bool)
    grids[:, 10:20, 10:20, 10:20] = True
    np.save(good / "model_array.npy", grids)
    np.save(bad / "model_array.npy", grids)
    raw = (bad / "model_array.npy").read_bytes()
    (bad / "model_array.npy").write_bytes(raw[: len(raw) // 2])  # truncated
    assert available_synthevox3d(roots=[tmp_path]) == ["airplane"]
