"""Networks of system 4's conditional recurrent GAN (SPEC §4, seed 002) for treatment-stage sequences.

**CRGAN** (the seed's slides only; its critic diverged): noise + patient embedding + stage embedding per step, an
LSTM over the sequence of stages, and one DCGAN transposed-convolution decoder shared by every step
(512 → 256 → 128 → 64 → C, 4² → 64², Tanh). The critic scores one image with its patient and stage as two learned
input planes (the slides' "two embedding planes"), 64 → 128 → 256 → 512 → 1, and its output is **linear**: WGAN-GP
(Gulrajani et al. 2017) needs an unbounded critic, which the slides' Sigmoid was not. Layer norm (one group per
sample) instead of batch norm in the critic, as WGAN-GP advises: the gradient penalty is per sample, and batch norm
couples the samples of a batch.
"""

from __future__ import annotations

import torch
from torch import nn


def _widths(image_size: int, channels: int, max_channels: int) -> list[int]:
    """Widths of the 4² → image_size ladder, coarsest first: channels·2^k capped at max_channels (64² → 512…64)."""
    if image_size < 8 or image_size & (image_size - 1):
        raise ValueError(f"image_size must be a power of two ≥ 8 (4² doubled), got {image_size!r}")
    steps = image_size.bit_length() - 3  # 4 → image_size in `steps` doublings
    return [min(channels * 2**k, max_channels) for k in reversed(range(steps))]


def _check_index(idx: torch.Tensor, n: int, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    idx = torch.as_tensor(idx)
    if idx.dtype.is_floating_point or tuple(idx.shape) != shape:
        raise ValueError(f"{name} must be integer indices of shape {shape}, got {idx.dtype} {tuple(idx.shape)}")
    if idx.numel() and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"{name} indices must be in [0, {n}), got min {int(idx.min())}, max {int(idx.max())}")
    return idx.long()


