"""Vessel-segmentation metrics over a whole split, for system 4 (SPEC §4): Pix2Pix masks against expert masks.

Inputs are a split of N images: a list of 2-D arrays (images may differ in size) or one (N, H, W) / (N, 1, H, W)
array, numpy or torch. Predictions are probabilities in [0, 1] (map a Tanh output with (x + 1) / 2 first),
binarised as ``prob > threshold``; truths are binary {0, 1}; the optional field of view (FOV, DRIVE) is binary.

**Which pixels.** Dice (≡ F1 for a binary mask), accuracy, sensitivity, specificity and AUC count the pixels
inside the FOV only (DRIVE's protocol; the whole frame without a FOV). clDice, MSE, SSIM and cosine need the 2-D
picture: they are computed on the whole frame with prediction and truth set to 0 outside the FOV.

**Per image, then averaged, and pooled.** :func:`vessel_metrics` reports for every metric the mean over images
of the per-image value (NaN skipped; bob.ip.binseg's DRIVE table and the seed average per image), and for the
counting metrics and AUC also the value *pooled* over all FOV pixels of the split (``<name>_pooled``: ΣTP, ΣFP…
over images, AUC on all pixels at once, as many DRIVE papers do, e.g. orobix/retina-unet). With images of one size
and FOV the two differ only by how images are weighted; read the mean as the primary number.

**The seed's three** (seed 002, on the binarised maps): MSE = mean (P − T)² over the frame with P, T ∈ {0, 1} (=
1 − accuracy without a FOV); SSIM = scikit-image ``structural_similarity`` on {0, 1} maps with ``data_range=1``
(identical to the seed's {0, 255} maps with ``data_range=255``: SSIM is unchanged when the data and the range are
scaled together; a ``data_range`` of 255 on {0, 1} maps would inflate it to ≈ 1); cosine similarity of the
flattened maps, P·T / (|P| |T|).

**clDice** (Shit et al., CVPR 2021, "clDice — a novel topology-preserving loss function for tubular structure
segmentation", Eq. 1–2): with S(·) the skeleton (scikit-image ``skeletonize``), Tprec = |S(P) ∩ T| / |S(P)|,
Tsens = |S(T) ∩ P| / |S(T)|, clDice = 2 Tprec Tsens / (Tprec + Tsens).

Empty cases, per image (E = empty map; "—" = a number as usual):

=====================  ====  ======  ====  ====  ====  ===  ======  ===  ====
truth / prediction     Dice  clDice  Sens  Spec  Acc   AUC  cosine  MSE  SSIM
=====================  ====  ======  ====  ====  ====  ===  ======  ===  ====
E / E                  NaN   NaN     NaN   1     1     NaN  NaN     0    1
E / vessels            0     0       NaN   —     —     NaN  0       —    —
vessels / E            0     0       0     1     —     —    0       —    —
every FOV pixel vessel —     —       —     NaN   —     NaN  —       —    —
=====================  ====  ======  ====  ====  ====  ===  ======  ===  ====

NaN means "not defined for this image" and is skipped by the means (the summary counts the images that gave a
Dice in ``n_dice``). An empty FOV raises. AUC needs both classes inside the FOV.

Thresholds: :func:`choose_vessel_threshold` picks the one with the best Dice on the VALIDATION split; apply it to
test unchanged (it refuses ``split="test"``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

__all__ = ["DEFAULT_VESSEL_THRESHOLDS", "VESSEL_METRICS", "choose_vessel_threshold", "cldice", "counting_metrics",
           "mask_cosine", "mask_mse", "mask_ssim", "vessel_auc", "vessel_counts", "vessel_metrics",
           "vessel_metrics_per_image"]

#: candidate thresholds of :func:`choose_vessel_threshold`: 0.05, 0.10, …, 0.95
DEFAULT_VESSEL_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))
#: the per-image metrics, in table order
VESSEL_METRICS = ("dice", "cldice", "auc", "accuracy", "sensitivity", "specificity", "mse", "ssim", "cosine")


# --------------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------------
def _array(x, name: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or torch tensor (H, W), got {type(x).__name__}")
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} must have dtype bool, integer or float, got {x.dtype}")
    return x


def _image(x, name: str) -> np.ndarray:
    x = _array(x, name)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2 or min(x.shape) < 1:
        raise ValueError(f"{name} must be one 2-D image (H, W) or (1, H, W), got shape {x.shape}")
    return x


def _binary(x, name: str) -> np.ndarray:
    """A 2-D {0, 1} map as bool; 0/1 integers, bool or 0.0/1.0 floats."""
    x = _image(x, name)
    if x.dtype == bool:
        return x
    bad = (x != 0) & (x != 1)
    if bad.any():
        shown = np.unique(x[bad])[:4].tolist()
        raise ValueError(f"{name} must be a binary mask {{0, 1}}, got values such as {shown} (divide a {{0, 255}} "
                         "mask by 255; binarise probabilities first)")
    return x != 0


def _probability(x, name: str) -> np.ndarray:
    """A 2-D map of probabilities in [0, 1] as float64 (bool and 0/1 integers allowed)."""
    x = _image(x, name)
    if x.dtype.kind in "biu":
        return _binary(x, name).astype(np.float64)
    x = x.astype(np.float64)
    if np.isnan(x).any():
        raise ValueError(f"{name} contains NaN ({int(np.isnan(x).sum())} pixels); expected probabilities in [0, 1]")
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{name}: expected probabilities in [0, 1], got values in [{lo:g}, {hi:g}] (map a Tanh "
                         "output in [-1, 1] with (x + 1) / 2)")
    return x


def _fov(fov, shape: tuple[int, ...], name: str = "fov") -> np.ndarray | None:
    if fov is None:
        return None
    f = _binary(fov, name)
    if f.shape != shape:
        raise ValueError(f"{name} must have the image's shape {shape}, got {f.shape}")
    if not f.any():
        raise ValueError(f"{name} is empty: no pixel to evaluate; expected a non-empty field of view")
    return f


def _same(a: np.ndarray, b: np.ndarray, names: tuple[str, str]) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} and {names[1]} must have the same (H, W), got {a.shape} and {b.shape}")


def _split(x, name: str) -> list:
    """A split as a list of per-image arrays: a sequence of (H, W), or one (N, H, W) / (N, 1, H, W) array."""
    if isinstance(x, (torch.Tensor, np.ndarray)):
        if x.ndim == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.ndim != 3:
            raise ValueError(f"{name} must be a list of (H, W) images or an (N, H, W) array, got shape "
                             f"{tuple(x.shape)}")
        x = list(x)
    elif not isinstance(x, Sequence) or isinstance(x, str):
        raise TypeError(f"{name} must be a list of (H, W) images or an (N, H, W) array, got {type(x).__name__}")
    if not len(x):
        raise ValueError(f"{name} is empty; expected at least one image")
    return list(x)


def _threshold(t) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float, np.floating, np.integer)) or not 0 <= float(t) <= 1:
        raise ValueError(f"threshold must be a number in [0, 1], got {t!r}")
    return float(t)


# --------------------------------------------------------------------------------------------------
# one image
# --------------------------------------------------------------------------------------------------
def vessel_counts(pred, truth, fov=None) -> tuple[int, int, int, int]:
    """Confusion counts of one binary prediction inside the field of view.

    Args:
        pred, truth: (H, W) binary {0, 1} maps.
        fov: (H, W) binary field of view, or None (the whole frame).

    Returns:
        ``(tp, fp, fn, tn)`` pixel counts.

    Raises:
        ValueError: non-binary maps, shapes that differ, an empty field of view.
    """
    p, t = _binary(pred, "pred"), _binary(truth, "truth")
    _same(p, t, ("pred", "truth"))
    f = _fov(fov, t.shape)
    if f is not None:
        p, t = p[f], t[f]
    tp = int(np.count_nonzero(p & t))
    fp, fn = int(np.count_nonzero(p)) - tp, int(np.count_nonzero(t)) - tp
    return tp, fp, fn, int(p.size) - tp - fp - fn


def counting_metrics(tp: int, fp: int, fn: int, tn: int) -> dict[str, float]:
    """Dice (= F1), accuracy, sensitivity (recall) and specificity from confusion counts (NaN where undefined:
    Dice with no vessel in truth and prediction, sensitivity with no true vessel, specificity with no background)."""

    def ratio(num, den):
        return num / den if den > 0 else float("nan")

    return {"dice": ratio(2 * tp, 2 * tp + fp + fn), "accuracy": ratio(tp + tn, tp + fp + fn + tn),
            "sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp)}


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mann–Whitney AUC, ties counted as half (average ranks)."""
    from scipy.stats import rankdata

    n_pos = int(np.count_nonzero(labels))
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)  # average ranks over ties
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def vessel_auc(prob, truth, fov=None) -> float:
    """Area under the ROC curve of one image's probabilities inside the field of view (threshold-free).

    Args:
        prob: (H, W) probabilities in [0, 1].
        truth: (H, W) binary {0, 1}.
        fov: (H, W) binary, or None.

    Returns:
        AUC in [0, 1]; NaN when the FOV holds only vessel or only background.

    Raises:
        ValueError: probabilities outside [0, 1] or NaN, a non-binary truth, shapes that differ, an empty FOV.
    """
    p, t = _probability(prob, "prob"), _binary(truth, "truth")
    _same(p, t, ("prob", "truth"))
    f = _fov(fov, t.shape)
    return _auc(p[f], t[f]) if f is not None else _auc(p.ravel(), t.ravel())


