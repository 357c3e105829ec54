"""Sliding-window prediction (system 5): MONAI's output on the same network and settings, the padding case, flip
test-time augmentation, batching invariance, eval mode, input checks, the label map of a CT volume."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from monai.inferers import sliding_window_inference

from voxhelpers.data.ct import SEGMENTATION_WINDOW, clip_normalise
from voxhelpers.data.ct_io import CTVolume
from voxhelpers.inference.sliding_window import flip_sets, predict_labels, sliding_window_predict
from voxhelpers.nets.vnet import VNet


@pytest.fixture(scope="module")
def net() -> VNet:
    torch.manual_seed(0)
    net = VNet(out_channels=4, width=0.125).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval and train mode differ
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.uniform_(-0.2, 0.2), m.running_var.uniform_(0.5, 2.0)
    return net


def _volume(shape, seed=0) -> torch.Tensor:
    return torch.rand((1, 1, *shape), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("mode,overlap,roi", [("gaussian", 0.5, 16), ("constant", 0.25, (16, 32, 16))])
def test_equals_monai_on_the_same_network_and_settings(net, mode, overlap, roi):
    x = _volume((32, 28, 20))
    ours = sliding_window_predict(x, net, roi, overlap=overlap, sw_batch_size=4, mode=mode, output="logits")
    with torch.no_grad():
        ref = sliding_window_inference(x, roi, 4, net, overlap=overlap, mode=mode, sigma_scale=0.125)
    assert ours.shape == (1, 4, 32, 28, 20)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    probs = sliding_window_predict(x, net, roi, overlap=overlap, sw_batch_size=4, mode=mode)
    torch.testing.assert_close(probs, ref.softmax(1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(probs.sum(1), torch.ones(1, 32, 28, 20))


def test_equals_the_direct_prediction_when_the_window_covers_the_volume(net):
    x = _volume((16, 16, 16), seed=1)
    with torch.no_grad():
        direct = net(x)
    got = sliding_window_predict(x, net, 16, output="logits")  # one window: the Gaussian weights divide out
    torch.testing.assert_close(got, direct, atol=1e-5, rtol=1e-5)
    # smaller than the window: padded (centred, with padding_value) to 16³, predicted, cropped back
    x = _volume((12, 16, 9), seed=2)
    padded = F.pad(x, (3, 4, 0, 0, 2, 2), value=-0.5)  # F.pad lists the last axis first: 9 → 3 + 9 + 4
    with torch.no_grad():
        direct = net(padded)[:, :, 2:14, :, 3:12]
    got = sliding_window_predict(x, net, 16, padding_value=-0.5, output="logits")
    assert got.shape == (1, 4, 12, 16, 9)
    torch.testing.assert_close(got, direct, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(sliding_window_predict(x, net, 16, output="logits"), direct, atol=1e-3)


def test_batching_invariance_and_eval_mode_restored(net):
    x = _volume((24, 24, 20), seed=3)  # 8 windows: batches of 3 + 3 + 2
    outs = [sliding_window_predict(x, net, 16, sw_batch_size=b) for b in (1, 3, 64)]
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], atol=1e-5, rtol=1e-5)
    net.train()
    try:
        got = sliding_window_predict(x, net, 16, sw_batch_size=3)
        assert net.training  # put back in training mode after the call
    finally:
        net.eval()
    torch.testing.assert_close(got, outs[0], atol=1e-5, rtol=1e-5)  # predicted with the running statistics


def _symmetric_conv() -> torch.nn.Conv3d:
    """A 3³ conv whose kernels are symmetric under every axis flip: it commutes with flips."""
    conv = torch.nn.Conv3d(1, 3, 3, padding=1)
    with torch.no_grad():
        w = conv.weight
        for dims in flip_sets(True, 3)[1:]:
            w = w + torch.flip(conv.weight, [2 + d for d in dims])
        conv.weight.copy_(w / 8)
    return conv.eval()


def test_flip_tta_with_a_flip_equivariant_predictor_equals_no_tta():
    conv = _symmetric_conv()
    x = _volume((40, 24, 16), seed=4)  # window starts 0, 8, 16, 24 / 0, 8 / 0: the grid is its own mirror image
    plain = sliding_window_predict(x, conv, 16)
    for tta in (True, (0, 2)):
        torch.testing.assert_close(sliding_window_predict(x, conv, 16, flip_tta=tta), plain, atol=1e-5, rtol=1e-5)


def test_flip_tta_averages_the_softmax_over_every_flip(net):
    x = _volume((24, 20, 16), seed=5)
    got = sliding_window_predict(x, net, 16, flip_tta=True)
    ref = torch.zeros_like(got)
    with torch.no_grad():
        for axes in [(), (0,), (1,), (2,), (0, 1), (0, 2), (1, 2), (0, 1, 2)]:
            dims = [2 + a for a in axes]
            y = sliding_window_inference(torch.flip(x, dims), 16, 4, net, overlap=0.5, mode="gaussian")
            ref += torch.flip(y, dims).softmax(1) / 8
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(got, sliding_window_predict(x, net, 16), atol=1e-3)  # the VNet is not equivariant
    assert flip_sets((0,), 3) == [(), (0,)] and len(flip_sets(True, 2)) == 4 and flip_sets(False, 3) == [()]


def test_bad_inputs_raise(net):
    x = _volume((16, 16, 16))
    bad = [
        (dict(volume=x[0, 0]), "ndim 4 or 5"),
        (dict(volume=torch.where(x > 0.5, float("nan"), x)), "NaN"),
        (dict(roi_size=0), "positive"),
        (dict(roi_size=(16, -16, 16)), "positive"),
        (dict(roi_size=(16, 16)), "one per spatial axis"),
        (dict(overlap=1.0), r"\[0, 1\)"),
        (dict(overlap=-0.1), r"\[0, 1\)"),
        (dict(mode="hann"), "gaussian"),
        (dict(output="labels"), "probabilities"),
        (dict(sw_batch_size=0), ">= 1"),
        (dict(sigma_scale=0.0), "positive"),
        (dict(flip_tta=(3,)), "spatial axes"),
        (dict(predictor=lambda p: p[..., ::2]), "window's spatial size"),
    ]
    for kwargs, msg in bad:
        args = dict(volume=x, predictor=net, roi_size=16) | kwargs
        with pytest.raises(ValueError, match=msg):
            sliding_window_predict(**args)
    with pytest.raises(TypeError, match="numpy array"):
        sliding_window_predict([[1.0]], net, 16)
    with pytest.raises(RuntimeError, match="NaN or inf"):
        sliding_window_predict(x, lambda p: torch.cat([p, p / 0 * 0], 1), 16)


def _threshold_predictor(p: torch.Tensor) -> torch.Tensor:
    """Two classes: background below 0.5 (after the window), foreground above."""
    return torch.cat([-20 * (p - 0.5), 20 * (p - 0.5)], dim=1)


def test_predict_labels_of_a_ct_volume():
    rng = np.random.default_rng(0)
    hu = rng.integers(-400, 500, size=(20, 18, 12)).astype(np.int16)
    ct = CTVolume(hu, (0.8, 0.8, 2.5))
    expected = (clip_normalise(hu, SEGMENTATION_WINDOW) > 0.5).astype(np.uint8)  # the closed form
    for tta in (False, True):
        got = predict_labels(ct, _threshold_predictor, 16, flip_tta=tta)
        assert got.dtype == np.uint8 and got.shape == hu.shape
        np.testing.assert_array_equal(got, expected)
    as_tensor = predict_labels(torch.from_numpy(hu), _threshold_predictor, (16, 16, 8))
    assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.uint8
    np.testing.assert_array_equal(as_tensor.numpy(), expected)
    # a VNet: the labels are the argmax of the flip-averaged probabilities
    torch.manual_seed(1)
    net = VNet(out_channels=3, width=0.125).eval()
    probs = sliding_window_predict(clip_normalise(torch.from_numpy(hu), SEGMENTATION_WINDOW)[None, None], net, 16,
                                   flip_tta=(0,))
    np.testing.assert_array_equal(predict_labels(ct, net, 16, flip_tta=(0,)), probs[0].argmax(0).numpy())
    with pytest.raises(ValueError, match=r"\(X, Y, Z\)"):
        predict_labels(hu[None], net, 16)
    with pytest.raises(ValueError, match="NaN"):
        predict_labels(np.full((16, 16, 16), np.nan, np.float32), net, 16)
