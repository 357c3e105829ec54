"""The one ``"<source>:<name>"`` resolver: every system names its training shapes this way.

=============================  =====================================================================================
``synthevox3d:<category>``     SynthEVox3D-Tiny, condition-0 grids (:func:`voxhelpers.data.shapes.load_synthevox3d`)
``modelnet10:<category>``      ModelNet10 at 32³, empty grids dropped
``procedural:<kind>``          seeded stand-in shapes (airplane, car, chair) — labelled "not real data" wherever shown
``npy:<path>``                 your own shapes: one ``.npy`` / ``.npy.gz`` / ``.npz`` array (N, 32, 32, 32) or
                               (N, 1, 32, 32, 32) of {0, 1}, or a folder of ``.npy`` / ``.binvox`` files, one per shape
=============================  =====================================================================================
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config.paths import DatasetNotFoundError, find_data
from ..config.voxel_cgan import DATA_SOURCES, check_data
from .grids import check_grids
from .io import load_array, load_binvox

#: which grid axis points up in each source (the renderer's ``up``): SynthEVox3D and ModelNet10 grids stand on
#: axis 2; the procedural stand-ins on axis 1; a user's own shapes are taken to stand on axis 2 like ShapeNet's.
GRID_UP = {"synthevox3d": "z", "modelnet10": "z", "procedural": "y", "npy": "z"}
GRID_FILES = (".npy", ".npy.gz", ".npz", ".binvox")


def parse_data(data: str) -> tuple[str, str]:
    """``"modelnet10:chair"`` → ``("modelnet10", "chair")``.

    Raises:
        ValueError: not ``"<source>:<name>"`` with a known source (the valid ones listed).
    """
    check_data(data)
    source, _, name = data.partition(":")
    return source, name


def load_own_shapes(path: str | Path) -> np.ndarray:
    """A user's shapes: one array file (N, D, H, W) / (N, 1, D, H, W), or a folder of one-shape files.

    A folder is read in sorted file-name order; each ``.npy`` / ``.npy.gz`` / ``.npz`` holds one (D, H, W) grid and
    each ``.binvox`` one binvox grid. Nothing is validated here but the file format (see :func:`load_grids`).

    Raises:
        FileNotFoundError: no such file or folder; ValueError: an empty folder or a corrupt file (named).
    """
    path = Path(path).expanduser()
    if path.is_file():
        return load_binvox(path)[None] if path.suffix == ".binvox" else load_array(path)
    if not path.is_dir():
        raise FileNotFoundError(f"npy:{path}: no such file or folder; expected an array file (N, 32, 32, 32) or a "
                                f"folder of {', '.join(GRID_FILES)} files")
    files = sorted(f for f in path.iterdir() if f.is_file() and f.name.lower().endswith(GRID_FILES))
    if not files:
        raise ValueError(f"npy:{path}: the folder holds no {', '.join(GRID_FILES)} files")
    grids = [load_binvox(f) if f.suffix == ".binvox" else load_array(f) for f in files]
    shapes = {g.shape for g in grids}
    if len(shapes) != 1:
        raise ValueError(f"npy:{path}: the files hold grids of different shapes {sorted(shapes)}; expected one size")
    return np.stack(grids)


def load_grids(data: str, n: int | None = None, seed: int = 0, size: int = 32, roots=None) -> np.ndarray:
    """The shapes a data string names, validated: bool (N, size, size, size).

    Args:
        data: ``"<source>:<name>"`` (see the module's table).
        n: procedural stand-ins: how many (default 80); other sources: all of them (callers take the first k).
        seed: procedural stand-ins: their seed.
        size: the grid side the model needs.
        roots: data roots (default ``$VOXHELPERS_DATA``).

    Raises:
        ValueError: a bad data string, category or grid set (:func:`voxhelpers.data.grids.check_grids`);
        DatasetNotFoundError: real data absent (the message says where to get it).
    """
    from .shapes import load_modelnet10, load_synthevox3d
    from .synthetic import procedural_shapes

    source, name = parse_data(data)
    if source == "synthevox3d":
        grids = load_synthevox3d(name, 1, roots)[:, 0]
    elif source == "modelnet10":
        grids = load_modelnet10(name, roots=roots)
    elif source == "procedural":
        grids = procedural_shapes(name, n=n or 80, seed=seed, size=size)
    else:
        grids = load_own_shapes(name)
    return check_grids(grids, data, size=size)


def grid_up(data: str) -> str:
    """The up axis (``"y"`` or ``"z"``) of a data string such as ``"modelnet10:chair"``.

    Raises:
        ValueError: an unknown source.
    """
    source = data.partition(":")[0]
    if source not in GRID_UP:
        raise ValueError(f"unknown data source {source!r}; expected one of {DATA_SOURCES}")
    return GRID_UP[source]


def data_available(data: str, roots=None) -> bool:
    """Whether a data string can be read on this machine (procedural stand-ins always can)."""
    from .shapes import MODELNET10_HOW_TO_GET, synthevox3d_readable

    source, name = parse_data(data)
    if source == "procedural":
        return True
    if source == "synthevox3d":
        return synthevox3d_readable(name, roots)
    if source == "modelnet10":
        try:
            find_data(f"modelnet10/{name}.npy.gz", MODELNET10_HOW_TO_GET, roots)
        except DatasetNotFoundError:
            return False
        return True
    return Path(name).expanduser().exists()


def describe_source(data: str, split: str) -> str:
    """``"<dataset> <name>, <split>"`` for a data string, with procedural stand-ins labelled as not real data."""
    source, name = parse_data(data)
    if source == "procedural":
        return f"procedural stand-in {name} shapes (not real data), {split}"
    if source == "synthevox3d":
        from .shapes import resolve_category

        category, synset = resolve_category(name)
        return f"SynthEVox3D-Tiny {category} ({synset}), {split}"
    where = {"modelnet10": "ModelNet10 32³", "npy": "own shapes from"}[source]
    return f"{where} {name}, {split}"
