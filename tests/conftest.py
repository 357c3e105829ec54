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


def run_two_processes(worker: str, tmp_path) -> tuple[dict, dict]:
    """Run ``tests/<worker>`` under torchrun with 2 CPU processes (gloo); return what each rank saved."""
    import subprocess
    import sys
    from pathlib import Path

    import torch

    script = Path(__file__).with_name(worker)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    for net in ("G", "D"):
        for name, t in r0[net].items():
            assert torch.equal(t, r1[net][name]), f"{net}.{name} differs between processes"
    assert (tmp_path / "run" / "checkpoint.pt").is_file()  # written once, by rank 0
    return r0, r1
