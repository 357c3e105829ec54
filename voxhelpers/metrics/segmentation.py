"""Segmentation metrics for system 5 (SPEC §5): per-class Dice, IoU, HD95 in mm, mean IoU, voxel accuracy.

Inputs are integer label maps — a prediction (after argmax) and the truth — of shape (B, D, H, W) (or (B, H, W)
for slices; a (B, 1, D, H, W) map is squeezed), torch tensors or numpy arrays, with values in [0, C).

Empty cases, per sample b and class c (the same rules in every function):

================================  ====  ====  =====================================================
case                              Dice  IoU   HD95
================================  ====  ====  =====================================================
class not labelled in the sample  NaN   NaN   NaN, whatever the prediction (``labelled`` mask False)
absent from truth and prediction  NaN   NaN   NaN ("not applicable")
in one of them only               0     0     ``inf``, or with ``hd_empty="diagonal"`` the volume's
                                              diagonal in mm (BraTS's 373.13 rule)
================================  ====  ====  =====================================================

Means over classes (:func:`mean_iou`, :func:`segmentation_metrics`) and over patients (:func:`per_organ_table`)
skip NaN. An infinite HD95 would make any mean infinite, so :func:`per_organ_table` averages the finite HD95
values and counts the infinite ones in ``hd95_inf``: read the two together (and the Dice, which is 0 there).

MONAI differs on two of these cells: its ``DiceMetric``/``MeanIoU`` give NaN when the truth is empty even if the
prediction is not (``ignore_empty=True``) or 1.0 when both are empty (``ignore_empty=False``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy import ndimage

__all__ = ["HD_EMPTY", "HD_MODES", "confusion_matrix", "dice_per_class", "hd95_per_class", "iou_per_class",
           "mean_iou", "per_organ_table", "segmentation_metrics", "voxel_accuracy"]

#: what HD95 is when a class is in the prediction or the truth but not both
HD_EMPTY = ("inf", "diagonal")
#: how the two directed surface-distance sets combine: ``"max"`` of the two percentiles (MONAI) or the percentile
#: of the ``"pooled"`` set (medpy's ``hd95``)
HD_MODES = ("max", "pooled")


def _label_map(x, name: str) -> np.ndarray:
    """A (B, *S) integer numpy view of a tensor or array label map, S of 2 or 3 dims."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    elif not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray label map (B, D, H, W), got "
                        f"{type(x).__name__}")
    if x.dtype.kind not in "biu":
        raise TypeError(f"{name} must hold integer class indices, got dtype {x.dtype} (take the argmax of "
                        f"probabilities first)")
    if x.ndim == 5 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim not in (3, 4):
        raise ValueError(f"{name} must be a label map (B, D, H, W) or (B, H, W), got shape {x.shape}")
    return x


