"""OpenKBP head-and-neck CTs (Babier et al., Med. Phys. 2021, arXiv 2011.14076): readers, listing, screening, splits.

Two layouts under ``<root>/openkbp`` are read, and agree exactly (tested on pt_1 and pt_2):

- the repacked one, ``{train,validation}/pt_N.npz`` with ``ct`` int16 (128, 128, 128), ``labels`` uint8 0..7,
  ``spacing`` float32 (3,) mm and ``label_names``;
- the dataset's own, ``raw/{train,validation,test}-pats/pt_N/`` (github ababier/open-kbp, ``provided-data/``):
  ``ct.csv`` sparse (header ``,data``; rows ``flat_index,value``; unlisted voxels are 0), one ``<Organ>.csv`` per
  contoured organ (a column of flat indices), ``voxel_dimensions.csv`` (3 mm values). Flat indices are C order
  into (128, 128, 128), as the dataset's own loader (``np.put`` into that shape).

**Stored values are HU + 1000** (the dataset does not say; the evidence, re-checked by the tests): no stored value
is negative and outside the body the grid holds 0 (→ −1000 HU, air); over all 203 patients the histogram of body
voxels peaks at 905 (→ −95 HU, fat, nominally −100) and 1037 (→ 37 HU, soft tissue); on pt_1 the median of the
Brainstem is 1037 (→ 37 HU, brain tissue 20–45 HU) and of the Mandible 1722 (→ 722 HU, bone). Readers return
``hu = stored − 1000`` as int16 (:data:`OPENKBP_HU_OFFSET`).

**Axes.** The grid is not in RAS: from the organ centroids (Right/Left parotids, Mandible vs SpinalCord, Brainstem vs
Esophagus) axis 0 runs anterior → posterior, axis 1 the patient's right → left, axis 2 superior → inferior; nibabel
codes ``"PLI"`` (``reorient(volume, "RAS")`` gives the canonical frame). No world affine is stored.

**Labels.** ``labels`` holds one organ per voxel (ids 1..7 in :data:`OPENKBP_ORGANS` order; where two contours
overlap, the later id wins). An organ absent from a patient was not contoured: ``labelled`` (7,) bool says which
organs exist, so a loss or metric can skip the others rather than count them as empty.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.paths import DatasetNotFoundError, find_data
from .ct_io import CTVolume
from .grids import split_holdout

#: Organs at risk, label ids 1..7 in this order (0 = background).
OPENKBP_ORGANS = ("Brainstem", "SpinalCord", "RightParotid", "LeftParotid", "Esophagus", "Larynx", "Mandible")
OPENKBP_SHAPE = (128, 128, 128)
OPENKBP_HU_OFFSET = 1000  #: stored value = HU + 1000 (see the module docstring for the evidence)
OPENKBP_AXES = "PLI"  #: axis 0 → posterior, 1 → patient's left, 2 → inferior
OPENKBP_SPLITS = ("train", "validation", "test")
OPENKBP_HOW_TO_GET = (
    "Get OpenKBP (Babier et al., Med. Phys. 2021) from https://github.com/ababier/open-kbp, folder provided-data/ "
    "(MIT): place its {train,validation,test}-pats/pt_N/ folders under <root>/openkbp/raw/, or the repacked "
    "<root>/openkbp/{train,validation}/pt_N.npz (ct, labels, spacing, label_names)."
)


@dataclass(frozen=True)
class OpenKBPPatient:
    """One patient of the listing: ``name`` "pt_N", the dataset's ``split``, ``path`` (.npz file or pt_N folder)."""

    name: str
    split: str
    path: Path

    @property
    def number(self) -> int:
        """N of pt_N."""
        return int(self.name.split("_")[1])


