"""Data roots and project folders.

Datasets are found through ``VOXHELPERS_DATA``, a search path (``os.pathsep``-separated folders); every reader
also takes the roots as a parameter. A user's runs write under ``runs/`` (git-ignored); the tracked ``results/``
and ``images/`` change only by an explicit export (``VOXHELPERS_EXPORT=1``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .profiles import get_profile

DATA_ENV = "VOXHELPERS_DATA"
EXPORT_ENV = "VOXHELPERS_EXPORT"


def data_roots(roots: str | Path | Sequence[str | Path] | None = None) -> list[Path]:
    """Folders searched for datasets: ``roots`` if given (a folder, a search path or a list), else
    ``$VOXHELPERS_DATA`` then ``./data``, ``../data`` and the repository's ``data/``."""
    if roots is not None:
        if isinstance(roots, (str, Path)):
            roots = [p for p in str(roots).split(os.pathsep) if p]
        return [Path(r).expanduser() for r in roots]
    found = [Path(p).expanduser() for p in os.environ.get(DATA_ENV, "").split(os.pathsep) if p]
    here = Path.cwd()
    found += [here / "data", here.parent / "data", Path(__file__).resolve().parents[2] / "data"]
    seen, out = set(), []
    for r in found:
        key = str(r.resolve()) if r.exists() else str(r)
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not under any data root; the message says where to get it."""


def find_data(relative: str, how_to_get: str, roots: str | Path | Sequence[str | Path] | None = None) -> Path:
    """Return the first ``<root>/<relative>`` that exists among :func:`data_roots` (``roots``).

    Args:
        relative: path of the dataset inside a data root, e.g. ``"synthevox3d"``.
        how_to_get: one or two sentences telling the user where to download it.
        roots: the data roots to search (default: ``$VOXHELPERS_DATA`` and the usual folders).

    Raises:
        DatasetNotFoundError: naming the folders searched and how to obtain the data.
    """
    searched = data_roots(roots)
    for root in searched:
        candidate = root / relative
        if candidate.exists():
            return candidate
    listing = "\n  ".join(str(r / relative) for r in searched)
    raise DatasetNotFoundError(
        f"dataset {relative!r} not found. Searched:\n  {listing}\n{how_to_get}\n"
        f"Set {DATA_ENV} to the folder that holds {relative!r} (several folders: separate with {os.pathsep!r})."
    )


def project_root() -> Path:
    """The repository root: the first folder upward from the working directory holding ``models/`` and
    ``notebooks/`` (notebooks run from their own folder), else the folder above the installed package."""
    for folder in (Path.cwd(), *Path.cwd().parents):
        if (folder / "models").is_dir() and (folder / "notebooks").is_dir():
            return folder
    return Path(__file__).resolve().parents[2]


def models_dir() -> Path:
    """``<root>/models``: pretrained weights and their cards."""
    return project_root() / "models"


def exporting() -> bool:
    """Whether this run may write the tracked ``results/``, ``images/`` and ``models/`` (``VOXHELPERS_EXPORT=1``)."""
    return os.environ.get(EXPORT_ENV, "") not in ("", "0", "false", "no")


def runs_dir(profile: str | None = None) -> Path:
    """``<root>/runs/<profile>``: where runs, checkpoints, figures and tables of a user's run go (git-ignored)."""
    return project_root() / "runs" / get_profile(profile)


def output_dir(kind: str = "images", profile: str | None = None) -> Path:
    """Where notebooks write figures and tables: ``<root>/runs/<profile>/<kind>`` — except when exporting
    (``VOXHELPERS_EXPORT=1``) in the ``cpu`` or ``full`` profile, which writes the tracked ``<root>/<kind>``."""
    if exporting() and get_profile(profile) != "smoke":
        return project_root() / kind
    return runs_dir(profile) / kind


def export_dir(system_folder: str, profile: str | None = None) -> Path:
    """Where a notebook exports trained weights: ``models/<system_folder>`` only when exporting in the ``full``
    profile (the shipped weights' budget), else ``runs/<profile>/models/<system_folder>``. Weights trained in
    another profile replace shipped ones only by an explicit ``python -m voxhelpers export ... --to models/...``, and
    only when their metrics improved."""
    if exporting() and get_profile(profile) == "full":
        return models_dir() / system_folder
    return runs_dir(profile) / "models" / system_folder