def _masked_pair(pred, truth, fov) -> tuple[np.ndarray, np.ndarray]:
    p, t = _binary(pred, "pred"), _binary(truth, "truth")
    _same(p, t, ("pred", "truth"))
    f = _fov(fov, t.shape)
    if f is not None:
        p, t = p & f, t & f
    return p, t


def cldice(pred, truth, fov=None) -> float:
    """Centreline Dice of one image (Shit et al., CVPR 2021): the harmonic mean of the fraction of the predicted
    skeleton inside the true mask and the fraction of the true skeleton inside the predicted mask.

    Args:
        pred, truth: (H, W) binary {0, 1}; set to 0 outside ``fov`` first.
        fov: (H, W) binary, or None.

    Returns:
        clDice in [0, 1]; NaN when both maps are empty, 0 when exactly one is.

    Raises:
        ValueError: non-binary maps, shapes that differ, an empty FOV.
    """
    from skimage.morphology import skeletonize

    p, t = _masked_pair(pred, truth, fov)
    if not p.any() and not t.any():
        return float("nan")
    if not p.any() or not t.any():
        return 0.0
    sp, st = skeletonize(p), skeletonize(t)
    # a non-empty 2-D mask has a non-empty skeleton (isolated pixels are kept), so both denominators are > 0
    tprec = np.count_nonzero(sp & t) / np.count_nonzero(sp)
    tsens = np.count_nonzero(st & p) / np.count_nonzero(st)
    return float(2 * tprec * tsens / (tprec + tsens)) if tprec + tsens > 0 else 0.0


