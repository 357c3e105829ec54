"""Property-based tests (hypothesis): every public reader, loader, validator and metric, fed random bad input,
refuses it with a ValueError / TypeError / FileNotFoundError whose message names what was expected, and writes
no file on the way.

Kept small (a few dozen examples a property, no deadline, no example database on disk, a fixed seed per test) so
the file runs in well under a minute on 2 CPU cores and gives the same examples on every run. To explore further:
``VOXHELPERS_PROPERTY_EXAMPLES=500 pytest tests/test_properties.py`` draws that many, randomly seeded.
"""

import contextlib
import dataclasses
import gzip
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import binvox_bytes
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from voxhelpers import metrics
from voxhelpers.config import iwgan_config, vae_iwgan_config, voxel_cgan_config
from voxhelpers.data import VoxelDataset
from voxhelpers.data.grids import check_grids
from voxhelpers.data.io import (
    load_array,
    load_binvox,
    load_checkpoint,
    load_weights,
    read_card,
    save_checkpoint,
    save_npy,
    save_weights,
)
from voxhelpers.data.sources import load_grids
from voxhelpers.inference import load_pretrained, save_pretrained
from voxhelpers.nets import build_network
from voxhelpers.systems import get_system
from voxhelpers.training import fit

EXAMPLES = int(os.environ.get("VOXHELPERS_PROPERTY_EXAMPLES", "30"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize="VOXHELPERS_PROPERTY_EXAMPLES"
                    not in os.environ, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(SETTINGS, max_examples=max(10, EXAMPLES // 2))  # the properties that build models or write files


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def fresh_dir():
    """A new empty folder per hypothesis example (pytest's tmp_path is shared by every example of a test)."""
    with tempfile.TemporaryDirectory(prefix="voxprop-") as d:
        yield Path(d)


def listing(folder: Path) -> set[str]:
    """Every path under ``folder`` (files and folders), relative: what a refused call must leave unchanged."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@contextlib.contextmanager
def refused(folder: Path, exc, match: str):
    """Expect ``exc`` with a message matching ``match`` and no new or removed path under ``folder``."""
    before = listing(folder)
    with pytest.raises(exc, match=match):
        yield
    assert listing(folder) == before, f"a refused call changed {folder}: {listing(folder) ^ before}"


def cut(data: bytes, draw) -> bytes:
    """A hypothesis-chosen strict prefix of ``data`` (a truncated file)."""
    return data[: draw(st.integers(0, len(data) - 1))]


def flip(data: bytes, draw) -> bytes:
    """``data`` with one hypothesis-chosen bit flipped (a damaged file)."""
    out = bytearray(data)
    i = draw(st.integers(0, len(out) - 1))
    out[i] ^= 1 << draw(st.integers(0, 7))
    return bytes(out)


# --------------------------------------------------------------------------------------------------
# strategies: bad sets of voxel grids, each of one kind of badness
# --------------------------------------------------------------------------------------------------
BINARY_DTYPES = ("bool", "int8", "uint8", "int32", "int64", "float16", "float32", "float64")
NUMBER_DTYPES = BINARY_DTYPES[1:]
NON_NUMERIC = ("complex64", "complex128", "U1", "S1", "object", "datetime64[s]", "timedelta64[s]")
#: values no binary grid holds, representable in every dtype they are drawn for
NON_BINARY = {"i": (2, 3, 7, 100), "u": (2, 3, 7, 100), "f": (0.5, 2.0, -1.0, 0.999, 3.0)}
KINDS = ("ndim", "empty", "side", "dtype", "nan", "values", "all_empty", "ragged")


def binary(draw, shape, dtype="bool") -> np.ndarray:
    """A random binary array of ``shape`` with at least one occupied voxel (when it has any)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    arr = np.asarray(rng.random(shape) < 0.3)  # an array also for shape () (not a numpy scalar)
    if arr.size:
        arr.flat[rng.integers(arr.size)] = True
    return arr.astype(dtype)


def non_numeric(shape, dtype: str) -> np.ndarray:
    """An array of ``shape`` holding 1 / True-like entries of a dtype that is not bool, integer or float."""
    fill = {"U1": "1", "S1": b"1", "object": 1, "datetime64[s]": 1, "timedelta64[s]": 1}.get(dtype, 1 + 0j)
    return np.full(shape, fill, dtype=dtype)


@st.composite
def bad_grids(draw, kinds=KINDS, side=32, channels=(None, 1), five_d=True):
    """``(grids, kind)``: a set of grids that is wrong in one way only.

    kinds: ``ndim`` (not 4 axes, nor 5 with a channel axis of 1), ``empty`` (a zero-length axis), ``side`` (not
    side³), ``dtype`` (complex, strings, objects, dates), ``nan`` (a NaN / ±inf voxel), ``values`` (a voxel other than
    0 / 1), ``all_empty`` (no occupied voxel at all), ``ragged`` (nested lists of unequal lengths).
    channels: extra axes drawn for the well-shaped kinds (None: (N, D, H, W); c: (N, c, D, H, W)).
    """
    kind = draw(st.sampled_from(kinds))
    n = draw(st.integers(1, 3))
    channel = draw(st.sampled_from(channels))
    shape = (n, side, side, side) if channel is None else (n, channel, side, side, side)
    if kind == "ndim":
        choices = [0, 1, 2, 3, 6] + ([5] if five_d else [])
        ndim = draw(st.sampled_from(choices))
        shape = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
        if ndim == 5:
            shape = (shape[0], draw(st.integers(3, 4)), *shape[2:])  # a channel axis other than 1 (or 2 conditions)
        return binary(draw, shape, draw(st.sampled_from(BINARY_DTYPES))), kind
    if kind == "empty":
        zero = draw(st.integers(0, 3))
        shape = tuple(0 if i == zero else (n if i == 0 else side) for i in range(4))
        return np.zeros(shape, draw(st.sampled_from(BINARY_DTYPES))), kind
    if kind == "side":
        dims = tuple(draw(st.integers(1, 40)) for _ in range(3))
        assume(dims != (side,) * 3)
        return binary(draw, (n, *dims)), kind
    if kind == "dtype":
        return non_numeric(shape, draw(st.sampled_from(NON_NUMERIC))), kind
    if kind == "nan":
        grids = binary(draw, shape, draw(st.sampled_from(("float16", "float32", "float64"))))
        grids.flat[draw(st.integers(0, grids.size - 1))] = draw(st.sampled_from((np.nan, np.inf, -np.inf)))
        return grids, kind
    if kind == "values":
        dtype = np.dtype(draw(st.sampled_from(NUMBER_DTYPES)))
        grids = binary(draw, shape, dtype)
        grids.flat[draw(st.integers(0, grids.size - 1))] = draw(st.sampled_from(NON_BINARY[dtype.kind]))
        return grids, kind
    if kind == "all_empty":
        return np.zeros(shape, draw(st.sampled_from(BINARY_DTYPES))), kind
    sizes = draw(st.lists(st.integers(1, 3), min_size=2, max_size=3).filter(lambda s: len(set(s)) > 1))
    return [np.zeros((s, s, s), int).tolist() for s in sizes], kind  # ragged


#: what :func:`check_grids` (and everything built on it) says about each kind, for a set named ``name``
def check_grids_errors(name: str) -> dict:
    name = re.escape(name)
    return {
        "ndim": (ValueError, rf"{name}: expected a non-empty set of 3-D grids \(N, 32, 32, 32\)"),
        "empty": (ValueError, rf"{name}: expected a non-empty set of 3-D grids \(N, 32, 32, 32\)"),
        "side": (ValueError, rf"{name}: expected grids \(N, 32, 32, 32\), got shape"),
        "dtype": (TypeError, rf"{name}: expected binary voxels \(bool or numbers 0/1\), got dtype"),
        "nan": (ValueError, rf"{name}: contains NaN or inf; expected binary voxels"),
        "values": (ValueError, rf"{name}: expected binary voxel values 0 and 1, found"),
        "all_empty": (ValueError, rf"{name}: every one of the \d grids is empty; expected occupied voxels"),
        "ragged": (ValueError, rf"{name}: expected an array of grids \(N, 32, 32, 32\), got nested sequences"),
    }


# --------------------------------------------------------------------------------------------------
# the grid validator and the Dataset
# --------------------------------------------------------------------------------------------------
@SETTINGS
@given(bad_grids())
def test_check_grids_refuses_every_kind_of_bad_set_naming_what_it_expected(case):
    grids, kind = case
    exc, match = check_grids_errors("volumes")[kind]
    with pytest.raises(exc, match=match):
        check_grids(grids, "volumes", size=32)


@SETTINGS
@given(st.data())
def test_check_grids_accepts_and_returns_bool_for_every_binary_set(data):
    """The control: the same strategies' good sets pass, as bool (N, D, H, W), channel axis of 1 dropped."""
    d, h, w = (data.draw(st.integers(1, 4)) for _ in range(3))
    n, channel = data.draw(st.integers(1, 3)), data.draw(st.booleans())
    dtype = data.draw(st.sampled_from(BINARY_DTYPES))
    grids = binary(data.draw, (n, 1, d, h, w) if channel else (n, d, h, w), dtype)
    out = check_grids(torch.as_tensor(grids) if data.draw(st.booleans()) else grids)
    assert out.dtype == bool and out.shape == (n, d, h, w)
    np.testing.assert_array_equal(out, grids.reshape(n, d, h, w) != 0)


@SETTINGS
@given(bad_grids(kinds=("ndim", "empty", "dtype", "nan", "values", "ragged"), side=4, channels=(None, 1, 2),
                 five_d=False))
def test_voxel_dataset_refuses_bad_sets(case):
    grids, kind = case
    exc, match = {
        "ndim": (ValueError, r"grids must be a non-empty \(N, D, H, W\) or \(N, C, D, H, W\) array"),
        "empty": (ValueError, r"grids must be a non-empty \(N, D, H, W\) or \(N, C, D, H, W\) array"),
        "dtype": (TypeError, r"grids must be binary voxels \(bool or numbers 0/1\), got dtype"),
        "nan": (ValueError, "grids must be binary voxels with values 0 and 1"),
        "values": (ValueError, "grids must be binary voxels with values 0 and 1"),
        "ragged": (ValueError, r"grids: expected an array of grids \(N, D, H, W\) or \(N, C, D, H, W\)"),
    }[kind]
    with pytest.raises(exc, match=match):
        VoxelDataset(grids)


# --------------------------------------------------------------------------------------------------
# the systems' dataset(cfg, train) and fit(data=...): refused before anything is built or written
# --------------------------------------------------------------------------------------------------
CONFIGS = {
    "voxel_cgan": lambda: voxel_cgan_config("smoke", data="procedural:car", n_train=4, batch_size=4, epochs=1),
    "iwgan": lambda: iwgan_config("smoke", data="procedural:chair", max_shapes=8, batch_size=4, epochs=1),
    "vae_iwgan": lambda: vae_iwgan_config("smoke", data="procedural:chair", max_shapes=8, batch_size=4, epochs=1),
}


@pytest.mark.parametrize("system", ["voxel_cgan", "iwgan"])
@SETTINGS
@given(data=st.data())
def test_system_dataset_refuses_bad_training_grids(system, data):
    # the conditional GAN also takes (N, 2, 32, 32, 32): each shape with its two rotation conditions
    grids, kind = data.draw(bad_grids(channels=(None, 1, 2) if system == "voxel_cgan" else (None, 1)))
    exc, match = check_grids_errors("volumes")[kind]
    with pytest.raises(exc, match=match):
        get_system(system).dataset(CONFIGS[system](), grids)


@pytest.mark.parametrize("system", list(CONFIGS))
@FEW
@given(case=bad_grids())
def test_fit_refuses_bad_data_before_writing_its_run_folder(system, case):
    grids, kind = case
    exc, match = check_grids_errors("volumes")[kind]
    with fresh_dir() as tmp:
        out = tmp / "run"
        with refused(tmp, exc, match):
            fit(system, CONFIGS[system](), out, "cpu", data=grids, progress=False)
        assert not out.exists()


# --------------------------------------------------------------------------------------------------
# array files: load_array and load_grids("npy:...")
# --------------------------------------------------------------------------------------------------
ARRAY_SUFFIXES = (".npy", ".npy.gz", ".npz")


def write_array(path: Path, grids: np.ndarray, compressed: bool = False) -> None:
    """Write ``grids`` as ``path``'s format: .npy, .npy.gz or .npz (deflated or stored)."""
    if path.name.endswith(".npy.gz"):
        with gzip.open(path, "wb") as f:
            np.save(f, grids)
    elif path.suffix == ".npz":
        (np.savez_compressed if compressed else np.savez)(path, grids)
    else:
        np.save(path, grids)


@st.composite
def damaged_array_file(draw):
    """``(suffix, bytes, how)``: random bytes, or a valid array file cut short or with one bit flipped."""
    suffix = draw(st.sampled_from(ARRAY_SUFFIXES))
    how = draw(st.sampled_from(("random", "truncated", "flipped")))
    if how == "random":
        return suffix, draw(st.binary(max_size=300)), how
    with fresh_dir() as tmp:
        path = tmp / f"good{suffix}"
        grids = binary(draw, (draw(st.integers(1, 3)), 4, 4, 4), draw(st.sampled_from(BINARY_DTYPES)))
        write_array(path, grids, compressed=draw(st.booleans()))
        good = path.read_bytes()
    return suffix, (cut(good, draw) if how == "truncated" else flip(good, draw)), how


@SETTINGS
@given(damaged_array_file())
def test_load_array_refuses_random_truncated_and_damaged_files(case):
    suffix, data, how = case
    with fresh_dir() as tmp:
        path = tmp / f"shapes{suffix}"
        path.write_bytes(data)
        if how == "flipped":  # a flipped bit in the data part still reads: then it is an array, else refused
            before = listing(tmp)
            try:
                assert isinstance(load_array(path), np.ndarray)
            except ValueError as e:
                assert str(path) in str(e) and ("corrupt" in str(e) or "expected an array named" in str(e))
            assert listing(tmp) == before
            return
        with refused(tmp, ValueError, rf"{re.escape(str(path))}: corrupt (or truncated )?array file"):
            load_array(path)


@SETTINGS
@given(st.lists(st.integers(1, 2**31), min_size=1, max_size=4), st.sampled_from((".npy", ".npy.gz")))
def test_load_array_refuses_a_header_declaring_more_data_than_the_file_holds(shape, suffix):
    """A damaged header asking for a huge shape is refused (not a MemoryError, nor gigabytes allocated)."""
    import io

    assume(np.prod(shape, dtype=np.float64) > 64)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": tuple(shape)})
    data = header.getvalue() + bytes(64 * 8)
    with fresh_dir() as tmp:
        path = tmp / f"big{suffix}"
        path.write_bytes(gzip.compress(data) if suffix == ".npy.gz" else data)
        with refused(tmp, ValueError, rf"{re.escape(str(path))}: corrupt"):
            load_array(path)


def test_load_array_refuses_missing_and_unknown_files(tmp_path):
    with refused(tmp_path, FileNotFoundError, "no such file"):
        load_array(tmp_path / "absent.npy")
    (tmp_path / "shapes.txt").write_text("0 1 0")
    with refused(tmp_path, ValueError, r"unsupported array format; expected \.npy, \.npy\.gz or \.npz"):
        load_array(tmp_path / "shapes.txt")


@SETTINGS
@given(case=bad_grids(kinds=("ndim", "empty", "side", "dtype", "nan", "values", "all_empty"), channels=(None, 1)),
       suffix=st.sampled_from(ARRAY_SUFFIXES))
def test_load_grids_npy_file_refuses_bad_grids_naming_the_file(case, suffix):
    grids, kind = case
    assume(grids.dtype != object)  # not storable without pickle (and refused on reading: see the next test)
    with fresh_dir() as tmp:
        path = tmp / f"mine{suffix}"
        write_array(path, grids)
        exc, match = check_grids_errors(f"npy:{path}")[kind]
        with refused(tmp, exc, match):
            load_grids(f"npy:{path}")


@SETTINGS
@given(damaged_array_file())
def test_load_grids_npy_file_refuses_damaged_files(case):
    suffix, data, how = case
    with fresh_dir() as tmp:
        path = tmp / f"mine{suffix}"
        path.write_bytes(data)
        # a flipped bit may leave a readable array: then check_grids judges it (wrong shape / values); either way
        # a clear ValueError or TypeError, never a numpy / zipfile / zlib exception
        damaged = rf"{re.escape(str(path))}: corrupt (or truncated )?array file"
        match = "corrupt|expected" if how == "flipped" else damaged
        with refused(tmp, (ValueError, TypeError), match):
            load_grids(f"npy:{path}")


@st.composite
def bad_folder(draw):
    """``(files, match)``: a folder of one-shape files that load_grids must refuse, and the message expected."""
    what = draw(st.sampled_from(("mixed_sizes", "corrupt", "empty", "other_files", "bad_values")))
    if what == "mixed_sizes":
        sides = draw(st.lists(st.sampled_from((16, 32, 8)), min_size=2, max_size=4).filter(lambda s: len(set(s)) > 1))
        return {f"{i:02d}.npy": binary(draw, (s, s, s)) for i, s in enumerate(sides)}, "grids of different shapes"
    if what == "corrupt":
        files = {f"{i:02d}.npy": binary(draw, (32, 32, 32)) for i in range(draw(st.integers(0, 2)))}
        name = draw(st.sampled_from(("bad.npy", "bad.npy.gz", "bad.npz", "bad.binvox")))
        return {**files, name: draw(st.binary(max_size=100))}, r"bad\.(npy|npy\.gz|npz|binvox): .*(corrupt|binvox)"
    if what == "empty":
        return {}, "the folder holds no .npy, .npy.gz, .npz, .binvox files"
    if what == "other_files":
        return {"readme.txt": b"shapes", "shape.obj": b"v 0 0 0"}, "the folder holds no"
    grid = binary(draw, (32, 32, 32), "float32")
    grid.flat[draw(st.integers(0, grid.size - 1))] = draw(st.sampled_from((0.5, 2.0, np.nan)))
    return {"00.npy": binary(draw, (32, 32, 32), "float32"), "01.npy": grid}, "NaN|binary voxel values"


@SETTINGS
@given(bad_folder())
def test_load_grids_npy_folder_refuses_bad_folders(case):
    files, match = case
    with fresh_dir() as tmp:
        folder = tmp / "shapes"
        folder.mkdir()
        for name, content in files.items():
            if isinstance(content, bytes):
                (folder / name).write_bytes(content)
            else:
                save_npy(folder / name, content)
        with refused(tmp, ValueError, match):
            load_grids(f"npy:{folder}")


def test_load_grids_npy_refuses_a_missing_path(tmp_path):
    with refused(tmp_path, FileNotFoundError, r"no such file or folder; expected an array file \(N, 32, 32, 32\)"):
        load_grids(f"npy:{tmp_path / 'absent'}")
    with pytest.raises(ValueError, match="data must be '<source>:<name>'"):
        load_grids("npy:")  # no path at all: not the current folder


# --------------------------------------------------------------------------------------------------
# binvox
# --------------------------------------------------------------------------------------------------
@SETTINGS
@given(st.data())
def test_load_binvox_refuses_random_and_truncated_files(data):
    how = data.draw(st.sampled_from(("random", "random_after_header", "truncated")))
    if how == "random":
        content = data.draw(st.binary(max_size=200))
    elif how == "random_after_header":
        content = b"#binvox 1\n" + data.draw(st.binary(max_size=200))
    else:
        side = data.draw(st.integers(1, 6))
        content = cut(binvox_bytes(binary(data.draw, (side, side, side))), data.draw)
    with fresh_dir() as tmp:
        path = tmp / "shape.binvox"
        path.write_bytes(content)
        with refused(tmp, ValueError, rf"{re.escape(str(path))}: .*binvox"):
            load_binvox(path)


@SETTINGS
@given(st.data())
def test_load_binvox_header_and_runs_either_fill_the_grid_or_are_refused(data):
    """Random dims and random (value, count) runs: a grid of exactly the header's dims, or a ValueError."""
    dims = tuple(data.draw(st.integers(-1, 5)) for _ in range(3))
    runs = data.draw(st.binary(max_size=40))
    with fresh_dir() as tmp:
        path = tmp / "shape.binvox"
        path.write_bytes(f"#binvox 1\ndim {' '.join(map(str, dims))}\ndata\n".encode() + runs)
        try:
            grid = load_binvox(path)
        except ValueError as e:
            assert str(path) in str(e) and "binvox" in str(e)
        else:
            counts = np.frombuffer(runs, np.uint8)[1::2]
            assert grid.dtype == bool and grid.shape == (dims[0], dims[2], dims[1])  # binvox: x, z, y order
            assert int(counts.sum(dtype=np.int64)) == grid.size


def test_load_binvox_refuses_a_missing_file(tmp_path):
    with refused(tmp_path, FileNotFoundError, "no such file"):
        load_binvox(tmp_path / "absent.binvox")


# --------------------------------------------------------------------------------------------------
# weights, cards, checkpoints
# --------------------------------------------------------------------------------------------------
@st.composite
def damaged_bytes(draw, make_good):
    """``(bytes, how)``: random bytes, the empty file, or the valid file ``make_good(tmp)`` cut short / bit-flipped."""
    how = draw(st.sampled_from(("random", "empty", "truncated", "flipped")))
    if how == "random":
        return draw(st.binary(min_size=1, max_size=300)), how
    if how == "empty":
        return b"", how
    with fresh_dir() as tmp:
        good = make_good(tmp, draw)
    return (cut(good, draw) if how == "truncated" else flip(good, draw)), how


def good_weights(tmp: Path, draw) -> bytes:
    sd = {"conv.weight": torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(draw(st.integers(0, 99)))),
          "conv.bias": torch.zeros(4), "bn.num_batches_tracked": torch.tensor(3)}
    return save_weights(tmp / "w.safetensors", sd, dtype=draw(st.sampled_from(("fp16", "fp32", "int8")))).read_bytes()


@SETTINGS
@given(damaged_bytes(good_weights))
def test_load_weights_refuses_random_truncated_and_damaged_files(case):
    data, how = case
    with fresh_dir() as tmp:
        path = tmp / "model.safetensors"
        path.write_bytes(data)
        if how == "flipped":  # a flipped bit in a weight still reads
            try:
                out = load_weights(path)
            except ValueError as e:
                assert f"{path}: corrupt" in str(e)
            else:
                assert all(isinstance(t, torch.Tensor) for t in out.values())
            return
        with refused(tmp, ValueError, rf"{re.escape(str(path))}: corrupt or truncated safetensors weights file"):
            load_weights(path)


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 6))
def test_load_weights_refuses_an_int8_scale_of_the_wrong_length(channels, scales):
    from safetensors.torch import save_file

    assume(channels != scales)
    with fresh_dir() as tmp:
        path = tmp / "model.safetensors"
        save_file({"w": torch.ones(channels, 3, dtype=torch.int8), "w.__int8_scale__": torch.ones(scales)}, str(path))
        with refused(tmp, ValueError, rf"corrupt int8 weight 'w': expected a scale of shape \({channels},\)"):
            load_weights(path)


def good_card(tmp: Path, draw) -> bytes:
    card = {"system": "iwgan", "config": {"seed": draw(st.integers(0, 9))}, "metrics": {"aad": 0.5}}
    return json.dumps(card, indent=2).encode()  # no final newline: every strict prefix is broken JSON


#: any JSON value, small (a card's fields replaced by these)
JSON = st.recursive(st.none() | st.booleans() | st.integers(-5, 64) | st.floats(-2, 2) | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                    max_leaves=8)


@SETTINGS
@given(st.one_of(damaged_bytes(good_card), JSON.map(lambda v: (json.dumps(v).encode(), "json"))))
def test_read_card_refuses_random_truncated_and_non_object_cards(case):
    data, how = case
    if how == "flipped":  # a flipped bit may leave valid JSON: skip those
        with contextlib.suppress(ValueError, UnicodeDecodeError):
            value = json.loads(data.decode())
            assume(not (isinstance(value, dict) and {"system", "config"} <= set(value)))
    with fresh_dir() as tmp:
        path = tmp / "model.json"
        path.write_bytes(data)
        if how == "json":
            value = json.loads(data)
            if isinstance(value, dict) and {"system", "config"} <= set(value):
                assert read_card(path) == value
                return
        expected = ("malformed model card JSON|expected a model card, a JSON object with keys 'system' and 'config'"
                    "|model card lacks the required key")
        with refused(tmp, ValueError, rf"{re.escape(str(path))}: ({expected})"):
            read_card(path.with_suffix(".safetensors"))  # the weights' path finds the card beside them


def test_read_card_refuses_a_missing_card(tmp_path):
    with refused(tmp_path, FileNotFoundError, "no model card"):
        read_card(tmp_path / "model.safetensors")


def good_checkpoint(tmp: Path, draw) -> bytes:
    state = {"models": {"G": {"w": torch.randn(3, 2)}}, "epoch": draw(st.integers(0, 9)), "history": [{"loss_d": 1.0}],
             "config": {"seed": 0}, "generator": torch.Generator().get_state()}
    return save_checkpoint(tmp / "checkpoint.pt", state).read_bytes()


@SETTINGS
@given(damaged_bytes(good_checkpoint))
def test_load_checkpoint_refuses_random_truncated_and_damaged_files(case):
    data, how = case
    with fresh_dir() as tmp:
        path = tmp / "checkpoint.pt"
        path.write_bytes(data)
        try:
            ckpt = load_checkpoint(path)
        except ValueError as e:
            assert str(path) in str(e)
            assert "corrupt or truncated checkpoint" in str(e) or "expected a training checkpoint (a dict)" in str(e)
        else:  # torch checks no CRC: a flipped bit may still unpickle (a changed weight, even a renamed key);
            # random bytes may happen to unpickle a dict. Resuming from such a file: the next test.
            assert how in ("flipped", "random") and isinstance(ckpt, dict)
        assert listing(tmp) == {"checkpoint.pt"}


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory):
    """A tiny 3D-IWGAN run folder after one epoch (its checkpoint), and the config that resumes it for one more."""
    cfg = iwgan_config("smoke", data="procedural:chair", max_shapes=8, batch_size=4, epochs=1, sample_every=100,
                       g_channels=(8, 4, 4, 2), d_channels=(2, 4, 4, 8), z_dim=8)
    run = tmp_path_factory.mktemp("one_epoch") / "run"
    fit("iwgan", cfg, run, "cpu", progress=False)
    return run, dataclasses.replace(cfg, epochs=2)


