"""CT data layer: HU windows, label remapping, NIfTI and DICOM loaders, OpenKBP readers, screening, patient splits."""

import nibabel as nib
import numpy as np
import pytest
import torch

from voxhelpers.config import DatasetNotFoundError
from voxhelpers.data.ct import (
    OPENKBP_HU_OFFSET,
    OPENKBP_ORGANS,
    OPENKBP_SHAPE,
    SEGMENTATION_WINDOW,
    XRAY_CT_WINDOW,
    CTVolume,
    OpenKBPPatient,
    clip_normalise,
    denormalise,
    holdout_patients,
    kfold_patients,
    load_ct,
    load_dicom_series,
    load_nifti,
    openkbp_patients,
    read_openkbp,
    remap_labels,
    reorient,
    screen_ct,
    screen_openkbp,
)


# --------------------------------------------------------------------------------------------------
# HU windows
# --------------------------------------------------------------------------------------------------
def test_clip_normalise_hand_worked_values_numpy_and_torch():
    hu = np.array([-2000, -1024, 0, 512, 1024, 3000], dtype=np.int16)
    expected = np.array([0, 0, 0.5, 0.75, 1, 1], dtype=np.float32)  # (clip(h) + 1024) / 2048
    out = clip_normalise(hu)
    assert out.dtype == np.float32 and np.array_equal(out, expected)
    assert hu[0] == -2000  # the input is not modified
    t = clip_normalise(torch.from_numpy(hu))
    assert t.dtype == torch.float32 and torch.equal(t, torch.from_numpy(expected))
    # segmentation window (-175, 250): width 425; 37.5 HU → (37.5 + 175) / 425 = 0.5
    seg = clip_normalise(np.array([-1000.0, -175.0, 37.5, 250.0, 900.0]), window=SEGMENTATION_WINDOW)
    np.testing.assert_allclose(seg, [0, 0, 0.5, 1, 1], atol=1e-7)


def test_denormalise_inverts_inside_the_window_and_clips_outside():
    hu = np.linspace(-1024, 1024, 101, dtype=np.float32)
    np.testing.assert_allclose(denormalise(clip_normalise(hu)), hu, atol=1e-3)
    assert denormalise(clip_normalise(np.array([-3000.0, 5000.0]))).tolist() == list(XRAY_CT_WINDOW)
    t = torch.tensor([0.0, 0.5, 1.0])
    assert denormalise(t, SEGMENTATION_WINDOW).tolist() == [-175.0, 37.5, 250.0]


@pytest.mark.parametrize("window", [(100, 100), (250, -175), (0, float("nan"))])
def test_clip_normalise_refuses_a_bad_window(window):
    with pytest.raises(ValueError, match="window"):
        clip_normalise(np.zeros(3), window=window)


# --------------------------------------------------------------------------------------------------
# label remapping
# --------------------------------------------------------------------------------------------------
def test_remap_labels_maps_ids_and_names_unmapped_ones():
    labels = np.array([[0, 5, 2], [1, 3, 7]], dtype=np.uint8)
    mapping = {5: 1, 2: 2, 1: 3, 3: 4}  # TotalSegmentator liver, kidney_r, spleen, kidney_l → 1..4
    with pytest.raises(ValueError, match=r"\[7\]"):
        remap_labels(labels, mapping)
    out = remap_labels(labels, mapping, unmapped="background")
    assert out.dtype == np.uint8 and out.tolist() == [[0, 1, 2], [3, 4, 0]]
    assert remap_labels(labels, {**mapping, 7: 300}).tolist() == [[0, 1, 2], [3, 4, 300]]  # wider type
    assert remap_labels(labels, {0: 9, **mapping, 7: 5})[0, 0] == 9  # background remappable


def test_remap_labels_refuses_bad_input():
    with pytest.raises(TypeError):
        remap_labels(np.zeros(3, np.float32), {})
    with pytest.raises(ValueError, match=">= 0"):
        remap_labels(np.array([-1, 0]), {})
    with pytest.raises(ValueError, match="unmapped"):
        remap_labels(np.zeros(3, np.uint8), {}, unmapped="drop")


# --------------------------------------------------------------------------------------------------
# NIfTI
# --------------------------------------------------------------------------------------------------
def _save(tmp_path, data, affine, name="ct.nii.gz", header=None):
    path = tmp_path / name
    nib.save(nib.Nifti1Image(data, affine, header), path)
    return path


