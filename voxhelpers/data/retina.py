"""Retinal dataset readers for system 4 (SPEC §4): OCTA-500, DRIVE, SOUL and any pair of folders, with their splits.

This module lists each dataset's image/mask/field-of-view files (:class:`PairPaths`), pairs them, splits them by
image and reads them (:func:`load_pair`, :func:`load_pairs`, ``load_*``). Reading one file and bringing a sample to
a size — :class:`RetinaSample`, :func:`read_image`, :func:`read_mask`, :func:`fit_sample` and the channel, mask and
size rules (``channels``, ``convert_channels``, ``mask_rule``, ``size``, ``fit``) — live in
:mod:`voxhelpers.data.retina_io` and are re-exported here.

Every reader returns :class:`RetinaSample` objects holding numpy arrays:

- ``image``: (C, H, W) uint8 in [0, 255], C = ``channels`` (1 or 3);
- ``mask``: (H, W) uint8 in {0, 1} (vessel = 1);
- ``fov``: (H, W) uint8 in {0, 1}, the field of view (DRIVE), or None where the whole frame is the field (OCTA).

Normalising to [-1, 1] or [0, 1] is the Dataset's job, not the reader's.

**Splits.** By image, with a seeded permutation (:func:`split_by_image`). OCTA-500 keeps the dataset's own
split: its 10 ``validation`` images are our held-out *test*; ``n_validation`` of its 140 train images (default
14) become our validation (:func:`octa500_splits`). DRIVE's 20 training images (ids 21–40; the official test
images are not in the shared data) are split into 12 train / 3 validation / 5 test (:func:`drive_splits`).

Sources: OCTA-500 (Li et al., Medical Image Analysis 2024), DRIVE (Staal et al., IEEE TMI 2004), SOUL (Sci Data
2024, doi:10.1038/s41597-024-03665-7).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.paths import DatasetNotFoundError, find_data
from .retina_io import (
    ENHANCEMENTS,
    FITS,
    GRAY_TOLERANCE,
    LOSSY_SUFFIXES,  # noqa: F401 (re-exported: importable from here as before the split)
    MASK_RULES,
    RetinaSample,
    enhance,
    fit_sample,
    read_image,
    read_mask,
    unfit_map,
)

__all__ = [
    "DRIVE_HOW_TO_GET", "ENHANCEMENTS", "FITS", "GRAY_TOLERANCE", "IMAGE_SUFFIXES", "MASK_RULES", "OCTA500_HOW_TO_GET",
    "SOUL_HOW_TO_GET", "PairPaths", "RetinaSample", "drive_pairs", "drive_splits", "enhance", "fit_sample",
    "folder_pairs", "load_drive", "load_folder", "load_octa500", "load_pair", "load_pairs", "load_soul",
    "octa500_pairs", "octa500_splits", "read_image", "read_mask", "soul_pairs", "split_by_image", "unfit_map",
]

#: file suffixes read as images or masks (case-insensitive)
IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".gif", ".jpg", ".jpeg")

OCTA500_HOW_TO_GET = (
    "Get OCTA-500 (Li et al., Medical Image Analysis 2024) from IEEE DataPort, "
    "https://ieee-dataport.org/open-access/octa-500 (research use; cite it), 3 mm subset: put the en-face OCTA "
    "projections at <root>/octa500/{train,validation}/images/<id>.bmp and the large-vessel masks at "
    "<root>/octa500/{train,validation}/labels/<id>.bmp (same names). The re-upload in "
    "github.com/Pritam-Bharadwaz/Topology-Aware-Deep-Learning-Framework-for-Retinal-Vessel-Segmentation-in-OCT-"
    "Angiography (commit a491e80) has this layout (140 train, 10 validation)."
)
DRIVE_HOW_TO_GET = (
    "Get DRIVE (Staal et al., IEEE TMI 2004; research use) from https://drive.grand-challenge.org/ and put its "
    "training/ folder at <root>/drive/training/ with images/NN_training.tif, 1st_manual/NN_manual1.gif and "
    "mask/NN_training_mask.gif (a re-upload with this layout: github.com/hamdan92/retinal-vessel-segmentation)."
)
SOUL_HOW_TO_GET = (
    "Get SOUL (BRVO OCTA, Sci Data 2024, doi:10.1038/s41597-024-03665-7, CC BY-NC-ND) from the article's data "
    "record and unpack it so that <root>/soul/Dataset/S{n}/s{n}t{m}/{image,label}/{patient}/<file> exist, or pass "
    "the Dataset folder itself."
)


@dataclass(frozen=True)
class PairPaths:
    """Files of one image: ``name`` (the id), ``image``, ``mask``, optional ``fov``; SOUL adds ``patient``, ``stage``
    (``"s1t2"``: injection 1, follow-up 2) and ``stage_key`` ((1, 2), the order of stages)."""

    name: str
    image: Path
    mask: Path
    fov: Path | None = None
    patient: str | None = None
    stage: str | None = None
    stage_key: tuple[int, int] | None = None


# --------------------------------------------------------------------------------------------------
# pairs → samples
# --------------------------------------------------------------------------------------------------
def load_pair(pair: PairPaths, channels: int = 1, convert_channels: bool = False, size=None, fit: str = "resize",
              mask_rule: str = "auto") -> RetinaSample:
    """Read one image with its mask (and field of view) and check that they match.

    Args:
        pair: the files (:class:`PairPaths`).
        channels, convert_channels: as :func:`read_image`.
        size, fit: optional output size and how to reach it (:func:`fit_sample`); None keeps the file's size.
        mask_rule: as :func:`read_mask` (the field-of-view mask follows the same rule).

    Returns:
        A :class:`RetinaSample`.

    Raises:
        ValueError: the errors of :func:`read_image` / :func:`read_mask`, or image, mask and field of view of
            different (H, W).
    """
    image = read_image(pair.image, channels, convert_channels)
    mask = read_mask(pair.mask, mask_rule)
    fov = read_mask(pair.fov, mask_rule, what="field-of-view mask") if pair.fov is not None else None
    for other, label, path in ((mask, "mask", pair.mask), (fov, "field-of-view mask", pair.fov)):
        if other is not None and other.shape != image.shape[1:]:
            raise ValueError(f"{pair.name}: image {pair.image.name} is {image.shape[1]}×{image.shape[2]} (H×W) but "
                             f"its {label} {path.name} is {other.shape[0]}×{other.shape[1]}; expected the same size")
    name = f"{pair.patient}/{pair.stage}/{pair.name}" if pair.patient is not None else pair.name
    sample = RetinaSample(name, image, mask, fov, patient=pair.patient, stage=pair.stage)
    return fit_sample(sample, size, fit) if size is not None else sample


def load_pairs(pairs: Sequence[PairPaths], **options) -> list[RetinaSample]:
    """:func:`load_pair` over a list, in its order (``options``: ``channels``, ``convert_channels``, ``size``,
    ``fit``, ``mask_rule``).

    Raises:
        ValueError: an empty list, or the errors of :func:`load_pair`.
    """
    if not len(pairs):
        raise ValueError("no image/mask pairs to load; expected at least one")
    return [load_pair(p, **options) for p in pairs]


def _image_files(folder: Path, what: str) -> dict[str, Path]:
    """{stem: path} of the image files of a folder (hidden and other files ignored)."""
    if not folder.is_dir():
        raise DatasetNotFoundError(f"{what} folder {folder}: no such folder")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if p.stem in found:
            raise ValueError(f"{what} folder {folder}: two files share the name {p.stem!r} ({found[p.stem].name}, "
                             f"{p.name}); expected one file per image")
        found[p.stem] = p
    if not found:
        raise ValueError(f"{what} folder {folder} is empty: expected image files ({', '.join(IMAGE_SUFFIXES)})")
    return found


def _natural(name: str) -> tuple:
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", name) if t)


def _match(images: dict[str, Path], masks: dict[str, Path], where: str, mask_what: str = "mask") -> list[str]:
    """The shared keys, sorted naturally; a key on one side only raises."""
    only_masks = sorted(set(masks) - set(images), key=_natural)
    only_images = sorted(set(images) - set(masks), key=_natural)
    if only_masks:
        raise ValueError(f"{where}: {mask_what} file(s) without their image: "
                         f"{', '.join(masks[k].name for k in only_masks[:5])}; expected an image with the same name")
    if only_images:
        raise ValueError(f"{where}: image file(s) without their {mask_what}: "
                         f"{', '.join(images[k].name for k in only_images[:5])}; expected a {mask_what} with the same "
                         "name")
    return sorted(images, key=_natural)


def folder_pairs(image_dir: str | Path, mask_dir: str | Path, fov_dir: str | Path | None = None) -> list[PairPaths]:
    """Pair a folder of images with a folder of masks (and of field-of-view masks) by file stem.

    ``images/a.png`` goes with ``masks/a.png`` or ``masks/a.gif`` (extensions may differ, stems may not).

    Returns:
        :class:`PairPaths` sorted by name (natural order: 2 before 10).

    Raises:
        DatasetNotFoundError: a folder does not exist.
        ValueError: an empty folder, two files with one stem, a mask without its image or an image without its mask.
    """
    image_dir, mask_dir = Path(image_dir).expanduser(), Path(mask_dir).expanduser()
    images, masks = _image_files(image_dir, "image"), _image_files(mask_dir, "mask")
    keys = _match(images, masks, f"{image_dir} + {mask_dir}")
    fovs = None
    if fov_dir is not None:
        fovs = _image_files(Path(fov_dir).expanduser(), "field-of-view mask")
        _match(images, fovs, f"{image_dir} + {fov_dir}", "field-of-view mask")
    return [PairPaths(k, images[k], masks[k], fovs[k] if fovs else None) for k in keys]


def load_folder(image_dir: str | Path, mask_dir: str | Path, fov_dir: str | Path | None = None,
                **options) -> list[RetinaSample]:
    """Read a folder of images and a folder of masks with the same names (:func:`folder_pairs` + :func:`load_pairs`;
    ``options`` as :func:`load_pair`)."""
    return load_pairs(folder_pairs(image_dir, mask_dir, fov_dir), **options)


# --------------------------------------------------------------------------------------------------
# splits
# --------------------------------------------------------------------------------------------------
def split_by_image(names: Sequence[str], n_validation: int, n_test: int = 0, seed: int = 0) -> dict[str, list[str]]:
    """Split image ids into train / validation / test by a seeded permutation.

    Rule: sort the ids naturally, permute them with ``numpy.random.default_rng(seed)``; the first ``n_test`` are
    test, the next ``n_validation`` validation, the rest train; each list is returned in natural order.

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}``.

    Raises:
        ValueError: negative counts, repeated ids, or no image left for training.
    """
    names = sorted((str(n) for n in names), key=_natural)
    if len(set(names)) != len(names):
        raise ValueError("image ids must be unique")
    for label, n in (("n_validation", n_validation), ("n_test", n_test)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"{label} must be an int >= 0, got {n!r}")
    if n_validation + n_test >= len(names):
        raise ValueError(f"n_validation + n_test = {n_validation + n_test} leaves no training image out of "
                         f"{len(names)}; expected fewer")
    perm = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    parts = {"test": perm[:n_test], "validation": perm[n_test:n_test + n_validation],
             "train": perm[n_test + n_validation:]}
    return {k: sorted(parts[k], key=_natural) for k in ("train", "validation", "test")}


def _pick(pairs: list[PairPaths], names: list[str]) -> list[PairPaths]:
    by = {p.name: p for p in pairs}
    return [by[n] for n in names]


def _check_split(split: str) -> None:
    if split not in ("train", "validation", "test"):
        raise ValueError(f"split must be 'train', 'validation' or 'test', got {split!r}")


# --------------------------------------------------------------------------------------------------
# OCTA-500
# --------------------------------------------------------------------------------------------------
def octa500_pairs(folder: str = "train", roots=None) -> list[PairPaths]:
    """List OCTA-500 (3 mm) pairs in the dataset's own folder ``train`` (140) or ``validation`` (10).

    Raises:
        ValueError: another folder name, or the errors of :func:`folder_pairs`.
        DatasetNotFoundError: ``octa500/<folder>/{images,labels}`` missing (the message says where to get it).
    """
    if folder not in ("train", "validation"):
        raise ValueError(f"folder must be OCTA-500's 'train' or 'validation', got {folder!r}")
    base = find_data("octa500", OCTA500_HOW_TO_GET, roots) / folder
    if not (base / "images").is_dir() or not (base / "labels").is_dir():
        raise DatasetNotFoundError(f"{base}: expected images/ and labels/ folders. {OCTA500_HOW_TO_GET}")
    return folder_pairs(base / "images", base / "labels")


def octa500_splits(n_validation: int = 14, seed: int = 0, roots=None) -> dict[str, list[PairPaths]]:
    """Our OCTA-500 splits: ``test`` = the dataset's 10 validation images (held out), ``validation`` =
    ``n_validation`` of its train images drawn by :func:`split_by_image` (``seed``), ``train`` = the rest."""
    train = octa500_pairs("train", roots)
    names = split_by_image([p.name for p in train], n_validation, 0, seed)
    return {"train": _pick(train, names["train"]), "validation": _pick(train, names["validation"]),
            "test": octa500_pairs("validation", roots)}


def load_octa500(split: str = "train", n_validation: int = 14, seed: int = 0, roots=None,
                 **options) -> list[RetinaSample]:
    """Read one of :func:`octa500_splits` (``options`` as :func:`load_pair`; 304×304 grayscale, no field of view)."""
    _check_split(split)
    return load_pairs(octa500_splits(n_validation, seed, roots)[split], **options)


# --------------------------------------------------------------------------------------------------
# DRIVE
# --------------------------------------------------------------------------------------------------
def _drive_files(folder: Path, pattern: str, what: str) -> dict[str, Path]:
    files = _image_files(folder, what)
    out = {}
    for stem, p in files.items():
        m = re.fullmatch(pattern, stem)
        if m:
            out[m.group(1)] = p
    if not out:
        raise ValueError(f"DRIVE {what} folder {folder}: no file named like {pattern!r}")
    return out


def drive_pairs(folder: str = "training", roots=None) -> list[PairPaths]:
    """List DRIVE pairs of ``drive/<folder>``: ``images/NN_<folder>.tif``, ``1st_manual/NN_manual1.gif`` and the
    field of view ``mask/NN_<folder>_mask.gif``, matched by the id NN.

    Raises:
        DatasetNotFoundError: the folder is missing (the message says where to get DRIVE).
        ValueError: an id with an image but no manual mask or field of view, or the reverse.
    """
    base = find_data(f"drive/{folder}", DRIVE_HOW_TO_GET, roots)
    for sub in ("images", "1st_manual", "mask"):
        if not (base / sub).is_dir():
            raise DatasetNotFoundError(f"{base}: expected a {sub}/ folder. {DRIVE_HOW_TO_GET}")
    images = _drive_files(base / "images", r"(\d+)_.*", "image")
    manual = _drive_files(base / "1st_manual", r"(\d+)_manual1", "manual mask")
    fov = _drive_files(base / "mask", r"(\d+)_.*mask", "field-of-view mask")
    keys = _match(images, manual, str(base), "manual mask")
    _match(images, fov, str(base), "field-of-view mask")
    return [PairPaths(k, images[k], manual[k], fov[k]) for k in keys]


def drive_splits(n_validation: int = 3, n_test: int = 5, seed: int = 0, roots=None) -> dict[str, list[PairPaths]]:
    """DRIVE's training images split by image (:func:`split_by_image`): 12 train / 3 validation / 5 test by
    default, seed 0."""
    pairs = drive_pairs("training", roots)
    names = split_by_image([p.name for p in pairs], n_validation, n_test, seed)
    return {k: _pick(pairs, v) for k, v in names.items()}


def load_drive(split: str = "train", n_validation: int = 3, n_test: int = 5, seed: int = 0, roots=None,
               **options) -> list[RetinaSample]:
    """Read one of :func:`drive_splits` with the field of view (584×565 RGB: pass ``channels=3``; ``options`` as
    :func:`load_pair`)."""
    _check_split(split)
    return load_pairs(drive_splits(n_validation, n_test, seed, roots)[split], **options)


# --------------------------------------------------------------------------------------------------
# SOUL
# --------------------------------------------------------------------------------------------------
def _soul_root(root, roots) -> Path:
    if root is None:
        root = find_data("soul", SOUL_HOW_TO_GET, roots)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetNotFoundError(f"SOUL folder {root}: no such folder. {SOUL_HOW_TO_GET}")
    if (root / "Dataset").is_dir():
        root = root / "Dataset"
    return root


def soul_pairs(root: str | Path | None = None, roots=None) -> list[PairPaths]:
    """List SOUL's image/label pairs: ``<root>/S{n}/s{n}t{m}/{image,label}/{patient}/<file>`` (n: injections,
    m: follow-up), paired by file stem within a patient's folder.

    Args:
        root: the ``Dataset`` folder (or the folder above it); None finds ``soul/`` among the data roots.
        roots: data roots searched when ``root`` is None.

    Returns:
        :class:`PairPaths` with ``patient``, ``stage`` and ``stage_key``, sorted by patient, then stage (n, m), then
        name.

    Raises:
        DatasetNotFoundError: no such folder, or no ``S{n}/s{n}t{m}`` subset in it.
        ValueError: a subset under the wrong ``S{n}``, a subset without ``image/`` or ``label/``, a patient on one
            side only, an empty patient folder, an image without its label or the reverse.
    """
    root = _soul_root(root, roots)
    out = []
    for group in sorted(root.iterdir()):
        g = re.fullmatch(r"S(\d+)", group.name)
        if not (g and group.is_dir()):
            continue
        for subset in sorted(group.iterdir()):
            s = re.fullmatch(r"s(\d+)t(\d+)", subset.name)
            if not (s and subset.is_dir()):
                continue
            if s.group(1) != g.group(1):
                raise ValueError(f"SOUL subset {subset}: s{s.group(1)}t{s.group(2)} under {group.name}; expected "
                                 f"s{g.group(1)}t<m> folders in S{g.group(1)}")
            img_root, lab_root = subset / "image", subset / "label"
            if not (img_root.is_dir() and lab_root.is_dir()):
                raise ValueError(f"SOUL subset {subset}: expected image/ and label/ folders")
            pats_i = {p.name for p in img_root.iterdir() if p.is_dir() and not p.name.startswith(".")}
            pats_l = {p.name for p in lab_root.iterdir() if p.is_dir() and not p.name.startswith(".")}
            if pats_i != pats_l:
                raise ValueError(f"SOUL subset {subset}: patients with images but no labels "
                                 f"{sorted(pats_i - pats_l)}, labels but no images {sorted(pats_l - pats_i)}; "
                                 "expected the same patient folders in image/ and label/")
            key = (int(s.group(1)), int(s.group(2)))
            for patient in sorted(pats_i, key=_natural):
                for pair in folder_pairs(img_root / patient, lab_root / patient):
                    out.append(PairPaths(pair.name, pair.image, pair.mask, None, patient, subset.name, key))
    if not out:
        raise DatasetNotFoundError(f"SOUL folder {root}: no S{{n}}/s{{n}}t{{m}}/image/<patient>/ files found. "
                                   f"{SOUL_HOW_TO_GET}")
    return sorted(out, key=lambda p: (_natural(p.patient), p.stage_key, _natural(p.name)))


def load_soul(root: str | Path | None = None, roots=None, **options) -> dict[str, list[RetinaSample]]:
    """Read SOUL as longitudinal sequences: ``{patient: [samples ordered by stage (injection, follow-up), then
    name]}`` (``options`` as :func:`load_pair`; the seed's images are 304×304 grayscale JPEG, their labels read with
    ``mask_rule="auto"``: thresholded at 127 when JPEG)."""
    sequences: dict[str, list[RetinaSample]] = {}
    for pair in soul_pairs(root, roots):
        sequences.setdefault(pair.patient, []).append(load_pair(pair, **options))
    return sequences
