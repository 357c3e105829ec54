"""Tests for voxhelpers.metrics: hand cases, independent oracles (scipy, sklearn, brute force) and bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from sklearn.model_selection import LeaveOneOut, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from voxhelpers import metrics as M
from voxhelpers.metrics import voxel_sets as VS


def _random_set(rng: np.random.Generator, n: int, size: int, densities=(0.1, 0.3, 0.5, 0.7)) -> np.ndarray:
    """n random bool grids (n, size, size, size), densities cycling through ``densities``."""
    p = np.array([densities[i % len(densities)] for i in range(n)])[:, None, None, None]
    return rng.random((n, size, size, size)) < p


def _hand_pair() -> tuple[np.ndarray, np.ndarray]:
    """2x2x2 grids: A occupies 3 voxels, B occupies 2, they share 1."""
    a = np.zeros((1, 2, 2, 2), dtype=bool)
    b = np.zeros((1, 2, 2, 2), dtype=bool)
    a[0, 0, 0, 0] = a[0, 0, 0, 1] = a[0, 0, 1, 0] = True
    b[0, 0, 0, 0] = b[0, 1, 1, 1] = True
    return a, b


def _brute_one_nna(d_gg: np.ndarray, d_gr: np.ndarray, d_rr: np.ndarray) -> float:
    """Leave-one-out 1-NN on the full matrix; np.argmin returns the first (lowest-index) minimum."""
    n, m = d_gr.shape
    full = np.block([[d_gg, d_gr], [d_gr.T, d_rr]]).astype(np.float64)
    np.fill_diagonal(full, np.inf)
    labels = np.r_[np.ones(n, dtype=bool), np.zeros(m, dtype=bool)]
    return float(np.mean(labels[np.argmin(full, axis=1)] == labels))


# --------------------------------------------------------------------------------------------------
# Hand-computed cases
# --------------------------------------------------------------------------------------------------
def test_hand_case_iou_aad_avar_dice():
    a, b = _hand_pair()
    # |A∩B| = 1, |A∪B| = 3 + 2 - 1 = 4  ->  IoU = 1/4, AAD = 1 - 1/4 = 3/4 (= |A xor B| / |A∪B| = 3/4),
    # AVAR = 1/4, Dice = 2*1 / (3 + 2) = 2/5.
    assert M.iou(a, b).tolist() == [0.25]
    assert M.pairwise_iou(a, b).tolist() == [[0.25]]
    assert M.aad(a, b) == 0.75
    assert M.avar(a, b) == 0.25
    assert M.dice_score(a, b).tolist() == [pytest.approx(0.4)]
    cc = M.condition_consistency(a, b)
    assert cc == {"aad": 0.75, "avar": 0.25, "iou": 0.25}


def test_hand_case_set_metrics():
    a, b = _hand_pair()
    c = np.zeros_like(a)
    c[0, 0, 0, 0] = True  # C = {v0}: IoU(A, C) = 1/3, IoU(B, C) = 1/2
    gen = np.concatenate([a, b])  # generated = [A, B]
    real = np.concatenate([a, c])  # real = [A, C]
    # distance 1 - IoU: gen A -> (real A: 0, real C: 2/3); gen B -> (real A: 3/4, real C: 1/2)
    # aad_nearest = mean(0, 1/2) = 1/4; cov: nearest reals are {A, C} -> 2/2 = 1;
    # mmd = mean over reals of min over gen = mean(0, 1/2) = 1/4.
    assert M.aad_nearest(gen, real) == pytest.approx(0.25)
    assert M.avar_nearest(gen, real) == pytest.approx(0.75)
    assert M.coverage(gen, real) == 1.0
    assert M.minimum_matching_distance(gen, real) == pytest.approx(0.25)
    # 1-NNA: d(genA, genB) = 3/4, d(realA, realC) = 2/3.
    # genA: nearest realA (0) -> wrong; genB: nearest realC (1/2) < genA (3/4) -> wrong;
    # realA: nearest genA (0) -> wrong; realC: genB (1/2) < realA (2/3) -> wrong. Accuracy 0/4.
    assert M.one_nna(gen, real) == 0.0


def test_occupancy_error_hand_case():
    real = np.zeros((2, 2, 2, 2), dtype=bool)
    real[0, 0, 0, :] = True  # real: 2 + 2 = 4 of 16 voxels occupied -> 0.25
    real[1, 1, 1, :] = True
    gen = np.zeros((1, 2, 2, 2), dtype=bool)
    gen[0, 0, 0, 0] = True  # generated: 1 of 8 -> 0.125
    # |0.125 - 0.25| / 0.25 = 0.5
    assert M.occupancy_error(gen, real) == 0.5
    assert M.occupancy_error(real, real) == 0.0
    with pytest.raises(ValueError, match="zero occupancy"):
        M.occupancy_error(gen, np.zeros_like(real))


# --------------------------------------------------------------------------------------------------
# Oracles and identities
# --------------------------------------------------------------------------------------------------
def test_pairwise_iou_matches_scipy_jaccard():
    rng = np.random.default_rng(0)
    a = _random_set(rng, 7, 8)
    b = _random_set(rng, 5, 8, densities=(0.05, 0.2, 0.6))
    a[3] = False  # one empty shape in each set
    b[1] = False
    b[4] = a[2]  # one exact match
    ours = M.pairwise_iou(torch.from_numpy(a), torch.from_numpy(b))
    assert ours.shape == (7, 5) and ours.dtype == torch.float64
    ref = 1.0 - cdist(a.reshape(7, -1), b.reshape(5, -1), metric="jaccard")
    # scipy's jaccard distance is 0 for two all-zero vectors; our IoU is 1 there, so the conventions agree.
    np.testing.assert_allclose(ours.numpy(), ref, rtol=0, atol=1e-12)
    assert ours[3, 1] == 1.0  # both empty
    assert ours[3, 0] == 0.0  # empty vs non-empty
    assert ours[2, 4] == 1.0  # identical


def test_pairwise_iou_is_exact_fraction():
    rng = np.random.default_rng(1)
    a, b = _random_set(rng, 4, 9), _random_set(rng, 3, 9)
    ours = M.pairwise_iou(a, b).numpy()
    fa, fb = a.reshape(4, -1), b.reshape(3, -1)
    for i in range(4):
        for j in range(3):
            inter = int(np.sum(fa[i] & fb[j]))
            union = int(np.sum(fa[i] | fb[j]))
            assert ours[i, j] == inter / union  # bit-exact: same float64 division of exact counts


def test_paired_iou_equals_diagonal_of_pairwise():
    rng = np.random.default_rng(2)
    a, b = _random_set(rng, 6, 8), _random_set(rng, 6, 8)
    assert torch.equal(M.iou(a, b), torch.diagonal(M.pairwise_iou(a, b)))


def test_dice_against_iou_identity():
    rng = np.random.default_rng(3)
    a, b = _random_set(rng, 6, 8), _random_set(rng, 6, 8)
    j = M.iou(a, b)
    assert torch.allclose(M.dice_score(a, b), 2 * j / (1 + j), rtol=0, atol=1e-15)  # Dice = 2J / (1 + J)
    empty = np.zeros((2, 3, 3, 3), dtype=bool)
    assert M.dice_score(empty, empty).tolist() == [1.0, 1.0]


def test_aad_avar_identities():
    rng = np.random.default_rng(4)
    a, b = _random_set(rng, 9, 8), _random_set(rng, 9, 8)
    assert M.aad(a, b) + M.avar(a, b) == pytest.approx(1.0, abs=1e-15)
    assert M.avar(a, b) == pytest.approx(float(M.iou(a, b).mean()), abs=1e-15)
    assert M.aad(a, a) == 0.0
    assert M.avar(a, a) == 1.0
    assert 0.0 < M.aad(a, b) < 1.0
    # union-normalised mismatch: mean |A xor B| / |A ∪ B|
    fa, fb = a.reshape(9, -1), b.reshape(9, -1)
    expected = np.mean(np.sum(fa ^ fb, axis=1) / np.sum(fa | fb, axis=1))
    assert M.aad(a, b) == pytest.approx(expected, abs=1e-15)
    cc = M.condition_consistency(a, b)
    assert cc["aad"] + cc["avar"] == pytest.approx(1.0, abs=1e-15)
    assert cc["iou"] == pytest.approx(cc["avar"], abs=1e-15)


def test_both_empty_iou_is_one():
    empty = np.zeros((3, 4, 4, 4), dtype=bool)
    assert M.iou(empty, empty).tolist() == [1.0, 1.0, 1.0]
    assert M.aad(empty, empty) == 0.0
    assert M.avar(empty, empty) == 1.0
    full = np.ones((3, 4, 4, 4), dtype=bool)
    assert M.iou(empty, full).tolist() == [0.0, 0.0, 0.0]


# --------------------------------------------------------------------------------------------------
# COV / MMD / 1-NNA
# --------------------------------------------------------------------------------------------------
def test_identical_sets():
    rng = np.random.default_rng(5)
    real = _random_set(rng, 10, 8)
    gen = real.copy()
    assert M.coverage(gen, real) == 1.0
    assert M.minimum_matching_distance(gen, real) == 0.0
    assert M.aad_nearest(gen, real) == 0.0
    # Shapes are distinct within a set. Each generated shape's twin (distance 0) in real is its nearest
    # neighbour -> wrong; each real shape's twin in generated (distance 0) is nearest -> wrong. 1-NNA = 0.
    assert M.one_nna(gen, real) == 0.0


def test_mode_collapse():
    rng = np.random.default_rng(6)
    real = _random_set(rng, 8, 8)
    gen = np.repeat(real[2:3], 12, axis=0)  # every generated shape is real[2]
    assert M.coverage(gen, real) == pytest.approx(1 / 8)
    assert M.aad_nearest(gen, real) == 0.0
    d_gr = 1.0 - M.pairwise_iou(gen, real).numpy()
    assert M.minimum_matching_distance(gen, real) == pytest.approx(d_gr.min(axis=0).mean())
    # Ties everywhere (generated copies at distance 0): compare with the brute-force lowest-index rule.
    d_gg = 1.0 - M.pairwise_iou(gen, gen).numpy()
    d_rr = 1.0 - M.pairwise_iou(real, real).numpy()
    expected = _brute_one_nna(d_gg, d_gr, d_rr)
    assert M.one_nna(gen, real) == pytest.approx(expected)
    # All 12 generated shapes find another copy first; real[2] finds a copy -> at least 12 / 20 correct.
    assert M.one_nna(gen, real) >= 12 / 20


def test_coverage_tie_goes_to_lowest_real_index():
    a, _ = _hand_pair()
    real = np.concatenate([a, a, ~a])  # real[0] == real[1]
    assert M.coverage(a, real) == pytest.approx(1 / 3)  # only real[0] is counted, not real[1]


def test_one_nna_matches_sklearn_leave_one_out():
    rng = np.random.default_rng(7)
    gen = _random_set(rng, 9, 8, densities=(0.2, 0.4))
    real = _random_set(rng, 7, 8, densities=(0.3, 0.5))
    both = np.concatenate([gen, real])
    d = 1.0 - M.pairwise_iou(both, both).numpy()
    off = d + np.diag(np.full(len(d), np.inf))
    sorted_rows = np.sort(off, axis=1)
    assert np.all(sorted_rows[:, 0] < sorted_rows[:, 1]), "test precondition: no ties in nearest neighbours"
    labels = np.r_[np.ones(9, dtype=int), np.zeros(7, dtype=int)]
    knn = KNeighborsClassifier(n_neighbors=1, metric="precomputed")
    ref = cross_val_score(knn, d, labels, cv=LeaveOneOut()).mean()
    ours = M.one_nna(gen, real)
    assert ours == pytest.approx(ref, abs=1e-12)
    assert ours == pytest.approx(_brute_one_nna(d[:9, :9], d[:9, 9:], d[9:, 9:]), abs=1e-12)


def test_one_nna_separable_sets_is_one():
    rng = np.random.default_rng(8)
    gen = np.zeros((6, 8, 8, 8), dtype=bool)
    real = np.zeros((5, 8, 8, 8), dtype=bool)
    gen[:, :4, :4, :4] = rng.random((6, 4, 4, 4)) < 0.9  # noisy blocks in one corner
    real[:, 4:, 4:, 4:] = rng.random((5, 4, 4, 4)) < 0.9  # noisy blocks in the opposite corner
    # Within a set distances are < 1, across sets IoU = 0 (distance 1): every nearest neighbour has the same label.
    assert M.one_nna(gen, real) == 1.0
    assert M.minimum_matching_distance(gen, real) == 1.0
    assert M.aad_nearest(gen, real) == 1.0


def test_chunked_and_symmetric_paths_match_oracle(monkeypatch):
    rng = np.random.default_rng(14)
    gen, real = _random_set(rng, 11, 5), _random_set(rng, 7, 5, densities=(0.2, 0.6))
    gen[4] = False
    expected = M.voxel_set_metrics(gen, real)
    v = 5**3
    monkeypatch.setattr(VS, "_CHUNK_ELEMENTS", 3 * v)  # left operand in chunks of 3 rows
    monkeypatch.setattr(VS, "_B_BLOCK_ELEMENTS", 4 * v)  # right operand in blocks of 4 rows
    fg, fr = gen.reshape(11, -1), real.reshape(7, -1)
    ref_gr = 1.0 - cdist(fg, fr, metric="jaccard")
    ref_gg = 1.0 - cdist(fg, fg, metric="jaccard")
    g, r = M.binarize(gen), M.binarize(real)
    np.testing.assert_allclose(VS._pairwise_iou_bool(g, r).numpy(), ref_gr, rtol=0, atol=1e-12)
    np.testing.assert_allclose(VS._pairwise_iou_bool(g, g).numpy(), ref_gg, rtol=0, atol=1e-12)  # symmetric path
    np.testing.assert_allclose(VS._pairwise_iou_bool(g, g.clone()).numpy(), ref_gg, rtol=0, atol=1e-12)
    chunked = M.voxel_set_metrics(gen, real)
    assert chunked == pytest.approx(expected, abs=1e-12)
    assert M.iou(gen, gen[::-1].copy()).numpy() == pytest.approx(np.diag(1.0 - cdist(fg, fg[::-1], "jaccard")))


def test_voxel_set_metrics_agrees_with_individual_functions():
    rng = np.random.default_rng(9)
    gen = _random_set(rng, 11, 8)
    real = _random_set(rng, 6, 8, densities=(0.25, 0.45))
    out = M.voxel_set_metrics(gen, real)
    assert set(out) == {"aad_real", "avar_real", "cov", "mmd", "one_nna", "occupancy_error", "iou_nearest"}
    assert all(isinstance(v, float) for v in out.values())
    assert out["aad_real"] == M.aad_nearest(gen, real)
    assert out["avar_real"] == M.avar_nearest(gen, real)
    assert out["aad_real"] + out["avar_real"] == pytest.approx(1.0, abs=1e-15)
    assert out["iou_nearest"] == pytest.approx(out["avar_real"], abs=1e-12)
    assert out["cov"] == M.coverage(gen, real)
    assert out["mmd"] == M.minimum_matching_distance(gen, real)
    assert out["one_nna"] == M.one_nna(gen, real)
    assert out["occupancy_error"] == M.occupancy_error(gen, real)


def test_voxel_set_metrics_large_sets():
    g = torch.Generator().manual_seed(10)
    gen = torch.rand(1000, 32, 32, 32, generator=g)  # float probabilities, binarised at 0.5
    real = torch.rand(80, 1, 32, 32, 32, generator=g) < 0.4  # bool, channel dim
    out = M.voxel_set_metrics(gen, real)
    assert all(math.isfinite(v) for v in out.values())
    for key in ("aad_real", "avar_real", "cov", "mmd", "one_nna", "iou_nearest"):
        assert 0.0 <= out[key] <= 1.0, key
    assert out["occupancy_error"] >= 0.0
    assert out["aad_real"] + out["avar_real"] == pytest.approx(1.0)
    # Random noise at density 0.5 vs 0.4: relative occupancy error ~ 0.25, shapes easy to tell apart.
    assert out["occupancy_error"] == pytest.approx(0.25, abs=0.01)
    assert out["one_nna"] > 0.9


# --------------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------------
def test_dtypes_and_layouts_give_same_answer():
    rng = np.random.default_rng(11)
    a_bool, b_bool = _random_set(rng, 5, 6), _random_set(rng, 4, 6)
    ref = M.pairwise_iou(a_bool, b_bool)
    variants = [
        (a_bool.astype(np.uint8), b_bool.astype(np.int64)),
        (a_bool.astype(np.float32), b_bool.astype(np.float64)),
        (torch.from_numpy(a_bool), torch.from_numpy(b_bool).to(torch.int32)),
        (torch.from_numpy(a_bool).half(), torch.from_numpy(b_bool).to(torch.uint16)),
        (a_bool[:, None], torch.from_numpy(b_bool)[:, None].float()),  # (N, 1, D, H, W)
        (a_bool.astype(">f4"), b_bool.astype(np.uint32)),  # big-endian, wide unsigned
    ]
    for a, b in variants:
        assert torch.equal(M.pairwise_iou(a, b), ref)
    assert M.binarize(a_bool[:, None]).shape == (5, 6**3)
    assert M.binarize(a_bool).dtype == torch.bool


def test_negative_stride_numpy_input():
    rng = np.random.default_rng(12)
    a = _random_set(rng, 4, 6)
    rotated = np.rot90(a, 2, axes=(2, 3))  # a view with negative strides, as a caller rotating by 180 would pass
    expected = M.iou(a, rotated.copy())
    assert torch.equal(M.iou(a, rotated), expected)
    assert M.condition_consistency(np.rot90(rotated, 2, axes=(2, 3)), a)["iou"] == 1.0


def test_float_probabilities_binarised_at_threshold():
    x = np.array([0.0, 0.3, 0.5, 0.50001, 0.7, 1.0, 0.2, 0.9], dtype=np.float64).reshape(1, 2, 2, 2)
    # x > 0.5: 0.5 itself is NOT occupied.
    assert M.binarize(x).tolist() == [[False, False, False, True, True, True, False, True]]
    assert M.binarize(x, threshold=0.25).tolist() == [[False, True, True, True, True, True, False, True]]
    hard = M.binarize(x).reshape(1, 2, 2, 2).numpy()
    assert M.iou(x, hard).tolist() == [1.0]
    assert M.iou(x, hard, threshold=0.25).tolist() == [4 / 6]  # 4 occupied vs 6 occupied, all 4 shared


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.full((2, 4, 4, 4), np.nan), "NaN"),
        (np.zeros((4, 4, 4)), r"\(N, D, H, W\)"),
        (np.zeros((2, 3, 4, 4, 4)), "channel"),
        (np.zeros((2, 1, 1, 4, 4, 4)), r"\(N, D, H, W\)"),
        (np.full((2, 4, 4, 4), 1.5), r"expected probabilities in \[0, 1\] or a binary grid"),
        (np.full((2, 4, 4, 4), -0.1), r"expected probabilities in \[0, 1\] or a binary grid"),
        (np.zeros((0, 4, 4, 4)), "N=0"),
        (np.full((2, 4, 4, 4), 2, dtype=np.int64), "only 0 and 1"),
        (torch.full((2, 4, 4, 4), -1, dtype=torch.int8), "only 0 and 1"),
        (np.zeros((2, 0, 4, 4)), "empty spatial size"),
    ],
)
def test_bad_input_raises_value_error(bad, match):
    good = np.zeros((2, 4, 4, 4), dtype=bool)
    with pytest.raises(ValueError, match=match):
        M.binarize(bad)
    with pytest.raises(ValueError, match=match):
        M.voxel_set_metrics(bad, good)
    with pytest.raises(ValueError, match=match):
        M.pairwise_iou(good, bad)


def test_nan_in_probabilities_is_named():
    x = np.random.default_rng(13).random((2, 4, 4, 4))
    x[1, 2, 3, 0] = np.nan
    with pytest.raises(ValueError, match="generated contains NaN"):
        M.coverage(x, np.zeros((2, 4, 4, 4), dtype=bool))


def test_mismatched_spatial_size_names_both_shapes():
    gen = np.zeros((2, 8, 8, 8), dtype=bool)
    real = np.zeros((3, 1, 4, 4, 4), dtype=bool)
    with pytest.raises(ValueError, match=r"generated shape \(2, 8, 8, 8\) and real shape \(3, 1, 4, 4, 4\)"):
        M.voxel_set_metrics(gen, real)
    with pytest.raises(ValueError, match="same spatial size"):
        M.iou(gen, gen[:, :4, :4, :4])


def test_paired_metrics_need_same_n():
    a = np.zeros((3, 4, 4, 4), dtype=bool)
    for fn in (M.iou, M.aad, M.avar, M.dice_score, M.condition_consistency):
        with pytest.raises(ValueError, match="same number of shapes"):
            fn(a, a[:2])


def test_bad_types_and_threshold():
    with pytest.raises(TypeError, match="torch.Tensor or numpy.ndarray"):
        M.binarize([[[[0, 1]]]])
    with pytest.raises(TypeError, match="dtype"):
        M.binarize(np.zeros((1, 2, 2, 2), dtype=np.complex64))
    with pytest.raises(ValueError, match="threshold"):
        M.binarize(np.zeros((1, 2, 2, 2)), threshold=1.5)
    with pytest.raises(TypeError, match="threshold"):
        M.binarize(np.zeros((1, 2, 2, 2)), threshold="0.5")
