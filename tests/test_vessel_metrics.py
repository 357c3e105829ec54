"""Vessel metrics of system 4 against independent references (scikit-learn, scikit-image, hand-worked clDice), the
empty cases, per-image against pooled, the validation-only threshold, bad input, and the real DRIVE masks."""

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity
from skimage.morphology import skeletonize
from sklearn.metrics import accuracy_score, f1_score, recall_score, roc_auc_score

from voxhelpers.metrics.vessels import (
    VESSEL_METRICS,
    choose_vessel_threshold,
    cldice,
    counting_metrics,
    mask_cosine,
    mask_mse,
    mask_ssim,
    vessel_auc,
    vessel_counts,
    vessel_metrics,
    vessel_metrics_per_image,
)


def _case(seed, h=24, w=20, fov=False):
    """A random truth, a probability map correlated with it (quantised to force ties), an optional disc FOV."""
    rng = np.random.default_rng(seed)
    truth = (rng.random((h, w)) > 0.7).astype(np.uint8)
    prob = np.clip(0.35 * truth + rng.random((h, w)) * 0.65, 0, 1).round(2)
    if not fov:
        return prob, truth, None
    yy, xx = np.mgrid[:h, :w]
    return prob, truth, (((yy - h / 2) ** 2 + (xx - w / 2) ** 2) < (min(h, w) / 2.2) ** 2).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# one image, against scikit-learn