def test_load_nifti_reorients_to_ras_like_nibabel_and_keeps_spacing(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6) - 500
    # axis 0 → posterior (0.7 mm), axis 1 → left (0.5 mm), axis 2 → inferior (2.5 mm): "PLI", like OpenKBP
    affine = np.array([[0, -0.5, 0, 10], [-0.7, 0, 0, 20], [0, 0, -2.5, 30], [0, 0, 0, 1.0]])
    path = _save(tmp_path, data, affine)
    vol = load_nifti(path)
    ref = nib.as_closest_canonical(nib.load(path))
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S") and vol.axes == "RAS"
    assert vol.hu.dtype == np.int16 and vol.hu.flags.c_contiguous
    np.testing.assert_array_equal(vol.hu, np.asanyarray(ref.dataobj))
    np.testing.assert_allclose(vol.affine, ref.affine)
    assert vol.spacing == pytest.approx((0.5, 0.7, 2.5))
    # hand check: every input axis runs P, L or I, so all three flip: RAS (0, 0, 0) is the input voxel (3, 4, 5)
    assert vol.hu[0, 0, 0] == data[3, 4, 5] and vol.hu.shape == (5, 4, 6)


def test_load_nifti_reads_scaled_data_as_float32_and_accepts_one_volume_4d(tmp_path):
    img = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4, 1), np.eye(4))
    img.header.set_slope_inter(0.5, -10)
    nib.save(img, tmp_path / "s.nii")
    vol = load_nifti(tmp_path / "s.nii")
    assert vol.hu.dtype == np.float32 and vol.hu.shape == (2, 3, 4)
    assert vol.hu[1, 2, 3] == 23 * 0.5 - 10


@pytest.mark.parametrize("case, match", [
    ("2d", "2D image"), ("4d", "4D image"), ("nan", "NaN"), ("no_affine", "no orientation"), ("singular", "singular"),
])
def test_load_nifti_refuses_bad_images(tmp_path, case, match):
    cube = np.zeros((4, 4, 4), np.float32)
    if case == "2d":
        path = _save(tmp_path, np.zeros((4, 4), np.int16), np.eye(4))
    elif case == "4d":
        path = _save(tmp_path, np.zeros((4, 4, 4, 2), np.int16), np.eye(4))
    elif case == "nan":
        cube[1, 2, 3] = np.nan
        path = _save(tmp_path, cube, np.eye(4))
    elif case == "no_affine":
        path = _save(tmp_path, cube, None)  # nibabel writes qform_code = sform_code = 0
    else:
        header = nib.Nifti1Header()
        header.set_sform(np.diag([1.0, 0.0, 1.0, 1.0]), code=1)  # axis 1 has no extent
        path = _save(tmp_path, cube, None, header=header)
    with pytest.raises(ValueError, match=match):
        load_nifti(path)


def test_load_nifti_labels_must_share_the_grid(tmp_path):
    ct = _save(tmp_path, np.zeros((4, 4, 4), np.int16), np.diag([-1.0, -1, 1, 1]))
    good = _save(tmp_path, np.eye(4, dtype=np.uint8)[:, :, None].repeat(4, 2), np.diag([-1.0, -1, 1, 1]), "l.nii.gz")
    vol = load_ct(ct, labels=good)
    assert vol.labels.dtype == np.uint8 and vol.labels[3, 3, 0] == 1  # flipped with the CT: (0, 0) → (3, 3)
    shifted = _save(tmp_path, np.zeros((4, 4, 4), np.uint8), np.diag([1.0, 1, 1, 1]), "m.nii.gz")
    with pytest.raises(ValueError, match="not on the CT grid"):
        load_nifti(ct, labels=shifted)
    fractional = _save(tmp_path, np.full((4, 4, 4), 0.5, np.float32), np.diag([-1.0, -1, 1, 1]), "f.nii.gz")
    with pytest.raises(ValueError, match="non-integer"):
        load_nifti(ct, labels=fractional)


# --------------------------------------------------------------------------------------------------
# DICOM
# --------------------------------------------------------------------------------------------------
def _pixels(k):
    """Slice k of the synthetic series: (rows 8, cols 8), value 100·k + 10·row + col, all distinct."""
    return (100 * k + 10 * np.arange(8)[:, None] + np.arange(8)[None, :]).astype(np.int16)


