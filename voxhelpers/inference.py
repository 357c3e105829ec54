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
    if system == "vae_iwgan":
        return {"z_dim": config["z_dim"], "image_size": config["image_size"], "g_channels": config.get("g_channels")}
    raise ValueError(f"unknown system {system!r}; expected 'voxel_cgan', 'iwgan' or 'vae_iwgan'")


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


# --------------------------------------------------------------------------------------------------
# 3D-VAE-IWGAN: image → voxels
# --------------------------------------------------------------------------------------------------
def render_views(grids, n_views: int, seed: int, image_size: int = 128, up: str = "z",
                 elevation_range: tuple[float, float] = (-20.0, 40.0), device=None,
                 batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``n_views`` seeded random views of every grid (:func:`voxhelpers.render.render_voxels`), object-major.

    Args:
        grids: (N, D, H, W) or (N, 1, D, H, W) binary.
        n_views: views per object, ≥ 1.
        seed: seed of the camera angles (the same seed gives the same views).
        image_size, up, elevation_range: as in :func:`voxhelpers.render.render_voxels` / ``random_views``.
        device: where to render (default CPU); the images come back on the CPU.

    Returns:
        ``(images (N·n_views, 3, S, S) float32 in [0, 1], index (N·n_views,) long)``; ``index[k]`` is the object
        of view k (views of object i are rows i·n_views … i·n_views + n_views − 1).
    """
    from .render import random_views, render_voxels

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
    from .nets.voxel_gan import tanh_to_occupancy

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = [tanh_to_occupancy(model(images[i: i + batch_size].to(device)).float().cpu())[:, 0]
               for i in range(0, len(images), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.empty(0, 32, 32, 32)


def _retrieval_features(images: torch.Tensor, size: int = 32) -> torch.Tensor:
    """Grey, ``size``² area-downsampled, centred, unit-norm pixel vectors (N, size²) for nearest-neighbour search."""
    grey = images.float().mean(1, keepdim=True)  # (N, 1, S, S)
    small = torch.nn.functional.interpolate(grey, size=(size, size), mode="area").flatten(1)
    small = small - small.mean(1, keepdim=True)
    norm = small.norm(dim=1, keepdim=True)
    return torch.where(norm > 1e-4, small / norm.clamp_min(1e-4), torch.zeros_like(small))  # flat image → 0


def retrieval_baseline(train_grids, train_images: torch.Tensor, train_index: torch.Tensor,
                       query_images: torch.Tensor) -> torch.Tensor:
    """Nearest-training-shape retrieval: for each query render, the training shape whose render looks most alike.

    The image → 3D baseline any learned model must beat: every training object rendered from several views is a
    database entry; a query takes the shape of the entry with the highest cosine similarity of grey 32² pixel
    vectors (:func:`_retrieval_features`). No learning; it can only return shapes it has seen.

    Args:
        train_grids: (N, D, H, W) the training shapes.
        train_images: (K, 3, S, S) renders of them; ``train_index`` (K,) names the shape of each.
        query_images: (Q, 3, S', S') renders to reconstruct.

    Returns:
        bool (Q, D, H, W): the retrieved shapes.
    """
    grids = torch.as_tensor(np.asarray(train_grids)).bool()
    db, q = _retrieval_features(train_images), _retrieval_features(query_images)
    best = torch.cat([(q[i: i + 1024] @ db.T).argmax(1) for i in range(0, len(q), 1024)])  # (Q,) database rows
    return grids[train_index[best]]


def evaluate_reconstruction(model: nn.Module, train, val, test, up: str = "z", image_size: int | None = None,
                            eval_views: int = 4, retrieval_views: int = 8, seed: int = 0,
                            elevation_range: tuple[float, float] = (-20.0, 40.0), device=None) -> dict:
    """Image → voxel metrics of a 3D-VAE-IWGAN on objects it never saw (the split is by object).

    1. Render ``eval_views`` seeded random views of every validation and test object (seeds ``seed + 1``,
       ``seed + 2``) and reconstruct them (:func:`reconstruct`).
    2. Choose the occupancy threshold with the best mean IoU on VALIDATION
       (:func:`voxhelpers.metrics.choose_threshold`).
    3. On TEST: ``iou`` (mean paired IoU at that threshold), ``ap`` (mean per-shape voxel average precision,
       :func:`voxhelpers.metrics.voxel_average_precision`), ``iou_05`` (IoU at 0.5, for reference).
    4. The retrieval baseline on the same test renders (:func:`retrieval_baseline`, a database of
       ``retrieval_views`` views of each training object, seed ``seed + 3``): ``baseline_iou``; and
       ``oracle_iou``, the IoU of the best training shape for each test object — the ceiling of any retrieval.

    Returns:
        ``iou``, ``ap``, ``threshold``, ``iou_05``, ``baseline_iou``, ``oracle_iou``, ``beats_baseline`` and the
        counts ``n_train``, ``n_val``, ``n_test`` (objects) and ``n_test_views``; plus ``per_view``, a DataFrame
        of the test views (object, iou, ap, baseline_iou).
    """
    import pandas as pd

    from . import metrics as M

    size = image_size or model.image_size
    kw = {"image_size": size, "up": up, "elevation_range": elevation_range, "device": device}
    val_img, val_idx = render_views(val, eval_views, seed + 1, **kw)
    test_img, test_idx = render_views(test, eval_views, seed + 2, **kw)
    val_t = torch.as_tensor(np.asarray(val)).bool()[val_idx]
    test_t = torch.as_tensor(np.asarray(test)).bool()[test_idx]
    threshold, _ = M.choose_threshold(reconstruct(model, val_img), val_t)
    probs = reconstruct(model, test_img)
    ious = M.iou(probs, test_t, threshold)
    aps = M.voxel_average_precision(probs, test_t)
    db_img, db_idx = render_views(train, retrieval_views, seed + 3, **kw)
    retrieved = retrieval_baseline(train, db_img, db_idx, test_img)
    base = M.iou(retrieved, test_t)
    oracle = M.pairwise_iou(torch.as_tensor(np.asarray(test)), torch.as_tensor(np.asarray(train))).max(1).values
    out = {"iou": float(ious.mean()), "ap": float(aps.mean()), "threshold": threshold,
           "iou_05": float(M.iou(probs, test_t, 0.5).mean()), "baseline_iou": float(base.mean()),
           "oracle_iou": float(oracle.mean())}
    out["beats_baseline"] = out["iou"] > out["baseline_iou"]
    out.update(n_train=len(train), n_val=len(val), n_test=len(test), n_test_views=len(test_idx))
    out["per_view"] = pd.DataFrame({"object": test_idx.numpy(), "iou": ious.numpy(), "ap": aps.numpy(),
                                    "baseline_iou": base.numpy()})
    return out


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
