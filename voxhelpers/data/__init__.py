"""Data: file io, the one grid validator, transforms, readers per domain, stand-ins, torch Datasets.

:mod:`.io` (arrays, binvox, weights + cards, checkpoints; atomic writes), :mod:`.grids` (the validator, duplicates,
held-out splits), :mod:`.sources` (the ``"<source>:<name>"`` resolver, your own shapes), :mod:`.shapes`
(SynthEVox3D, ModelNet10), :mod:`.synthetic` (procedural stand-ins), :mod:`.transforms` (rotations),
:mod:`.datasets` (torch Datasets), :mod:`.ct` (CT volumes: OpenKBP in both of its layouts, any NIfTI or DICOM
series, HU windows, label maps, screening and patient splits; imported as ``voxhelpers.data.ct``). Every reader
takes the data roots as a parameter (default ``$VOXHELPERS_DATA``).
"""

from .datasets import VoxelDataset
from .grids import check_grids, split_holdout, unique_grids
from .io import load_array, load_binvox, save_npy, write_json
from .shapes import (
    MODELNET10_HOW_TO_GET,
    SYNTHEVOX3D_CATEGORIES,
    SYNTHEVOX3D_HOW_TO_GET,
    available_synthevox3d,
    load_modelnet10,
    load_synthevox3d,
    load_synthevox3d_raw,
    make_conditions,
    orient_raw,
    preprocess_synthevox3d,
    resolve_category,
    synthevox3d_dir,
)
from .sources import GRID_UP, data_available, describe_source, grid_up, load_grids, load_own_shapes, parse_data
from .synthetic import PROCEDURAL_KINDS, STAND_IN_LABEL, procedural_shapes
from .transforms import condition_rotation, rot180, rotate_spatial

__all__ = [
    "GRID_UP", "MODELNET10_HOW_TO_GET", "PROCEDURAL_KINDS", "STAND_IN_LABEL", "SYNTHEVOX3D_CATEGORIES",
    "SYNTHEVOX3D_HOW_TO_GET", "VoxelDataset", "available_synthevox3d", "check_grids", "condition_rotation",
    "data_available", "describe_source", "grid_up", "load_array", "load_binvox", "load_grids", "load_modelnet10",
    "load_own_shapes", "load_synthevox3d", "load_synthevox3d_raw", "make_conditions", "orient_raw", "parse_data",
    "preprocess_synthevox3d", "procedural_shapes", "resolve_category", "rot180", "rotate_spatial", "save_npy",
    "split_holdout", "synthevox3d_dir", "unique_grids", "write_json",
]
