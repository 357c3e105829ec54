"""Networks of system 3 (X-ray → CT): a dual-path 2-D → 3-D generator and a conditional 3-D PatchGAN (SPEC §3).

After X2CT-GAN (Ying et al., CVPR 2019): one 2-D encoder per view; at every scale each view's feature map is
lifted into the volume (here by exact back-projection along the view's rays,
:func:`voxhelpers.ops.backprojection.backproject_parallel`, followed by a 1³ convolution), the two lifted maps are
fused by averaging, and the 3-D decoder concatenates that fusion at each of its levels (the skip connections).
Instance norm throughout, as X2CT-GAN. Volumes and X-rays follow the projector's conventions: volumes (B, 1, X, Y, Z)
in RAS, X-rays (B, 1, rows, cols) with rows superior → inferior.

Our addition (not in X2CT-GAN): a learned per-voxel prior, a logit volume added before the sigmoid and initialised
from the training set's mean CT (:meth:`XrayToCT.init_prior`). The decoder then learns the patient's departure from
the average anatomy instead of the anatomy itself: on 24 OpenKBP CTs at 32³ (no GAN, lr 1e-3, 200 steps, CPU) the
training MSE fell to 0.0055 with it and to 0.025 without it (the mean CT alone: 0.021).
"""

from __future__ import annotations

import torch
from torch import nn

VIEWS = ("pa", "lateral")


def _block2d(cin: int, cout: int, stride: int) -> nn.Sequential:
    k, p = (4, 1) if stride == 2 else (3, 1)
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, p, bias=False), nn.InstanceNorm2d(cout, affine=True),
                         nn.ReLU(inplace=True))


def _block3d(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, 3, 1, 1, bias=False), nn.InstanceNorm3d(cout, affine=True),
                         nn.ReLU(inplace=True))


class ViewEncoder(nn.Module):
    """A 2-D encoder: a 3² stem at full size, then ``levels`` stride-2 4² convolutions (width doubling, capped).

    Shapes:
        (B, 1, S, S) → [(B, w_0, S, S), (B, w_1, S/2, S/2), ..., (B, w_L, S/2^L, S/2^L)].
    """

    def __init__(self, widths: list[int]):
        super().__init__()
        self.stem = nn.Sequential(_block2d(1, widths[0], 1), _block2d(widths[0], widths[0], 1))
        self.downs = nn.ModuleList(nn.Sequential(_block2d(a, b, 2), _block2d(b, b, 1))
                                   for a, b in zip(widths[:-1], widths[1:], strict=True))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [self.stem(x)]
        for down in self.downs:
            feats.append(down(feats[-1]))
        return feats


