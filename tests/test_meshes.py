"""Organ meshes (system 5): a sphere's area and volume against the closed forms with anisotropic spacing, closed
surfaces, absent labels, names, the affine, STL/OBJ/PLY files parsed back, atomic writes."""

import math
import re
from collections import Counter

import numpy as np
import pytest
from skimage.measure import mesh_surface_area

from voxhelpers.inference import meshes
from voxhelpers.inference.meshes import export_meshes, label_meshes, signed_volume, write_mesh

SPACING = (0.8, 1.0, 1.5)  # mm, anisotropic
RADIUS = 10.0


def _sphere_labels(label=3, radius=RADIUS, spacing=SPACING):
    """A ball of ``radius`` mm centred in a grid of ``spacing`` with ≥ 3 mm margin; also returns the centre in mm."""
    sp = np.asarray(spacing)
    shape = np.ceil(2 * (radius + 3) / sp).astype(int)
    centre = (shape - 1) / 2 * sp
    grid = np.stack(np.meshgrid(*[np.arange(n) * s for n, s in zip(shape, sp, strict=True)], indexing="ij"), -1)
    return (np.linalg.norm(grid - centre, axis=-1) <= radius).astype(np.uint8) * label, centre


def _edge_counts(faces) -> Counter:
    edges = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), axis=1)
    return Counter(map(tuple, edges))


def test_sphere_area_and_volume_match_the_closed_forms_with_anisotropic_spacing():
    labels, centre = _sphere_labels()
    area, volume = 4 * math.pi * RADIUS**2, 4 / 3 * math.pi * RADIUS**3
    raw = label_meshes(labels, SPACING)["label_3"]
    smooth = label_meshes(labels, SPACING, smooth=True)["label_3"]
    for verts, faces in (raw, smooth):
        assert verts.dtype == np.float32 and faces.dtype == np.int32
        assert signed_volume(verts, faces) == pytest.approx(volume, rel=0.03)  # positive: faces wound outwards
        assert set(_edge_counts(faces).values()) == {2}  # closed: every edge joins two faces
        half_extent = (verts.max(0) - verts.min(0)) / 2
        np.testing.assert_allclose(half_extent, RADIUS, atol=1.0)  # a ball in mm on every axis, not in voxels
        np.testing.assert_allclose((verts.max(0) + verts.min(0)) / 2, centre, atol=0.5)
    assert mesh_surface_area(*smooth) == pytest.approx(area, rel=0.04)
    # the raw surface keeps the voxel staircase: too large by ~12 % (the module docstring says so)
    assert 1.05 < mesh_surface_area(*raw) / area < 1.2
    # the spacing is what makes it right: the same mask taken as isotropic 1 mm voxels is another solid
    iso = label_meshes(labels, (1.0, 1.0, 1.0))["label_3"]
    assert abs(signed_volume(*iso) / volume - 1) > 0.1


def test_labels_touching_the_border_close_and_absent_labels_are_skipped():
    labels = np.zeros((6, 7, 5), np.int16)
    labels[:, :3] = 2  # touches five faces of the array
    labels[2:4, 5:, 1:4] = 5
    out = label_meshes(labels, (1.0, 1.0, 1.0), names=("a", "b", "c", "d", "e"))
    assert list(out) == ["b", "e"]  # label 1, 3, 4 absent: no mesh
    for verts, faces in out.values():
        assert set(_edge_counts(faces).values()) == {2} and signed_volume(verts, faces) > 0
    # the slab's surface runs half a voxel outside its outer voxel centres (padding closes it), 3 voxels thick
    verts = out["b"][0]
    np.testing.assert_allclose(verts.min(0), [-0.5, -0.5, -0.5], atol=1e-6)
    np.testing.assert_allclose(verts.max(0), [5.5, 2.5, 4.5], atol=1e-6)
    assert list(label_meshes(labels, (1, 1, 1))) == ["label_2", "label_5"]
    assert list(label_meshes(labels, (1, 1, 1), names={5: "kidney"})) == ["label_2", "kidney"]
    assert label_meshes(np.zeros((4, 4, 4), np.uint8), (1, 1, 1)) == {}
    with pytest.raises(ValueError, match="3D"):
        label_meshes(labels[0], (1, 1, 1))
    with pytest.raises(ValueError, match="spacing"):
        label_meshes(labels, (1, 0, 1))
    with pytest.raises(ValueError, match="share the mesh name"):
        label_meshes(labels, (1, 1, 1), names={2: "x", 5: "x"})


