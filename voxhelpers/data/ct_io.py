"""CT file formats: the :class:`CTVolume` record, NIfTI (nibabel) and DICOM series (pydicom), one canonical frame.

Both loaders return the volume in nibabel's canonical frame **RAS+**: array axis 0 runs towards the patient's
Right, axis 1 towards Anterior, axis 2 towards Superior (``nib.aff2axcodes(affine) == ("R", "A", "S")``), shape
(X, Y, Z), spacing in mm along those axes, values in Hounsfield units (HU). Reorientation only permutes and flips
axes (nibabel's ``io_orientation`` + ``apply_orientation``, what ``nib.as_closest_canonical`` does); an oblique
acquisition goes to the closest canonical axes and is never resampled.

Memory: a volume is never held as float64. Integer files are read in their own integer type and kept as int16
when the HU fit; scaled or floating files are read straight into float32 (``np.asanyarray(img.dataobj,
dtype=np.float32)``, which lets nibabel scale in float32). Reorientation makes one contiguous copy of the
int16/float32 array (torch needs positive strides).

nibabel and pydicom are imported inside the functions: importing this module costs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

CANONICAL_AXES = "RAS"
_INT16 = np.iinfo(np.int16)


@dataclass(frozen=True, eq=False)
class CTVolume:
    """A CT volume in HU with its geometry, and optionally a label map on the same grid.

    Attributes:
        hu: (X, Y, Z) int16 or float32, Hounsfield units.
        spacing: voxel size in mm along axes 0, 1, 2.
        labels: (X, Y, Z) unsigned integer label map (0 = background) on the same grid, or None.
        labelled: (K,) bool, which of the dataset's K classes were delineated for this patient (an absent class is
            "not labelled", not "empty"), or None when the source does not say.
        source: where the volume came from (a path).
        axes: nibabel axis codes, the direction each array axis increases towards: ``"RAS"`` for NIfTI and DICOM,
            ``"PLI"`` for OpenKBP's own grid (see :mod:`.ct_openkbp`).
        affine: (4, 4) voxel → RAS+ world (mm) matrix, or None when the source stores no world geometry.
    """

    hu: np.ndarray
    spacing: tuple[float, float, float]
    labels: np.ndarray | None = None
    labelled: np.ndarray | None = None
    source: str = ""
    axes: str = CANONICAL_AXES
    affine: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.hu.ndim != 3:
            raise ValueError(f"CTVolume.hu must be 3D (X, Y, Z), got shape {self.hu.shape}")
        if self.hu.dtype not in (np.int16, np.float32):
            raise TypeError(f"CTVolume.hu must be int16 or float32 HU, got {self.hu.dtype}")
        if len(self.spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in self.spacing):
            raise ValueError(f"CTVolume.spacing must be 3 positive mm values, got {self.spacing}")
        if self.labels is not None and self.labels.shape != self.hu.shape:
            raise ValueError(f"labels of shape {self.labels.shape} do not match the CT grid {self.hu.shape}")
        _axis_letters(self.axes)


def _axis_letters(axes: str) -> str:
    """One letter per anatomical line (L/R, A/P, S/I) or raise: ``"PLI"`` is fine, ``"RLS"`` is not."""
    pairs = ("LR", "AP", "SI")
    used = [next((i for i, p in enumerate(pairs) if c in p), None) for c in str(axes)]
    if len(used) != 3 or None in used or len(set(used)) != 3:
        raise ValueError(f"axes must name each of L/R, A/P, S/I once (e.g. 'RAS', 'LPS'), got {axes!r}")
    return axes


def reorient(volume: CTVolume, axes: str = CANONICAL_AXES) -> CTVolume:
    """The same volume with its arrays permuted/flipped so that the axes run towards ``axes`` (no resampling).

    Args:
        volume: any :class:`CTVolume`.
        axes: target nibabel axis codes, e.g. ``"RAS"`` (nibabel's canonical) or ``"LPS"`` (DICOM's).

    Returns:
        A new :class:`CTVolume`: ``hu``/``labels`` contiguous, ``spacing`` permuted, ``affine`` updated.
    """
    from nibabel import orientations as ori

    _axis_letters(axes)
    if volume.axes == axes:
        return volume
    ornt = ori.ornt_transform(ori.axcodes2ornt(tuple(volume.axes)), ori.axcodes2ornt(tuple(axes)))
    spacing = [0.0, 0.0, 0.0]
    for i, (j, _) in enumerate(ornt):  # input axis i lands on output axis j
        spacing[int(j)] = volume.spacing[i]
    affine = None if volume.affine is None else volume.affine @ ori.inv_ornt_aff(ornt, volume.hu.shape)
    labels = None if volume.labels is None else np.ascontiguousarray(ori.apply_orientation(volume.labels, ornt))
    return replace(volume, hu=np.ascontiguousarray(ori.apply_orientation(volume.hu, ornt)), labels=labels,
                   spacing=tuple(spacing), axes=axes, affine=affine)


def check_affine(affine: np.ndarray | None, what: str) -> np.ndarray:
    """Return ``affine`` as a (4, 4) float64 array, or raise if it is missing, non-finite or singular."""
    if affine is None:
        raise ValueError(f"{what}: no affine; expected a (4, 4) voxel-to-world matrix giving orientation and spacing")
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise ValueError(f"{what}: expected a finite (4, 4) affine, got {affine.tolist()}")
    rzs = affine[:3, :3]
    norms = np.linalg.norm(rzs, axis=0)
    if (norms == 0).any() or abs(np.linalg.det(rzs)) < 1e-6 * np.prod(norms):
        raise ValueError(f"{what}: singular affine (voxel sizes {norms.round(4).tolist()} mm); expected three "
                         f"independent axes with non-zero spacing")
    return affine


def canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Reorient ``data`` (X, Y, Z) with voxel→RAS+ ``affine`` to the closest RAS frame.

    Returns:
        (data contiguous in RAS, its affine, spacing in mm along the new axes).
    """
    from nibabel import affines
    from nibabel import orientations as ori

    ornt = ori.io_orientation(affine)
    if not np.array_equal(ornt, ori.axcodes2ornt(CANONICAL_AXES)):
        affine = affine @ ori.inv_ornt_aff(ornt, data.shape)  # the input shape, as nibabel's as_reoriented
        data = ori.apply_orientation(data, ornt)
    spacing = tuple(float(s) for s in affines.voxel_sizes(affine))
    return np.ascontiguousarray(data), affine, spacing


