"""System 4 in the quick evaluation and the results tables: Pix2Pix vessel-mask cards (OCTA-500, DRIVE) with their
peers' rows (the same U-Net without the GAN, MONAI's UNet), the CRGAN card (SIMULATED BRVO sequences), their
targets, their data check and their headline metrics recomputed on the held-out images.

:mod:`.quick` dispatches to these functions.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

__all__ = [
    "CRGAN_SSIM_TARGET", "PIX2PIX_PEERS", "PIX2PIX_TABLE_METRICS", "PIX2PIX_TARGETS", "RETINA_SYSTEMS",
    "add_peer_metrics", "is_retina_data", "pix2pix_comparison", "retina_cards", "retina_data_here", "retina_data_title",
    "retina_eval_images", "retina_quick_metrics", "retina_source", "retina_target",
]

RETINA_SYSTEMS = ("pix2pix", "crgan")
#: the issue's aims on held-out images: OCTA-500 large-vessel Dice; DRIVE F1 (= Dice) and AUC
PIX2PIX_TARGETS: dict[str, dict[str, float]] = {"octa500": {"dice": 0.85}, "drive": {"dice": 0.80, "auc": 0.97}}
#: the CRGAN's held-out SSIM target: the seed's reported 0.72 (slides only; its terms unstated)
CRGAN_SSIM_TARGET = 0.72
#: card key prefix → the peer trained identically beside the shipped Pix2Pix (its metrics are kept in the card)
PIX2PIX_PEERS = {"no_gan_": "same U-Net, no GAN", "monai_unet_": "MONAI UNet, no GAN"}
#: the Pix2Pix table's metrics (card keys), the seed's three last
PIX2PIX_TABLE_METRICS = ("dice", "cldice", "auc", "accuracy", "sensitivity", "specificity", "mse", "ssim", "cosine")
_TITLES = {"octa500": "OCTA-500 3 mm en-face OCTA", "drive": "DRIVE fundus photographs",
           "brvo:octa500": "SIMULATED BRVO sequences from OCTA-500 (not patient data)"}


def retina_cards(folder: str | Path) -> dict[tuple[str, str], dict]:
    """The Pix2Pix and CRGAN model cards anywhere under ``folder`` (``models/``), keyed by (system, the card's folder
    and stem relative to ``folder``), e.g. ``("pix2pix", "pix2pix/octa500/generator")``, each with its ``path``."""
    cards = {}
    for path in sorted(Path(folder).rglob("*.json")):
        try:
            card = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # not a model card
        if isinstance(card, dict) and card.get("system") in RETINA_SYSTEMS:
            key = path.relative_to(folder).with_suffix("").as_posix()
            cards[(card["system"], key)] = {**card, "path": str(path)}
    return cards


def is_retina_data(data: str) -> bool:
    """Whether a data string is system 4's: ``octa500``, ``drive``, ``brvo:octa500`` or ``folder:<images>:<masks>``."""
    return data in _TITLES or data.startswith("folder:")


def retina_data_title(data: str) -> str:
    """``"octa500"`` → ``"OCTA-500 3 mm en-face OCTA"``, ``"drive"`` → ``"DRIVE fundus photographs"``,
    ``"brvo:octa500"`` → the SIMULATED label, ``"folder:a:b"`` → ``"image/mask folders a, b"``."""
    if data in _TITLES:
        return _TITLES[data]
    source, _, rest = data.partition(":")
    if source == "folder":
        return f"image/mask folders {', '.join(rest.split(':'))}"
    raise ValueError(f"not a retina data string: {data!r}; expected one of {(*_TITLES, 'folder:<images>:<masks>')}")


def retina_source(data: str) -> tuple[str, str]:
    """(dataset title, where to get it) of a retina data string (OCTA-500 for the CRGAN's simulated sequences)."""
    from ..data.retina import DRIVE_HOW_TO_GET, OCTA500_HOW_TO_GET

    if data in ("octa500", "brvo:octa500"):
        return "OCTA-500", OCTA500_HOW_TO_GET
    if data == "drive":
        return "DRIVE", DRIVE_HOW_TO_GET
    return "folders", "Point --data folder:<images>:<masks> at your own folders."


def retina_data_here(card: Mapping, roots=None) -> bool:
    """Whether the images a Pix2Pix or CRGAN card was evaluated on can be read here."""
    from ..config.paths import DatasetNotFoundError
    from ..data import retina
    from ..inference import card_config

    data = card_config(card).data
    try:
        if data in ("octa500", "brvo:octa500"):
            retina.octa500_pairs("validation", roots=roots)
        elif data == "drive":
            retina.drive_pairs(roots=roots)
        else:
            return all(Path(p).expanduser().is_dir() for p in data.split(":")[1:])
    except DatasetNotFoundError:
        return False
    return True


def retina_eval_images(profile: str | None = None) -> int | None:
    """How many held-out images (Pix2Pix) or sequences (CRGAN) the quick evaluation recomputes: smoke 2, cpu and full
    all of them (10 OCTA-500 images, 5 DRIVE images, 10 sequences: seconds)."""
    from ..config import get_profile

    return {"smoke": 2, "cpu": None, "full": None}[get_profile(profile)]


