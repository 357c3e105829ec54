"""Run by tests/test_iwgan_training.py under torchrun: a tiny 3D-IWGAN for 2 epochs, each process saves its weights."""

import sys
from pathlib import Path

import torch

from voxhelpers.config import iwgan_config
from voxhelpers.training import distributed_world, train_iwgan

out = Path(sys.argv[1])
cfg = iwgan_config("smoke", data="procedural:chair", max_shapes=12, batch_size=8, epochs=2, sample_every=100,
                   g_channels=(16, 8, 8, 4), d_channels=(4, 8, 8, 16))
G, D, history = train_iwgan(cfg, out / "run", device="cpu", progress=False)
rank, world = distributed_world()
torch.save({"G": G.state_dict(), "D": D.state_dict(), "world": world}, out / f"rank{rank}.pt")
