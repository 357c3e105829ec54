"""Sliding-window prediction over whole volumes (system 5, SPEC §5): Gaussian blending, flip test-time augmentation.

The windows and their blending are MONAI's :func:`monai.inferers.sliding_window_inference`, called as is. Measured
with the bench case's settings (:mod:`voxhelpers.bench.segmentation`: VNet width 0.25, 8 classes, a 128³ volume,
27 windows of 64³, overlap 0.5, Gaussian, 4 windows per call; CPU, one thread, medians of 3), MONAI's own work
besides the network — cutting the windows, weighting, stitching — is 0.28 s of a 7.3 s call (3.8 %): a
re-implementation would need the same slicing and stitching, so it could win a few percent at most, less than the
run-to-run noise of the network. This module therefore wraps it (its logits equal MONAI's bit for bit; the softmax
and the checks add ~0.06 s, the whole call measured 7.23 s against MONAI's 7.26 s) and adds what it lacks:

* input checks with messages that name what was expected (shape, NaN, window size, overlap, mode);
* flip test-time augmentation (nnU-Net's mirroring): the volume is flipped along every subset of the chosen axes,
  each flip is predicted, flipped back and turned into softmax probabilities, and the probabilities are averaged;
* ``eval()`` on a module predictor for the call (BatchNorm running statistics, no dropout), restored afterwards;
* :func:`predict_labels`: a whole CT volume (HU) → the window's normalisation → probabilities → a uint8 label map.

Volumes smaller than the window are padded (``padding_value``, centred) and the output cropped back: that is what
:func:`sliding_window_inference` does, so a VNet (sides multiples of 16) runs on any volume through a window of
valid size.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from ..data.ct import SEGMENTATION_WINDOW, clip_normalise

MODES = ("gaussian", "constant")
OUTPUTS = ("probabilities", "logits")

__all__ = ["MODES", "OUTPUTS", "flip_sets", "predict_labels", "sliding_window_predict"]


def _roi(roi_size: int | Sequence[int], spatial_dims: int) -> tuple[int, ...]:
    sizes = (roi_size,) * spatial_dims if isinstance(roi_size, (int, np.integer)) else tuple(roi_size)
    if len(sizes) != spatial_dims:
        raise ValueError(f"roi_size must be one int or {spatial_dims} ints (one per spatial axis), got {roi_size!r}")
    if not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in sizes):
        raise ValueError(f"roi_size must hold positive ints, got {roi_size!r}")
    return tuple(int(s) for s in sizes)


def flip_sets(flip_tta: bool | Sequence[int], spatial_dims: int) -> list[tuple[int, ...]]:
    """The flips of flip test-time augmentation, as tuples of spatial axes (0-based; ``()`` is the plain pass).

    Args:
        flip_tta: False (only ``()``), True (every subset of all spatial axes: 8 passes in 3D) or a sequence of
            spatial axes (every subset of those: 2ⁿ passes).
        spatial_dims: 2 or 3.

    Returns:
        the subsets, the empty one first.

    Raises:
        ValueError: an axis outside ``[0, spatial_dims)`` or repeated.
    """
    if flip_tta is False or flip_tta is None:
        return [()]
    axes = tuple(range(spatial_dims)) if flip_tta is True else tuple(flip_tta)
    if not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) and 0 <= a < spatial_dims for a in axes) \
            or len(set(axes)) != len(axes):
        raise ValueError(f"flip_tta must be a bool or distinct spatial axes in [0, {spatial_dims}), got {flip_tta!r}")
    return [c for k in range(len(axes) + 1) for c in itertools.combinations(sorted(axes), k)]


def _as_tensor(volume) -> torch.Tensor:
    if isinstance(volume, np.ndarray):
        volume = torch.from_numpy(np.ascontiguousarray(volume))
    if not isinstance(volume, torch.Tensor):
        raise TypeError(f"volume must be a torch.Tensor or numpy array, got {type(volume).__name__}")
    return volume if volume.is_floating_point() else volume.to(torch.float32)


def _all_finite(t: torch.Tensor) -> bool:
    """No NaN or inf in ``t``: a sum first (NaN and inf carry through it; one pass, no bool copy of a volume), the
    element-wise test only when the sum is not finite (a finite tensor whose sum overflows)."""
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def _predictor_device(predictor, fallback: torch.device) -> torch.device:
    if isinstance(predictor, nn.Module):
        p = next(predictor.parameters(), None)
        if p is not None:
            return p.device
    return fallback


def sliding_window_predict(volume: torch.Tensor | np.ndarray, predictor: Callable[[torch.Tensor], torch.Tensor],
                           roi_size: int | Sequence[int], overlap: float = 0.5, sw_batch_size: int = 4,
                           mode: str = "gaussian", sigma_scale: float = 0.125,
                           flip_tta: bool | Sequence[int] = False, padding_value: float = 0.0,
                           device: torch.device | str | None = None, out_device: torch.device | str | None = None,
                           output: str = "probabilities", progress: bool = False) -> torch.Tensor:
    """Predict a whole volume window by window, blending overlapping windows (MONAI's ``sliding_window_inference``).

    Each window's output (the predictor's logits) is weighted by the importance map (a Gaussian of standard
    deviation ``sigma_scale · roi`` per axis, or constant) and the weighted sum divided by the summed weights. With
    ``output="probabilities"`` the blended logits of each flip pass go through a softmax over channels and the
    probabilities are averaged over the passes; with ``output="logits"`` the blended logits are averaged.

    Args:
        volume: (B, C, *spatial) with 2 or 3 spatial axes, torch or numpy; integer types are cast to float32. The
            network's input, already normalised (see :func:`predict_labels` for HU volumes).
        predictor: maps (n, C, *roi_size) to logits (n, K, *roi_size), e.g. a :class:`~voxhelpers.nets.vnet.VNet`.
            A module runs in ``eval()`` mode for the call (its mode is restored afterwards), without gradients.
        roi_size: window size, one int or one per spatial axis, positive; it may exceed the volume (the volume is
            then padded with ``padding_value``, centred, and the output cropped back). A VNet needs multiples of 16.
        overlap: fraction of a window shared with its neighbour along each axis, in [0, 1).
        sw_batch_size: windows per predictor call, >= 1 (memory vs speed; the result does not depend on it).
        mode: ``"gaussian"`` (less weight at window edges) or ``"constant"``.
        sigma_scale: Gaussian standard deviation as a fraction of the window side, > 0 (``"gaussian"`` only).
        flip_tta: False, True (flip along every subset of the spatial axes: 4 passes in 2D, 8 in 3D) or a sequence of
            spatial axes (0-based) whose subsets are flipped. Each pass costs a full sliding window.
        padding_value: the value padded around a volume smaller than the window.
        device: where windows and the predictor run (default: the module predictor's device, else the volume's).
        out_device: where the stitched output is held (default: the volume's device); e.g. ``"cpu"`` keeps GPU
            memory independent of the volume size.
        output: ``"probabilities"`` (softmax over channels, averaged over flips) or ``"logits"``.
        progress: show a tqdm progress bar per pass.

    Returns:
        float (B, K, *spatial) on ``out_device``: probabilities (summing to 1 over K) or blended logits.

    Raises:
        TypeError: a volume that is neither a tensor nor an array.
        ValueError: a volume whose ndim is not 4 or 5 or that holds NaN/inf; a non-positive or wrongly sized
            ``roi_size``; ``overlap`` outside [0, 1); ``sw_batch_size`` < 1; an unknown ``mode`` or ``output``;
            ``sigma_scale`` <= 0; bad ``flip_tta`` axes; a predictor whose output does not keep the window's size.
        RuntimeError: the predictor produced NaN or inf.
    """
    from monai.inferers import sliding_window_inference

    x = _as_tensor(volume)
    if x.ndim not in (4, 5):
        raise ValueError(f"volume must be (B, C, *spatial) with 2 or 3 spatial axes (ndim 4 or 5), got shape "
                         f"{tuple(x.shape)}; add batch and channel axes, e.g. volume[None, None]")
    if min(x.shape) < 1:
        raise ValueError(f"volume has an empty axis: shape {tuple(x.shape)}")
    if not _all_finite(x):
        raise ValueError("volume holds NaN or inf values; fill or mask them before prediction")
    spatial_dims = x.ndim - 2
    roi = _roi(roi_size, spatial_dims)
    if not (isinstance(overlap, numbers.Real) and 0.0 <= overlap < 1.0):
        raise ValueError(f"overlap must be a number in [0, 1), got {overlap!r}")
    if not (isinstance(sw_batch_size, (int, np.integer)) and sw_batch_size >= 1):
        raise ValueError(f"sw_batch_size must be an int >= 1, got {sw_batch_size!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if not (isinstance(sigma_scale, numbers.Real) and math.isfinite(sigma_scale) and sigma_scale > 0):
        raise ValueError(f"sigma_scale must be a positive number, got {sigma_scale!r}")
    if not math.isfinite(padding_value):
        raise ValueError(f"padding_value must be finite, got {padding_value!r}")
    flips = flip_sets(flip_tta, spatial_dims)
    sw_device = torch.device(device) if device is not None else _predictor_device(predictor, x.device)
    out_device = torch.device(out_device) if out_device is not None else x.device

    was_training = predictor.training if isinstance(predictor, nn.Module) else None
    if was_training:
        predictor.eval()
    total = None
    try:
        with torch.no_grad():
            for axes in flips:
                dims = [2 + a for a in axes]
                xi = torch.flip(x, dims) if dims else x
                y = sliding_window_inference(xi, roi, sw_batch_size, predictor, overlap=overlap, mode=mode,
                                             sigma_scale=sigma_scale, padding_mode="constant", cval=padding_value,
                                             sw_device=sw_device, device=out_device, progress=progress)
                if not isinstance(y, torch.Tensor) or y.ndim != x.ndim or tuple(y.shape[2:]) != tuple(x.shape[2:]):
                    got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
                    raise ValueError(f"predictor must return one tensor (n, K, *window) of the window's spatial size "
                                     f"{roi}; the stitched output came out as {got} for a volume {tuple(x.shape)}")
                y = y.as_tensor() if hasattr(y, "as_tensor") else y  # a MONAI MetaTensor → a plain tensor
                if dims:
                    y = torch.flip(y, dims)
                if output == "probabilities":
                    y = torch.softmax(y, dim=1)
                total = y if total is None else total.add_(y)
    finally:
        if was_training:
            predictor.train()
    if len(flips) > 1:
        total /= len(flips)
    if not _all_finite(total):
        raise RuntimeError("the predictor produced NaN or inf values")
    return total


def predict_labels(volume, predictor: Callable[[torch.Tensor], torch.Tensor], roi_size: int | Sequence[int],
                   window: tuple[float, float] | None = SEGMENTATION_WINDOW, overlap: float = 0.5,
                   sw_batch_size: int = 4, mode: str = "gaussian", sigma_scale: float = 0.125,
                   flip_tta: bool | Sequence[int] = False, padding_value: float = 0.0,
                   device: torch.device | str | None = None, out_device: torch.device | str | None = "cpu",
                   progress: bool = False) -> np.ndarray | torch.Tensor:
    """A uint8 label map for a whole CT volume: argmax over classes of the (flip-averaged) softmax probabilities.

    Args:
        volume: a :class:`~voxhelpers.data.ct_io.CTVolume` (its ``hu``), or an (X, Y, Z) array/tensor in HU (or
            already normalised, with ``window=None``).
        predictor: maps (n, 1, *roi) to logits (n, K, *roi), K <= 256 classes (background = 0).
        roi_size: window size (see :func:`sliding_window_predict`).
        window: HU window given to :func:`voxhelpers.data.ct.clip_normalise` (default
            :data:`~voxhelpers.data.ct.SEGMENTATION_WINDOW`, [-175, 250] HU, what the segmentation nets train on);
            pass ``None`` for a volume that is already the network's input.
        overlap, sw_batch_size, mode, sigma_scale, flip_tta, device, progress: as in :func:`sliding_window_predict`.
        padding_value: padding around a volume smaller than the window, in network-input units (default 0.0: the
            window's lower edge after normalisation, i.e. air and fat).
        out_device: where the probabilities are stitched (default CPU; the label map comes back as a numpy array for
            numpy/CTVolume input, a tensor on ``out_device`` for tensor input).

    Returns:
        (X, Y, Z) uint8 labels, numpy for a CTVolume or numpy input, torch for tensor input.

    Raises:
        ValueError: a volume that is not 3D (X, Y, Z), or holds NaN; more than 256 classes; see
            :func:`sliding_window_predict` for the others.
    """
    as_numpy = not isinstance(volume, torch.Tensor)
    hu = getattr(volume, "hu", volume)
    if isinstance(hu, (np.ndarray, torch.Tensor)):
        if hu.ndim != 3:
            raise ValueError(f"predict_labels takes one volume (X, Y, Z), got shape {tuple(hu.shape)}")
    else:
        raise TypeError(f"volume must be a CTVolume, numpy array or torch.Tensor, got {type(volume).__name__}")
    x = _as_tensor(hu)
    if not _all_finite(x):  # before the window, which would clip inf away and keep NaN
        raise ValueError("volume holds NaN or inf values; fill or mask them before prediction")
    if window is not None:
        x = clip_normalise(x, window)
    # one pass: the argmax of the logits is that of their softmax, so the softmax is skipped
    output = "logits" if len(flip_sets(flip_tta, 3)) == 1 else "probabilities"
    scores = sliding_window_predict(x[None, None], predictor, roi_size, overlap=overlap, sw_batch_size=sw_batch_size,
                                    mode=mode, sigma_scale=sigma_scale, flip_tta=flip_tta, padding_value=padding_value,
                                    device=device, out_device=out_device, output=output, progress=progress)
    if scores.shape[1] > 256:
        raise ValueError(f"a uint8 label map holds at most 256 classes, the predictor gave {scores.shape[1]}")
    labels = scores[0].argmax(dim=0).to(torch.uint8)
    return labels.cpu().numpy() if as_numpy else labels
