"""The command line: train / evaluate / export, user errors as one line and exit status 2, and the model cards'
``command`` — generated from the config — parsing back to the same config."""

import dataclasses
import json
import shlex
import shutil
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch

from voxhelpers import cli
from voxhelpers.data.io import load_weights, sha256
from voxhelpers.inference import load_pretrained
from voxhelpers.inference.pretrained import card_config
from voxhelpers.systems import get_system

MODELS = Path(__file__).resolve().parents[1] / "models"
CARDS = sorted(MODELS.glob("**/*.json"))  # every card, one or two folders deep


def config_from_command(command: str):
    """(system name, config, parsed args) of a card's command, read back through the command line's own parser."""
    words = shlex.split(command)
    env = dict(w.split("=", 1) for w in words[: words.index("python")])
    assert words[words.index("python"):][:3] == ["python", "-m", "voxhelpers"], command
    args = cli._parser().parse_args(words[words.index("python") + 3:])
    assert args.command == "train"
    system = get_system(args.system)
    profile = args.profile or env["VOXHELPERS_PROFILE"]
    return system.name, system.config.for_profile(profile, **cli.given_config(args, system.config)), args


def _one_error_line(captured) -> str:
    """The one line a user's mistake prints: on stderr, "error: ...", no traceback."""
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in captured.err, captured.err
    return lines[0]


# --------------------------------------------------------------------------------------------------
# train, export, evaluate on one tiny run
# --------------------------------------------------------------------------------------------------
RECIPE = ["--loss", "bce", "--pairing-steps", "2", "--consistency", "0.5", "--consistency-start", "0.5",
          "--condition", "onehot"]


