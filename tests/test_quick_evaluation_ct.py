"""Systems 3 and 5 in the quick evaluation (voxhelpers.reports.ct and the quick table): the card listing, the targets
on hand-made cards, the protocols in words, the table's rows, the missing-OpenKBP path, and the recomputation on the
shipped weights (2 patients each; a few seconds on CPU)."""

import math
from pathlib import Path

import pandas as pd
import pytest

from voxhelpers import reports
from voxhelpers.data.ct import OPENKBP_HOW_TO_GET

REPO = Path(__file__).resolve().parents[1]
CT_COLUMNS = ["MAE (HU)", "MAE (HU) (card)", "PSNR (dB)", "PSNR (dB) (card)", "SSIM", "SSIM (card)", "Dice",
              "Dice (card)", "HD95 (mm)", "HD95 (mm) (card)"]
# the shipped GAN card's baselines (models/xray_ct/generator.json), rounded
BASELINES = {"mean_ct_mae": 170.85, "mean_ct_psnr": 16.70, "mean_ct_psnr_slices": 17.51, "mean_ct_ssim": 0.538,
             "mean_ct_cosine": 0.771, "backprojection_mae": 192.26, "backprojection_psnr": 17.17,
             "backprojection_psnr_slices": 20.57, "backprojection_ssim": 0.331, "backprojection_cosine": 0.759}
GOOD_XRAY = {"mae": 68.34, "psnr": 22.38, "psnr_slices": 24.33, "ssim": 0.7128, "cosine": 0.928}


def xray_card(adv_weight=0.1, path="xray_ct/generator.json", **metrics):
    """A hand-made X-ray → CT card: the cpu profile's 33 test patients, the given metrics."""
    return {"system": "xray_ct", "profile": "cpu", "path": path,
            "config": {"data": "openkbp", "adv_weight": adv_weight}, "metrics": {"n_test": 33.0, **metrics}}


def vnet_card(mean_dice, path="vnet/vnet_fold0.json", **metrics):
    return {"system": "vnet", "profile": "cpu", "path": path, "config": {"data": "openkbp", "fold": 0, "n_folds": 5},
            "metrics": {"n_cases": 40.0, "mean_dice": mean_dice, **metrics}}


# --------------------------------------------------------------------------------------------------
# the cards and the targets
# --------------------------------------------------------------------------------------------------
def test_ct_cards_lists_the_shipped_xray_and_vnet_cards():
    cards = reports.ct_cards(REPO / "models")
    assert sorted(cards) == [("vnet", "vnet_fold0"), ("xray_ct", "generator"), ("xray_ct", "generator_no_gan")]
    assert cards[("xray_ct", "generator_no_gan")]["path"] == str(REPO / "models/xray_ct/generator_no_gan.json")
    assert cards[("xray_ct", "generator_no_gan")]["config"]["adv_weight"] == 0.0
    assert reports.ct_cards(REPO / "models" / "voxel_cgan") == {}  # other systems' cards are not listed


def test_xray_target_is_beating_both_baselines_on_every_metric():
    assert reports.xray_ct_meets_target({**GOOD_XRAY, **BASELINES}) is True
    # one comparison lost is enough to fail: SSIM 0.5 is above back-projection's 0.331 but below mean CT's 0.538
    assert reports.xray_ct_meets_target({**GOOD_XRAY, "ssim": 0.5, **BASELINES}) is False
    # MAE is lower-is-better: 180 HU is worse than mean CT's 170.85; a tie (cosine 0.771) is not a win either
    assert reports.xray_ct_meets_target({**GOOD_XRAY, "mae": 180.0, **BASELINES}) is False
    assert reports.xray_ct_meets_target({**GOOD_XRAY, "cosine": 0.771, **BASELINES}) is False
    # a baseline or a metric missing, or NaN: not judged a pass
    assert reports.xray_ct_meets_target(GOOD_XRAY) is False
    assert reports.xray_ct_meets_target({**GOOD_XRAY, **BASELINES, "psnr": float("nan")}) is False
    assert reports.xray_ct_meets_target({k: v for k, v in {**GOOD_XRAY, **BASELINES}.items()
                                         if k != "backprojection_cosine"}) is False


@pytest.mark.parametrize(("dice", "met"), [(0.703, False), (0.7499, False), (0.75, True), (0.82, True),
                                           (float("nan"), False), (None, False)])
def test_vnet_target_is_mean_dice_at_least_075(dice, met):
    assert reports.vnet_meets_target({} if dice is None else {"mean_dice": dice}) is met


def test_card_target_words_and_verdicts_for_the_ct_systems():
    words, met = reports.card_target(xray_card(**GOOD_XRAY, **BASELINES))
    # the best baseline per metric: mean CT's MAE 170.85 and SSIM 0.538, back-projection's PSNR 17.17
    assert words == ("beats mean CT and back-projection on MAE, PSNR, SSIM and cosine (best baseline: 170.8 HU, "
                     "17.2 dB, SSIM 0.538)") and met is True
    assert reports.card_target(xray_card(**{**GOOD_XRAY, "ssim": 0.5}, **BASELINES))[1] is False
    assert reports.card_target(vnet_card(0.703)) == ("mean Dice ≥ 0.75", False)
    assert reports.card_target(vnet_card(0.76)) == ("mean Dice ≥ 0.75", True)
    # the shipped cards: both X-ray generators beat both baselines; the VNet's mean Dice (about 0.70) is short of 0.75
    shipped = reports.ct_cards(REPO / "models")
    assert [reports.card_target(c)[1] for c in shipped.values()] == [False, True, True]


