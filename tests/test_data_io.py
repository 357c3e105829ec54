"""The one grid validator, binvox files, your own shapes through ``npy:<file or folder>``, the torch Dataset."""

import numpy as np
import pytest
import torch
from conftest import binvox_bytes

from voxhelpers.data.datasets import VoxelDataset
from voxhelpers.data.grids import check_grids
from voxhelpers.data.io import load_binvox
from voxhelpers.data.sources import load_grids
from voxhelpers.data.synthetic import procedural_shapes

HEADER = b"#binvox 1\ndim 2 2 2\ntranslate 0 0 0\nscale 1\ndata\n"
# binvox stores x-major, then z, then y (y fastest): flat index = 4x + 2z + y in a 2³ grid.
# runs (value, count): (0, 1) (1, 2) (0, 1) (1, 1) (0, 3) -> flat [0, 1, 1, 0, 1, 0, 0, 0], 1 + 2 + 1 + 1 + 3 = 8
# occupied: flat 1 = (x0, z0, y1) -> grid[0, 1, 0]; flat 2 = (x0, z1, y0) -> grid[0, 0, 1]; flat 4 = grid[1, 0, 0]
RUNS = bytes([0, 1, 1, 2, 0, 1, 1, 1, 0, 3])


# --------------------------------------------------------------------------------------------------
# check_grids
# --------------------------------------------------------------------------------------------------
def test_check_grids_accepts_binary_sets_with_or_without_a_channel_axis():
    grids = procedural_shapes("chair", 3)
    out = check_grids(grids[:, None], "chairs", size=32)  # (N, 1, 32, 32, 32): the channel axis is dropped
    assert out.shape == (3, 32, 32, 32) and out.dtype == bool
    np.testing.assert_array_equal(out, grids)
    ints = check_grids(grids.astype(np.uint8), size=32)  # numbers in {0, 1} become bool
    assert ints.dtype == bool and np.array_equal(ints, grids)
    assert check_grids(np.zeros((2, 31, 32, 32)) + grids[:2, :31], "any size").shape == (2, 31, 32, 32)  # no size


def test_check_grids_refuses_the_wrong_shape_naming_the_expected_one():
    with pytest.raises(ValueError, match=r"mine: expected grids \(N, 32, 32, 32\), got shape \(2, 16, 16, 16\)"):
        check_grids(np.ones((2, 16, 16, 16), bool), "mine", size=32)
    with pytest.raises(ValueError, match=r"expected grids \(N, 32, 32, 32\), got shape \(2, 32, 32, 31\)"):
        check_grids(np.ones((2, 32, 32, 31), bool), size=32)
    with pytest.raises(ValueError, match=r"\(N, D, H, W\).*got shape \(2, 2, 2\)"):
        check_grids(np.zeros((2, 2, 2), bool))
    with pytest.raises(ValueError, match=r"non-empty set.*got shape \(0, 2, 2, 2\)"):
        check_grids(np.zeros((0, 2, 2, 2), bool))
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 32\) \(or \(N, 1, D, H, W\)\), got shape \(2, 3, 32, 32, 32\)"):
        check_grids(np.ones((2, 3, 32, 32, 32), bool), size=32)  # a channel axis other than one


def test_check_grids_refuses_empty_sets_and_non_binary_values():
    with pytest.raises(ValueError, match="every one of the 3 grids is empty"):
        check_grids(np.zeros((3, 4, 4, 4), bool))
    assert check_grids(np.zeros((3, 4, 4, 4), bool), allow_empty_set=True).shape == (3, 4, 4, 4)
    with pytest.raises(ValueError, match=r"expected binary voxel values 0 and 1, found 0.5 \(threshold"):
        check_grids(np.full((1, 2, 2, 2), 0.5))
    with pytest.raises(ValueError, match="found 2, 3"):
        check_grids(np.array([[[[0, 1], [2, 3]]]]))
    with pytest.raises(ValueError, match="NaN or inf"):
        check_grids(np.full((1, 2, 2, 2), np.nan))
    with pytest.raises(ValueError, match="NaN or inf"):
        check_grids(np.full((1, 2, 2, 2), np.inf))
    with pytest.raises(TypeError, match="expected binary voxels.*got dtype <U1"):
        check_grids(np.full((1, 2, 2, 2), "1"))