def retina_quick_metrics(model, card: Mapping, n: int | None = None, roots=None) -> dict:
    """A retina card's metrics recomputed on its first ``n`` held-out items (None: all).

    * pix2pix: every vessel metric of :func:`voxhelpers.metrics.vessels.vessel_metrics` on the test images at the
      card's threshold (chosen on validation when the card was made; not re-chosen here), and ``n_images``;
    * crgan: held-out SSIM, MSE and sector error (the unknown patient, the card's ``eval_draws``) on the first ``n``
      SIMULATED test sequences, ``n_sequences``, ``n_draws``.
    """
    from ..inference import card_config
    from ..systems import get_system
    from ..systems.base import Splits

    cfg = card_config(card)
    if card["system"] == "pix2pix":
        from ..metrics.vessels import vessel_metrics
        from ..systems.pix2pix import masks_and_fovs, predict

        test = get_system("pix2pix").data(cfg, roots).held_out["test"][:n]
        truths, fovs = masks_and_fovs(test)
        m = vessel_metrics(predict(model, test, cfg), truths, fovs, card["metrics"]["threshold"])
        return {k: float(v) for k, v in m.items()}
    if card["system"] != "crgan":
        raise ValueError(f"not a retina system: {card['system']!r}; expected one of {RETINA_SYSTEMS}")
    from ..systems.crgan import details, held_out

    test = held_out(cfg, n, roots)
    metrics = details(model, cfg, Splits(None, {"test": test}), train=False)[0]
    return {k: v for k, v in metrics.items() if not re.search(r"_s\d+$", k)}  # the per-stage keys stay in the card


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def retina_target(card: Mapping) -> tuple[str, bool]:
    """The target of a Pix2Pix card (:data:`PIX2PIX_TARGETS` for its data) or the CRGAN's (held-out SSIM ≥ the seed's
    0.72), in words, and whether the card's metrics meet it. A Pix2Pix card holding the metrics at the images' own
    pixels (``native_<key>``, as the field's results are reported) is judged on those, and the words say so."""
    from ..inference import card_config

    m = card.get("metrics", {})
    if card["system"] == "crgan":
        value = m.get("ssim")
        return (f"held-out SSIM ≥ {CRGAN_SSIM_TARGET} (the seed's, terms unstated)",
                _finite(value) and value >= CRGAN_SSIM_TARGET)
    if card["system"] != "pix2pix":
        raise ValueError(f"not a retina system: {card['system']!r}; expected one of {RETINA_SYSTEMS}")
    targets = PIX2PIX_TARGETS.get(card_config(card).data)
    if not targets:
        return "none (own data)", False
    words = " and ".join(f"{'Dice' if k == 'dice' else k.upper()} ≥ {v:.2f}" for k, v in targets.items())
    native = all(f"native_{k}" in m for k in targets)
    prefix, words = ("native_", f"{words} (at the images' own pixels)") if native else ("", words)
    return words, all(_finite(m.get(prefix + k)) and m[prefix + k] >= v for k, v in targets.items())


def add_peer_metrics(card_path: str | Path, peers: Mapping[str, Mapping | str | Path]) -> dict:
    """Keep the peers' held-out metrics in a Pix2Pix card, beside the shipped model's: each key of a peer's metrics
    (its run's ``metrics.json``) stored as ``<prefix><key>`` (prefixes of :data:`PIX2PIX_PEERS`).

    Returns:
        the card's new metrics. Raises ValueError for an unknown prefix or peer metrics without ``dice``.
    """
    from ..inference import update_card

    card = json.loads(Path(card_path).with_suffix(".json").read_text())
    metrics = dict(card.get("metrics", {}))
    for prefix, peer in peers.items():
        if prefix not in PIX2PIX_PEERS:
            raise ValueError(f"unknown peer prefix {prefix!r}; expected one of {tuple(PIX2PIX_PEERS)}")
        values = json.loads(Path(peer).read_text()) if isinstance(peer, (str, Path)) else dict(peer)
        if "dice" not in values:
            raise ValueError(f"peer {prefix!r}: its metrics have no 'dice'; expected a Pix2Pix run's metrics.json")
        metrics.update({f"{prefix}{k}": float(v) for k, v in values.items()})
    update_card(Path(card_path).with_suffix(".safetensors"), metrics=metrics)
    return metrics


def pix2pix_comparison(card: Mapping, native: bool = False) -> pd.DataFrame:
    """One row per model in a Pix2Pix card — the shipped GAN, then each peer kept by :func:`add_peer_metrics` — with
    the :data:`PIX2PIX_TABLE_METRICS` columns and the validation-chosen ``threshold`` (3 decimals); ``native``: the
    same metrics at the images' own pixels (``native_<key>``; a model whose card has none of them is left out)."""
    m = card.get("metrics", {})
    at = "native_" if native else ""
    keys = (*PIX2PIX_TABLE_METRICS, "threshold")
    rows = []
    for prefix, title in {"": "Pix2Pix (U-Net + PatchGAN)", **PIX2PIX_PEERS}.items():
        if f"{prefix}{at}dice" in m:
            rows.append({"model": title, **{k: m.get(f"{prefix}{at}{k}") for k in keys}})
    if not rows:
        return pd.DataFrame(columns=["model", *keys])
    table = pd.DataFrame(rows)
    table[list(keys)] = table[list(keys)].astype(float).round(3)
    return table
