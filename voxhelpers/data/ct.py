"""The CT data layer shared by X-ray → CT and organ segmentation: one loader, HU windows, label remapping.

- :func:`load_ct` reads an OpenKBP patient (``.npz`` or its ``pt_N/`` CSV folder), a NIfTI file or a DICOM series
  folder into a :class:`CTVolume` (HU, spacing in mm, optional labels).
- :func:`clip_normalise` / :func:`denormalise` are the one place where HU become network inputs and back:
  :data:`XRAY_CT_WINDOW` (−1024, 1024) HU for X-ray → CT (the LiftXR 2026 protocol), :data:`SEGMENTATION_WINDOW`
  (−175, 250) HU, the abdominal soft-tissue window, for segmentation.
- :func:`remap_labels` maps a label map's ids to a system's classes (e.g. TotalSegmentator → VNet classes).

File formats live in :mod:`.ct_io` (NIfTI, DICOM, reorientation), the OpenKBP dataset (readers, listing,
screening rule, patient splits) in :mod:`.ct_openkbp`; both are re-exported here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from .ct_io import (
    CANONICAL_AXES,
    CTVolume,
    canonical,
    check_aligned,
    load_dicom_series,
    load_nifti,
    read_nifti,
    reorient,
)
from .ct_openkbp import (
    OPENKBP_AXES,
    OPENKBP_HOW_TO_GET,
    OPENKBP_HU_OFFSET,
    OPENKBP_ORGANS,
    OPENKBP_SHAPE,
    OPENKBP_SPLITS,
    OpenKBPPatient,
    Screening,
    holdout_patients,
    kfold_patients,
    openkbp_patients,
    read_openkbp,
    screen_ct,
    screen_openkbp,
)

__all__ = [
    "CANONICAL_AXES", "CTVolume", "OPENKBP_AXES", "OPENKBP_HOW_TO_GET", "OPENKBP_HU_OFFSET", "OPENKBP_ORGANS",
    "OPENKBP_SHAPE", "OPENKBP_SPLITS", "OpenKBPPatient", "SEGMENTATION_WINDOW", "Screening", "XRAY_CT_WINDOW",
    "clip_normalise", "denormalise", "holdout_patients", "kfold_patients", "load_ct", "load_dicom_series",
    "load_nifti", "openkbp_patients", "read_openkbp", "remap_labels", "reorient", "screen_ct", "screen_openkbp",
]

#: HU window for X-ray → CT: [−1024, 1024] HU → [0, 1] (LiftXR 2026, the protocol of SPEC §3's anchors table).
XRAY_CT_WINDOW = (-1024.0, 1024.0)
#: HU window for organ segmentation: the abdominal soft-tissue window [−175, 250] HU.
SEGMENTATION_WINDOW = (-175.0, 250.0)
NIFTI_SUFFIXES = (".nii", ".nii.gz")


# --------------------------------------------------------------------------------------------------
# HU ↔ network range
# --------------------------------------------------------------------------------------------------
def _window(window) -> tuple[float, float]:
    lo, hi = (float(w) for w in window)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
        raise ValueError(f"window must be (low, high) HU with low < high, got {tuple(window)}")
    return lo, hi


def clip_normalise(hu: np.ndarray | torch.Tensor, window=XRAY_CT_WINDOW) -> np.ndarray | torch.Tensor:
    """Clip HU to ``window`` and map it linearly to [0, 1]: ``(clip(hu, lo, hi) − lo) / (hi − lo)``.

    The one place where CT values become network inputs. X-ray → CT uses :data:`XRAY_CT_WINDOW` (the default,
    LiftXR 2026: [−1024, 1024] HU); segmentation passes ``window=SEGMENTATION_WINDOW`` ([−175, 250] HU).

    Args:
        hu: any shape, HU (int16 or float); numpy or torch (stays on its device).
        window: (low, high) HU; values outside are clipped.

    Returns:
        float32, same shape, in [0, 1]; a new array (the input is never modified).
    """
    lo, hi = _window(window)
    if isinstance(hu, torch.Tensor):
        return (hu.to(torch.float32).clamp(lo, hi) - lo) / (hi - lo)
    x = np.array(hu, dtype=np.float32)  # a copy: in-place ops below keep one float32 buffer
    np.clip(x, lo, hi, out=x)
    x -= np.float32(lo)
    x /= np.float32(hi - lo)
    return x


def denormalise(x: np.ndarray | torch.Tensor, window=XRAY_CT_WINDOW) -> np.ndarray | torch.Tensor:
    """Inverse of :func:`clip_normalise` for HU metrics: ``x · (hi − lo) + lo``, float32 HU.

    Values clipped by :func:`clip_normalise` come back as the window's edges; ``x`` outside [0, 1] (a network's raw
    output) is mapped linearly, not clipped.
    """
    lo, hi = _window(window)
    if isinstance(x, torch.Tensor):
        return x.to(torch.float32) * (hi - lo) + lo
    out = np.array(x, dtype=np.float32)
    out *= np.float32(hi - lo)
    out += np.float32(lo)
    return out


# --------------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------------
def remap_labels(labels: np.ndarray, mapping: dict[int, int], unmapped: str = "error") -> np.ndarray:
    """Map label ids to a system's classes, e.g. TotalSegmentator ``{5: 1, 2: 2, 1: 3, 3: 4}`` (liver, right
    kidney, spleen, left kidney → 1..4).

    Background 0 maps to 0 unless ``mapping`` says otherwise.

    Args:
        labels: integer label map, any shape, ids >= 0.
        mapping: ``{source id: target class}``, non-negative integers.
        unmapped: ``"error"`` (an id present in ``labels`` but not in ``mapping`` raises) or ``"background"``
            (such ids become 0).

    Returns:
        The remapped map, same shape, uint8 (or the smallest unsigned type holding the largest class).

    Raises:
        TypeError: non-integer labels. ValueError: negative ids or classes, an unknown ``unmapped``, unmapped ids
            (named) with ``unmapped="error"``.
    """
    if unmapped not in ("error", "background"):
        raise ValueError(f"unmapped must be 'error' or 'background', got {unmapped!r}")
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        raise TypeError(f"labels must be an integer label map, got {labels.dtype}")
    table = {0: 0, **{int(k): int(v) for k, v in mapping.items()}}
    if min(table) < 0 or min(table.values()) < 0:
        raise ValueError(f"mapping must hold non-negative ids and classes, got {mapping}")
    if labels.size and labels.min() < 0:
        raise ValueError(f"labels must be >= 0, got min {labels.min()}")
    top = int(labels.max()) if labels.size else 0
    size = max(top, max(table)) + 1
    out_type = np.min_scalar_type(max(table.values()))
    lut = np.zeros(size, dtype=out_type)
    known = np.zeros(size, dtype=bool)
    lut[list(table)] = list(table.values())
    known[list(table)] = True
    if unmapped == "error":
        missing = np.unique(labels[~known[labels]])
        if missing.size:
            raise ValueError(f"label ids {missing.tolist()} are not in the mapping {sorted(table)}; add them or pass "
                             f"unmapped='background'")
    return lut[labels]


# --------------------------------------------------------------------------------------------------
# the user's loader
# --------------------------------------------------------------------------------------------------
def load_ct(path: str | Path, labels: str | Path | None = None, axes: str | None = None) -> CTVolume:
    """Load a CT from an OpenKBP patient (``pt_N.npz`` or ``pt_N/`` with ``ct.csv``), a NIfTI file, or a DICOM folder.

    Args:
        path: ``.npz`` → :func:`read_openkbp`; ``.nii`` / ``.nii.gz`` → :func:`load_nifti`; a folder holding
            ``ct.csv`` → :func:`read_openkbp`; any other folder → :func:`load_dicom_series`.
        labels: a NIfTI label map on the CT's grid (NIfTI or DICOM CTs; OpenKBP carries its own labels).
        axes: reorient to these nibabel axis codes (e.g. ``"RAS"``); None keeps the loader's frame: RAS for NIfTI
            and DICOM, OpenKBP's own ``"PLI"``.

    Returns:
        :class:`CTVolume` — ``hu`` (X, Y, Z) int16/float32 HU, ``spacing`` mm per axis, ``labels`` or None,
        ``labelled`` (OpenKBP: (7,) bool) or None, ``source``, ``axes``, ``affine`` (None for OpenKBP).

    Raises:
        FileNotFoundError: no such path. ValueError: an unsupported file type, or the loaders' errors.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    name = path.name.lower()
    if path.suffix.lower() == ".npz" or (path.is_dir() and (path / "ct.csv").is_file()):
        if labels is not None:
            raise ValueError(f"{path}: an OpenKBP patient carries its own labels; do not pass labels=")
        volume = read_openkbp(path)
    elif name.endswith(NIFTI_SUFFIXES):
        volume = load_nifti(path, labels)
    elif path.is_dir():
        volume = load_dicom_series(path)
        if labels is not None:
            label_map, label_affine, _ = canonical(*read_nifti(labels, "labels"))  # both in RAS: compare there
            check_aligned(label_map.shape, label_affine, volume.hu.shape, volume.affine, f"{labels} vs {path}")
            volume = replace(volume, labels=label_map)
    else:
        raise ValueError(f"{path}: unsupported CT source; expected a .npz (OpenKBP), .nii / .nii.gz, or a folder "
                         f"(a DICOM series, or an OpenKBP pt_N/ with ct.csv)")
    return volume if axes is None else reorient(volume, axes)
