"""Organ meshes from a label map (system 5, SPEC §5): marching cubes, optional smoothing, STL / OBJ / PLY files.

:func:`label_meshes` runs :func:`skimage.measure.marching_cubes` on each label present (the mask padded by one voxel
so every surface closes), with the voxel spacing, so vertices are in mm; faces are wound counter-clockwise seen from
outside (normals point out, the enclosed volume by the divergence theorem is positive). :func:`write_mesh` writes
one mesh, the format chosen by the extension (binary or ASCII STL, OBJ, binary little-endian or ASCII PLY), through a
temporary file and :func:`os.replace` so a reader never sees half a file. :func:`export_meshes` does both for a whole
label map. The writers are small and written here (trimesh is not a dependency).

Accuracy (a voxelised sphere, radius 10 mm, spacing 0.8 × 1.0 × 1.5 mm): the enclosed volume is within 1 % of
4/3 πr³; the area of the raw surface is ~12 % too large (the staircase of a binary mask, which marching cubes
chamfers but does not remove), ~2 % with ``smooth=True`` (Taubin's λ|μ smoothing, which removes the staircase
without shrinking the volume as plain Laplacian smoothing or blurring the mask would).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import numpy as np

FORMATS = {".stl": "STL", ".obj": "OBJ", ".ply": "PLY"}
#: Taubin (1995) smoothing: a shrinking step λ then an inflating step μ (|μ| > λ), per iteration
TAUBIN_LAMBDA, TAUBIN_MU, TAUBIN_ITERATIONS = 0.5, -0.53, 20

__all__ = ["FORMATS", "export_meshes", "label_meshes", "signed_volume", "taubin_smooth", "write_mesh"]

_STL_DTYPE = np.dtype([("normal", "<f4", (3,)), ("vertices", "<f4", (3, 3)), ("attr", "<u2")])  # 50 bytes
_PLY_FACE_DTYPE = np.dtype([("n", "u1"), ("idx", "<i4", (3,))])  # 13 bytes


def _spacing(spacing) -> tuple[float, float, float]:
    s = tuple(float(v) for v in np.ravel(spacing))
    if len(s) != 3 or not all(np.isfinite(v) and v > 0 for v in s):
        raise ValueError(f"spacing must be 3 positive mm values, got {spacing!r}")
    return s


def _name_of(label: int, names) -> str:
    if names is None:
        return f"label_{label}"
    if isinstance(names, Mapping):
        return str(names.get(label, f"label_{label}"))
    return str(names[label - 1]) if 1 <= label <= len(names) else f"label_{label}"


def signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed triangle mesh (divergence theorem): Σ v0 · (v1 × v2) / 6.

    Positive when the faces are wound counter-clockwise seen from outside (outward normals); in the cube of the
    vertices' unit (mm³ for :func:`label_meshes`).
    """
    tri = np.asarray(verts, dtype=np.float64)[np.asarray(faces)]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


def taubin_smooth(verts: np.ndarray, faces: np.ndarray, iterations: int = TAUBIN_ITERATIONS,
                  lam: float = TAUBIN_LAMBDA, mu: float = TAUBIN_MU) -> np.ndarray:
    """Taubin's λ|μ smoothing (G. Taubin, "A signal processing approach to fair surface design", SIGGRAPH 1995).

    Each iteration moves every vertex towards the mean of its neighbours by λ, then away by |μ|: a low-pass filter
    that removes the staircase of a voxel surface without the shrinkage of plain Laplacian smoothing.

    Args:
        verts: (N, 3) vertices.
        faces: (M, 3) vertex indices.
        iterations: λ|μ pairs, >= 0.
        lam: the shrinking step, in (0, 1).
        mu: the inflating step, negative with ``|mu| > lam``.

    Returns:
        (N, 3) float64 smoothed vertices (the faces are unchanged).
    """
    import scipy.sparse as sps

    v = np.asarray(verts, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    n = len(v)
    rows, cols = f[:, [0, 1, 2, 1, 2, 0]].ravel(), f[:, [1, 2, 0, 0, 1, 2]].ravel()
    adj = sps.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n)).tocsr()
    adj.data[:] = 1.0  # an edge shared by two faces counts once
    degree = np.asarray(adj.sum(axis=1)).ravel()
    mean_of_neighbours = sps.diags(1.0 / np.maximum(degree, 1.0)) @ adj
    for _ in range(int(iterations)):
        v = v + lam * (mean_of_neighbours @ v - v)
        v = v + mu * (mean_of_neighbours @ v - v)
    return v


