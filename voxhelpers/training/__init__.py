"""One ``fit()`` loop for every system, and the per-system training entry points.

``fit`` gives every system: a tqdm progress bar, the history as a pandas DataFrame, atomic checkpoints
(weights, optimisers, RNG states, epoch, history) and exact resume — a run stopped and resumed from its
checkpoint produces the same weights as an uninterrupted one. A NaN or inf loss stops training with a
clear message and leaves the last good checkpoint intact.

Multi-GPU (or multi-process CPU) training goes through ``torch.distributed`` with torchrun: each process takes
its share of every batch, gradients are averaged across processes before every optimiser step (an optimiser
step pre-hook, so the systems' step functions stay as they are), BatchNorm statistics follow rank 0, and only
rank 0 writes checkpoints and figures::

    torchrun --nproc_per_node 4 -m voxhelpers.training voxel_cgan --category airplane --loss bce

Command line (the same function the training notebook calls)::

    VOXHELPERS_PROFILE=full python -m voxhelpers.training voxel_cgan --category airplane --loss all --out runs
    VOXHELPERS_PROFILE=full python -m voxhelpers.training iwgan --data modelnet10:chair --export models/iwgan \\
        --evaluate
    VOXHELPERS_PROFILE=full python -m voxhelpers.training vae_iwgan --data modelnet10:chair --export models/iwgan \\
        --evaluate
"""

from .iwgan import (
    build_iwgan,
    describe_iwgan_data,
    evaluate_pretrained_iwgan,
    iwgan_data,
    iwgan_split,
    save_iwgan_sheet,
    train_iwgan,
    unique_grids,
)
from .loop import (
    CHECKPOINT_NAME,
    TrainState,
    average_gradients_before_step,
    default_device,
    distributed_world,
    fit,
    mean_over_processes,
    retain_freed_memory,
    seed_everything,
    sync_buffers,
)
from .vae_iwgan import (
    build_vae_iwgan,
    describe_vae_iwgan_data,
    evaluate_pretrained_vae_iwgan,
    train_vae_iwgan,
    vae_iwgan_data,
)
from .voxel_cgan import (
    build_voxel_cgan,
    consistency_weight,
    describe_data,
    evaluate_pretrained_voxel_cgan,
    make_optimizer,
    save_sample_sheet,
    train_voxel_cgan,
    update_ema,
    voxel_cgan_data,
)

__all__ = [
    "CHECKPOINT_NAME", "TrainState", "average_gradients_before_step", "build_iwgan", "build_voxel_cgan",
    "consistency_weight", "default_device", "describe_data", "describe_iwgan_data", "distributed_world",
    "evaluate_pretrained_iwgan",
    "evaluate_pretrained_voxel_cgan", "fit", "iwgan_data", "iwgan_split", "make_optimizer", "mean_over_processes",
    "retain_freed_memory",
    "save_iwgan_sheet", "save_sample_sheet", "seed_everything", "sync_buffers", "train_iwgan", "train_voxel_cgan",
    "unique_grids", "update_ema", "voxel_cgan_data", "build_vae_iwgan", "describe_vae_iwgan_data",
    "evaluate_pretrained_vae_iwgan", "train_vae_iwgan", "vae_iwgan_data",
]


def _main(argv=None) -> None:
    """``python -m voxhelpers.training {voxel_cgan|iwgan|vae_iwgan} ...``"""
    import argparse

    from ..config import get_profile
    from .iwgan import _add_iwgan_parser, _main_iwgan
    from .vae_iwgan import _add_vae_iwgan_parser, _main_vae_iwgan
    from .voxel_cgan import _add_voxel_cgan_parser, _main_voxel_cgan

    p = argparse.ArgumentParser(prog="python -m voxhelpers.training", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="system", required=True)
    _add_voxel_cgan_parser(sub)
    _add_iwgan_parser(sub)
    _add_vae_iwgan_parser(sub)
    args = p.parse_args(argv)
    profile = get_profile(args.profile)
    {"voxel_cgan": _main_voxel_cgan, "iwgan": _main_iwgan, "vae_iwgan": _main_vae_iwgan}[args.system](args, profile)
