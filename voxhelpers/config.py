"""Run profiles, data roots and one config dataclass per system.

Profiles choose the budget of every notebook and training run through one setting, the environment
variable ``VOXHELPERS_PROFILE``:

* ``smoke`` — seconds; what CI runs every notebook with.
* ``cpu`` (default) — minutes on a laptop.
* ``full`` — the seeds' budgets, for a GPU.

Datasets are found through ``VOXHELPERS_DATA``, a search path (``os.pathsep``-separated folders).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

PROFILES = ("smoke", "cpu", "full")
PROFILE_ENV = "VOXHELPERS_PROFILE"
DATA_ENV = "VOXHELPERS_DATA"


def get_profile(profile: str | None = None) -> str:
    """Return the active run profile (argument, else ``$VOXHELPERS_PROFILE``, else ``"cpu"``).

    Raises:
        ValueError: if the profile is not one of ``smoke``, ``cpu``, ``full``.
    """
    profile = profile or os.environ.get(PROFILE_ENV) or "cpu"
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES} (env {PROFILE_ENV})")
    return profile


def data_roots() -> list[Path]:
    """Folders searched for datasets: ``$VOXHELPERS_DATA`` (a search path), then ``./data`` and ``../data``."""
    roots = [Path(p).expanduser() for p in os.environ.get(DATA_ENV, "").split(os.pathsep) if p]
    here = Path.cwd()
    roots += [here / "data", here.parent / "data", Path(__file__).resolve().parent.parent / "data"]
    seen, out = set(), []
    for r in roots:
        key = str(r.resolve()) if r.exists() else str(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not under any data root; the message says where to get it."""


def find_data(relative: str, how_to_get: str) -> Path:
    """Return the first ``<root>/<relative>`` that exists among :func:`data_roots`.

    Args:
        relative: path of the dataset inside a data root, e.g. ``"synthevox3d"``.
        how_to_get: one or two sentences telling the user where to download it.

    Raises:
        DatasetNotFoundError: naming the folders searched and how to obtain the data.
    """
    roots = data_roots()
    for root in roots:
        candidate = root / relative
        if candidate.exists():
            return candidate
    searched = "\n  ".join(str(r / relative) for r in roots)
    raise DatasetNotFoundError(
        f"dataset {relative!r} not found. Searched:\n  {searched}\n{how_to_get}\n"
        f"Set {DATA_ENV} to the folder that holds {relative!r} (several folders: separate with {os.pathsep!r})."
    )


# --------------------------------------------------------------------------------------------------
# System 1: hybrid-loss conditional 3D voxel GAN (seed 000; SPEC §1)
# --------------------------------------------------------------------------------------------------
@dataclass
class VoxelCGANConfig:
    """Hybrid-loss conditional voxel GAN, paper (seed) defaults.

    The seed: Va-un/Hybridized-Loss-Functions-for-3D-Conditional-GANs, a modified copy of
    cihanongun/3D-CGAN (Öngün & Temizel, ECCV 2018 workshop).
    """

    category: str = "airplane"  # SynthEVox3D category name (or synset id)
    loss: str = "bce_bcewithlogits"  # one of voxhelpers.losses.HYBRID_LOSSES
    n_conditions: int = 2  # rotation conditions; 2 reproduces the seed (scalar condition 0/1)
    z_dim: int = 200  # latent size
    size: int = 32  # voxel grid side
    condition: str = "scalar"  # "scalar": the condition index as one input (seed); "onehot": N inputs
    output: str = "probs"  # "probs": D ends in a sigmoid (seed); "logits": raw scores
    variant: str = "seed"  # loss formulas: "seed" verbatim, or "sound" (needs output="logits")
    epochs: int = 401  # the seed trained epochs 0..400
    batch_size: int = 128  # seed; with 80 shapes this is one batch of 80 per epoch
    optimizer: str = "rmsprop"  # "rmsprop" (the seed) or "adam" (β 0.5, 0.999; its upstream 3D-CGAN)
    lr_d: float = 5e-5  # discriminator learning rate
    lr_g: float = 2.5e-3  # generator learning rate
    d_acc_gate: float = 0.95  # skip D steps when D's (soft) accuracy on the previous batch was >= this
    pairing: bool = True  # the pairing G step that makes all conditions draw the same object
    pairing_steps: int = 1  # pairing G steps per batch (the seed: 1), each with its own z
    consistency: float = 0.0  # weight of a soft-Jaccard consistency term in the pairing step (the seed: 0)
    consistency_start: float = 0.0  # fraction of the epochs before the term switches on (then a 10 % linear ramp)
    ema_decay: float = 0.98  # exponential moving average of G's weights per batch, the model we ship; 0 = off (seed)
    sample_every: int = 40  # sample sheet (and checkpoint) every k epochs
    n_train: int | None = None  # use only the first n shapes (None: all 80)
    seed: int = 0
    data: str = "synthevox3d"  # "synthevox3d" (real arrays) or "procedural" (stand-in shapes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: budgets per profile (fields of VoxelCGANConfig overridden by the profile)
