"""torch Datasets over the readers' arrays; items are dicts with documented keys, so every system's step reads
its batch the same way (``batch["voxels"]``...)."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset


class VoxelDataset(Dataset):
    """Voxel grids as a Dataset: item ``i`` is ``{"voxels": bool tensor, "index": i}``.

    Args:
        grids: bool array (N, D, H, W) — items (1, D, H, W) — or (N, C, D, H, W) with C rotation conditions — items
            (C, 1, D, H, W), condition c at index c (the conditional GAN's layout). Kept as one bool tensor on the
            CPU (80 cGAN shapes with 2 conditions: 5 MB).

    Raises:
        ValueError: an array with other than 4 or 5 axes, no items or an empty axis, or values other than 0 and 1
            (NaN included).
        TypeError: a non-numeric dtype (strings, objects, complex).
    """

    def __init__(self, grids: np.ndarray):
        from .grids import as_grid_array

        grids = as_grid_array(grids, "grids", "(N, D, H, W) or (N, C, D, H, W)")
        if grids.dtype != bool:
            if grids.dtype.kind not in "biuf":
                raise TypeError(f"grids must be binary voxels (bool or numbers 0/1), got dtype {grids.dtype}")
            if grids.size and not np.isin(grids, (0, 1)).all():  # NaN is not in {0, 1} either
                raise ValueError("grids must be binary voxels with values 0 and 1 (NaN refused), got other values")
        grids = torch.as_tensor(grids.astype(bool, copy=False))
        if grids.ndim not in (4, 5) or 0 in grids.shape:
            raise ValueError(f"grids must be a non-empty (N, D, H, W) or (N, C, D, H, W) array, got "
                             f"{tuple(grids.shape)}")
        self.voxels = grids.unsqueeze(1) if grids.ndim == 4 else grids.unsqueeze(2)

    def __len__(self) -> int:
        return len(self.voxels)

    def __getitem__(self, i: int) -> dict:
        return {"voxels": self.voxels[i], "index": i}
