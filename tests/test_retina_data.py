"""Retinal readers of system 4: OCTA-500 and DRIVE on the real files, a tiny SOUL tree, any folder pair, channels,
sizes, splits, and every bad input."""

import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from voxhelpers.config.paths import DatasetNotFoundError
from voxhelpers.data.retina import (
    PairPaths,
    RetinaSample,
    drive_pairs,
    drive_splits,
    fit_sample,
    folder_pairs,
    load_drive,
    load_folder,
    load_octa500,
    load_pair,
    load_pairs,
    load_soul,
    octa500_pairs,
    octa500_splits,
    read_image,
    read_mask,
    soul_pairs,
    split_by_image,
    unfit_map,
)


def _save(path, array, **kw):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path, **kw)
    return path


def _gray(h=8, w=10, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def _mask(h=8, w=10, seed=0):
    return (np.random.default_rng(seed + 100).random((h, w)) > 0.6).astype(np.uint8) * 255


# --------------------------------------------------------------------------------------------------
# real OCTA-500
# --------------------------------------------------------------------------------------------------
def test_octa500_splits_keep_the_dataset_split(data_root):
    if not (data_root / "octa500").is_dir():
        pytest.skip("OCTA-500 (octa500/) is not under the real data root")
    s = octa500_splits()
    assert {k: len(v) for k, v in s.items()} == {"train": 126, "validation": 14, "test": 10}
    names = {k: [p.name for p in v] for k, v in s.items()}
    assert sorted(names["train"] + names["validation"], key=int) == [str(i) for i in range(10301, 10441)]
    assert names["test"] == [str(i) for i in range(10441, 10451)]  # the dataset's validation folder, held out
    assert not set(names["train"]) & set(names["validation"])
    assert [p.name for p in octa500_splits(seed=0)["validation"]] == names["validation"]  # seeded
    assert [p.name for p in octa500_splits(seed=1)["validation"]] != names["validation"]
    # the rule, recomputed independently: natural order, default_rng(seed) permutation, first n_validation held out
    ids = [str(i) for i in range(10301, 10441)]
    perm = np.random.default_rng(0).permutation(140)
    assert names["validation"] == sorted((ids[i] for i in perm[:14]), key=int)


def test_octa500_reads_the_real_pixels(data_root):
    if not (data_root / "octa500").is_dir():
        pytest.skip("OCTA-500 (octa500/) is not under the real data root")
    samples = load_octa500("test")
    assert len(samples) == 10 and all(isinstance(s, RetinaSample) for s in samples)
    first = samples[0]
    raw_img = np.asarray(Image.open(data_root / "octa500/validation/images/10441.bmp"))
    raw_lab = np.asarray(Image.open(data_root / "octa500/validation/labels/10441.bmp"))
    assert first.name == "10441" and first.fov is None
    assert first.image.shape == (1, 304, 304) and first.image.dtype == np.uint8
    assert np.array_equal(first.image[0], raw_img)
    assert first.mask.dtype == np.uint8 and set(np.unique(first.mask)) == {0, 1}
    assert np.array_equal(first.mask, (raw_lab == 255).astype(np.uint8))
    # grayscale OCTA where RGB was configured: an error unless converted
    with pytest.raises(ValueError, match="grayscale image where channels=3"):
        load_octa500("test", channels=3)
    rgb = load_octa500("test", channels=3, convert_channels=True, size=256)[0]
    assert rgb.image.shape == (3, 256, 256) and np.array_equal(rgb.image[0], rgb.image[2])
    assert rgb.mask.shape == (256, 256) and set(np.unique(rgb.mask)) <= {0, 1}
    with pytest.raises(ValueError, match="'train' or 'validation'"):
        octa500_pairs("test")


# --------------------------------------------------------------------------------------------------
# real DRIVE
# --------------------------------------------------------------------------------------------------
def test_drive_pairs_and_split_rule(data_root):
    if not (data_root / "drive").is_dir():
        pytest.skip("DRIVE (drive/) is not under the real data root")
    pairs = drive_pairs()
    assert [p.name for p in pairs] == [str(i) for i in range(21, 41)]
    p21 = pairs[0]
    assert (p21.image.name, p21.mask.name, p21.fov.name) == ("21_training.tif", "21_manual1.gif",
                                                              "21_training_mask.gif")
    s = drive_splits()
    names = {k: [p.name for p in v] for k, v in s.items()}
    assert {k: len(v) for k, v in names.items()} == {"train": 12, "validation": 3, "test": 5}
    assert sorted(sum(names.values(), []), key=int) == [str(i) for i in range(21, 41)]
    perm = np.random.default_rng(0).permutation(20)  # the stated rule: test first, then validation
    ids = [str(i) for i in range(21, 41)]
    assert names["test"] == sorted((ids[i] for i in perm[:5]), key=int)
    assert names["validation"] == sorted((ids[i] for i in perm[5:8]), key=int)


def test_drive_reads_rgb_masks_and_fov(data_root):
    if not (data_root / "drive").is_dir():
        pytest.skip("DRIVE (drive/) is not under the real data root")
    samples = load_drive("validation", channels=3)
    s = samples[0]
    raw = np.asarray(Image.open(data_root / f"drive/training/images/{s.name}_training.tif"))
    assert s.image.shape == (3, 584, 565) and np.array_equal(s.image, raw.transpose(2, 0, 1))
    assert s.mask.shape == s.fov.shape == (584, 565)
    assert set(np.unique(s.mask)) == set(np.unique(s.fov)) == {0, 1}
    assert 0.6 < s.fov.mean() < 0.8  # DRIVE's circular field of view covers ~69 % of the frame
    with pytest.raises(ValueError, match="colour \\(RGB\\) image where channels=1"):
        load_drive("validation", channels=1)
    gray = load_drive("validation", channels=1, convert_channels=True)[0]
    assert np.array_equal(gray.image[0], np.asarray(Image.fromarray(raw).convert("L")))  # ITU-R 601 luma

    # fov_resize: the square around the field of view, then 256²; the field now spans the frame
    small = fit_sample(s, 256, "fov_resize")
    assert small.image.shape == (3, 256, 256) and small.mask.shape == small.fov.shape == (256, 256)
    assert set(np.unique(small.mask)) <= {0, 1} and set(np.unique(small.fov)) == {0, 1}
    rows = np.nonzero(small.fov.any(1))[0]
    assert rows[0] <= 2 and rows[-1] >= 253  # the FOV's height is the square's side
    # crop: a 256² window centred on the FOV's bounding box, read back from the original
    crop = fit_sample(s, 256, "crop")
    r, c = np.nonzero(s.fov.any(1))[0], np.nonzero(s.fov.any(0))[0]
    top, left = int(round((r[0] + r[-1] + 1) / 2 - 128)), int(round((c[0] + c[-1] + 1) / 2 - 128))
    assert np.array_equal(crop.image, s.image[:, top:top + 256, left:left + 256])
    assert np.array_equal(crop.fov, s.fov[top:top + 256, left:left + 256])


def test_missing_datasets_say_where_to_get_them(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="ieee-dataport.org/open-access/octa-500"):
        octa500_splits(roots=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="Pritam-Bharadwaz"):
        load_octa500("train", roots=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="drive.grand-challenge.org"):
        drive_pairs(roots=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="hamdan92/retinal-vessel-segmentation"):
        load_drive("test", roots=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="s41597-024-03665-7"):
        soul_pairs(roots=tmp_path)
    (tmp_path / "drive/training/images").mkdir(parents=True)  # a partial DRIVE folder: names what is missing
    with pytest.raises(DatasetNotFoundError, match="1st_manual/"):
        drive_pairs(roots=tmp_path)


# --------------------------------------------------------------------------------------------------
# a folder of images + a folder of masks
# --------------------------------------------------------------------------------------------------
def test_folder_reader_pairs_by_stem_in_natural_order(tmp_path):
    for i, name in enumerate(("2", "10", "1")):
        _save(tmp_path / "img" / f"{name}.png", _gray(seed=i))
        mask = _mask(seed=i) if name != "1" else _mask(seed=i) // 255  # {0, 255} and {0, 1} masks both read
        _save(tmp_path / "lab" / f"{name}.gif" if name == "2" else tmp_path / "lab" / f"{name}.bmp", mask)
    (tmp_path / "img" / ".DS_Store").write_bytes(b"x")  # hidden and non-image files are ignored
    (tmp_path / "lab" / "notes.txt").write_text("x")
    pairs = folder_pairs(tmp_path / "img", tmp_path / "lab")
    assert [p.name for p in pairs] == ["1", "2", "10"]
    samples = load_folder(tmp_path / "img", tmp_path / "lab")
    for s, seed in zip(samples, (2, 0, 1), strict=True):
        assert np.array_equal(s.image[0], _gray(seed=seed))
        assert np.array_equal(s.mask, (_mask(seed=seed) > 0).astype(np.uint8))
        assert s.fov is None


def test_read_image_channel_rules(tmp_path):
    gray = _gray()
    rgb = np.random.default_rng(1).integers(0, 256, (8, 10, 3), dtype=np.uint8)
    g, c = _save(tmp_path / "g.png", gray), _save(tmp_path / "c.png", rgb)
    gray_as_rgb = _save(tmp_path / "g3.png", np.repeat(gray[..., None], 3, 2))  # gray content, RGB file
    assert np.array_equal(read_image(g), gray[None])
    assert np.array_equal(read_image(c, 3), rgb.transpose(2, 0, 1))
    assert np.array_equal(read_image(gray_as_rgb, 1), gray[None])  # three equal channels are grayscale
    with pytest.raises(ValueError, match="grayscale image where channels=3"):
        read_image(g, 3)
    with pytest.raises(ValueError, match="grayscale image where channels=3"):
        read_image(gray_as_rgb, 3)
    with pytest.raises(ValueError, match="colour \\(RGB\\) image where channels=1"):
        read_image(c, 1)
    assert np.array_equal(read_image(g, 3, convert_channels=True), np.stack([gray] * 3))
    # RGB → gray: ITU-R 601 luma, L = (299 R + 587 G + 114 B) / 1000, within PIL's fixed-point rounding
    luma = (rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    assert np.abs(read_image(c, 1, convert_channels=True)[0] - luma).max() <= 1.0
    rgba = _save(tmp_path / "a.png", np.dstack([rgb, np.full((8, 10), 255, np.uint8)]))
    assert np.array_equal(read_image(rgba, 3), rgb.transpose(2, 0, 1))  # alpha dropped
    with pytest.raises(ValueError, match="channels must be 1"):
        read_image(g, 2)


def test_masks_two_levels_or_a_clear_error(tmp_path):
    ok = _save(tmp_path / "m.png", _mask())
    assert np.array_equal(read_mask(ok), (_mask() > 0).astype(np.uint8))
    three = _mask().copy()
    three[0, 0] = 128
    with pytest.raises(ValueError, match="binary mask.*3 levels: 0, 128, 255"):
        read_mask(_save(tmp_path / "three.png", three))
    with pytest.raises(ValueError, match="binary mask"):  # two levels but no 0 background
        read_mask(_save(tmp_path / "shifted.png", np.where(_mask() > 0, 200, 100).astype(np.uint8)))
    assert read_mask(_save(tmp_path / "empty.png", np.zeros((4, 4), np.uint8))).sum() == 0  # all background is fine
    # a JPEG mask: compression blurs the levels; "auto" thresholds at 127, "strict" refuses
    big = np.zeros((32, 32), np.uint8)
    big[8:24, 10:14] = 255
    jpg = _save(tmp_path / "m.jpg", big, quality=70)
    assert len(np.unique(np.asarray(Image.open(jpg)))) > 2
    assert np.array_equal(read_mask(jpg), (big > 0).astype(np.uint8))
    with pytest.raises(ValueError, match="mask_rule='threshold'"):
        read_mask(jpg, "strict")
    assert np.array_equal(read_mask(three_path := _save(tmp_path / "t.png", three), "threshold"),
                          (three > 127).astype(np.uint8)) and three_path.is_file()
    colour = np.zeros((4, 4, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    with pytest.raises(ValueError, match="single-channel binary mask"):
        read_mask(_save(tmp_path / "c.png", colour))
    with pytest.raises(ValueError, match="mask_rule must be one of"):
        read_mask(ok, "otsu")


def test_bad_files_and_folders(tmp_path):
    img, lab = tmp_path / "img", tmp_path / "lab"
    _save(img / "a.png", _gray())
    _save(lab / "a.png", _mask(6, 10))
    with pytest.raises(ValueError, match=r"8×10 \(H×W\) but its mask a.png is 6×10; expected the same size"):
        load_folder(img, lab)
    _save(lab / "a.png", _mask())
    _save(lab / "b.png", _mask())
    with pytest.raises(ValueError, match="mask file\\(s\\) without their image: b.png"):
        folder_pairs(img, lab)
    (lab / "b.png").unlink()
    _save(img / "c.png", _gray())
    with pytest.raises(ValueError, match="image file\\(s\\) without their mask: c.png"):
        folder_pairs(img, lab)
    (img / "c.png").unlink()
    _save(img / "a.jpg", _gray())
    with pytest.raises(ValueError, match="two files share the name 'a'"):
        folder_pairs(img, lab)
    (img / "a.jpg").unlink()
    (tmp_path / "none").mkdir()
    with pytest.raises(ValueError, match="is empty: expected image files"):
        folder_pairs(tmp_path / "none", lab)
    with pytest.raises(DatasetNotFoundError, match="no such folder"):
        folder_pairs(tmp_path / "absent", lab)
    # corrupt and truncated files
    (img / "a.png").write_bytes(b"this is not a png")
    with pytest.raises(ValueError, match="unreadable or corrupt"):
        load_folder(img, lab)
    good = _save(tmp_path / "whole.png", np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8))
    (img / "a.png").write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="unreadable or corrupt"):
        read_image(img / "a.png")
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "nothing.png")
    deep = _save(tmp_path / "deep.png", np.arange(80, dtype=np.uint16).reshape(8, 10) * 500)
    with pytest.raises(ValueError, match="8-bit"):
        read_image(deep)
    with pytest.raises(ValueError, match="no image/mask pairs"):
        load_pairs([])


def test_fit_sample_sizes_and_masks_nearest():
    img = np.arange(2 * 6 * 8, dtype=np.uint8).reshape(2, 6, 8)[:1]
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 3:6] = 1
    s = RetinaSample("x", img, mask)
    r = fit_sample(s, (12, 16), "resize")  # ×2 nearest: every mask pixel becomes a 2×2 block
    assert r.image.shape == (1, 12, 16) and np.array_equal(r.mask, np.kron(mask, np.ones((2, 2), np.uint8)))
    # a random mask at a non-integer factor: nearest-neighbour for the mask (a bicubic one would blur it), bicubic
    # for the image (pix2pix's resize)
    rng = np.random.default_rng(0)
    big = RetinaSample("y", rng.integers(0, 256, (1, 40, 30), dtype=np.uint8), (rng.random((40, 30)) > 0.5).astype(
        np.uint8), np.ones((40, 30), np.uint8))
    small = fit_sample(big, (17, 13), "resize")
    nearest = np.asarray(Image.fromarray(big.mask).resize((13, 17), Image.Resampling.NEAREST))
    blurred = np.asarray(Image.fromarray(big.mask).resize((13, 17), Image.Resampling.BICUBIC))
    assert np.array_equal(small.mask, nearest) and not np.array_equal(nearest, blurred)
    assert np.array_equal(small.image[0], np.asarray(Image.fromarray(big.image[0]).resize((13, 17),
                                                                                          Image.Resampling.BICUBIC)))
    # crop: a 4×4 window centred on the frame (no FOV): rows 1..4, cols 2..5
    c = fit_sample(s, 4, "crop")
    assert np.array_equal(c.image, img[:, 1:5, 2:6]) and np.array_equal(c.mask, mask[1:5, 2:6])
    # a window larger than the frame is zero-padded around it
    p = fit_sample(s, (8, 8), "crop")
    assert np.array_equal(p.image[:, 1:7, :], img) and p.image[:, 0].sum() == 0 and p.image[:, 7].sum() == 0
    # crop around a field of view off the centre: the FOV's bounding box rows 0..1, cols 0..3 → centre (1, 2)
    fov = np.zeros((6, 8), np.uint8)
    fov[0:2, 0:4] = 1
    f = fit_sample(RetinaSample("x", img, mask, fov), 2, "crop")
    assert np.array_equal(f.image, img[:, 0:2, 1:3]) and np.array_equal(f.fov, fov[0:2, 1:3])
    with pytest.raises(ValueError, match="fit must be one of"):
        fit_sample(s, 4, "stretch")
    with pytest.raises(ValueError, match="size must be a positive int"):
        fit_sample(s, 0)
    with pytest.raises(ValueError, match="field-of-view mask is empty"):
        fit_sample(RetinaSample("x", img, mask, np.zeros_like(mask)), 4, "crop")


