"""Shared test fixtures: the real data root (../shared/data when present) and a headless matplotlib."""

import os
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def real_data_root() -> Path | None:
    """The folder that holds the real datasets for tests: ``$VOXHELPERS_DATA`` entries, else ../shared/data."""
    for p in os.environ.get("VOXHELPERS_DATA", "").split(os.pathsep):
        if p and (Path(p) / "synthevox3d").is_dir():
            return Path(p)
    return SHARED_DATA if (SHARED_DATA / "synthevox3d").is_dir() else None


@pytest.fixture
def data_root(monkeypatch) -> Path:
    """Point VOXHELPERS_DATA at the real data, or skip when it is absent (CI always has it)."""
    root = real_data_root()
    if root is None:
        pytest.skip("real data (../shared/data) not present")
    monkeypatch.setenv("VOXHELPERS_DATA", str(root))
    return root
