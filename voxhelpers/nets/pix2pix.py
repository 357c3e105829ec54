"""Networks of system 4's Pix2Pix (SPEC §4, seed 002): the vessel-mask U-Net and PatchGAN, and MONAI's UNet as
the outside peer.

**Pix2Pix** (Isola et al., CVPR 2017, https://arxiv.org/abs/1611.07004), laid out as the seed's notebook
(``Pranish-37/Pix2Pix-and-CR-Gan-Model``, ``Code/only label generator code.ipynb``): a U-Net of six k4 s2 p1
convolutions 64-128-256-512-512-512 (ReLU; batch norm on all but the first; 4² bottleneck at 256²), five k4 s2 p1
transposed convolutions with the encoder's features concatenated (batch norm, dropout 0.5 on the first two, ReLU)
and a last transposed convolution to one channel with Tanh — 29,244,417 parameters with an RGB input. Its PatchGAN
reads cat(image, mask): 64-128-256 (k4 s2), 512 (k4 s1), 1 (k4 s1), batch norm on all but the first, LeakyReLU 0.2
→ a 30 × 30 map at 256², each cell seeing a 70 × 70 patch. The seed ends it in a Sigmoid and trains it with BCE;
here the output is logits by default (:func:`voxhelpers.losses.adversarial_loss` ``"vanilla"`` is the same BCE,
computed stably, and ``"lsgan"`` — pix2pix's maintainers' advice for binary targets — needs the raw score);
``output="probs"`` restores the Sigmoid. Both networks take one- or three-channel images and give one-channel masks.

The CRGAN of the same seed is in :mod:`voxhelpers.nets.crgan`.
"""

from __future__ import annotations

import torch
from torch import nn

from ..losses.hybrid import OUTPUT_KINDS

#: the seed's U-Net widths: six encoder convolutions, 256² → 4² at the bottleneck
SEED_CHANNELS = (64, 128, 256, 512, 512, 512)
#: image channels the networks accept: grayscale (OCTA) or RGB (fundus photographs)
IMAGE_CHANNELS = (1, 3)


def _check_image_channels(in_channels: int) -> None:
    if in_channels not in IMAGE_CHANNELS:
        raise ValueError(f"in_channels must be 1 (grayscale, e.g. OCTA) or 3 (RGB, e.g. fundus), got {in_channels!r}")