def mask_mse(pred, truth, fov=None) -> float:
    """The seed's MSE: mean (P − T)² over the frame of two {0, 1} maps (0 outside ``fov``), in [0, 1]."""
    p, t = _masked_pair(pred, truth, fov)
    return float(np.count_nonzero(p != t) / p.size)


def mask_ssim(pred, truth, fov=None) -> float:
    """The seed's SSIM of two binary maps: scikit-image ``structural_similarity`` on {0, 1} with ``data_range=1``
    (7×7 uniform window, the library's defaults otherwise), 0 outside ``fov``.

    Raises:
        ValueError: the errors of :func:`vessel_counts`, or an image smaller than 7×7 (the window).
    """
    from skimage.metrics import structural_similarity

    p, t = _masked_pair(pred, truth, fov)
    if min(p.shape) < 7:
        raise ValueError(f"SSIM needs images of at least 7×7 pixels (its window), got {p.shape}")
    return float(structural_similarity(p.astype(np.float64), t.astype(np.float64), data_range=1.0))


def mask_cosine(pred, truth, fov=None) -> float:
    """The seed's cosine similarity of the flattened binary maps, |P ∩ T| / √(|P| |T|) (0 outside ``fov``);
    NaN when both are empty, 0 when one is."""
    p, t = _masked_pair(pred, truth, fov)
    n_p, n_t = np.count_nonzero(p), np.count_nonzero(t)
    if n_p == 0 and n_t == 0:
        return float("nan")
    if n_p == 0 or n_t == 0:
        return 0.0
    return float(np.count_nonzero(p & t) / np.sqrt(float(n_p) * float(n_t)))


