"""Run profiles, config-field helpers and the base of every system's config dataclass.

Profiles choose the budget of every notebook and training run through one setting, the environment variable
``VOXHELPERS_PROFILE``:

* ``smoke`` — seconds; what CI runs every notebook with.
* ``cpu`` (default) — minutes to a few hours on 2 CPU cores.
* ``full`` — the seeds' budgets, for a GPU.

A system's config is a dataclass deriving from :class:`Config`: every field is declared with :func:`option`
(default, one-line help, valid choices), which is what the command line (``python -m voxhelpers train <system>
--help``) and the model cards' ``command`` are generated from — one place for every default.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar

PROFILES = ("smoke", "cpu", "full")
PROFILE_ENV = "VOXHELPERS_PROFILE"


def get_profile(profile: str | None = None) -> str:
    """Return the active run profile (argument, else ``$VOXHELPERS_PROFILE``, else ``"cpu"``).

    Raises:
        ValueError: if the profile is not one of ``smoke``, ``cpu``, ``full``.
    """
    profile = profile or os.environ.get(PROFILE_ENV) or "cpu"
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES} (env {PROFILE_ENV})")
    return profile


def option(default: Any, help: str, choices: tuple | None = None) -> Any:  # noqa: A002 - argparse's word
    """A config field: its default, a one-line help (shown by ``--help``) and, for strings, the valid values."""
    return field(default=default, metadata={"help": help, "choices": choices})


#: training arithmetic a config may ask for: ``auto`` (bf16 autocast where the device computes bf16 natively: CUDA, or
#: a CPU with AMX tiles or AVX-512 BF16 — 1.6–4x faster 3D convolutions there; fp32 elsewhere), ``bf16``, ``fp32``,
#: or ``cuda`` (bf16 autocast on CUDA only, fp32 on every CPU: the GAN systems' default, how their shipped weights
#: were trained);
#: :func:`voxhelpers.systems.base.resolve_precision` says what each means on a device
PRECISIONS = ("auto", "bf16", "fp32", "cuda")


def precision_option(default: str) -> Any:
    """The ``precision`` field of a system whose training step may run under bf16 autocast
    (:func:`voxhelpers.systems.base.autocast_for`)."""
    return option(default, "training arithmetic: auto (bf16 autocast where the device computes bf16 natively: "
                  "CUDA, or a CPU with AMX or AVX-512 BF16, 1.6-4x faster steps there; fp32 elsewhere), bf16, fp32, "
                  "or cuda (bf16 on CUDA only, fp32 on every CPU); prediction and metrics are always fp32", PRECISIONS)


def check_choice(name: str, value: Any, choices: tuple) -> None:
    """Raise ValueError naming ``name`` and listing the valid values when ``value`` is not one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")


@dataclass
class Config:
    """Base of the per-system config dataclasses: dict round trip, choice checks, profile budgets.

    Subclasses set ``PROFILES`` (the fields each profile overrides) and validate their values in
    ``__post_init__`` (call ``super().__post_init__()`` first: it checks every field declared with ``choices``).
    """

    PROFILES: ClassVar[dict[str, dict]] = {}

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices:
                check_choice(f.name, getattr(self, f.name), choices)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def known_fields(cls, values: dict) -> dict:
        """``values`` unchanged, or a ValueError naming the keys that are not fields (and listing the fields)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; expected some of {sorted(names)}")
        return values

    @classmethod
    def upgrade(cls, values: dict) -> dict:
        """Map an older config dict onto today's fields (the default: unchanged). Subclasses override."""
        return dict(values)

    @classmethod
    def from_dict(cls, values: dict) -> Config:
        """Build a config from a dict (a card's or a checkpoint's), upgrading older keys; unknown keys raise."""
        values = cls.known_fields(cls.upgrade(values))
        hints = typing.get_type_hints(cls)
        for k, v in list(values.items()):  # JSON turns tuples into lists
            if isinstance(v, list) and "tuple" in str(hints.get(k, "")):
                values[k] = tuple(v)
        return cls(**values)

    @classmethod
    def for_profile(cls, profile: str | None = None, **overrides) -> Config:
        """The config of a profile (its budget over the paper defaults), then explicit overrides.

        Raises:
            ValueError: an unknown profile, an unknown field (the message lists the valid ones) or a bad value.
        """
        return cls(**cls.known_fields({**cls.PROFILES.get(get_profile(profile), {}), **overrides}))


@dataclass
class EvalBudget:
    """How many samples evaluation cells draw, per profile."""

    n_consistency: int = 1000  # z drawn for condition-consistency AAD/AVAR
    n_generated: int = 80  # generated shapes compared with the real set (COV/MMD/1-NNA)
    extra: dict = field(default_factory=dict)


EVAL_PROFILES: dict[str, EvalBudget] = {
    "smoke": EvalBudget(n_consistency=16, n_generated=8),
    "cpu": EvalBudget(n_consistency=200, n_generated=80),
    "full": EvalBudget(n_consistency=1000, n_generated=80),
}


def eval_budget(profile: str | None = None) -> EvalBudget:
    """The evaluation budget of a profile."""
    return EVAL_PROFILES[get_profile(profile)]