def openkbp_patients(split: str = "all", layout: str = "npz", roots=None) -> list[OpenKBPPatient]:
    """List OpenKBP patients with the dataset's own train/validation(/test) split, sorted by split then number.

    Args:
        split: ``"all"``, ``"train"``, ``"validation"`` or ``"test"``.
        layout: ``"npz"`` (``openkbp/<split>/pt_N.npz``) or ``"csv"`` (``openkbp/raw/<split>-pats/pt_N/``).
        roots: data roots (default ``$VOXHELPERS_DATA`` and the usual folders).

    Raises:
        ValueError: an unknown split or layout.
        DatasetNotFoundError: no patient found, with how to get the data.
    """
    if split not in ("all", *OPENKBP_SPLITS):
        raise ValueError(f"split must be one of {('all', *OPENKBP_SPLITS)}, got {split!r}")
    if layout not in ("npz", "csv"):
        raise ValueError(f"layout must be 'npz' or 'csv', got {layout!r}")
    base = find_data("openkbp", OPENKBP_HOW_TO_GET, roots)
    found = []
    for name in OPENKBP_SPLITS if split == "all" else (split,):
        folder = base / name if layout == "npz" else base / "raw" / f"{name}-pats"
        if not folder.is_dir():
            continue
        for p in folder.iterdir():
            stem = p.name[:-4] if layout == "npz" and p.suffix == ".npz" else p.name
            if re.fullmatch(r"pt_\d+", stem) and (p.is_file() if layout == "npz" else (p / "ct.csv").is_file()):
                found.append(OpenKBPPatient(stem, name, p))
    if not found:
        raise DatasetNotFoundError(f"no OpenKBP patients ({layout} layout, split {split!r}) under {base}.\n"
                                   f"{OPENKBP_HOW_TO_GET}")
    return sorted(found, key=lambda p: (OPENKBP_SPLITS.index(p.split), p.number))


def _check_ct(stored: np.ndarray, where: str) -> np.ndarray:
    if stored.shape != OPENKBP_SHAPE:
        raise ValueError(f"{where}: ct of shape {stored.shape}, expected {OPENKBP_SHAPE}")
    if stored.dtype.kind not in "iu":
        raise ValueError(f"{where}: ct of dtype {stored.dtype}; expected integers (HU + 1000)")
    if stored.size and (stored.min() < 0 or stored.max() > np.iinfo(np.int16).max + OPENKBP_HU_OFFSET):
        raise ValueError(f"{where}: stored CT values {stored.min()}..{stored.max()}; expected OpenKBP's HU + 1000 in "
                         f"0..{np.iinfo(np.int16).max + OPENKBP_HU_OFFSET}")
    return (stored.astype(np.int32) - OPENKBP_HU_OFFSET).astype(np.int16)


def _spacing(values, where: str) -> tuple[float, float, float]:
    """Spacing at float32 precision (as the npz stores it), so both layouts give identical numbers."""
    spacing = np.asarray(values, dtype=np.float32).reshape(-1)
    if spacing.shape != (3,) or not (np.isfinite(spacing) & (spacing > 0)).all():
        raise ValueError(f"{where}: spacing {spacing.tolist()}, expected 3 positive mm values")
    return tuple(float(s) for s in spacing)


def _read_npz(path: Path) -> CTVolume:
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            arrays = {k: z[k] for k in ("ct", "labels", "spacing", "label_names") if k in keys}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: unreadable npz ({e}); expected an OpenKBP patient archive") from e
    missing = {"ct", "labels", "spacing"} - keys
    if missing:
        raise ValueError(f"{path}: missing keys {sorted(missing)}; expected ct, labels, spacing(, label_names)")
    stored, labels, spacing = arrays["ct"], arrays["labels"], arrays["spacing"]
    names = tuple(str(n) for n in arrays.get("label_names", OPENKBP_ORGANS))
    if names != OPENKBP_ORGANS:
        raise ValueError(f"{path}: label_names {names}, expected {OPENKBP_ORGANS} (ids 1..7)")
    if labels.shape != OPENKBP_SHAPE or labels.dtype != np.uint8 or (labels.size and labels.max() > 7):
        raise ValueError(f"{path}: labels {labels.dtype} {labels.shape} max {labels.max()}; expected uint8 "
                         f"{OPENKBP_SHAPE} in 0..7")
    labelled = np.zeros(len(OPENKBP_ORGANS), dtype=bool)
    present = np.unique(labels)
    labelled[present[present > 0] - 1] = True
    return CTVolume(hu=_check_ct(stored, str(path)), spacing=_spacing(spacing, str(path)), labels=labels,
                    labelled=labelled, source=str(path), axes=OPENKBP_AXES)


def _flat_indices(index: np.ndarray, where: Path) -> np.ndarray:
    size = int(np.prod(OPENKBP_SHAPE))
    if index.dtype.kind not in "iu" or (index.size and (index.min() < 0 or index.max() >= size)):
        raise ValueError(f"{where}: flat indices must be integers in [0, {size}), got {index.dtype} "
                         f"{index.min() if index.size else ''}..{index.max() if index.size else ''}")
    return index