@FEW
@given(st.data())
def test_fit_refuses_to_resume_from_a_damaged_checkpoint_and_keeps_it(one_epoch_run, data):
    """A damaged checkpoint in the run folder: a ValueError naming it, the file left as it was, nothing else written
    (a flipped bit that leaves a readable checkpoint: training goes on, or stops at the NaN the bit made)."""
    from voxhelpers.training import CHECKPOINT_NAME

    run, cfg = one_epoch_run
    good = (run / CHECKPOINT_NAME).read_bytes()
    damaged, how = data.draw(damaged_bytes(lambda tmp, draw: good))
    with fresh_dir() as tmp:
        folder = tmp / "run"
        shutil.copytree(run, folder)
        ckpt = folder / CHECKPOINT_NAME
        ckpt.write_bytes(damaged)
        before = listing(tmp)
        try:
            result = fit("iwgan", cfg, folder, "cpu", progress=False, log=lambda msg: None)
        except ValueError as e:
            assert str(ckpt) in str(e)
            assert any(s in str(e) for s in ("corrupt or truncated checkpoint", "expected a training checkpoint",
                                             "damaged checkpoint", "belongs to another run")), str(e)
        except FloatingPointError as e:
            assert how == "flipped" and "last good checkpoint" in str(e)
        else:  # a changed weight, loss or counter: the run goes on from it
            assert how == "flipped" and len(result.history) >= 1
            return
        assert listing(tmp) == before and ckpt.read_bytes() == damaged  # refused: nothing written, nothing replaced