# --------------------------------------------------------------------------------------------------
def test_counts_hand_worked():
    truth = np.array([[1, 1, 0, 0], [0, 1, 0, 0]])
    pred = np.array([[1, 0, 1, 0], [0, 1, 0, 0]])
    # TP 2 (0,0)(1,1), FP 1 (0,2), FN 1 (0,1), TN 4 → Dice 4/6, acc 6/8, sens 2/3, spec 4/5
    assert vessel_counts(pred, truth) == (2, 1, 1, 4)
    m = counting_metrics(*vessel_counts(pred, truth))
    assert m == pytest.approx({"dice": 2 / 3, "accuracy": 3 / 4, "sensitivity": 2 / 3, "specificity": 4 / 5})
    fov = np.array([[1, 1, 0, 1], [1, 1, 1, 1]])  # drops the FP at (0, 2)
    assert vessel_counts(pred, truth, fov) == (2, 0, 1, 4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_counting_metrics_and_auc_match_sklearn(seed):
    prob, truth, fov = _case(seed, fov=True)
    pred = prob > 0.5
    f = fov.astype(bool)
    m = counting_metrics(*vessel_counts(pred, truth, fov))
    yt, yp = truth[f], pred[f].astype(int)
    assert m["dice"] == pytest.approx(f1_score(yt, yp))
    assert m["accuracy"] == pytest.approx(accuracy_score(yt, yp))
    assert m["sensitivity"] == pytest.approx(recall_score(yt, yp))
    assert m["specificity"] == pytest.approx(recall_score(yt, yp, pos_label=0))
    # AUC: rank statistic with ties (probabilities rounded to 0.01) against sklearn's trapezoid ROC
    assert vessel_auc(prob, truth, fov) == pytest.approx(roc_auc_score(yt, prob[f]), abs=1e-12)
    assert vessel_auc(prob, truth) == pytest.approx(roc_auc_score(truth.ravel(), prob.ravel()), abs=1e-12)
    # outside the FOV does not count: scramble it, nothing changes
    scrambled = np.where(f, prob, 1 - prob)
    assert vessel_auc(scrambled, truth, fov) == vessel_auc(prob, truth, fov)


# --------------------------------------------------------------------------------------------------
# clDice, hand-worked
# --------------------------------------------------------------------------------------------------
def test_cldice_one_pixel_lines():
    # 1-pixel lines are their own skeletons; truth: row 2, cols 1..10 (10 px); prediction: row 2 cols 1..5 on the
    # truth + row 5 cols 1..5 off it (10 px). Tprec = |S(P) ∩ T| / |S(P)| = 5/10, Tsens = |S(T) ∩ P| / |S(T)| = 5/10
    # → clDice = 2 · 0.25 / 1 = 0.5
    truth = np.zeros((8, 12), np.uint8)
    truth[2, 1:11] = 1
    pred = np.zeros_like(truth)
    pred[2, 1:6] = pred[5, 1:6] = 1
    assert np.array_equal(skeletonize(truth.astype(bool)), truth.astype(bool))
    assert cldice(pred, truth) == pytest.approx(0.5)


def test_cldice_rewards_the_centreline_where_dice_does_not():
    # truth: a 3-wide vessel, rows 1..3, cols 1..10 (30 px); prediction: its centre line, row 2, cols 1..10 (10 px)
    # Dice = 2·10 / (30 + 10) = 0.5. scikit-image's skeleton of the bar is row 2 cols 1..8 plus (1, 9): 9 px,
    # 8 of them on the prediction. Tprec = 10/10 (the prediction is its own skeleton, inside T), Tsens = 8/9
    # → clDice = 2 · (8/9) / (1 + 8/9) = 16/17
    truth = np.zeros((5, 12), np.uint8)
    truth[1:4, 1:11] = 1
    pred = np.zeros_like(truth)
    pred[2, 1:11] = 1
    expected_skeleton = np.zeros((5, 12), bool)
    expected_skeleton[2, 1:9] = expected_skeleton[1, 9] = True
    assert np.array_equal(skeletonize(truth.astype(bool)), expected_skeleton)
    assert counting_metrics(*vessel_counts(pred, truth))["dice"] == pytest.approx(0.5)
    assert cldice(pred, truth) == pytest.approx(16 / 17)
    assert cldice(truth, pred) == pytest.approx(16 / 17)  # symmetric: the harmonic mean swaps Tprec and Tsens
    assert cldice(truth, truth) == 1.0


def test_cldice_sees_a_broken_vessel():
    # truth: a 3-wide bar; prediction: the same bar cut by a 1-column gap at col 5. Dice barely moves
    # (2·27 / (27 + 30) = 0.947) but the true skeleton crosses the gap: Tsens = 8/9 (one skeleton pixel, (2, 5),
    # lies in the gap; the skeleton is the one of the previous test), Tprec = 1 → clDice 16/17 = 0.941
    truth = np.zeros((5, 12), np.uint8)
    truth[1:4, 1:11] = 1
    pred = truth.copy()
    pred[:, 5] = 0
    assert counting_metrics(*vessel_counts(pred, truth))["dice"] == pytest.approx(54 / 57)
    assert cldice(pred, truth) == pytest.approx(16 / 17)


# --------------------------------------------------------------------------------------------------
# the seed's three
# --------------------------------------------------------------------------------------------------
def test_mse_cosine_ssim_hand_and_reference():
    prob, truth, _ = _case(3)
    pred = (prob > 0.5).astype(np.uint8)
    # MSE of {0, 1} maps = fraction of pixels that disagree = 1 − accuracy (no FOV)
    assert mask_mse(pred, truth) == pytest.approx(1 - accuracy_score(truth.ravel(), pred.ravel()))
    # cosine: P 4 px, T 9 px, overlap 3 → 3 / √(4·9) = 0.5
    p = np.zeros((6, 6), np.uint8)
    t = np.zeros((6, 6), np.uint8)
    p[0, :4] = 1
    t[0, :3] = t[1, :3] = t[2, :3] = 1
    assert mask_cosine(p, t) == pytest.approx(0.5)
    # SSIM on {0, 1} with data_range 1 = the seed's {0, 255} maps with data_range 255
    ref = structural_similarity(pred * 255.0, truth * 255.0, data_range=255)
    assert mask_ssim(pred, truth) == pytest.approx(ref, abs=1e-12)
    # the pitfall this avoids: {0, 1} maps with data_range 255 look almost identical
    inflated = structural_similarity(pred.astype(float), truth.astype(float), data_range=255)
    assert inflated > 0.99 > mask_ssim(pred, truth)
    assert mask_ssim(truth, truth) == 1.0
    with pytest.raises(ValueError, match="at least 7×7"):
        mask_ssim(p[:5, :5], t[:5, :5])


def test_fov_zeroes_outside_for_the_picture_metrics():
    truth = np.zeros((8, 8), np.uint8)
    truth[2:6, 3] = 1
    pred = truth.copy()
    pred[0, 0] = 1  # a false vessel outside the field of view
    fov = np.ones((8, 8), np.uint8)
    fov[0, 0] = 0
    assert mask_mse(pred, truth) == pytest.approx(1 / 64) and mask_mse(pred, truth, fov) == 0.0
    assert mask_cosine(pred, truth, fov) == 1.0 and cldice(pred, truth, fov) == 1.0
    assert mask_ssim(pred, truth, fov) == 1.0


def test_empty_cases_follow_the_table():
    empty = np.zeros((8, 8), np.uint8)
    vessel = empty.copy()
    vessel[3, 1:7] = 1
    # E / E
    row = vessel_metrics_per_image([empty.astype(float)], [empty]).iloc[0]
    assert math.isnan(row.dice) and math.isnan(row.cldice) and math.isnan(row.sensitivity) and math.isnan(row.auc)
    assert math.isnan(row.cosine) and row.specificity == 1 and row.accuracy == 1 and row.mse == 0 and row.ssim == 1
    # E truth / vessels predicted
    row = vessel_metrics_per_image([vessel.astype(float)], [empty]).iloc[0]
    assert row.dice == 0 and row.cldice == 0 and row.cosine == 0 and math.isnan(row.sensitivity)
    assert math.isnan(row.auc) and row.specificity == pytest.approx(58 / 64)
    # vessels / E predicted
    row = vessel_metrics_per_image([empty.astype(float)], [vessel]).iloc[0]
    assert row.dice == 0 and row.cldice == 0 and row.cosine == 0 and row.sensitivity == 0 and row.specificity == 1
    assert row.auc == 0.5  # every score tied
    # every FOV pixel a vessel: specificity and AUC undefined
    m = counting_metrics(*vessel_counts(vessel, vessel, fov=vessel))
    assert m["dice"] == 1 and math.isnan(m["specificity"])
    assert math.isnan(vessel_auc(vessel.astype(float), vessel, fov=vessel))
    with pytest.raises(ValueError, match="fov is empty"):
        vessel_counts(vessel, vessel, fov=empty)


# --------------------------------------------------------------------------------------------------
# a split: per image, averaged, pooled
# --------------------------------------------------------------------------------------------------
def test_split_means_and_pooled_against_sklearn():
    cases = [_case(s, h, w, fov=True) for s, (h, w) in enumerate([(24, 20), (30, 28), (16, 16)])]  # sizes differ
    probs, truths, fovs = ([c[i] for c in cases] for i in range(3))
    table = vessel_metrics_per_image(probs, truths, fovs, threshold=0.5, names=["a", "b", "c"])
    assert list(table.columns) == ["name", *VESSEL_METRICS, "tp", "fp", "fn", "tn"] and list(table.name) == ["a",
                                                                                                            "b", "c"]
    f1s, aucs = [], []
    for p, t, f in cases:
        f = f.astype(bool)
        f1s.append(f1_score(t[f], (p[f] > 0.5).astype(int)))
        aucs.append(roc_auc_score(t[f], p[f]))
    assert table.dice.tolist() == pytest.approx(f1s) and table.auc.tolist() == pytest.approx(aucs)
    s = vessel_metrics(probs, truths, fovs, threshold=0.5)
    assert s["dice"] == pytest.approx(np.mean(f1s)) and s["auc"] == pytest.approx(np.mean(aucs))
    assert s["cldice"] == pytest.approx(table.cldice.mean()) and s["ssim"] == pytest.approx(table.ssim.mean())
    pooled_t = np.concatenate([t[f.astype(bool)] for _, t, f in cases])
    pooled_p = np.concatenate([p[f.astype(bool)] for p, _, f in cases])
    assert s["dice_pooled"] == pytest.approx(f1_score(pooled_t, (pooled_p > 0.5).astype(int)))
    assert s["accuracy_pooled"] == pytest.approx(accuracy_score(pooled_t, (pooled_p > 0.5).astype(int)))
    assert s["auc_pooled"] == pytest.approx(roc_auc_score(pooled_t, pooled_p))
    assert s["dice_pooled"] != pytest.approx(s["dice"])  # the two averages are different numbers
    assert (s["n_images"], s["n_dice"], s["threshold"]) == (3, 3, 0.5)
    # an (N, 1, H, W) tensor split gives the same numbers as a list of (H, W) arrays
    same = [_case(s, 16, 16) for s in range(3)]
    as_list = vessel_metrics([c[0] for c in same], [c[1] for c in same])
    as_tensor = vessel_metrics(torch.tensor(np.stack([c[0] for c in same]))[:, None],
                               torch.tensor(np.stack([c[1] for c in same]))[:, None])
    assert as_list == pytest.approx(as_tensor)


def test_means_skip_images_without_a_defined_value():
    empty = np.zeros((8, 8), np.uint8)
    vessel = empty.copy()
    vessel[2:6, 4] = 1
    s = vessel_metrics([empty.astype(float), vessel.astype(float)], [empty, vessel])
    assert s["dice"] == 1.0 and s["n_dice"] == 1 and s["n_images"] == 2  # the empty/empty image has no Dice


def test_threshold_chosen_on_validation_only():
    # vessels scored 0.6, background 0.3 or 0.1: any threshold in [0.30, 0.60) separates them perfectly; the
    # lowest candidate doing so (ties → lowest) is 0.30, since binarisation is prob > threshold
    truth = np.zeros((10, 10), np.uint8)
    truth[2:8, 4:6] = 1
    prob = np.where(truth == 1, 0.6, 0.3)
    prob[0] = 0.1
    best, scores = choose_vessel_threshold([prob], [truth])
    assert best == pytest.approx(0.3) and scores[0.3] == 1.0 and scores[0.25] < 1.0 and scores[0.6] < 1.0
    assert choose_vessel_threshold([prob], [truth], average="pooled")[0] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="never on test"):
        choose_vessel_threshold([prob], [truth], split="test")
    with pytest.raises(ValueError, match="average must be"):
        choose_vessel_threshold([prob], [truth], average="median")
    with pytest.raises(ValueError, match="no image of the split has a defined Dice"):
        choose_vessel_threshold([np.zeros((8, 8))], [np.zeros((8, 8), np.uint8)])