class XrayToCT(nn.Module):
    """Two X-rays (PA, lateral) → a CT volume in [0, 1] (sigmoid output).

    Args:
        size: X-ray side = CT side, a multiple of 2^levels.
        base_channels: width of the finest level; doubles per level, capped at ``max_channels``.
        levels: number of stride-2 steps (the bottleneck is size / 2^levels per side).

    Shapes:
        forward(pa (B, 1, S, S), lateral (B, 1, S, S)) → (B, 1, S, S, S).
    """

    def __init__(self, size: int = 128, base_channels: int = 16, max_channels: int = 128, levels: int = 5,
                 prior: bool = True):
        super().__init__()
        if size % 2**levels:
            raise ValueError(f"size {size} must be a multiple of 2^levels = {2 ** levels}")
        self.size, self.levels = size, levels
        w = [min(base_channels * 2**k, max_channels) for k in range(levels + 1)]
        self.widths = tuple(w)
        self.encoders = nn.ModuleDict({v: ViewEncoder(w) for v in VIEWS})
        self.lifts = nn.ModuleDict({v: nn.ModuleList(nn.Conv3d(c, c, 1) for c in w) for v in VIEWS})
        self.bottleneck = nn.Sequential(_block3d(w[-1], w[-1]), _block3d(w[-1], w[-1]))
        self.ups = nn.ModuleList(nn.ConvTranspose3d(w[k + 1], w[k], 4, 2, 1) for k in reversed(range(levels)))
        self.blocks = nn.ModuleList(nn.Sequential(_block3d(2 * w[k], w[k]), _block3d(w[k], w[k]))
                                    for k in reversed(range(levels)))
        self.head = nn.Conv3d(w[0], 1, 1)
        # the learned prior (logits; 0 = grey until init_prior): a parameter, so it is trained, checkpointed, shipped
        self.prior = nn.Parameter(torch.zeros(1, 1, size, size, size)) if prior else None

    @torch.no_grad()
    def init_prior(self, mean_ct: torch.Tensor, eps: float = 0.01) -> None:
        """Set the prior to the logit of a mean CT (S, S, S) in [0, 1], clamped to [eps, 1 − eps]."""
        if self.prior is None:
            raise ValueError("this generator was built without a prior (prior=False)")
        mean_ct = torch.as_tensor(mean_ct, dtype=self.prior.dtype)
        if tuple(mean_ct.shape[-3:]) != (self.size,) * 3 or not torch.isfinite(mean_ct).all():
            raise ValueError(f"the mean CT must be finite, of shape {(self.size,) * 3}, got shape "
                             f"{tuple(mean_ct.shape)}" + ("" if torch.isfinite(mean_ct).all() else " with NaN or inf"))
        self.prior.copy_(torch.logit(mean_ct.reshape(self.prior.shape).clamp(eps, 1 - eps)))

    def _fused(self, feats: dict[str, list[torch.Tensor]], k: int) -> torch.Tensor:
        """The two views' level-k features lifted into the volume and averaged: (B, w_k, s, s, s)."""
        from ..ops.backprojection import backproject_parallel  # here: ops imports the data layer, which needs config

        lifted = [self.lifts[v][k](backproject_parallel(feats[v][k], feats[v][k].shape[-1], v, "RAS"))
                  for v in VIEWS]
        return 0.5 * (lifted[0] + lifted[1])

    def forward(self, pa: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        for name, x in (("pa", pa), ("lateral", lateral)):
            if x.ndim != 4 or x.shape[1] != 1 or tuple(x.shape[2:]) != (self.size, self.size):
                raise ValueError(f"{name} X-ray must be (B, 1, {self.size}, {self.size}), got {tuple(x.shape)}")
        if pa.shape[0] != lateral.shape[0]:
            raise ValueError(f"pa and lateral batches differ: {pa.shape[0]} vs {lateral.shape[0]}")
        feats = {"pa": self.encoders["pa"](pa), "lateral": self.encoders["lateral"](lateral)}
        y = self.bottleneck(self._fused(feats, self.levels))
        for i, k in enumerate(reversed(range(self.levels))):
            y = self.blocks[i](torch.cat([self.ups[i](y), self._fused(feats, k)], dim=1))
        logits = self.head(y)
        return torch.sigmoid(logits if self.prior is None else logits + self.prior)


class PatchDiscriminator3D(nn.Module):
    """Conditional 3-D PatchGAN: (CT, the two X-rays back-projected) → a grid of real/fake logits.

    k4 stride-2 convolutions (widths w, 2w, 4w), then a k4 stride-1 convolution and a k4 stride-1 head (X2CT-GAN's
    64 → 128 → 256 → 512 at w = 64); instance norm after all but the first; LeakyReLU 0.2.

    Shapes:
        forward(ct (B, 1, S, S, S), pa (B, 1, S, S), lateral (B, 1, S, S)) → (B, 1, ~S/8 - 2, ...) logits.
    """

    def __init__(self, channels: int = 64):
        super().__init__()
        w = [channels, 2 * channels, 4 * channels, 8 * channels]
        layers: list[nn.Module] = [nn.Conv3d(3, w[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for a, b, s in ((w[0], w[1], 2), (w[1], w[2], 2), (w[2], w[3], 1)):
            layers += [nn.Conv3d(a, b, 4, s, 1, bias=False), nn.InstanceNorm3d(b, affine=True),
                       nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv3d(w[3], 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, ct: torch.Tensor, pa: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        from ..ops.backprojection import backproject_parallel

        s = ct.shape[-1]
        cond = [backproject_parallel(x, s, v, "RAS") for v, x in (("pa", pa), ("lateral", lateral))]
        return self.net(torch.cat([ct, *cond], dim=1))


def _generator(cfg) -> XrayToCT:
    return XrayToCT(cfg.size, cfg.base_channels, cfg.max_channels, cfg.levels, getattr(cfg, "prior", True))


def _discriminator(cfg) -> PatchDiscriminator3D:
    return PatchDiscriminator3D(cfg.d_channels)


#: system → role → constructor; reads ``cfg.size``, ``cfg.base_channels``, ``cfg.max_channels``, ``cfg.levels``
#: and ``cfg.d_channels``
NETWORKS = {"xray_ct": {"generator": _generator, "discriminator": _discriminator}}
