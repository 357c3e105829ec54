"""Volume metrics of SPEC §3 (X-ray → CT) against independent references: MAE by hand, PSNR and SSIM against
scikit-image slice by slice, cosine against scikit-learn; batches, the zero-MSE rule, the SSIM data-range trap,
bad inputs and the methods table."""

import warnings

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

from voxhelpers.data.ct import clip_normalise
from voxhelpers.metrics import volumes
from voxhelpers.metrics.volumes import (
    cosine_similarity,
    mae_hu,
    metrics_table,
    psnr_3d,
    psnr_slices,
    ssim_3axes,
    volume_metrics,
)

SHAPE = (9, 10, 11)  # distinct sizes, so a wrong axis changes the slice count


def _pair(seed=0, batch=None, noise=0.1):
    rng = np.random.default_rng(seed)
    shape = SHAPE if batch is None else (batch, *SHAPE)
    target = rng.random(shape)
    pred = np.clip(target + noise * rng.standard_normal(shape), 0.0, 1.0)
    return pred, target


def _slices(a, axis):
    return [np.take(a, i, axis=axis) for i in range(a.shape[axis])]


def test_mae_by_hand_two_voxels():
    hu_pred = np.array([[[-1024.0, 0.0]]])  # (1, 1, 2)
    hu_target = np.array([[[0.0, 0.0]]])
    # |−1024 − 0| and |0 − 0| HU → mean 512 HU
    assert mae_hu(clip_normalise(hu_pred), clip_normalise(hu_target)) == pytest.approx(512.0)
    # normalised 0.5 vs 0.25 and 0.25 vs 0.25 → mean 0.125 of the window's width
    pred, target = np.array([[[0.5, 0.25]]]), np.array([[[0.25, 0.25]]])
    assert mae_hu(pred, target) == pytest.approx(0.125 * 2048)
    assert mae_hu(pred, target, window=(-175, 250)) == pytest.approx(0.125 * 425)
    assert isinstance(mae_hu(pred, target), float)