VOXEL_CGAN_PROFILES: dict[str, dict] = {
    "smoke": {"epochs": 3, "n_train": 8, "batch_size": 8, "sample_every": 2},
    "cpu": {"epochs": 60, "sample_every": 20},
    "full": {"epochs": 401, "sample_every": 40},
}


def profile_config(cls, profiles: dict[str, dict], profile: str | None = None, **overrides):
    """``cls(**{profile budget, then overrides})`` for a config dataclass; unknown fields raise ValueError."""
    values = {**profiles[get_profile(profile)], **overrides}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; expected some of {sorted(names)}")
    return cls(**values)


def voxel_cgan_config(profile: str | None = None, **overrides) -> VoxelCGANConfig:
    """Build the cGAN config for a profile, then apply explicit overrides (unknown keys raise)."""
    return profile_config(VoxelCGANConfig, VOXEL_CGAN_PROFILES, profile, **overrides)


@dataclass
class EvalBudget:
    """How many samples evaluation cells draw, per profile."""

    n_consistency: int = 1000  # z drawn for condition-consistency AAD/AVAR
    n_generated: int = 80  # generated shapes compared with the real set (COV/MMD/1-NNA)
    extra: dict = field(default_factory=dict)


EVAL_PROFILES: dict[str, EvalBudget] = {
    "smoke": EvalBudget(n_consistency=16, n_generated=8),
    "cpu": EvalBudget(n_consistency=200, n_generated=80),
    "full": EvalBudget(n_consistency=1000, n_generated=80),
}


def eval_budget(profile: str | None = None) -> EvalBudget:
    """The evaluation budget of a profile."""
    return EVAL_PROFILES[get_profile(profile)]


# --------------------------------------------------------------------------------------------------
# project folders
# --------------------------------------------------------------------------------------------------
def project_root() -> Path:
    """The repository root: the first folder upward from the working directory holding ``models/`` and
    ``notebooks/`` (notebooks run from their own folder), else the folder above the installed package."""
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "models").is_dir() and (folder / "notebooks").is_dir():
            return folder
    return Path(__file__).resolve().parent.parent


def models_dir() -> Path:
    """``<root>/models``: pretrained weights and their cards."""
    return project_root() / "models"


def output_dir(kind: str = "images", profile: str | None = None) -> Path:
    """Where notebooks write figures and tables: ``<root>/<kind>`` for the ``cpu`` and ``full`` profiles, and
    ``<root>/runs/smoke/<kind>`` for ``smoke`` (so CI never overwrites the README's figures)."""
    root = project_root()
    return root / "runs" / "smoke" / kind if get_profile(profile) == "smoke" else root / kind


# --------------------------------------------------------------------------------------------------
# System 2: 3D-IWGAN voxel generation (seed 003; SPEC §2)
# --------------------------------------------------------------------------------------------------
IWGAN_DATA_SOURCES = ("synthevox3d", "modelnet10", "procedural")


@dataclass
class IWGANConfig:
    """3D-IWGAN unconditional voxel generation, the paper's defaults (SPEC §2).

    Smith & Meger, "Improved Adversarial Systems for 3D Object Generation and Reconstruction", CoRL 2017
    (arXiv 1707.09557); the seed: EdwardSmith1884/3D-IWGAN. WGAN-GP (Gulrajani et al. 2017) on 32³ grids.

    Raises:
        ValueError: a ``data`` string not of the form ``<source>:<name>``, or a value out of range.
    """

    data: str = "modelnet10:chair"  # "synthevox3d:<category>", "modelnet10:<category>" or "procedural:<kind>"
    z_dim: int = 200  # latent size
    batch_size: int = 256  # the paper's batch
    epochs: int = 1500  # the paper's budget
    lr: float = 1e-4  # Adam learning rate of critic and generator
    betas: tuple[float, float] = (0.5, 0.9)  # Adam betas of both
    gp_weight: float = 10.0  # λ of the gradient penalty
    n_critic: int = 5  # critic updates per generator update: the generator steps on every 5th batch
    holdout: float = 0.2  # fraction of the (distinct) shapes held back for evaluation, by a seeded permutation
    max_shapes: int | None = None  # keep only the first k distinct shapes, before the split (None: all)
    ema_decay: float = 0.0  # moving average of G's weights per generator update; 0 = off (the paper)
    sample_every: int = 50  # sample sheet (and checkpoint) every k epochs
    seed: int = 0  # weights, shuffling, z, the penalty's ε and the split
    g_channels: tuple[int, ...] | None = None  # generator widths; None: the paper's (256, 128, 64, 32)
    d_channels: tuple[int, ...] | None = None  # critic widths; None: the paper's (32, 64, 128, 256)

    def __post_init__(self) -> None:
        source, sep, name = self.data.partition(":")
        if not sep or source not in IWGAN_DATA_SOURCES or not name:
            raise ValueError(f"data must be '<source>:<name>' with source in {IWGAN_DATA_SOURCES}, e.g. "
                             f"'modelnet10:chair' or 'procedural:chair', got {self.data!r}")
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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: budgets per profile (fields of IWGANConfig overridden by the profile)
IWGAN_PROFILES: dict[str, dict] = {
    "smoke": {"epochs": 2, "batch_size": 8, "max_shapes": 16, "sample_every": 1},
    "cpu": {"epochs": 60, "batch_size": 64, "sample_every": 20},
    "full": {"epochs": 1500, "batch_size": 256, "sample_every": 50},
}


