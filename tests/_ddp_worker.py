"""Run under torchrun by tests/test_training.py (and the iwgan / vae workers): a tiny run of one system for 2 epochs
through ``fit``; each process saves its weights (``rank{r}.pt``: G and D state dicts, the world size, its loss_d).

    python -m torch.distributed.run --nproc_per_node 2 tests/_ddp_worker.py OUT [voxel_cgan|iwgan|vae_iwgan]
"""

import sys
from pathlib import Path

import torch

from voxhelpers.config import iwgan_config, vae_iwgan_config, voxel_cgan_config
from voxhelpers.training import distributed_world, fit

SMALL = dict(g_channels=(16, 8, 8, 4), d_channels=(4, 8, 8, 16))
#: the tiny config of each system (8 items a batch, 4 in each of the two processes)
CONFIGS = {
    "voxel_cgan": lambda: voxel_cgan_config("smoke", data="procedural:car", n_train=8, batch_size=8, epochs=2,
                                            sample_every=100),
    "iwgan": lambda: iwgan_config("smoke", data="procedural:chair", max_shapes=12, batch_size=8, epochs=2,
                                 sample_every=100, **SMALL),
    "vae_iwgan": lambda: vae_iwgan_config("smoke", data="procedural:chair", max_shapes=16, batch_size=8, epochs=2,
                                          sample_every=100, image_size=64, **SMALL),
}
#: the trained generator's key in fit's models (vae_iwgan: the image → voxel model, encoder included)
GENERATOR = {"voxel_cgan": "G", "iwgan": "G", "vae_iwgan": "model"}


def main(out: Path, system: str) -> None:
    result = fit(system, CONFIGS[system](), out / "run", device="cpu", progress=False)
    rank, world = distributed_world()
    torch.save({"G": result.models[GENERATOR[system]].state_dict(), "D": result.models["D"].state_dict(),
                "world": world, "loss_d": result.history["loss_d"].tolist()}, out / f"rank{rank}.pt")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "voxel_cgan")