def label_meshes(labels: np.ndarray, spacing, names: Sequence[str] | Mapping[int, str] | None = None,
                 level: float = 0.5, step_size: int = 1, smooth: bool | int = False,
                 affine: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """One closed surface per label present in a label map, by marching cubes, in mm.

    Vertex coordinates: voxel (i, j, k)'s centre is at ``(i, j, k) · spacing`` mm (the array's own frame), or at
    ``affine @ (i, j, k, 1)`` when ``affine`` is given (e.g. :attr:`CTVolume.affine`, the world frame in mm).

    Args:
        labels: (X, Y, Z) integer label map, 0 = background.
        spacing: voxel size in mm along the three axes (used when ``affine`` is None).
        names: the mesh names: a sequence naming labels 1, 2, ... in order (background excluded, e.g.
            :data:`~voxhelpers.data.ct_openkbp.OPENKBP_ORGANS`) or a mapping label → name; labels without a name,
            or all with ``names=None``, are called ``"label_<id>"``.
        level: iso-level on the binary mask, in (0, 1) (0.5: halfway between inside and outside voxel centres).
        step_size: marching-cubes step in voxels, >= 1 (2 or more: coarser, smaller meshes).
        smooth: False, True (:data:`TAUBIN_ITERATIONS` iterations of :func:`taubin_smooth`) or a number of
            iterations.
        affine: optional (4, 4) voxel → world matrix; replaces ``spacing``. A mirroring affine (negative determinant)
            is handled: faces stay wound outwards.

    Returns:
        ``{name: (verts (N, 3) float32 mm, faces (M, 3) int32)}`` in increasing label order; absent labels are
        skipped (an empty map gives ``{}``).

    Raises:
        ValueError: ``labels`` not 3D or not integer; bad spacing/affine/level/step_size; two labels with one name.
    """
    from skimage.measure import marching_cubes

    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"labels must be a 3D (X, Y, Z) label map, got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ValueError(f"labels must hold integers, got dtype {labels.dtype}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1) (an iso-level on a 0/1 mask), got {level!r}")
    if not (isinstance(step_size, (int, np.integer)) and step_size >= 1):
        raise ValueError(f"step_size must be an int >= 1, got {step_size!r}")
    iterations = TAUBIN_ITERATIONS if smooth is True else int(smooth)
    if iterations < 0:
        raise ValueError(f"smooth must be a bool or a number of iterations >= 0, got {smooth!r}")
    if affine is not None:
        affine = np.asarray(affine, dtype=np.float64)
        if affine.shape != (4, 4) or not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
            raise ValueError(f"affine must be a finite invertible (4, 4) matrix, got {affine!r}")
        step_spacing = (1.0, 1.0, 1.0)
    else:
        step_spacing = _spacing(spacing)

    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for label in np.unique(labels):
        if label == 0:
            continue
        name = _name_of(int(label), names)
        if name in out:
            raise ValueError(f"two labels share the mesh name {name!r}; give each label its own name")
        mask = np.pad(labels == label, 1).astype(np.float32)  # one voxel of background: every surface closes
        try:
            verts, faces, _, _ = marching_cubes(mask, level, spacing=step_spacing, step_size=int(step_size),
                                                allow_degenerate=False)
        except RuntimeError:  # a coarse step stepped over a small organ: mesh it at full resolution
            verts, faces, _, _ = marching_cubes(mask, level, spacing=step_spacing, step_size=1, allow_degenerate=False)
        verts = verts.astype(np.float64) - np.asarray(step_spacing)  # undo the padding: voxel (0, 0, 0) at 0
        faces = faces[:, ::-1]  # skimage winds them inwards for a mask that is 1 inside: outwards instead
        if affine is not None:
            verts = verts @ affine[:3, :3].T + affine[:3, 3]
            if np.linalg.det(affine[:3, :3]) < 0:
                faces = faces[:, ::-1]
        if iterations:
            verts = taubin_smooth(verts, faces, iterations)
        out[name] = (verts.astype(np.float32), np.ascontiguousarray(faces, dtype=np.int32))
    return out