# --------------------------------------------------------------------------------------------------
# a split
# --------------------------------------------------------------------------------------------------
def _aligned(probs, truths, fovs):
    """Validated per-image (prob, truth, fov) triples."""
    ps, ts = _split(probs, "probs"), _split(truths, "truths")
    fs = _split(fovs, "fovs") if fovs is not None else [None] * len(ts)
    if not len(ps) == len(ts) == len(fs):
        raise ValueError(f"probs, truths and fovs must hold the same number of images, got {len(ps)}, {len(ts)} and "
                         f"{len(fs)}")
    out = []
    for i, (p, t, f) in enumerate(zip(ps, ts, fs, strict=True)):
        p, t = _probability(p, f"probs[{i}]"), _binary(t, f"truths[{i}]")
        _same(p, t, (f"probs[{i}]", f"truths[{i}]"))
        out.append((p, t, _fov(f, t.shape, f"fovs[{i}]")))
    return out


def vessel_metrics_per_image(probs, truths, fovs=None, threshold: float = 0.5,
                             names: Sequence[str] | None = None) -> pd.DataFrame:
    """Every metric of every image of a split.

    Args:
        probs: N probability maps (H, W) in [0, 1] (a list, or an (N, H, W) / (N, 1, H, W) array or tensor).
        truths: N binary {0, 1} masks of the same sizes.
        fovs: N binary fields of view, or None.
        threshold: binarisation, ``prob > threshold``.
        names: N image names (default "0", "1", …).

    Returns:
        A DataFrame, one row per image: ``name``, :data:`VESSEL_METRICS`, and ``tp``, ``fp``, ``fn``, ``tn``.

    Raises:
        ValueError: counts or shapes that differ, the input errors of the per-image functions.
    """
    return _table(_aligned(probs, truths, fovs), _threshold(threshold), names)


def _table(triples, t: float, names) -> pd.DataFrame:
    rows = []
    if names is not None and len(names) != len(triples):
        raise ValueError(f"names must hold one name per image ({len(triples)}), got {len(names)}")
    for i, (p, y, f) in enumerate(triples):
        b = p > t
        counts = vessel_counts(b, y, f)
        rows.append({"name": str(names[i]) if names is not None else str(i), **counting_metrics(*counts),
                     "cldice": cldice(b, y, f), "auc": vessel_auc(p, y, f), "mse": mask_mse(b, y, f),
                     "ssim": mask_ssim(b, y, f), "cosine": mask_cosine(b, y, f),
                     **dict(zip(("tp", "fp", "fn", "tn"), counts, strict=True))})
    return pd.DataFrame(rows, columns=["name", *VESSEL_METRICS, "tp", "fp", "fn", "tn"])