def test_psnr_3d_equals_skimage():
    pred, target = _pair()
    ref = peak_signal_noise_ratio(target, pred, data_range=1)
    assert psnr_3d(pred, target) == pytest.approx(ref, rel=1e-12)
    assert psnr_3d(pred * 2, target * 2, data_range=2.0) == pytest.approx(ref, rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert psnr_3d(target, target) == np.inf


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_psnr_slices_equals_mean_of_skimage(axis):
    pred, target = _pair(1)
    ref = np.mean([peak_signal_noise_ratio(t, p, data_range=1)
                   for t, p in zip(_slices(target, axis), _slices(pred, axis), strict=True)])
    assert psnr_slices(pred, target, axis=axis) == pytest.approx(ref, rel=1e-12)


def test_psnr_slices_all_axes_and_zero_mse_rules():
    pred, target = _pair(2)
    three = [psnr_slices(pred, target, axis=a) for a in range(3)]
    assert psnr_slices(pred, target, axis=None) == pytest.approx(np.mean(three))

    pred[:, :, 0] = target[:, :, 0]  # one identical axial slice (MSE 0)
    others = np.mean([peak_signal_noise_ratio(target[:, :, i], pred[:, :, i], data_range=1) for i in range(1, 11)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert psnr_slices(pred, target) == pytest.approx(others)  # skipped
        assert psnr_slices(pred, target, zero_mse="cap") == pytest.approx((others * 10 + 100.0) / 11)
        assert psnr_slices(target, target) == np.inf
        assert psnr_slices(target, target, zero_mse="cap") == pytest.approx(100.0)


def test_ssim_equals_explicit_loop_and_is_one_for_identical():
    pred, target = _pair(3, noise=0.2)
    per_axis = [np.mean([structural_similarity(t, p, data_range=1.0)
                         for t, p in zip(_slices(target, a), _slices(pred, a), strict=True)]) for a in range(3)]
    assert ssim_3axes(pred, target) == pytest.approx(np.mean(per_axis), rel=1e-10)
    assert 0.0 < ssim_3axes(pred, target) < 0.99
    assert ssim_3axes(target, target) == pytest.approx(1.0)


def test_ssim_data_range_trap(monkeypatch):
    pred, target = _pair(4, noise=0.2)
    # the trap: float images scored with the float dtype range (2) instead of their real range (1) look better, the
    # more so at low contrast (soft tissue, 0.5 ± 0.02 ≈ 0 ± 40 HU in the 2048-HU window)
    rng = np.random.default_rng(4)
    sl_t = 0.5 + 0.02 * rng.standard_normal((32, 32))
    sl_p = sl_t + 0.02 * rng.standard_normal((32, 32))
    assert structural_similarity(sl_t, sl_p, data_range=2.0) > structural_similarity(sl_t, sl_p, data_range=1.0) + 0.05
    with pytest.raises(ValueError, match="data_range"):  # current scikit-image refuses float input without it...
        structural_similarity(sl_t, sl_p)
    calls = []  # ...and we always pass it

    def spy(*args, **kwargs):
        calls.append(kwargs.get("data_range"))
        return structural_similarity(*args, **kwargs)

    monkeypatch.setattr(volumes, "structural_similarity", spy)
    ssim_3axes(pred * 0.5, target * 0.5, data_range=0.5)
    assert calls == [0.5, 0.5, 0.5]
    inflated = ssim_3axes(pred, target, data_range=2.0)  # inputs in [0, 1] lie inside [0, 2]: allowed, but higher
    assert inflated > ssim_3axes(pred, target, data_range=1.0)
    with pytest.raises(ValueError, match=r"outside \[0, data_range=1\]"):  # HU passed as if normalised
        ssim_3axes(pred * 2048 - 1024, target * 2048 - 1024)
    ssim_3axes(pred + 5e-4, target)  # within the tolerance


def test_cosine_equals_sklearn():
    pred, target = _pair(5)
    ref = sk_cosine(pred.reshape(1, -1), target.reshape(1, -1))[0, 0]
    assert cosine_similarity(pred, target) == pytest.approx(ref, rel=1e-12)
    zero = np.zeros(SHAPE)
    assert cosine_similarity(zero, target) == sk_cosine(zero.reshape(1, -1), target.reshape(1, -1))[0, 0] == 0.0


def test_batch_equals_per_volume_calls():
    pred, target = _pair(6, batch=3)
    fns = [mae_hu, psnr_3d, psnr_slices, ssim_3axes, cosine_similarity]
    for fn in fns:
        single = np.array([fn(p, t) for p, t in zip(pred, target, strict=True)])
        batch = fn(pred, target)
        assert isinstance(batch, np.ndarray) and batch.shape == (3,) and batch.dtype == np.float64
        np.testing.assert_allclose(batch, single, rtol=1e-12)
        # torch, float32, channel dim: the same numbers
        as_torch = fn(torch.from_numpy(pred).float()[:, None], torch.from_numpy(target).float()[:, None])
        np.testing.assert_allclose(as_torch, fn(pred.astype(np.float32), target.astype(np.float32)), rtol=1e-12)
    one = fn(pred[:1], target[:1])
    assert isinstance(one, np.ndarray) and one.shape == (1,)  # 4-D is always a batch

    metrics = volume_metrics(pred, target)
    assert list(metrics) == ["mae", "psnr", "psnr_slices", "ssim", "cosine"]
    np.testing.assert_allclose(metrics["ssim"], ssim_3axes(pred, target))
    np.testing.assert_allclose(metrics["mae"], mae_hu(pred, target))
    assert all(isinstance(v, float) for v in volume_metrics(pred[0], target[0]).values())


def test_bad_inputs_raise():
    pred, target = _pair(7)
    with pytest.raises(ValueError, match="same shape"):
        psnr_3d(pred, target[:-1])
    with pytest.raises(ValueError, match="same shape"):
        psnr_3d(pred, target[None])  # one volume against a batch of one
    bad = pred.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="1 NaN"):
        mae_hu(bad, target)
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="infinite"):
        cosine_similarity(pred, bad)
    with pytest.raises(TypeError, match="floating-point"):
        mae_hu((pred * 1000).astype(np.int16), target)
    with pytest.raises(TypeError, match="floating-point"):
        ssim_3axes(torch.from_numpy(pred) > 0.5, torch.from_numpy(target))
    with pytest.raises(TypeError, match="numpy.ndarray"):
        psnr_3d(pred.tolist(), target)
    with pytest.raises(ValueError, match="empty"):
        psnr_3d(np.zeros((0, 4, 4, 4)), np.zeros((0, 4, 4, 4)))
    with pytest.raises(ValueError, match=r"shape \(X, Y, Z\)"):
        psnr_3d(pred[0], target[0])
    with pytest.raises(ValueError, match=r"shape \(X, Y, Z\)"):
        psnr_3d(np.zeros((1, 2, 4, 4, 4)), np.zeros((1, 2, 4, 4, 4)))
    with pytest.raises(ValueError, match="outside"):
        mae_hu(pred * 2048 - 1024, target)
    with pytest.raises(ValueError, match="data_range"):
        psnr_3d(pred, target, data_range=0)
    with pytest.raises(ValueError, match="axis"):
        psnr_slices(pred, target, axis=3)
    with pytest.raises(ValueError, match="zero_mse"):
        psnr_slices(pred, target, zero_mse="drop")
    with pytest.raises(ValueError, match=">= 7"):
        ssim_3axes(pred[:6], target[:6])


def test_metrics_table():
    results = {
        "GAN": {"mae": np.array([10.0, 20.0, 30.0]), "psnr": np.array([30.0, 28.0, 26.0])},
        "mean CT": {"mae": [40.0, 50.0, 60.0], "psnr": np.array([20.0, 20.0, 20.0])},
        "no-GAN": {"psnr": 25.0, "mae": 15.0},  # one volume, metrics in another order
    }
    table = metrics_table(results)
    assert list(table.index) == ["GAN", "mean CT", "no-GAN"]
    assert list(table.columns) == ["mae_mean", "mae_std", "psnr_mean", "psnr_std", "n"]
    assert table.loc["GAN", "mae_mean"] == pytest.approx(20.0)
    assert table.loc["GAN", "mae_std"] == pytest.approx(10.0)  # sample std of 10, 20, 30
    assert table.loc["mean CT", "psnr_std"] == 0.0
    assert table["n"].tolist() == [3, 3, 1]
    assert np.isnan(table.loc["no-GAN", "mae_std"])

    pred, target = _pair(8, batch=2)
    full = metrics_table({"GAN": volume_metrics(pred, target), "mean CT": volume_metrics(
        np.broadcast_to(target.mean(0), target.shape).copy(), target)})
    assert [c[:-5] for c in full.columns[:-1:2]] == ["mae", "psnr", "psnr_slices", "ssim", "cosine"]
    assert full.loc["GAN", "ssim_mean"] > full.loc["mean CT", "ssim_mean"]

    with pytest.raises(ValueError, match="different numbers of volumes"):
        metrics_table({"GAN": {"mae": [1.0, 2.0], "psnr": [3.0]}})
    with pytest.raises(ValueError, match="empty"):
        metrics_table({})
