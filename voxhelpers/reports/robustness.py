"""Issue 19's robustness grid for the voxel cGAN: categories nobody tuned on × seeds × recipes, one table.

Each cell is one run, ``python -m voxhelpers train voxel_cgan --data synthevox3d:<category> --seed <s> <recipe>
--evaluate --out runs/<profile>/robust/<recipe>/<category>_s<seed>``, which resumes from its checkpoint and writes
``metrics.json`` (the card's metrics) into its folder. :func:`robustness_table` gathers the folders into one table
— no seed selection: every run counts — and :func:`robustness_summary` says, per recipe, how many converged and how
many met the aim (1-NNA ≤ 0.90, occupancy error ≤ 0.3, AVAR ≥ 0.80).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

__all__ = ["CATEGORIES", "IWGAN_RECIPES", "RECIPES", "iwgan_robustness_commands", "iwgan_robustness_table",
           "robustness_commands", "robustness_summary", "robustness_table", "run_folder"]

#: the six shared SynthEVox3D categories the project never trained on (issue 19)
CATEGORIES = ("chair", "table", "lamp", "sofa", "rifle", "bench")

_AUG = "--augment translate+cutout"


def _flags(*extra: str, consistency: int = 12, start: float = 0.75) -> str:
    """The shipped recipe's flags (``--consistency 12 --consistency-start 0.75 --condition onehot``), with another
    weight or start of the consistency term and ``extra`` flags appended."""
    return " ".join((f"--consistency {consistency} --consistency-start {start:g} --condition onehot", *extra))


#: recipe name → the flags after ``--data`` and ``--seed``. ``shipped`` is today's recipe unchanged (EMA 0.98 by
#: default); the others add the small-data remedies one by one, then together (logits D for R1 and spectral norm);
#: ``diffaug_l1`` swaps the consistency term's soft Jaccard for the L1 distance that shared mass cannot lower (the
#: first ``robust`` cell drew walls both views share: docs/voxel_cgan.md); ``diffaug_b16`` takes batches of 16 (five G
#: and D updates an epoch where the seed's 128 > 80 shapes made one, at the same cost an epoch), ``diffaug_mbstd`` gives
#: D the minibatch standard deviation (ProGAN), ``diffaug_b16_mbstd`` both; ``diffaug_c0`` is ``diffaug`` with the
#: consistency term off (a control: how much of the late collapse is the term's), ``diffaug_w4`` and
#: ``diffaug_b16_w4`` the term at weight 4 (the shipped recipe's other converging schedule: docs/voxel_cgan.md);
#: ``diffaug_s0w4`` switches the term on from the first epoch at weight 4 (ramped over the first 10 %), so that G
#: never meets it late (its late onset is what shrinks the shapes before the collapse: docs/voxel_cgan.md);
#: ``diffaug_nogate`` keeps the shipped term but never skips D's step (``--d-acc-gate 1.01``: a soft accuracy cannot
#: reach it), asking whether the gate's frozen D is what every z collapses onto; ``diffaug_anchor`` holds condition 0's
#: view fixed in the term (``--consistency-anchor``: emptying every view no longer lowers it)
RECIPES = {
    "shipped": _flags(),
    "diffaug": _flags(_AUG),
    "diffaug_l1": _flags(_AUG, "--consistency-distance l1"),
    "diffaug_r1": _flags(_AUG, "--variant sound --r1 1"),
    "robust": _flags(_AUG, "--variant sound --r1 1 --d-norm spectral"),
    "diffaug_b16": _flags(_AUG, "--batch-size 16"),
    "diffaug_mbstd": _flags(_AUG, "--d-mbstd 4"),
    "diffaug_b16_mbstd": _flags(_AUG, "--batch-size 16 --d-mbstd 4"),
    "diffaug_c0": _flags(_AUG, consistency=0),
    "diffaug_w4": _flags(_AUG, consistency=4),
    "diffaug_b16_w4": _flags(_AUG, "--batch-size 16", consistency=4),
    "diffaug_s0w4": _flags(_AUG, consistency=4, start=0),
    "diffaug_nogate": _flags(_AUG, "--d-acc-gate 1.01"),
    "diffaug_anchor": _flags(_AUG, "--consistency-anchor"),
}
#: what the table reads from each run's metrics.json
METRICS = ("one_nna", "cov", "mmd", "occupancy_error", "avar", "aad")
#: 3D-IWGAN generation (issue 19's second grid): the paper's recipe as shipped (EMA 0.99), and with DiffAugment
IWGAN_RECIPES = {"paper": "--ema-decay 0.99", "diffaug": "--ema-decay 0.99 --augment translate+cutout"}
IWGAN_METRICS = ("one_nna", "cov", "mmd", "occupancy_error")


def run_folder(root: str | Path, recipe: str, category: str, seed: int) -> Path:
    """``<root>/<recipe>/<category>_s<seed>``."""
    return Path(root) / recipe / f"{category}_s{seed}"


def _check_recipes(recipes: Sequence[str], known: dict) -> None:
    unknown = [r for r in recipes if r not in known]
    if unknown:
        raise ValueError(f"unknown recipes {unknown}; expected names from {tuple(known)}")


def robustness_commands(root: str | Path = "runs/cpu/robust", categories: Sequence[str] = CATEGORIES,
                        seeds: Sequence[int] = (0, 1), recipes: Sequence[str] = tuple(RECIPES),
                        profile: str = "cpu", precision: str = "auto", extra: str = "") -> list[str]:
    """One command per (recipe, category, seed), in that order; each resumes, so run them in any order. Every cell
    trains in the same arithmetic, ``precision`` (``auto``: bf16 autocast on CUDA or a CPU with bf16 units; a cell took
    about half the time on a Xeon with AMX, 0.93 of it on an AMD EPYC; the shipped weights trained in fp32 on CPU
    and bf16 on CUDA).

    Raises:
        ValueError: an unknown recipe (the valid ones listed).
    """
    _check_recipes(recipes, RECIPES)
    tail = f" {extra}" if extra else ""
    return [f"VOXHELPERS_PROFILE={profile} python -m voxhelpers train voxel_cgan --data synthevox3d:{c} --seed {s} "
            f"{RECIPES[r]} --precision {precision}{tail} --evaluate --out {run_folder(root, r, c, s)}"
            for r in recipes for c in categories for s in seeds]


def _previous_rows(previous, metrics: Sequence[str]) -> dict:
    """(recipe, category, seed) → metrics of the done rows of an earlier table (a CSV path or a DataFrame)."""
    if previous is None:
        return {}
    frame = previous if isinstance(previous, pd.DataFrame) else pd.read_csv(previous)
    missing = {"recipe", "category", "seed", "done", *metrics} - set(frame.columns)
    if missing:
        name = "previous" if isinstance(previous, pd.DataFrame) else str(previous)
        raise ValueError(f"{name}: expected a table written by robustness_table, missing columns {sorted(missing)}")
    done = frame[frame["done"].astype(str).str.lower() == "true"]
    return {(r.recipe, r.category, int(r.seed)): {k: float(getattr(r, k)) for k in metrics}
            for r in done.itertuples(index=False)}


def _gather(root: str | Path, categories: Sequence[str], seeds: Sequence[int], recipes: Sequence[str],
            metrics: Sequence[str], previous=None) -> pd.DataFrame:
    """``recipe, category, seed, done`` and ``metrics`` (NaN where a run has no ``metrics.json`` yet), one row per
    cell, plus ``converged`` (1-NNA ≤ 0.90; False where not done). A cell with no ``metrics.json`` here takes its
    row from ``previous`` (an earlier table) where that one was done: runs of earlier sessions whose folders are
    gone still count, and a run here replaces them."""
    kept = _previous_rows(previous, metrics)
    rows = []
    for r in recipes:
        for c in categories:
            for s in seeds:
                path = run_folder(root, r, c, s) / "metrics.json"
                row = {"recipe": r, "category": c, "seed": s, "done": path.is_file(), **dict.fromkeys(metrics)}
                if row["done"]:
                    try:
                        values = json.loads(path.read_text())
                        row.update({k: float(values[k]) for k in metrics})
                    except (ValueError, KeyError, TypeError) as exc:
                        raise ValueError(f"{path}: expected a JSON object with {tuple(metrics)}; {exc}") from exc
                elif (r, c, int(s)) in kept:
                    row.update(done=True, **kept[(r, c, int(s))])
                rows.append(row)
    table = pd.DataFrame(rows)
    table[list(metrics)] = table[list(metrics)].astype(float)
    table["converged"] = table["done"] & (table["one_nna"] <= 0.90)
    return table


def robustness_table(root: str | Path, categories: Sequence[str] = CATEGORIES, seeds: Sequence[int] = (0, 1),
                     recipes: Sequence[str] = tuple(RECIPES), previous=None) -> pd.DataFrame:
    """Every cell of the grid: ``recipe, category, seed, done`` and :data:`METRICS` (NaN where the run has no
    ``metrics.json`` yet), ``converged`` (1-NNA ≤ 0.90) and ``meets_aim`` (converged, occupancy error ≤ 0.3 and
    AVAR ≥ 0.80); False where not done. ``previous`` (a CSV this function wrote, e.g.
    ``results/voxel_cgan_robustness.csv``, or its DataFrame) fills the cells whose run folders are not here.

    Raises:
        ValueError: a ``metrics.json`` that is not a JSON object holding the metrics (the file named), or a
            ``previous`` table without the grid's columns.
    """
    table = _gather(root, categories, seeds, recipes, METRICS, previous)
    table["meets_aim"] = table["converged"] & (table["occupancy_error"] <= 0.3) & (table["avar"] >= 0.80)
    return table


def iwgan_robustness_commands(root: str | Path = "runs/full/robust_iwgan", categories: Sequence[str] = CATEGORIES,
                              seeds: Sequence[int] = (0, 1), recipes: Sequence[str] = tuple(IWGAN_RECIPES),
                              profile: str = "full", epochs: int = 4500) -> list[str]:
    """The same grid for 3D-IWGAN generation: one command per (recipe, category, seed) at the shipped SynthEVox3D
    budget (``epochs`` critic steps of the 64 training shapes, EMA 0.99), each resuming from its checkpoint.

    Raises:
        ValueError: an unknown recipe (the valid ones listed).
    """
    _check_recipes(recipes, IWGAN_RECIPES)
    return [f"VOXHELPERS_PROFILE={profile} python -m voxhelpers train iwgan --data synthevox3d:{c} --seed {s} "
            f"--epochs {epochs} {IWGAN_RECIPES[r]} --evaluate --out {run_folder(root, r, c, s)}"
            for r in recipes for c in categories for s in seeds]


def iwgan_robustness_table(root: str | Path, categories: Sequence[str] = CATEGORIES, seeds: Sequence[int] = (0, 1),
                           recipes: Sequence[str] = tuple(IWGAN_RECIPES), previous=None) -> pd.DataFrame:
    """The 3D-IWGAN grid's cells: :data:`IWGAN_METRICS`, ``converged`` (1-NNA ≤ 0.90) and ``meets_aim`` (converged
    and occupancy error ≤ 0.3; an unconditional model has no AVAR); ``previous`` as in :func:`robustness_table`.

    Raises:
        ValueError: a ``metrics.json`` that is not a JSON object holding the metrics (the file named).
    """
    table = _gather(root, categories, seeds, recipes, IWGAN_METRICS, previous)
    table["meets_aim"] = table["converged"] & (table["occupancy_error"] <= 0.3)
    return table


def robustness_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per recipe: runs done, converged, meeting the aim, and the medians of the metrics over the done runs."""
    done = table[table["done"]]
    out = table.groupby("recipe", sort=False).agg(runs=("seed", "size"), done=("done", "sum"),
                                                  converged=("converged", "sum"), meets_aim=("meets_aim", "sum"))
    metrics = [m for m in METRICS if m in table.columns]  # the cGAN's or 3D-IWGAN's
    medians = done.groupby("recipe", sort=False)[metrics].median().add_prefix("median ")
    return out.join(medians).reset_index()
