"""Config of system 5, VNet multi-organ segmentation of CT (seed 004; SPEC §5), and its two MONAI peers."""

from __future__ import annotations

import math
from dataclasses import dataclass

from .profiles import Config, option, precision_option

#: where segmentation cases come from: ``openkbp[:train|validation|all]`` (the shared head-and-neck CTs, screened),
#: ``flare22:<folder>`` (``FLARE22_Tr_XXXX_0000.nii.gz`` + ``FLARE22_Tr_XXXX.nii.gz``), ``nifti:<folder>`` (pairs
#: ``imagesTr/<case>.nii.gz`` or ``<case>_0000.nii.gz`` + ``labelsTr/<case>.nii.gz``, the nnU-Net / MSD layout)
SEGMENTATION_SOURCES = ("openkbp", "flare22", "nifti")
#: the segmentation networks a run trains: the seed's VNet (ours) and two outside peers from MONAI
SEGMENTATION_NETWORKS = ("vnet", "monai_vnet", "monai_unet")


def check_segmentation_data(data: str) -> None:
    """Raise ValueError unless ``data`` names a known source (the valid ones listed)."""
    source, sep, name = data.partition(":") if isinstance(data, str) else ("", "", "")
    if source not in SEGMENTATION_SOURCES or (source != "openkbp" and not name) or (sep and not name):
        raise ValueError(f"data must be 'openkbp', 'openkbp:<train|validation|all>', 'flare22:<folder>' or "
                         f"'nifti:<folder>' (sources {SEGMENTATION_SOURCES}), got {data!r}")
    if source == "openkbp" and name and name not in ("train", "validation", "all"):
        raise ValueError(f"OpenKBP split must be train, validation or all, got {name!r}")


