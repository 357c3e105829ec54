"""Config of system 4's Pix2Pix: retinal images → vessel masks (seed 002; SPEC §4)."""

from __future__ import annotations

from dataclasses import dataclass

from .profiles import Config, option, precision_option

#: where image/mask pairs come from: ``octa500`` (its 10 validation images are the held-out test, a seeded 14 of
#: its 140 train images our validation), ``drive`` (its 20 training images split 12 / 3 / 5 by a seeded
#: permutation), ``folder:<images>:<masks>[:<fov>]`` (same file names; a seeded 10 % / 10 % validation / test)
PIX2PIX_SOURCES = ("octa500", "drive", "folder")
#: image channels each named source holds (a folder's are whatever ``in_channels`` says; the reader checks them)
SOURCE_CHANNELS = {"octa500": 1, "drive": 3}
#: generators: the seed's Pix2Pix U-Net, or MONAI's ``UNet`` (2D, residual units, the same widths, a Tanh head) as
#: the outside peer, trained identically (its row is trained without the PatchGAN: ``--network monai_unet
#: --adv-weight 0``, beside our U-Net's no-GAN row)
PIX2PIX_NETWORKS = ("pix2pix", "monai_unet")
#: pix2pix's maintainers' settings for binary targets (junyanz/pytorch-CycleGAN-and-pix2pix: λ_L1 100, LSGAN):
#: ``pix2pix_config(profile, **ANCHOR)`` or ``--l1-weight 100 --mse-weight 0 --gan-loss lsgan``
ANCHOR = {"l1_weight": 100.0, "mse_weight": 0.0, "gan_loss": "lsgan"}


def check_pix2pix_data(data: str) -> None:
    """Raise ValueError unless ``data`` is ``octa500``, ``drive`` or ``folder:<images>:<masks>[:<fov>]``."""
    source, sep, rest = data.partition(":") if isinstance(data, str) else ("", "", "")
    folders = rest.split(":") if rest else []
    ok = (source in ("octa500", "drive") and not sep) or (source == "folder" and len(folders) in (2, 3)
                                                           and all(folders))
    if not ok:
        raise ValueError(f"data must be 'octa500', 'drive' or 'folder:<images>:<masks>[:<field-of-view masks>]', "
                         f"got {data!r}")


