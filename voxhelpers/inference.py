"""Sampling, pretrained weights (save / load with a model card) and model evaluation."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .io import load_weights, read_card, save_weights, sha256, write_json


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
    return torch.cat(out)


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
        float32 (B, 1, D, H, W) in [0, 1] (:func:`voxhelpers.nets.voxel_gan.tanh_to_occupancy`); threshold at 0.5.

    Raises:
        ValueError: ``z`` not (B, z_dim) with B ≥ 1.
    """
    from .nets.voxel_gan import tanh_to_occupancy

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
    return torch.cat(out)


# --------------------------------------------------------------------------------------------------
# pretrained weights + model cards
# --------------------------------------------------------------------------------------------------
def network_kwargs(system: str, config: dict) -> dict:
    """The generator's constructor arguments from a system's config dict."""
    if system == "voxel_cgan":
        return {"z_dim": config["z_dim"], "n_conditions": config["n_conditions"],
                "condition": config.get("condition", "scalar")}
    if system == "iwgan":  # the paper's widths unless the config names others (g_channels)
        kwargs = {"z_dim": config["z_dim"]}
        if config.get("g_channels") is not None:
            kwargs["channels"] = tuple(config["g_channels"])
        return kwargs
    raise ValueError(f"unknown system {system!r}; expected 'voxel_cgan' or 'iwgan'")


def save_pretrained(G: nn.Module, system: str, config: dict, path: str | Path, profile: str, command: str,
                    data: str, metrics: dict | None = None, dtype: str = "fp16", epochs: int | None = None) -> Path:
    """Write generator weights (safetensors) and the JSON model card beside them.

    The card holds ``system``, ``config``, ``profile``, ``epochs``, ``data``, ``command``, ``metrics``
    and ``weights`` (file, dtype, sha256, bytes); :func:`load_pretrained` rebuilds the network from it.
    """
    path = Path(path)
    save_weights(path, G.state_dict(), dtype=dtype, metadata={"system": system})
    card = {
        "system": system,
        "config": config,
        "profile": profile,
        "epochs": epochs if epochs is not None else config.get("epochs"),
        "data": data,
        "command": command,
        "metrics": metrics or {},
        "weights": {"file": path.name, "dtype": dtype, "sha256": sha256(path), "bytes": path.stat().st_size},
        "parameters": sum(p.numel() for p in G.parameters()),
        "created": datetime.date.today().isoformat(),
    }
    write_json(path.with_suffix(".json"), card)
    return path


def update_card(path: str | Path, **fields) -> dict:
    """Merge fields into a model card (``metrics`` merged key by key), written atomically."""
    card = read_card(path)
    for k, v in fields.items():
        card[k] = {**card.get(k, {}), **v} if k == "metrics" else v
    write_json(Path(path).with_suffix(".json"), card)
    return card


def load_pretrained(path: str | Path, device="cpu") -> tuple[nn.Module, dict]:
    """Rebuild a pretrained generator from its safetensors file and model card (no unpickling).

    Returns:
        ``(G, card)``, G in eval mode on ``device``.

    Raises:
        FileNotFoundError / ValueError: missing, corrupt or mismatching weights or card.
    """
    from .nets import build_generator

    path = Path(path).with_suffix(".safetensors")
    card = read_card(path)
    G = build_generator(card["system"], **network_kwargs(card["system"], card["config"]))
    state = load_weights(path)
    try:
        G.load_state_dict(state)
    except RuntimeError as e:
        raise ValueError(f"{path}: weights do not match the {card['system']} network of its card ({e})") from e
    return G.to(device).eval(), card


