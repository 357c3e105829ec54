"""Networks, one file per system, built by name (the pix2pix ``define_G``/``define_D`` habit)."""

from __future__ import annotations

from torch import nn

from .voxel_gan import VAEIWGAN, CGANDiscriminator, CGANGenerator, ImageEncoder, IWGANCritic, IWGANGenerator

GENERATORS = {"voxel_cgan": CGANGenerator, "iwgan": IWGANGenerator, "vae_iwgan": VAEIWGAN}
DISCRIMINATORS = {"voxel_cgan": CGANDiscriminator, "iwgan": IWGANCritic, "vae_iwgan": IWGANCritic}


def build_generator(name: str, **kwargs) -> nn.Module:
    """Build a generator by system name (one of ``GENERATORS``) with the network's own keyword arguments."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; expected one of {sorted(GENERATORS)}")
    return GENERATORS[name](**kwargs)


def build_discriminator(name: str, **kwargs) -> nn.Module:
    """Build a discriminator / critic by system name (one of ``DISCRIMINATORS``)."""
    if name not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator {name!r}; expected one of {sorted(DISCRIMINATORS)}")
    return DISCRIMINATORS[name](**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["CGANGenerator", "CGANDiscriminator", "build_generator", "build_discriminator", "count_parameters"]
__all__ += ["IWGANGenerator", "IWGANCritic", "ImageEncoder", "VAEIWGAN"]