# --------------------------------------------------------------------------------------------------
# NIfTI
# --------------------------------------------------------------------------------------------------
def _hu_dtype(data: np.ndarray) -> np.ndarray:
    """int16 when integer HU fit, else float32 (never float64)."""
    if data.dtype.kind in "iu" and (data.size == 0 or (data.min() >= _INT16.min and data.max() <= _INT16.max)):
        return data.astype(np.int16, copy=False)
    return data.astype(np.float32, copy=False)


def read_nifti(path: str | Path, kind: str = "ct") -> tuple[np.ndarray, np.ndarray]:
    """Read a 3D NIfTI (or any image nibabel opens) in its stored orientation.

    Args:
        path: ``.nii`` / ``.nii.gz`` file.
        kind: ``"ct"`` → int16/float32 HU; ``"labels"`` → uint8 (or int32 beyond 255), non-negative integers.

    Returns:
        (data (X, Y, Z), affine (4, 4) voxel → RAS+ mm) — not yet reoriented (see :func:`load_nifti`).

    Raises:
        ValueError: not 3D (a 4D image with a single volume is accepted), no orientation stored (qform_code and
            sform_code both 0), a singular affine, NaN/inf voxels, non-integer or negative labels.
    """
    import nibabel as nib

    if kind not in ("ct", "labels"):
        raise ValueError(f"kind must be 'ct' or 'labels', got {kind!r}")
    path = Path(path)
    try:
        img = nib.load(path)
    except nib.filebasedimages.ImageFileError as e:
        raise ValueError(f"{path}: not an image nibabel can read ({e}); expected a NIfTI .nii / .nii.gz") from e
    shape = img.shape
    if not (len(shape) == 3 or (len(shape) == 4 and shape[3] == 1)):
        raise ValueError(f"{path}: a {len(shape)}D image of shape {shape}; expected a 3D volume (X, Y, Z)")
    header = img.header
    if "qform_code" in header and int(header["qform_code"]) == 0 and int(header["sform_code"]) == 0:
        raise ValueError(f"{path}: no orientation stored (qform_code = sform_code = 0), so the affine is missing; "
                         f"expected a NIfTI with a scanner or aligned affine")
    affine = check_affine(img.affine, str(path))
    proxy = img.dataobj
    slope, inter = getattr(proxy, "slope", 1.0), getattr(proxy, "inter", 0.0)
    if img.get_data_dtype().kind in "iu" and slope == 1.0 and inter == 0.0:
        data = np.asanyarray(proxy)  # the file's own integer type
    else:
        data = np.asanyarray(proxy, dtype=np.float32)  # nibabel scales in float32: no float64 copy
        if not np.isfinite(data).all():
            n = int(np.size(data) - np.isfinite(data).sum())
            raise ValueError(f"{path}: {n} NaN/inf voxels; expected finite {'HU' if kind == 'ct' else 'labels'}")
    data = data.reshape(shape[:3])
    if kind == "ct":
        return _hu_dtype(data), affine
    if data.dtype.kind == "f" and not np.array_equal(data, np.round(data)):
        raise ValueError(f"{path}: non-integer label values; expected an integer label map")
    lo, hi = (data.min(), data.max()) if data.size else (0, 0)
    if lo < 0:
        raise ValueError(f"{path}: negative label values (min {lo}); expected labels >= 0 (0 = background)")
    return data.astype(np.uint8 if hi <= 255 else np.int32, copy=False), affine


