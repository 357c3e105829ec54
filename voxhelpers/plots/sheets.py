"""Sample sheets during training: a callback for :func:`voxhelpers.training.fit` that draws a system's figure."""

from __future__ import annotations

from pathlib import Path


class SampleSheets:
    """Save ``<out_dir>/samples/epoch_XXXX.png`` every ``every`` epochs and after the last, named by the true 0-based
    epoch (the seed named epoch-360 weights "400"); for a system with ``snapshots`` also the shipped model's fp32
    weights ``epoch_XXXX.safetensors`` beside it.

    Args:
        system: the :class:`voxhelpers.systems.System` (its ``sheet_inputs`` and ``figure``).
        config: the run's config.
        splits: the run's data (``system.data(config)``), for fixed inputs such as validation views.
        out_dir: the run folder.
        every: epochs between sheets (default ``config.sample_every``).

    Use: ``fit(system, cfg, run, callbacks=[SampleSheets(system, cfg, splits, run)])``.
    """

    def __init__(self, system, config, splits, out_dir: str | Path, every: int | None = None):
        self.system, self.config, self.out_dir = system, config, Path(out_dir)
        self.every = every or config.sample_every
        self.inputs = system.sheet_inputs(config, splits)
        self.written: list[Path] = []

    def __call__(self, state, row: dict) -> None:
        from .figures import save_figure

        e = state.epoch - 1
        if e % self.every and state.epoch != self.config.epochs:
            return
        model = state.models[self.system.shipped_key(self.config)]
        title = f"{self.system.title} · {self.config.data} · epoch {e}"
        fig = self.system.figure(model, self.config, self.inputs, title)
        self.written.append(save_figure(fig, self.out_dir / "samples" / f"epoch_{e:04d}.png"))
        if getattr(self.system, "snapshots", False):
            from safetensors.torch import save_file

            from ..data.io import atomic_write

            tensors = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
            atomic_write(self.out_dir / "samples" / f"epoch_{e:04d}.safetensors",
                         lambda tmp: save_file(tensors, str(tmp)))