# --------------------------------------------------------------------------------------------------
# binvox
# --------------------------------------------------------------------------------------------------
def test_load_binvox_on_a_hand_written_file(tmp_path):
    path = tmp_path / "three.binvox"
    path.write_bytes(HEADER + RUNS)
    grid = load_binvox(path)
    expected = np.zeros((2, 2, 2), bool)
    expected[0, 1, 0] = expected[0, 0, 1] = expected[1, 0, 0] = True
    assert grid.dtype == bool and grid.shape == (2, 2, 2)
    np.testing.assert_array_equal(grid, expected)


def test_load_binvox_refuses_broken_files(tmp_path):
    bad = tmp_path / "bad.binvox"
    bad.write_bytes(HEADER + RUNS[:-2])  # the last run missing: 5 of 8 voxels
    with pytest.raises(ValueError, match=r"truncated or corrupt binvox data \(runs do not fill a \(2, 2, 2\) grid\)"):
        load_binvox(bad)
    bad.write_bytes(HEADER + RUNS[:-1])  # cut inside a (value, count) pair
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_binvox(bad)
    bad.write_bytes(b"#binvox 1\ndim 2 2 2\n")  # the header cut before its data line
    with pytest.raises(ValueError, match="without a 'data' line"):
        load_binvox(bad)
    bad.write_bytes(b"\x93NUMPY" + RUNS)
    with pytest.raises(ValueError, match="not a binvox file"):
        load_binvox(bad)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_binvox(tmp_path / "absent.binvox")


# --------------------------------------------------------------------------------------------------
# your own shapes: npy:<file> and npy:<folder>
# --------------------------------------------------------------------------------------------------
def test_load_grids_reads_an_array_file(tmp_path):
    chairs = procedural_shapes("chair", 3)
    np.save(tmp_path / "mine.npy", chairs.astype(np.uint8))
    got = load_grids(f"npy:{tmp_path / 'mine.npy'}")
    assert got.dtype == bool and np.array_equal(got, chairs)
    np.save(tmp_path / "channel.npy", chairs[:, None])  # (N, 1, 32, 32, 32)
    assert np.array_equal(load_grids(f"npy:{tmp_path / 'channel.npy'}"), chairs)
    np.save(tmp_path / "small.npy", chairs[:, :16, :16, :16])
    with pytest.raises(ValueError, match=r"small.npy: expected grids \(N, 32, 32, 32\), got shape \(3, 16, 16, 16\)"):
        load_grids(f"npy:{tmp_path / 'small.npy'}")
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_grids(f"npy:{tmp_path / 'absent.npy'}")


def test_load_grids_reads_a_folder_of_npy_and_binvox_files(tmp_path):
    a, b, c = procedural_shapes("car", 3, seed=4)
    folder = tmp_path / "shapes"
    folder.mkdir()
    np.save(folder / "a.npy", a)
    (folder / "b.binvox").write_bytes(binvox_bytes(b))
    np.save(folder / "c.npy", c.astype(np.float32))
    (folder / "notes.txt").write_text("not a shape")  # other files are ignored
    assert np.array_equal(load_binvox(folder / "b.binvox"), b)  # the encoder agrees with the reader
    got = load_grids(f"npy:{folder}")
    assert got.shape == (3, 32, 32, 32) and np.array_equal(got, np.stack([a, b, c]))  # sorted by file name
    np.save(folder / "d.npy", np.ones((16, 16, 16), bool))
    with pytest.raises(ValueError, match="grids of different shapes"):
        load_grids(f"npy:{folder}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="the folder holds no .npy"):
        load_grids(f"npy:{tmp_path / 'empty'}")


# --------------------------------------------------------------------------------------------------
# the Dataset
# --------------------------------------------------------------------------------------------------
def test_voxel_dataset_items():
    grids = procedural_shapes("car", 3)
    ds = VoxelDataset(grids)
    item = ds[1]
    assert len(ds) == 3 and item["index"] == 1
    assert item["voxels"].dtype == torch.bool and item["voxels"].shape == (1, 32, 32, 32)
    assert torch.equal(item["voxels"][0], torch.as_tensor(grids[1]))
    conditioned = VoxelDataset(np.stack([grids, grids[:, ::-1]], axis=1))  # (N, C, D, H, W): condition c at index c
    assert conditioned[2]["voxels"].shape == (2, 1, 32, 32, 32)
    with pytest.raises(ValueError, match=r"non-empty \(N, D, H, W\) or \(N, C, D, H, W\)"):
        VoxelDataset(np.zeros((0, 4, 4, 4), bool))
