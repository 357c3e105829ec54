"""3D-IWGAN and 3D-VAE-IWGAN networks (SPEC §2): :class:`IWGANGenerator`, :class:`IWGANCritic`,
:class:`ImageEncoder` and :class:`VAEIWGAN` — Smith & Meger, "Improved Adversarial Systems for 3D Object Generation
and Reconstruction", CoRL 2017, arXiv 1707.09557 (seed EdwardSmith1884/3D-IWGAN) — and the tanh ↔ occupancy maps
they train in.
"""

from __future__ import annotations

import torch
from torch import nn

from .fast_conv3d import FastConvTranspose3d


def voxels_to_tanh(x: torch.Tensor) -> torch.Tensor:
    """Map binary voxel targets {0, 1} to the generator's tanh range {−1, 1} (x ↦ 2x − 1).

    3D-IWGAN's generator ends in tanh, so real grids must be put in the same range before the critic
    compares them with generated ones (SPEC §2: "map them to the output range explicitly").

    Args:
        x: occupancy grids of any shape, e.g. (B, 1, 32, 32, 32), bool or numbers in {0, 1}.

    Returns:
        float tensor of the same shape in {−1, 1} (float32 for bool / integer input, else x's dtype).

    Raises:
        ValueError: a value other than 0 or 1 (including NaN).
    """
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        x = x.to(torch.float32)
    if x.numel() and not ((x == 0) | (x == 1)).all():
        bad = x[(x != 0) & (x != 1)][:4].tolist()
        raise ValueError(f"voxels_to_tanh expects binary occupancy in {{0, 1}}, got values such as {bad}")
    return x * 2 - 1


def tanh_to_occupancy(y: torch.Tensor) -> torch.Tensor:
    """Map generator output in [−1, 1] to occupancy probabilities in [0, 1] (y ↦ (y + 1) / 2).

    The inverse of :func:`voxels_to_tanh` on {−1, 1}; threshold the result at 0.5 (i.e. y at 0) for a
    binary grid.

    Args:
        y: tanh output of any shape, e.g. (B, 1, 32, 32, 32), values in [−1, 1].

    Returns:
        tensor of the same shape and dtype in [0, 1].

    Raises:
        ValueError: non-floating input, or values outside [−1, 1] (including NaN).
    """
    if not torch.is_tensor(y) or not y.is_floating_point():
        raise ValueError(f"tanh_to_occupancy expects a floating-point tensor in [-1, 1], got {type(y).__name__}")
    if y.numel() and not ((y >= -1) & (y <= 1)).all():
        raise ValueError("tanh_to_occupancy expects values in [-1, 1] (a tanh output); got values outside or NaN")
    return (y + 1) / 2


