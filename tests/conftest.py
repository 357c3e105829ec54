"""Shared test fixtures: the real data root (../shared/data when present) and a headless matplotlib."""

import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def real_data_root() -> Path | None:
    """The folder that holds the real datasets for tests: ``$VOXHELPERS_DATA`` entries, else ../shared/data."""
    for p in os.environ.get("VOXHELPERS_DATA", "").split(os.pathsep):
        if p and (Path(p) / "synthevox3d").is_dir():
            return Path(p)
    return SHARED_DATA if (SHARED_DATA / "synthevox3d").is_dir() else None


def on_ci(environ=None) -> bool:
    """Whether the tests run under continuous integration (``CI=true``, as GitHub Actions and most CI services set)."""
    return (os.environ if environ is None else environ).get("CI", "").strip().lower() in ("true", "1", "yes")


def require_real_data(root: Path | None, environ=None) -> Path:
    """``root`` when the real data is there; otherwise skip the test — or FAIL it under ``CI=true``, where a
    missing data folder is a broken set-up, not a reason to pass with the real-data tests silently skipped."""
    if root is not None:
        return root
    if on_ci(environ):
        pytest.fail(f"CI=true but the real data is absent: set VOXHELPERS_DATA to the folder holding synthevox3d/ "
                    f"and modelnet10/ (or provide {SHARED_DATA})", pytrace=False)
    pytest.skip("real data (../shared/data) not present")


@pytest.fixture
def data_root(monkeypatch) -> Path:
    """Point VOXHELPERS_DATA at the real data; skip when it is absent, fail under CI=true (CI always has it)."""
    root = require_real_data(real_data_root())
    monkeypatch.setenv("VOXHELPERS_DATA", str(root))
    return root


def run_two_processes(worker: str, tmp_path) -> tuple[dict, dict]:
    """Run ``tests/<worker> <tmp_path> [args]`` under torchrun with 2 CPU processes (gloo); return what each rank
    saved (``rank{r}.pt``: the G and D state dicts and the world size) after checking both hold the same weights.

    ``worker`` may carry arguments after the file name (``"_ddp_worker.py iwgan"``).
    """
    import subprocess
    import sys

    import torch

    script, *args = worker.split()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(Path(__file__).with_name(script)), str(tmp_path), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    for net in ("G", "D"):
        for name, t in r0[net].items():
            assert torch.equal(t, r1[net][name]), f"{net}.{name} differs between processes"
    assert (tmp_path / "run" / "checkpoint.pt").is_file()  # written once, by rank 0
    return r0, r1


def binvox_bytes(grid: np.ndarray) -> bytes:
    """Encode grid[x, y, z] as binvox (x, z, y order; runs of at most 255)."""
    flat = grid.transpose(0, 2, 1).ravel().astype(np.uint8)
    out, i = bytearray(), 0
    while i < len(flat):
        j = i
        while j < len(flat) and flat[j] == flat[i] and j - i < 255:
            j += 1
        out += bytes([flat[i], j - i])
        i = j
    d = grid.shape[0]
    return f"#binvox 1\ndim {d} {d} {d}\ntranslate 0 0 0\nscale 1\ndata\n".encode() + bytes(out)


def vessel_grid(seed: int = 0, h: int = 96, w: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic en-face 'OCTA' (H, W) uint8: a noisy capillary background (40–120) and a grid of bright vessels
    (190–255; 3- and 6-pixel lines every 12 pixels, covering every sector), with its {0, 1} vessel mask."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((h, w), np.uint8)
    for i, c in enumerate(range(4, min(h, w), 12)):
        width = 3 if i % 2 else 6
        mask[:, c:c + width] = 1
        mask[c:c + width, :] = 1
    image = rng.integers(40, 121, (h, w)).astype(np.uint8)
    image[mask == 1] = rng.integers(190, 256, int(mask.sum())).astype(np.uint8)
    return image, mask