def test_unfit_map_brings_fitted_maps_back_to_the_native_pixels():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (1, 6, 8), dtype=np.uint8)
    mask = np.zeros((6, 8), np.uint8)
    mask[2:4, 3:6] = 1
    s = RetinaSample("x", img, mask)
    # crop 4×4 (rows 1..4, cols 2..5): placed back exactly, 0 where the window did not reach
    values = rng.random((4, 4)).astype(np.float32)
    back = unfit_map(values, s, "crop")
    expected = np.zeros((6, 8), np.float32)
    expected[1:5, 2:6] = values
    assert back.shape == (6, 8) and np.array_equal(back, expected)
    # a window larger than the frame: the fitted mask comes back as the native mask
    assert np.array_equal(unfit_map(fit_sample(s, (8, 8), "crop").mask, s, "crop"), mask)
    # resize ×2 and back: a constant map stays constant (bilinear weights sum to 1); the mask comes back at 0.5
    assert np.allclose(unfit_map(np.full((12, 16), 0.7, np.float32), s, "resize"), 0.7, atol=1e-6)
    big = fit_sample(s, (12, 16), "resize")
    assert np.array_equal(unfit_map(big.mask.astype(np.float32), s, "resize") > 0.5, mask.astype(bool))
    # fov_resize of a DRIVE-like frame (a disc off the centre, thin oblique vessels) up to 2× and back: the field's
    # square returns to its place, 0 outside the field of view, the vessels' Dice after the round trip > 0.9
    yy, xx = np.mgrid[:60, :70]
    fov = ((yy - 30) ** 2 + (xx - 32) ** 2 < 27 ** 2).astype(np.uint8)
    vessels = ((np.abs(yy - 0.6 * xx - 5) < 1.5) | (np.abs(yy + 0.8 * xx - 70) < 1.2)).astype(np.uint8) & fov
    d = RetinaSample("d", np.zeros((1, 60, 70), np.uint8), vessels, fov)
    up = fit_sample(d, 112, "fov_resize")
    back = unfit_map(up.mask.astype(np.float32), d, "fov_resize")
    assert back.shape == (60, 70) and (back[fov == 0] == 0).all() and back.max() <= 1
    hit = back > 0.5
    assert 2 * (hit & (vessels > 0)).sum() / (hit.sum() + vessels.sum()) > 0.9
    assert np.allclose(unfit_map(np.ones((112, 112), np.float32), d, "fov_resize"), fov, atol=1e-6)
    with pytest.raises(ValueError, match="finite"):
        unfit_map(np.full((4, 4), np.nan), s, "crop")
    with pytest.raises(ValueError, match=r"\(H, W\) map"):
        unfit_map(np.zeros((1, 4, 4)), s, "crop")
    with pytest.raises(ValueError, match="fit must be one of"):
        unfit_map(values, s, "stretch")


