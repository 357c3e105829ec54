"""Differentiable operators on volumes: :mod:`.render` (the exact, batched voxel renderer); the X-ray projector
(DRR) joins it for the X-ray → CT system; :mod:`.diffaugment` (DiffAugment of voxel grids before a discriminator)."""