@pytest.fixture(scope="module")
def cgan_run(tmp_path_factory):
    """One smoke run of the cGAN on procedural cars (4 shapes, 3 epochs) with recipe options, exported with its
    metrics: ``python -m voxhelpers train voxel_cgan --profile smoke --data procedural:car ... --evaluate``."""
    from voxhelpers.systems import SYSTEMS

    root = tmp_path_factory.mktemp("cli")
    run, export = root / "run", root / "export"
    argv = ["train", "voxel_cgan", "--profile", "smoke", "--data", "procedural:car", "--n-train", "4",
            "--batch-size", "4", *RECIPE, "--out", str(run), "--export", str(export), "--evaluate"]
    # sample sheets with a blank figure: drawing voxels takes seconds a sheet (the figures have their own tests)
    blank = dataclasses.replace(SYSTEMS["voxel_cgan"], figure=lambda *args: plt.figure(figsize=(1, 1)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SYSTEMS, "voxel_cgan", blank)
        assert cli.main(argv) == 0
    return run, export


def test_train_writes_the_run_weights_and_a_card_whose_command_gives_its_config(cgan_run):
    run, export = cgan_run
    assert {p.name for p in run.iterdir()} >= {"checkpoint.pt", "history.csv", "history.png", "samples"}
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_0000.png", "epoch_0002.png"]
    card = json.loads((export / "bce.json").read_text())
    assert (export / "bce.safetensors").is_file() and card["weights"]["sha256"] == sha256(export / "bce.safetensors")
    assert card["system"] == "voxel_cgan" and card["profile"] == "smoke" and card["epochs"] == 3
    assert card["metrics"]["n_consistency"] == 16 and 0 <= card["metrics"]["avar"] <= 1  # --evaluate: smoke budget
    # the recipe options reach the config, the card's command and the stored generator
    cfg = card_config(card)
    assert (cfg.loss, cfg.pairing_steps, cfg.condition, cfg.consistency, cfg.consistency_start) == \
        ("bce", 2, "onehot", 0.5, 0.5)
    assert "--data procedural:car --loss bce --condition onehot --batch-size 4 --pairing-steps 2 --consistency 0.5 " \
           "--consistency-start 0.5 --n-train 4" in card["command"]
    system, parsed, args = config_from_command(card["command"])
    assert system == "voxel_cgan" and parsed == cfg  # the command reproduces the run
    assert args.export == str(export) and args.evaluate
    history = pd.read_csv(run / "history.csv")  # smoke: 3 epochs, the term on from epoch 1.5
    assert list(history["consistency_weight"]) == [0.0, 0.0, 0.5]
    G, _ = load_pretrained(export / "bce.safetensors")
    assert G.n_conditions == 2 and G.net[0].in_channels == G.z_dim + 2  # one-hot: one input per condition


def test_export_run_writes_the_shipped_weights_of_the_checkpoint(cgan_run, tmp_path, capsys):
    run, export = cgan_run
    assert cli.main(["export", "voxel_cgan", "--run", str(run), "--to", str(tmp_path), "--profile", "smoke"]) == 0
    assert "(epoch 3 of 3)" in capsys.readouterr().out
    trained, exported = (json.loads((d / "bce.json").read_text()) for d in (export, tmp_path))
    a, b = (load_weights(d / "bce.safetensors") for d in (export, tmp_path))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # the same moving average, bit for bit
    assert exported["config"] == trained["config"] and exported["metrics"] == {}  # no --evaluate
    assert exported["command"] == trained["command"].replace(f"--export {export} --evaluate", f"--export {tmp_path}")
    assert cli.main(["export", "voxel_cgan", "--run", str(tmp_path / "none"), "--to", str(tmp_path)]) == 2
    assert "checkpoint.pt" in _one_error_line(capsys.readouterr())


# --------------------------------------------------------------------------------------------------
# the shipped cards
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("card_path", CARDS, ids=[str(p.relative_to(MODELS)) for p in CARDS])
def test_shipped_card_command_gives_its_config(card_path):
    card = json.loads(card_path.read_text())
    cfg = card_config(card)
    system, parsed, args = config_from_command(card["command"])
    assert system == card["system"] and parsed == cfg
    assert cfg.epochs == card["epochs"]
    # and command_line regenerates a command that parses back to the same config
    regenerated = cli.command_line(system, cfg, card["profile"], f"--export {args.export}")
    assert config_from_command(regenerated)[1] == cfg
    assert card["command"].startswith(regenerated)


def test_shipped_cards_exist():
    assert len(CARDS) >= 20 and {json.loads(p.read_text())["system"] for p in CARDS} == {
        "voxel_cgan", "iwgan", "vae_iwgan", "pix2pix", "crgan", "xray_ct", "vnet"}


@pytest.mark.parametrize("weights", ["voxel_cgan/car/bce.safetensors",
                                     "iwgan/synthevox3d_airplane/generation.safetensors"])
def test_evaluate_a_shipped_card_with_the_smoke_budget(weights, data_root, tmp_path, capsys):
    src = MODELS / weights
    for suffix in (".safetensors", ".json"):  # a copy: --write must not touch the shipped card
        shutil.copy(src.with_suffix(suffix), tmp_path / src.with_suffix(suffix).name)
    path = tmp_path / src.name
    card = json.loads(path.with_suffix(".json").read_text())
    assert cli.main(["evaluate", card["system"], "--weights", str(path), "--profile", "smoke", "--write"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    updated = json.loads(path.with_suffix(".json").read_text())
    assert updated["metrics"] == {**card["metrics"], **metrics}  # merged key by key
    assert {k: v for k, v in updated.items() if k != "metrics"} == {k: v for k, v in card.items() if k != "metrics"}
    assert metrics["n_generated"] == (8 if card["system"] == "voxel_cgan" else len(get_system("iwgan").data(
        card_config(card)).held_out["test"]))
    # weights other than the card's: refused with one line, loaded with --no-verify
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))
    assert cli.main(["evaluate", card["system"], "--weights", str(path), "--profile", "smoke"]) == 2
    assert "differs from its card's" in _one_error_line(capsys.readouterr())
    if card["system"] == "voxel_cgan":
        assert cli.main(["evaluate", card["system"], "--weights", str(path), "--profile", "smoke", "--no-verify"]) == 0


# --------------------------------------------------------------------------------------------------
# a user's mistakes: one line, status 2
# --------------------------------------------------------------------------------------------------
def test_unknown_category_is_one_error_line(tmp_path, capsys):
    argv = ["train", "voxel_cgan", "--profile", "smoke", "--data", "synthevox3d:plane", "--out", str(tmp_path / "r")]
    assert cli.main(argv) == 2
    line = _one_error_line(capsys.readouterr())
    # the parser checks the category, before anything is read, built or written
    assert line.startswith("error: argument --data: unknown SynthEVox3D category 'plane'; expected a name in "
                           "['airplane'")
    assert line.endswith("(see python -m voxhelpers train voxel_cgan --help)")
    assert not (tmp_path / "r").exists()


def test_missing_data_root_is_one_error_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("VOXHELPERS_DATA", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    argv = ["train", "iwgan", "--profile", "smoke", "--data", "modelnet10:chair", "--out", str(tmp_path / "r")]
    assert cli.main(argv) == 2
    line = _one_error_line(capsys.readouterr())
    assert line.startswith("error: dataset 'modelnet10/chair.npy.gz' not found. Searched: ")
    assert str(tmp_path / "nowhere" / "modelnet10" / "chair.npy.gz") in line and "VOXHELPERS_DATA" in line


def test_bad_data_string_and_wrong_system_are_one_error_line(capsys):
    assert cli.main(["train", "iwgan", "--profile", "smoke", "--data", "chair"]) == 2
    assert "data must be '<source>:<name>'" in _one_error_line(capsys.readouterr())
    vae = MODELS / "iwgan" / "modelnet10_chair" / "reconstruction.safetensors"
    assert cli.main(["evaluate", "iwgan", "--weights", str(vae)]) == 2
    assert _one_error_line(capsys.readouterr()).endswith("is a vae_iwgan model, not iwgan")
    assert cli.main(["evaluate", "iwgan", "--weights", "absent.safetensors"]) == 2
    _one_error_line(capsys.readouterr())


def test_bad_flag_value_is_one_parser_error_line(capsys):
    assert cli.main(["train", "voxel_cgan", "--loss", "hinge"]) == 2  # choices checked by the parser: no usage dump
    line = _one_error_line(capsys.readouterr())
    assert "argument --loss: invalid choice: 'hinge' (choose from 'bce', 'bce_bcewithlogits'" in line
    assert cli.main(["train", "voxel_cgan", "--help"]) == 0


@pytest.mark.parametrize("system,flags", [("xray_ct", ["--max-cases", "2", "--epochs", "1"]),
                                          ("vnet", ["--max-cases", "3", "--epochs", "1"])])
def test_ct_systems_train_export_and_evaluate_from_the_command_line(system, flags, data_root, tmp_path, capsys):
    """Systems 3 and 5 on real patients, smoke sizes: train → weights + card with metrics → `evaluate` rebuilds the
    network from the card (its role: generator / segmenter) and reproduces the card's metrics; the command in the
    card parses back to the run's config."""
    out, export = tmp_path / "run", tmp_path / "models"
    assert cli.main(["train", system, "--profile", "smoke", *flags, "--out", str(out), "--export", str(export),
                     "--evaluate"]) == 0
    weights = next(export.glob("*.safetensors"))
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["system"] == system and card["metrics"]
    name, cfg, _ = config_from_command(card["command"])
    assert name == system and cfg == card_config(card)
    from voxhelpers.systems.base import resolve_precision  # what "auto" meant where it trained, in the card

    assert card["precision"] == resolve_precision("cpu", cfg.precision) in ("bf16", "fp32")
    capsys.readouterr()
    assert cli.main(["evaluate", system, "--weights", str(weights), "--profile", "smoke"]) == 0
    again = json.loads(capsys.readouterr().out)
    for key, value in card["metrics"].items():
        assert again[key] == pytest.approx(value, rel=1e-6, abs=1e-9, nan_ok=True), key
    if system == "vnet":  # the per-patient rows, in the run folder too (the k-fold report reads them there)
        assert (out / "cases.csv").read_text() == weights.with_suffix(".cases.csv").read_text()