def test_split_by_image_rule_and_errors():
    names = [str(i) for i in range(1, 21)]
    s = split_by_image(names[::-1], 3, 5, seed=7)  # input order does not matter
    perm = np.random.default_rng(7).permutation(20)
    assert s["test"] == sorted((names[i] for i in perm[:5]), key=int)
    assert s["validation"] == sorted((names[i] for i in perm[5:8]), key=int)
    assert len(s["train"]) == 12 and sorted(sum(s.values(), []), key=int) == names
    with pytest.raises(ValueError, match="leaves no training image"):
        split_by_image(names, 10, 10)
    with pytest.raises(ValueError, match="n_test must be an int >= 0"):
        split_by_image(names, 1, -1)
    with pytest.raises(ValueError, match="unique"):
        split_by_image(["a", "a", "b"], 1)


# --------------------------------------------------------------------------------------------------
# SOUL
# --------------------------------------------------------------------------------------------------
def _seed(*parts) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode()) % 1000


def _soul_tree(root, layout):
    """layout: {(group, subset, patient): [ids]}; gray JPEG images, PNG labels {0, 255}."""
    for (group, subset, patient), ids in layout.items():
        for k in ids:
            seed = _seed(subset, patient, k)
            _save(root / group / subset / "image" / patient / f"{patient}_{k}.jpg", _gray(16, 16, seed), quality=95)
            _save(root / group / subset / "label" / patient / f"{patient}_{k}.png", _mask(16, 16, seed))


