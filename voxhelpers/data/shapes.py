"""Shape readers: SynthEVox3D (raw and preprocessed) and ModelNet10 voxel grids, and the rotation conditions.

Readers return numpy arrays; training code moves them to tensors. Every reader fails with a clear
message naming what was expected when the data are missing, corrupt or of the wrong shape.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import DatasetNotFoundError, find_data
from .grids import check_grids
from .io import load_array, save_npy
from .transforms import CONDITION_ROTATIONS, condition_rotation, rotate_spatial

#: SynthEVox3D-Tiny (Chen et al., ICVR 2023): 13 ShapeNet categories, name -> synset id.
SYNTHEVOX3D_CATEGORIES: dict[str, str] = {
    "airplane": "02691156",
    "bench": "02828884",
    "cabinet": "02933112",
    "car": "02958343",
    "chair": "03001627",
    "display": "03211117",
    "lamp": "03636649",
    "loudspeaker": "03691459",
    "rifle": "04090263",
    "sofa": "04256520",
    "table": "04379243",
    "telephone": "04401088",
    "watercraft": "04530566",
}
SYNTHEVOX3D_HOW_TO_GET = (
    "Download SynthEVox3D(-Tiny) from https://www.kaggle.com/datasets/hche8927/synthevox3d (Chen et al., ICVR 2023) "
    "and unpack it so that <root>/synthevox3d/<synset>/<model_id>/model_normalized.npz exist, or place preprocessed "
    "arrays at <root>/synthevox3d/<synset>/model_array.npy (see data/README.md)."
)
MODELNET10_HOW_TO_GET = (
    "Get ModelNet10 voxelised at 32^3 (e.g. the arrays of SomTambe/ModelNet10-dataset) and place "
    "<root>/modelnet10/<category>.npy.gz, an array (N, 1, 32, 32, 32) of {0, 1} (see data/README.md)."
)
PREPROCESSED_NAMES = ("model_array.npy", "model_array90.npy")  # the seed's names for conditions 0 and 1


def resolve_category(category: str) -> tuple[str, str]:
    """Return ``(name, synset)`` for a SynthEVox3D category given by name or synset id.

    Raises:
        ValueError: unknown category, listing the valid names.
    """
    if category in SYNTHEVOX3D_CATEGORIES:
        return category, SYNTHEVOX3D_CATEGORIES[category]
    for name, synset in SYNTHEVOX3D_CATEGORIES.items():
        if category == synset:
            return name, synset
    raise ValueError(
        f"unknown SynthEVox3D category {category!r}; expected a name in {sorted(SYNTHEVOX3D_CATEGORIES)} "
        "or its synset id"
    )


# --------------------------------------------------------------------------------------------------
# SynthEVox3D
# --------------------------------------------------------------------------------------------------
def load_synthevox3d_raw(category_dir: str | Path) -> tuple[np.ndarray, list[str]]:
    """Read the raw dataset layout ``<category_dir>/<model_id>/model_normalized.npz`` (``arr_0``, 32³ bool).

    Returns:
        ``(grids, model_ids)``: grids (N, 32, 32, 32) bool in the dataset's own orientation, model ids sorted.

    Raises:
        DatasetNotFoundError: no model folder under ``category_dir``.
        ValueError: a corrupt file or a grid that is not 3-D binary.
    """
    category_dir = Path(category_dir)
    files = sorted(category_dir.glob("*/model_normalized.npz"))
    if not files:
        raise DatasetNotFoundError(
            f"no <model_id>/model_normalized.npz under {category_dir}. {SYNTHEVOX3D_HOW_TO_GET}"
        )
    grids = []
    for f in files:
        g = load_array(f)
        if g.ndim != 3:
            raise ValueError(f"{f}: expected a 3-D voxel grid (32, 32, 32), got shape {g.shape}")
        grids.append(g)
    shapes = {g.shape for g in grids}
    if len(shapes) != 1:
        raise ValueError(f"{category_dir}: grids of different shapes {sorted(shapes)}; expected one size")
    return check_grids(np.stack(grids), str(category_dir), size=32), [f.parent.name for f in files]


def orient_raw(grids: np.ndarray) -> np.ndarray:
    """The seed's re-orientation of raw SynthEVox3D grids: ``np.rot90(g, axes=(2, 0))`` for each grid.

    Args:
        grids: (N, D, H, W) as stored in ``model_normalized.npz``.

    Returns:
        condition-0 grids (N, D, H, W), C-contiguous.
    """
    return np.ascontiguousarray(rotate_spatial(grids, 1, (2, 0)))


def make_conditions(grids: np.ndarray, n_conditions: int = 2) -> np.ndarray:
    """Build N rotation conditions of every grid (the seed promised N and built 2).

    Condition c is ``condition_rotation(grids, c)``; with N = 2 condition 1 is the seed's
    ``model_array90.npy`` (a 180° turn despite its name).

    Args:
        grids: condition-0 grids (N, D, H, W), binary.
        n_conditions: 1 ≤ N ≤ 10.

    Returns:
        bool array (N, C, D, H, W), C-contiguous.

    Raises:
        ValueError: bad grids or N out of range.
    """
    grids = check_grids(grids)
    if not 1 <= n_conditions <= len(CONDITION_ROTATIONS):
        raise ValueError(f"n_conditions must be in [1, {len(CONDITION_ROTATIONS)}], got {n_conditions}")
    return np.ascontiguousarray(np.stack([condition_rotation(grids, c) for c in range(n_conditions)], axis=1))


def condition_filename(condition: int) -> str:
    """File name of a preprocessed condition: the seed's names for 0 and 1, ``model_array_c<k>.npy`` after."""
    return PREPROCESSED_NAMES[condition] if condition < 2 else f"model_array_c{condition}.npy"