def _write_series(folder, z=(0.0, 2.5, 5.0, 7.5), slope=1.0, intercept=-1024.0, iop=None, spacing=None, series=None):
    """Write a CT series, one file per slice, file names in reverse position order (so sorting matters)."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series or generate_uid()
    for k, zk in enumerate(z):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = uid = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality, ds.SeriesInstanceUID = CTImageStorage, uid, "CT", series_uid
        ds.ImagePositionPatient = [-10.0, -20.0, zk]
        ds.ImageOrientationPatient = (iop or {}).get(k, [1, 0, 0, 0, 1, 0])
        ds.PixelSpacing = (spacing or {}).get(k, [0.5, 0.7])  # [between rows, between columns]
        ds.Rows = ds.Columns = 8
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        ds.PixelData = _pixels(k).astype("<i2").tobytes()
        pydicom.dcmwrite(folder / f"IM{len(z) - k:04d}.dcm", ds, enforce_file_format=True)
    return folder


def test_load_dicom_series_sorts_by_position_rescales_and_reorients(tmp_path):
    folder = _write_series(tmp_path / "s")
    vol = load_ct(folder)
    assert vol.hu.shape == (8, 8, 4) and vol.hu.dtype == np.int16
    # columns (LPS +x, towards Left) flip to Right, rows (+y, Posterior) flip to Anterior, slices ascend (Superior):
    # hu[a, b, c] = pixels_c[7 - b, 7 - a] - 1024
    expected = np.stack([_pixels(k)[::-1, ::-1].T for k in range(4)], axis=2).astype(np.int32) - 1024
    np.testing.assert_array_equal(vol.hu, expected)
    assert vol.spacing == pytest.approx((0.7, 0.5, 2.5))  # column spacing, row spacing, slice positions
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S")
    # voxel (7, 7, 0) is the first stored pixel of the lowest slice: LPS (-10, -20, 0) → RAS (10, 20, 0)
    np.testing.assert_allclose(vol.affine @ [7, 7, 0, 1], [10, 20, 0, 1])
    # a NIfTI label map saved on the loaded grid comes back aligned; one on a shifted grid is refused
    nib.save(nib.Nifti1Image((vol.hu > -900).astype(np.uint8), vol.affine), tmp_path / "seg.nii.gz")
    assert np.array_equal(load_ct(folder, labels=tmp_path / "seg.nii.gz").labels, vol.hu > -900)
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 4), np.uint8), np.eye(4)), tmp_path / "off.nii.gz")
    with pytest.raises(ValueError, match="not on the CT grid"):
        load_ct(folder, labels=tmp_path / "off.nii.gz")


def test_load_dicom_series_gives_float32_for_a_fractional_slope_or_hu_beyond_int16(tmp_path):
    vol = load_dicom_series(_write_series(tmp_path / "s", slope=0.5, intercept=-1000.5))
    assert vol.hu.dtype == np.float32 and vol.hu[7, 7, 3] == 300 * 0.5 - 1000.5
    big = load_dicom_series(_write_series(tmp_path / "t", intercept=32700))  # 32700 + 377 > 32767
    assert big.hu.dtype == np.float32 and big.hu[0, 0, 3] == 32700 + 377 and big.hu[7, 7, 0] == 32700


@pytest.mark.parametrize("case, match", [
    ("missing_slice", "missing slice"), ("orientation", "mixed orientation"), ("pixel_spacing", "mixed spacing"),
    ("uneven", "mixed slice spacing"), ("duplicate", "duplicate slice position"), ("two_series", "series mixed"),
    ("empty", "empty folder"), ("not_dicom", "non-DICOM"), ("one_slice", "at least 2 slices"),
])
def test_load_dicom_series_refuses_bad_series(tmp_path, case, match):
    folder = tmp_path / "s"
    if case == "missing_slice":
        _write_series(folder, z=(0.0, 2.5, 5.0, 7.5, 10.0))
        (folder / "IM0003.dcm").unlink()  # the slice at 5.0 mm: positions 0, 2.5, 7.5, 10 (a 5 mm gap)
    elif case == "orientation":
        _write_series(folder, iop={2: [1, 0, 0, 0, 0.8, 0.6]})
    elif case == "pixel_spacing":
        _write_series(folder, spacing={1: [0.6, 0.7]})
    elif case == "uneven":
        _write_series(folder, z=(0.0, 2.5, 5.5, 8.0))
    elif case == "duplicate":
        _write_series(folder, z=(0.0, 2.5, 2.5, 5.0))
    elif case == "two_series":
        _write_series(folder, z=(0.0, 2.5))
        _write_series(tmp_path / "t", z=(5.0, 7.5))
        for f in (tmp_path / "t").iterdir():
            f.rename(folder / f"B{f.name}")
    elif case == "empty":
        folder.mkdir()
    elif case == "not_dicom":
        _write_series(folder)
        (folder / "notes.txt").write_text("not a slice")
    else:
        _write_series(folder, z=(0.0,))
    with pytest.raises(ValueError, match=match):
        load_dicom_series(folder)


# --------------------------------------------------------------------------------------------------
# CTVolume, reorientation, dispatch
# --------------------------------------------------------------------------------------------------
def test_reorient_round_trip_and_volume_validation():
    hu = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    vol = CTVolume(hu=hu, spacing=(1.0, 2.0, 3.0), labels=(hu % 3).astype(np.uint8), axes="PLI")
    ras = reorient(vol, "RAS")  # P→A flips axis 0 and moves it to 1; L→R flips axis 1 and moves it to 0; I→S flips
    assert ras.hu.shape == (3, 2, 4) and ras.spacing == (2.0, 1.0, 3.0)
    np.testing.assert_array_equal(ras.hu, hu[::-1, ::-1, ::-1].transpose(1, 0, 2))
    back = reorient(ras, "PLI")
    assert np.array_equal(back.hu, hu) and np.array_equal(back.labels, vol.labels) and back.spacing == vol.spacing
    with pytest.raises(ValueError, match="L/R"):
        reorient(vol, "RLS")
    with pytest.raises(TypeError, match="int16 or float32"):
        CTVolume(hu=hu.astype(np.float64), spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="3D"):
        CTVolume(hu=hu[0], spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="do not match"):
        CTVolume(hu=hu, spacing=(1.0, 1.0, 1.0), labels=np.zeros((2, 3, 3), np.uint8))


def test_load_ct_refuses_unknown_sources(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_ct(tmp_path / "missing.nii.gz")
    (tmp_path / "scan.mha").write_bytes(b"x")
    with pytest.raises(ValueError, match="unsupported"):
        load_ct(tmp_path / "scan.mha")


# --------------------------------------------------------------------------------------------------
# OpenKBP: synthetic round trip through the dataset's own CSV layout, screening, splits
# --------------------------------------------------------------------------------------------------
def _fake_openkbp(root, rng):
    """A patient in both layouts: a 20³ 'body' box of stored values, Brainstem and Mandible contoured."""
    ct = np.zeros(OPENKBP_SHAPE, np.int16)
    ct[50:70, 50:70, 40:80] = rng.integers(1, 3000, (20, 20, 40))
    labels = np.zeros(OPENKBP_SHAPE, np.uint8)
    labels[55:60, 55:60, 45:50], labels[60:65, 60:65, 60:70] = 1, 7
    spacing = np.array([3.906, 3.906, 2.5], np.float32)
    (root / "openkbp" / "train").mkdir(parents=True)
    np.savez(root / "openkbp" / "train" / "pt_9.npz", ct=ct, labels=labels, spacing=spacing,
             label_names=np.array(OPENKBP_ORGANS))
    folder = root / "openkbp" / "raw" / "train-pats" / "pt_9"
    folder.mkdir(parents=True)
    flat = ct.ravel()
    idx = np.nonzero(flat)[0]
    rows = "".join(f"{i},{float(v)}\n" for i, v in zip(idx, flat[idx], strict=True))  # as the dataset: "532261,18.0"
    (folder / "ct.csv").write_text(",data\n" + rows)
    for organ_id, organ in ((1, "Brainstem"), (7, "Mandible")):
        rows = np.nonzero(labels.ravel() == organ_id)[0]
        (folder / f"{organ}.csv").write_text(",data\n" + "".join(f"{i},\n" for i in rows))
    np.savetxt(folder / "voxel_dimensions.csv", [3.906, 3.906, 2.5])
    return ct, labels


def test_openkbp_layouts_agree_on_a_synthetic_patient(tmp_path):
    ct, labels = _fake_openkbp(tmp_path, np.random.default_rng(0))
    (npz,) = openkbp_patients(roots=tmp_path)
    (csv,) = openkbp_patients(layout="csv", roots=tmp_path)
    assert npz == OpenKBPPatient("pt_9", "train", tmp_path / "openkbp/train/pt_9.npz") and csv.number == 9
    a, b = read_openkbp(npz), load_ct(csv.path)
    np.testing.assert_array_equal(a.hu, ct.astype(np.int32) - OPENKBP_HU_OFFSET)
    for v in (a, b):
        np.testing.assert_array_equal(v.hu, a.hu)
        np.testing.assert_array_equal(v.labels, labels)
        assert v.labelled.tolist() == [True, False, False, False, False, False, True] and v.axes == "PLI"
        assert v.spacing == a.spacing == pytest.approx((3.906, 3.906, 2.5))
    with pytest.raises(DatasetNotFoundError, match="open-kbp"):
        openkbp_patients(split="validation", roots=tmp_path)
    with pytest.raises(ValueError, match="split"):
        openkbp_patients(split="test-pats", roots=tmp_path)


def test_screen_ct_drops_tiny_and_holed_bodies_but_not_stray_specks():
    hu = np.full((64, 64, 40), -1000, np.int16)
    hu[10:50, 10:50, 10:30] = 40  # 32,000 body voxels
    assert screen_ct(hu).keep and screen_ct(hu).body_voxels == 32_000
    specks = hu.copy()
    specks[30, 30, 2:4] = -990  # 1-voxel specks, 6 empty slices above the body
    assert screen_ct(specks).keep
    assert not screen_ct(specks, min_slice_voxels=1).keep  # the literal rule counts them
    holed = hu.copy()
    holed[:, :, 20] = -1000
    got = screen_ct(holed)
    assert not got.keep and got.interior_empty_slices == (20,) and "20" in got.reasons[0]
    tiny = hu.copy()
    tiny[10:50, 10:50, 28:30] = -1000  # 40·40·18 = 28,800 < 30,000
    assert not screen_ct(tiny).keep and "28800 body voxels" in screen_ct(tiny).reasons[0]


def test_patient_splits_are_seeded_partitions_independent_of_order():
    names = [f"pt_{i}" for i in range(1, 24)]
    folds = kfold_patients(names, n_folds=5, seed=3)
    held = [p for _, val in folds for p in val]
    assert sorted(held) == sorted(names) and {len(v) for _, v in folds} == {4, 5}
    for train, val in folds:
        assert not set(train) & set(val) and len(train) + len(val) == len(names)
    assert kfold_patients(names[::-1], n_folds=5, seed=3) == [(sorted(t), sorted(v)) for t, v in folds]
    assert kfold_patients(names, n_folds=5, seed=4) != folds
    kept, out = holdout_patients(names, fraction=0.2, seed=0)
    assert len(out) == 5 and sorted(kept + out) == sorted(names)
    assert holdout_patients(names[::-1], 0.2, 0) == (sorted(kept), sorted(out))
    with pytest.raises(ValueError, match="twice"):
        kfold_patients(["pt_1", "pt_1", "pt_2"], n_folds=2)
    with pytest.raises(ValueError, match="n_folds"):
        kfold_patients(names, n_folds=1)


# --------------------------------------------------------------------------------------------------
# real data
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("patient", ["pt_1", "pt_2"])
def test_openkbp_npz_and_the_datasets_csvs_agree_exactly(data_root, patient):
    a = read_openkbp(data_root / "openkbp" / "train" / f"{patient}.npz")
    b = read_openkbp(data_root / "openkbp" / "raw" / "train-pats" / patient)
    np.testing.assert_array_equal(a.hu, b.hu)
    for i, organ in enumerate(OPENKBP_ORGANS, start=1):
        np.testing.assert_array_equal(a.labels == i, b.labels == i, err_msg=organ)
    np.testing.assert_array_equal(a.labelled, b.labelled)
    assert a.spacing == b.spacing and a.hu.dtype == np.int16 and a.hu.shape == (128, 128, 128)
    present = {"pt_1": [1, 2, 3, 4, 7], "pt_2": [1, 2, 3, 4, 5, 7]}[patient]
    assert np.flatnonzero(a.labelled).tolist() == [i - 1 for i in present]


@pytest.mark.parametrize("patient", ["pt_1", "pt_2"])
def test_openkbp_stored_values_are_hu_plus_1000(data_root, patient):
    path = data_root / "openkbp" / "train" / f"{patient}.npz"
    stored = np.load(path)["ct"]
    vol = read_openkbp(path)
    assert stored.min() == 0 and (stored == 0).mean() > 0.8  # outside the body: 0 stored, -1000 HU (air)
    assert vol.hu.min() == -1000 and np.array_equal(vol.hu, stored.astype(np.int32) - 1000)
    organ_hu = {o: float(np.median(vol.hu[vol.labels == i]))
                for i, o in enumerate(OPENKBP_ORGANS, 1) if vol.labelled[i - 1]}
    assert 20 <= organ_hu["Brainstem"] <= 50  # brain tissue 20–45 HU (pt_1: stored 1037)
    assert -50 <= organ_hu["LeftParotid"] <= 70 and -50 <= organ_hu["RightParotid"] <= 70  # gland, often fatty
    assert organ_hu["Mandible"] > 400  # bone (pt_1: stored 1722)
    if patient == "pt_2":  # pt_1 holds little fat; pt_2's subcutaneous fat peaks near -90 HU (nominal -100)
        body = vol.hu[(vol.hu >= -300) & (vol.hu < 300)]
        counts = np.convolve(np.bincount(body + 300, minlength=600), np.ones(11) / 11, "same")  # 11-HU smoothing
        fat, soft = int(np.argmax(counts[:250])) - 300, int(np.argmax(counts[250:])) - 50
        assert -120 <= fat <= -70 and 20 <= soft <= 70  # fat ≈ -100 HU, soft tissue 20–70 HU


def test_openkbp_axes_are_posterior_left_inferior(data_root):
    vol = read_openkbp(data_root / "openkbp/train/pt_2.npz")

    def centre(v, organ):
        return np.argwhere(v.labels == OPENKBP_ORGANS.index(organ) + 1).mean(axis=0)

    assert centre(vol, "RightParotid")[1] < centre(vol, "LeftParotid")[1] - 10  # axis 1: right → left
    assert centre(vol, "Mandible")[0] < centre(vol, "SpinalCord")[0] - 10  # axis 0: anterior → posterior
    assert centre(vol, "Brainstem")[2] < centre(vol, "Esophagus")[2] - 20  # axis 2: superior → inferior
    ras = reorient(vol, "RAS")
    assert centre(ras, "RightParotid")[0] > centre(ras, "LeftParotid")[0]
    assert centre(ras, "Mandible")[1] > centre(ras, "SpinalCord")[1]
    assert centre(ras, "Brainstem")[2] > centre(ras, "Esophagus")[2]


def test_openkbp_listing_screening_and_patient_folds(data_root):
    patients = openkbp_patients(roots=data_root)
    assert [sum(p.split == s for p in patients) for s in ("train", "validation")] == [170, 33]
    assert [p.name for p in openkbp_patients(layout="csv", roots=data_root)] == ["pt_1", "pt_2"]
    by_name = {p.name: p for p in patients}
    picked = [by_name[n] for n in ("pt_143", "pt_51", "pt_170", "pt_1")]
    assert {n: s.keep for n, s in screen_openkbp(picked).items()} == {
        "pt_143": False, "pt_51": False, "pt_170": False, "pt_1": True}
    # the whole set, loading each CT once: the default rule and the literal one (any voxel extends the body)
    default, literal = [], []
    for p in patients:
        hu = np.load(p.path)["ct"].astype(np.int16) - np.int16(OPENKBP_HU_OFFSET)
        default += [p.name] if not screen_ct(hu).keep else []
        literal += [p.name] if not screen_ct(hu, min_slice_voxels=1).keep else []
    assert sorted(default) == ["pt_143", "pt_170", "pt_51"]
    assert sorted(literal) == sorted(["pt_10", "pt_143", "pt_154", "pt_170", "pt_188", "pt_224", "pt_36", "pt_51",
                                      "pt_92", "pt_97"])
    kept = [p for p in patients if p.name not in default and p.split == "train"]
    folds = kfold_patients(kept, n_folds=5, seed=0)
    assert sorted(p.name for _, v in folds for p in v) == sorted(p.name for p in kept)


def test_totalsegmentator_sample_loads_with_aligned_labels(data_root):
    folder = data_root / "totalsegmentator"
    vol = load_nifti(folder / "example_ct_sm.nii.gz", labels=folder / "example_seg.nii.gz")
    assert vol.spacing == (3.0, 3.0, 3.0) and vol.hu.shape == vol.labels.shape == (122, 101, 30)
    assert vol.hu.dtype == np.int16 and vol.labels.dtype == np.uint8 and vol.labelled is None
    for organ in (1, 5):  # spleen, liver: soft tissue
        assert 0 <= np.median(vol.hu[vol.labels == organ]) <= 80
    classes = remap_labels(vol.labels, {5: 1, 2: 2, 1: 3, 3: 4}, unmapped="background")
    assert set(np.unique(classes).tolist()) == {0, 1, 2, 3, 4}
    assert load_ct(folder / "example_ct.nii.gz").hu.shape == (122, 101, 112)