def _check_mesh(verts, faces) -> tuple[np.ndarray, np.ndarray]:
    v = np.asarray(verts)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3 or not np.issubdtype(v.dtype, np.number):
        raise ValueError(f"verts must be an (N, 3) numeric array, got shape {v.shape} dtype {v.dtype}")
    if not np.isfinite(v).all():
        raise ValueError("verts hold NaN or inf")
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"faces must be an (M, 3) integer array, got shape {f.shape} dtype {f.dtype}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"faces index vertices 0..{len(v) - 1}, got indices {f.min()}..{f.max()}")
    return v.astype(np.float32), f.astype(np.int64)


def _face_normals(tri: np.ndarray) -> np.ndarray:
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    length = np.linalg.norm(n, axis=1, keepdims=True)
    return np.divide(n, length, out=np.zeros_like(n), where=length > 0)  # degenerate faces: a zero normal


def _write_stl(fh: BinaryIO, v: np.ndarray, f: np.ndarray, ascii_: bool, name: str) -> None:
    tri = v[f]
    normals = _face_normals(tri.astype(np.float64)).astype(np.float32)
    if ascii_:
        lines = [f"solid {name}"]
        for n, t in zip(normals, tri, strict=True):
            lines += [f"  facet normal {n[0]:.9g} {n[1]:.9g} {n[2]:.9g}", "    outer loop",
                      *(f"      vertex {p[0]:.9g} {p[1]:.9g} {p[2]:.9g}" for p in t), "    endloop", "  endfacet"]
        lines.append(f"endsolid {name}\n")
        fh.write("\n".join(lines).encode("ascii"))
        return
    header = f"binary STL, voxhelpers, {name}".encode("ascii", "replace")[:80].ljust(80, b" ")
    records = np.zeros(len(f), dtype=_STL_DTYPE)
    records["normal"], records["vertices"] = normals, tri
    fh.write(header)
    fh.write(np.uint32(len(f)).astype("<u4").tobytes())
    fh.write(records.tobytes())


def _write_obj(fh: BinaryIO, v: np.ndarray, f: np.ndarray, name: str) -> None:
    fh.write(f"# voxhelpers mesh {name}: {len(v)} vertices, {len(f)} faces\no {name}\n".encode("ascii", "replace"))
    np.savetxt(fh, v, fmt="v %.9g %.9g %.9g")
    np.savetxt(fh, f + 1, fmt="f %d %d %d")  # OBJ indices start at 1