# --------------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------------
def evaluate_voxel_cgan(G: nn.Module, real: np.ndarray | None = None, n_consistency: int = 1000,
                        n_generated: int = 80, seed: int = 0, threshold: float = 0.5) -> dict[str, float]:
    """All metrics of the hybrid-loss cGAN (definitions in :mod:`voxhelpers.metrics`).

    * ``aad``, ``avar``, ``iou`` — condition consistency: G(z|0) against G(z|c) turned back by condition
      c's rotation (the per-sample 180° turn for c = 1), same z, over ``n_consistency`` latents;
      AAD = mean union-normalised mismatch (1 − IoU), AVAR = 1 − AAD; ``iou`` is the pooled IoU
      (Σ|A∩B| / Σ|A∪B| over all pairs); ``mismatch`` the plain whole-grid mismatch |A xor B| / 32³.
    * with ``real`` (N, C, D, H, W): ``aad_real``/``avar_real`` — each generated shape against the nearest
      real shape of the same condition (the ``n_consistency`` shapes of every condition);
      ``cov``, ``mmd``, ``one_nna``, ``occupancy_error`` — ``n_generated`` shapes of condition 0 against
      the real condition-0 set (distance 1 − IoU).

    Returns:
        dict of floats; ``occupancy`` is the generated mean occupied fraction (condition 0).
    """
    from . import metrics as M
    from .transforms import condition_rotation

    z = torch.randn(max(n_consistency, n_generated), G.z_dim, generator=torch.Generator().manual_seed(seed))
    grids = generate_conditions(G, z[:n_consistency])  # (n, C, D, H, W)
    C = grids.shape[1]
    g0 = grids[:, 0] > threshold  # (n, D, H, W) bool
    out: dict[str, float] = {}
    if C > 1:
        turned = [condition_rotation(grids[:, c], c, inverse=True) > threshold for c in range(1, C)]
        out["aad"] = float(np.mean([M.aad(g0, t) for t in turned]))
        out["avar"] = 1.0 - out["aad"]
        inter = sum(float((g0 & t).sum()) for t in turned)
        union = sum(float((g0 | t).sum()) for t in turned)
        out["iou"] = inter / union if union else 1.0
        out["mismatch"] = float(np.mean([float((g0 ^ t).float().mean()) for t in turned]))
    out["occupancy"] = float(g0.float().mean())
    if real is not None:
        if real.ndim != 5 or real.shape[1] < C:
            raise ValueError(f"real must be (N, {C}, D, H, W), got {real.shape}")
        out["aad_real"] = float(np.mean([M.aad_nearest(grids[:, c], real[:, c], threshold) for c in range(C)]))
        out["avar_real"] = 1.0 - out["aad_real"]
        gen0 = generate(G, z[:n_generated], 0)[:, 0]
        s = M.voxel_set_metrics(gen0, real[:, 0], threshold)
        out.update({k: s[k] for k in ("cov", "mmd", "one_nna", "occupancy_error")})
    return out


def evaluate_iwgan(G: nn.Module, held_out, n: int | None = None, seed: int = 0,
                   threshold: float = 0.5) -> dict[str, float]:
    """Set metrics of 3D-IWGAN samples against the HELD-OUT real shapes (definitions in :mod:`voxhelpers.metrics`).

    ``n`` latents z ~ N(0, I) (seeded) → :func:`generate_unconditional` → occupancy, thresholded, compared with
    :func:`voxhelpers.metrics.voxel_set_metrics` (distance 1 − IoU) against shapes the generator never saw.

    Args:
        G: an unconditional tanh generator (``z_dim`` attribute).
        held_out: real grids (M, D, H, W) or (M, 1, D, H, W), binary, M ≥ 1 (numpy or torch).
        n: generated shapes; None: as many as held-out shapes (M), which keeps 1-NNA balanced.
        seed: seed of the latents.
        threshold: occupancy threshold.

    Returns:
        ``cov`` ([0, 1], higher better), ``mmd`` ([0, 1], lower better), ``one_nna`` ([0, 1], 0.5 ideal),
        ``occupancy_error`` (≥ 0, lower better), ``aad_real`` (1 − IoU to the nearest held-out shape, [0, 1]),
        ``avar_real`` (1 − ``aad_real``), ``occupancy`` (mean occupied fraction of the generated shapes),
        ``n_generated`` and ``n_real``.

    Raises:
        ValueError: an empty held-out set, n < 1, or the errors of :func:`voxhelpers.metrics.voxel_set_metrics`.
    """
    from . import metrics as M

    if len(held_out) == 0:
        raise ValueError("held_out is empty: train with holdout > 0 to keep shapes back for evaluation")
    n = len(held_out) if n is None else int(n)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    occ = generate_unconditional(G, z)[:, 0]  # (n, D, H, W) in [0, 1]
    s = M.voxel_set_metrics(occ, held_out, threshold)
    out = {k: s[k] for k in ("cov", "mmd", "one_nna", "occupancy_error", "aad_real", "avar_real")}
    out["occupancy"] = float((occ > threshold).float().mean())
    out["n_generated"], out["n_real"] = n, len(held_out)
    return out
