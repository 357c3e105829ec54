"""Voxel GAN networks: the conditional 3D GAN of the hybrid-loss seed (SPEC §1).

Seed: Va-un/Hybridized-Loss-Functions-for-3D-Conditional-GANs, a copy of cihanongun/3D-CGAN
("Paired 3D Model Generation with Conditional GANs", Öngün & Temizel, ECCV 2018 workshop).
"""

from __future__ import annotations

import torch
from torch import nn

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
    1 → 2 → 4 → 8 → 16 → 32; BatchNorm3d + ReLU after the first four, Sigmoid at the end.
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
            layers += [nn.ConvTranspose3d(in_ch, out_ch, 4, 2, 1), nn.BatchNorm3d(out_ch), nn.ReLU(inplace=True)]
            in_ch = out_ch
        layers += [nn.ConvTranspose3d(in_ch, 1, 4, 2, 1), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if z.ndim != 2 or z.shape[1] != self.z_dim:
            raise ValueError(f"z must be (B, {self.z_dim}), got {tuple(z.shape)}")
        code = condition_code(c.to(z.device), self.n_conditions, self.condition, z.dtype)
        if code.shape[0] != z.shape[0]:
            raise ValueError(f"got {z.shape[0]} latents but {code.shape[0]} conditions")
        x = torch.cat([z, code], dim=1)[:, :, None, None, None]  # (B, z+c, 1, 1, 1)
        return self.net(x)  # (B, 1, 32, 32, 32)


class CGANDiscriminator(nn.Module):
    """Conditional voxel discriminator: grid + constant condition plane(s) → one score per sample.

    Five ``Conv3d(k=4, s=2, p=1)``: (1 + c) → 32 → 64 → 128 → 256 → 1, spatial 32 → 16 → 8 → 4 → 2 → 1;
    BatchNorm3d + LeakyReLU(0.2) on the first four; Sigmoid output (the seed) or raw logits.
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
                 channels: tuple[int, ...] = (32, 64, 128, 256)):
        super().__init__()
        if output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {output!r}")
        self.n_conditions, self.condition, self.output = n_conditions, condition, output
        in_ch = 1 + _check_mode(condition, n_conditions)
        layers: list[nn.Module] = []
        for out_ch in channels:
            layers += [nn.Conv3d(in_ch, out_ch, 4, 2, 1), nn.BatchNorm3d(out_ch), nn.LeakyReLU(0.2, inplace=True)]
            in_ch = out_ch
        layers += [nn.Conv3d(in_ch, 1, 4, 2, 1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 1:
            raise ValueError(f"x must be (B, 1, D, H, W), got {tuple(x.shape)}")
        code = condition_code(c.to(x.device), self.n_conditions, self.condition, x.dtype)  # (B, k)
        if code.shape[0] != x.shape[0]:
            raise ValueError(f"got {x.shape[0]} grids but {code.shape[0]} conditions")
        planes = code[:, :, None, None, None].expand(-1, -1, *x.shape[2:])  # (B, k, D, H, W)
        logits = self.net(torch.cat([x, planes], dim=1)).reshape(x.shape[0])  # (B,)
        return torch.sigmoid(logits) if self.output == "probs" else logits

