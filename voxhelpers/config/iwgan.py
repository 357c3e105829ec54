"""Configs of system 2: 3D-IWGAN voxel generation and 3D-VAE-IWGAN single-image reconstruction (seed 003; SPEC §2)."""

from __future__ import annotations

from dataclasses import dataclass

from .profiles import Config, option
from .voxel_cgan import check_data


@dataclass
class IWGANConfig(Config):
    """3D-IWGAN unconditional voxel generation, the paper's defaults (SPEC §2).

    Smith & Meger, "Improved Adversarial Systems for 3D Object Generation and Reconstruction", CoRL 2017
    (arXiv 1707.09557); the seed: EdwardSmith1884/3D-IWGAN. WGAN-GP (Gulrajani et al. 2017) on 32³ grids.

    Raises:
        ValueError: a ``data`` string not of the form ``<source>:<name>``, or a value out of range.
    """

    data: str = option("modelnet10:chair", "training shapes: modelnet10:<category>, synthevox3d:<category>, "
                       "procedural:<kind> (stand-ins) or npy:<file or folder> (your own (N, 32, 32, 32) shapes)")
    z_dim: int = option(200, "latent size")
    batch_size: int = option(256, "batch size (the paper's)")
    epochs: int = option(1500, "epochs (the paper's budget)")
    lr: float = option(1e-4, "Adam learning rate of critic and generator")
    betas: tuple[float, float] = option((0.5, 0.9), "Adam betas of both")
    gp_weight: float = option(10.0, "λ of the gradient penalty")
    n_critic: int = option(5, "critic updates per generator update: the generator steps on every 5th batch")
    holdout: float = option(0.2, "fraction of the distinct shapes held back for evaluation (seeded permutation)")
    max_shapes: int | None = option(None, "keep only the first k distinct shapes, before the split (default: all)")
    ema_decay: float = option(0.0, "moving average of G's weights per generator update; 0: off (the paper)")
    sample_every: int = option(50, "sample sheet and checkpoint every k epochs")
    seed: int = option(0, "weights, shuffling, z, the penalty's ε and the split")
    g_channels: tuple[int, ...] | None = option(None, "generator widths (default: the paper's 256 128 64 32)")
    d_channels: tuple[int, ...] | None = option(None, "critic widths (default: the paper's 32 64 128 256)")
    augment: str = option("none", "DiffAugment of real and generated grids before the critic (its penalty between "
                          "the augmented pair): none, or '+'-joined names from flip, translate (1/8), cutout (1/2), "
                          "empty voxels shifted in (voxhelpers.ops.diffaugment); generation only")
    augment_p: float = option(1.0, "probability each augmentation applies to a grid (flip: half of it)")

    PROFILES = {
        "smoke": {"epochs": 2, "batch_size": 8, "max_shapes": 16, "sample_every": 1},
        "cpu": {"epochs": 60, "batch_size": 64, "sample_every": 20},
        "full": {"epochs": 1500, "batch_size": 256, "sample_every": 50},
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        check_data(self.data)
        if not 0 <= self.holdout < 1:
            raise ValueError(f"holdout must be a fraction in [0, 1), got {self.holdout}")
        if min(self.z_dim, self.batch_size, self.n_critic, self.sample_every) < 1 or self.epochs < 0:
            raise ValueError("z_dim, batch_size, n_critic and sample_every must be >= 1 and epochs >= 0, got "
                             f"{self.z_dim}, {self.batch_size}, {self.n_critic}, {self.sample_every}, {self.epochs}")
        if self.max_shapes is not None and self.max_shapes < 1:
            raise ValueError(f"max_shapes must be None or >= 1, got {self.max_shapes}")
        if self.gp_weight < 0 or self.lr <= 0 or not 0 <= self.ema_decay < 1:
            raise ValueError(f"need gp_weight >= 0, lr > 0 and ema_decay in [0, 1), got {self.gp_weight}, "
                             f"{self.lr}, {self.ema_decay}")
        from ..ops.diffaugment import parse_policy

        parse_policy(self.augment)
        if not 0 <= self.augment_p <= 1:
            raise ValueError(f"augment_p must be in [0, 1], got {self.augment_p}")


def iwgan_config(profile: str | None = None, **overrides) -> IWGANConfig:
    """Build the 3D-IWGAN config for a profile, then apply explicit overrides (unknown keys raise).

    Raises:
        ValueError: an unknown profile, an unknown field (the message lists the valid ones) or a bad value.
    """
    return IWGANConfig.for_profile(profile, **overrides)


@dataclass
class VAEIWGANConfig(IWGANConfig):
    """3D-VAE-IWGAN single-image reconstruction: an image encoder, the 3D-IWGAN generator and critic trained
    jointly on render → voxel pairs (Smith & Meger 2017, §3.2; SPEC §2).

    Inherits the generation fields (data, z_dim, batch, Adam, λ, n_critic, …). The reconstruction term defaults to
    δ = 1 times the squared error SUMMED over a shape's 32³ voxels: the original's δ = 100 times the MEAN over
    voxels lets the critic's term dominate (its gradient has norm ≈ 1 per shape), and on ModelNet10 chairs it
    reconstructed nothing (test IoU 0.18 < the retrieval baseline's 0.28; docs/iwgan.md). The held-back shapes
    (``holdout``) are split by object into validation (``val_fraction`` of them: picks the occupancy threshold)
    and test (the reported metrics); no object is in two parts.

    Raises:
        ValueError: as :class:`IWGANConfig`, or a bad image size, weight, view count or fraction.
    """

    holdout: float = option(0.3, "objects held back (validation + test)")
    val_fraction: float = option(0.5, "of the held-back objects: validation (picks the threshold); the rest: test")
    image_size: int = option(128, "renders are image_size² RGB (the original: 256²)")
    rec_weight: float = option(1.0, "δ of the reconstruction term in the generator's and encoder's losses "
                               "(the original: 100)")
    rec_reduction: str = option("sum", "squared error summed over a shape's voxels, or the mean over voxels "
                                "(the original)", ("sum", "mean"))
    g_rec_every_batch: bool = option(False, "G also takes δ·rec (no adversarial term) on the batches between its "
                                     "steps")
    kl_weight: float = option(0.005, "weight of KL (summed over dims); 1/200 = the original's mean over 200 dims")
    eval_views: int = option(4, "seeded random views per held-back object for validation and test")
    retrieval_views: int = option(8, "seeded random views per training object for the retrieval baseline")
    elevation_range: tuple[float, float] = option((-20.0, 40.0), "degrees, training and evaluation views")

    PROFILES = {
        "smoke": {"epochs": 2, "batch_size": 8, "max_shapes": 24, "sample_every": 1, "image_size": 64,
                  "eval_views": 2, "retrieval_views": 2},
        "cpu": {"epochs": 40, "batch_size": 32, "sample_every": 10, "image_size": 64},
        "full": {"epochs": 1500, "batch_size": 128, "sample_every": 50, "image_size": 128},
    }

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_size < 64 or self.image_size & (self.image_size - 1):
            raise ValueError(f"image_size must be a power of two >= 64, got {self.image_size}")
        if self.rec_weight < 0 or self.kl_weight < 0:
            raise ValueError(f"rec_weight and kl_weight must be >= 0, got {self.rec_weight}, {self.kl_weight}")
        if self.eval_views < 1 or self.retrieval_views < 1:
            raise ValueError(f"eval_views and retrieval_views must be >= 1, got {self.eval_views}, "
                             f"{self.retrieval_views}")
        if self.augment != "none":
            raise ValueError(f"augment is for 3D-IWGAN generation; the reconstruction system takes none, got "
                             f"{self.augment!r}")
        if not 0 < self.val_fraction < 1 or self.holdout <= 0:
            raise ValueError(f"need holdout > 0 and val_fraction in (0, 1) (validation and test both non-empty), "
                             f"got {self.holdout}, {self.val_fraction}")


def vae_iwgan_config(profile: str | None = None, **overrides) -> VAEIWGANConfig:
    """Build the 3D-VAE-IWGAN config for a profile, then apply explicit overrides (unknown keys raise)."""
    return VAEIWGANConfig.for_profile(profile, **overrides)