def _check_image(x: torch.Tensor, name: str, channels: int) -> None:
    """A clear error for the channel mismatch pix2pix users hit (junyanz #215, #1114)."""
    if x.ndim != 4:
        raise ValueError(f"{name} must be (B, {channels}, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] != channels:
        hint = {1: " (a grayscale image; build with in_channels=1 or convert it to RGB)",
                3: " (an RGB image; build with in_channels=3 or convert it to grayscale)"}.get(int(x.shape[1]), "")
        raise ValueError(f"{name} must have {channels} channel(s), (B, {channels}, H, W); got {x.shape[1]} "
                         f"channel(s){hint if name == 'image' else ''}, shape {tuple(x.shape)}")


# --------------------------------------------------------------------------------------------------
# Pix2Pix
# --------------------------------------------------------------------------------------------------
class Pix2PixGenerator(nn.Module):
    """The seed's Pix2Pix U-Net: an image → a one-channel vessel mask in [−1, 1] (Tanh).

    Encoder: ``len(channels)`` blocks Conv2d(k4, s2, p1) → BatchNorm (not on the first) → ReLU. Decoder: one block
    per encoder level but the last, ConvTranspose2d(k4, s2, p1) → BatchNorm → Dropout (the first ``dropout_blocks``)
    → ReLU, each after the first reading cat(previous, the encoder's feature of the same size); then
    ConvTranspose2d(2·channels[0] → out_channels, k4, s2, p1) on cat(last, first encoder feature) and Tanh.
    The convolutions keep their bias before batch norm, as the seed's (redundant but counted).

    Parameters with the seed's widths (conv weights 16·c_in·c_out + bias c_out, batch norm 2·c_out):
    encoder 3,136 (RGB; 1,088 grayscale) + 131,456 + 525,056 + 2,098,688 + 2 × 4,195,840 = 11,150,016 (RGB);
    decoder 4,195,840 (512→512) + 8,390,144 (1024→512) + 4,195,072 (1024→256) + 1,048,960 (512→128)
    + 262,336 (256→64) + 2,049 (128→1) = 18,094,401; total 29,244,417 (RGB), 29,242,369 (grayscale).

    Args:
        in_channels: 1 (grayscale OCTA) or 3 (RGB fundus; the seed's ``convert("RGB")``).
        out_channels: 1 (a vessel mask); anything else is refused.
        channels: encoder widths, finest first; their number is the depth (the seed's six: 256² → 4²).
        dropout: dropout probability of the first ``dropout_blocks`` decoder blocks (the seed's 0.5; pix2pix's noise).
        dropout_blocks: how many decoder blocks, from the bottleneck, have dropout (the seed's 2).

    Shapes:
        forward(x (B, in_channels, H, W)) → (B, 1, H, W) in [−1, 1]; H and W multiples of 2^len(channels) (the
        mask is (output + 1) / 2).

    Raises:
        ValueError: in_channels not 1 or 3, out_channels not 1, fewer than two levels, a dropout outside [0, 1);
            in forward, the wrong channel count or rank, or a side that is not a multiple of 2^depth.
    """

    def __init__(self, in_channels: int = 3, out_channels: int = 1, channels: tuple[int, ...] = SEED_CHANNELS,
                 dropout: float = 0.5, dropout_blocks: int = 2):
        super().__init__()
        _check_image_channels(in_channels)
        if out_channels != 1:
            raise ValueError(f"out_channels must be 1 (a one-channel vessel mask), got {out_channels!r}")
        channels = tuple(int(c) for c in channels)
        if len(channels) < 2:
            raise ValueError(f"channels needs at least two levels, got {channels}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.in_channels, self.out_channels, self.channels = in_channels, out_channels, channels
        self.depth = len(channels)
        self.encoders = nn.ModuleList()
        cin = in_channels
        for k, c in enumerate(channels):
            layers = [nn.Conv2d(cin, c, 4, 2, 1)] + ([nn.BatchNorm2d(c)] if k else []) + [nn.ReLU(inplace=True)]
            self.encoders.append(nn.Sequential(*layers))
            cin = c
        self.decoders = nn.ModuleList()
        for j in range(self.depth - 1):  # decoder j: (c_{L-1} or 2·c_{L-1-j}) → c_{L-2-j}, size doubling
            cin = channels[-1] if j == 0 else 2 * channels[-1 - j]
            cout = channels[-2 - j]
            layers = [nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout)]
            if j < dropout_blocks and dropout > 0:
                layers.append(nn.Dropout(dropout))
            self.decoders.append(nn.Sequential(*layers, nn.ReLU(inplace=True)))
        self.head = nn.Sequential(nn.ConvTranspose2d(2 * channels[0], out_channels, 4, 2, 1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._features(x))  # (B, 1, H, W) in [−1, 1]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The head's pre-Tanh output u (B, 1, H, W): forward = tanh(u), and the mask probability
        (forward + 1) / 2 = σ(2u), so 2u are its logits (a BCE on them does not saturate as Tanh does)."""
        return self.head[0](self._features(x))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """What the head reads: cat(last decoder output, first encoder feature), (B, 2·channels[0], H/2, W/2)."""
        _check_image(x, "image", self.in_channels)
        divisor = 2**self.depth
        h, w = x.shape[-2:]
        if h % divisor or w % divisor:
            raise ValueError(f"image sides must be multiples of 2^{self.depth} = {divisor} (the U-Net halves them "
                             f"{self.depth} times), got {h}×{w}: resize or crop, e.g. to 256×256")
        if self.training and x.shape[0] * (h // divisor) * (w // divisor) < 2:
            raise ValueError(f"batch norm at the {h // divisor}×{w // divisor} bottleneck needs more than one value "
                             f"per channel in training: got batch {x.shape[0]}; use a larger image or batch")
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)  # (B, c_k, H / 2^(k+1), W / 2^(k+1))
        y = self.decoders[0](skips.pop())  # (B, c_{L-2}, H / 2^(L-1), ...)
        for dec in self.decoders[1:]:
            y = dec(torch.cat([y, skips.pop()], dim=1))  # doubles the size
        return torch.cat([y, skips.pop()], dim=1)


class PatchDiscriminator(nn.Module):
    """The seed's conditional PatchGAN: cat(image, mask) → a grid of real/fake scores, one per 70 × 70 patch.

    Conv2d(k4, s2, p1) widths w, 2w, 4w, then Conv2d(k4, s1, p1) to 8w and a Conv2d(k4, s1, p1) head to 1;
    batch norm on all but the first and the head, LeakyReLU 0.2 (w = 64: the seed's 64-128-256-512-1). Receptive
    field 70 × 70 (from the head back: 4, 4 + 3 = 7, then ×2 + 2 three times: 16, 34, 70); grid cell (i, j)
    sees input rows 8i − 23 … 8i + 46 and columns 8j − 23 … 8j + 46 (zero padding outside).

    Parameters at w = 64 (conv 16·c_in·c_out + bias, batch norm 2·c_out): 4,160 (4 inputs: RGB + mask; 2,112 with
    a grayscale image) + 131,456 + 525,056 + 2,098,688 + 8,193 = 2,767,553 (RGB), 2,765,505 (grayscale).

    Args:
        in_channels: image channels, 1 or 3 (the mask adds one).
        channels: w, the first layer's width.
        output: ``"logits"`` (default; for ``adversarial_loss`` ``"vanilla"`` — the seed's BCE, stably — or
            ``"lsgan"``) or ``"probs"`` (the seed's Sigmoid).

    Shapes:
        forward(image (B, in_channels, H, W), mask (B, 1, H, W)) → (B, 1, ⌊⌊⌊H/2⌋/2⌋/2⌋ − 2, ...): 30 × 30 at
        256², H and W ≥ 24.

    Raises:
        ValueError: in_channels not 1 or 3, an unknown output; in forward, wrong channels, sizes that differ
            between image and mask, or sides under 24.
    """

    #: rows (and columns) of input each output cell sees
    receptive_field = 70
    #: input pixels between neighbouring output cells
    stride = 8

    def __init__(self, in_channels: int = 3, channels: int = 64, output: str = "logits"):
        super().__init__()
        _check_image_channels(in_channels)
        if output not in OUTPUT_KINDS:
            raise ValueError(f"output must be one of {OUTPUT_KINDS}, got {output!r}")
        self.in_channels, self.output = in_channels, output
        w = [channels, 2 * channels, 4 * channels, 8 * channels]
        layers: list[nn.Module] = [nn.Conv2d(in_channels + 1, w[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for a, b, s in ((w[0], w[1], 2), (w[1], w[2], 2), (w[2], w[3], 1)):
            layers += [nn.Conv2d(a, b, 4, s, 1), nn.BatchNorm2d(b), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(w[3], 1, 4, 1, 1))
        if output == "probs":
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        _check_image(image, "image", self.in_channels)
        _check_image(mask, "mask", 1)
        if image.shape[0] != mask.shape[0] or image.shape[-2:] != mask.shape[-2:]:
            raise ValueError(f"image and mask must have the same batch and size, got {tuple(image.shape)} and "
                             f"{tuple(mask.shape)}")
        if min(image.shape[-2:]) < 24:
            raise ValueError(f"the PatchGAN needs sides of at least 24 pixels (a grid of one cell), got "
                             f"{tuple(image.shape[-2:])}")
        return self.net(torch.cat([image, mask.to(image.dtype)], dim=1))  # (B, 1, h, w)


# --------------------------------------------------------------------------------------------------
# build_network
# --------------------------------------------------------------------------------------------------
class MonaiUNet2D(nn.Module):
    """MONAI's ``UNet`` (2D, two residual units per level, batch norm, strided 2 downs) with a Tanh head: the outside
    peer of the Pix2Pix U-Net, trained on the same losses against masks in [−1, 1].

    Args:
        in_channels: 1 or 3; channels: encoder widths, finest first (the Pix2Pix config's ``channels``).
    """

    def __init__(self, in_channels: int = 1, channels: tuple[int, ...] = (32, 64, 128, 256, 256, 256)):
        super().__init__()
        from monai.networks.nets import UNet

        _check_image_channels(in_channels)
        self.in_channels = in_channels
        self.net = UNet(spatial_dims=2, in_channels=in_channels, out_channels=1, channels=tuple(channels),
                        strides=(2,) * (len(channels) - 1), num_res_units=2, norm="batch")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [−1, 1] → (B, 1, H, W) in (−1, 1)."""
        return torch.tanh(self.logits(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The pre-Tanh output u (see :meth:`Pix2PixGenerator.logits`)."""
        _check_image(x, "image", self.in_channels)
        return self.net(x)


def _network_channels(cfg) -> int:
    """The channels a Pix2Pix config's networks see (``network_channels``: 1 after an enhancement to one channel)."""
    return getattr(cfg, "network_channels", cfg.in_channels)


def _pix2pix_generator(cfg) -> nn.Module:
    if getattr(cfg, "network", "pix2pix") == "monai_unet":
        return MonaiUNet2D(_network_channels(cfg), tuple(getattr(cfg, "channels", SEED_CHANNELS)))
    return Pix2PixGenerator(_network_channels(cfg), 1, tuple(getattr(cfg, "channels", SEED_CHANNELS)),
                            getattr(cfg, "dropout", 0.5), getattr(cfg, "dropout_blocks", 2))


def _pix2pix_discriminator(cfg) -> PatchDiscriminator:
    return PatchDiscriminator(_network_channels(cfg), getattr(cfg, "d_channels", 64), getattr(cfg, "output", "logits"))


#: system → role → constructor. Pix2Pix reads ``cfg.network_channels`` (else ``in_channels``) and, when present,
#: ``network`` (``pix2pix`` or ``monai_unet``: :class:`MonaiUNet2D`), ``channels``, ``dropout``,
#: ``dropout_blocks``, ``d_channels``, ``output`` (else the seed's).
NETWORKS = {
    "pix2pix": {"generator": _pix2pix_generator, "discriminator": _pix2pix_discriminator},
}