def load_nifti(path: str | Path, labels: str | Path | None = None) -> CTVolume:
    """Load a NIfTI CT (any scanner/orientation) in the canonical RAS frame, HU, spacing from the affine.

    Args:
        path: CT ``.nii`` / ``.nii.gz``, values in HU.
        labels: optional label map on the same grid (same shape and affine, e.g. TotalSegmentator output); it is
            reoriented with the CT.

    Returns:
        :class:`CTVolume` with ``hu`` (X, Y, Z) int16/float32 HU, axis 0 → Right, 1 → Anterior, 2 → Superior;
        ``spacing`` in mm along those axes; ``affine`` voxel → RAS+ mm; ``axes == "RAS"``.

    Raises:
        ValueError: see :func:`read_nifti`; labels on another grid.
    """
    hu, affine = read_nifti(path, "ct")
    label_map = None
    if labels is not None:
        label_map, label_affine = read_nifti(labels, "labels")
        check_aligned(label_map.shape, label_affine, hu.shape, affine, f"{labels} vs {path}")
        label_map, _, _ = canonical(label_map, affine)
    hu, affine, spacing = canonical(hu, affine)
    return CTVolume(hu=hu, spacing=spacing, labels=label_map, source=str(path), affine=affine)


def check_aligned(shape: tuple, affine: np.ndarray, ref_shape: tuple, ref_affine: np.ndarray, what: str) -> None:
    """Raise ValueError unless a label map lies on the CT grid: same shape, affines equal within 1e-3 mm."""
    if tuple(shape) != tuple(ref_shape) or not np.allclose(affine, ref_affine, rtol=0, atol=1e-3):
        raise ValueError(f"{what}: label map not on the CT grid (shape {tuple(shape)} vs {tuple(ref_shape)}, "
                         f"affine {np.round(affine, 3).tolist()} vs {np.round(ref_affine, 3).tolist()}); "
                         f"expected the same shape and affine")


# --------------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------------
_REQUIRED = ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns",
             "RescaleSlope", "RescaleIntercept")


