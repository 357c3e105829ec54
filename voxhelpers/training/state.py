"""Training state: everything a run needs to continue exactly, written atomically as one checkpoint."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..data.io import load_checkpoint, save_checkpoint

CHECKPOINT_NAME = "checkpoint.pt"


@dataclass
class TrainState:
    """Models, optimisers, the run's draw generator, epoch and batch counters, history and system state.

    Attributes:
        models: every network of the run (EMA copies included), by name.
        optimizers: by name.
        generator: the CPU generator of the run's draws (z, ε, views).
        epoch: epochs completed.
        step: batches completed (all epochs; the n_critic schedule reads it).
        history: one dict per completed epoch.
        extra: system state kept across batches (the cGAN's D gate) and the last finite value of each history key.
        config: the run's config dict; a checkpoint of another config is refused.
    """

    models: dict[str, nn.Module]
    optimizers: dict[str, torch.optim.Optimizer]
    generator: torch.Generator
    epoch: int = 0
    step: int = 0
    history: list[dict] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)

    def state_dict(self) -> dict:
        return {
            "models": {k: m.state_dict() for k, m in self.models.items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "epoch": self.epoch,
            "step": self.step,
            "history": self.history,
            "extra": self.extra,
            "config": self.config,
        }

    def load_state_dict(self, ckpt: dict, source: str = "checkpoint", upgrade=None) -> None:
        """Restore from :meth:`state_dict`; a checkpoint of another run (other models or config) is refused.

        Args:
            ckpt: a dict from :meth:`state_dict`.
            source: its path, for messages.
            upgrade: maps the checkpoint's config dict onto today's fields (:meth:`voxhelpers.config.Config.upgrade`
                via ``from_dict``), so a checkpoint written before an option existed resumes at its default.

        Raises:
            ValueError: the checkpoint belongs to another run (the differing fields are named), or it is damaged
                (a key missing, a tensor of the wrong shape: what failed is named).
        """
        budget_keys = {"epochs", "sample_every"}  # a resumed run may extend its budget
        start_over = "delete it or choose another run folder to start over"
        try:
            stored = upgrade(ckpt.get("config", {})) if upgrade else dict(ckpt.get("config", {}))
        except (ValueError, TypeError, AttributeError) as e:
            raise ValueError(f"{source}: damaged checkpoint, its config cannot be read ({e}); {start_over}") from e
        old = {k: v for k, v in stored.items() if k not in budget_keys}
        new = {k: v for k, v in self.config.items() if k not in budget_keys}
        missing = set(self.models) - set(ckpt.get("models", {}))
        if missing or old != new:
            diff = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise ValueError(f"{source} belongs to another run (models missing: {sorted(missing)}, config differs in "
                             f"{diff}); {start_over}")
        try:  # a damaged file that still unpickles: a key renamed or missing, a tensor of another shape
            for k, m in self.models.items():
                m.load_state_dict(ckpt["models"][k])
            for k, o in self.optimizers.items():
                o.load_state_dict(ckpt["optimizers"][k])
            self.generator.set_state(ckpt["generator"])
            torch.set_rng_state(ckpt["torch_rng"])
            if torch.cuda.is_available() and ckpt.get("cuda_rng"):
                torch.cuda.set_rng_state_all(ckpt["cuda_rng"])
            self.epoch, self.step = int(ckpt["epoch"]), int(ckpt.get("step", 0))
            self.history, self.extra = list(ckpt["history"]), dict(ckpt["extra"])
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as e:
            raise ValueError(f"{source}: damaged checkpoint, it cannot be restored ({type(e).__name__}: {e}); "
                             f"{start_over}") from e

    def save(self, path: str | Path) -> Path:
        """Write the checkpoint atomically (a crash never leaves a half-written file)."""
        return save_checkpoint(path, self.state_dict())


def read_checkpoint(path: str | Path) -> dict:
    """A checkpoint dict (no pickled code is run). Raises ValueError on a corrupt or truncated file."""
    return load_checkpoint(path)


@torch.no_grad()
def update_ema(ema: nn.Module, model: nn.Module, decay: float) -> None:
    """ema ← decay · ema + (1 − decay) · model for parameters; buffers (BatchNorm statistics) copied.

    ``decay = 0`` makes ``ema`` a copy of ``model``.
    """
    if not 0 <= decay < 1:
        raise ValueError(f"ema decay must be in [0, 1), got {decay}")
    for pe, p in zip(ema.parameters(), model.parameters(), strict=True):
        pe.lerp_(p, 1.0 - decay)
    for be, b in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(b)