def vessel_metrics(probs, truths, fovs=None, threshold: float = 0.5) -> dict[str, float]:
    """The summary of a split: per-image means and pooled values (see the module docstring).

    Args:
        probs, truths, fovs, threshold: as :func:`vessel_metrics_per_image`.

    Returns:
        ``{"dice", "cldice", "auc", "accuracy", "sensitivity", "specificity", "mse", "ssim", "cosine"}`` — the means
        over images, NaN skipped (the model card's keys) — plus ``"dice_pooled"``, ``"accuracy_pooled"``,
        ``"sensitivity_pooled"``, ``"specificity_pooled"``, ``"auc_pooled"``, ``"n_images"``, ``"n_dice"`` (images
        with a defined Dice) and ``"threshold"``.
    """
    triples = _aligned(probs, truths, fovs)
    table = _table(triples, _threshold(threshold), None)
    out: dict[str, float] = {}
    for k in VESSEL_METRICS:
        v = table[k].to_numpy(dtype=np.float64)
        out[k] = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    pooled = counting_metrics(*(int(table[c].sum()) for c in ("tp", "fp", "fn", "tn")))
    for k in ("dice", "accuracy", "sensitivity", "specificity"):
        out[f"{k}_pooled"] = pooled[k]
    scores, labels = [], []
    for p, y, f in triples:
        scores.append(p[f] if f is not None else p.ravel())
        labels.append(y[f] if f is not None else y.ravel())
    out["auc_pooled"] = _auc(np.concatenate(scores), np.concatenate(labels))
    out["n_images"] = len(table)
    out["n_dice"] = int(table["dice"].notna().sum())
    out["threshold"] = float(threshold)
    return out


def choose_vessel_threshold(probs, truths, fovs=None, thresholds: Sequence[float] = DEFAULT_VESSEL_THRESHOLDS,
                            average: str = "mean", split: str = "validation") -> tuple[float, dict[float, float]]:
    """The binarisation threshold with the best Dice on a VALIDATION split (then used on test unchanged).

    Args:
        probs, truths, fovs: the validation split, as :func:`vessel_metrics_per_image`.
        thresholds: candidates in [0, 1]; ties go to the lowest.
        average: ``"mean"`` (per-image Dice averaged, NaN skipped) or ``"pooled"`` (Dice of the pooled counts).
        split: the name of the split the data comes from; ``"test"`` is refused.

    Returns:
        ``(best, {threshold: Dice})``.

    Raises:
        ValueError: ``split="test"``, no candidates, an unknown ``average``, a split where no image has a defined
            Dice (no vessel anywhere), or the input errors.
    """
    if split == "test":
        raise ValueError("choose the threshold on the validation split, never on test (split='test' given)")
    if average not in ("mean", "pooled"):
        raise ValueError(f"average must be 'mean' or 'pooled', got {average!r}")
    if not len(thresholds):
        raise ValueError("thresholds must hold at least one candidate in [0, 1]")
    cands = [_threshold(t) for t in thresholds]
    triples = _aligned(probs, truths, fovs)
    counts = np.zeros((len(cands), len(triples), 3))  # (threshold, image, [tp, fp, fn])
    for j, (p, y, f) in enumerate(triples):
        if f is not None:
            p, y = p[f], y[f]
        n_true = np.count_nonzero(y)
        for i, t in enumerate(cands):
            b = p > t
            tp = np.count_nonzero(b & y)
            counts[i, j] = tp, np.count_nonzero(b) - tp, n_true - tp
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    if average == "pooled":
        tp, fp, fn = tp.sum(1), fp.sum(1), fn.sum(1)
    den = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        dice = np.where(den > 0, 2 * tp / den, np.nan)
    if average == "mean":
        dice = np.array([np.nanmean(row) if np.isfinite(row).any() else np.nan for row in dice])
    if not np.isfinite(dice).any():
        raise ValueError("no image of the split has a defined Dice (no vessel in truth or prediction)")
    scores = {t: float(d) for t, d in zip(cands, dice, strict=True)}
    best = max((t for t in cands if np.isfinite(scores[t])), key=lambda t: (scores[t], -t))
    return best, scores
