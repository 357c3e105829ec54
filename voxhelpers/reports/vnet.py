"""System 5's k-fold report: every fold's per-case rows gathered, one per-organ table per network, side by side.

Each fold run (``python -m voxhelpers train vnet --network N --fold k --evaluate``) writes ``cases.csv`` into its run
folder (``runs/<profile>/vnet/<source>_<network>_fold<k>/``): one row per validation patient. Because every patient
is validated in exactly one fold, the rows of all folds together cover each patient once, and the table's mean ± std
are over patients (not over fold means).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..config.vnet import SEGMENTATION_NETWORKS

__all__ = ["fold_means", "kfold_cases", "kfold_commands", "kfold_table", "paired_comparison"]


def kfold_commands(networks: Sequence[str] = SEGMENTATION_NETWORKS, n_folds: int = 5, data: str = "openkbp",
                   profile: str = "cpu") -> list[str]:
    """The commands that train and evaluate every (network, fold): run them in any order, each resumes."""
    return [f"VOXHELPERS_PROFILE={profile} python -m voxhelpers train vnet --data {data} --network {n} "
            f"--n-folds {n_folds} --fold {k} --evaluate" for n in networks for k in range(n_folds)]


def kfold_cases(runs: str | Path, networks: Sequence[str] = SEGMENTATION_NETWORKS, n_folds: int = 5,
                source: str = "openkbp", previous: str | Path | pd.DataFrame | None = None
                ) -> tuple[pd.DataFrame, list[str]]:
    """Every fold's per-case rows under ``runs`` (``runs/<profile>/vnet``), with ``network`` and ``fold`` columns.

    ``previous``: rows gathered earlier (this function's table, saved as CSV, e.g. ``results/vnet_kfold_cases.csv``);
    a (network, fold) with no ``cases.csv`` under ``runs`` takes its rows from there, so a k-fold whose run folders
    are gone (another machine, an earlier session) is still reported; a run folder here replaces them.

    Returns:
        ``(rows, missing)``: the rows found, and the run folders without a ``cases.csv`` (not trained or not
        evaluated yet) and not in ``previous``.

    Raises:
        ValueError: a case validated twice for one network (folds of different splits mixed in one folder), or a
            ``previous`` table without ``case``, ``network`` and ``fold`` columns.
    """
    runs = Path(runs)
    earlier = None
    if previous is not None:
        earlier = previous if isinstance(previous, pd.DataFrame) else pd.read_csv(previous)
        if not {"case", "network", "fold"} <= set(earlier.columns):
            raise ValueError(f"{'previous' if isinstance(previous, pd.DataFrame) else previous}: expected per-case "
                             f"rows with case, network and fold columns (kfold_cases' table), got "
                             f"{list(earlier.columns)[:6]}")
    frames, missing = [], []
    for network in networks:
        for fold in range(n_folds):
            path = runs / f"{source}_{network}_fold{fold}" / "cases.csv"
            if path.is_file():
                frames.append(pd.read_csv(path).assign(network=network, fold=fold))
                continue
            kept = None if earlier is None else earlier[(earlier["network"] == network) & (earlier["fold"] == fold)]
            if kept is not None and len(kept):
                frames.append(kept)
            else:
                missing.append(str(path.parent))
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["case", "network", "fold"])
    twice = rows[rows.duplicated(["network", "case"], keep=False)]
    if len(twice):
        raise ValueError(f"cases validated in two folds of one network: {sorted(set(twice['case']))[:5]}; each fold "
                         "run must come from the same n_folds and seed")
    return rows, missing


def _mean_std(values: np.ndarray) -> str:
    v = values[np.isfinite(values)]
    if not len(v):
        return "—"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def _patient_means(values: np.ndarray) -> np.ndarray:
    """Per row (patient): the mean over its organs, NaN (not delineated) and inf (HD95 of a missed organ) skipped."""
    return np.array([np.nanmean(np.where(np.isinf(r), np.nan, r)) if np.isfinite(r).any() else np.nan
                     for r in values])


def kfold_table(rows: pd.DataFrame, names: Sequence[str], metrics: Sequence[str] = ("dice", "hd95")) -> pd.DataFrame:
    """Per organ (and their mean), per network: mean ± std over patients of each metric, and the patients counted.

    HD95 of an organ missed or hallucinated is infinite: it is left out of the mean and counted in the
    ``hd95 missed`` column. NaN (an organ not delineated for a patient) is skipped.
    """
    out = {}
    for network, group in rows.groupby("network", sort=False):
        for metric in metrics:
            cols = [f"{metric}_{n}" for n in names]
            values = group[cols].to_numpy(dtype=float)
            per_patient = _patient_means(values)
            column = [_mean_std(values[:, j]) for j in range(len(names))] + [_mean_std(per_patient)]
            out[(network, metric)] = column
            if metric.startswith("hd"):
                out[(network, f"{metric} missed")] = [int(np.isinf(values[:, j]).sum()) for j in range(len(names))] \
                    + [int(np.isinf(values).sum())]
        out[(network, "patients")] = [int(np.isfinite(group[f"dice_{n}"]).sum()) for n in names] + [len(group)]
    table = pd.DataFrame(out, index=pd.Index([*names, "mean"], name="organ"))
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def _network_rows(rows: pd.DataFrame, network: str) -> pd.DataFrame:
    group = rows[rows["network"] == network]
    if not len(group):
        raise ValueError(f"no rows of network {network!r}; the table holds {sorted(set(rows['network']))}")
    return group.set_index("case")


def paired_comparison(rows: pd.DataFrame, a: str, b: str, names: Sequence[str], metric: str = "dice"
                      ) -> pd.DataFrame:
    """Network ``a`` against ``b`` on the patients both validated, per organ and for the per-patient mean over organs
    (as in :func:`kfold_table`): the patients paired, both means, the mean difference a − b, how many patients each
    network does better on, and the two-sided Wilcoxon signed-rank p (scipy; ties dropped, NaN when every
    difference is 0). A pair counts where both values are finite (an organ not delineated, or the infinite HD95 of a
    missed organ, leaves the pair out). For Dice higher is better; for a distance (``hd95``) lower is, and ``a
    better`` counts the patients where a's is lower.

    Raises:
        ValueError: a network without rows (the networks present named).
    """
    from scipy.stats import wilcoxon

    ra, rb = _network_rows(rows, a), _network_rows(rows, b)
    cases = ra.index.intersection(rb.index)
    cols = [f"{metric}_{n}" for n in names]
    va, vb = (r.loc[cases, cols].to_numpy(dtype=float) for r in (ra, rb))
    sign = -1.0 if metric.startswith("hd") else 1.0
    out = []
    for x, y in zip([*va.T, _patient_means(va)], [*vb.T, _patient_means(vb)], strict=True):  # organs, then the mean
        keep = np.isfinite(x) & np.isfinite(y)
        x, y = x[keep], y[keep]
        d = x - y
        p = float(wilcoxon(x, y).pvalue) if np.any(d != 0) else float("nan")
        out.append({"patients": int(keep.sum()), a: x.mean() if len(x) else np.nan,
                    b: y.mean() if len(y) else np.nan, f"{a} − {b}": d.mean() if len(d) else np.nan,
                    f"{a} better": int((sign * d > 0).sum()), f"{b} better": int((sign * d < 0).sum()),
                    "wilcoxon p": p})
    return pd.DataFrame(out, index=pd.Index([*names, "mean"], name="organ"))


def fold_means(rows: pd.DataFrame, names: Sequence[str], metric: str = "dice") -> pd.DataFrame:
    """Fold × network: the mean over the fold's patients of the per-patient mean over organs (NaN where a network
    has no rows for a fold), folds in order, and a last row ``all`` over each network's patients (the networks' own
    folds: compare two networks patient by patient with :func:`paired_comparison`)."""
    cols = [f"{metric}_{n}" for n in names]
    frame = rows[["network", "fold"]].assign(value=_patient_means(rows[cols].to_numpy(dtype=float)))
    table = frame.pivot_table(index="fold", columns="network", values="value", aggfunc="mean", sort=False)
    table = table.sort_index().astype(float)
    table.index = table.index.astype(object)
    table.loc["all"] = frame.groupby("network", sort=False)["value"].mean()
    table.columns.name = None
    return table