def _pair(pred, target, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if n_classes < 2:
        raise ValueError(f"n_classes must be >= 2 (background included), got {n_classes}")
    p, t = _label_map(pred, "pred"), _label_map(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have one shape, got {p.shape} and {t.shape}")
    for name, a in (("pred", p), ("target", t)):
        if a.size and (a.min() < 0 or a.max() >= n_classes):
            raise ValueError(f"{name} values must be in [0, {n_classes}), got [{a.min()}, {a.max()}]")
    return p.astype(np.int64, copy=False), t.astype(np.int64, copy=False)


def _labelled_mask(labelled, b: int, c: int) -> np.ndarray:
    if labelled is None:
        return np.ones((b, c), dtype=bool)
    m = labelled.detach().cpu().numpy() if isinstance(labelled, torch.Tensor) else np.asarray(labelled)
    if m.shape != (b, c):
        raise ValueError(f"labelled must be a (B, C) = {(b, c)} mask, got shape {m.shape}")
    return m.astype(bool)


def _out(values: np.ndarray, include_background: bool) -> torch.Tensor:
    return torch.from_numpy(values if include_background else values[:, 1:].copy())


def confusion_matrix(pred, target, n_classes: int) -> torch.Tensor:
    """Per-sample confusion matrices, ``[b, truth, prediction]`` voxel counts.

    Args:
        pred, target: label maps (B, D, H, W) in [0, C).
        n_classes: C, background included.

    Returns:
        (B, C, C) int64 tensor on the CPU; row sums are the truth's class sizes, column sums the prediction's.
    """
    p, t = _pair(pred, target, n_classes)
    b = p.shape[0]
    codes = t.reshape(b, -1) * n_classes + p.reshape(b, -1)  # (B, V)
    cm = np.stack([np.bincount(row, minlength=n_classes**2) for row in codes])
    return torch.from_numpy(cm.reshape(b, n_classes, n_classes))


def _overlap(pred, target, n_classes: int, labelled, kind: str) -> np.ndarray:
    """(B, C) Dice or IoU with the module's empty rules, float64."""
    cm = confusion_matrix(pred, target, n_classes).numpy().astype(np.float64)
    tp = np.diagonal(cm, axis1=1, axis2=2)  # (B, C)
    fn, fp = cm.sum(2) - tp, cm.sum(1) - tp
    num, den = (2 * tp, 2 * tp + fp + fn) if kind == "dice" else (tp, tp + fp + fn)
    with np.errstate(invalid="ignore", divide="ignore"):
        score = np.where(den > 0, num / den, np.nan)  # den == 0: absent from both
    score[~_labelled_mask(labelled, *score.shape)] = np.nan
    return score


def dice_per_class(pred, target, n_classes: int, include_background: bool = True, labelled=None) -> torch.Tensor:
    """Dice 2|P ∩ T| / (|P| + |T|) per sample and class (empty rules in the module docstring).

    Args:
        pred, target: label maps (B, D, H, W) (or (B, H, W)) in [0, C), tensors or arrays.
        n_classes: C, background included.
        include_background: keep column 0 (MONAI's name and default for ``DiceMetric``).
        labelled: (B, C) bool, False where class c is not annotated in sample b (then NaN); None = all annotated.

    Returns:
        (B, C) — or (B, C − 1) without background — float64 CPU tensor in [0, 1] or NaN.

    Raises:
        ValueError: shapes differ, labels outside [0, C). TypeError: float label maps.
    """
    return _out(_overlap(pred, target, n_classes, labelled, "dice"), include_background)


def iou_per_class(pred, target, n_classes: int, include_background: bool = True, labelled=None) -> torch.Tensor:
    """IoU (Jaccard) |P ∩ T| / |P ∪ T| per sample and class; arguments, shapes and rules as :func:`dice_per_class`."""
    return _out(_overlap(pred, target, n_classes, labelled, "iou"), include_background)


def mean_iou(pred, target, n_classes: int, include_background: bool = True, labelled=None) -> torch.Tensor:
    """Mean over the applicable classes (NaN skipped) of :func:`iou_per_class`, per sample.

    Returns:
        (B,) float64 CPU tensor; NaN for a sample with no applicable class.
    """
    iou = iou_per_class(pred, target, n_classes, include_background, labelled).numpy()
    return torch.from_numpy(_nanmean_rows(iou))


def voxel_accuracy(pred, target) -> torch.Tensor:
    """Fraction of voxels whose predicted label equals the truth, per sample (background included; ``labelled``
    does not apply: an unannotated organ is background in the truth and counts as such).

    Returns:
        (B,) float64 CPU tensor in [0, 1].
    """
    p, t = _label_map(pred, "pred"), _label_map(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have one shape, got {p.shape} and {t.shape}")
    return torch.from_numpy((p == t).reshape(p.shape[0], -1).mean(1, dtype=np.float64))


def _spacings(spacing, b: int, ndim: int) -> np.ndarray:
    """(B, ndim) float64 spacings from None (1), a number, a (ndim,) sequence, or a (B, ndim) array."""
    s = np.ones(ndim) if spacing is None else np.asarray(spacing, dtype=np.float64)
    if s.ndim == 0:
        s = np.full(ndim, float(s))
    if s.shape == (ndim,):
        s = np.broadcast_to(s, (b, ndim))
    if s.shape != (b, ndim) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"spacing must be positive: a number, {ndim} values (mm per voxel along each spatial axis) "
                         f"or a (B, {ndim}) = {(b, ndim)} array, got {spacing!r}")
    return s


def _surface_distances(a: np.ndarray, b: np.ndarray, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``a`` to the surface of ``b``, and back; both masks non-empty.

    The surface is the mask minus its erosion by the face-connected cross (scipy's default structure, outside the
    volume counted as background), as MONAI and medpy take it. Work happens in the bounding box of ``a | b`` with a
    one-voxel margin: every surface voxel lies inside it, so the Euclidean distance transform there is exact.
    """
    box = ndimage.find_objects((a | b).astype(np.int8))[0]
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
    a, b = a[box], b[box]
    edge_a = a & ~ndimage.binary_erosion(a)
    edge_b = b & ~ndimage.binary_erosion(b)
    to_b = ndimage.distance_transform_edt(~edge_b, sampling=spacing)  # distance to b's nearest surface voxel
    to_a = ndimage.distance_transform_edt(~edge_a, sampling=spacing)
    return to_b[edge_a], to_a[edge_b]


def hd95_per_class(pred, target, n_classes: int, spacing=None, include_background: bool = False, labelled=None,
                   percentile: float = 95.0, mode: str = "max", hd_empty: str = "inf") -> torch.Tensor:
    """95th-percentile Hausdorff distance in mm between the surfaces of prediction and truth, per sample and class.

    The surface distances go both ways (prediction → truth and truth → prediction), computed with
    ``scipy.ndimage.distance_transform_edt`` on the voxel grid scaled by ``spacing``. ``mode="max"`` takes the
    larger of the two directed 95th percentiles — MONAI's ``HausdorffDistanceMetric(percentile=95)`` (DeepMind's
    surface-distance also takes the max, of area-weighted percentiles); ``mode="pooled"`` the 95th percentile of
    the two sets together — medpy's ``hd95``. Percentiles interpolate linearly (numpy's and torch's default).
    Empty rules in the module docstring.

    Args:
        pred, target: label maps (B, D, H, W) (or (B, H, W)) in [0, C).
        n_classes: C, background included.
        spacing: voxel size in mm along each spatial axis of the maps: a number, a sequence (D, H, W order), or a
            (B, ndim) array for per-sample spacings; None = 1 (distances in voxels).
        include_background: keep column 0 (MONAI's default for HD: False).
        labelled: (B, C) bool, False where class c is not annotated in sample b (then NaN).
        percentile: in (0, 100]; 100 gives the Hausdorff distance.
        mode: ``"max"`` or ``"pooled"`` (see above).
        hd_empty: ``"inf"`` or ``"diagonal"``: the value when a class is in one map only; "diagonal" is the
            length in mm of the volume's diagonal, √Σ(n_i s_i)² (373.13 for BraTS's 240×240×155 at 1 mm).

    Returns:
        (B, C) — or (B, C − 1) without background — float64 CPU tensor ≥ 0, inf or NaN.

    Raises:
        ValueError: shapes, labels out of range, a bad spacing, percentile, mode or hd_empty (valid values listed).
    """
    if mode not in HD_MODES:
        raise ValueError(f"mode must be one of {HD_MODES}, got {mode!r}")
    if hd_empty not in HD_EMPTY:
        raise ValueError(f"hd_empty must be one of {HD_EMPTY}, got {hd_empty!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    p, t = _pair(pred, target, n_classes)
    b = p.shape[0]
    spacings = _spacings(spacing, b, p.ndim - 1)
    labelled = _labelled_mask(labelled, b, n_classes)
    hd = np.full((b, n_classes), np.nan)
    for i in range(b):
        missing = np.inf if hd_empty == "inf" else float(np.sqrt(((np.array(p.shape[1:]) * spacings[i]) ** 2).sum()))
        for c in range(0 if include_background else 1, n_classes):
            if not labelled[i, c]:
                continue
            a, g = p[i] == c, t[i] == c
            has_a, has_g = a.any(), g.any()
            if not (has_a or has_g):
                continue
            if has_a != has_g:
                hd[i, c] = missing
                continue
            d_pt, d_tp = _surface_distances(a, g, spacings[i])
            if mode == "max":
                hd[i, c] = max(np.percentile(d_pt, percentile), np.percentile(d_tp, percentile))
            else:
                hd[i, c] = np.percentile(np.concatenate([d_pt, d_tp]), percentile)
    return _out(hd, include_background)


def _nanmean_rows(x: np.ndarray) -> np.ndarray:
    """Mean of each row over its non-NaN entries; NaN for an all-NaN row (without numpy's warning)."""
    ok = ~np.isnan(x)
    n = ok.sum(1)
    return np.where(n > 0, np.where(ok, x, 0.0).sum(1) / np.maximum(n, 1), np.nan)


def segmentation_metrics(pred, target, n_classes: int, spacing=None, include_background: bool = False,
                         labelled=None, hd: bool = True, **hd_options) -> dict[str, torch.Tensor]:
    """Every metric of this module for a batch of label maps, in one dict (one row per sample).

    Args:
        pred, target: label maps (B, D, H, W) in [0, C).
        n_classes: C, background included.
        spacing: voxel size in mm (see :func:`hd95_per_class`).
        include_background: keep class 0 in the per-class metrics and their means (default False: organs only).
        labelled: (B, C) bool annotation mask, or None.
        hd: compute HD95 (the slow one: two distance transforms per class and sample).
        **hd_options: ``percentile``, ``mode``, ``hd_empty`` of :func:`hd95_per_class`.

    Returns:
        ``{"dice", "iou", "hd95"}`` → (B, C') float64 tensors (C' = C or C − 1); ``"mean_dice"``, ``"mean_iou"``
        → (B,) means over applicable classes; ``"accuracy"`` → (B,) voxel accuracy over all voxels.
    """
    out = {"dice": dice_per_class(pred, target, n_classes, include_background, labelled),
           "iou": iou_per_class(pred, target, n_classes, include_background, labelled)}
    if hd:
        out["hd95"] = hd95_per_class(pred, target, n_classes, spacing, include_background, labelled, **hd_options)
    out["mean_dice"] = torch.from_numpy(_nanmean_rows(out["dice"].numpy()))
    out["mean_iou"] = torch.from_numpy(_nanmean_rows(out["iou"].numpy()))
    out["accuracy"] = voxel_accuracy(pred, target)
    return out


def _stack(results) -> dict[str, np.ndarray]:
    """Per-patient arrays from a dict of (P, C') arrays or a sequence of such dicts (concatenated over patients)."""
    if isinstance(results, Mapping):
        results = [results]
    if not isinstance(results, Sequence) or not results:
        raise ValueError("results must be a dict of (patients, classes) arrays or a non-empty list of such dicts")
    merged: dict[str, list] = {}
    for r in results:
        for k, v in r.items():
            a = v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            merged.setdefault(k, []).append(a.astype(np.float64))
    return {k: np.concatenate([np.atleast_1d(a) for a in v]) for k, v in merged.items()}


def per_organ_table(results, names: Sequence[str], ddof: int = 1) -> pd.DataFrame:
    """Mean ± standard deviation over patients of each per-class metric, one row per organ plus a ``"mean"`` row.

    For each (patients, classes) metric ``m`` in ``results`` (``dice``, ``iou``, ``hd95``...) the columns are
    ``m_mean``, ``m_std`` and ``m_n`` (patients where the metric applies: NaN skipped). HD95 values of ``inf``
    (an organ missed or hallucinated) are left out of its mean and std and counted in ``hd95_inf``. The ``"mean"``
    row averages each patient's classes first (NaN and inf skipped), then takes mean ± std over patients; its
    ``m_n`` counts patients with at least one applicable class, its ``hd95_inf`` all infinite entries.
    One-dimensional entries (``accuracy``, ``mean_iou``) are not per organ and are ignored.

    Args:
        results: a dict metric → (P, C') tensor or array (as :func:`segmentation_metrics` returns, patients
            concatenated), or a list of such dicts, one per batch or patient.
        names: the C' organ names, in column order (without background when the metrics were computed without).
        ddof: delta degrees of freedom of the std (1: the sample std, pandas' default; NaN for one patient).

    Returns:
        pandas DataFrame indexed by organ name (plus ``"mean"``), float columns.

    Raises:
        ValueError: no per-class metric, or ``names`` of the wrong length.
    """
    table = {k: v for k, v in _stack(results).items() if v.ndim == 2}
    if not table:
        raise ValueError("results hold no (patients, classes) metric")
    names = list(names)
    columns: dict[str, np.ndarray] = {}
    for metric, values in table.items():
        if values.shape[1] != len(names):
            raise ValueError(f"{metric} has {values.shape[1]} classes but {len(names)} names were given: {names}")
        finite = np.where(np.isinf(values), np.nan, values)
        per_patient = _nanmean_rows(finite)
        rows = [finite[:, j] for j in range(len(names))] + [per_patient]
        series = [pd.Series(r).dropna() for r in rows]
        columns[f"{metric}_mean"] = np.array([s.mean() for s in series])
        columns[f"{metric}_std"] = np.array([s.std(ddof=ddof) for s in series])
        columns[f"{metric}_n"] = np.array([len(s) for s in series], dtype=np.int64)
        if metric.startswith("hd"):
            infinite = np.isinf(values).sum(0)
            columns[f"{metric}_inf"] = np.append(infinite, infinite.sum()).astype(np.int64)
    return pd.DataFrame(columns, index=pd.Index([*names, "mean"], name="organ"))