def test_load_checkpoint_refuses_a_missing_file_and_a_non_dict(tmp_path):
    with refused(tmp_path, FileNotFoundError, "no such checkpoint file"):
        load_checkpoint(tmp_path / "checkpoint.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with refused(tmp_path, ValueError, r"expected a training checkpoint \(a dict\), got a list"):
        load_checkpoint(tmp_path / "list.pt")


# --------------------------------------------------------------------------------------------------
# pretrained models: corrupt weights, corrupt cards
# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny 3D-IWGAN generator saved with its card (fp16): ``(weights path, card dict)``."""
    cfg = iwgan_config("smoke", data="procedural:chair", g_channels=(8, 4, 4, 2), d_channels=(2, 4, 4, 8), z_dim=8)
    torch.manual_seed(0)
    path = save_pretrained(build_network("iwgan", "generator", cfg), "iwgan", cfg.to_dict(),
                           tmp_path_factory.mktemp("pretrained") / "tiny.safetensors", profile="smoke",
                           command="test", data=cfg.data)
    return path, json.loads(path.with_suffix(".json").read_text())


@st.composite
def damaged_pretrained(draw, weights: bytes, card: dict):
    """``(weights bytes, card bytes, what)`` with one of the two damaged."""
    what = draw(st.sampled_from(("weights_random", "weights_truncated", "weights_flipped", "card_bytes", "card_json",
                                 "card_field", "config_field")))
    card_bytes = json.dumps(card).encode()
    if what == "weights_random":
        return draw(st.binary(max_size=300)), card_bytes, what
    if what == "weights_truncated":
        return cut(weights, draw), card_bytes, what
    if what == "weights_flipped":
        return flip(weights, draw), card_bytes, what
    if what == "card_bytes":
        return weights, draw(st.one_of(st.binary(max_size=100), st.just(card_bytes).map(lambda b: b[:-3]))), what
    if what == "card_json":
        return weights, json.dumps(draw(JSON)).encode(), what
    if what == "card_field":
        key = draw(st.sampled_from(("system", "config", "weights")))
        return weights, json.dumps({**card, key: draw(JSON)}).encode(), what
    key = draw(st.sampled_from(sorted(card["config"])))
    return weights, json.dumps({**card, "config": {**card["config"], key: draw(JSON)}}).encode(), what


@FEW
@given(st.data(), st.booleans())
def test_load_pretrained_refuses_corrupt_weights_and_cards(pretrained, data, verify):
    path, card = pretrained
    weights, card_bytes, what = data.draw(damaged_pretrained(path.read_bytes(), card))
    with fresh_dir() as tmp:
        target = tmp / path.name
        target.write_bytes(weights)
        target.with_suffix(".json").write_bytes(card_bytes)
        before = listing(tmp)
        try:
            model, _ = load_pretrained(target, verify=verify)
        except (ValueError, FileNotFoundError) as e:
            message = str(e)
            if what.startswith("weights") and verify:  # the card's sha256 catches every changed byte first
                assert f"differs from its card's {card['weights']['sha256']}" in message
            elif what in ("weights_random", "weights_truncated"):
                assert f"{target}: corrupt or truncated safetensors weights file" in message
            else:  # the file named, and what it should have been
                assert str(target.with_suffix(".json")) in message or str(target) in message
                assert any(s in message for s in ("model card", "corrupt", "do not match", "card's"))
        else:  # a change that leaves a buildable network whose weights fit (a seed, an unchecked sha256...)
            assert what in ("weights_flipped", "card_field", "config_field") and not model.training
            assert not (what == "weights_flipped" and verify)
        assert listing(tmp) == before


# --------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------
#: name → (function, argument names, "paired" | "set" | "recon")
METRICS = {
    "iou": (metrics.iou, ("a", "b"), "paired"),
    "dice_score": (metrics.dice_score, ("a", "b"), "paired"),
    "aad": (metrics.aad, ("a", "b"), "paired"),
    "avar": (metrics.avar, ("a", "b"), "paired"),
    "condition_consistency": (metrics.condition_consistency, ("gen_c0", "gen_c1_rotated"), "paired"),
    "pairwise_iou": (metrics.pairwise_iou, ("a", "b"), "set"),
    "aad_nearest": (metrics.aad_nearest, ("generated", "real"), "set"),
    "avar_nearest": (metrics.avar_nearest, ("generated", "real"), "set"),
    "coverage": (metrics.coverage, ("generated", "real"), "set"),
    "minimum_matching_distance": (metrics.minimum_matching_distance, ("generated", "real"), "set"),
    "one_nna": (metrics.one_nna, ("generated", "real"), "set"),
    "occupancy_error": (metrics.occupancy_error, ("generated", "real"), "set"),
    "voxel_set_metrics": (metrics.voxel_set_metrics, ("generated", "real"), "set"),
    "choose_threshold": (metrics.choose_threshold, ("probs", "targets"), "recon"),
    "voxel_average_precision": (metrics.voxel_average_precision, ("probs", "targets"), "recon"),
}
METRIC_KINDS = ("ndim", "empty_set", "empty_grid", "nan", "range", "int_values", "dtype", "torch_complex", "list")


@st.composite
def bad_metric_set(draw, shape):
    """``(x, kind)``: a set of grids the metrics must refuse, of the spatial size of ``shape`` (N, D, H, W)."""
    kind = draw(st.sampled_from(METRIC_KINDS))
    n, d, h, w = shape
    if kind == "ndim":
        ndim = draw(st.sampled_from((0, 1, 2, 3, 5, 6)))
        dims = [draw(st.integers(1, 3)) for _ in range(ndim)]
        if ndim == 5:
            dims[1] = draw(st.integers(2, 3))  # a channel axis other than 1
        return binary(draw, tuple(dims)), kind
    if kind == "empty_set":
        return np.zeros((0, d, h, w), bool), kind
    if kind == "empty_grid":
        return np.zeros((n, d, 0, w), bool), kind
    if kind in ("nan", "range"):
        x = binary(draw, shape, draw(st.sampled_from(("float16", "float32", "float64"))))
        bad = (np.nan,) if kind == "nan" else (-0.5, 1.5, np.inf, -np.inf, 2.0)
        x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from(bad))
        return x, kind
    if kind == "int_values":
        x = binary(draw, shape, draw(st.sampled_from(("int8", "uint8", "int32", "int64"))))
        x.flat[draw(st.integers(0, x.size - 1))] = draw(st.sampled_from((2, 3, 100)))
        return x, kind
    if kind == "dtype":
        return non_numeric(shape, draw(st.sampled_from(NON_NUMERIC))), kind
    if kind == "torch_complex":
        return torch.ones(shape, dtype=torch.complex64), kind
    return binary(draw, shape).tolist(), kind  # a list, not an array


