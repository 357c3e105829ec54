"""The conditional voxel GAN's networks: :class:`CGANGenerator`, :class:`CGANDiscriminator` (+ :class:`MinibatchStd`)
— the conditional 3D GAN of the hybrid-loss seed (SPEC §1): Va-un/Hybridized-Loss-Functions-for-3D-Conditional-GANs,
a copy of cihanongun/3D-CGAN ("Paired 3D Model Generation with Conditional GANs", Öngün & Temizel, ECCV 2018
workshop). The 3D-IWGAN networks are in :mod:`voxhelpers.nets.iwgan`.
"""

from __future__ import annotations

import torch
from torch import nn

from .fast_conv3d import FastConv3d, FastConvTranspose3d

CONDITION_MODES = ("scalar", "onehot")
OUTPUT_KINDS = ("probs", "logits")


def _check_mode(condition: str, n_conditions: int) -> int:
    if condition not in CONDITION_MODES:
        raise ValueError(f"condition must be one of {CONDITION_MODES}, got {condition!r}")
    if n_conditions < 1:
        raise ValueError(f"n_conditions must be >= 1, got {n_conditions}")
    return 1 if condition == "scalar" else n_conditions


def condition_code(c: torch.Tensor, n_conditions: int, condition: str, dtype=torch.float32) -> torch.Tensor:
    """Encode condition indices (B,) as (B, 1) scalars (the seed: the index itself) or (B, N) one-hots.

    Raises:
        ValueError: an index outside [0, N).
    """
    c = torch.as_tensor(c).reshape(-1)
    if c.numel() and (int(c.min()) < 0 or int(c.max()) >= n_conditions):
        raise ValueError(f"condition indices must be in [0, {n_conditions}), got {c.tolist()[:8]}")
    if condition == "scalar":
        return c.to(dtype)[:, None]
    return nn.functional.one_hot(c.long(), n_conditions).to(dtype)