def test_affine_maps_to_world_and_keeps_faces_outward():
    labels, _ = _sphere_labels(label=1, radius=5.0)
    by_spacing = label_meshes(labels, SPACING)["label_1"]
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = (10.0, -20.0, 30.0)
    shifted = label_meshes(labels, None, affine=affine)["label_1"]
    np.testing.assert_allclose(shifted[0], by_spacing[0] + affine[:3, 3], atol=1e-4)
    np.testing.assert_array_equal(shifted[1], by_spacing[1])
    mirrored = affine @ np.diag([-1.0, 1.0, 1.0, 1.0])  # LAS-like: a negative determinant
    verts, faces = label_meshes(labels, None, affine=mirrored)["label_1"]
    assert signed_volume(verts, faces) == pytest.approx(signed_volume(*by_spacing), rel=1e-5)


def _read_stl_binary(path):
    data = path.read_bytes()
    (n,) = np.frombuffer(data, "<u4", 1, 80)
    assert len(data) == 84 + 50 * n
    rec = np.frombuffer(data, np.dtype([("normal", "<f4", 3), ("v", "<f4", (3, 3)), ("attr", "<u2")]), n, 84)
    return rec["normal"], rec["v"]


def _read_stl_ascii(path):
    text = path.read_text()
    assert text.startswith("solid ") and text.rstrip().split("\n")[-1].startswith("endsolid")
    nums = lambda key: np.array(re.findall(rf"{key} (\S+) (\S+) (\S+)", text), dtype=np.float32)  # noqa: E731
    return nums("normal"), nums("vertex").reshape(-1, 3, 3)


def _read_ply(path):
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode().splitlines()
    nv = int(next(h for h in header if h.startswith("element vertex")).split()[-1])
    nf = int(next(h for h in header if h.startswith("element face")).split()[-1])
    if "format ascii 1.0" in header:
        rows = data[end:].decode().splitlines()
        verts = np.array([r.split() for r in rows[:nv]], dtype=np.float32)
        faces = np.array([r.split() for r in rows[nv:nv + nf]], dtype=np.int64)
        assert (faces[:, 0] == 3).all()
        return verts, faces[:, 1:]
    assert "format binary_little_endian 1.0" in header
    verts = np.frombuffer(data, "<f4", 3 * nv, end).reshape(nv, 3)
    faces = np.frombuffer(data, np.dtype([("n", "u1"), ("i", "<i4", 3)]), nf, end + 12 * nv)
    assert (faces["n"] == 3).all() and len(data) == end + 12 * nv + 13 * nf
    return verts, faces["i"]


def _read_obj(path):
    lines = path.read_text().splitlines()
    verts = np.array([ln.split()[1:] for ln in lines if ln.startswith("v ")], dtype=np.float32)
    faces = np.array([ln.split()[1:] for ln in lines if ln.startswith("f ")], dtype=np.int64) - 1
    return verts, faces