def metric_error(kind: str, name: str):
    """The exception and message a metric raises for a bad set of each kind, naming the argument."""
    return {
        "ndim": (ValueError, rf"^{name} must have shape \(N, D, H, W\) or \(N, 1, D, H, W\)"),
        "empty_set": (ValueError, rf"^{name} is an empty set \(N=0"),
        "empty_grid": (ValueError, rf"^{name} has an empty spatial size"),
        "nan": (ValueError, rf"^{name} contains NaN"),
        "range": (ValueError, rf"^{name}: expected probabilities in \[0, 1\] or a binary grid"),
        "int_values": (ValueError, rf"^{name}: integer grids must contain only 0 and 1"),
        "dtype": (TypeError, rf"^{name} must have dtype bool, integer or float"),
        "torch_complex": (TypeError, rf"^{name} must have dtype bool, integer or float"),
        "list": (TypeError, rf"^{name} must be a torch.Tensor or numpy.ndarray"),
    }[kind]


def good_set(draw, shape, probs=False):
    """A valid set: binary (bool / int / float, numpy or torch), or probabilities in [0, 1] for ``probs``."""
    if probs:
        x = np.random.default_rng(draw(st.integers(0, 99))).random(shape).astype(np.float32)
    else:
        x = binary(draw, shape, draw(st.sampled_from(BINARY_DTYPES)))
        x.reshape(shape[0], -1)[:, 0] = 1  # every grid occupied (average precision needs it of targets)
    return torch.as_tensor(x) if draw(st.booleans()) and x.dtype != np.uint8 else x


