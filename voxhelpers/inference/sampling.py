"""Sampling: generators to occupancy grids, reconstruction from images, views, latent interpolation."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


# --------------------------------------------------------------------------------------------------
# sampling
# --------------------------------------------------------------------------------------------------
@torch.no_grad()
def generate(G: nn.Module, z: torch.Tensor, condition: int | torch.Tensor = 0, batch_size: int = 100) -> torch.Tensor:
    """Occupancy probabilities G(z | c), in eval mode (BatchNorm running statistics), on the CPU.

    Args:
        G: a conditional generator (``z_dim`` attribute).
        z: latents (B, z_dim).
        condition: one index for all, or (B,) indices.
        batch_size: chunk size.

    Returns:
        float32 (B, 1, D, H, W) in [0, 1].

    An unconditional generator (no ``n_conditions`` attribute, e.g. 3D-IWGAN's tanh generator) is passed on to
    :func:`generate_unconditional`; it takes no condition (a non-zero ``condition`` raises ``ValueError``).
    """
    if getattr(G, "n_conditions", None) is None:
        if not (isinstance(condition, int) and condition == 0):
            raise ValueError("an unconditional generator (no n_conditions) takes no condition; leave condition=0")
        return generate_unconditional(G, z, batch_size)
    device = next(G.parameters()).device
    was_training = G.training
    G.eval()
    c = torch.as_tensor(condition).long()
    c = c.expand(len(z)) if c.ndim == 0 else c
    try:
        out = [G(z[i: i + batch_size].to(device), c[i: i + batch_size].to(device)).float().cpu()
               for i in range(0, len(z), batch_size)]
    finally:
        G.train(was_training)
    return check_finite_output(torch.cat(out))


def check_finite_output(probs: torch.Tensor) -> torch.Tensor:
    """Return a generator's output, or raise when it holds NaN / inf: thresholding would turn it into empty grids
    that score as perfectly consistent, so a broken weight file must fail here, not look perfect.

    Raises:
        FloatingPointError: naming how many values are not finite.
    """
    bad = ~torch.isfinite(probs)
    if bad.any():
        raise FloatingPointError(f"the generator's output has {int(bad.sum())} NaN/inf values of {probs.numel()}: "
                                 "its weights are broken (a NaN parameter?); nothing is evaluated")
    return probs


def generate_conditions(G: nn.Module, z: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """Every condition of the same latents: float32 (B, C, D, H, W), condition c at index c."""
    return torch.stack([generate(G, z, c, batch_size)[:, 0] for c in range(G.n_conditions)], dim=1)


@torch.no_grad()
def generate_unconditional(G: nn.Module, z: torch.Tensor, batch_size: int = 100) -> torch.Tensor:
    """Occupancy probabilities (G(z) + 1) / 2 of a tanh generator (3D-IWGAN, SPEC §2), eval mode, on the CPU.

    Args:
        G: an unconditional generator with a ``z_dim`` attribute whose output is in [−1, 1], e.g.
            :class:`voxhelpers.nets.IWGANGenerator`.
        z: latents (B, z_dim), B ≥ 1.
        batch_size: chunk size.

    Returns:
        float32 (B, 1, D, H, W) in [0, 1] (:func:`voxhelpers.nets.iwgan.tanh_to_occupancy`); threshold at 0.5.

    Raises:
        ValueError: ``z`` not (B, z_dim) with B ≥ 1.
    """
    from ..nets.iwgan import tanh_to_occupancy

    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] != G.z_dim:
        raise ValueError(f"z must be (B, {G.z_dim}) with B >= 1, got {tuple(z.shape)}")
    device = next(G.parameters()).device
    was_training = G.training
    G.eval()
    try:
        out = [tanh_to_occupancy(G(z[i: i + batch_size].to(device)).float().cpu())
               for i in range(0, len(z), batch_size)]
    finally:
        G.train(was_training)
    return check_finite_output(torch.cat(out))


def render_views(grids, n_views: int, seed: int, image_size: int = 128, up: str = "z",
                 elevation_range: tuple[float, float] = (-20.0, 40.0), device=None,
                 batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_views`` seeded random views of every grid (:func:`voxhelpers.ops.render.render_voxels`), object-major.

    Args:
        grids: (N, D, H, W) or (N, 1, D, H, W) binary.
        n_views: views per object, ≥ 1.
        seed: seed of the camera angles (the same seed gives the same views).
        image_size, up, elevation_range: as in :func:`voxhelpers.ops.render.render_voxels` / ``random_views``.
        device: where to render (default CPU); the images come back on the CPU.

    Returns:
        ``(images (N·n_views, 3, S, S) float32 in [0, 1], index (N·n_views,) long)``; ``index[k]`` is the object
        of view k (views of object i are rows i·n_views … i·n_views + n_views − 1).
    """
    from ..ops.render import random_views, render_voxels

    grids = torch.as_tensor(np.asarray(grids))
    if grids.ndim == 5:
        grids = grids[:, 0]
    if grids.ndim != 4 or len(grids) == 0:
        raise ValueError(f"grids must be a non-empty (N, D, H, W) set, got {tuple(grids.shape)}")
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, got {n_views}")
    index = torch.arange(len(grids)).repeat_interleave(n_views)
    az, el = random_views(len(index), torch.Generator().manual_seed(seed), elevation_range)
    device = torch.device(device or "cpu")
    out = [render_voxels(grids[index[i: i + batch_size]].to(device), az[i: i + batch_size], el[i: i + batch_size],
                         image_size, up=up).cpu() for i in range(0, len(index), batch_size)]
    return torch.cat(out), index


@torch.no_grad()


def reconstruct(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    """Occupancy probabilities (N, 32, 32, 32) of a :class:`voxhelpers.nets.VAEIWGAN` from renders (N, 3, S, S).

    Decodes the encoder's mean (deterministic), in eval mode, in batches on the model's device; CPU float32 out.

    Raises:
        ValueError: images of the wrong size or channel count (the encoder names what it expects).
    """
    from ..nets.iwgan import tanh_to_occupancy

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = [tanh_to_occupancy(model(images[i: i + batch_size].to(device)).float().cpu())[:, 0]
               for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 32, 32, 32)


def interpolate_latents(z0: torch.Tensor, z1: torch.Tensor, steps: int = 8, mode: str = "slerp") -> torch.Tensor:
    """Latents on the way from ``z0`` to ``z1`` (both ends included), for latent-space walks.

    ``"slerp"`` (spherical, White 2016 "Sampling generative networks"): keeps the norm typical of N(0, I) draws,
    so mid-points stay where the generator was trained; ``"linear"``: (1 − t)·z0 + t·z1, whose mid-points have a
    smaller norm. Computed in float64; (anti)parallel ends, where slerp is undefined, fall back to the line; the
    ends are exactly ``z0`` and ``z1``.

    Args:
        z0, z1: (z_dim,) latents.
        steps: number of points, ≥ 2.
        mode: ``"slerp"`` or ``"linear"``.

    Returns:
        (steps, z_dim) float32.

    Raises:
        ValueError: shapes differ or are not (z_dim,), steps < 2, an unknown mode.
    """
    z0, z1 = torch.as_tensor(z0, dtype=torch.float32), torch.as_tensor(z1, dtype=torch.float32)
    if z0.ndim != 1 or z0.shape != z1.shape:
        raise ValueError(f"z0 and z1 must both be (z_dim,), got {tuple(z0.shape)} and {tuple(z1.shape)}")
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (both ends), got {steps}")
    if mode not in ("slerp", "linear"):
        raise ValueError(f"mode must be 'slerp' or 'linear', got {mode!r}")
    t = torch.linspace(0, 1, steps, dtype=torch.float64)[:, None]
    a, b = z0.double(), z1.double()
    omega = torch.arccos((torch.dot(a, b) / (a.norm() * b.norm()).clamp_min(1e-300)).clamp(-1, 1))
    if mode == "linear" or float(torch.sin(omega)) < 1e-6:  # (anti)parallel ends: slerp degenerates to a line
        out = (1 - t) * a + t * b
    else:
        out = (torch.sin((1 - t) * omega) * a + torch.sin(t * omega) * b) / torch.sin(omega)
    out = out.float()
    out[0], out[-1] = z0, z1  # the ends exactly
    return out


def make_sampler(G: nn.Module, condition: int | None = None):
    """A callable ``(n, seed) → (n, D, H, W)`` occupancy in [0, 1] for a generator (z ~ N(0, I), seeded).

    ``condition=None`` for an unconditional tanh generator (3D-IWGAN), an index for a conditional cGAN.
    Used by :func:`voxhelpers.reports.compare_generators`.
    """
    def sample(n: int, seed: int) -> torch.Tensor:
        z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
        out = generate_unconditional(G, z) if condition is None else generate(G, z, condition)
        return out[:, 0]

    return sample


@torch.no_grad()
def encode(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The encoder's means μ (N, z_dim) of a :class:`voxhelpers.nets.VAEIWGAN` for renders (N, 3, S, S), eval mode,
    on the CPU."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        return model.encoder(images.to(device))[0].float().cpu()
    finally:
        model.train(was_training)
