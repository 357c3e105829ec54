"""The quick evaluation's pieces in voxhelpers.reports: targets, protocols in words, the data check, the one results
table from hand-made cards, and the recomputation on the shipped weights (tiny budgets; a few seconds on CPU)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from voxhelpers import reports
from voxhelpers.data import MODELNET10_HOW_TO_GET, SYNTHEVOX3D_HOW_TO_GET

REPO = Path(__file__).resolve().parents[1]


def cgan_card(category="airplane", loss="bce_mse_40_60", path=None, **metrics):
    """A hand-made cGAN card: the full protocol's counts, the given metrics."""
    return {"system": "voxel_cgan", "profile": "full", "path": path or f"{category}/{loss}.json",
            "config": {"data": f"synthevox3d:{category}", "loss": loss},
            "metrics": {"n_consistency": 1000, "n_generated": 80, "n_real": 80, **metrics}}


def iwgan_card(data="synthevox3d:chair", **metrics):
    return {"system": "iwgan", "profile": "full", "path": f"{data}/generation.json", "config": {"data": data},
            "metrics": {"n_generated": 16, "n_real": 16, **metrics}}


def vae_card(**metrics):
    return {"system": "vae_iwgan", "profile": "full", "path": "modelnet10_chair/reconstruction.json",
            "config": {"data": "modelnet10:chair", "retrieval_views": 8},
            "metrics": {"n_train": 587, "n_test": 126, "n_test_views": 504, "threshold": 0.25, **metrics}}


# --------------------------------------------------------------------------------------------------
# targets
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("one_nna", "met"), [(0.5, True), (0.90, True), (0.9001, False), (0.985, False),
                                              (float("nan"), False), (None, False)])
def test_iwgan_target_is_converged_one_nna_at_most_090(one_nna, met):
    metrics = {} if one_nna is None else {"one_nna": one_nna}
    assert reports.iwgan_meets_target(metrics) is met


@pytest.mark.parametrize(("iou", "base", "met"), [(0.348, 0.278, True), (0.271, 0.383, False), (0.3, 0.3, False),
                                                  (0.3, None, False), (None, 0.3, False)])
def test_vae_iwgan_target_is_beating_retrieval(iou, base, met):
    metrics = {k: v for k, v in (("iou", iou), ("baseline_iou", base)) if v is not None}
    assert reports.vae_iwgan_meets_target(metrics) is met


def test_card_target_words_and_verdicts():
    # airplane BCE + MSE (0.4 + 0.6): the seed printed AVAR 0.7121, so 0.75 passes and 0.70 fails
    assert reports.card_target(cgan_card(avar=0.75, one_nna=0.6)) == (
        "1-NNA ≤ 0.90 and AVAR ≥ 0.7121 (the seed's)", True)
    assert reports.card_target(cgan_card(avar=0.70, one_nna=0.6))[1] is False
    assert reports.card_target(cgan_card(avar=0.99, one_nna=0.95))[1] is False  # collapsed
    # car BCE + MSE (0.6 + 0.4): "not converged" in the seed's table; plain BCE: not in it
    assert reports.card_target(cgan_card("car", "bce_mse_60_40", avar=0.1, one_nna=0.6)) == (
        "1-NNA ≤ 0.90 (the seed did not converge)", True)
    assert reports.card_target(cgan_card("car", "bce", avar=0.1, one_nna=0.6))[0] == (
        "1-NNA ≤ 0.90 (the seed has no value)")
    assert reports.card_target(iwgan_card(one_nna=0.875)) == ("converged: 1-NNA ≤ 0.90", True)
    assert reports.card_target(vae_card(iou=0.2, baseline_iou=0.3)) == ("IoU > retrieval IoU", False)
    with pytest.raises(ValueError, match="no target"):
        reports.card_target({"system": "x2ct", "config": {}, "metrics": {}})


