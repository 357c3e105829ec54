"""The command line: ``python -m voxhelpers {train,evaluate,export,bench} <system> [flags]``.

``train``'s flags are generated from the system's config dataclass (one place for every default: the dataclass;
``--help`` shows each field's help and the profile's budget), and the model card's ``command`` is generated from the
config the same way. A user's mistake (an unknown category, missing data, a bad value) prints one line and exits 2.

    VOXHELPERS_PROFILE=full python -m voxhelpers train voxel_cgan --data synthevox3d:airplane --loss bce
    python -m voxhelpers evaluate voxel_cgan --weights models/voxel_cgan/airplane/bce.safetensors
    python -m voxhelpers export iwgan --run runs/full/iwgan/modelnet10_chair --to models/iwgan/modelnet10_chair
    torchrun --nproc_per_node 4 -m voxhelpers train iwgan --data modelnet10:chair
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path

COMMANDS = ("train", "evaluate", "export", "bench")


def _field_type(hint) -> tuple[type, bool, bool]:
    """(element type, is a tuple, may be None) of a config field's annotation."""
    text = str(hint)
    optional = "None" in text
    for t in (bool, int, float, str):
        if t.__name__ in text.replace("None", ""):
            return t, "tuple" in text, optional
    return str, "tuple" in text, optional


def data_argument(text: str, cls=None) -> str:
    """``--data``, checked by the parser before anything is built: a known source and, for SynthEVox3D, a known
    category (the valid ones listed); a config class with its own ``check_data_argument`` checks it that way.
    Whether the files exist is checked next, before any model is built."""
    from .data.shapes import resolve_category
    from .data.sources import parse_data

    try:
        if hasattr(cls, "check_data_argument"):
            cls.check_data_argument(text)
            return text
        source, name = parse_data(text)
        if source == "synthevox3d":
            resolve_category(name)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from e
    return text


def add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One ``--field-name`` flag per config field (default None: "as the profile says"); choices validated here."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind, is_tuple, optional = _field_type(hints[f.name])
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f"{f.metadata.get('help', '')} (default {default!r})".replace("%", "%%")
        if kind is bool and not is_tuple:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue

        def parse(text: str, kind=kind, optional=optional, name=f.name):
            if name == "data":
                return data_argument(text, cls)
            return None if optional and text.lower() == "none" else kind(text)

        parser.add_argument(flag, dest=f.name, type=parse, default=None, nargs="+" if is_tuple else None,
                            choices=f.metadata.get("choices"), metavar=None if f.metadata.get("choices") else
                            f.name.upper(), help=help_text)


def given_config(args: argparse.Namespace, cls) -> dict:
    """The config fields a user set on the command line."""
    out = {}
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name, None)
        if v is not None:
            out[f.name] = tuple(v) if isinstance(v, list) else v
    return out


