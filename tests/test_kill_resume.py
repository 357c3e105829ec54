"""A training run killed with SIGKILL mid-epoch leaves an intact checkpoint, and resuming from it ends with exactly
the weights of an uninterrupted run (every tensor ``torch.equal``, the optimisers' moments, the history).

test_training.py stops runs politely (``max_minutes=0``); here the process gets no chance to clean up. Every run is a
separate ``python`` process running this file as a script (one thread each, so the float reductions are the same in
all three), on a tiny 3D-IWGAN (procedural chairs, 8 batches an epoch, a checkpoint after every epoch).

    python tests/test_kill_resume.py RUN_DIR RESULT_FILE [--announce]
"""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from voxhelpers.training import CHECKPOINT_NAME, read_checkpoint

EPOCHS = 4
BATCHES = 8  # per epoch: 20 distinct chairs, 4 held out, 16 trained on in batches of 2
KILL_AT = (1, 3)  # (epoch, batch within it): after the checkpoint of epoch 0, mid-way through epoch 1
TIMEOUT = 180  # seconds for any one process (a few seconds each on 2 CPU cores)


def config():
    from voxhelpers.config import iwgan_config

    return iwgan_config("smoke", data="procedural:chair", max_shapes=20, batch_size=2, epochs=EPOCHS,
                        sample_every=100, ema_decay=0.5, g_channels=(16, 8, 8, 4), d_channels=(4, 8, 8, 16))


def worker(run_dir: Path, result: Path, announce: bool) -> None:
    """Train (or resume) the tiny run; with ``announce`` print ``batch <epoch> <step>`` after every batch."""
    import dataclasses

    from voxhelpers.systems import get_system
    from voxhelpers.training import fit

    torch.set_num_threads(1)
    system = get_system("iwgan")
    if announce:
        real_step = system.step

        def step(models, optimizers, batch, cfg, state):
            out = real_step(models, optimizers, batch, cfg, state)
            print(f"batch {state.epoch} {state.step}", flush=True)
            return out

        system = dataclasses.replace(system, step=step)
    # checkpoint_minutes=0: a checkpoint after every epoch (sample_every is 100)
    done = fit(system, config(), run_dir, "cpu", progress=False, checkpoint_minutes=0)
    torch.save({"models": {k: m.state_dict() for k, m in done.models.items()},
                "optimizers": {k: o.state_dict() for k, o in done.state.optimizers.items()},
                "history": done.state.history, "step": done.state.step,
                "generator": done.state.generator.get_state()}, result)


def command(run_dir: Path, result: Path, *flags: str) -> list[str]:
    return [sys.executable, __file__, str(run_dir), str(result), *flags]


def environment() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def finish(proc: subprocess.Popen, what: str) -> str:
    """Wait for ``proc`` (killed after TIMEOUT), assert it succeeded, return its standard error."""
    try:
        _, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"the {what} run took over {TIMEOUT} s:\n{err[-2000:]}")
    assert proc.returncode == 0, f"the {what} run failed:\n{err[-3000:]}"
    return err


def assert_same_run(a: dict, b: dict) -> None:
    """Every model's tensors, the optimisers' state, the history, the batch counter and the draw generator equal."""
    assert a["models"].keys() == b["models"].keys() == {"G", "D", "G_ema"}
    for key, sa in a["models"].items():
        sb = b["models"][key]
        assert list(sa) == list(sb)
        for name, t in sa.items():
            assert torch.equal(t, sb[name]), f"{key}.{name} differs from the uninterrupted run"
    for key, oa in a["optimizers"].items():
        ob = b["optimizers"][key]
        assert oa["state"].keys() == ob["state"].keys()
        for i, moments in oa["state"].items():
            for k, t in moments.items():
                assert torch.equal(torch.as_tensor(t), torch.as_tensor(ob["state"][i][k])), f"optimizer {key} {i}.{k}"
    assert pd.DataFrame(a["history"]).equals(pd.DataFrame(b["history"])) and len(a["history"]) == EPOCHS
    assert a["step"] == b["step"] == EPOCHS * BATCHES
    assert torch.equal(a["generator"], b["generator"])


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_sigkill_mid_epoch_leaves_an_intact_checkpoint_and_resumes_exactly(tmp_path):
    procs: list[subprocess.Popen] = []
    try:
        kill_then_resume(tmp_path, procs)
    finally:
        for proc in procs:  # a failed assertion leaves no process behind
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def kill_then_resume(tmp_path: Path, procs: list) -> None:
    """The test's body; every process it starts goes into ``procs``."""
    env = environment()
    # the uninterrupted run, alongside the one to be killed (one thread each: the 2 cores are used once)
    reference = subprocess.Popen(command(tmp_path / "reference", tmp_path / "reference.pt"), env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    procs.append(reference)
    run = tmp_path / "killed"
    victim = subprocess.Popen(command(run, tmp_path / "killed.pt", "--announce"), env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    procs.append(victim)
    watchdog = threading.Timer(TIMEOUT, victim.kill)  # the loop over its output below never blocks for ever
    watchdog.start()
    ckpt = run / CHECKPOINT_NAME
    seen = []
    try:
        for line in victim.stdout:
            if not line.startswith("batch "):
                continue
            epoch, step = map(int, line.split()[1:])
            seen.append((epoch, step))
            if (epoch, step - epoch * BATCHES) == KILL_AT:
                deadline = time.monotonic() + 10  # written before epoch 1 began; poll in case the file system lags
                while not ckpt.is_file() and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert ckpt.is_file(), "no checkpoint after the first epoch"
                assert victim.poll() is None, "the run ended before it could be killed"
                victim.send_signal(signal.SIGKILL)
                break
    finally:
        watchdog.cancel()
        victim.stdout.close()
        err = victim.stderr.read()
        victim.stderr.close()
        victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL, f"not killed at {KILL_AT} (seen {seen[-3:]}):\n{err[-2000:]}"
    assert not (tmp_path / "killed.pt").exists()  # it never finished

    # the checkpoint on disk is whole: it loads, and holds the end of epoch 0 (mid-epoch 1 nothing was written)
    state = read_checkpoint(ckpt)
    assert state["epoch"] == 1 and state["step"] == BATCHES and len(state["history"]) == 1
    assert state["models"].keys() == {"G", "D", "G_ema"}
    assert all(torch.isfinite(t).all() for sd in state["models"].values() for t in sd.values() if t.is_floating_point())
    assert [p.name for p in run.iterdir()] == [CHECKPOINT_NAME]  # no half-written temporary file beside it

    # resume to the end in a fresh process: the same weights as the uninterrupted run, bit for bit
    resumed = subprocess.Popen(command(run, tmp_path / "killed.pt"), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    procs.append(resumed)
    log = finish(resumed, "resumed")
    assert f"resuming from epoch 1 of {EPOCHS}, {ckpt}" in log
    finish(reference, "uninterrupted")
    assert_same_run(torch.load(tmp_path / "reference.pt", weights_only=True),
                    torch.load(tmp_path / "killed.pt", weights_only=True))
    assert read_checkpoint(ckpt)["epoch"] == EPOCHS


if __name__ == "__main__":
    worker(Path(sys.argv[1]), Path(sys.argv[2]), "--announce" in sys.argv[3:])