def preprocess_synthevox3d(src: str | Path, dst: str | Path, n_conditions: int = 2) -> list[Path]:
    """Preprocess one category folder the seed's way and write one ``.npy`` per condition.

    ``src`` is either a raw category folder (``<model_id>/model_normalized.npz``) or a folder that already
    holds ``model_array.npy`` (condition 0). Files are written atomically: nothing is half-written.

    Returns:
        the written paths, condition 0 first.
    """
    src = Path(src)
    if (src / PREPROCESSED_NAMES[0]).is_file():
        cond0 = check_grids(load_array(src / PREPROCESSED_NAMES[0]), str(src / PREPROCESSED_NAMES[0]), size=32)
    else:
        raw, _ = load_synthevox3d_raw(src)
        cond0 = orient_raw(raw)
    arrays = make_conditions(cond0, n_conditions)
    return [save_npy(Path(dst) / condition_filename(c), arrays[:, c]) for c in range(n_conditions)]


def synthevox3d_dir(category: str, roots=None) -> Path:
    """The folder of a category under the data roots (``<root>/synthevox3d/<synset>``)."""
    _, synset = resolve_category(category)
    return find_data(f"synthevox3d/{synset}", SYNTHEVOX3D_HOW_TO_GET, roots)


def load_synthevox3d(category: str, n_conditions: int = 2, roots=None) -> np.ndarray:
    """Load a SynthEVox3D category with its rotation conditions.

    Reads ``model_array.npy`` (preprocessed condition 0) when present, else the raw ``.npz`` files, and
    builds the conditions with :func:`make_conditions`.

    Args:
        category: name (``"airplane"``) or synset (``"02691156"``).
        n_conditions: number of rotation conditions.
        roots: data roots to search (default: ``$VOXHELPERS_DATA``, see :func:`voxhelpers.config.data_roots`).

    Returns:
        bool array (N, C, 32, 32, 32).

    Raises:
        ValueError: unknown category; DatasetNotFoundError: data absent (message says where to get it).
    """
    folder = synthevox3d_dir(category, roots)
    pre = folder / PREPROCESSED_NAMES[0]
    cond0 = check_grids(load_array(pre), str(pre), size=32) if pre.is_file() else orient_raw(
        load_synthevox3d_raw(folder)[0])
    return make_conditions(cond0, n_conditions)


def synthevox3d_readable(category: str, roots=None) -> bool:
    """Whether a SynthEVox3D category can be read under the data roots: its preprocessed ``model_array.npy`` loads
    and validates (or, without one, its folder holds raw ``model_normalized.npz`` files). A corrupt or truncated
    file makes it unreadable.

    Raises:
        ValueError: an unknown category.
    """
    try:
        folder = synthevox3d_dir(category, roots)
    except DatasetNotFoundError:
        return False
    pre = folder / PREPROCESSED_NAMES[0]
    if not pre.is_file():
        return any(folder.glob("*/model_normalized.npz"))
    try:
        check_grids(load_array(pre), str(pre), size=32)
    except ValueError:
        return False
    return True


def available_synthevox3d(roots=None) -> list[str]:
    """Names of the SynthEVox3D categories that can be read under the data roots (:func:`synthevox3d_readable`;
    empty if none)."""
    return [name for name in SYNTHEVOX3D_CATEGORIES if synthevox3d_readable(name, roots)]


# --------------------------------------------------------------------------------------------------
# ModelNet10
# --------------------------------------------------------------------------------------------------
def load_modelnet10(category: str = "chair", drop_empty: bool = True, roots=None) -> np.ndarray:
    """Load ModelNet10 grids of one category from ``<root>/modelnet10/<category>.npy.gz``.

    Args:
        category: ModelNet10 class name, e.g. ``"chair"``.
        drop_empty: drop all-empty grids (sample 0 of the chair file is empty).

    Returns:
        bool array (N, 32, 32, 32).
    """
    path = find_data(f"modelnet10/{category}.npy.gz", MODELNET10_HOW_TO_GET, roots)
    grids = check_grids(load_array(path), str(path), size=32)
    if drop_empty:
        grids = grids[grids.reshape(len(grids), -1).any(axis=1)]
    return grids
