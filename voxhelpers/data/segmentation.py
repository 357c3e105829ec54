"""Segmentation cases: listing a source, preparing a CT + label map for a network, sampling training patches.

The preparation is one function, :func:`prepare_case`, used alike for training, validation and a user's own CT:

1. reorient to RAS (axis 0 runs to the patient's right... left, see :data:`LR_AXIS`; no resampling);
2. resample to ``spacing`` mm when asked — the image trilinearly (in HU), the label map by nearest neighbour (a
   label is never interpolated, and one-hot encoding happens only inside the loss);
3. window the HU (:func:`voxhelpers.data.ct.clip_normalise`, [−175, 250] → [0, 1] by default);
4. crop or pad to ``volume_shape`` around the centre of the body's bounding box (HU > −500): the foreground crop.

Sources (``VNetConfig.data``): ``openkbp`` (the shared head-and-neck CTs with 7 organs, screened by
:func:`voxhelpers.data.ct.screen_openkbp`), ``flare22:<folder>`` and ``nifti:<folder>`` (a user's own NIfTI pairs).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .ct import SEGMENTATION_WINDOW, clip_normalise, remap_labels
from .ct_io import CTVolume, reorient
from .ct_openkbp import OPENKBP_ORGANS

#: FLARE22's 13 abdominal organs, label ids 1..13 (MICCAI FLARE 2022, zenodo 7860267)
FLARE22_ORGANS = ("Liver", "RightKidney", "Spleen", "Pancreas", "Aorta", "InferiorVenaCava", "RightAdrenalGland",
                  "LeftAdrenalGland", "Gallbladder", "Esophagus", "Stomach", "Duodenum", "LeftKidney")
#: the array axis running left-right once a volume is in RAS
LR_AXIS = 0
BODY_HU = -500.0
FLARE22_HOW_TO_GET = ("FLARE22 (MICCAI 2022, https://zenodo.org/records/7860267): put FLARE22_Tr_XXXX_0000.nii.gz "
                      "images and FLARE22_Tr_XXXX.nii.gz label maps in one folder (or images/ and labels/ under it)")
NIFTI_HOW_TO_GET = ("a folder with imagesTr/<case>.nii.gz (or <case>_0000.nii.gz) and labelsTr/<case>.nii.gz on the "
                    "same grid (the nnU-Net / Medical Segmentation Decathlon layout)")


@dataclass
class SegmentationCase:
    """One prepared case.

    Attributes:
        name: case id (``"pt_1"``, ``"FLARE22_Tr_0001"``).
        image: (1, X, Y, Z) float16 in [0, 1] (windowed HU), RAS.
        labels: (X, Y, Z) uint8 class ids, 0 = background.
        labelled: (K,) bool, which foreground classes were delineated (False: "not labelled", never "empty").
        spacing: mm per axis after resampling.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    labelled: np.ndarray
    spacing: tuple[float, float, float]


def source_classes(data: str) -> tuple[str, ...]:
    """The foreground class names a source defines (``openkbp``: 7 organs, ``flare22``: 13).

    Raises:
        ValueError: a source whose classes must be given (``nifti:``).
    """
    source = data.partition(":")[0]
    if source == "openkbp":
        return OPENKBP_ORGANS
    if source == "flare22":
        return FLARE22_ORGANS
    raise ValueError(f"data {data!r} defines no class names; pass classes (the names of labels 1..K)")


def lr_swap(class_names) -> np.ndarray:
    """A lookup table over class ids (background included) swapping each Right/Left pair of names.

    ``("Brainstem", "RightParotid", "LeftParotid")`` → ``[0, 1, 3, 2]``; names match case-insensitively on
    ``right``/``left`` (``RightKidney``, ``kidney_left``...). A name without its mirror maps to itself.
    """
    names = [str(n).lower() for n in class_names]
    table = np.arange(len(names) + 1, dtype=np.uint8)
    for i, n in enumerate(names):
        if "right" in n:
            mirror = n.replace("right", "left")
            if mirror in names:
                j = names.index(mirror)
                table[i + 1], table[j + 1] = j + 1, i + 1
    return table


# --------------------------------------------------------------------------------------------------
# listing
# --------------------------------------------------------------------------------------------------
def _nifti_pairs(folder: Path, how: str) -> list[tuple[str, Path, Path]]:
    """(case, image, labels) pairs of a folder: imagesTr/ + labelsTr/, images/ + labels/, or one flat folder."""
    from ..config.paths import DatasetNotFoundError

    if not folder.is_dir():
        raise DatasetNotFoundError(f"{folder}: no such folder; expected {how}")
    for img_dir, lab_dir in (("imagesTr", "labelsTr"), ("images", "labels"), (".", ".")):
        images, labels = folder / img_dir, folder / lab_dir
        if not (images.is_dir() and labels.is_dir()):
            continue
        pairs = []
        for p in sorted(images.iterdir()):
            m = re.fullmatch(r"(.+?)(_0000)?\.nii(\.gz)?", p.name)
            if not m or (img_dir == "." and not m.group(2)):
                continue
            case = m.group(1)
            for suffix in (".nii.gz", ".nii"):
                lab = labels / f"{case}{suffix}"
                if lab.is_file() and lab != p:
                    pairs.append((case, p, lab))
                    break
        if pairs:
            return pairs
    raise DatasetNotFoundError(f"{folder}: no image + label pairs found; expected {how}")


