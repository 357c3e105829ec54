"""Run by tests/test_training.py under torchrun: a tiny cGAN for 2 epochs, each process saves its weights."""

import sys
from pathlib import Path

import torch

from voxhelpers.config import voxel_cgan_config
from voxhelpers.training import distributed_world, train_voxel_cgan

out = Path(sys.argv[1])
cfg = voxel_cgan_config("smoke", data="procedural", n_train=8, batch_size=8, epochs=2, sample_every=100)
G, D, history = train_voxel_cgan(cfg, out / "run", device="cpu", progress=False)
rank, world = distributed_world()
torch.save({"G": G.state_dict(), "D": D.state_dict(), "world": world, "loss_d": history["loss_d"].tolist()},
           out / f"rank{rank}.pt")