def test_describe_protocol_for_the_ct_systems():
    assert reports.describe_protocol("xray_ct", {"n_test": 33.0}) == "33 test patients × 2 rendered views"
    assert reports.describe_protocol("xray_ct", {"n_test": 1}) == "1 test patient × 2 rendered views"
    assert reports.describe_protocol("vnet", {"n_cases": 40.0, "fold": 0}) == (
        "40 held-out patients of fold 0, whole volumes")
    assert reports.describe_protocol("vnet", {"n_cases": 2}) == "2 held-out patients, whole volumes"
    assert reports.describe_protocol("xray_ct", {"mae": 60.0}) == ""  # no counts: nothing measured
    assert reports.describe_protocol("vnet", {}) == ""


def test_data_title_for_ct_sources():
    assert reports.data_title("openkbp") == "OpenKBP head-and-neck CT"
    assert reports.data_title("openkbp:validation") == "OpenKBP head-and-neck CT (validation split)"
    assert reports.data_title("flare22:/data/flare") == "FLARE22 abdominal CT in /data/flare"


@pytest.mark.parametrize(("profile", "n"), [("smoke", 2), ("cpu", 6), ("full", None)])
def test_ct_eval_cases_per_profile(profile, n):
    assert reports.ct_eval_cases(profile) == n


# --------------------------------------------------------------------------------------------------
# the one results table
# --------------------------------------------------------------------------------------------------
def test_quick_evaluation_table_rows_for_xray_and_vnet():
    cards = [vnet_card(0.70299, mean_hd95=19.0906, path="seg_fail"), vnet_card(0.8, mean_hd95=9.0, path="seg_pass"),
             xray_card(0.0, "xray_ct/generator_no_gan.json", **{**GOOD_XRAY, "ssim": 0.3}, **BASELINES),  # fails SSIM
             xray_card(0.1, "xray_ct/generator.json", **GOOD_XRAY, **BASELINES),
             {"system": "iwgan", "profile": "full", "path": "gen", "config": {"data": "synthevox3d:chair"},
              "metrics": {"one_nna": 0.8}}]
    recomputed = {
        "xray_ct/generator.json": {"data_here": True, "n_test": 2, "mae": 64.85135, "psnr": 22.7665, "ssim": 0.72619},
        "seg_fail": {"data_here": True, "n_cases": 2.0, "fold": 0, "mean_dice": 0.73625, "mean_hd95": 22.88736},
        "seg_pass": {"data_here": False},  # OpenKBP missing: nothing recomputed, the card's numbers kept
    }
    table = reports.quick_evaluation_table(cards, recomputed, "smoke")
    assert set(CT_COLUMNS) <= set(table.columns)
    assert list(table.columns)[-2:] == ["target", "meets target"]
    # after the voxel systems: the X-ray GAN, its no-GAN ablation, then the segmenters (by card path)
    assert list(table["system"]) == ["iwgan", "xray_ct", "xray_ct", "vnet", "vnet"]
    assert list(table["model"])[1:] == ["X-ray → CT generator (GAN)", "X-ray → CT generator, no GAN (ablation)",
                                        "VNet, fold 0 of 5", "VNet, fold 0 of 5"]
    assert set(table["data"][1:]) == {"OpenKBP head-and-neck CT"}
    assert list(table["recomputed on"])[1:] == [
        "2 test patients × 2 rendered views (smoke budget)", "not recomputed",
        "2 held-out patients of fold 0, whole volumes (smoke budget)",
        "not recomputed: OpenKBP head-and-neck CT is not here"]
    assert list(table["card measured on"])[1:] == ["33 test patients × 2 rendered views (cpu profile)"] * 2 + [
        "40 held-out patients of fold 0, whole volumes (cpu profile)"] * 2
    gan, no_gan, seg_fail, seg_pass = (table.iloc[i] for i in range(1, 5))
    # rounded to 3 decimals: 64.85135 -> 64.851, 22.7665 -> 22.766 (binary float below the half), 0.70299 -> 0.703
    assert (gan["MAE (HU)"], gan["MAE (HU) (card)"], gan["PSNR (dB)"], gan["SSIM"], gan["SSIM (card)"]) == (
        64.851, 68.34, 22.766, 0.726, 0.713)
    assert (seg_fail["Dice"], seg_fail["Dice (card)"], seg_fail["HD95 (mm)"], seg_fail["HD95 (mm) (card)"]) == (
        0.736, 0.703, 22.887, 19.091)
    assert math.isnan(seg_pass["Dice"]) and seg_pass["Dice (card)"] == 0.8  # missing data: the card's row stays
    assert math.isnan(no_gan["MAE (HU)"]) and no_gan["SSIM (card)"] == 0.3
    assert all(math.isnan(gan[c]) for c in ("Dice", "Dice (card)", "AVAR", "IoU (card)"))  # not this system's
    assert all(math.isnan(seg_fail[c]) for c in ("MAE (HU) (card)", "SSIM", "1-NNA (card)"))
    # one passing and one failing card per system, judged on the card's numbers
    assert list(table["meets target"]) == [True, True, False, False, True]
    assert table["target"].iloc[3] == "mean Dice ≥ 0.75"


