"""System 1's result tables: the seed's published AAD / AVAR, the cells' model cards, the convergence target."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..config.voxel_cgan import VoxelCGANConfig
from ..losses import HYBRID_LOSS_TITLES, HYBRID_LOSSES

#: The seed's Tables 1 and 2 (AAD / AVAR, README of Va-un/Hybridized-Loss-Functions-for-3D-Conditional-GANs).
#: None = "not converged"; plain BCE was not in the seed's tables. The seed's plane row for BCE + MSE (0.4 + 0.6)
#: reads 0.2579 / 0.7121 (AAD + AVAR = 0.97: a typo, recorded as printed).
SEED_AAD_AVAR: dict[tuple[str, str], tuple[float, float] | None] = {
    ("airplane", "bce_bcewithlogits"): (0.1346, 0.8654),
    ("airplane", "bce_mse_60_40"): None,
    ("airplane", "bce_mse_40_60"): (0.2579, 0.7121),
    ("airplane", "triple"): (0.2582, 0.7418),
    ("car", "bce_bcewithlogits"): (0.1968, 0.8032),
    ("car", "bce_mse_60_40"): None,
    ("car", "bce_mse_40_60"): None,
    ("car", "triple"): (0.1630, 0.8370),
}
CARD_METRICS = ("aad", "avar", "aad_real", "avar_real", "cov", "mmd", "one_nna", "occupancy_error")


def voxel_cgan_cards(folder: str | Path, n_conditions: int = 2) -> dict[tuple[str, str], dict]:
    """The cGAN model cards under ``folder`` (``<category>/<loss>.json``) trained with ``n_conditions`` rotation
    conditions (2: the seed's, the tables' cells), keyed by (category, loss).

    Raises:
        ValueError: two cards for one (category, loss) at that number of conditions (both paths named).
    """
    cards = {}
    for path in sorted(Path(folder).glob("*/*.json")):
        card = json.loads(path.read_text())
        if card.get("system") == "voxel_cgan":
            cfg = VoxelCGANConfig.from_dict(card["config"])
            if cfg.n_conditions != n_conditions:
                continue
            key = (cfg.category, cfg.loss)
            if key in cards:
                raise ValueError(f"two cards for {key} with {n_conditions} conditions: {cards[key]['path']} and "
                                 f"{path}; expected one")
            cards[key] = {**card, "path": str(path)}
    return cards


def meets_target(category: str, loss: str, metrics: dict) -> bool:
    """The project's convergence target for a cell: 1-NNA ≤ 0.90 (not collapsed) and AVAR ≥ the seed's value
    (cells the seed did not converge, or did not run, need only the 1-NNA bound)."""
    seed = SEED_AAD_AVAR.get((category, loss))
    ok = metrics.get("one_nna", 1.0) <= 0.90
    return ok and (seed is None or metrics.get("avar", 0.0) >= seed[1])


def voxel_cgan_table(cards: dict[tuple[str, str], dict], category: str) -> pd.DataFrame:
    """The seed's table for one category, extended: seed AAD/AVAR beside ours and the set metrics.

    Returns:
        one row per loss (in :data:`HYBRID_LOSSES` order) present in ``cards``.
    """
    rows = []
    for loss in HYBRID_LOSSES:
        card = cards.get((category, loss))
        if card is None:
            continue
        seed = SEED_AAD_AVAR.get((category, loss), "—")
        m = card.get("metrics", {})
        rows.append({
            "loss": HYBRID_LOSS_TITLES[loss],
            "seed AAD": "not converged" if seed is None else (seed if seed == "—" else seed[0]),
            "seed AVAR": "not converged" if seed is None else (seed if seed == "—" else seed[1]),
            **{k: m.get(k) for k in CARD_METRICS},
            "meets target": meets_target(category, loss, m) if m else None,
        })
    return pd.DataFrame(rows)