def test_written_files_parse_back_to_the_same_mesh(tmp_path):
    labels, centre = _sphere_labels(label=1, radius=4.0)
    verts, faces = label_meshes(labels, SPACING, smooth=True)["label_1"]
    verts = verts + np.float32(1000.123)  # digits that a short text format would lose
    for ascii_ in (False, True):
        normals, tri = (_read_stl_ascii if ascii_ else _read_stl_binary)(write_mesh(tmp_path / "m.stl", verts, faces,
                                                                                    ascii=ascii_))
        np.testing.assert_array_equal(tri, verts[faces])
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-5)
        outward = np.einsum("ij,ij->i", normals, tri.mean(1) - (centre + 1000.123))
        assert (outward > 0).mean() > 0.99  # the normals point out of the ball
        v, f = _read_ply(write_mesh(tmp_path / "m.ply", verts, faces, ascii=ascii_))
        np.testing.assert_array_equal(v, verts)
        np.testing.assert_array_equal(f, faces)
    v, f = _read_obj(write_mesh(tmp_path / "m.OBJ", verts, faces))
    np.testing.assert_array_equal(v, verts)
    np.testing.assert_array_equal(f, faces)
    with pytest.raises(ValueError, match=r"\.stl, \.obj, \.ply"):
        write_mesh(tmp_path / "m.off", verts, faces)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.OBJ", "m.ply", "m.stl"]  # no temporary files left


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    verts = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    assert signed_volume(verts, faces) == pytest.approx(1 / 6)
    target = tmp_path / "t.ply"
    target.write_bytes(b"old")

    def fail_midway(fh, v, f, ascii_):
        fh.write(b"ply\nformat binary_little_endian 1.0\n")
        raise OSError("disk full")

    monkeypatch.setattr(meshes, "_write_ply", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        write_mesh(target, verts, faces)
    assert target.read_bytes() == b"old"  # the old file, whole
    with pytest.raises(OSError, match="disk full"):
        write_mesh(tmp_path / "new.ply", verts, faces)
    assert [p.name for p in tmp_path.iterdir()] == ["t.ply"]  # no new file, no temporary file
    # bad meshes are refused before anything is written
    for bad_faces, msg in ((faces + 1, "index vertices 0..3"), (faces[:, :2], r"\(M, 3\)")):
        with pytest.raises(ValueError, match=msg):
            write_mesh(tmp_path / "bad.stl", verts, bad_faces)
    with pytest.raises(ValueError, match="NaN"):
        write_mesh(tmp_path / "bad.stl", np.where(verts > 0, np.nan, verts), faces)
    assert not (tmp_path / "bad.stl").exists()


def test_export_meshes_writes_one_file_per_present_label(tmp_path):
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[1:4, 1:4, 1:4] = 1
    labels[5:7, 4:7, 2:6] = 3
    names = ("Right Parotid", "Brainstem", "Spinal/Cord")
    paths = export_meshes(labels, (1.0, 1.0, 2.0), tmp_path / "out", names, fmt="ply")
    assert [p.name for p in paths] == ["Right_Parotid.ply", "Spinal_Cord.ply"]
    meshes_ = label_meshes(labels, (1.0, 1.0, 2.0), names)
    for p, (verts, faces) in zip(paths, meshes_.values(), strict=True):
        v, f = _read_ply(p)
        np.testing.assert_array_equal(v, verts)
        np.testing.assert_array_equal(f, faces)
    stl = export_meshes(labels, (1.0, 1.0, 2.0), tmp_path / "stl", fmt=".STL", step_size=2)
    assert [p.name for p in stl] == ["label_1.stl", "label_3.stl"]
    with pytest.raises(ValueError, match="stl, obj, ply"):
        export_meshes(labels, (1, 1, 1), tmp_path, fmt="vtk")


def test_a_coarse_step_does_not_lose_a_small_organ():
    labels = np.zeros((12, 12, 12), np.uint8)
    labels[2:8, 2:8, 2:8] = 1
    labels[10, 10, 10] = 2  # one voxel: a step of 3 would step over it
    meshes = label_meshes(labels, (1.0, 1.0, 1.0), step_size=3)
    assert set(meshes) == {"label_1", "label_2"} and len(meshes["label_2"][1]) > 0
