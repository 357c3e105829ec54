"""The quick evaluation (notebooks/00_quick_evaluation): one tidy row per pretrained model, protocols in words."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
import torch

from ..config.voxel_cgan import VoxelCGANConfig
from ..losses import HYBRID_LOSS_TITLES, HYBRID_LOSSES
from .ct import (
    CT_SOURCES,
    CT_SYSTEMS,
    card_data_here,
    ct_data_title,
    ct_eval_cases,
    ct_quick_metrics,
    ct_source,
    ct_target,
)
from .iwgan import IWGAN_ONE_NNA_TARGET, iwgan_meets_target, vae_iwgan_meets_target
from .retina import (
    RETINA_SYSTEMS,
    is_retina_data,
    retina_data_here,
    retina_data_title,
    retina_eval_images,
    retina_quick_metrics,
    retina_source,
    retina_target,
)
from .voxel_cgan import SEED_AAD_AVAR, meets_target

#: system → its headline metrics in the quick-evaluation table, as (column title, metrics key)
QUICK_METRICS: dict[str, tuple[tuple[str, str], ...]] = {
    "voxel_cgan": (("AVAR", "avar"), ("1-NNA", "one_nna"), ("COV", "cov")),
    "iwgan": (("COV", "cov"), ("MMD", "mmd"), ("1-NNA", "one_nna")),
    "vae_iwgan": (("IoU", "iou"), ("AP", "ap"), ("retrieval IoU", "baseline_iou")),
    "xray_ct": (("MAE (HU)", "mae"), ("PSNR (dB)", "psnr"), ("SSIM", "ssim")),
    "pix2pix": (("Dice", "dice"), ("clDice", "cldice"), ("AUC", "auc")),
    "crgan": (("SSIM", "ssim"), ("MSE", "mse")),
    "vnet": (("Dice", "mean_dice"), ("HD95 (mm)", "mean_hd95")),
}
_QUICK_COLUMNS = ("AVAR", "1-NNA", "COV", "MMD", "IoU", "AP", "retrieval IoU", "MAE (HU)", "PSNR (dB)", "SSIM", "MSE",
                  "Dice", "clDice", "AUC", "HD95 (mm)")
_MODEL_TITLES = {"iwgan": "3D-IWGAN generator", "vae_iwgan": "3D-VAE-IWGAN encoder + generator"}
_SEGMENTATION_TITLES = {"vnet": "VNet", "monai_vnet": "MONAI VNet", "monai_unet": "MONAI UNet"}
_SYSTEM_ORDER = ("voxel_cgan", "iwgan", "vae_iwgan", "xray_ct", *RETINA_SYSTEMS, "vnet")


def card_target(card: Mapping) -> tuple[str, bool]:
    """The target a pretrained model is held to, in words, and whether its card's metrics meet it.

    * voxel_cgan: :func:`meets_target` (1-NNA ≤ 0.90 and AVAR ≥ the seed's value for the cell);
    * iwgan: :func:`iwgan_meets_target` (converged: 1-NNA ≤ 0.90);
    * vae_iwgan: :func:`vae_iwgan_meets_target` (IoU above the retrieval baseline's);
    * xray_ct: :func:`voxhelpers.reports.ct.xray_ct_meets_target` (beats the mean CT and the back-projection on
      every metric);
    * vnet: :func:`voxhelpers.reports.ct.vnet_meets_target` (mean Dice ≥ 0.75);
    * pix2pix, crgan: :func:`voxhelpers.reports.retina.retina_target` (the issue's Dice / AUC aims per dataset; the
      seed's SSIM 0.72).

    Args:
        card: a model card (``system``, ``config``, ``metrics``), as read by :func:`voxel_cgan_cards` /
            :func:`iwgan_cards` / :func:`voxhelpers.reports.ct.ct_cards`.

    Returns:
        ``(words, met)``.

    Raises:
        ValueError: a system without a target here.
    """
    system, m = card["system"], card.get("metrics", {})
    if system == "voxel_cgan":
        cfg = VoxelCGANConfig.from_dict(card["config"])
        seed = SEED_AAD_AVAR.get((cfg.category, cfg.loss), "absent")
        words = ("1-NNA ≤ 0.90 (the seed has no value)" if seed == "absent" else
                 "1-NNA ≤ 0.90 (the seed did not converge)" if seed is None else
                 f"1-NNA ≤ 0.90 and AVAR ≥ {seed[1]} (the seed's)")
        return words, meets_target(cfg.category, cfg.loss, m)
    if system == "iwgan":
        return f"converged: 1-NNA ≤ {IWGAN_ONE_NNA_TARGET:.2f}", iwgan_meets_target(m)
    if system == "vae_iwgan":
        return "IoU > retrieval IoU", vae_iwgan_meets_target(m)
    if system in CT_SYSTEMS:
        return ct_target(card)
    if system in RETINA_SYSTEMS:
        return retina_target(card)
    raise ValueError(f"no target for system {system!r}; expected one of {_SYSTEM_ORDER}")


def data_title(data: str) -> str:
    """A data string in words: ``"synthevox3d:airplane"`` → ``"SynthEVox3D airplane"``, ``"modelnet10:chair"`` →
    ``"ModelNet10 chair"``; procedural stand-ins are labelled as such, ``npy:`` files as the user's own shapes; CT
    sources as :func:`voxhelpers.reports.ct.ct_data_title` words them (``"openkbp"`` → ``"OpenKBP head-and-neck
    CT"``)."""
    from ..data.sources import parse_data

    if data.partition(":")[0] in CT_SOURCES:
        return ct_data_title(data)
    if is_retina_data(data):
        return retina_data_title(data)
    source, name = parse_data(data)
    if source == "synthevox3d":
        from ..data.shapes import resolve_category

        return f"SynthEVox3D {resolve_category(name)[0]}"
    return {"modelnet10": f"ModelNet10 {name}", "procedural": f"procedural {name} (stand-in, not real data)",
            "npy": f"own shapes {name}"}[source]


def _card_data(card: Mapping) -> str:
    """The data string a card's model was trained and evaluated on (old card configs upgraded)."""
    from ..inference import card_config

    return card_config(card).data


def data_status(cards: Iterable[Mapping], roots=None) -> list[str]:
    """Which datasets the cards' models were evaluated on are on this machine, and where to get the missing ones.

    Args:
        cards: model cards (any systems).
        roots: data roots (default: :func:`voxhelpers.config.data_roots`).

    Returns:
        per dataset, in the cards' order, a line naming the parts that are here (``"SynthEVox3D airplane, car:
        here"``) and one naming the missing parts with where to get them (``"ModelNet10 chair: missing. Get ..."``,
        :data:`voxhelpers.data.MODELNET10_HOW_TO_GET`, :data:`voxhelpers.data.SYNTHEVOX3D_HOW_TO_GET`,
        :data:`voxhelpers.data.ct.OPENKBP_HOW_TO_GET`); lines of datasets that are here come first.
    """
    from ..data.shapes import MODELNET10_HOW_TO_GET, SYNTHEVOX3D_HOW_TO_GET
    from ..data.sources import data_available, parse_data

    how = {"SynthEVox3D": SYNTHEVOX3D_HOW_TO_GET, "ModelNet10": MODELNET10_HOW_TO_GET}
    titles = {"synthevox3d": "SynthEVox3D", "modelnet10": "ModelNet10"}
    checked: set[tuple[str, str]] = set()  # (data, CT system or "")
    found: dict[tuple[str, bool], list[str]] = {}  # (dataset title, here) → names
    for card in cards:
        data = _card_data(card)
        ct = card["system"] if card["system"] in CT_SYSTEMS else ""
        if (data, ct) in checked:
            continue
        checked.add((data, ct))
        if ct:  # X-ray → CT and VNet read patients by split (card_data_here)
            title, where = ct_source(data)
            how[title], here = where, card_data_here(card, roots)
        elif card["system"] in RETINA_SYSTEMS:
            title, where = retina_source(data)
            how[title], here = where, retina_data_here(card, roots)
        else:
            source = parse_data(data)[0]
            title, here = titles.get(source, source), data_available(data, roots)
        names = found.setdefault((title, here), [])
        name = data_title(data).removeprefix(f"{title} ").removeprefix(title)
        if name not in names:
            names.append(name)
    lines = []
    for (title, here), names in sorted(found.items(), key=lambda kv: not kv[0][1]):  # here first, else in order
        status = "here" if here else f"missing. {how.get(title, 'No such file or folder.')}"
        lines.append(f"{title} {', '.join(names)}: {status}")
    return lines


def describe_protocol(system: str, metrics: Mapping) -> str:
    """What a metrics dict was measured on, in words, from its ``n_*`` counts.

    * voxel_cgan: ``n_consistency`` → "AVAR: 1,000 latents"; ``n_generated``, ``n_real`` → "COV, 1-NNA: 80 samples
      vs 80 real shapes";
    * iwgan: "16 samples vs 16 held-out shapes";
    * vae_iwgan: ``n_test``, ``n_test_views`` → "126 test objects × 4 views"; with ``n_train`` and
      ``n_retrieval_views`` → "; retrieval from 587 training objects × 8 views";
    * xray_ct: ``n_test`` → "33 test patients × 2 rendered views" (each CT's PA and lateral X-ray);
    * vnet: ``n_cases`` (and ``fold``) → "40 held-out patients of fold 0, whole volumes".

    Returns:
        the words; ``""`` when the counts are absent (nothing measured).
    """
    m = metrics
    if system == "voxel_cgan":
        parts = [f"AVAR: {m['n_consistency']:,} latents"] if "n_consistency" in m else []
        if "n_generated" in m and "n_real" in m:
            parts.append(f"COV, 1-NNA: {m['n_generated']:,} samples vs {m['n_real']:,} real shapes")
        return "; ".join(parts)
    if system == "iwgan":
        return f"{m['n_generated']:,} samples vs {m['n_real']:,} held-out shapes" if "n_real" in m else ""
    if system == "vae_iwgan":
        if not m.get("n_test"):
            return ""
        views = m.get("n_test_views", m["n_test"]) // m["n_test"]
        words = f"{m['n_test']:,} test objects × {views} view{'s' * (views != 1)}"
        if m.get("n_train") and m.get("n_retrieval_views"):
            r = m["n_retrieval_views"]
            words += f"; retrieval from {m['n_train']:,} training objects × {r} view{'s' * (r != 1)}"
        return words
    if system == "xray_ct":
        n = int(m.get("n_test") or 0)
        return f"{n:,} test patient{'s' * (n != 1)} × 2 rendered views" if n else ""
    if system == "vnet":
        n = int(m.get("n_cases") or 0)
        fold = f" of fold {int(m['fold'])}" if m.get("fold") is not None else ""
        return f"{n:,} held-out patient{'s' * (n != 1)}{fold}, whole volumes" if n else ""
    if system == "pix2pix":
        n = int(m.get("n_images") or 0)
        return f"{n:,} held-out image{'s' * (n != 1)}, threshold from validation" if n else ""
    if system == "crgan":
        n, k = int(m.get("n_sequences") or 0), int(m.get("n_draws") or 0)
        return f"{n:,} held-out SIMULATED sequence{'s' * (n != 1)} × {k} draw{'s' * (k != 1)}" if n else ""
    raise ValueError(f"unknown system {system!r}; expected one of {_SYSTEM_ORDER}")


def _recomputed_on(system: str, data: str, metrics: Mapping, profile: str) -> str:
    """The "recomputed on" cell: the protocol and budget, and what the missing data left out."""
    done = describe_protocol(system, metrics)
    done = f"{done} ({profile} budget)" if done else ""
    if metrics.get("data_here", True):
        return done or "not recomputed"
    missing = f"{data_title(data)} is not here"
    return f"{done}; {missing}, so nothing else" if done else f"not recomputed: {missing}"


def _model_title(card: Mapping) -> str:
    """The "model" cell: the cGAN's loss, the X-ray generator with or without its GAN, the segmenter and fold."""
    system = card["system"]
    if system == "voxel_cgan":
        return HYBRID_LOSS_TITLES.get(card["config"].get("loss"), "")
    if system not in CT_SYSTEMS and system not in RETINA_SYSTEMS:
        return _MODEL_TITLES[system]
    from ..inference import card_config

    cfg = card_config(card)
    if system == "crgan":
        return "CRGAN generator (EMA), unknown patient"
    if system == "pix2pix":
        net = "Pix2Pix U-Net" if cfg.network == "pix2pix" else "MONAI UNet"
        return (f"{net} + PatchGAN" if cfg.adv_weight > 0 else f"{net}, no GAN") + f", {cfg.size}²"

    if system == "xray_ct":
        return "X-ray → CT generator (GAN)" if cfg.adv_weight > 0 else "X-ray → CT generator, no GAN (ablation)"
    return f"{_SEGMENTATION_TITLES.get(cfg.network, cfg.network)}, fold {cfg.fold} of {cfg.n_folds}"


def _quick_sort_key(card: Mapping) -> tuple:
    """Systems in README order, then data, then the cGAN's losses in :data:`HYBRID_LOSSES` order."""
    system = card["system"]
    loss = card["config"].get("loss")
    return (_SYSTEM_ORDER.index(system) if system in _SYSTEM_ORDER else len(_SYSTEM_ORDER), _card_data(card),
            HYBRID_LOSSES.index(loss) if loss in HYBRID_LOSSES else -1, str(card.get("path", "")))


def quick_evaluation_table(cards: Iterable[Mapping], recomputed: Mapping[str, Mapping], profile: str) -> pd.DataFrame:
    """The quick evaluation's one results table: a row per pretrained model, its headline metrics recomputed now
    beside its card's, both protocols in words, and whether the card meets the model's target.

    Columns: ``system``, ``data``, ``model``, ``recomputed on``, ``card measured on``, then for each metric of
    :data:`QUICK_METRICS` the recomputed value and ``"<metric> (card)"`` (AVAR, 1-NNA, COV for the cGAN; COV, MMD,
    1-NNA for 3D-IWGAN; IoU, AP, retrieval IoU for 3D-VAE-IWGAN; MAE (HU), PSNR (dB), SSIM for X-ray → CT; mean
    Dice and HD95 (mm) for VNet; Dice, clDice and AUC for Pix2Pix; SSIM and MSE for the CRGAN; empty where a
    system has no such metric or it was not recomputed), ``target`` (in words, :func:`card_target`) and ``meets
    target`` (judged on the card's numbers, the full protocol). Numbers rounded to 3 decimals. Rows: cGAN,
    3D-IWGAN, 3D-VAE-IWGAN, X-ray → CT, Pix2Pix, CRGAN, VNet, each by data (the cGAN's losses in
    :data:`HYBRID_LOSSES` order, then by card path: the X-ray GAN before its no-GAN ablation).

    Args:
        cards: model cards with ``path``, ``system``, ``profile``, ``config`` and ``metrics`` (:func:`voxel_cgan_cards`,
            :func:`iwgan_cards`, :func:`voxhelpers.reports.ct.ct_cards`).
        recomputed: card ``path`` → the metrics recomputed now (:func:`quick_metrics`: the metrics, their ``n_*``
            counts and ``data_here``); a card without an entry was not recomputed.
        profile: the profile whose budget the recomputation used (named in ``recomputed on``).

    Returns:
        the table (one row per card).

    Raises:
        ValueError: a card of a system without headline metrics here.
    """
    cards = list(cards)
    for card in cards:
        if card["system"] not in QUICK_METRICS:
            raise ValueError(f"no quick-evaluation metrics for system {card['system']!r}; expected one of "
                             f"{_SYSTEM_ORDER}")
    rows = []
    for card in sorted(cards, key=_quick_sort_key):
        system = card["system"]
        data = _card_data(card)
        card_m = dict(card.get("metrics", {}))
        if system == "vae_iwgan":
            card_m.setdefault("n_retrieval_views", card["config"].get("retrieval_views"))
        if system == "vnet":
            card_m.setdefault("fold", card["config"].get("fold"))
        now = recomputed.get(card.get("path"), {})
        words, met = card_target(card)
        row = {"system": system, "data": data_title(data), "model": _model_title(card),
               "recomputed on": _recomputed_on(system, data, now, profile),
               "card measured on": f"{describe_protocol(system, card_m) or 'no counts'} ({card.get('profile')} "
                                   "profile)"}
        for title in _QUICK_COLUMNS:
            row[title] = row[f"{title} (card)"] = None
        for title, key in QUICK_METRICS[system]:
            row[title], row[f"{title} (card)"] = now.get(key), card_m.get(key)
        rows.append({**row, "target": words, "meets target": met})
    table = pd.DataFrame(rows)
    numeric = [c for title in _QUICK_COLUMNS for c in (title, f"{title} (card)")]
    table[numeric] = table[numeric].astype(float).round(3)
    return table


def quick_metrics(card: Mapping, profile: str | None = None, roots=None) -> dict:
    """Recompute a pretrained model's headline metrics on a profile's evaluation budget (the quick evaluation).

    Loads the weights from the card's ``path`` (sha256-verified) and, with the profile's
    :func:`voxhelpers.config.eval_budget`:

    * voxel_cgan: condition consistency (AAD / AVAR) on ``n_consistency`` latents, which needs no data; with the
      category here also ``avar_real``, COV, MMD and 1-NNA of ``n`` condition-0 samples against the first ``n`` real
      shapes, ``n = min(n_generated, 80)`` (:func:`voxhelpers.inference.evaluate_voxel_cgan`, the card's latent seed);
    * iwgan: with the data here, the set metrics of as many samples as held-back shapes, at most ``n_generated``
      of them (:func:`voxhelpers.inference.evaluate_iwgan`, the card's latent seed);
    * vae_iwgan: with the data here, one seeded random view of each of ``max(1, n_generated // 4)`` test objects:
      IoU at the card's (validation-chosen) threshold, AP over voxels, and the retrieval baseline's IoU on the same
      renders with a database of one view of every training object (the card: 4 views of every test object, a
      database of 8 views per training object).

    * pix2pix, crgan: with the data here, the card's metrics on the first
      :func:`voxhelpers.reports.retina.retina_eval_images` held-out images or SIMULATED sequences (2 in smoke, all in
      cpu and full; :func:`voxhelpers.reports.retina.retina_quick_metrics`);
    * xray_ct, vnet: with OpenKBP here, the card's metrics on the first :func:`voxhelpers.reports.ct.ct_eval_cases`
      held-out patients (2 in smoke, 6 in cpu, all of them in full;
      :func:`voxhelpers.reports.ct.ct_quick_metrics`; the X-ray baselines are not recomputed).

    In the ``full`` profile the cGAN and 3D-IWGAN numbers are the card's protocol (up to the latents' draw).

    Args:
        card: a model card with ``path``, ``system``, ``config`` and (vae_iwgan) ``metrics["threshold"]``.
        profile: smoke | cpu | full (default: ``$VOXHELPERS_PROFILE``).
        roots: data roots (default: :func:`voxhelpers.config.data_roots`).

    Returns:
        the recomputed metrics with their ``n_*`` counts (:func:`describe_protocol` names them) and ``data_here``
        (False: the dataset is missing and only what needs no data was recomputed).

    Raises:
        ValueError: a card of a system without a quick evaluation, or weights that do not match their card.
    """

    from .. import inference
    from .. import metrics as M
    from ..config import eval_budget
    from ..data.sources import data_available, grid_up
    from ..systems import get_system

    system = card["system"]
    if system not in QUICK_METRICS:
        raise ValueError(f"no quick evaluation for system {system!r}; expected one of {_SYSTEM_ORDER}")
    budget = eval_budget(profile)
    cfg = inference.card_config(card)
    model, _ = inference.load_pretrained(card["path"])
    here = (card_data_here(card, roots) if system in CT_SYSTEMS else retina_data_here(card, roots)
            if system in RETINA_SYSTEMS else data_available(cfg.data, roots))
    out: dict = {"data_here": here}
    if system == "voxel_cgan":
        real = get_system(system).data(cfg, roots).train[: budget.n_generated] if out["data_here"] else None
        n = budget.n_generated if real is None else len(real)
        out.update(inference.evaluate_voxel_cgan(model, real, budget.n_consistency, n, seed=cfg.seed + 1),
                   n_consistency=budget.n_consistency)
        if real is not None:
            out.update(n_generated=n, n_real=n)
    elif system == "iwgan" and out["data_here"]:
        held = get_system(system).data(cfg, roots).held_out["test"][: budget.n_generated]
        out.update(inference.evaluate_iwgan(model, held, seed=cfg.seed + 1))
    elif system == "vae_iwgan" and out["data_here"]:
        splits = get_system(system).data(cfg, roots)
        test = splits.held_out["test"][: max(1, budget.n_generated // 4)]
        kw = {"image_size": cfg.image_size, "up": grid_up(cfg.data), "elevation_range": tuple(cfg.elevation_range)}
        images, index = inference.render_views(test, 1, seed=cfg.seed + 2, **kw)  # (n, 3, S, S), object index (n,)
        target = torch.as_tensor(np.asarray(test)).bool()[index]  # (n, 32, 32, 32)
        probs = inference.reconstruct(model, images)
        db_images, db_index = inference.render_views(splits.train, 1, seed=cfg.seed + 3, **kw)
        retrieved = inference.retrieval_baseline(splits.train, db_images, db_index, images)
        threshold = card["metrics"]["threshold"]
        out.update(iou=float(M.iou(probs, target, threshold).mean()),
                   ap=float(M.voxel_average_precision(probs, target).mean()),
                   baseline_iou=float(M.iou(retrieved, target).mean()), threshold=threshold,
                   n_train=len(splits.train), n_test=len(test), n_test_views=len(index), n_retrieval_views=1)
    elif system in CT_SYSTEMS and out["data_here"]:
        out.update(ct_quick_metrics(model, card, ct_eval_cases(profile), roots))
    elif system in RETINA_SYSTEMS and out["data_here"]:
        out.update(retina_quick_metrics(model, card, retina_eval_images(profile), roots))
    return out