def command_line(system: str, cfg, profile: str, extra: str = "") -> str:
    """The command that trains ``cfg``: the fields that differ from the profile's config, as flags."""
    base = type(cfg).for_profile(profile, data=cfg.data)
    parts = [f"VOXHELPERS_PROFILE={profile} python -m voxhelpers train {system} --data {cfg.data}"]
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        if f.name == "data" or v == getattr(base, f.name):
            continue
        flag = "--" + f.name.replace("_", "-")
        if isinstance(v, bool):
            parts.append(flag if v else "--no-" + flag[2:])
        elif isinstance(v, tuple):
            parts.append(f"{flag} " + " ".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v))
        else:
            parts.append(f"{flag} {v:g}" if isinstance(v, float) else f"{flag} {v}")
    return " ".join(parts) + (f" {extra}" if extra else "")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: <message> (see <prog> --help)``, exit 2 — no usage dump."""

    def error(self, message: str):
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    from .systems import SYSTEMS

    p = _Parser(prog="python -m voxhelpers", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a system (flags: the fields of its config)")
    tsub = train.add_subparsers(dest="system", required=True)
    for name, system in SYSTEMS.items():
        q = tsub.add_parser(name, help=system.title, description=f"Train {system.title}. Profile budgets: "
                            + "; ".join(f"{k}: {v}" for k, v in system.config.PROFILES.items()))
        add_config_flags(q, system.config)
        q.add_argument("--profile", choices=("smoke", "cpu", "full"),
                       help="budget (default $VOXHELPERS_PROFILE or cpu)")
        q.add_argument("--out", help="run folder (default runs/<profile>/<system>/<run>)")
        q.add_argument("--device", help="torch device (default cuda when present)")
        q.add_argument("--export", metavar="DIR", help="write the shipped weights + model card into DIR")
        q.add_argument("--evaluate", action="store_true",
                       help="evaluate the trained model (card metrics with --export)")
        q.add_argument("--max-minutes", type=float, help="stop at the first epoch boundary after this many minutes")
        q.add_argument("--no-resume", action="store_true", help="start over even if the run folder has a checkpoint")
    ev = sub.add_parser("evaluate", help="evaluate pretrained weights with their card's protocol")
    ev.add_argument("system", choices=tuple(SYSTEMS))
    ev.add_argument("--weights", required=True, help="a .safetensors file with its .json card")
    ev.add_argument("--profile", choices=("smoke", "cpu", "full"))
    ev.add_argument("--device")
    ev.add_argument("--write", action="store_true", help="write the metrics into the card")
    ev.add_argument("--no-verify", action="store_true", help="load weights whose sha256 differs from the card's")
    ex = sub.add_parser("export", help="export a run's shipped model (from its checkpoint) as weights + card")
    ex.add_argument("system", choices=tuple(SYSTEMS))
    ex.add_argument("--run", required=True, help="the run folder holding checkpoint.pt")
    ex.add_argument("--to", required=True, help="folder for the weights and card")
    ex.add_argument("--profile", choices=("smoke", "cpu", "full"))
    ex.add_argument("--evaluate", action="store_true", help="evaluate and write the card metrics")
    sub.add_parser("bench", help="speed and memory benchmarks (python -m voxhelpers bench --help)", add_help=False)
    return p


def export(system, cfg, model, folder: str | Path, profile: str, epochs: int, data: str, evaluate: bool = False,
           splits=None, device=None) -> Path:
    """Write a trained model's weights and card into ``folder``, the card's command generated from ``cfg``; with
    ``evaluate`` the card's metrics are measured now (the system's protocol)."""
    from .config import project_root
    from .inference import save_pretrained, update_card

    shown = Path(folder).resolve()
    root = project_root().resolve()
    shown = shown.relative_to(root) if shown.is_relative_to(root) else Path(folder)  # no machine paths in cards
    command = command_line(system.name, dataclasses.replace(cfg, epochs=epochs), profile,
                           f"--export {shown}" + (" --evaluate" if evaluate else ""))
    extra = {}
    if hasattr(cfg, "precision"):  # what "auto" meant where it trained: bf16 autocast or fp32
        from .systems.base import resolve_precision

        extra["precision"] = resolve_precision(device or "cpu", cfg.precision)
    path = save_pretrained(model, system.name, {**cfg.to_dict(), "epochs": epochs},
                           Path(folder) / system.weights_name(cfg), profile=profile, command=command, data=data,
                           dtype=system.weights_dtype, epochs=epochs, **extra)
    if evaluate:  # the card's metrics are those of the file a user loads (fp16 / int8), not of the fp32 model
        from .inference import load_pretrained

        splits = splits or system.data(cfg)
        shipped, _ = load_pretrained(path, device or "cpu")
        update_card(path, metrics=evaluate_and_keep(system, cfg, shipped, splits, profile, device,
                                                    path.with_suffix(".cases.csv")))
    return path


def evaluate_and_keep(system, cfg, model, splits, profile, device, cases_csv: Path) -> dict:
    """The system's metrics; a system with per-case :attr:`~voxhelpers.systems.System.details` also writes its
    per-case rows to ``cases_csv`` (atomically)."""
    if system.details is None:
        return system.evaluate(model, cfg, splits, profile, device)
    from .data.io import atomic_write

    metrics, table = system.details(model, cfg, splits, device)
    atomic_write(cases_csv, lambda tmp: table.to_csv(tmp, index=False))
    return metrics


def _train(args) -> None:
    from .config import get_profile, runs_dir
    from .data.io import atomic_write, write_json
    from .plots import SampleSheets, history_figure, save_figure
    from .systems import get_system
    from .training import distributed_world, fit

    system = get_system(args.system)
    profile = get_profile(args.profile)
    cfg = system.config.for_profile(profile, **given_config(args, system.config))
    splits = system.data(cfg)  # validated before any model is built
    run = Path(args.out) if args.out else runs_dir(profile) / system.name / system.run_name(cfg)
    sheets = SampleSheets(system, cfg, splits, run)
    result = fit(system, cfg, run, args.device, splits.train, resume=not args.no_resume,
                 max_minutes=args.max_minutes, callbacks=[sheets])
    if distributed_world()[0] != 0:
        return  # with torchrun only rank 0 writes
    result.history.to_csv(run / "history.csv", index=False)
    save_figure(history_figure(result.history), run / "history.png")
    print(f"trained {len(result.history)} epochs; run folder {run}: checkpoint.pt, history.csv, history.png, "
          f"samples/ ({len(sheets.written)} sheets)")
    if args.export:
        path = export(system, cfg, result.model, args.export, profile, result.state.epoch, splits.description,
                      args.evaluate, splits, args.device)
        print(f"weights {path}, card {path.with_suffix('.json')}")
        rows = path.with_suffix(".cases.csv")
        if rows.is_file():  # the run folder keeps its per-case rows too (what the k-fold report reads)
            atomic_write(run / "cases.csv", lambda tmp: tmp.write_bytes(rows.read_bytes()))
    elif args.evaluate:
        metrics = evaluate_and_keep(system, cfg, result.model, splits, profile, args.device, run / "cases.csv")
        write_json(run / "metrics.json", metrics)
        print(json.dumps(metrics, indent=2))


def _evaluate(args) -> None:
    from .config import get_profile
    from .inference import load_pretrained, update_card
    from .inference.pretrained import card_config
    from .systems import get_system

    system = get_system(args.system)
    model, card = load_pretrained(args.weights, args.device or "cpu", verify=not args.no_verify)
    if card["system"] != system.name:
        raise ValueError(f"{args.weights} is a {card['system']} model, not {system.name}")
    cfg = card_config(card)
    metrics = system.evaluate(model, cfg, system.data(cfg), get_profile(args.profile), args.device)
    if args.write:
        update_card(args.weights, metrics=metrics)
    print(json.dumps(metrics, indent=2))


def _export(args) -> None:
    from .config import get_profile
    from .systems import get_system
    from .training import CHECKPOINT_NAME, read_checkpoint

    system = get_system(args.system)
    ckpt = read_checkpoint(Path(args.run) / CHECKPOINT_NAME)
    cfg = system.config.from_dict(ckpt["config"])
    models = system.build(cfg, "cpu")
    key = system.shipped_key(cfg)
    models[key].load_state_dict(ckpt["models"][key])
    splits = system.data(cfg)
    path = export(system, cfg, models[key].eval(), args.to, get_profile(args.profile), ckpt["epoch"],
                  splits.description, args.evaluate, splits)
    print(f"weights {path}, card {path.with_suffix('.json')} (epoch {ckpt['epoch']} of {cfg.epochs})")


def main(argv: list[str] | None = None) -> int:
    """Run a command; a user's mistake prints ``error: <message>`` and returns 2 (no traceback)."""
    from .config import DatasetNotFoundError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:
        from .bench import main as bench_main

        return bench_main(argv[1:])
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help (0) or a parser error, already printed on one line (2)
        return int(e.code or 0)
    try:
        {"train": _train, "evaluate": _evaluate, "export": _export}[args.command](args)
    except (ValueError, TypeError, DatasetNotFoundError, FileNotFoundError) as e:
        message = " ".join(line.strip() for line in str(e).splitlines() if line.strip())  # one line, always
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0