# --------------------------------------------------------------------------------------------------
# protocols and data in words
# --------------------------------------------------------------------------------------------------
def test_describe_protocol_from_the_counts():
    assert reports.describe_protocol("voxel_cgan", {"n_consistency": 1000, "n_generated": 80, "n_real": 80}) == (
        "AVAR: 1,000 latents; COV, 1-NNA: 80 samples vs 80 real shapes")
    assert reports.describe_protocol("voxel_cgan", {"n_consistency": 16}) == "AVAR: 16 latents"
    assert reports.describe_protocol("iwgan", {"n_generated": 16, "n_real": 16}) == "16 samples vs 16 held-out shapes"
    assert reports.describe_protocol("vae_iwgan", {"n_test": 126, "n_test_views": 504}) == "126 test objects × 4 views"
    assert reports.describe_protocol("vae_iwgan", {"n_test": 20, "n_test_views": 20, "n_train": 587,
                                                   "n_retrieval_views": 1}) == (
        "20 test objects × 1 view; retrieval from 587 training objects × 1 view")
    for system in ("voxel_cgan", "iwgan", "vae_iwgan"):
        assert reports.describe_protocol(system, {"iou": 0.5}) == ""  # no counts: nothing measured
    with pytest.raises(ValueError, match="unknown system"):
        reports.describe_protocol("x2ct", {})


def test_data_title():
    assert reports.data_title("synthevox3d:airplane") == "SynthEVox3D airplane"
    assert reports.data_title("synthevox3d:02958343") == "SynthEVox3D car"  # a synset id
    assert reports.data_title("modelnet10:chair") == "ModelNet10 chair"
    assert "not real data" in reports.data_title("procedural:ball")


def test_data_status_names_every_missing_dataset_and_where_to_get_it(tmp_path):
    cards = [cgan_card("airplane"), cgan_card("car"), iwgan_card("synthevox3d:chair"), vae_card()]
    assert reports.data_status(cards, roots=[tmp_path]) == [
        f"SynthEVox3D airplane, car, chair: missing. {SYNTHEVOX3D_HOW_TO_GET}",
        f"ModelNet10 chair: missing. {MODELNET10_HOW_TO_GET}",
    ]
    # ModelNet10's file and a valid preprocessed SynthEVox3D car array make those two here
    (tmp_path / "modelnet10").mkdir()
    (tmp_path / "modelnet10" / "chair.npy.gz").write_bytes(b"")  # found by name (read only when used)
    (tmp_path / "synthevox3d" / "02958343").mkdir(parents=True)
    cars = np.zeros((2, 32, 32, 32), dtype=bool)
    cars[:, 8:20, 8:20, 8:20] = True
    np.save(tmp_path / "synthevox3d" / "02958343" / "model_array.npy", cars)
    assert reports.data_status(cards, roots=[tmp_path]) == [
        "SynthEVox3D car: here", "ModelNet10 chair: here",
        f"SynthEVox3D airplane, chair: missing. {SYNTHEVOX3D_HOW_TO_GET}",
    ]


# --------------------------------------------------------------------------------------------------
# quick_evaluation_table
# --------------------------------------------------------------------------------------------------
METRIC_COLUMNS = ["AVAR", "AVAR (card)", "1-NNA", "1-NNA (card)", "COV", "COV (card)", "MMD", "MMD (card)", "IoU",
                  "IoU (card)", "AP", "AP (card)", "retrieval IoU", "retrieval IoU (card)",
                  # X-ray → CT, Pix2Pix, CRGAN and VNet (tests/test_quick_evaluation_ct.py, ..._retina.py): empty in
                  # these voxel rows
                  "MAE (HU)", "MAE (HU) (card)", "PSNR (dB)", "PSNR (dB) (card)", "SSIM", "SSIM (card)", "MSE",
                  "MSE (card)", "Dice", "Dice (card)", "clDice", "clDice (card)", "AUC", "AUC (card)", "HD95 (mm)",
                  "HD95 (mm) (card)"]