def call(name: str, x, y, **kw):
    fn = METRICS[name][0]
    return fn(x, y, **kw)


@pytest.mark.parametrize("name", list(METRICS))
@SETTINGS
@given(data=st.data())
def test_metrics_refuse_a_bad_set_naming_the_argument(name, data):
    _, names, _ = METRICS[name]
    shape = tuple(data.draw(st.integers(1, 3)) for _ in range(4))
    position = data.draw(st.integers(0, 1))
    bad, kind = data.draw(bad_metric_set(shape))
    good = good_set(data.draw, shape, probs=position == 1 and names[0] == "probs")
    args = (bad, good) if position == 0 else (good, bad)
    exc, match = metric_error(kind, names[position])
    with pytest.raises(exc, match=match):
        call(name, *args)


@pytest.mark.parametrize("name", list(METRICS))
@SETTINGS
@given(data=st.data())
def test_metrics_refuse_sets_of_mismatched_shapes(name, data):
    """Other spatial sizes (every metric), or another number of shapes (the paired ones and reconstruction)."""
    _, names, kind = METRICS[name]
    shape_a = tuple(data.draw(st.integers(1, 3)) for _ in range(4))
    shape_b = tuple(data.draw(st.integers(1, 3)) for _ in range(4))
    if kind == "set":
        assume(shape_a[1:] != shape_b[1:])
    else:
        assume(shape_a != shape_b)
    a = good_set(data.draw, shape_a, probs=names[0] == "probs")
    b = good_set(data.draw, shape_b)
    if data.draw(st.booleans()):  # a channel axis of one on either side changes nothing
        a = a[:, None]
    match = {"recon": r"probs and targets must have the same|paired metric needs the same number|same spatial size",
             "paired": rf"{names[0]} and {names[1]} must have the same spatial size|paired metric needs the same "
                       rf"number of shapes in both sets",
             "set": rf"{names[0]} and {names[1]} must have the same spatial size \(D, H, W\)"}[kind]
    with pytest.raises(ValueError, match=match):
        call(name, a, b)