class IWGANGenerator(nn.Module):
    """3D-IWGAN voxel generator: z (200) → 32³ grid in [−1, 1] (Smith & Meger 2017, ``generator_32``).

    ``Linear(z_dim → 256·2³)`` → reshape (B, 256, 2, 2, 2) → BatchNorm3d + ReLU (the original normalises the
    reshaped tensor per channel), then four ``ConvTranspose3d(k=4, s=2, p=1)`` 256 → 128 → 64 → 32 → 1,
    spatial 2 → 4 → 8 → 16 → 32, BatchNorm3d + ReLU after the first three and tanh at the end (as
    :class:`~voxhelpers.nets.fast_conv3d.FastConvTranspose3d`, with CPU fast paths for the 2³ input and the last layer).
    3,167,393 parameters with the defaults (SPEC: ≈ 3.2 M). Map real {0, 1} targets with
    :func:`voxels_to_tanh` and outputs back with :func:`tanh_to_occupancy`.

    Args:
        z_dim: latent size (the paper's 200).
        channels: four widths: the reshaped linear output and the first three transposed convolutions.

    Shapes:
        forward(z (B, z_dim)) → (B, 1, 32, 32, 32) in [−1, 1].

    Raises:
        ValueError: ``channels`` not four positive widths, or ``z_dim`` < 1.
    """

    def __init__(self, z_dim: int = 200, channels: tuple[int, ...] = (256, 128, 64, 32)):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) != 4 or min(channels) < 1:
            raise ValueError(f"channels must be four positive widths (256, 128, 64, 32 in the paper), got {channels}")
        if z_dim < 1:
            raise ValueError(f"z_dim must be >= 1, got {z_dim}")
        self.z_dim, self.channels = int(z_dim), channels
        self.fc = nn.Linear(self.z_dim, channels[0] * 8)
        self.bn0 = nn.BatchNorm3d(channels[0])
        layers: list[nn.Module] = []
        for in_ch, out_ch in zip(channels[:-1], channels[1:], strict=True):
            layers += [FastConvTranspose3d(in_ch, out_ch, 4, 2, 1), nn.BatchNorm3d(out_ch), nn.ReLU(inplace=True)]
        layers += [FastConvTranspose3d(channels[-1], 1, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be (B, {self.z_dim}), got {tuple(z.shape)}")
        x = self.fc(z).reshape(z.shape[0], self.channels[0], 2, 2, 2)  # (B, 256, 2, 2, 2)
        x = torch.relu(self.bn0(x))
        return self.net(x)  # (B, 1, 32, 32, 32)


class IWGANCritic(nn.Module):
    """3D-IWGAN critic: 32³ grid in [−1, 1] → one unbounded Wasserstein score (Smith & Meger 2017).

    Four ``Conv3d(k=4, s=2, p=1)`` 1 → 32 → 64 → 128 → 256, spatial 32 → 16 → 8 → 4 → 2, each followed by
    LeakyReLU(0.2) and **no batch norm** (the gradient penalty is defined per sample, which batch norm breaks;
    the original's ``improved=True``), then flatten (256·2³) → ``Linear(2048 → 1)``, no output activation.
    2,757,089 parameters with the defaults.

    Args:
        channels: widths of the four convolutions.

    Shapes:
        forward(x (B, 1, 32, 32, 32) in [−1, 1]) → (B,) scores.

    Raises:
        ValueError: ``channels`` not four positive widths.
    """

    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if len(channels) != 4 or min(channels) < 1:
            raise ValueError(f"channels must be four positive widths (32, 64, 128, 256 in the paper), got {channels}")
        self.channels = channels
        layers: list[nn.Module] = []
        in_ch = 1
        for out_ch in channels:
            layers += [nn.Conv3d(in_ch, out_ch, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
            in_ch = out_ch
        self.net = nn.Sequential(*layers)
        self.fc = nn.Linear(channels[-1] * 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or tuple(x.shape[1:]) != (1, 32, 32, 32):
            raise ValueError(f"x must be (B, 1, 32, 32, 32) in [-1, 1], got {tuple(x.shape)}")
        h = self.net(x).flatten(1)  # (B, 256·2³)
        return self.fc(h).reshape(x.shape[0])  # (B,)


def reparameterize(mu: torch.Tensor, log_sigma: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw z = μ + exp(log σ)·ε with ε ~ N(0, I) (the VAE reparameterisation, Kingma & Welling 2014).

    ε is drawn on the CPU ``generator`` (as :func:`voxhelpers.systems.base.sample_z` does), so a run reproduces on any
    device, then moved to ``mu``'s device.

    Args:
        mu: means (B, z_dim).
        log_sigma: log standard deviations (B, z_dim).
        generator: torch.Generator for ε.

    Returns:
        z (B, z_dim), differentiable with respect to ``mu`` and ``log_sigma``.

    Raises:
        ValueError: shapes differ.
    """
    if mu.shape != log_sigma.shape:
        raise ValueError(f"mu and log_sigma must have the same shape (B, z_dim), got {tuple(mu.shape)} "
                         f"and {tuple(log_sigma.shape)}")
    eps = torch.randn(tuple(mu.shape), generator=generator).to(device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(log_sigma) * eps


class ImageEncoder(nn.Module):
    """3D-VAE-IWGAN image encoder: an RGB view → the mean and log-std of a 200-d latent (Smith & Meger 2017).

    Five ``Conv2d(k=4, s=2, p=1)`` 3 → 32 → 64 → 128 → 256 → 400 halve the image each time
    (128² → 4², 256² → 8²); BatchNorm2d on all but the first (the DCGAN habit; the original also leaves its
    first layer un-normalised), LeakyReLU(0.2) everywhere; then global average pooling to a 400-vector and two
    linear heads, ``mu`` and ``log_sigma`` (200 each: the paper's "400-dimensional vector" is means +
    (log-)stds). The original used an AlexNet-like stack (11×11 s4, 5×5 s4, 5×5 s2, 5×5 s2, 8×8) on 256²
    renders and a tanh-bounded sigma head; here the stack is uniform so any power-of-two size ≥ 64 works, and
    the log-std head is unbounded (clamp in the loss if it drifts). 2,490,192 parameters with the defaults, at
    any image size (global pooling). Use :func:`reparameterize` and :func:`voxhelpers.losses.kl_divergence`
    on the two heads.

    Args:
        in_channels: image channels (3 for RGB renders).
        image_size: height = width of the input, a power of two ≥ 64 (the original: 256; ours: 128).
        z_dim: latent size.
        channels: widths of the convolutions; the last is the pooled feature size (400).

    Shapes:
        forward(img (B, in_channels, image_size, image_size), e.g. renders in [0, 1]) → (mu, log_sigma),
        each (B, z_dim).

    Raises:
        ValueError: ``image_size`` not a power of two ≥ 64, too many layers for it, or bad widths.
    """

    def __init__(self, in_channels: int = 3, image_size: int = 128, z_dim: int = 200,
                 channels: tuple[int, ...] = (32, 64, 128, 256, 400)):
        super().__init__()
        channels = tuple(int(c) for c in channels)
        if image_size < 64 or image_size & (image_size - 1):
            raise ValueError(f"image_size must be a power of two >= 64, got {image_size}")
        if not channels or min(channels) < 1 or 2 ** len(channels) > image_size:
            raise ValueError(f"channels must be 1..log2(image_size) positive widths, got {channels}")
        if in_channels < 1 or z_dim < 1:
            raise ValueError(f"in_channels and z_dim must be >= 1, got {in_channels} and {z_dim}")
        self.in_channels, self.image_size, self.z_dim = int(in_channels), int(image_size), int(z_dim)
        layers: list[nn.Module] = []
        in_ch = self.in_channels
        for i, out_ch in enumerate(channels):
            layers.append(nn.Conv2d(in_ch, out_ch, 4, 2, 1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(out_ch))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            in_ch = out_ch
        self.net = nn.Sequential(*layers)
        self.mu = nn.Linear(in_ch, self.z_dim)
        self.log_sigma = nn.Linear(in_ch, self.z_dim)

    def forward(self, img: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        expected = (self.in_channels, self.image_size, self.image_size)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(f"img must be (B, {', '.join(map(str, expected))}), got {tuple(img.shape)}")
        h = self.net(img).mean(dim=(2, 3))  # (B, 400): global average pooling
        return self.mu(h), self.log_sigma(h)  # (B, z_dim) each

    def sample(self, img: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Encode ``img`` and draw z = μ + exp(log σ)·ε (see :func:`reparameterize`); returns (B, z_dim)."""
        mu, log_sigma = self(img)
        return reparameterize(mu, log_sigma, generator)


class VAEIWGAN(nn.Module):
    """3D-VAE-IWGAN's image → voxel model: :class:`ImageEncoder` then :class:`IWGANGenerator` (Smith & Meger 2017).

    The shipped reconstruction model (the critic is needed for training only). ``forward`` decodes the encoder's
    mean μ (no sampling), the deterministic reconstruction evaluated in the paper's line of work;
    :meth:`ImageEncoder.sample` + ``generator`` give the stochastic one.

    Args:
        image_size: render size (power of two ≥ 64).
        z_dim: latent size shared by encoder and generator.
        in_channels: image channels (3).
        g_channels: generator widths (None: the paper's).

    Shapes:
        forward(img (B, in_channels, S, S) in [0, 1]) → (B, 1, 32, 32, 32) in [−1, 1] (tanh; occupancy via
        :func:`tanh_to_occupancy`).
    """

    def __init__(self, image_size: int = 128, z_dim: int = 200, in_channels: int = 3,
                 g_channels: tuple[int, ...] | None = None):
        super().__init__()
        self.encoder = ImageEncoder(in_channels, image_size, z_dim)
        self.generator = IWGANGenerator(z_dim, **({"channels": tuple(g_channels)} if g_channels else {}))
        self.z_dim, self.image_size, self.in_channels = int(z_dim), int(image_size), int(in_channels)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        mu, _ = self.encoder(img)
        return self.generator(mu)


def _widths(channels) -> dict:
    return {"channels": tuple(channels)} if channels else {}


#: how the 3D-IWGAN systems' networks are built from their configs (read by :func:`voxhelpers.nets.build_network`)
NETWORKS = {
    "iwgan": {
        "generator": lambda c: IWGANGenerator(c.z_dim, **_widths(c.g_channels)),
        "discriminator": lambda c: IWGANCritic(**_widths(c.d_channels)),
    },
    "vae_iwgan": {
        "generator": lambda c: VAEIWGAN(c.image_size, c.z_dim, 3, c.g_channels),
        "discriminator": lambda c: IWGANCritic(**_widths(c.d_channels)),
    },
}