@dataclass
class Pix2PixConfig(Config):
    """Pix2Pix vessel masks: a retinal image (grayscale OCTA or RGB fundus) in, a one-channel vessel mask out.

    The seed's recipe (SPEC §4, ``Pranish-37/Pix2Pix-and-CR-Gan-Model``) is the default: the U-Net of six k4 s2
    convolutions 64…512 with Tanh and the 70 × 70 PatchGAN (:mod:`voxhelpers.nets.pix2pix`), G = BCE + 200·L1 +
    10·MSE, D = ½(real + fake), Adam G 2e-4 / D 1e-4, β (0.5, 0.999), StepLR every 20 epochs × 0.9, batch 32,
    250 epochs (the seed: 250–500). :data:`ANCHOR` gives pix2pix's own settings (λ_L1 100 + LSGAN, no MSE), which its
    maintainers advise for binary targets. ``adv_weight=0`` trains the same U-Net without the critic (the no-GAN row:
    does the GAN help?).

    Images are brought to ``size``² by ``fit`` (:func:`voxhelpers.data.retina.fit_sample`) and scaled to [−1, 1];
    masks are {0, 1}, the generator's target 2·mask − 1 (its Tanh range). The threshold that binarises the
    predicted probability (output + 1) / 2 is chosen on the validation split, then applied to the test split.

    Raises:
        ValueError: a value out of range or not among the valid choices (the message lists them), or
            ``in_channels`` that the data cannot have (OCTA-500 is grayscale, DRIVE is RGB).
    """

    data: str = option("octa500", "image/mask pairs: octa500 (its validation folder is the test), drive (12 / 3 / 5 "
                       "by image) or folder:<images>:<masks>[:<fov masks>] (a seeded 10 % / 10 % held out)")
    in_channels: int | None = option(None, "image channels, 1 (grayscale) or 3 (RGB); default: the data's "
                                     "(octa500 1, drive 3, folder 1)")
    size: int = option(256, "side of the square the images are brought to (a multiple of 2^levels; the seed: 256)")
    fit: str = option("resize", "how an image reaches size² (the seed: resize; fov_resize keeps DRIVE's aspect)",
                      ("resize", "crop", "fov_resize"))
    max_images: int | None = option(None, "train on the first k training images only (default: all; validation and "
                                    "test are kept whole)")
    enhance: str = option("none", "image preprocessing: none, or green_clahe (the green channel with CLAHE, 0 outside "
                          "the field of view, as the fundus literature does; the network then sees one channel)",
                          ("none", "green_clahe"))
    network: str = option("pix2pix", "generator: pix2pix (the seed's U-Net) or monai_unet (MONAI's UNet, the outside "
                          "peer: residual units, the same widths and Tanh head)", PIX2PIX_NETWORKS)
    crop: int | None = option(None, "train on random crop²-pixel windows of the size² images (a multiple of "
                              "2^levels; DRIVE at near-native resolution); None: whole images. Evaluation always "
                              "predicts whole size² images")
    channels: tuple[int, ...] = option((64, 128, 256, 512, 512, 512), "U-Net encoder widths, finest first; their "
                                       "number is the depth (the seed's six)")
    d_channels: int = option(64, "width of the PatchGAN's first layer (the seed: 64)")
    dropout: float = option(0.5, "dropout of the first two decoder blocks (the seed: 0.5)")
    adv_weight: float = option(1.0, "adversarial weight (the seed: 1; 0: the no-GAN variant, the U-Net alone)")
    gan_loss: str = option("vanilla", "adversarial loss: vanilla (the seed's BCE) or lsgan (pix2pix's advice for "
                           "binary targets)", ("vanilla", "lsgan"))
    l1_weight: float = option(200.0, "L1 weight (the seed: 200; pix2pix: 100)")
    mse_weight: float = option(10.0, "MSE weight (the seed: 10; pix2pix: 0)")
    bce_weight: float = option(0.0, "weight of a BCE on the generator's logits (2u, σ(2u) = (output + 1) / 2) "
                               "against the mask inside the field of view: ranks pixels where L1 on Tanh saturates "
                               "(not in the seed; 0: off)")
    flip: bool = option(True, "augment: random horizontal and vertical flips")
    rotate: float = option(10.0, "augment: random rotation up to ± this many degrees (0: off)")
    epochs: int = option(250, "epochs (the seed: 250-500)")
    batch_size: int = option(32, "images per step (the seed: 32)")
    lr: float = option(2e-4, "Adam learning rate of the generator (the seed: 2e-4)")
    lr_d: float = option(1e-4, "Adam learning rate of the PatchGAN (the seed: 1e-4)")
    betas: tuple[float, float] = option((0.5, 0.999), "Adam betas (the seed: 0.5, 0.999)")
    precision: str = precision_option("fp32")
    lr_step: int = option(20, "multiply both learning rates by lr_gamma every lr_step epochs (the seed: 20)")
    lr_gamma: float = option(0.9, "StepLR factor (the seed: 0.9)")
    sample_every: int = option(10, "sample sheet and checkpoint every k epochs")
    seed: int = option(0, "weights, shuffling, augmentation and the data's seeded splits")

    # cpu: measured on the project's 2-core machine while it was shared with other jobs, one torch thread: the
    # system's step (PatchGAN + generator, flips and rotation) on 4 images at 256² with these widths (G 32…256, D 32)
    # takes 1.3-1.4 s (the seed's widths: 5.2 s; 16…128: 0.45 s). OCTA-500's 126 training images are 32 steps
    # ≈ 43 s an epoch, so 80 epochs ≈ 57 min, + < 1 min to read the data and evaluate (3 s) — an hour of the 2-hour
    # budget. (On a busy machine two threads fought: 3.5-5 s a step; OMP_NUM_THREADS=1 there.)
    PROFILES = {
        "smoke": {"size": 64, "max_images": 8, "channels": (8, 16, 32, 32, 32), "d_channels": 8, "epochs": 2,
                  "batch_size": 4, "sample_every": 1},
        "cpu": {"size": 256, "channels": (32, 64, 128, 256, 256, 256), "d_channels": 32, "epochs": 80,
                "batch_size": 4, "sample_every": 10},
        "full": {"size": 256, "epochs": 250, "batch_size": 32, "sample_every": 10},
    }

    check_data_argument = staticmethod(check_pix2pix_data)  # what the command line checks --data with

    @property
    def network_channels(self) -> int:
        """Channels the networks see: 1 after ``green_clahe``, else ``in_channels`` (the files')."""
        return 1 if self.enhance == "green_clahe" else self.in_channels

    def __post_init__(self) -> None:
        super().__post_init__()
        check_pix2pix_data(self.data)
        source = self.data.partition(":")[0]
        expected = SOURCE_CHANNELS.get(source)
        if self.in_channels is None:
            self.in_channels = expected or 1
        if self.in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 (grayscale) or 3 (RGB), got {self.in_channels!r}")
        if expected is not None and self.in_channels != expected:
            kind = {1: "grayscale (1 channel)", 3: "RGB (3 channels)"}[expected]
            raise ValueError(f"{source} images are {kind}: in_channels must be {expected} (or left unset), got "
                             f"{self.in_channels}")
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) < 2 or min(self.channels) < 1:
            raise ValueError(f"channels needs at least two positive widths, got {self.channels}")
        divisor = 2 ** self.levels
        if self.size % divisor or self.size < 2 * divisor:
            raise ValueError(f"size must be a multiple of 2^{self.levels} = {divisor} (the U-Net halves it "
                             f"{self.levels} times) and at least {2 * divisor} (batch norm at the bottleneck needs "
                             f"2×2 when a batch holds one image), got {self.size}")
        if self.crop is not None and (self.crop % divisor or not 2 * divisor <= self.crop <= self.size):
            raise ValueError(f"crop must be None or a multiple of 2^{self.levels} = {divisor} between {2 * divisor} "
                             f"and size = {self.size}, got {self.crop}")
        if min(self.d_channels, self.batch_size, self.sample_every, self.lr_step) < 1 or self.epochs < 0:
            raise ValueError("d_channels, batch_size, sample_every and lr_step must be >= 1 and epochs >= 0, got "
                             f"{self.d_channels}, {self.batch_size}, {self.sample_every}, {self.lr_step}, "
                             f"{self.epochs}")
        weights = (self.l1_weight, self.mse_weight, self.bce_weight)
        if min(self.adv_weight, *weights) < 0 or sum(weights) == 0:
            raise ValueError(f"loss weights must be >= 0 with l1_weight + mse_weight + bce_weight > 0, got adv "
                             f"{self.adv_weight}, l1 {self.l1_weight}, mse {self.mse_weight}, bce {self.bce_weight}")
        if self.lr <= 0 or self.lr_d <= 0 or not 0 < self.lr_gamma <= 1:
            raise ValueError(f"need lr > 0, lr_d > 0 and lr_gamma in (0, 1], got {self.lr}, {self.lr_d}, "
                             f"{self.lr_gamma}")
        if not 0 <= self.dropout < 1 or not 0 <= self.rotate <= 180:
            raise ValueError(f"dropout must be in [0, 1) and rotate in [0, 180] degrees, got {self.dropout}, "
                             f"{self.rotate}")
        if self.max_images is not None and self.max_images < 1:
            raise ValueError(f"max_images must be None or >= 1, got {self.max_images}")

    @property
    def levels(self) -> int:
        """U-Net depth: the number of encoder widths (each halves the image)."""
        return len(self.channels)


def pix2pix_config(profile: str | None = None, **overrides) -> Pix2PixConfig:
    """The Pix2Pix config of a profile, then explicit overrides (unknown keys raise); ``**ANCHOR`` for pix2pix's
    own loss settings."""
    return Pix2PixConfig.for_profile(profile, **overrides)