@pytest.mark.parametrize("name", [n for n, (_, _, kind) in METRICS.items() if kind != "recon"])
@SETTINGS
@given(data=st.data(), threshold=st.one_of(st.floats(allow_nan=True).filter(lambda t: not 0 <= t <= 1),
                                           st.text(max_size=3), st.booleans(), st.none(), st.just([0.5])))
def test_metrics_refuse_a_bad_threshold(name, data, threshold):
    shape = tuple(data.draw(st.integers(1, 3)) for _ in range(4))
    x = good_set(data.draw, shape)
    exc = ValueError if isinstance(threshold, float) else TypeError
    with pytest.raises(exc, match=r"threshold must (be a real number )?(in|be in) \[0, 1\]"):
        call(name, x, x, threshold=threshold)


@SETTINGS
@given(st.data(), st.one_of(st.just(()), st.lists(st.floats(allow_nan=True).filter(lambda t: not 0 <= t <= 1),
                                                    min_size=1, max_size=3)))
def test_choose_threshold_refuses_no_or_bad_candidates(data, thresholds):
    shape = tuple(data.draw(st.integers(1, 3)) for _ in range(4))
    probs, targets = good_set(data.draw, shape, probs=True), good_set(data.draw, shape)
    with pytest.raises(ValueError, match=r"thresholds must hold at least one candidate|threshold must be in \[0, 1\]"):
        metrics.choose_threshold(probs, targets, tuple(thresholds))