def _read_csv_folder(folder: Path) -> CTVolume:
    import pandas as pd

    ct_file, dims = folder / "ct.csv", folder / "voxel_dimensions.csv"
    for f in (ct_file, dims):
        if not f.is_file():
            raise ValueError(f"{folder}: no {f.name}; expected OpenKBP's ct.csv, voxel_dimensions.csv, <Organ>.csv")
    table = pd.read_csv(ct_file, index_col=0)
    if "data" not in table.columns:
        raise ValueError(f"{ct_file}: columns {list(table.columns)}, expected the header ',data'")
    values = table["data"].to_numpy()
    if not np.array_equal(values, np.round(values)):
        raise ValueError(f"{ct_file}: non-integer CT values; expected OpenKBP's integer HU + 1000")
    flat = np.zeros(int(np.prod(OPENKBP_SHAPE)), dtype=np.int32)
    flat[_flat_indices(table.index.to_numpy(), ct_file)] = values
    stored = flat.reshape(OPENKBP_SHAPE)  # C order, as np.put in the dataset's own loader
    labels = np.zeros(int(np.prod(OPENKBP_SHAPE)), dtype=np.uint8)
    labelled = np.zeros(len(OPENKBP_ORGANS), dtype=bool)
    for i, organ in enumerate(OPENKBP_ORGANS):  # later ids overwrite earlier ones where contours overlap
        f = folder / f"{organ}.csv"
        if f.is_file():
            labels[_flat_indices(pd.read_csv(f, index_col=0).index.to_numpy(), f)] = i + 1
            labelled[i] = True
    return CTVolume(hu=_check_ct(stored, str(ct_file)), spacing=_spacing(np.loadtxt(dims), str(dims)),
                    labels=labels.reshape(OPENKBP_SHAPE), labelled=labelled, source=str(folder), axes=OPENKBP_AXES)


def read_openkbp(path: str | Path | OpenKBPPatient) -> CTVolume:
    """Read one OpenKBP patient from either layout.

    Args:
        path: ``pt_N.npz`` (repacked) or a ``pt_N/`` folder (the dataset's CSVs), or an :class:`OpenKBPPatient`.

    Returns:
        :class:`CTVolume`: ``hu`` (128, 128, 128) int16 HU (stored − 1000; −1000 outside the scanned body),
        ``labels`` (128, 128, 128) uint8 0..7, ``labelled`` (7,) bool, ``spacing`` mm (float32 precision),
        ``axes == "PLI"``, ``affine`` None.

    Raises:
        ValueError: wrong shapes, keys, label names or values, missing files.
    """
    path = Path(path.path if isinstance(path, OpenKBPPatient) else path)
    if path.is_dir():
        return _read_csv_folder(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such OpenKBP patient (a pt_N.npz file or a pt_N/ folder)")
    return _read_npz(path)


# --------------------------------------------------------------------------------------------------
# screening
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Screening:
    """Outcome of :func:`screen_ct`: ``keep``, the ``reasons`` to drop, the body size, the interior empty slices."""

    keep: bool
    reasons: tuple[str, ...]
    body_voxels: int
    interior_empty_slices: tuple[int, ...]


def screen_ct(hu: np.ndarray, min_body_voxels: int = 30_000, min_slice_voxels: int = 10, air_hu: float = -1000,
              axis: int = 2) -> Screening:
    """The screening rule for a CT grid whose outside is filled with air (OpenKBP): drop tiny or holed bodies.

    Body = voxels above ``air_hu`` (for OpenKBP: stored value ≠ 0). The body's axial extent runs from the first to
    the last slice holding at least ``min_slice_voxels`` body voxels (so stray specks of a few voxels beyond the
    head do not stretch it). A CT is dropped when its body has fewer than ``min_body_voxels`` voxels, or when a
    slice strictly inside that extent has no body voxel at all.

    On the 203 real patients (170 train, 33 validation) the default drops 3: pt_143 (8,502 body voxels, and
    slices 20–33 empty inside it), pt_51 (26,220) and pt_170 (26,235) — 200 kept. With ``min_slice_voxels=1``
    (any voxel counts) 7 more are dropped, each for 1–8-voxel specks lying a few empty slices above the head (or,
    pt_36, one voxel below the neck): pt_10 (slice 25), pt_36 (91–97), pt_92 (29–32), pt_97 (22–28), pt_154
    (31–34), pt_188 (22–31), validation pt_224 (28–35).

    Args:
        hu: (X, Y, Z) HU.
        min_body_voxels: smallest body kept.
        min_slice_voxels: body voxels a slice needs to count towards the axial extent (1 = any).
        air_hu: the fill value outside the body (OpenKBP: −1000).
        axis: the axial (slice) axis of ``hu``.
    """
    if hu.ndim != 3:
        raise ValueError(f"expected a 3D CT (X, Y, Z), got shape {hu.shape}")
    body = hu > air_hu
    per_slice = body.sum(axis=tuple(a for a in range(3) if a != axis % 3))
    n, reasons, inside = int(per_slice.sum()), [], ()
    if n < min_body_voxels:
        reasons.append(f"{n} body voxels < {min_body_voxels}")
    solid = np.nonzero(per_slice >= min_slice_voxels)[0]
    if solid.size:
        first, last = int(solid[0]), int(solid[-1])
        inside = tuple(int(first + k) for k in np.nonzero(per_slice[first:last + 1] == 0)[0])
        if inside:
            reasons.append(f"empty slice(s) {_ranges(inside)} inside the body's axial extent {first}-{last}")
    return Screening(not reasons, tuple(reasons), n, inside)


def _ranges(values: Sequence[int]) -> str:
    """``[20, 21, 22, 30]`` → ``"20-22, 30"``."""
    runs: list[list[int]] = []
    for v in values:
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs)


