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
        ValueError: an array with other than 4 or 5 axes, or no items.
    """

    def __init__(self, grids: np.ndarray):
        grids = torch.as_tensor(np.asarray(grids, dtype=bool))
        if grids.ndim not in (4, 5) or len(grids) == 0:
            raise ValueError(f"grids must be a non-empty (N, D, H, W) or (N, C, D, H, W) array, got "
                             f"{tuple(grids.shape)}")
        self.voxels = grids.unsqueeze(1) if grids.ndim == 4 else grids.unsqueeze(2)

    def __len__(self) -> int:
        return len(self.voxels)

    def __getitem__(self, i: int) -> dict:
        return {"voxels": self.voxels[i], "index": i}
