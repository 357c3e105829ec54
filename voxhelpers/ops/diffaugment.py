"""Differentiable augmentation of voxel grids before a discriminator (DiffAugment, Zhao et al., NeurIPS 2020, in 3D).

A GAN trained on 80 shapes lets its discriminator memorise them; DiffAugment shows D only augmented grids — real
and generated alike, each sample its own random draw — and back-propagates G's loss through the augmentation, so G
still learns the un-augmented shapes. The transforms here keep the meaning of the voxel cGAN's rotation
conditions (quarter turns in the spatial plane (0, 1), conditions 0–3):

* ``flip``: mirror along spatial axis 2, the axis of those turns (a mirror along it commutes with them), with
  probability p / 2;
* ``translate``: an integer shift of up to ``translate`` × the side along each axis, zeros shifted in (DiffAugment's
  1/8), with probability p;
* ``cutout``: a cube of ``cutout`` × the side (DiffAugment's 1/2), centred anywhere in the grid and clipped by its
  faces, set to 0, with probability p.

A translation or cutout drawn for a turned grid is as likely as for the unturned one (the ranges are symmetric), so
they commute with every condition in distribution.

Shapes:
    ``diff_augment(x (B, C, D, H, W), policy)`` → (B, C, D, H, W), same dtype and device, differentiable in ``x``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["AUGMENTATIONS", "diff_augment", "parse_policy"]

#: the transforms a policy may name, applied in this order
AUGMENTATIONS = ("flip", "translate", "cutout")


def parse_policy(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"none"`` → (); ``"translate+cutout"`` (or a sequence of names) → the names in :data:`AUGMENTATIONS` order.

    Raises:
        ValueError: an unknown or repeated name (the valid ones listed).
    """
    names = [] if spec in ("none", "", None) else (spec.split("+") if isinstance(spec, str) else list(spec))
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"augment must be 'none' or '+'-joined names from {AUGMENTATIONS}, each once, got {spec!r}")
    return tuple(n for n in AUGMENTATIONS if n in names)


def _draw(b: int, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """(b,) bool: which samples a transform applies to."""
    return torch.rand(b, generator=generator) < p


def _translate(x: torch.Tensor, fraction: float, on: torch.Tensor, generator) -> torch.Tensor:
    b, sizes = x.shape[0], x.shape[2:]
    out = x
    for axis, n in enumerate(sizes):
        m = int(round(fraction * n))
        shift = torch.randint(-m, m + 1, (b,), generator=generator) * on  # (B,), 0 where off
        src = torch.arange(n)[None, :] - shift[:, None]  # (B, n): output i reads input i − shift
        valid = (src >= 0) & (src < n)
        view = [b, 1, 1, 1, 1]
        view[2 + axis] = n
        index = src.clamp(0, n - 1).view(view).to(x.device).expand_as(out)
        out = out.gather(2 + axis, index) * valid.view(view).to(x.device, x.dtype)
    return out


def _cutout(x: torch.Tensor, fraction: float, on: torch.Tensor, generator) -> torch.Tensor:
    b, sizes = x.shape[0], x.shape[2:]
    inside = torch.ones(b, 1, 1, 1, 1, dtype=torch.bool)
    for axis, n in enumerate(sizes):
        half = int(round(fraction * n)) // 2
        centre = torch.randint(0, n, (b,), generator=generator)
        i = torch.arange(n)[None, :]
        view = [b, 1, 1, 1, 1]
        view[2 + axis] = n
        inside = inside & ((i >= centre[:, None] - half) & (i < centre[:, None] + half)).view(view)
    keep = ~(inside & on.view(b, 1, 1, 1, 1))
    return x * keep.to(x.device, x.dtype)


def diff_augment(x: torch.Tensor, policy: str | Sequence[str], generator: torch.Generator | None = None,
                 p: float = 1.0, translate: float = 0.125, cutout: float = 0.5) -> torch.Tensor:
    """The grids ``x`` with the policy's transforms (see the module docstring), each sample its own draw.

    Args:
        x: (B, C, D, H, W) float grids.
        policy: names from :data:`AUGMENTATIONS` (:func:`parse_policy`); ``"none"`` returns ``x`` itself.
        generator: CPU ``torch.Generator`` for the draws (a run's own, so a resumed run repeats them).
        p: probability each transform applies to a sample (``flip``: p / 2), in [0, 1].
        translate, cutout: the shift range and the cube's side as fractions of each side, in [0, 1].

    Raises:
        ValueError: ``x`` not 5-D float, a bad policy or fraction.
    """
    names = parse_policy(policy)
    if not names:
        return x
    if x.ndim != 5 or not x.is_floating_point():
        raise ValueError(f"grids must be float (B, C, D, H, W), got {x.dtype} {tuple(x.shape)}")
    if not (0 <= p <= 1 and 0 <= translate <= 1 and 0 <= cutout <= 1):
        raise ValueError(f"p, translate and cutout must be in [0, 1], got {p}, {translate}, {cutout}")
    b = x.shape[0]
    if "flip" in names:
        on = _draw(b, p / 2, generator).to(x.device).view(b, 1, 1, 1, 1)
        x = torch.where(on, x.flip(4), x)
    if "translate" in names:
        x = _translate(x, translate, _draw(b, p, generator).long(), generator)
    if "cutout" in names:
        x = _cutout(x, cutout, _draw(b, p, generator), generator)
    return x
