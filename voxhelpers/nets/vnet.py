"""VNet for multi-organ segmentation (system 5, SPEC §5).

The layout of the seed (PrathamKumar125/3D-Segmentation-Model_VNET, Keras), itself after V-Net (Milletari, Navab &
Ahmadi, "V-Net: Fully Convolutional Neural Networks for Volumetric Medical Image Segmentation", 3DV 2016,
https://arxiv.org/abs/1606.04797): residual blocks of 5³ convolutions, 2³ stride-2 convolutions to go down, 2³
transposed convolutions to come up, skip connections by concatenation.

What differs from :class:`monai.networks.nets.VNet`: the dropout of the decoder is an argument (default 0; MONAI's
``UpTransition`` always applies a second dropout, 0.5 by default, to the skip connection — MONAI #6116), the norm
is a choice (batch or instance), the widths scale with one ``width`` multiplier, and the output is logits (the
losses of :mod:`voxhelpers.losses.segmentation` apply the softmax themselves).
"""

from __future__ import annotations

import math

import torch
from torch import nn

NORMS = ("batch", "instance")
ACTS = ("relu", "prelu", "elu")
#: the seed's channel widths at width 1: full resolution, then after each of the four downsamplings
BASE_WIDTHS = (16, 32, 64, 128, 256)
#: input sides must be multiples of this (four stride-2 downsamplings)
DIVISOR = 16


def _layers(spatial_dims: int):
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be one of (2, 3), got {spatial_dims!r}")
    if spatial_dims == 3:
        return nn.Conv3d, nn.ConvTranspose3d, nn.BatchNorm3d, nn.InstanceNorm3d
    return nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.InstanceNorm2d


def _norm(kind: str, spatial_dims: int, channels: int) -> nn.Module:
    _, _, batch, instance = _layers(spatial_dims)
    return batch(channels) if kind == "batch" else instance(channels, affine=True)


def _act(kind: str, channels: int) -> nn.Module:
    if kind == "prelu":
        return nn.PReLU(num_parameters=channels)  # one slope per channel, as in V-Net and MONAI
    return nn.ReLU(inplace=True) if kind == "relu" else nn.ELU(inplace=True)


