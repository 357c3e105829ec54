"""Evaluation protocols of the voxel systems: the cGAN's consistency and set metrics, 3D-IWGAN's held-out set
metrics, and 3D-VAE-IWGAN's image → voxel IoU / AP beside a retrieval baseline."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .sampling import generate, generate_conditions, generate_unconditional, reconstruct, render_views


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
        dict of floats; ``occupancy`` is the generated mean occupied fraction (condition 0), ``empty_fraction`` the
        fraction of empty condition-0 shapes. When every shape is empty, ``aad`` / ``avar`` / ``iou`` are NaN and
        ``flag`` says why (empty pairs count as identical, which would otherwise read as a perfect score).

    Raises:
        FloatingPointError: the generator's output holds NaN / inf (broken weights).
    """
    from .. import metrics as M
    from ..data.transforms import condition_rotation

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
    out["empty_fraction"] = float((~g0.flatten(1).any(1)).float().mean())
    if out["empty_fraction"] == 1.0:  # every shape empty: consistent by convention, but not a result
        out.update({k: float("nan") for k in ("aad", "avar", "iou") if k in out})
        out["flag"] = "every generated shape is empty: no consistency measured"
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
    from .. import metrics as M

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

    from .. import metrics as M

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