def _dicom_headers(folder: Path) -> list[tuple[Path, object]]:
    """(file, header without pixels) for every slice file; refuse an empty folder and non-DICOM files."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: expected a folder holding one DICOM CT series")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name != "DICOMDIR")
    if not files:
        raise ValueError(f"{folder}: empty folder; expected the files of one DICOM CT series (one file per slice)")
    headers, bad = [], []
    for f in files:
        try:
            headers.append((f, pydicom.dcmread(f, stop_before_pixels=True)))
        except (InvalidDicomError, EOFError, OSError, ValueError):
            bad.append(f.name)
    if bad:
        raise ValueError(f"{folder}: {len(bad)} non-DICOM file(s) {bad[:5]}; expected only the slices of one "
                         f"DICOM CT series (files with the 'DICM' preamble)")
    for f, ds in headers:
        missing = [tag for tag in _REQUIRED if tag not in ds]
        if missing:
            raise ValueError(f"{f}: missing {missing}; expected CT image slices carrying geometry and HU rescale tags")
    series = {str(ds.get("SeriesInstanceUID", "")) for _, ds in headers}
    if len(series) > 1:
        raise ValueError(f"{folder}: {len(series)} series mixed ({sorted(series)[:3]}...); expected one series")
    return headers


def load_dicom_series(folder: str | Path) -> CTVolume:
    """Load one DICOM CT series (a folder, one file per slice) in the canonical RAS frame, HU.

    Slices are sorted by ImagePositionPatient projected on the slice normal (row × column direction cosines), not
    by file name or InstanceNumber; HU = stored value × RescaleSlope + RescaleIntercept, per slice; spacing =
    PixelSpacing in-plane and the distance between slice positions (not SliceThickness).

    Args:
        folder: folder holding the series (hidden files and ``DICOMDIR`` are ignored).

    Returns:
        :class:`CTVolume` as :func:`load_nifti`: ``hu`` (X, Y, Z) int16 when every slope is 1, every intercept an
        integer and the HU fit int16, else float32; axis 0 → Right, 1 → Anterior, 2 → Superior.

    Raises:
        ValueError: empty folder, non-DICOM files, several series, missing tags, fewer than 2 slices, mixed
            orientation, mixed pixel spacing or size, duplicate positions, a missing slice (a gap > 1.5 × the
            median spacing), uneven slice spacing (> 1 % off the median), a tilted (sheared) stack.
    """
    import pydicom

    folder = Path(folder)
    headers = _dicom_headers(folder)
    if len(headers) < 2:
        raise ValueError(f"{folder}: 1 slice; expected a series of at least 2 slices (the slice spacing comes from "
                         f"their positions)")
    iop = np.array([[float(v) for v in ds.ImageOrientationPatient] for _, ds in headers])
    if not np.allclose(iop, iop[0], atol=1e-4):
        raise ValueError(f"{folder}: mixed orientation (ImageOrientationPatient differs between slices: "
                         f"{np.unique(iop.round(4), axis=0).tolist()}); expected one orientation")
    grid = np.array([[float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]), ds.Rows, ds.Columns] for _, ds in headers])
    if not np.allclose(grid, grid[0], atol=1e-4):
        raise ValueError(f"{folder}: mixed spacing or size ([row spacing, column spacing, rows, columns] take "
                         f"{np.unique(grid, axis=0).tolist()}); expected the same for every slice")
    row_cos, col_cos = iop[0, :3], iop[0, 3:]
    normal = np.cross(row_cos, col_cos)
    ipp = np.array([[float(v) for v in ds.ImagePositionPatient] for _, ds in headers])
    order = np.argsort(ipp @ normal, kind="stable")
    headers, ipp = [headers[i] for i in order], ipp[order]
    pos = ipp @ normal
    gaps = np.diff(pos)
    if (gaps < 1e-3).any():
        k = int(np.argmax(gaps < 1e-3))
        raise ValueError(f"{folder}: duplicate slice position {pos[k]:.3f} mm ({headers[k][0].name}, "
                         f"{headers[k + 1][0].name}); expected one slice per position")
    median = float(np.median(gaps))
    if (gaps > 1.5 * median).any():
        k = int(np.argmax(gaps))
        raise ValueError(f"{folder}: missing slice(s): a gap of {gaps[k]:.3f} mm between positions {pos[k]:.3f} and "
                         f"{pos[k + 1]:.3f} mm, median spacing {median:.3f} mm; expected a complete series")
    if (np.abs(gaps - median) > 0.01 * median).any():
        raise ValueError(f"{folder}: mixed slice spacing ({gaps.min():.3f} to {gaps.max():.3f} mm); expected an even "
                         f"spacing within 1 %")
    drift = (ipp[-1] - ipp[0]) - (pos[-1] - pos[0]) * normal
    if np.linalg.norm(drift) > 0.1 * grid[0, :2].min():
        raise ValueError(f"{folder}: slice positions drift {np.linalg.norm(drift):.2f} mm in-plane (gantry tilt or "
                         f"a sheared stack); expected slices stacked along their normal")
    slopes = np.array([float(ds.RescaleSlope) for _, ds in headers])
    inters = np.array([float(ds.RescaleIntercept) for _, ds in headers])
    integral = bool((slopes == 1).all() and (inters == np.round(inters)).all())
    rows, cols = int(grid[0, 2]), int(grid[0, 3])
    hu = np.empty((cols, rows, len(headers)), dtype=np.int16 if integral else np.float32)
    for k, (f, _) in enumerate(headers):
        try:
            pixels = pydicom.dcmread(f).pixel_array
        except Exception as e:  # missing PixelData, compressed without a decoder: name the file
            raise ValueError(f"{f}: cannot decode the pixel data ({e}); expected an uncompressed CT slice or an "
                             f"installed pydicom pixel handler") from e
        if pixels.shape != (rows, cols):
            raise ValueError(f"{f}: pixel array {pixels.shape}, expected ({rows}, {cols}) (one 2D frame)")
        if hu.dtype == np.int16:
            values = pixels.astype(np.int32) + int(inters[k])
            if values.min() < _INT16.min or values.max() > _INT16.max:
                hu = hu.astype(np.float32)  # rare: HU beyond int16; upcast once and go on in float32
            hu[:, :, k] = values.T
        else:
            hu[:, :, k] = (pixels.astype(np.float32) * np.float32(slopes[k]) + np.float32(inters[k])).T
    # voxel (i = column, j = row, k = slice) → LPS mm; PixelSpacing = [between rows, between columns]
    lps = np.eye(4)
    lps[:3, 0] = row_cos * grid[0, 1]
    lps[:3, 1] = col_cos * grid[0, 0]
    lps[:3, 2] = normal * (pos[-1] - pos[0]) / (len(pos) - 1)
    lps[:3, 3] = ipp[0]
    affine = check_affine(np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, str(folder))  # LPS → RAS
    hu, affine, spacing = canonical(hu, affine)
    return CTVolume(hu=hu, spacing=spacing, source=str(folder), affine=affine)