class CGANGenerator(nn.Module):
    """Conditional voxel generator: z (200) + condition → 32³ occupancy probabilities.

    Five ``ConvTranspose3d(k=4, s=2, p=1)``: (200 + c) → 256 → 128 → 64 → 32 → 1 channels, spatial
    1 → 2 → 4 → 8 → 16 → 32; BatchNorm3d + ReLU after the first four, Sigmoid at the end. The layers are
    :class:`~voxhelpers.nets.fast_conv3d.FastConvTranspose3d`: ``nn.ConvTranspose3d`` with exact CPU fast paths for the
    first (1³ input), second (2³ input) and last (one output channel) layer.
    6,049,185 parameters with the seed's scalar condition.

    Args:
        z_dim: latent size.
        n_conditions: number of conditions.
        condition: ``"scalar"`` (the seed: the index as one number) or ``"onehot"`` (N inputs).
        channels: widths of the four hidden layers.

    Shapes:
        forward(z (B, z_dim), c (B,) int in [0, N)) → (B, 1, 32, 32, 32) in [0, 1].
    """

    def __init__(self, z_dim: int = 200, n_conditions: int = 2, condition: str = "scalar",
                 channels: tuple[int, ...] = (256, 128, 64, 32)):
        super().__init__()
        self.z_dim, self.n_conditions, self.condition = z_dim, n_conditions, condition
        in_ch = z_dim + _check_mode(condition, n_conditions)
        layers: list[nn.Module] = []
        for out_ch in channels:
            layers += [FastConvTranspose3d(in_ch, out_ch, 4, 2, 1), nn.BatchNorm3d(out_ch), nn.ReLU(inplace=True)]
            in_ch = out_ch
        layers += [FastConvTranspose3d(in_ch, 1, 4, 2, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be (B, {self.z_dim}), got {tuple(z.shape)}")
        code = condition_code(c.to(z.device), self.n_conditions, self.condition, z.dtype)
        if code.shape[0] != z.shape[0]:
            raise ValueError(f"got {z.shape[0]} latents but {code.shape[0]} conditions")
        x = torch.cat([z, code], dim=1)[:, :, None, None, None]  # (B, z+c, 1, 1, 1)
        return self.net(x)  # (B, 1, 32, 32, 32)


class MinibatchStd(nn.Module):
    """Minibatch standard deviation (Karras et al. 2018, ProGAN §3): appends one channel holding, for each group of
    ``group_size`` samples, the mean over features and positions of the features' standard deviation across the
    group — D then sees how alike the grids of a batch are, and a generator drawing one shape for every z is told
    apart from the real set. The group is the largest size ≤ ``group_size`` that divides the batch (1: the channel
    is 0, as a batch of one has no spread).

    Shapes:
        forward(x (B, C, *spatial)) → (B, C + 1, *spatial).
    """

    def __init__(self, group_size: int = 4):
        super().__init__()
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.group_size = group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        g = next(k for k in range(min(self.group_size, b), 0, -1) if b % k == 0)
        y = x.float().reshape(g, b // g, *x.shape[1:])  # sample i is in group i % (b // g), as ProGAN
        std = (y.var(0, unbiased=False) + 1e-8).sqrt() if g > 1 else torch.zeros_like(y[0])
        stat = std.flatten(1).mean(1)  # (b // g,)
        plane = stat.repeat(g).to(x.dtype).reshape(b, 1, *([1] * (x.ndim - 2))).expand(b, 1, *x.shape[2:])
        return torch.cat([x, plane], 1)


class CGANDiscriminator(nn.Module):
    """Conditional voxel discriminator: grid + constant condition plane(s) → one score per sample.

    Five ``Conv3d(k=4, s=2, p=1)``: (1 + c) → 32 → 64 → 128 → 256 → 1, spatial 32 → 16 → 8 → 4 → 2 → 1;
    BatchNorm3d + LeakyReLU(0.2) on the first four (``norm="spectral"``: spectral normalisation of every layer's
    weight instead, no batch norm, as SN-GAN); Sigmoid output (the seed) or raw logits. The layers are
    :class:`~voxhelpers.nets.fast_conv3d.FastConv3d`: ``nn.Conv3d`` with exact CPU fast paths for the first (few input
    channels), fourth (4³ → 2³) and last (2³ → 1³). ``mbstd`` > 0 puts a :class:`MinibatchStd` (groups of that size)
    before the last layer, which then reads one more channel (not in the seed; ProGAN's remedy for mode collapse).
    2,774,433 parameters with the seed's scalar condition.

    Args:
        n_conditions: number of conditions.
        condition: ``"scalar"`` (one channel filled with the index) or ``"onehot"`` (N channels).
        output: ``"probs"`` (the seed's Sigmoid) or ``"logits"`` (numerically sound losses).
        channels: widths of the four hidden layers.

    Shapes:
        forward(x (B, 1, 32, 32, 32) in [0, 1], c (B,)) → (B,) probabilities or logits.
    """

    def __init__(self, n_conditions: int = 2, condition: str = "scalar", output: str = "probs",
                 channels: tuple[int, ...] = (32, 64, 128, 256), norm: str = "batch", mbstd: int = 0):
        super().__init__()
        if output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {output!r}")
        if norm not in ("batch", "spectral"):
            raise ValueError(f"norm must be 'batch' or 'spectral', got {norm!r}")
        self.n_conditions, self.condition, self.output = n_conditions, condition, output
        in_ch = 1 + _check_mode(condition, n_conditions)
        sn = nn.utils.parametrizations.spectral_norm if norm == "spectral" else (lambda m: m)
        layers: list[nn.Module] = []
        for out_ch in channels:
            # without batch norm the activation meets the convolution's own output: not in place (a fast path's
            # output may be a view autograd must not see modified)
            layers += [sn(FastConv3d(in_ch, out_ch, 4, 2, 1)),
                       nn.BatchNorm3d(out_ch) if norm == "batch" else nn.Identity(),
                       nn.LeakyReLU(0.2, inplace=norm == "batch")]
            in_ch = out_ch
        if mbstd:
            layers += [MinibatchStd(mbstd)]
        layers += [sn(FastConv3d(in_ch + (1 if mbstd else 0), 1, 4, 2, 1))]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 1:
            raise ValueError(f"x must be (B, 1, D, H, W), got {tuple(x.shape)}")
        code = condition_code(c.to(x.device), self.n_conditions, self.condition, x.dtype)  # (B, k)
        if code.shape[0] != x.shape[0]:
            raise ValueError(f"got {x.shape[0]} grids but {code.shape[0]} conditions")
        planes = code[:, :, None, None, None].expand(-1, -1, *x.shape[2:])  # (B, k, D, H, W)
        # the first layer appends the planes to x itself, in its own memory format, and computes no gradient for them
        logits = self.net[1:](self.net[0](x, extra=planes)).reshape(x.shape[0])  # (B,)
        return torch.sigmoid(logits) if self.output == "probs" else logits


#: how the cGAN's networks are built from its config (a :class:`voxhelpers.config.Config`): the one place,
#: read by :func:`voxhelpers.nets.build_network`. Roles: ``"generator"`` (the model shipped) and ``"discriminator"``.
NETWORKS = {
    "voxel_cgan": {
        "generator": lambda c: CGANGenerator(c.z_dim, c.n_conditions, c.condition),
        "discriminator": lambda c: CGANDiscriminator(c.n_conditions, c.condition, c.output,
                                                     norm=getattr(c, "d_norm", "batch"),
                                                     mbstd=getattr(c, "d_mbstd", 0)),
    },
}