class CRGANGenerator(nn.Module):
    """The CRGAN generator: (noise, patient, stages) → one image per stage, in [−1, 1].

    Per step t the LSTM reads cat(z_t, E_patient[patient], E_stage[stage_t]); its hidden state h_t, the memory of
    the stages so far, is decoded by one DCGAN stack shared by all steps: ConvTranspose2d(hidden → w_0, k4, s1, p0)
    to 4², then ConvTranspose2d(k4, s2, p1) halving the width per doubling (512 → 256 → 128 → 64 at 64²), batch
    norm and ReLU, and a last ConvTranspose2d(k4, s2, p1) to out_channels with Tanh. Steps are causal: step t sees
    stages 0..t only.

    Parameters at the defaults (64², 53 patients, 6 stages, grayscale): embeddings 53·32 + 6·32 = 1,888; LSTM
    4·256·(164 + 256) + 2·4·256 = 432,128; decoder 16·256·512 + 1,024 (BN) + 16·512·256 + 512 + 16·256·128 + 256
    + 16·128·64 + 128 + 16·64·1 + 1 = 4,852,609; total 5,286,625.

    Args:
        n_patients: number of patient identities (SOUL: 53).
        n_stages: number of treatment stages (SOUL: six, s1t1 … s3t2).
        z_dim: noise size (the slides' 100).
        embed_dim: size of each embedding.
        hidden_dim: LSTM hidden size.
        out_channels: image channels (1: en-face OCTA is grayscale; the slides' 3 was RGB).
        image_size: output side, a power of two ≥ 8 (default 64, the slides'; 128 adds one doubling).
        channels: width of the finest decoder layer; doubles per coarser layer up to ``max_channels``.
        max_channels: width cap.

    Shapes:
        forward(z (B, z_dim) — one noise for the whole sequence — or (B, T, z_dim) — one per step,
        patient (B,), stages (B, T) integer) → (B, T, out_channels, image_size, image_size) in [−1, 1].

    Raises:
        ValueError: a bad image_size; in forward, wrong shapes or indices outside [0, n).
    """

    def __init__(self, n_patients: int = 53, n_stages: int = 6, z_dim: int = 100, embed_dim: int = 32,
                 hidden_dim: int = 256, out_channels: int = 1, image_size: int = 64, channels: int = 64,
                 max_channels: int = 512):
        super().__init__()
        w = _widths(image_size, channels, max_channels)
        self.n_patients, self.n_stages, self.z_dim = n_patients, n_stages, z_dim
        self.out_channels, self.image_size = out_channels, image_size
        self.patient_embedding = nn.Embedding(n_patients, embed_dim)
        self.stage_embedding = nn.Embedding(n_stages, embed_dim)
        self.lstm = nn.LSTM(z_dim + 2 * embed_dim, hidden_dim, batch_first=True)
        layers: list[nn.Module] = [nn.ConvTranspose2d(hidden_dim, w[0], 4, 1, 0, bias=False), nn.BatchNorm2d(w[0]),
                                   nn.ReLU(inplace=True)]
        for a, b in zip(w[:-1], w[1:], strict=True):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(w[-1], out_channels, 4, 2, 1), nn.Tanh()]
        self.decoder = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, patient: torch.Tensor, stages: torch.Tensor) -> torch.Tensor:
        stages = torch.as_tensor(stages)
        if stages.ndim != 2:
            raise ValueError(f"stages must be (B, T) integer indices, got shape {tuple(stages.shape)}")
        b, t = stages.shape
        stages = _check_index(stages, self.n_stages, "stages", (b, t)).to(z.device)
        patient = _check_index(patient, self.n_patients, "patient", (b,)).to(z.device)
        if z.shape == (b, self.z_dim):
            z = z[:, None].expand(b, t, self.z_dim)  # one noise for the sequence
        elif z.shape != (b, t, self.z_dim):
            raise ValueError(f"z must be (B, {self.z_dim}) or (B, T, {self.z_dim}) with (B, T) = {(b, t)} from "
                             f"stages, got {tuple(z.shape)}")
        steps = torch.cat([z, self.patient_embedding(patient)[:, None].expand(b, t, -1),
                           self.stage_embedding(stages)], dim=-1)  # (B, T, z_dim + 2·embed_dim)
        h, _ = self.lstm(steps)  # (B, T, hidden)
        x = self.decoder(h.reshape(b * t, -1, 1, 1))  # (B·T, C, S, S)
        return x.reshape(b, t, *x.shape[1:])  # (B, T, C, S, S)


