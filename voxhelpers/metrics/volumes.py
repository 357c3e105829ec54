"""Image metrics for reconstructed CT volumes (SPEC §3, X-ray → CT): MAE in HU, PSNR (3-D and slice-averaged),
SSIM averaged over the three axes, cosine similarity, and the comparison table of methods.

Conventions (the same in every function):

- **Inputs** are CT volumes normalised to [0, 1] by an HU window with
  :func:`voxhelpers.data.ct.clip_normalise` — the default window (−1024, 1024) HU makes ``data_range=1.0``
  correspond to 2048 HU. ``pred`` and ``target`` are torch tensors (any device) or numpy arrays of a floating
  dtype, of the same shape: one volume (X, Y, Z), or a batch (B, X, Y, Z) or (B, 1, X, Y, Z). A 4-D input is
  always a batch (a (1, X, Y, Z) array is a batch of one). Metrics are computed in float64 on the CPU.
- **Outputs**: a Python ``float`` for one volume, a float64 numpy array of shape (B,) — one value per volume,
  never averaged — for a batch.
- **Range check**: every metric that depends on the data range (all but the cosine) raises ValueError when a
  value lies outside [0, data_range] by more than ``RANGE_TOLERANCE · data_range``. HU values passed with
  ``data_range=1`` would otherwise give meaningless PSNR and SSIM (clip predictions to [0, 1] first).
- **Identical volumes / slices** (MSE 0): :func:`psnr_3d` returns ``inf``; :func:`psnr_slices` skips such slices
  from its mean by default (``zero_mse="skip"``; ``inf`` if every slice is identical) or counts them as 100 dB
  (``zero_mse="cap"``, X2CT-GAN's ``metrics_np.py`` rule).
- **SSIM** is scikit-image's :func:`~skimage.metrics.structural_similarity` with ``data_range`` always passed
  explicitly — omitting it on float data used to take the float dtype range (2), which inflates SSIM
  (xmed-lab/DIF-Gaussian#4; scikit-image ≥ 0.24 raises instead) — and its defaults otherwise: uniform 7 × 7
  window (``gaussian_weights=False``, ``win_size=7``), K1 = 0.01, K2 = 0.03, sample covariance, the mean of the
  SSIM map without its 3-voxel border. Every dimension must therefore be at least 7.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import torch
from skimage.metrics import structural_similarity

__all__ = ["PSNR_CAP_DB", "RANGE_TOLERANCE", "SSIM_WIN_SIZE", "VOLUME_METRICS", "cosine_similarity", "mae_hu",
           "metrics_table", "psnr_3d", "psnr_slices", "ssim_3axes", "volume_metrics"]

#: allowed excursion outside [0, data_range], as a fraction of data_range
RANGE_TOLERANCE = 1e-3
#: PSNR given to an identical slice with ``zero_mse="cap"`` (X2CT-GAN's value)
PSNR_CAP_DB = 100.0
#: SSIM window side (scikit-image's default, uniform weights)
SSIM_WIN_SIZE = 7
#: the keys of :func:`volume_metrics`, in table order
VOLUME_METRICS = ("mae", "psnr", "psnr_slices", "ssim", "cosine")
_ZERO_MSE = ("skip", "cap")


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------
def _volumes(x: Any, name: str) -> tuple[np.ndarray, bool]:
    """``x`` as a finite float64 (B, X, Y, Z) array, and whether it was one volume (X, Y, Z)."""
    if isinstance(x, torch.Tensor):
        if not x.dtype.is_floating_point:
            raise TypeError(f"{name} must be a floating-point volume normalised to [0, 1], got torch dtype {x.dtype}")
        x = x.detach().cpu().to(torch.float64).numpy()
    elif isinstance(x, np.ndarray):
        if x.dtype.kind != "f":
            raise TypeError(f"{name} must be a floating-point volume normalised to [0, 1], got numpy dtype {x.dtype} "
                            f"(normalise HU with voxhelpers.data.ct.clip_normalise first)")
        x = x.astype(np.float64, copy=False)
    else:
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray of shape (X, Y, Z), (B, X, Y, Z) or "
                        f"(B, 1, X, Y, Z), got {type(x).__name__}")
    shape = x.shape
    if x.ndim == 5 and shape[1] == 1:
        x = x[:, 0]
    single = x.ndim == 3
    if single:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (X, Y, Z), (B, X, Y, Z) or (B, 1, X, Y, Z), got shape {shape}")
    if x.size == 0:
        raise ValueError(f"{name} is empty (shape {shape}); expected at least one volume with X, Y, Z >= 1")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains {int(np.isnan(x).sum())} NaN and {int(np.isinf(x).sum())} infinite "
                         f"values; expected finite values")
    return x, single


def _pair(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray, bool]:
    p, single = _volumes(pred, "pred")
    t, t_single = _volumes(target, "target")
    if p.shape != t.shape or single != t_single:
        raise ValueError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    return p, t, single


def _check_range(data_range: float, *arrays: tuple[str, np.ndarray]) -> float:
    """Validate ``data_range`` > 0 and that every array lies in [0, data_range] (± the tolerance)."""
    if isinstance(data_range, bool) or not isinstance(data_range, (int, float, np.floating, np.integer)):
        raise TypeError(f"data_range must be a positive number, got {type(data_range).__name__}")
    r = float(data_range)
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"data_range must be a positive finite number, got {data_range!r}")
    tol = RANGE_TOLERANCE * r
    for name, a in arrays:
        lo, hi = float(a.min()), float(a.max())
        if lo < -tol or hi > r + tol:
            raise ValueError(f"{name} values lie in [{lo:g}, {hi:g}], outside [0, data_range={r:g}]: normalise HU "
                             f"with clip_normalise (and clip predictions) or give the right data_range")
    return r


def _out(values: np.ndarray, single: bool) -> float | np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return float(values[0]) if single else values


def _psnr(mse: np.ndarray, data_range: float) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(data_range**2 / mse)  # inf where mse == 0


# --------------------------------------------------------------------------------------------------
# metrics
# --------------------------------------------------------------------------------------------------
def mae_hu(pred, target, window=(-1024.0, 1024.0)) -> float | np.ndarray:
    """Mean absolute error in HU: ``mean |pred − target| · (hi − lo)``.

    Args:
        pred: normalised volume(s) in [0, 1] (see the module conventions).
        target: the same shape.
        window: the (lo, hi) HU window both were normalised with by ``clip_normalise``; errors are in that window's
            HU (HU outside it were clipped before the comparison).

    Returns:
        MAE in HU: a float for one volume, a (B,) array for a batch.

    Raises:
        TypeError / ValueError: on bad inputs (module conventions) or an invalid window.
    """
    p, t, single = _pair(pred, target)
    lo, hi = (float(w) for w in window)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ValueError(f"window must be (low, high) HU with low < high, got {tuple(window)}")
    _check_range(1.0, ("pred", p), ("target", t))
    return _out(np.abs(p - t).mean(axis=(1, 2, 3)) * (hi - lo), single)


def psnr_3d(pred, target, data_range: float = 1.0) -> float | np.ndarray:
    """PSNR over the whole volume: ``10 log10(data_range² / MSE)`` dB.

    With the default window (−1024, 1024) HU, ``data_range=1.0`` stands for 2048 HU. Equals
    ``skimage.metrics.peak_signal_noise_ratio(target, pred, data_range=data_range)``.

    Args:
        pred: normalised volume(s) in [0, data_range] (see the module conventions).
        target: the same shape.
        data_range: the span of the normalised values (1.0 for ``clip_normalise`` output).

    Returns:
        dB; ``inf`` for identical volumes. A float for one volume, a (B,) array for a batch.
    """
    p, t, single = _pair(pred, target)
    r = _check_range(data_range, ("pred", p), ("target", t))
    return _out(_psnr(((p - t) ** 2).mean(axis=(1, 2, 3)), r), single)


def psnr_slices(pred, target, data_range: float = 1.0, axis: int | None = 2,
                zero_mse: str = "skip") -> float | np.ndarray:
    """Slice-averaged PSNR (X2CT-GAN's 2-D PSNR): the mean over slices of each slice's PSNR.

    With the default window (−1024, 1024) HU, ``data_range=1.0`` stands for 2048 HU.

    Args:
        pred: normalised volume(s) in [0, data_range], axes (X, Y, Z) (see the module conventions).
        target: the same shape.
        data_range: the span of the normalised values (1.0 for ``clip_normalise`` output).
        axis: the spatial axis (0, 1 or 2, of (X, Y, Z)) the slices are taken along; 2 gives axial slices for RAS
            and OpenKBP (PLI) volumes. ``None`` averages the three axes' slice means, as X2CT-GAN's code reports.
        zero_mse: identical slices (MSE 0, PSNR infinite): ``"skip"`` leaves them out of the mean (a volume whose
            every slice is identical gets ``inf``); ``"cap"`` counts them as :data:`PSNR_CAP_DB` (100 dB, X2CT-GAN).

    Returns:
        dB: a float for one volume, a (B,) array for a batch.
    """
    if zero_mse not in _ZERO_MSE:
        raise ValueError(f"zero_mse must be one of {_ZERO_MSE}, got {zero_mse!r}")
    if axis is not None and axis not in (0, 1, 2):
        raise ValueError(f"axis must be 0, 1, 2 (a spatial axis of (X, Y, Z)) or None, got {axis!r}")
    p, t, single = _pair(pred, target)
    r = _check_range(data_range, ("pred", p), ("target", t))
    se = (p - t) ** 2
    per_axis = []
    for a in (0, 1, 2) if axis is None else (axis,):
        psnr = _psnr(se.mean(axis=tuple(d for d in (1, 2, 3) if d != a + 1)), r)  # (B, n_slices)
        if zero_mse == "cap":
            per_axis.append(np.where(np.isinf(psnr), PSNR_CAP_DB, psnr).mean(axis=1))
        else:
            finite = np.isfinite(psnr)
            n = finite.sum(axis=1)
            total = np.where(finite, psnr, 0.0).sum(axis=1)
            per_axis.append(np.divide(total, n, out=np.full(len(n), np.inf), where=n > 0))
    return _out(np.mean(per_axis, axis=0), single)


def ssim_3axes(pred, target, data_range: float = 1.0) -> float | np.ndarray:
    """SSIM averaged over the 2-D slices along each of the three axes, then over the axes (X2CT-GAN's protocol).

    Each slice's SSIM is :func:`skimage.metrics.structural_similarity` with ``data_range`` passed explicitly and the
    defaults otherwise (uniform 7 × 7 window, ``gaussian_weights=False``; see the module conventions).

    Args:
        pred: normalised volume(s) in [0, data_range] (see the module conventions); each of X, Y, Z >= 7.
        target: the same shape.
        data_range: the span of the normalised values (1.0 for ``clip_normalise`` output, i.e. 2048 HU with the
            default window). Values outside [0, data_range] raise: a wrong range silently changes SSIM.

    Returns:
        SSIM in [−1, 1] (1 for identical volumes): a float for one volume, a (B,) array for a batch.
    """
    p, t, single = _pair(pred, target)
    r = _check_range(data_range, ("pred", p), ("target", t))
    if min(p.shape[1:]) < SSIM_WIN_SIZE:
        raise ValueError(f"ssim_3axes needs every spatial size >= {SSIM_WIN_SIZE} (the SSIM window), got "
                         f"{p.shape[1:]}")
    values = np.empty((p.shape[0], 3))
    for b in range(p.shape[0]):
        for a in range(3):
            # slices along axis a as channels: skimage averages the per-slice (per-channel) mean SSIM
            values[b, a] = structural_similarity(np.moveaxis(t[b], a, -1), np.moveaxis(p[b], a, -1),
                                                 data_range=r, channel_axis=-1)
    return _out(values.mean(axis=1), single)


def cosine_similarity(pred, target) -> float | np.ndarray:
    """Cosine similarity of the flattened volumes, ``<p, t> / (‖p‖ ‖t‖)``, on the values as given.

    Computed on the normalised volumes (as X2CT-GAN does); it depends on the window's offset, so compare methods
    with one window. A volume of zero norm gets 0, as :func:`sklearn.metrics.pairwise.cosine_similarity` gives.

    Returns:
        A float for one volume, a (B,) array for a batch.
    """
    p, t, single = _pair(pred, target)
    p, t = p.reshape(len(p), -1), t.reshape(len(t), -1)
    norms = np.linalg.norm(p, axis=1) * np.linalg.norm(t, axis=1)
    dots = np.einsum("bv,bv->b", p, t)
    return _out(np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0), single)


def volume_metrics(pred, target, window=(-1024.0, 1024.0)) -> dict[str, float | np.ndarray]:
    """All metrics of one prediction against its target, at ``data_range=1.0`` (inputs from ``clip_normalise``).

    Args:
        pred: normalised volume(s) in [0, 1] (see the module conventions).
        target: the same shape.
        window: the HU window of the normalisation (sets the HU of ``mae``).

    Returns:
        ``{"mae": HU, "psnr": dB (3-D), "psnr_slices": dB (axial, axis 2, identical slices skipped),
        "ssim": three-axis SSIM, "cosine": cosine similarity}``: floats for one volume, (B,) arrays for a batch.
    """
    return {
        "mae": mae_hu(pred, target, window),
        "psnr": psnr_3d(pred, target),
        "psnr_slices": psnr_slices(pred, target),
        "ssim": ssim_3axes(pred, target),
        "cosine": cosine_similarity(pred, target),
    }


def metrics_table(results: Mapping[str, Mapping[str, Any]], ddof: int = 1) -> pd.DataFrame:
    """One row per method, mean and standard deviation over volumes of each metric, and the number of volumes.

    Put every method evaluated on the same held-out patients in one table (the issue's protocol): e.g.
    ``{"GAN": ..., "no-GAN": ..., "back-projection": ..., "mean CT": ...}``.

    Args:
        results: method name → {metric: per-volume values} (floats or (B,) arrays, as :func:`volume_metrics`
            returns; lists of values accepted). Every metric of a method must have the same number of volumes.
        ddof: delta degrees of freedom of the std (1: sample std, NaN for a single volume).

    Returns:
        DataFrame indexed by method (in the given order), columns ``<metric>_mean``, ``<metric>_std`` for each
        metric (:data:`VOLUME_METRICS` order first) and ``n``. Values are not filtered: an ``inf`` PSNR (an exact
        copy of the target) makes that mean ``inf``; a metric a method lacks is NaN.

    Raises:
        ValueError: no methods, a method with no metrics, or metrics of unequal lengths.
    """
    if not results:
        raise ValueError("results is empty; expected {method: {metric: per-volume values}}")
    names = list(dict.fromkeys([m for m in VOLUME_METRICS if any(m in r for r in results.values())]
                               + [m for r in results.values() for m in r]))
    rows = {}
    for method, metrics in results.items():
        if not metrics:
            raise ValueError(f"method {method!r} has no metrics")
        values = {k: np.atleast_1d(np.asarray(v, dtype=np.float64)).ravel() for k, v in metrics.items()}
        lengths = {k: len(v) for k, v in values.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"method {method!r}: metrics cover different numbers of volumes {lengths}")
        row: dict[str, float] = {}
        for m in names:
            v = values.get(m)
            row[f"{m}_mean"] = float(v.mean()) if v is not None else math.nan
            row[f"{m}_std"] = float(v.std(ddof=ddof)) if v is not None and len(v) > ddof else math.nan
        row["n"] = next(iter(lengths.values()))
        rows[method] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "method"
    return table.astype({"n": np.int64})
