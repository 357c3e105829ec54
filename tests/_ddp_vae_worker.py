"""Run by tests/test_vae_iwgan.py under torchrun: a tiny 3D-VAE-IWGAN for 2 epochs, each process saves its weights."""

import sys
from pathlib import Path

import torch

from voxhelpers.config import vae_iwgan_config
from voxhelpers.training import distributed_world, train_vae_iwgan

out = Path(sys.argv[1])
cfg = vae_iwgan_config("smoke", data="procedural:chair", max_shapes=16, batch_size=8, epochs=2, sample_every=100,
                       image_size=64, g_channels=(16, 8, 8, 4), d_channels=(4, 8, 8, 16))
model, D, history = train_vae_iwgan(cfg, out / "run", device="cpu", progress=False)
rank, world = distributed_world()
torch.save({"G": model.state_dict(), "D": D.state_dict(), "world": world}, out / f"rank{rank}.pt")