def test_soul_tree_reads_longitudinal_sequences(tmp_path):
    data = tmp_path / "soul" / "Dataset"
    _soul_tree(data, {("S1", "s1t1", "P2"): [1], ("S1", "s1t2", "P2"): [2], ("S2", "s2t1", "P2"): [3, 4],
                      ("S1", "s1t1", "P10"): [1], ("S1", "s1t2", "P10"): [5]})
    pairs = soul_pairs(data)
    assert [(p.patient, p.stage, p.name) for p in pairs] == [
        ("P2", "s1t1", "P2_1"), ("P2", "s1t2", "P2_2"), ("P2", "s2t1", "P2_3"), ("P2", "s2t1", "P2_4"),
        ("P10", "s1t1", "P10_1"), ("P10", "s1t2", "P10_5")]
    assert pairs[2].stage_key == (2, 1)
    assert [p.name for p in soul_pairs(roots=tmp_path)] == [p.name for p in pairs]  # found under soul/ in a root
    assert [p.name for p in soul_pairs(tmp_path / "soul")] == [p.name for p in pairs]  # the folder above Dataset
    seqs = load_soul(data)
    assert list(seqs) == ["P2", "P10"] and [s.stage for s in seqs["P2"]] == ["s1t1", "s1t2", "s2t1", "s2t1"]
    s = seqs["P10"][1]
    assert s.name == "P10/s1t2/P10_5" and s.patient == "P10" and s.image.shape == (1, 16, 16)
    assert np.array_equal(s.mask, (_mask(16, 16, _seed("s1t2", "P10", 5)) > 0).astype(np.uint8))
    assert np.abs(s.image[0].astype(int) - _gray(16, 16, _seed("s1t2", "P10", 5))).max() < 40  # JPEG
    with pytest.raises(ValueError, match="grayscale image where channels=3"):
        load_soul(data, channels=3)  # the seed fed 3 channels: say so explicitly
    assert load_soul(data, channels=3, convert_channels=True, size=8)["P2"][0].image.shape == (3, 8, 8)