def list_cases(data: str, roots=None) -> list[tuple[str, object]]:
    """``(name, item)`` of every case of a source, sorted by name; ``item`` is what :func:`load_case` reads.

    OpenKBP (``openkbp[:train|validation|all]``) lists the screened patients only (the rule of
    :func:`voxhelpers.data.ct.screen_ct`: 200 of 203 kept).

    Raises:
        DatasetNotFoundError: the source is missing (the message says how to get it).
    """
    source, _, name = data.partition(":")
    if source == "openkbp":
        from .ct_openkbp import openkbp_patients, screen_openkbp

        patients = openkbp_patients(name or "all", roots=roots)
        screening = screen_openkbp(patients)
        return sorted(((p.name, p) for p in patients if screening[p.name].keep), key=lambda t: _natural(t[0]))
    how = FLARE22_HOW_TO_GET if source == "flare22" else NIFTI_HOW_TO_GET
    return [(case, (image, labels)) for case, image, labels in _nifti_pairs(Path(name).expanduser(), how)]


def _natural(name: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name))


def load_case(item) -> CTVolume:
    """Read one listed case (an OpenKBP patient, or an (image, labels) NIfTI pair) as a :class:`CTVolume`."""
    from .ct import load_ct

    if isinstance(item, tuple):
        return load_ct(item[0], labels=item[1])
    return load_ct(item.path)


# --------------------------------------------------------------------------------------------------
# preparation
# --------------------------------------------------------------------------------------------------
def _resample(hu: np.ndarray, labels: np.ndarray | None, spacing, target) -> tuple:
    size = tuple(max(1, int(round(n * s / t))) for n, s, t in zip(hu.shape, spacing, target, strict=True))
    if size == hu.shape:
        return hu, labels, tuple(float(s) for s in spacing)
    x = torch.from_numpy(np.asarray(hu, dtype=np.float32))[None, None]
    hu = F.interpolate(x, size=size, mode="trilinear", align_corners=False)[0, 0].numpy()
    if labels is not None:
        y = torch.from_numpy(labels.astype(np.int64))[None, None].float()
        labels = F.interpolate(y, size=size, mode="nearest-exact")[0, 0].numpy().astype(np.uint8)
    new = tuple(float(n * s / m) for n, s, m in zip(np.shape(x)[2:], spacing, size, strict=True))
    return hu, labels, new


def _crop_or_pad(a: np.ndarray, centre, shape, fill) -> np.ndarray:
    out = np.full(shape, fill, dtype=a.dtype)
    src, dst = [], []
    for n, c, s in zip(a.shape, centre, shape, strict=True):
        start = int(round(c - s / 2))
        lo, hi = max(start, 0), min(start + s, n)
        if hi <= lo:  # the window misses the array (cannot happen for a centre inside it)
            lo = hi = 0
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, lo - start + hi - lo))
    out[tuple(dst)] = a[tuple(src)]
    return out