def test_threshold_scores_mean_and_pooled_hand_worked():
    # image A: 1 vessel pixel scored 0.9, 3 background pixels scored 0.4; image B: 20 vessel pixels scored 0.4.
    # t = 0.35: A Dice 2/(2+3) = 0.4, B 1 → mean 0.7; pooled TP 21, FP 3 → 42/45 = 0.933
    # t = 0.40 (prob > t): A 1, B 0 → mean 0.5; pooled TP 1, FN 20 → 2/22 = 0.091
    a_t = np.zeros((8, 8), np.uint8)
    a_t[0, 0] = 1
    a_p = np.zeros((8, 8))
    a_p[0, 0], a_p[1, :3] = 0.9, 0.4
    b_t = np.zeros((8, 8), np.uint8)
    b_t[2:7, 2:6] = 1
    b_p = np.where(b_t == 1, 0.4, 0.0)
    _, mean_scores = choose_vessel_threshold([a_p, b_p], [a_t, b_t], thresholds=(0.35, 0.4))
    _, pooled_scores = choose_vessel_threshold([a_p, b_p], [a_t, b_t], thresholds=(0.35, 0.4), average="pooled")
    assert mean_scores == pytest.approx({0.35: 0.7, 0.4: 0.5})
    assert pooled_scores == pytest.approx({0.35: 42 / 45, 0.4: 2 / 22})


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------
def test_bad_input_names_what_was_expected():
    prob, truth, _ = _case(0, 8, 8)
    with pytest.raises(ValueError, match="binary mask \\{0, 1\\}.*divide a \\{0, 255\\}"):
        vessel_metrics([prob], [truth * 255])
    with pytest.raises(ValueError, match="probabilities in \\[0, 1\\].*\\(x \\+ 1\\) / 2"):
        vessel_metrics([prob * 2 - 1], [truth])
    nan = prob.copy()
    nan[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        vessel_auc(nan, truth)
    with pytest.raises(ValueError, match="same \\(H, W\\)"):
        vessel_metrics([prob], [truth[:7]])
    with pytest.raises(ValueError, match="same number of images"):
        vessel_metrics([prob, prob], [truth])
    with pytest.raises(ValueError, match="fovs\\[0\\] must have the image's shape"):
        vessel_metrics([prob], [truth], [np.ones((7, 8), np.uint8)])
    with pytest.raises(ValueError, match="probs is empty"):
        vessel_metrics([], [])
    with pytest.raises(ValueError, match="one 2-D image"):
        vessel_counts(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="threshold must be a number in \\[0, 1\\]"):
        vessel_metrics([prob], [truth], threshold=1.5)
    with pytest.raises(TypeError, match="list of \\(H, W\\) images"):
        vessel_metrics("probs.png", [truth])
    with pytest.raises(ValueError, match="names must hold one name per image"):
        vessel_metrics_per_image([prob], [truth], names=["a", "b"])


# --------------------------------------------------------------------------------------------------
# the real DRIVE masks
# --------------------------------------------------------------------------------------------------
def test_real_drive_masks_against_themselves_and_a_thinned_copy(data_root):
    if not (data_root / "drive").is_dir():
        pytest.skip("DRIVE (drive/) is not under the real data root")
    from scipy import ndimage

    from voxhelpers.data.retina import load_drive

    samples = load_drive("test", channels=3)[:2]
    truths, fovs = [s.mask for s in samples], [s.fov for s in samples]
    perfect = vessel_metrics([t.astype(float) for t in truths], truths, fovs)
    assert all(perfect[k] == 1.0 for k in ("dice", "cldice", "auc", "accuracy", "sensitivity", "specificity",
                                           "ssim", "cosine", "dice_pooled", "auc_pooled"))
    assert perfect["mse"] == 0.0
    # an eroded prediction (inside the truth) loses the thin vessels: sensitivity drops, specificity stays 1, and
    # the AUC of a binary score is (sensitivity + specificity) / 2, image by image
    eroded = [ndimage.binary_erosion(t, np.ones((2, 2))).astype(float) for t in truths]
    s = vessel_metrics(eroded, truths, fovs)
    assert s["specificity"] == 1.0 and s["sensitivity"] < 0.8 and s["dice"] < 0.9 and s["cldice"] < 1.0
    assert s["auc"] == pytest.approx((s["sensitivity"] + 1) / 2)