@pytest.mark.parametrize("damage, message", [
    ("label_missing", "image file\\(s\\) without their mask: P1_2.jpg"),
    ("image_missing", "mask file\\(s\\) without their image: P1_1.png"),
    ("patient_only_images", "patients with images but no labels \\['P9'\\]"),
    ("wrong_group", "s2t1 under S1"),
    ("empty_patient", "is empty: expected image files"),
    ("no_label_folder", "expected image/ and label/ folders"),
])
def test_soul_bad_trees(tmp_path, damage, message):
    data = tmp_path / "Dataset"
    _soul_tree(data, {("S1", "s1t1", "P1"): [1, 2]})
    sub = data / "S1" / "s1t1"
    if damage == "label_missing":
        (sub / "label/P1/P1_2.png").unlink()
    elif damage == "image_missing":
        (sub / "image/P1/P1_1.jpg").unlink()
    elif damage == "patient_only_images":
        _save(sub / "image/P9/P9_1.jpg", _gray())
    elif damage == "wrong_group":
        _soul_tree(data, {("S1", "s2t1", "P1"): [1]})
    elif damage == "empty_patient":
        (sub / "image/P3").mkdir()
        (sub / "label/P3").mkdir()
    elif damage == "no_label_folder":
        for f in (sub / "label/P1").iterdir():
            f.unlink()
        (sub / "label/P1").rmdir()
        (sub / "label").rmdir()
    with pytest.raises(ValueError, match=message):
        soul_pairs(data)


