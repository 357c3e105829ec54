"""Config of system 4's CRGAN: a conditional recurrent WGAN-GP for BRVO progression sequences (seed 002; SPEC §4)."""

from __future__ import annotations

from dataclasses import dataclass

from .profiles import Config, option, precision_option

#: where sequences come from: ``brvo:octa500`` — SIMULATED BRVO sequences (:mod:`voxhelpers.data.brvo`) built from
#: the real OCTA-500 3 mm images; training from our OCTA-500 train split, evaluation from its test split (the
#: dataset's own validation folder: other source images, other eyes)
CRGAN_SOURCES = ("brvo:octa500",)
#: OCTA-500 3 mm's 140 train images less the 14 of our validation split (:func:`~voxhelpers.data.retina.octa500_splits`)
OCTA500_TRAIN_IMAGES = 126


def check_crgan_data(data: str) -> None:
    """Raise ValueError unless ``data`` is one of :data:`CRGAN_SOURCES`."""
    if data not in CRGAN_SOURCES:
        raise ValueError(f"data must be one of {CRGAN_SOURCES} (simulated BRVO sequences from OCTA-500), got {data!r}")


@dataclass
class CRGANConfig(Config):
    """CRGAN: noise + patient + stage → one 64² en-face OCTA image per treatment stage (SPEC §4, WGAN-GP done right).

    The seed's slides (``Pranish-37/Pix2Pix-and-CR-Gan-Model``): 100-d noise, patient and stage embeddings, an LSTM
    over the stages, a DCGAN decoder 512 → 64 to 64², a critic on image + two embedding planes, WGAN-GP λ 10, lr 1e-4,
    batch 32, 1000 epochs. What we fix: the critic is linear (no Sigmoid) with the WGAN sign (critic minimises
    E[D(fake)] − E[D(real)] + λ·GP, generator minimises −E[D(fake)]), the penalty's norm is per sample, and the
    critic takes ``n_critic`` = 5 steps per generator step (Gulrajani et al. 2017). Adam β = (0.5, 0.9): the WGAN-GP
    paper's DCGAN setting (β1 0 is its ResNet setting), the one 3D-IWGAN uses here too.

    **Data.** Each training source image of OCTA-500's train split becomes one SIMULATED sequence of ``n_stages``
    stages (:func:`voxhelpers.data.brvo.load_brvo_octa500`, simulation seed ``seed``), resized from 304² to
    ``image_size``² by anti-aliased bilinear interpolation (``torch.nn.functional.interpolate(mode="bilinear",
    antialias=True, align_corners=False)``, rounded back to uint8). Held-out sequences are simulated (seed
    ``seed + 1``) from OCTA-500's 10 test images, source images never trained on.

    **Patients.** The patient embedding indexes training source images: ``n_patients`` rows = one per training image
    plus a last row, the *unknown patient*. During training each sequence's patient is replaced by the unknown one
    with probability ``unknown_patient_p`` (condition dropout), so that row learns the population; held-out
    sequences are generated with it (their source image was never seen, so nothing else is honest).

    Raises:
        ValueError: a value out of range or an unknown data source (the message lists the valid values).
    """

    data: str = option("brvo:octa500", "sequences: brvo:octa500 (SIMULATED BRVO from the real OCTA-500 images; "
                       "train split to train, test split held out)", CRGAN_SOURCES)
    max_images: int | None = option(None, "train on the first k training source images only (default: all 126)")
    n_patients: int | None = option(None, "patient embedding rows: training source images + 1 (the last is the "
                                    "'unknown patient' of held-out sequences); default max_images + 1 or 127")
    n_stages: int = option(6, "treatment stages per sequence (SOUL's s1t1 … s3t2: 6)")
    image_size: int = option(64, "side of the generated images, a power of two >= 8 (the seed: 64; sequences are "
                             "resized from 304² with anti-aliasing)")
    z_dim: int = option(100, "noise size, one draw per sequence (the seed: 100)")
    embed_dim: int = option(32, "size of the patient and stage embeddings")
    hidden_dim: int = option(256, "LSTM hidden size")
    g_channels: int = option(64, "width of the generator's finest decoder layer (doubles per coarser layer; seed 64)")
    d_channels: int = option(64, "width of the critic's first layer (doubles per layer; the seed: 64)")
    max_channels: int = option(512, "width cap of both networks (the seed: 512)")
    unknown_patient_p: float = option(0.1, "probability that a training sequence's patient is replaced by the "
                                      "unknown patient (condition dropout; 0: the unknown row is never trained)")
    gp_weight: float = option(10.0, "λ of the gradient penalty (the seed: 10)")
    n_critic: int = option(5, "critic steps per generator step: the generator steps on every 5th batch (WGAN-GP)")
    epochs: int = option(1000, "epochs (the seed: 1000)")
    batch_size: int = option(32, "sequences per step (the seed: 32); the critic sees batch_size × n_stages frames")
    lr: float = option(1e-4, "Adam learning rate of both networks (the seed: 1e-4)")
    betas: tuple[float, float] = option((0.5, 0.9), "Adam betas of both (WGAN-GP's DCGAN setting)")
    precision: str = precision_option("cuda")
    ema_decay: float = option(0.99, "moving average of G's weights per generator step; evaluated and shipped (0: off)")
    eval_draws: int = option(4, "noise draws per held-out sequence in evaluation (metrics are their mean)")
    sample_every: int = option(50, "sample sheet and checkpoint every k epochs")
    seed: int = option(0, "weights, noise, condition dropout, shuffling and the simulation's seeds")

    # cpu: measured on the project's 2-core machine shared with two other trainings, one torch thread: one batch at
    # these widths (G 32…256, D 32…256, hidden 128) of 16 sequences × 6 stages = 96 critic frames at 64² takes
    # 1.0-1.2 s critic-only and 1.5-1.8 s with the generator step (every 5th): (4 × 1.1 + 1.7) / 5 ≈ 1.2 s a batch.
    # 126 training sequences are 8 batches ≈ 10 s an epoch; 300 epochs = 2,400 batches (480 generator steps)
    # ≈ 48 min, + ≈ 15 s to simulate the 136 sequences and < 30 s to evaluate: under an hour of the 2-hour budget.
    # (The seed's widths at batch 32: ≈ 7 s a batch, 4 batches an epoch: 1000 epochs ≈ 8 h on CPU — the full profile.)
    PROFILES = {
        "smoke": {"max_images": 8, "image_size": 32, "z_dim": 16, "embed_dim": 8, "hidden_dim": 32, "g_channels": 8,
                  "d_channels": 8, "max_channels": 32, "epochs": 2, "batch_size": 4, "sample_every": 1,
                  "eval_draws": 2},
        "cpu": {"g_channels": 32, "d_channels": 32, "max_channels": 256, "hidden_dim": 128, "epochs": 300,
                "batch_size": 16, "sample_every": 25},
        "full": {"epochs": 1000, "batch_size": 32, "sample_every": 50},
    }

    check_data_argument = staticmethod(check_crgan_data)  # what the command line checks --data with

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images must be None or >= 1, got {self.max_images}")
        if self.n_patients is None:
            self.n_patients = (self.max_images or OCTA500_TRAIN_IMAGES) + 1
        if self.n_patients < 2:
            raise ValueError(f"n_patients must be >= 2 (at least one training image and the unknown patient), got "
                             f"{self.n_patients}")
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise ValueError(f"image_size must be a power of two >= 8 (the decoder doubles 4² to it), got "
                             f"{self.image_size}")
        sizes = {"n_stages": self.n_stages, "z_dim": self.z_dim, "embed_dim": self.embed_dim,
                 "hidden_dim": self.hidden_dim, "g_channels": self.g_channels, "d_channels": self.d_channels,
                 "max_channels": self.max_channels, "n_critic": self.n_critic, "batch_size": self.batch_size,
                 "eval_draws": self.eval_draws, "sample_every": self.sample_every}
        small = {k: v for k, v in sizes.items() if v < 1}
        if small or self.epochs < 0:
            raise ValueError(f"{sorted(sizes)} must be >= 1 and epochs >= 0; got {small or {'epochs': self.epochs}}")
        if self.gp_weight < 0 or self.lr <= 0 or not 0 <= self.ema_decay < 1 or not 0 <= self.unknown_patient_p < 1:
            raise ValueError(f"need gp_weight >= 0, lr > 0, ema_decay in [0, 1) and unknown_patient_p in [0, 1), got "
                             f"{self.gp_weight}, {self.lr}, {self.ema_decay}, {self.unknown_patient_p}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        self.betas = tuple(float(b) for b in self.betas)

    @property
    def unknown_patient(self) -> int:
        """The embedding row of the unknown patient (held-out sequences): the last one."""
        return self.n_patients - 1


def crgan_config(profile: str | None = None, **overrides) -> CRGANConfig:
    """The CRGAN config of a profile, then explicit overrides (unknown keys raise)."""
    return CRGANConfig.for_profile(profile, **overrides)