# --------------------------------------------------------------------------------------------------
# OpenKBP missing, then present by name
# --------------------------------------------------------------------------------------------------
def test_missing_openkbp_is_named_with_where_to_get_it(tmp_path):
    cards = list(reports.ct_cards(REPO / "models").values())
    assert reports.data_status(cards, roots=[tmp_path]) == [f"OpenKBP head-and-neck CT: missing. {OPENKBP_HOW_TO_GET}"]
    assert not any(reports.card_data_here(c, roots=[tmp_path]) for c in cards)
    # nothing recomputed: the weights load (sha256 checked), the data check says no, and the table keeps the cards
    recomputed = {c["path"]: reports.quick_metrics(c, "smoke", roots=[tmp_path]) for c in cards}
    assert list(recomputed.values()) == [{"data_here": False}] * 3
    table = reports.quick_evaluation_table(cards, recomputed, "smoke")
    assert set(table["recomputed on"]) == {"not recomputed: OpenKBP head-and-neck CT is not here"}
    dice = round(cards[0]["metrics"]["mean_dice"], 3)  # the shipped VNet card's (about 0.70)
    assert list(table["Dice (card)"].dropna()) == [dice] and list(table["MAE (HU) (card)"].dropna()) == [67.253, 61.25]
    assert list(table["meets target"]) == [True, True, False]
    # the listing needs patients (by file name) in the splits each system reads: X-ray → CT train + validation
    (tmp_path / "openkbp" / "train").mkdir(parents=True)
    (tmp_path / "openkbp" / "train" / "pt_1.npz").write_bytes(b"")
    xray, vnet = cards[1], cards[0]
    assert reports.card_data_here(vnet, roots=[tmp_path]) and not reports.card_data_here(xray, roots=[tmp_path])
    (tmp_path / "openkbp" / "validation").mkdir()
    (tmp_path / "openkbp" / "validation" / "pt_201.npz").write_bytes(b"")
    assert reports.data_status(cards, roots=[tmp_path]) == ["OpenKBP head-and-neck CT: here"]


def test_data_status_mixes_voxel_and_ct_datasets(tmp_path):
    cards = [{"system": "iwgan", "config": {"data": "modelnet10:chair"}}, *reports.ct_cards(REPO / "models").values()]
    (tmp_path / "modelnet10").mkdir()
    (tmp_path / "modelnet10" / "chair.npy.gz").write_bytes(b"")
    assert reports.data_status(cards, roots=[tmp_path]) == [
        "ModelNet10 chair: here", f"OpenKBP head-and-neck CT: missing. {OPENKBP_HOW_TO_GET}"]


# --------------------------------------------------------------------------------------------------
# recomputation on the shipped weights and the real patients
# --------------------------------------------------------------------------------------------------
def test_quick_metrics_vnet_reproduces_the_cards_per_case_rows(data_root):
    card = reports.ct_cards(REPO / "models")[("vnet", "vnet_fold0")]
    m = reports.quick_metrics(card, "smoke")
    assert m["data_here"] is True and (m["n_cases"], m["fold"]) == (2, 0)
    # the first two of fold 0's validation patients are the first two rows of the card's per-case file
    rows = pd.read_csv(REPO / "models" / "vnet" / "vnet_fold0.cases.csv").iloc[:2]
    assert [c.name for c in reports.held_out_cases(card, 2)] == list(rows["case"])
    assert m["mean_dice"] == pytest.approx(rows["mean_dice"].mean(), abs=2e-3)
    for organ in ("SpinalCord", "Mandible"):
        assert m[f"dice_{organ}"] == pytest.approx(rows[f"dice_{organ}"].mean(), abs=2e-3)


def test_quick_metrics_xray_on_two_test_patients(data_root):
    cards = reports.ct_cards(REPO / "models")
    for key in ("generator", "generator_no_gan"):
        card = cards[("xray_ct", key)]
        m = reports.quick_metrics(card, "smoke")
        assert m["data_here"] is True and m["n_test"] == 2
        assert set(m) == {"data_here", "n_test", "mae", "psnr", "psnr_slices", "ssim", "cosine"}  # no baselines
        # two patients are not the card's 33, but the generator still beats the card's baselines on them
        assert 0 < m["mae"] < card["metrics"]["mean_ct_mae"] and m["psnr"] > card["metrics"]["backprojection_psnr"]
        assert card["metrics"]["mean_ct_ssim"] < m["ssim"] <= 1
    cube = reports.held_out_cases(cards[("xray_ct", "generator")], 1)[0]
    assert cube.name == "pt_201" and cube.ct.shape == (1, 64, 64, 64)  # OpenKBP's first validation patient