def iwgan_config(profile: str | None = None, **overrides) -> IWGANConfig:
    """Build the 3D-IWGAN config for a profile, then apply explicit overrides (unknown keys raise).

    Raises:
        ValueError: an unknown profile, an unknown field (the message lists the valid ones) or a bad value.
    """
    return profile_config(IWGANConfig, IWGAN_PROFILES, profile, **overrides)


@dataclass
class VAEIWGANConfig(IWGANConfig):
    """3D-VAE-IWGAN single-image reconstruction: an image encoder, the 3D-IWGAN generator and critic trained
    jointly on render → voxel pairs (Smith & Meger 2017, §3.2; SPEC §2).

    Inherits the generation fields (data, z_dim, batch, Adam, λ, n_critic, …). The reconstruction term defaults to
    δ = 1 times the squared error SUMMED over a shape's 32³ voxels: the original's δ = 100 times the MEAN over
    voxels lets the critic's term dominate (its gradient has norm ≈ 1 per shape), and on ModelNet10 chairs it
    reconstructed nothing (test IoU 0.18 < the retrieval baseline's 0.28; README). The held-back shapes
    (``holdout``) are split by object into validation (``val_fraction`` of them: picks the occupancy threshold)
    and test (the reported metrics); no object is in two parts.

    Raises:
        ValueError: as :class:`IWGANConfig`, or a bad image size, weight, view count or fraction.
    """

    holdout: float = 0.3  # objects held back (validation + test)
    val_fraction: float = 0.5  # of the held-back objects: validation; the rest: test
    image_size: int = 128  # renders are image_size² RGB (the original: 256²)
    rec_weight: float = 1.0  # δ of the reconstruction term in the generator's and encoder's losses (original: 100)
    rec_reduction: str = "sum"  # squared error "sum" over a shape's voxels, or "mean" over voxels (the original)
    g_rec_every_batch: bool = False  # True: G also takes δ·rec (no adversarial term) on the batches between its steps
    kl_weight: float = 0.005  # weight of KL (summed over dims); 1/200 = the original's mean over the 200 dims
    eval_views: int = 4  # seeded random views per held-back object for validation and test
    retrieval_views: int = 8  # seeded random views per training object for the retrieval baseline's database
    elevation_range: tuple[float, float] = (-20.0, 40.0)  # degrees, training and evaluation views

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.image_size < 64 or self.image_size & (self.image_size - 1):
            raise ValueError(f"image_size must be a power of two >= 64, got {self.image_size}")
        if self.rec_weight < 0 or self.kl_weight < 0:
            raise ValueError(f"rec_weight and kl_weight must be >= 0, got {self.rec_weight}, {self.kl_weight}")
        if self.rec_reduction not in ("mean", "sum"):
            raise ValueError(f"rec_reduction must be 'mean' or 'sum', got {self.rec_reduction!r}")
        if self.eval_views < 1 or self.retrieval_views < 1:
            raise ValueError(f"eval_views and retrieval_views must be >= 1, got {self.eval_views}, "
                             f"{self.retrieval_views}")
        if not 0 < self.val_fraction < 1 or self.holdout <= 0:
            raise ValueError(f"need holdout > 0 and val_fraction in (0, 1) (validation and test both non-empty), "
                             f"got {self.holdout}, {self.val_fraction}")


#: budgets per profile (fields of VAEIWGANConfig overridden by the profile)
VAE_IWGAN_PROFILES: dict[str, dict] = {
    "smoke": {"epochs": 2, "batch_size": 8, "max_shapes": 24, "sample_every": 1, "image_size": 64,
              "eval_views": 2, "retrieval_views": 2},
    "cpu": {"epochs": 40, "batch_size": 32, "sample_every": 10, "image_size": 64},
    "full": {"epochs": 1500, "batch_size": 128, "sample_every": 50, "image_size": 128},
}


def vae_iwgan_config(profile: str | None = None, **overrides) -> VAEIWGANConfig:
    """Build the 3D-VAE-IWGAN config for a profile, then apply explicit overrides (unknown keys raise)."""
    return profile_config(VAEIWGANConfig, VAE_IWGAN_PROFILES, profile, **overrides)
