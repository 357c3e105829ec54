"""Networks, one file per system, built by name (the pix2pix ``define_G``/``define_D`` habit).

:func:`build_network` is the one way a system's networks are made from its config; each network file adds its
systems to the registry with one line here.
"""

from __future__ import annotations

from torch import nn

from . import crgan, iwgan, pix2pix, vnet, voxel_gan, xray_ct
from .crgan import CRGANCritic, CRGANGenerator
from .iwgan import VAEIWGAN, ImageEncoder, IWGANCritic, IWGANGenerator
from .pix2pix import PatchDiscriminator, Pix2PixGenerator
from .vnet import VNet
from .voxel_gan import CGANDiscriminator, CGANGenerator

#: system → role → constructor taking the system's config
NETWORKS: dict[str, dict] = {
    **voxel_gan.NETWORKS,
    **iwgan.NETWORKS,
    **xray_ct.NETWORKS,
    **vnet.NETWORKS,
    **pix2pix.NETWORKS,
    **crgan.NETWORKS,
}


def build_network(system: str, role: str, config) -> nn.Module:
    """Build the ``role`` network (``"generator"``, ``"discriminator"``, ...) of a system from its config.

    Args:
        system: a key of :data:`NETWORKS` (``"voxel_cgan"``, ``"iwgan"``, ``"vae_iwgan"``).
        role: a role that system has.
        config: the system's config dataclass (:mod:`voxhelpers.config`).

    Raises:
        ValueError: an unknown system or role (the valid ones listed).
    """
    if system not in NETWORKS:
        raise ValueError(f"unknown system {system!r}; expected one of {sorted(NETWORKS)}")
    if role not in NETWORKS[system]:
        raise ValueError(f"system {system!r} has no {role!r} network; expected one of {sorted(NETWORKS[system])}")
    return NETWORKS[system][role](config)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


__all__ = ["NETWORKS", "VAEIWGAN", "CGANDiscriminator", "CGANGenerator", "CRGANCritic", "CRGANGenerator",
           "IWGANCritic", "IWGANGenerator", "ImageEncoder", "PatchDiscriminator", "Pix2PixGenerator", "VNet",
           "build_network", "count_parameters"]
