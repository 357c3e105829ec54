"""Config of system 3: a CT volume from two X-rays (PA + lateral), X2CT-GAN style (seed 001; SPEC §3)."""

from __future__ import annotations

from dataclasses import dataclass

from .profiles import Config, option, precision_option

#: where CTs come from: ``openkbp`` (train split trains, validation split is the held-out test; screened) or
#: ``nifti:<folder>`` (every ``.nii``/``.nii.gz`` CT in a folder, a seeded 20 % held out)
XRAY_CT_SOURCES = ("openkbp", "nifti")


def check_xray_ct_data(data: str) -> None:
    """Raise ValueError unless ``data`` is ``openkbp`` or ``nifti:<folder>``."""
    source, sep, name = data.partition(":") if isinstance(data, str) else ("", "", "")
    if source not in XRAY_CT_SOURCES or (source == "openkbp" and sep) or (source == "nifti" and not name):
        raise ValueError(f"data must be 'openkbp' or 'nifti:<folder of CTs>', got {data!r}")


@dataclass
class XrayCTConfig(Config):
    """X-ray → CT: two digitally reconstructed radiographs in, a CT volume out (SPEC §3).

    The anchor is X2CT-GAN (Ying et al., CVPR 2019): a 2-D encoder per view, a 2-D → 3-D bridge at every scale,
    the two views fused by averaging at every decoder level, skip connections, a conditional 3-D PatchGAN, LSGAN
    × 0.1 + voxel MSE × 10 + projection L1 × 10 (mean projections along the three axes), Adam 2e-4 (0.5, 0.99).
    Here the bridge is the exact back-projection (each view's features spread along its rays,
    :func:`voxhelpers.ops.backprojection.backproject_parallel`), and the X-rays are rendered on the fly from the
    (augmented) CT by the differentiable projector, so a mirrored CT gets mirrored radiographs.

    CTs are cut to a cube of ``fov_mm`` around the body, resampled to ``size``³ and windowed to [0, 1]
    (``window``, default [−1024, 1024] HU, the LiftXR 2026 protocol).

    Raises:
        ValueError: a value out of range or not among the valid choices (the message lists them).
    """

    data: str = option("openkbp", "CTs: openkbp (its train split trains, its validation split tests) or "
                       "nifti:<folder> (a seeded 20 % held out)")
    size: int = option(128, "CT side in voxels and X-ray side in pixels (X2CT-GAN: 128)")
    fov_mm: float = option(320.0, "side of the cube cut around the body, mm (X2CT-GAN: 320)")
    window: tuple[float, float] = option((-1024.0, 1024.0), "HU window mapped to [0, 1]")
    beam: str = option("cone", "how the X-rays are rendered: cone beam (X2CT-GAN's 541 / 949 mm) or parallel",
                       ("cone", "parallel"))
    max_cases: int | None = option(None, "use only the first k training CTs (default: all)")
    base_channels: int = option(16, "width of the first 2-D encoder level (doubles per level)")
    max_channels: int = option(128, "cap on any level's width")
    prior: bool = option(True, "learn a per-voxel prior initialised from the training mean CT (ours; X2CT-GAN: none)")
    d_channels: int = option(32, "width of the first PatchGAN level")
    adv_weight: float = option(0.1, "LSGAN weight (0: the no-GAN variant, generator alone)")
    voxel_weight: float = option(10.0, "voxel reconstruction weight")
    voxel_loss: str = option("mse", "voxel reconstruction loss (X2CT-GAN: MSE)", ("mse", "l1"))
    proj_weight: float = option(10.0, "projection L1 weight (mean projections along the three axes)")
    gan_loss: str = option("lsgan", "adversarial loss (X2CT-GAN: LSGAN)", ("lsgan", "vanilla"))
    flip_lr: bool = option(True, "augment: mirror the CT left-right (its X-rays are rendered after)")
    rotate: float = option(0.0, "augment: turn the CT about its superior-inferior axis by up to ± this many degrees "
                           "(trilinear; its X-rays are rendered after; 0: off)")
    intensity: float = option(0.0, "augment: scale and shift each rendered X-ray by up to ± this (1 ± i, ± i; "
                              "clipped to [0, 1]; the CT unchanged; 0: off)")
    epochs: int = option(100, "epochs (X2CT-GAN: 50 + 50 with linear decay)")
    decay_start: float = option(0.5, "fraction of the epochs after which both learning rates decay linearly to 0")
    batch_size: int = option(4, "CTs per step (X2CT-GAN: 4)")
    lr: float = option(2e-4, "Adam learning rate of G and D")
    precision: str = precision_option("fp32")
    betas: tuple[float, float] = option((0.5, 0.99), "Adam betas")
    sample_every: int = option(10, "sample sheet and checkpoint every k epochs")
    seed: int = option(0, "weights, shuffling, augmentation and the NIfTI split")

    PROFILES = {
        "smoke": {"size": 32, "max_cases": 4, "epochs": 2, "batch_size": 2, "base_channels": 4, "max_channels": 16,
                  "d_channels": 4, "sample_every": 1},
        "cpu": {"size": 64, "epochs": 30, "batch_size": 4, "base_channels": 8, "max_channels": 64,
                "d_channels": 16, "sample_every": 5},
        "full": {"size": 128, "epochs": 100, "batch_size": 4, "sample_every": 10},
    }

    check_data_argument = staticmethod(check_xray_ct_data)  # what the command line checks --data with

    def __post_init__(self) -> None:
        super().__post_init__()
        check_xray_ct_data(self.data)
        if self.size < 32 or self.size % 16:
            raise ValueError(f"size must be a multiple of 16, >= 32 (the PatchGAN's three halvings), got {self.size}")
        if not self.fov_mm > 0 or not self.window[1] > self.window[0]:
            raise ValueError(f"need fov_mm > 0 and window (low, high) with high > low, got {self.fov_mm}, "
                             f"{self.window}")
        if min(self.base_channels, self.max_channels, self.d_channels, self.batch_size, self.sample_every) < 1:
            raise ValueError("base_channels, max_channels, d_channels, batch_size and sample_every must be >= 1")
        if min(self.adv_weight, self.voxel_weight, self.proj_weight) < 0 or self.epochs < 0 or self.lr <= 0:
            raise ValueError("loss weights must be >= 0, epochs >= 0 and lr > 0")
        if not 0 <= self.decay_start <= 1:
            raise ValueError(f"decay_start must be a fraction in [0, 1], got {self.decay_start}")
        if self.max_cases is not None and self.max_cases < 1:
            raise ValueError(f"max_cases must be None or >= 1, got {self.max_cases}")
        if not 0 <= self.rotate <= 45 or not 0 <= self.intensity < 1:
            raise ValueError(f"need rotate in [0, 45] degrees and intensity in [0, 1), got {self.rotate}, "
                             f"{self.intensity}")

    @property
    def levels(self) -> int:
        """2-D encoder / 3-D decoder levels: down to a 4³ bottleneck."""
        return max(1, (self.size // 4).bit_length() - 1)


def xray_ct_config(profile: str | None = None, **overrides) -> XrayCTConfig:
    """The X-ray → CT config of a profile, then explicit overrides (unknown keys raise)."""
    return XrayCTConfig.for_profile(profile, **overrides)