def test_soul_folder_without_subsets(tmp_path):
    (tmp_path / "Dataset" / "S1").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError, match="no S\\{n\\}/s\\{n\\}t\\{m\\}"):
        soul_pairs(tmp_path / "Dataset")
    with pytest.raises(DatasetNotFoundError, match="no such folder"):
        soul_pairs(tmp_path / "elsewhere")


def test_load_pair_checks_fov_size(tmp_path):
    pair = PairPaths("a", _save(tmp_path / "i.png", _gray()), _save(tmp_path / "m.png", _mask()),
                     _save(tmp_path / "f.png", np.full((8, 9), 255, np.uint8)))
    with pytest.raises(ValueError, match="field-of-view mask f.png is 8×9"):
        load_pair(pair)


def test_green_clahe_takes_the_green_channel_equalises_it_and_blanks_outside_the_fov():
    from skimage.exposure import equalize_adapthist

    from voxhelpers.data.retina_io import RetinaSample, enhance

    rng = np.random.default_rng(0)
    h = w = 64
    image = np.zeros((3, h, w), np.uint8)
    image[0] = 200  # a flat red channel: green must be the one taken
    image[1] = (100 + 20 * rng.random((h, w))).astype(np.uint8)  # low contrast
    image[2] = rng.integers(0, 255, (h, w), dtype=np.uint8)
    fov = np.zeros((h, w), np.uint8)
    fov[8:56, 8:56] = 1
    sample = RetinaSample("x", image, np.zeros((h, w), np.uint8), fov)
    out = enhance(sample, "green_clahe")
    assert out.image.shape == (1, h, w) and out.image.dtype == np.uint8
    expected = np.round(equalize_adapthist(image[1], clip_limit=0.01) * 255 * fov).astype(np.uint8)
    np.testing.assert_array_equal(out.image[0], expected)
    assert (out.image[0][fov == 0] == 0).all() and out.image[0][fov == 1].std() > 2 * image[1][fov == 1].std()
    assert out.mask is sample.mask and out.fov is sample.fov
    assert enhance(sample, "none") is sample
    gray = RetinaSample("g", image[1:2], sample.mask)  # one channel, no field of view
    np.testing.assert_array_equal(enhance(gray, "green_clahe").image[0],
                                  np.round(equalize_adapthist(image[1], clip_limit=0.01) * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="enhancement must be one of"):
        enhance(sample, "clahe")


def test_drive_with_green_clahe_feeds_one_channel_networks(data_root):
    from voxhelpers.config.pix2pix import pix2pix_config
    from voxhelpers.systems import get_system

    cfg = pix2pix_config("smoke", data="drive", enhance="green_clahe", size=64, max_images=2)
    assert cfg.in_channels == 3 and cfg.network_channels == 1
    system = get_system("pix2pix")
    splits = system.data(cfg)
    assert all(s.image.shape == (1, 64, 64) for s in splits.train + splits.held_out["test"])
    models = system.build(cfg, "cpu")
    x = next(iter(torch.utils.data.DataLoader(system.dataset(cfg, splits.train), batch_size=2)))["image"]
    assert x.shape == (2, 1, 64, 64) and models["G"](x).shape == (2, 1, 64, 64)
    assert models["D"](x, models["G"](x)).ndim == 4
