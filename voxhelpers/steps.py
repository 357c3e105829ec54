"""One update function per system, written like the paper's algorithm box.

Each returns a dict of floats with the same keys everywhere it can (``loss_d``, ``loss_g``, ``loss_gp``,
``loss_rec``, ``loss_proj``, plus system-specific ones such as ``loss_pair`` and ``acc_d``).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .losses import discriminator_accuracy, hybrid_loss
from .transforms import condition_rotation


def autocast_for(device: torch.device | str):
    """bf16 autocast on CUDA (where it pays); a no-op context on CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sample_z(n: int, z_dim: int, generator: torch.Generator | None, device) -> torch.Tensor:
    """z ~ N(0, I), (n, z_dim), drawn on the CPU generator (so runs reproduce on any device), moved to device."""
    return torch.randn(n, z_dim, generator=generator).to(device)


def voxel_cgan_step(G: nn.Module, D: nn.Module, opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer,
                    real: torch.Tensor, gate: dict, loss: str = "bce_bcewithlogits", variant: str = "seed",
                    d_acc_gate: float = 0.95, pairing: bool = True,
                    generator: torch.Generator | None = None) -> dict[str, float]:
    """One batch of the hybrid-loss conditional voxel GAN (seed 000, SPEC §1).

    For each condition c: a D step on real grids of condition c against G(z|c) — skipped when D's
    accuracy on the previous batch (the soft accuracy of 3D-CGAN, averaged over the conditions) was
    ≥ ``d_acc_gate`` — then a G step with
    ℓ(D(G(z|c)|c), 1). Then the pairing G step: the mean over conditions of G(z|c) turned back by the
    inverse of condition c's rotation (per sample, spatial axes only — the seed rotated over the batch
    axis) is judged by D as condition 0, which makes all conditions draw the same object.

    Args:
        G, D: generator and discriminator (``D.output`` tells probabilities from logits).
        opt_g, opt_d: their optimizers.
        real: real grids (B, C, 1, D, H, W) in {0, 1}, condition c at index c.
        gate: ``{"acc": float}``, D's accuracy on the previous batch, updated in place (start with 0).
        loss: a name from :data:`voxhelpers.losses.HYBRID_LOSSES`.
        variant: ``"seed"`` or ``"sound"`` (see :func:`voxhelpers.losses.hybrid_loss`).
        d_acc_gate: the seed's 0.95.
        pairing: run the pairing step.
        generator: torch.Generator for z.

    Returns:
        ``loss_d`` and ``loss_g`` (means over conditions), ``loss_pair``, ``acc_d`` (mean over conditions),
        ``d_steps`` (D updates made).
    """
    if real.ndim != 6 or real.shape[2] != 1:
        raise ValueError(f"real must be (B, C, 1, D, H, W), got {tuple(real.shape)}")
    B, C = real.shape[:2]
    train_d = gate.get("acc", 0.0) < d_acc_gate  # decided on the previous batch, for every condition
    device, kind, amp = real.device, D.output, autocast_for(real.device)
    ell = lambda out, t: hybrid_loss(out.float(), t, loss, kind, variant)  # noqa: E731
    fmt = next(G.parameters()).is_contiguous(memory_format=torch.channels_last_3d)
    fmt = torch.channels_last_3d if fmt and next(G.parameters()).ndim == 5 else torch.contiguous_format
    out = {"loss_d": 0.0, "loss_g": 0.0, "acc_d": 0.0, "d_steps": 0.0}
    for c in range(C):
        cond = torch.full((B,), c, device=device, dtype=torch.long)
        x_real = real[:, c].contiguous(memory_format=fmt)
        # --- D step: ℓ(D(x|c), 1) + ℓ(D(G(z|c)|c), 0), gated on last batch's accuracy
        with torch.no_grad(), amp:
            fake = G(sample_z(B, G.z_dim, generator, device), cond)
        with amp:
            d_real, d_fake = D(x_real, cond), D(fake.detach(), cond)
        loss_d = ell(d_real, 1.0) + ell(d_fake, 0.0)
        acc = discriminator_accuracy(d_real.detach().float(), d_fake.detach().float(), kind)
        if train_d:
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            out["d_steps"] += 1
        # --- G step: ℓ(D(G(z|c)|c), 1)
        with amp:
            d_gen = D(G(sample_z(B, G.z_dim, generator, device), cond), cond)
        loss_g = ell(d_gen, 1.0)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        out["loss_d"] += float(loss_d.detach()) / C
        out["loss_g"] += float(loss_g.detach()) / C
        out["acc_d"] += acc / C
    gate["acc"] = out["acc_d"]
    out["loss_pair"] = float("nan")
    if pairing and C > 1:
        # --- pairing step: all conditions of one z, turned back to condition 0, averaged, judged as c = 0
        z = sample_z(B, G.z_dim, generator, device)
        with amp:
            views = [condition_rotation(G(z, torch.full((B,), c, device=device, dtype=torch.long)), c, inverse=True)
                     for c in range(C)]
            paired = torch.stack(views).mean(0)  # (B, 1, D, H, W)
            d_pair = D(paired.contiguous(memory_format=fmt), torch.zeros(B, device=device, dtype=torch.long))
        loss_pair = ell(d_pair, 1.0)
        opt_g.zero_grad(set_to_none=True)
        loss_pair.backward()
        opt_g.step()
        out["loss_pair"] = float(loss_pair.detach())
    return out