def test_quick_evaluation_table_from_hand_made_cards():
    cards = [vae_card(iou=0.34837, ap=0.47148, baseline_iou=0.27832),
             iwgan_card(cov=0.4375, mmd=0.85474, one_nna=0.875),
             cgan_card("car", "triple", avar=0.87424, one_nna=0.5375, cov=0.4, path="car"),
             cgan_card("airplane", "bce", avar=0.84733, one_nna=0.63125, cov=0.3125, path="air")]
    recomputed = {
        "air": {"data_here": True, "avar": 0.85594, "one_nna": 0.6, "cov": 0.35, "n_consistency": 200,
                "n_generated": 80, "n_real": 80},
        "car": {"data_here": False, "avar": 0.86851, "n_consistency": 200},  # no shapes: consistency only
        # 3D-IWGAN: not recomputed (no entry); 3D-VAE-IWGAN: the data is missing
        "modelnet10_chair/reconstruction.json": {"data_here": False},
    }
    table = reports.quick_evaluation_table(cards, recomputed, "cpu")
    assert list(table.columns) == ["system", "data", "model", "recomputed on", "card measured on", *METRIC_COLUMNS,
                                   "target", "meets target"]
    # rows: cGAN (by data, then loss order), 3D-IWGAN, 3D-VAE-IWGAN
    assert list(table["system"]) == ["voxel_cgan", "voxel_cgan", "iwgan", "vae_iwgan"]
    assert list(table["data"]) == ["SynthEVox3D airplane", "SynthEVox3D car", "SynthEVox3D chair", "ModelNet10 chair"]
    assert list(table["model"]) == ["BCE (3D-CGAN baseline)",
                                    "Triple: BCE + L1 + (BCEWithLogits + MSE) (0.4 + 0.3 + 0.3)",
                                    "3D-IWGAN generator", "3D-VAE-IWGAN encoder + generator"]
    assert list(table["recomputed on"]) == [
        "AVAR: 200 latents; COV, 1-NNA: 80 samples vs 80 real shapes (cpu budget)",
        "AVAR: 200 latents (cpu budget); SynthEVox3D car is not here, so nothing else",
        "not recomputed",
        "not recomputed: ModelNet10 chair is not here",
    ]
    assert list(table["card measured on"]) == [
        "AVAR: 1,000 latents; COV, 1-NNA: 80 samples vs 80 real shapes (full profile)",
        "AVAR: 1,000 latents; COV, 1-NNA: 80 samples vs 80 real shapes (full profile)",
        "16 samples vs 16 held-out shapes (full profile)",
        "126 test objects × 4 views; retrieval from 587 training objects × 8 views (full profile)",  # views: config
    ]
    air, car, gen, rec = (table.iloc[i] for i in range(4))
    # rounded to 3 decimals: 0.85594 -> 0.856, 0.63125 -> 0.631, 0.3125 -> 0.312 (half to even)
    assert (air["AVAR"], air["AVAR (card)"], air["1-NNA"], air["1-NNA (card)"], air["COV"], air["COV (card)"]) == (
        0.856, 0.847, 0.6, 0.631, 0.35, 0.312)
    assert car["AVAR"] == 0.869 and math.isnan(car["1-NNA"]) and car["1-NNA (card)"] == 0.538
    assert (gen["COV (card)"], gen["MMD (card)"], gen["1-NNA (card)"]) == (0.438, 0.855, 0.875)
    assert math.isnan(gen["COV"]) and math.isnan(gen["AVAR (card)"])  # not recomputed; no AVAR for 3D-IWGAN
    assert (rec["IoU (card)"], rec["AP (card)"], rec["retrieval IoU (card)"]) == (0.348, 0.471, 0.278)
    assert all(math.isnan(rec[c]) for c in METRIC_COLUMNS[:8])  # the generation metrics: not this system's
    # every row judged: airplane BCE and car Triple (seed 0.837) meet theirs, and so do the other two
    assert list(table["meets target"]) == [True, True, True, True]
    assert table["target"].iloc[1] == "1-NNA ≤ 0.90 and AVAR ≥ 0.837 (the seed's)"