@SETTINGS
@given(st.data())
def test_set_metrics_refuse_an_all_empty_real_set_and_ap_an_empty_target(data):
    """Quantities undefined on empty shapes: occupancy error against an empty real set, AP of an empty target."""
    shape = tuple(data.draw(st.integers(1, 3)) for _ in range(4))
    generated = good_set(data.draw, shape)
    empty = np.zeros(shape, data.draw(st.sampled_from(BINARY_DTYPES)))
    for fn in (metrics.occupancy_error, metrics.voxel_set_metrics):
        with pytest.raises(ValueError, match="the real set has zero occupancy"):
            fn(generated, empty)
    targets = np.asarray(good_set(data.draw, shape)).copy()
    which = data.draw(st.integers(0, shape[0] - 1))
    targets[which] = 0
    with pytest.raises(ValueError, match=rf"targets \[.*{which}.*\] have no occupied voxel"):
        metrics.voxel_average_precision(good_set(data.draw, shape, probs=True), targets)


@SETTINGS
@given(st.data())
def test_self_distance_summary_refuses_bad_sets_naming_real(data):
    shape = (data.draw(st.integers(2, 3)), *(data.draw(st.integers(1, 3)) for _ in range(3)))
    bad, kind = data.draw(bad_metric_set(shape))
    exc, match = metric_error(kind, "real")
    with pytest.raises(exc, match=match):
        metrics.self_distance_summary(bad)