class CRGANCritic(nn.Module):
    """The CRGAN critic: one image with its patient and stage → one unbounded score (WGAN-GP).

    The patient and the stage each select a learned image_size² plane (the slides' two embedding planes), stacked
    on the image's channels; then Conv2d(k4, s2, p1) 64 → 128 → 256 → 512 (at 64²; one more capped layer per
    doubling) with layer norm (GroupNorm with one group, not on the first) and LeakyReLU 0.2, and a linear
    Conv2d(k4, s1, p0) head to one score: 4² → 1², no Sigmoid.

    Parameters at the defaults (64², 53 patients, 6 stages, grayscale): planes (53 + 6)·4,096 = 241,664; convs
    16·3·64 + 64 = 3,136, 16·64·128 + 256 = 131,328, 16·128·256 + 512 = 524,800, 16·256·512 + 1,024 = 2,098,176,
    16·512 + 1 = 8,193; total 3,007,297.

    For WGAN-GP score frames, one sample each: :func:`flatten_sequence` turns (B, T, C, S, S) sequences into
    frames, and ``functools.partial(critic, patient=p, stage=s)`` is the one-argument critic that
    :func:`voxhelpers.losses.gradient_penalty` takes.

    Args:
        n_patients, n_stages, in_channels, image_size, channels, max_channels: as :class:`CRGANGenerator`
            (``in_channels`` is its ``out_channels``).

    Shapes:
        forward(x (N, in_channels, S, S), patient (N,), stage (N,)) → (N,) unbounded scores.

    Raises:
        ValueError: a bad image_size; in forward, wrong shapes or indices outside [0, n).
    """

    def __init__(self, n_patients: int = 53, n_stages: int = 6, in_channels: int = 1, image_size: int = 64,
                 channels: int = 64, max_channels: int = 512):
        super().__init__()
        w = list(reversed(_widths(image_size, channels, max_channels)))  # finest first: 64, 128, 256, 512
        self.n_patients, self.n_stages = n_patients, n_stages
        self.in_channels, self.image_size = in_channels, image_size
        self.patient_planes = nn.Embedding(n_patients, image_size * image_size)
        self.stage_planes = nn.Embedding(n_stages, image_size * image_size)
        layers: list[nn.Module] = [nn.Conv2d(in_channels + 2, w[0], 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        for a, b in zip(w[:-1], w[1:], strict=True):
            layers += [nn.Conv2d(a, b, 4, 2, 1, bias=False), nn.GroupNorm(1, b), nn.LeakyReLU(0.2, inplace=True)]
        layers.append(nn.Conv2d(w[-1], 1, 4, 1, 0))  # 4² → 1²: the linear score
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, patient: torch.Tensor, stage: torch.Tensor) -> torch.Tensor:
        s = self.image_size
        if x.ndim != 4 or tuple(x.shape[1:]) != (self.in_channels, s, s):
            raise ValueError(f"x must be frames (N, {self.in_channels}, {s}, {s}) (flatten_sequence turns "
                             f"(B, T, C, S, S) into frames), got {tuple(x.shape)}")
        n = x.shape[0]
        patient = _check_index(patient, self.n_patients, "patient", (n,)).to(x.device)
        stage = _check_index(stage, self.n_stages, "stage", (n,)).to(x.device)
        planes = torch.stack([self.patient_planes(patient), self.stage_planes(stage)], dim=1)  # (N, 2, S²)
        return self.net(torch.cat([x, planes.reshape(n, 2, s, s).to(x.dtype)], dim=1)).reshape(n)  # (N,)


def flatten_sequence(images: torch.Tensor, patient: torch.Tensor,
                     stages: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sequences → frames for :class:`CRGANCritic`: (B, T, C, S, S), (B,), (B, T) → (B·T, C, S, S), (B·T,), (B·T,).

    Raises:
        ValueError: images not 5-D, or patient / stages not matching its (B, T).
    """
    if images.ndim != 5:
        raise ValueError(f"images must be sequences (B, T, C, S, S), got {tuple(images.shape)}")
    b, t = images.shape[:2]
    patient, stages = torch.as_tensor(patient), torch.as_tensor(stages)
    if tuple(patient.shape) != (b,) or tuple(stages.shape) != (b, t):
        raise ValueError(f"patient must be ({b},) and stages ({b}, {t}) for images {tuple(images.shape)}, got "
                         f"{tuple(patient.shape)} and {tuple(stages.shape)}")
    return images.flatten(0, 1), patient.repeat_interleave(t), stages.flatten()


def _crgan_kwargs(cfg) -> dict:
    return {"n_patients": cfg.n_patients, "n_stages": cfg.n_stages, "image_size": getattr(cfg, "image_size", 64),
            "max_channels": getattr(cfg, "max_channels", 512)}


def _crgan_generator(cfg) -> CRGANGenerator:
    return CRGANGenerator(z_dim=getattr(cfg, "z_dim", 100), embed_dim=getattr(cfg, "embed_dim", 32),
                          hidden_dim=getattr(cfg, "hidden_dim", 256), out_channels=getattr(cfg, "image_channels", 1),
                          channels=getattr(cfg, "g_channels", 64), **_crgan_kwargs(cfg))


def _crgan_critic(cfg) -> CRGANCritic:
    return CRGANCritic(in_channels=getattr(cfg, "image_channels", 1), channels=getattr(cfg, "d_channels", 64),
                       **_crgan_kwargs(cfg))


#: system → role → constructor. The CRGAN reads ``cfg.n_patients``, ``cfg.n_stages`` and, when present,
#: ``image_size``, ``image_channels``, ``z_dim``, ``embed_dim``, ``hidden_dim``, ``g_channels``, ``d_channels``,
#: ``max_channels``. Its ``"discriminator"`` is its critic.
NETWORKS = {
    "crgan": {"generator": _crgan_generator, "discriminator": _crgan_critic},
}