def test_quick_evaluation_table_judges_the_card_and_rejects_unknown_systems():
    cards = [iwgan_card(one_nna=0.985), vae_card(iou=0.271, baseline_iou=0.383)]
    table = reports.quick_evaluation_table(cards, {}, "smoke")
    assert list(table["meets target"]) == [False, False]
    with pytest.raises(ValueError, match="no quick-evaluation metrics"):
        reports.quick_evaluation_table([{"system": "x2ct", "config": {"data": "procedural:ball"}}], {}, "cpu")


# --------------------------------------------------------------------------------------------------
# quick_metrics on the shipped weights
# --------------------------------------------------------------------------------------------------
def shipped(system_folder: str, name: str) -> dict:
    """A shipped card as the notebook reads it (with its path)."""
    folder = REPO / "models" / system_folder
    cards = reports.voxel_cgan_cards(folder) if system_folder == "voxel_cgan" else reports.iwgan_cards(folder)
    return next(c for c in cards.values() if c["path"].endswith(name))


def test_cgan_cards_are_kept_apart_by_number_of_conditions(tmp_path):
    for folder, n in (("airplane", 2), ("airplane_n4", 4), ("car", 2)):
        (tmp_path / folder).mkdir()
        card = cgan_card(folder.split("_")[0], "bce")
        card["config"]["n_conditions"] = n
        (tmp_path / folder / "bce.json").write_text(json.dumps(card))
    assert sorted(reports.voxel_cgan_cards(tmp_path)) == [("airplane", "bce"), ("car", "bce")]
    four = reports.voxel_cgan_cards(tmp_path, n_conditions=4)
    assert list(four) == [("airplane", "bce")] and four[("airplane", "bce")]["path"].endswith("airplane_n4/bce.json")
    (tmp_path / "airplane_again").mkdir()
    (tmp_path / "airplane_again" / "bce.json").write_text((tmp_path / "airplane" / "bce.json").read_text())
    with pytest.raises(ValueError, match="two cards for"):
        reports.voxel_cgan_cards(tmp_path)


def test_quick_metrics_without_data_recomputes_only_consistency(tmp_path):
    card = shipped("voxel_cgan", "airplane/bce_mse_60_40.json")
    m = reports.quick_metrics(card, "smoke", roots=[tmp_path])
    assert m["data_here"] is False and m["n_consistency"] == 16  # the smoke budget
    assert 0.5 < m["avar"] <= 1.0 and m["avar"] == pytest.approx(1 - m["aad"])
    assert "n_real" not in m and "one_nna" not in m
    assert reports.quick_metrics(shipped("iwgan", "synthevox3d_chair/generation.json"), "smoke",
                                 roots=[tmp_path]) == {"data_here": False}
    with pytest.raises(ValueError, match="no quick evaluation"):
        reports.quick_metrics({**card, "system": "x2ct"}, "smoke", roots=[tmp_path])


def test_quick_metrics_with_data_reproduces_the_iwgan_card(data_root):
    card = shipped("iwgan", "synthevox3d_airplane/generation.json")
    m = reports.quick_metrics(card, "cpu")  # cpu: up to 80 samples; 16 held-back shapes -> the card's protocol
    assert (m["n_generated"], m["n_real"]) == (16, 16)
    for key in ("cov", "mmd", "one_nna"):
        assert m[key] == pytest.approx(card["metrics"][key], abs=1e-6)
    small = reports.quick_metrics(card, "smoke")
    assert (small["n_generated"], small["n_real"]) == (8, 8)


def test_quick_metrics_reconstruction_on_a_few_views(data_root):
    card = shipped("iwgan", "modelnet10_chair/reconstruction.json")
    m = reports.quick_metrics(card, "smoke")
    assert (m["n_test"], m["n_test_views"], m["n_retrieval_views"], m["n_train"]) == (2, 2, 1, 587)
    assert m["threshold"] == card["metrics"]["threshold"]
    assert all(0.0 <= m[k] <= 1.0 for k in ("iou", "ap", "baseline_iou"))
