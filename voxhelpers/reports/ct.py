"""Systems 3 and 5 in the quick evaluation: X-ray → CT and VNet organ segmentation cards, their targets, their data
check and their headline metrics recomputed on a few held-out patients.

Both read CT patients (OpenKBP by default) rather than voxel shapes, so their data strings (``"openkbp"``,
``"openkbp:validation"``, ``"flare22:<folder>"``, ``"nifti:<folder>"``) are checked and named here;
:mod:`.quick` dispatches to these functions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

__all__ = [
    "CT_SOURCES", "CT_SYSTEMS", "VNET_DICE_TARGET", "XRAY_CT_BASELINES", "XRAY_CT_METRICS", "card_data_here",
    "ct_cards", "ct_data_title", "ct_eval_cases", "ct_quick_metrics", "ct_source", "ct_target", "held_out_cases",
    "vnet_meets_target", "xray_ct_meets_target",
]

CT_SYSTEMS = ("xray_ct", "vnet")
#: VNet organ segmentation meets its target when the mean Dice over the organs and held-out patients is at least this
#: (the issue's aim)
VNET_DICE_TARGET = 0.75
#: X-ray → CT: the card's metrics and which way is better (True: higher); every one must beat every baseline
XRAY_CT_METRICS: dict[str, bool] = {"mae": False, "psnr": True, "psnr_slices": True, "ssim": True, "cosine": True}
#: X-ray → CT: the baselines measured beside the model (card key prefix → name), :func:`voxhelpers.systems.xray_ct.
#: baselines`
XRAY_CT_BASELINES = {"mean_ct_": "mean CT", "backprojection_": "back-projection"}
# source → (dataset title, what it holds)
_CT_TITLES = {"openkbp": ("OpenKBP", "head-and-neck CT"), "flare22": ("FLARE22", "abdominal CT"),
              "nifti": ("NIfTI", "CTs")}
#: the data sources of systems 3 and 5 (``"<source>[:<name>]"``)
CT_SOURCES = tuple(_CT_TITLES)


def ct_cards(folder: str | Path) -> dict[tuple[str, str], dict]:
    """The X-ray → CT and VNet model cards anywhere under ``folder`` (``models/``: ``xray_ct/generator.json``,
    ``xray_ct/generator_no_gan.json``, ``vnet/vnet_fold0.json``), keyed by (system, file stem), e.g.
    ``("xray_ct", "generator_no_gan")``, each with its ``path``."""
    cards = {}
    for path in sorted(Path(folder).rglob("*.json")):
        try:
            card = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # not a model card (or unreadable): nothing to list
        if isinstance(card, dict) and card.get("system") in CT_SYSTEMS:
            cards[(card["system"], path.stem)] = {**card, "path": str(path)}
    return cards


def ct_data_title(data: str) -> str:
    """A CT data string in words: ``"openkbp"`` → ``"OpenKBP head-and-neck CT"``, ``"openkbp:validation"`` →
    ``"OpenKBP head-and-neck CT (validation split)"``, ``"nifti:/x"`` → ``"NIfTI CTs in /x"``.

    Raises:
        ValueError: not a CT source (the valid ones listed).
    """
    source, _, name = data.partition(":")
    if source not in _CT_TITLES:
        raise ValueError(f"not a CT data string: {data!r}; expected a source in {tuple(_CT_TITLES)}")
    title = " ".join(_CT_TITLES[source])
    if not name:
        return title
    return f"{title} ({name} split)" if source == "openkbp" else f"{title} in {name}"


def ct_source(data: str) -> tuple[str, str]:
    """(dataset title, where to get it) of a CT data string: ``"openkbp"`` → ``("OpenKBP",`` :data:`voxhelpers.data.ct.
    OPENKBP_HOW_TO_GET` ``)``; FLARE22 and NIfTI folders likewise.

    Raises:
        ValueError: not a CT source.
    """
    from ..data.ct import OPENKBP_HOW_TO_GET
    from ..data.segmentation import FLARE22_HOW_TO_GET, NIFTI_HOW_TO_GET

    source = data.partition(":")[0]
    if source not in _CT_TITLES:
        raise ValueError(f"not a CT data string: {data!r}; expected a source in {tuple(_CT_TITLES)}")
    how = {"openkbp": OPENKBP_HOW_TO_GET, "flare22": FLARE22_HOW_TO_GET, "nifti": NIFTI_HOW_TO_GET}[source]
    return _CT_TITLES[source][0], how


def card_data_here(card: Mapping, roots=None) -> bool:
    """Whether the CT patients a card's model was evaluated on can be read here.

    OpenKBP: the split(s) the system reads have patients (X-ray → CT: ``train`` and ``validation``, its test set;
    VNet: every patient of ``openkbp[:split]``); a ``flare22:`` / ``nifti:`` folder: it exists.

    Args:
        card: an ``xray_ct`` or ``vnet`` model card.
        roots: data roots (default: :func:`voxhelpers.config.data_roots`).

    Raises:
        ValueError: a card of another system.
    """
    from ..config.paths import DatasetNotFoundError
    from ..data.ct_openkbp import openkbp_patients
    from ..inference import card_config

    if card["system"] not in CT_SYSTEMS:
        raise ValueError(f"not a CT system: {card['system']!r}; expected one of {CT_SYSTEMS}")
    source, _, name = card_config(card).data.partition(":")
    if source != "openkbp":
        return Path(name).expanduser().exists()
    splits = ("train", "validation") if card["system"] == "xray_ct" else (name or "all",)
    try:
        for split in splits:
            openkbp_patients(split, roots=roots)
    except DatasetNotFoundError:
        return False
    return True


def ct_eval_cases(profile: str | None = None) -> int | None:
    """How many held-out patients the quick evaluation recomputes systems 3 and 5 on: smoke 2, cpu 6 (the notebook
    stays at about a minute on 2 cores: each segmentation patient is a whole-volume sliding window and HD95s), full
    None = all of them (the cards' protocol: all 33 X-ray test patients, all 40 of the fold's validation patients)."""
    from ..config import get_profile

    return {"smoke": 2, "cpu": 6, "full": None}[get_profile(profile)]


def held_out_cases(card: Mapping, n: int | None = None, roots=None) -> list:
    """The first ``n`` held-out patients of a card's model, prepared with the card's preprocessing — the patients it
    was evaluated on and never trained on.

    * xray_ct: test cubes (:class:`voxhelpers.data.xray_ct.CTCube`, ``ct`` (1, S, S, S) in [0, 1]) of OpenKBP's
      validation split (a ``nifti:`` folder: its seeded test part);
    * vnet: the fold's validation cases (:class:`voxhelpers.data.segmentation.SegmentationCase`).

    Only those ``n`` patients are read (OpenKBP), so a few take seconds.

    Args:
        card: an ``xray_ct`` or ``vnet`` model card.
        n: how many (default: all).
        roots: data roots (default: :func:`voxhelpers.config.data_roots`).

    Raises:
        ValueError: a card of another system. DatasetNotFoundError: the data is missing (how to get it named).
    """
    from ..inference import card_config
    from ..systems import get_system, vnet, xray_ct

    system = card["system"]
    if system not in CT_SYSTEMS:
        raise ValueError(f"not a CT system: {system!r}; expected one of {CT_SYSTEMS}")
    cfg = card_config(card)
    if system == "vnet":
        listed, _, validation = vnet.fold_names(cfg, roots)
        items = dict(listed)
        return [vnet.prepare(cfg, items[name], name) for name in validation[:n]]
    if cfg.data == "openkbp":
        from ..data.segmentation import list_cases

        return [xray_ct.prepare(cfg, name, item) for name, item in list_cases("openkbp:validation", roots)[:n]]
    return get_system(system).data(cfg, roots).held_out["test"][:n]


def ct_quick_metrics(model, card: Mapping, n: int | None, roots=None) -> dict:
    """A CT model's card metrics recomputed on its first ``n`` held-out patients (:func:`held_out_cases`).

    * xray_ct: MAE (HU), PSNR (3-D and per slice, dB), SSIM and cosine of the CTs generated from the two rendered
      X-rays (PA + lateral) of each test CT, averaged over patients (as :func:`voxhelpers.systems.xray_ct.evaluate`;
      the baselines are not recomputed: they need every training CT) and ``n_test``;
    * vnet: per-organ Dice, IoU, HD95 and their means over the patients (whole volumes, sliding window;
      :func:`voxhelpers.systems.vnet.evaluate_cases`), ``n_cases`` and ``fold``.

    Returns:
        the metrics with their counts (what :func:`voxhelpers.reports.describe_protocol` names).
    """
    from ..inference import card_config
    from ..metrics.volumes import volume_metrics
    from ..systems import vnet, xray_ct

    cfg = card_config(card)
    cases = held_out_cases(card, n, roots)
    if card["system"] == "vnet":
        rows = vnet.evaluate_cases(model, cfg, cases)
        return {**vnet.summarise_cases(rows, cfg.class_names), "fold": cfg.fold, "n_folds": cfg.n_folds}
    real = np.stack([c.ct[0].astype(np.float32) for c in cases])  # (n, S, S, S) in [0, 1]
    m = volume_metrics(xray_ct.generate(model, cases, cfg), real, window=cfg.window)
    return {"n_test": len(cases), **{k: float(np.mean(v)) for k, v in m.items()}}


def _finite(value) -> bool:
    return value is not None and math.isfinite(value)


def xray_ct_meets_target(metrics: Mapping) -> bool:
    """The project's target for X-ray → CT: the generator beats BOTH baselines, the mean training CT and the
    back-projection of the two X-rays, on every metric of :data:`XRAY_CT_METRICS` (lower MAE; higher PSNR, slice
    PSNR, SSIM and cosine), measured on the same test patients.

    Args:
        metrics: a card's metrics with the model's keys and the baselines' (``mean_ct_*``, ``backprojection_*``).

    Returns:
        True when every comparison is strictly won; False when one is lost, tied, or a number is missing or NaN.
    """
    for key, higher in XRAY_CT_METRICS.items():
        ours = metrics.get(key)
        for prefix in XRAY_CT_BASELINES:
            base = metrics.get(f"{prefix}{key}")
            if not (_finite(ours) and _finite(base)) or not (ours > base if higher else ours < base):
                return False
    return True


def vnet_meets_target(metrics: Mapping) -> bool:
    """The project's target for VNet organ segmentation: mean Dice ≥ :data:`VNET_DICE_TARGET` (0.75) over the
    organs and the fold's held-out patients. False when ``mean_dice`` is lower, missing or NaN."""
    value = metrics.get("mean_dice")
    return _finite(value) and bool(value >= VNET_DICE_TARGET)


def ct_target(card: Mapping) -> tuple[str, bool]:
    """The target of an X-ray → CT or VNet card in words (with the best baseline's numbers for X-ray → CT), and
    whether its card metrics meet it (:func:`xray_ct_meets_target`, :func:`vnet_meets_target`).

    Raises:
        ValueError: a card of another system.
    """
    m = card.get("metrics", {})
    if card["system"] == "vnet":
        return f"mean Dice ≥ {VNET_DICE_TARGET:.2f}", vnet_meets_target(m)
    if card["system"] != "xray_ct":
        raise ValueError(f"not a CT system: {card['system']!r}; expected one of {CT_SYSTEMS}")
    words = "beats mean CT and back-projection on MAE, PSNR, SSIM and cosine"
    best = {}
    for key, higher in (("mae", False), ("psnr", True), ("ssim", True)):
        values = [m[f"{p}{key}"] for p in XRAY_CT_BASELINES if _finite(m.get(f"{p}{key}"))]
        if values:
            best[key] = max(values) if higher else min(values)
    if len(best) == 3:
        words += f" (best baseline: {best['mae']:.1f} HU, {best['psnr']:.1f} dB, SSIM {best['ssim']:.3f})"
    return words, xray_ct_meets_target(m)