@dataclass
class VNetConfig(Config):
    """Multi-organ CT segmentation with k-fold cross-validation by patient (SPEC §5).

    The seed (a Keras VNet on FLARE22 abdominal CTs, 128³ input) trained 1 of 21 steps; here the same layout trains with
    soft Dice (per-class weights on the per-class loss, never negative) + softmax focal loss, HU windowed, on
    patches sampled around organs and elsewhere, one fold of a k-fold split by patient per run. ``network`` picks
    the seed's VNet or one of two peers from MONAI trained identically (``monai_vnet``: MONAI's ``VNet``, which
    hard-codes dropout 0.5 in its up path, MONAI #6116; ``monai_unet``: a residual ``UNet``).

    OpenKBP draws each organ in only some patients (the oesophagus in 71 of 200): with ``unlabelled="marginal"`` the
    loss never teaches an organ not drawn in a patient to be background there (marginal Dice and focal terms, see
    :mod:`voxhelpers.losses.segmentation`); ``"background"`` did. At the ``cpu`` budget our VNet misses the oesophagus
    in two folds of five under either rule (docs/vnet.md): the marginal rule is the sound one, not a cure for that.
    What cured it is ``pos_sampling="class"`` (the default since 2026-12-02): a positive patch centres on an organ
    present in the patient, each organ as likely, then on a voxel of it, so the thin oesophagus is a centre as often
    as the mandible; in the two folds where the oesophagus was missed, it went from 0.00 to 0.53 Dice (mean Dice
    0.694 / 0.703 → 0.723 / 0.728, MONAI's UNet 0.722 / 0.724). Configs saved before it read ``"voxel"``.

    Volumes are resampled to ``spacing`` (image linear, labels nearest; None keeps the source's), then cropped or
    padded to ``volume_shape`` around the body's bounding box (HU > −500); training patches of ``patch_size`` are
    drawn from them, ``pos_fraction`` of them centred on a labelled voxel. Validation predicts whole volumes with a
    Gaussian-blended sliding window.

    Raises:
        ValueError: a value out of range or not among the valid choices (the message lists them).
    """

    data: str = option("openkbp", "cases: openkbp[:train|validation|all] (screened), flare22:<folder> or "
                       "nifti:<folder> (imagesTr/ + labelsTr/)")
    network: str = option("vnet", "the seed's VNet (ours) or a MONAI peer trained identically", SEGMENTATION_NETWORKS)
    width: float = option(1.0, "channel multiplier of our VNet (1: the seed's 16-32-64-128-256)")
    dropout: float = option(0.2, "dropout after each downsampling (the seed's 0.2)")
    norm: str = option("batch", "normalisation of our VNet", ("batch", "instance"))
    n_folds: int = option(5, "k of the k-fold cross-validation by patient")
    fold: int = option(0, "which fold is validation in this run (0 .. n_folds-1)")
    max_cases: int | None = option(None, "use only the first k cases (sorted by name) before the folds (default: all)")
    classes: tuple[str, ...] | None = option(None, "names of the foreground classes 1..K (default: the source's: "
                                             "OpenKBP's 7 organs, FLARE22's 13; required for nifti:)")
    label_map: str | None = option(None, "map source label ids to classes, 'id:class,...' (e.g. TotalSegmentator "
                                   "'5:1,2:2,1:3,3:4'); other ids become background")
    window: tuple[float, float] = option((-175.0, 250.0), "HU window mapped to [0, 1] (soft tissue)")
    spacing: tuple[float, float, float] | None = option(None, "resample to this voxel size in mm (default: keep)")
    volume_shape: tuple[int, int, int] = option((128, 128, 128), "crop or pad each volume to this shape around the "
                                                "body (sides: multiples of 16)")
    patch_size: tuple[int, int, int] = option((128, 128, 128), "training patch (sides: multiples of 16)")
    pos_fraction: float = option(0.67, "fraction of patches centred on a labelled voxel (the rest anywhere)")
    pos_sampling: str = option("class", "how a positive patch's centre is drawn: class (an organ present in the case "
                               "first, each as likely, then a voxel of it: MONAI's RandCropByLabelClasses) or voxel "
                               "(every labelled voxel as likely: large organs dominate; before 2026-12-02)",
                               ("class", "voxel"))
    patches_per_case: int = option(1, "patches drawn from each training case per epoch")
    flip_lr: bool = option(True, "augment: mirror left-right, swapping left/right organ labels")
    intensity: float = option(0.1, "augment: random intensity scale and shift of this size (0: off)")
    epochs: int = option(100, "epochs (one pass of patches_per_case patches over the training cases)")
    batch_size: int = option(2, "patches per step")
    lr: float = option(1e-3, "Adam learning rate")
    weight_decay: float = option(1e-5, "Adam weight decay")
    precision: str = precision_option("auto")
    lr_schedule: str = option("cosine", "learning-rate schedule over the run", ("constant", "cosine"))
    dice_weight: float = option(1.0, "weight of the soft Dice loss")
    focal_weight: float = option(1.0, "weight of the softmax focal loss")
    focal_gamma: float = option(2.0, "γ of the focal loss")
    unlabelled: str = option("marginal", "an organ not drawn in a patient: marginal (its probability is summed into "
                             "the background's there, Shi et al. MedIA 2021: never taught to be background) or "
                             "background (its voxels count as background in both terms, as before 2026-12-01)",
                             ("marginal", "background"))
    class_weights: str = option("auto", "per-class Dice weights: auto (N / (C·N_c) from the training labels, "
                                "normalised to mean 1) or none", ("auto", "none"))
    overlap: float = option(0.5, "sliding-window overlap at validation")
    sw_batch_size: int = option(4, "windows per forward pass at validation")
    flip_tta: bool = option(False, "average the prediction over a left-right mirror at validation")
    keep_largest: bool = option(True, "keep each organ's largest connected component in predictions (drops stray "
                                "islands; MONAI's KeepLargestConnectedComponent)")
    sample_every: int = option(10, "sample sheet and checkpoint every k epochs")
    seed: int = option(0, "weights, patch draws, augmentation and the folds")

    PROFILES = {
        "smoke": {"data": "openkbp", "max_cases": 6, "n_folds": 3, "width": 0.125, "volume_shape": (32, 32, 32),
                  "spacing": (15.6, 15.6, 10.0), "patch_size": (32, 32, 32), "epochs": 2, "batch_size": 2,
                  "sample_every": 1, "overlap": 0.0},
        "cpu": {"width": 0.5, "norm": "instance", "volume_shape": (64, 64, 128), "patch_size": (64, 64, 64),
                "epochs": 10, "patches_per_case": 2, "sample_every": 1, "overlap": 0.25},
        "full": {"width": 1.0, "volume_shape": (128, 128, 128), "patch_size": (128, 128, 128), "epochs": 200,
                 "sample_every": 10},
    }

    check_data_argument = staticmethod(check_segmentation_data)  # what the command line checks --data with

    def __post_init__(self) -> None:
        super().__post_init__()
        check_segmentation_data(self.data)
        if not 2 <= self.n_folds or not 0 <= self.fold < self.n_folds:
            raise ValueError(f"need n_folds >= 2 and 0 <= fold < n_folds, got n_folds {self.n_folds}, fold {self.fold}")
        for name in ("volume_shape", "patch_size"):
            v = tuple(getattr(self, name))
            if len(v) != 3 or any(int(s) != s or s < 16 or s % 16 for s in v):
                raise ValueError(f"{name} must be 3 sides, each a multiple of 16, got {v}")
            setattr(self, name, tuple(int(s) for s in v))
        if any(p > v for p, v in zip(self.patch_size, self.volume_shape, strict=True)):
            raise ValueError(f"patch_size {self.patch_size} must fit in volume_shape {self.volume_shape}")
        bottleneck = math.prod(p // 16 for p in self.patch_size) * (self.batch_size if self.norm == "batch" else 1)
        if self.network == "vnet" and bottleneck < 2:
            raise ValueError(f"{self.norm} norm needs more than one value per channel at the VNet's bottleneck "
                             f"(patch / 16): patch_size {self.patch_size} with batch_size {self.batch_size} gives "
                             f"{bottleneck}; use a larger patch" + (" or batch" if self.norm == "batch" else ""))
        if self.spacing is not None and (len(self.spacing) != 3 or not all(s > 0 for s in self.spacing)):
            raise ValueError(f"spacing must be None or 3 positive mm values, got {self.spacing}")
        lo, hi = self.window
        if not hi > lo:
            raise ValueError(f"window must be (low, high) HU with high > low, got {self.window}")
        if not 0 <= self.pos_fraction <= 1 or not 0 <= self.overlap < 1 or not 0 <= self.dropout < 1:
            raise ValueError("pos_fraction must be in [0, 1], overlap and dropout in [0, 1); got "
                             f"{self.pos_fraction}, {self.overlap}, {self.dropout}")
        if min(self.batch_size, self.patches_per_case, self.sample_every, self.sw_batch_size) < 1 or self.epochs < 0:
            raise ValueError("batch_size, patches_per_case, sample_every and sw_batch_size must be >= 1, epochs >= 0")
        if self.width <= 0 or self.lr <= 0 or self.weight_decay < 0 or self.intensity < 0 or self.focal_gamma < 0:
            raise ValueError("width and lr must be > 0; weight_decay, intensity and focal_gamma >= 0")
        if self.dice_weight < 0 or self.focal_weight < 0 or self.dice_weight + self.focal_weight == 0:
            raise ValueError(f"dice_weight and focal_weight must be >= 0, not both 0, got {self.dice_weight}, "
                             f"{self.focal_weight}")
        if self.max_cases is not None and self.max_cases < self.n_folds:
            raise ValueError(f"max_cases must be None or >= n_folds ({self.n_folds}), got {self.max_cases}")
        if self.classes is None and self.data.startswith("nifti:"):
            raise ValueError("nifti: data needs classes, the names of the foreground classes 1..K "
                             "(e.g. --classes liver right_kidney spleen left_kidney)")
        if self.classes is not None and (not self.classes or len(set(self.classes)) != len(self.classes)):
            raise ValueError(f"classes must be distinct names, at least one, got {self.classes}")
        parse_label_map(self.label_map)

    @property
    def class_names(self) -> tuple[str, ...]:
        """Foreground class names 1..K: ``classes``, or the source's own."""
        if self.classes is not None:
            return tuple(self.classes)
        from ..data.segmentation import source_classes

        return source_classes(self.data)

    @property
    def n_classes(self) -> int:
        """Output channels: background + the foreground classes."""
        return 1 + len(self.class_names)

    @classmethod
    def upgrade(cls, values: dict) -> dict:
        """Cards and checkpoints written before 2026-12-01 have no ``unlabelled``: they trained with the rule of that
        time, ``background`` (a resumed run keeps it; a new run gets ``marginal``); those without ``pos_sampling``
        drew patch centres by ``voxel`` (a new run gets ``class``)."""
        values = dict(values)
        values.setdefault("unlabelled", "background")
        values.setdefault("pos_sampling", "voxel")
        return values


def parse_label_map(text: str | None) -> dict[int, int] | None:
    """``'5:1,2:2'`` → ``{5: 1, 2: 2}``; None stays None.

    Raises:
        ValueError: not comma-separated ``id:class`` pairs of non-negative integers, or an id given twice.
    """
    if text is None:
        return None
    out: dict[int, int] = {}
    for part in str(text).split(","):
        src, sep, dst = part.strip().partition(":")
        if not sep or not src.strip().isdigit() or not dst.strip().isdigit() or int(src) in out:
            raise ValueError(f"label_map must be comma-separated 'id:class' pairs of distinct non-negative integers, "
                             f"e.g. '5:1,2:2,1:3,3:4', got {text!r}")
        out[int(src)] = int(dst)
    return out


def vnet_config(profile: str | None = None, **overrides) -> VNetConfig:
    """The segmentation config of a profile, then explicit overrides (unknown keys raise)."""
    return VNetConfig.for_profile(profile, **overrides)
