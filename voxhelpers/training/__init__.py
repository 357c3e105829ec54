"""Training: :func:`fit` (the one loop for every system), the checkpoint state, and torchrun set-up.

From the command line (the same :func:`fit` the training notebooks call)::

    VOXHELPERS_PROFILE=full python -m voxhelpers train voxel_cgan --data synthevox3d:airplane --loss bce
    torchrun --nproc_per_node 4 -m voxhelpers train iwgan --data modelnet10:chair
"""

from .distributed import (
    average_gradients_before_step,
    default_device,
    distributed_setup,
    distributed_world,
    mean_over_processes,
    retain_freed_memory,
    seed_everything,
    sync_buffers,
)
from .fit import FitResult, fit
from .state import CHECKPOINT_NAME, TrainState, read_checkpoint, update_ema

__all__ = [
    "CHECKPOINT_NAME", "FitResult", "TrainState", "average_gradients_before_step", "default_device",
    "distributed_setup", "distributed_world", "fit", "mean_over_processes", "read_checkpoint",
    "retain_freed_memory", "seed_everything", "sync_buffers", "update_ema",
]
