"""Segmentation metrics of system 5: hand-worked values, the empty cases, HD95 by brute force and against MONAI,
the per-organ table."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from scipy.spatial.distance import cdist

from voxhelpers.metrics.segmentation import (
    confusion_matrix,
    dice_per_class,
    hd95_per_class,
    iou_per_class,
    mean_iou,
    per_organ_table,
    segmentation_metrics,
    voxel_accuracy,
)

NAN = float("nan")
# one sample, 2 × 4 voxels, 3 classes
TRUTH = np.array([[[0, 0, 1, 1], [0, 2, 2, 2]]])
PRED = np.array([[[0, 1, 1, 1], [0, 0, 2, 2]]])
# class 0: T = 3, P = 3, TP = 2 → Dice 4/6 = 2/3,  IoU 2/4 = 1/2
# class 1: T = 2, P = 3, TP = 2 → Dice 4/5,        IoU 2/3
# class 2: T = 3, P = 2, TP = 2 → Dice 4/5,        IoU 2/3
# accuracy: 6 of 8 voxels agree = 3/4; mean IoU (1/2 + 2/3 + 2/3) / 3 = 11/18


def test_hand_worked_overlaps():
    cm = confusion_matrix(PRED, TRUTH, 3)
    assert cm.tolist() == [[[2, 1, 0], [0, 2, 0], [1, 0, 2]]]  # [truth, prediction]
    assert torch.allclose(dice_per_class(PRED, TRUTH, 3), torch.tensor([[2 / 3, 4 / 5, 4 / 5]], dtype=torch.float64))
    assert torch.allclose(iou_per_class(torch.as_tensor(PRED), torch.as_tensor(TRUTH), 3, include_background=False),
                          torch.tensor([[2 / 3, 2 / 3]], dtype=torch.float64))
    assert mean_iou(PRED, TRUTH, 3).item() == pytest.approx(11 / 18)
    assert voxel_accuracy(PRED, TRUTH).item() == pytest.approx(3 / 4)


def test_empty_cases_and_labelled_mask():
    # class 3 absent from both → NaN; class 4 in the truth only, class 5 in the prediction only → Dice 0, HD inf;
    # class 1 not labelled for this patient → NaN whatever the prediction (here it is perfect)
    truth = np.zeros((1, 4, 4, 4), dtype=np.int64)
    pred = truth.copy()
    truth[0, 0, 0, :2] = pred[0, 0, 0, :2] = 1
    truth[0, 3, 3, 3] = 4
    pred[0, 2, 2, 2] = 5
    labelled = np.array([[True, False, True, True, True, True]])
    dice = dice_per_class(pred, truth, 6, labelled=labelled)[0].tolist()
    assert np.isnan(dice[1]) and np.isnan(dice[2]) and np.isnan(dice[3]) and dice[4] == 0 and dice[5] == 0
    hd = hd95_per_class(pred, truth, 6, spacing=(1.0, 2.0, 3.0), labelled=labelled)[0].tolist()  # no background
    assert all(np.isnan(hd[:3])) and hd[3] == math.inf and hd[4] == math.inf
    # BraTS's worst case: the diagonal of the volume in mm, √((4·1)² + (4·2)² + (4·3)²) = √224
    hd = hd95_per_class(pred, truth, 6, spacing=(1.0, 2.0, 3.0), hd_empty="diagonal")[0].tolist()
    assert hd[3] == hd[4] == pytest.approx(math.sqrt(224)) and hd[0] == 0.0  # class 1 labelled by default: perfect
    # a sample where nothing applies: mean IoU NaN
    assert np.isnan(mean_iou(pred, truth, 6, include_background=False, labelled=np.zeros((1, 6), bool)).item())


def test_hd_single_voxels_hand_worked():
    # one voxel each: truth at (0, 0, 0), prediction at (3, 4, 0); each is its own surface
    truth, pred = np.zeros((1, 5, 5, 2), np.int64), np.zeros((1, 5, 5, 2), np.int64)
    truth[0, 0, 0, 0] = pred[0, 3, 4, 0] = 1
    assert hd95_per_class(pred, truth, 2).item() == pytest.approx(5.0)  # √(3² + 4²) voxels
    assert hd95_per_class(pred, truth, 2, spacing=(2.0, 1.0, 1.0)).item() == pytest.approx(math.sqrt(52))  # √(6²+4²)
    # per-sample spacings (B, 3)
    hd = hd95_per_class(np.concatenate([pred, pred]), np.concatenate([truth, truth]), 2,
                        spacing=[[1.0, 1.0, 1.0], [2.0, 1.0, 1.0]])
    assert hd[:, 0].tolist() == pytest.approx([5.0, math.sqrt(52)])


def _blobs(rng, b, c, shape, sigma=1.5):
    """Label maps of smooth regions: argmax over classes of smoothed noise (B, *shape) in [0, c)."""
    field = ndimage.gaussian_filter(rng.standard_normal((b, c, *shape)), (0, 0) + (sigma,) * len(shape))
    return field.argmax(1)


def _pair(seed=0, c=4, shape=(14, 12, 10)):
    rng = np.random.default_rng(seed)
    truth = _blobs(rng, 2, c, shape)
    pred = truth.copy()
    flip = rng.random(truth.shape) < 0.15
    pred[flip] = _blobs(rng, 2, c, shape)[flip]
    return pred, truth


def _edges(mask):
    return np.argwhere(mask & ~ndimage.binary_erosion(mask))


@pytest.mark.parametrize("mode", ["max", "pooled"])
def test_hd95_matches_brute_force(mode):
    pred, truth = _pair(seed=3)
    spacing = np.array([1.5, 0.8, 2.0])
    hd = hd95_per_class(pred, truth, 4, spacing=spacing, include_background=True, mode=mode).numpy()
    for b in range(2):
        for c in range(4):
            d = cdist(_edges(pred[b] == c) * spacing, _edges(truth[b] == c) * spacing)
            d_pt, d_tp = d.min(1), d.min(0)  # each surface voxel to the other surface
            expected = (max(np.percentile(d_pt, 95), np.percentile(d_tp, 95)) if mode == "max"
                        else np.percentile(np.concatenate([d_pt, d_tp]), 95))
            assert hd[b, c] == pytest.approx(expected, rel=1e-9)


def _onehot(x, c):
    return torch.nn.functional.one_hot(torch.as_tensor(x), c).movedim(-1, 1).float()


@pytest.mark.filterwarnings("ignore:the prediction of class:UserWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("include_background", [True, False])
def test_matches_monai(include_background):
    monai_metrics = pytest.importorskip("monai.metrics")
    pred, truth = _pair(seed=1, c=5)
    pred[0][pred[0] == 4] = 3  # sample 0: class 4 in the truth only
    p, t = _onehot(pred, 5), _onehot(truth, 5)
    kw = {"include_background": include_background, "reduction": "none"}
    dice = dice_per_class(pred, truth, 5, include_background).numpy()
    ref = monai_metrics.DiceMetric(**kw, ignore_empty=False)(p, t).numpy()
    assert not np.isnan(dice).any()  # every class is in the truth: our rules and MONAI's agree
    np.testing.assert_allclose(dice, ref, atol=1e-5)
    iou = iou_per_class(pred, truth, 5, include_background).numpy()
    np.testing.assert_allclose(iou, monai_metrics.MeanIoU(**kw, ignore_empty=False)(p, t).numpy(), atol=1e-5)
    spacing = [[1.5, 0.8, 2.0], [0.7, 0.7, 2.5]]  # per patient
    hd = hd95_per_class(pred, truth, 5, spacing=spacing, include_background=include_background).numpy()
    ref = monai_metrics.HausdorffDistanceMetric(**kw, percentile=95)(p, t, spacing=spacing).numpy()
    finite = np.isfinite(hd)
    assert (~finite).sum() == 1  # sample 0, class 4: missed → inf here
    np.testing.assert_allclose(hd[finite], ref[finite], rtol=1e-5, atol=1e-5)


def test_monai_empty_truth_differs():
    # documented difference: MONAI's default ignore_empty=True gives NaN to a class predicted but absent from the
    # truth (a false positive goes unpunished); ours gives Dice 0
    monai_metrics = pytest.importorskip("monai.metrics")
    truth, pred = np.zeros((1, 4, 4, 4), np.int64), np.zeros((1, 4, 4, 4), np.int64)
    pred[0, 0, 0, 0] = 1
    ref = monai_metrics.DiceMetric(reduction="none")(_onehot(pred, 2), _onehot(truth, 2))
    assert np.isnan(ref[0, 1].item()) and dice_per_class(pred, truth, 2)[0, 1].item() == 0.0


def test_segmentation_metrics_and_per_organ_table():
    pred, truth = _pair(seed=2)
    out = segmentation_metrics(pred, truth, 4, spacing=(1.0, 1.0, 2.0))
    assert set(out) == {"dice", "iou", "hd95", "mean_dice", "mean_iou", "accuracy"}
    assert out["dice"].shape == out["hd95"].shape == (2, 3) and out["accuracy"].shape == (2,)
    table = per_organ_table(out, ["liver", "kidney", "spleen"])
    assert list(table.index) == ["liver", "kidney", "spleen", "mean"]
    assert table.loc["liver", "dice_mean"] == pytest.approx(out["dice"][:, 0].mean().item())
    # a list of per-batch dicts is the same as one dict
    halves = [segmentation_metrics(pred[i:i + 1], truth[i:i + 1], 4, spacing=(1.0, 1.0, 2.0)) for i in range(2)]
    assert per_organ_table(halves, ["liver", "kidney", "spleen"]).equals(table)


def test_per_organ_table_hand_worked():
    results = {
        "dice": np.array([[1.0, NAN], [0.5, 0.2], [0.0, 0.4]]),
        "hd95": np.array([[2.0, NAN], [4.0, 1.0], [math.inf, 3.0]]),
        "accuracy": np.array([0.9, 0.8, 0.7]),  # not per organ: ignored
    }
    t = per_organ_table(results, ["a", "b"])
    # a: Dice (1, 0.5, 0) → mean 0.5, sample std 0.5; b: (0.2, 0.4), NaN skipped → 0.3 ± √0.02, n = 2
    assert t.loc["a", ["dice_mean", "dice_std", "dice_n"]].tolist() == pytest.approx([0.5, 0.5, 3])
    assert t.loc["b", ["dice_mean", "dice_std", "dice_n"]].tolist() == pytest.approx([0.3, math.sqrt(0.02), 2])
    # mean row: per patient (1, 0.35, 0.2) → mean 1.55 / 3
    assert t.loc["mean", "dice_mean"] == pytest.approx(1.55 / 3)
    # HD95 of a: the inf is left out of the mean (2, 4 → 3) and counted
    assert t.loc["a", ["hd95_mean", "hd95_n", "hd95_inf"]].tolist() == pytest.approx([3.0, 2, 1])
    assert t.loc["mean", "hd95_inf"] == 1 and "accuracy_mean" not in t.columns


def test_input_checks():
    with pytest.raises(TypeError, match="argmax"):
        dice_per_class(PRED.astype(float), TRUTH, 3)
    with pytest.raises(ValueError, match="one shape"):
        dice_per_class(PRED[..., :2], TRUTH, 3)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        iou_per_class(PRED, TRUTH, 2)
    with pytest.raises(ValueError, match="'max', 'pooled'"):
        hd95_per_class(PRED, TRUTH, 3, mode="mean")
    with pytest.raises(ValueError, match="'inf', 'diagonal'"):
        hd95_per_class(PRED, TRUTH, 3, hd_empty="nan")
    with pytest.raises(ValueError, match="spacing"):
        hd95_per_class(PRED, TRUTH, 3, spacing=(1.0, 1.0, 1.0))  # 2-D maps need 2 values
    with pytest.raises(ValueError, match=r"\(1, 3\)"):
        dice_per_class(PRED, TRUTH, 3, labelled=np.ones((1, 2), bool))
    with pytest.raises(ValueError, match="names"):
        per_organ_table({"dice": np.ones((2, 3))}, ["a", "b"])