def _write_ply(fh: BinaryIO, v: np.ndarray, f: np.ndarray, ascii_: bool) -> None:
    header = ["ply", f"format {'ascii' if ascii_ else 'binary_little_endian'} 1.0", "comment voxhelpers",
              f"element vertex {len(v)}", "property float x", "property float y", "property float z",
              f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    fh.write(("\n".join(header) + "\n").encode("ascii"))
    if ascii_:
        np.savetxt(fh, v, fmt="%.9g %.9g %.9g")
        np.savetxt(fh, f, fmt="3 %d %d %d")
        return
    fh.write(v.astype("<f4").tobytes())
    records = np.empty(len(f), dtype=_PLY_FACE_DTYPE)
    records["n"], records["idx"] = 3, f
    fh.write(records.tobytes())


def _atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    """Write through a temporary file in the same folder, then :func:`os.replace` it onto ``path``: readers see the
    old file or the whole new one, never a part; on any error the temporary file is removed and ``path`` untouched."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_mesh(path: str | os.PathLike, verts: np.ndarray, faces: np.ndarray, ascii: bool = False) -> Path:
    """Write a triangle mesh, its format chosen by the extension, atomically (temporary file + ``os.replace``).

    * ``.stl``: binary STL (80-byte header, uint32 count, per face a float32 normal, three float32 vertices and a
      uint16 0), or ASCII STL with ``ascii=True``; normals are the faces' unit normals (zero for degenerate faces).
    * ``.obj``: Wavefront OBJ text (``v x y z`` and 1-based ``f i j k``); ``ascii`` is ignored.
    * ``.ply``: PLY, binary little-endian (float32 x y z; uchar count + int32 indices), or ASCII with ``ascii=True``.

    Vertices are stored as float32 (printed with 9 significant digits in text formats, enough to read the same
    float32 back).

    Args:
        path: destination; its folder must exist.
        verts: (N, 3) vertices (mm).
        faces: (M, 3) integer vertex indices, wound counter-clockwise seen from outside.
        ascii: text STL/PLY instead of binary.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: an unknown extension (the valid ones are listed); bad verts/faces (shape, NaN, an index out of
            range) — checked before anything is written.
        FileNotFoundError: the folder does not exist.
    """
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise ValueError(f"unknown mesh extension {path.suffix!r} for {path}; valid: {', '.join(FORMATS)}")
    v, f = _check_mesh(verts, faces)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist")
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem) or "mesh"
    if ext == ".stl":
        return _atomic_write(path, lambda fh: _write_stl(fh, v, f, ascii, name))
    if ext == ".obj":
        return _atomic_write(path, lambda fh: _write_obj(fh, v, f, name))
    return _atomic_write(path, lambda fh: _write_ply(fh, v, f, ascii))


def export_meshes(labels: np.ndarray, spacing, folder: str | os.PathLike,
                  names: Sequence[str] | Mapping[int, str] | None = None, fmt: str = "stl", ascii: bool = False,
                  **mesh_kwargs) -> list[Path]:
    """Mesh every label present (:func:`label_meshes`) and write one file per label into ``folder``.

    Args:
        labels: (X, Y, Z) integer label map.
        spacing: voxel size in mm.
        folder: output folder (created if missing).
        names: mesh names, as in :func:`label_meshes`; file names are the names with characters other than letters,
            digits, ``_ . -`` replaced by ``_``.
        fmt: ``"stl"``, ``"obj"`` or ``"ply"``.
        ascii: text STL/PLY (see :func:`write_mesh`).
        **mesh_kwargs: ``level``, ``step_size``, ``smooth``, ``affine`` for :func:`label_meshes`.

    Returns:
        the written paths, in increasing label order (absent labels write nothing).

    Raises:
        ValueError: an unknown ``fmt`` (valid ones listed); see :func:`label_meshes` and :func:`write_mesh`.
    """
    ext = "." + str(fmt).lower().lstrip(".")
    if ext not in FORMATS:
        raise ValueError(f"unknown mesh format {fmt!r}; valid: {', '.join(e[1:] for e in FORMATS)}")
    meshes = label_meshes(labels, spacing, names, **mesh_kwargs)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stems = {name: re.sub(r"[^A-Za-z0-9_.-]", "_", name) for name in meshes}
    if len(set(stems.values())) != len(stems):
        raise ValueError(f"mesh names collide once made file-safe: {sorted(stems.values())}")
    return [write_mesh(folder / f"{stems[name]}{ext}", v, f, ascii=ascii) for name, (v, f) in meshes.items()]