def screen_openkbp(patients: Sequence[OpenKBPPatient] | None = None, roots=None,
                   **rule) -> dict[str, Screening]:
    """Apply :func:`screen_ct` (``rule``: its keyword arguments) to OpenKBP patients (default: all, npz layout).

    Returns:
        ``{"pt_N": Screening}``; keep the patients with ``.keep``.
    """
    patients = openkbp_patients(roots=roots) if patients is None else patients
    out = {}
    for p in patients:
        if p.path.suffix == ".npz":
            with np.load(p.path, allow_pickle=False) as z:  # only the CT, not the labels
                hu = _check_ct(z["ct"], str(p.path))
        else:
            hu = read_openkbp(p).hu
        out[p.name] = screen_ct(hu, **rule)
    return out


# --------------------------------------------------------------------------------------------------
# splits by patient
# --------------------------------------------------------------------------------------------------
def _keys(patients: Sequence) -> list[str]:
    keys = [p.name if isinstance(p, OpenKBPPatient) else str(p) for p in patients]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise ValueError(f"patients listed twice: {dup[:5]}; split a list of distinct patients")
    return keys


def kfold_patients(patients: Sequence, n_folds: int = 5, seed: int = 0) -> list[tuple[list, list]]:
    """Seeded k-fold cross-validation by patient (a patient's slices never straddle folds).

    The folds depend on the patient names and ``seed`` only, not on the order of ``patients``; fold sizes differ
    by at most one.

    Args:
        patients: patient names or :class:`OpenKBPPatient` records.
        n_folds: k, 2 <= k <= number of patients.
        seed: permutation seed.

    Returns:
        ``n_folds`` pairs (train, validation) of the given items; each item is in exactly one validation list.
    """
    keys = _keys(patients)
    if not 2 <= n_folds <= len(keys):
        raise ValueError(f"n_folds must be in [2, {len(keys)}] (the number of patients), got {n_folds}")
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    perm = np.random.default_rng(seed).permutation(len(keys))
    fold = np.empty(len(keys), dtype=int)
    fold[[order[i] for i in perm]] = np.arange(len(keys)) % n_folds
    items = list(patients)
    return [([items[i] for i in order if fold[i] != f], [items[i] for i in order if fold[i] == f])
            for f in range(n_folds)]


def holdout_patients(patients: Sequence, fraction: float = 0.2, seed: int = 0) -> tuple[list, list]:
    """Seeded (kept, held_out) split by patient; ``round(fraction · N)`` held out (at least one on each side).

    Like :func:`kfold_patients`, independent of the input order. Raises ValueError for ``fraction`` outside (0, 1).
    """
    keys = _keys(patients)
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    order = np.array(sorted(range(len(keys)), key=lambda i: keys[i]))
    kept, held = split_holdout(order, fraction, seed)
    items = list(patients)
    return [items[i] for i in kept], [items[i] for i in held]