def body_centre(hu: np.ndarray, threshold: float = BODY_HU) -> tuple[float, float, float]:
    """Centre of the bounding box of voxels above ``threshold`` HU (the body); the array's centre if none."""
    body = hu > threshold
    if not body.any():
        return tuple((n - 1) / 2 for n in hu.shape)
    out = []
    for axis in range(3):
        idx = np.nonzero(body.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        out.append((idx[0] + idx[-1] + 1) / 2)
    return tuple(out)


def prepare_case(volume: CTVolume, n_classes: int, window=SEGMENTATION_WINDOW, spacing=None,
                 volume_shape=None, label_map: dict[int, int] | None = None, name: str = "") -> SegmentationCase:
    """A CT (and its label map) as a network sees it: RAS, resampled, windowed, cropped around the body.

    Args:
        volume: a :class:`CTVolume` (labels optional: a user's unlabelled CT gives an all-background map with
            ``labelled`` all False).
        n_classes: classes including background; a label id >= n_classes raises.
        window: HU window → [0, 1].
        spacing: target mm per axis (None: keep).
        volume_shape: crop/pad to this shape around the body's bounding-box centre (None: keep).
        label_map: source id → class id (:func:`voxhelpers.data.ct.remap_labels`, other ids → background).
        name: the case id.

    Raises:
        ValueError: NaN/inf HU, label ids outside 0..n_classes−1 (named).
    """
    volume = reorient(volume, "RAS")
    hu = volume.hu
    if hu.dtype.kind == "f" and not np.isfinite(hu).all():
        raise ValueError(f"{name or volume.source}: the CT holds NaN or inf values")
    labels = volume.labels
    if labels is not None and label_map is not None:
        labels = remap_labels(labels, label_map, unmapped="background")
    if labels is not None:
        labels = np.asarray(labels)
        top = int(labels.max()) if labels.size else 0
        if top >= n_classes:
            raise ValueError(f"{name or volume.source}: label id {top} but only {n_classes} classes (0..{n_classes - 1}"
                             "); pass label_map to map the source's ids, or more classes")
        labels = labels.astype(np.uint8)
    sp = volume.spacing
    if spacing is not None:
        hu, labels, sp = _resample(hu, labels, volume.spacing, spacing)
    if volume_shape is not None:
        centre = body_centre(hu)
        hu = _crop_or_pad(np.asarray(hu), centre, tuple(volume_shape), np.asarray(-1024, dtype=hu.dtype))
        if labels is not None:
            labels = _crop_or_pad(labels, centre, tuple(volume_shape), np.uint8(0))
    if volume.labelled is not None:
        labelled = np.asarray(volume.labelled, dtype=bool)
        if label_map is not None or len(labelled) != n_classes - 1:
            labelled = np.array([(labels == c).any() for c in range(1, n_classes)]) if labels is not None else \
                np.zeros(n_classes - 1, bool)
    elif labels is not None:  # a NIfTI map does not say what was delineated: a class present was
        labelled = np.array([(labels == c).any() for c in range(1, n_classes)])
    else:
        labelled = np.zeros(n_classes - 1, bool)
    if labels is None:
        labels = np.zeros(hu.shape, np.uint8)
    elif volume_shape is not None:  # an organ cropped out of the field is not delineated there
        labelled &= np.array([(labels == c).any() for c in range(1, n_classes)])
    image = clip_normalise(hu, window).astype(np.float16)[None]
    return SegmentationCase(name or Path(volume.source).name, image, labels, labelled, tuple(float(s) for s in sp))


# --------------------------------------------------------------------------------------------------
# patches
# --------------------------------------------------------------------------------------------------
def patch_start(labels: torch.Tensor, patch, positive: bool, generator: torch.Generator,
                by_class: bool = False) -> tuple[int, int, int]:
    """Corner of a patch of size ``patch`` inside ``labels`` (X, Y, Z): centred (then clamped) on a random labelled
    voxel when ``positive`` and the case has one, else uniform. ``by_class`` first picks one of the classes present,
    each as likely (MONAI's ``RandCropByLabelClasses`` with equal ratios), then a voxel of it, so a thin organ is a
    centre as often as a large one; otherwise every labelled voxel is as likely (large organs dominate). Draws on
    ``generator`` only (``by_class`` one more number per positive draw)."""
    shape = labels.shape
    u = torch.rand(4, generator=generator)
    fg = None
    if positive:
        fg = torch.nonzero(labels > 0)
        if by_class and len(fg):
            present = torch.unique(labels[labels > 0])
            c = present[min(int(u[0] * len(present)), len(present) - 1)]
            fg = torch.nonzero(labels == c)
            u[0] = torch.rand(1, generator=generator)[0]
    if fg is not None and len(fg):
        centre = fg[min(int(u[0] * len(fg)), len(fg) - 1)].tolist()
        return tuple(int(min(max(c - p // 2, 0), n - p)) for c, p, n in zip(centre, patch, shape, strict=True))
    return tuple(int(u[i + 1] * (n - p + 1)) if n > p else 0 for i, (p, n) in enumerate(zip(patch, shape, strict=True)))


def phantom_case(seed: int = 0, shape=(32, 32, 32), names=("organ_a", "organ_b"), spacing=(4.0, 4.0, 4.0),
                 name: str | None = None):
    """A procedural stand-in CT for tests and offline demos (label it so wherever shown): an ellipsoid body of soft
    tissue (40 HU) in air, one ball per class at a seeded place with its own HU (150, 200, ... and bone for the
    last, 700), Gaussian noise of 10 HU; the labels are the balls. Returns a :class:`CTVolume` in RAS."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(np.float32)
    centre = (np.array(shape) - 1) / 2
    radii = np.array(shape) * 0.42
    body = (((grid - centre) / radii) ** 2).sum(-1) <= 1
    hu = np.where(body, 40.0, -1000.0).astype(np.float32)
    labels = np.zeros(shape, np.uint8)
    for k in range(len(names)):
        r = min(shape) * rng.uniform(0.1, 0.16)
        c = centre + rng.uniform(-0.45, 0.45, 3) * (radii - r)
        ball = (((grid - c) ** 2).sum(-1) <= r * r) & body
        labels[ball] = k + 1
        hu[ball] = 700.0 if k == len(names) - 1 and len(names) > 1 else 150.0 + 50.0 * k
    hu += rng.normal(0, 10, shape).astype(np.float32)
    return CTVolume(hu, tuple(float(s) for s in spacing), labels, np.ones(len(names), bool),
                    name or f"phantom_{seed}", "RAS", np.diag([*spacing, 1.0]))