class ConvNormAct(nn.Sequential):
    """A k³ convolution ("same" padding, no bias: the norm has one), then norm, then activation.

    Shapes:
        (B, in_channels, *S) → (B, out_channels, *S).
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, kernel_size: int, norm: str,
                 act: str):
        conv = _layers(spatial_dims)[0]
        super().__init__(
            conv(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            _norm(norm, spatial_dims, out_channels),
            _act(act, out_channels),
        )


class ResidualBlock(nn.Module):
    """The seed's ``conv_block``: two 5³ conv + norm (+ activation) with a residual add.

    ``y = act(norm(conv(act(norm(conv(x))))) + shortcut(x))`` — the activation after the add, as in ResNet and in
    V-Net's stages. ``shortcut`` is the identity when the widths match (the encoder), else a 1³ conv (the decoder,
    whose input is the concatenation of the upsampled features and the skip connection).

    Shapes:
        (B, in_channels, *S) → (B, out_channels, *S).
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, norm: str, act: str,
                 kernel_size: int = 5):
        super().__init__()
        conv = _layers(spatial_dims)[0]
        self.conv1 = ConvNormAct(spatial_dims, in_channels, out_channels, kernel_size, norm, act)
        self.conv2 = nn.Sequential(
            conv(out_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            _norm(norm, spatial_dims, out_channels),
        )
        self.shortcut = (nn.Identity() if in_channels == out_channels
                         else conv(in_channels, out_channels, 1, bias=False))
        self.act = _act(act, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class Down(nn.Module):
    """2³ stride-2 conv (halves every side, width × 2) + norm + act, dropout, then a residual block.

    Shapes:
        (B, C, *S) → (B, 2C, *S / 2).
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, norm: str, act: str, dropout: float):
        super().__init__()
        self.down = ConvNormAct(spatial_dims, in_channels, out_channels, 2, norm, act)
        self.down[0].stride = (2,) * spatial_dims
        self.down[0].padding = (0,) * spatial_dims
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.block = ResidualBlock(spatial_dims, out_channels, out_channels, norm, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.dropout(self.down(x)))


class Up(nn.Module):
    """2³ stride-2 transposed conv (doubles every side) + norm + act, concatenation with the skip connection,
    dropout, then a residual block back to the skip's width.

    Shapes:
        x (B, C, *S), skip (B, C / 2, *2S) → (B, C / 2, *2S).
    """

    def __init__(self, spatial_dims: int, in_channels: int, out_channels: int, norm: str, act: str, dropout: float):
        super().__init__()
        convt = _layers(spatial_dims)[1]
        self.up = nn.Sequential(
            convt(in_channels, out_channels, 2, stride=2, bias=False),
            _norm(norm, spatial_dims, out_channels),
            _act(act, out_channels),
        )
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.block = ResidualBlock(spatial_dims, 2 * out_channels, out_channels, norm, act)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(self.dropout(torch.cat([self.up(x), skip], dim=1)))


class VNet(nn.Module):
    """VNet of the seed (SPEC §5): 5³ residual blocks on five levels, logits out.

    Encoder: a 5³ conv + norm + act to ``w0`` (16 at width 1) at full resolution; four downsamplings
    (:class:`Down`: 2³ stride-2 conv, dropout ``dropout``, a :class:`ResidualBlock`) to ``w1..w4`` (32, 64, 128, 256);
    the last is the bottleneck. Decoder: four :class:`Up` (2³ transposed conv, concatenation with the encoder level of
    the same resolution, dropout ``dropout_up``, a residual block back to that level's width). Head: a 1³ conv to
    ``out_channels``, no softmax. Widths are ``max(1, round(16 · width)) · (1, 2, 4, 8, 16)``: width 0.25 →
    4-8-16-32-64, width 0.125 → 2-4-8-16-32.

    Parameters (3D, in 1, out 8, batch norm, ReLU): 30,666,328 at width 1 (the Keras seed reports 44.2 M and
    MONAI's VNet 45.6 M; the 5³ convs of the 256-wide bottleneck alone hold 16.4 M); 1,917,868 at width 0.25;
    479,878 at width 0.125. PReLU adds one slope per channel (+2,176 at width 1).

    Args:
        spatial_dims: 3 (volumes) or 2 (slices).
        in_channels: input channels (1 for CT).
        out_channels: number of classes, background included (8, or 5 for background + liver + kidneys + spleen).
        width: channel multiplier, > 0.
        dropout: dropout probability after each downsampling, in [0, 1) (the seed: 0.2).
        dropout_up: dropout probability on each decoder concatenation, in [0, 1) (default 0; MONAI hard-codes 0.5).
        norm: ``"batch"`` or ``"instance"`` (affine). In training a norm needs more than one value per channel at
            the bottleneck (spatial / 16): instance norm a side of 32 or more, batch norm B ≥ 2 for a 16³ input.
        act: ``"relu"`` (the seed), ``"prelu"`` (V-Net, one slope per channel) or ``"elu"`` (MONAI's default).

    Shapes:
        forward(x (B, in_channels, D, H, W) float, D, H, W multiples of 16) → logits (B, out_channels, D, H, W).

    Raises:
        ValueError: an unknown ``norm``/``act``/``spatial_dims`` (valid values listed), a width or dropout out of
            range; in forward, an input whose spatial size is not a multiple of 16, whose shape is not
            (B, in_channels, *spatial), or too small for the norm in training.
    """

    def __init__(self, spatial_dims: int = 3, in_channels: int = 1, out_channels: int = 8, width: float = 1.0,
                 dropout: float = 0.2, dropout_up: float = 0.0, norm: str = "batch", act: str = "relu"):
        super().__init__()
        _layers(spatial_dims)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
        if act not in ACTS:
            raise ValueError(f"act must be one of {ACTS}, got {act!r}")
        if not width > 0:
            raise ValueError(f"width must be > 0, got {width!r}")
        for name, p in (("dropout", dropout), ("dropout_up", dropout_up)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p!r}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"in_channels and out_channels must be >= 1, got {in_channels} and {out_channels}")
        self.spatial_dims, self.in_channels, self.out_channels = spatial_dims, in_channels, out_channels
        self.norm = norm
        base = max(1, round(BASE_WIDTHS[0] * width))
        w = [base * 2**k for k in range(len(BASE_WIDTHS))]
        self.widths = tuple(w)
        self.stem = ConvNormAct(spatial_dims, in_channels, w[0], 5, norm, act)
        self.downs = nn.ModuleList(Down(spatial_dims, w[k], w[k + 1], norm, act, dropout) for k in range(4))
        self.ups = nn.ModuleList(Up(spatial_dims, w[k + 1], w[k], norm, act, dropout_up) for k in reversed(range(4)))
        self.head = _layers(spatial_dims)[0](w[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = tuple(x.shape[2:])
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(f"VNet expects (B, {self.in_channels}, {', '.join('DHW'[-self.spatial_dims:])}), "
                             f"got {tuple(x.shape)}")
        if any(s % DIVISOR for s in spatial):
            raise ValueError(f"VNet needs every spatial side to be a multiple of {DIVISOR} (four stride-2 "
                             f"downsamplings); got spatial size {spatial}: pad or crop the input")
        bottleneck = math.prod(s // DIVISOR for s in spatial) * (x.shape[0] if self.norm == "batch" else 1)
        if self.training and bottleneck < 2:
            raise ValueError(f"{self.norm} norm needs more than one value per channel at the bottleneck (spatial / 16) "
                             f"in training: got batch {x.shape[0]} and spatial size {spatial}; use a larger patch"
                             + (" or batch" if self.norm == "batch" else ""))
        skips = [self.stem(x)]  # (B, w0, D, H, W)
        for down in self.downs:
            skips.append(down(skips[-1]))  # (B, w_k, D / 2^k, ...), k = 1..4
        y = skips.pop()  # bottleneck (B, w4, D / 16, ...)
        for up in self.ups:
            y = up(y, skips.pop())  # (B, w_k, D / 2^k, ...), k = 3..0
        return self.head(y)  # (B, out_channels, D, H, W) logits


def monai_peer(name: str, in_channels: int = 1, out_channels: int = 8, dropout: float = 0.2) -> nn.Module:
    """An outside peer from MONAI, trained identically to ours: ``"monai_vnet"`` (MONAI's ``VNet``: its own
    layout, ELU, dropout ``dropout`` after the downsamplings and 0.5 hard-coded in its up path, MONAI #6116) or
    ``"monai_unet"`` (a residual ``UNet``, 16-32-64-128-256, two residual units per level, instance norm)."""
    from monai.networks import nets

    if name == "monai_vnet":
        return nets.VNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, dropout_prob_down=dropout)
    if name == "monai_unet":
        return nets.UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels,
                         channels=(16, 32, 64, 128, 256), strides=(2, 2, 2, 2), num_res_units=2, norm="instance")
    raise ValueError(f"unknown MONAI peer {name!r}; expected 'monai_vnet' or 'monai_unet'")


def _from_config(cfg) -> nn.Module:
    network = getattr(cfg, "network", "vnet")
    in_channels = getattr(cfg, "in_channels", 1)
    out_channels = cfg.n_classes if hasattr(cfg, "n_classes") else cfg.out_channels
    if network != "vnet":
        return monai_peer(network, in_channels, out_channels, cfg.dropout)
    return VNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, width=cfg.width,
                dropout=cfg.dropout, norm=cfg.norm, act=getattr(cfg, "act", "relu"))


#: system → role → constructor; reads ``cfg.network`` (``vnet`` or a MONAI peer), ``cfg.n_classes`` (or
#: ``cfg.out_channels``), ``cfg.width``, ``cfg.dropout``, ``cfg.norm`` and, when the config has them,
#: ``cfg.in_channels`` (else 1) and ``cfg.act`` (else ``"relu"``).
NETWORKS = {"vnet": {"segmenter": _from_config}}
