"""Every trainable system, declared once (:class:`System`), and the one registry.

Adding a system is adding its files (config, nets, losses if new, ``systems/<name>.py``, bench cases, notebooks)
and one line here: see ``docs/adding_a_system.md``.
"""

from __future__ import annotations

from . import crgan, iwgan, pix2pix, vae_iwgan, vnet, voxel_cgan, xray_ct
from .base import Splits, System, summarise_epoch

#: name → System, in the order of the README
SYSTEMS: dict[str, System] = {
    voxel_cgan.SYSTEM.name: voxel_cgan.SYSTEM,
    iwgan.SYSTEM.name: iwgan.SYSTEM,
    vae_iwgan.SYSTEM.name: vae_iwgan.SYSTEM,
    xray_ct.SYSTEM.name: xray_ct.SYSTEM,
    pix2pix.SYSTEM.name: pix2pix.SYSTEM,
    crgan.SYSTEM.name: crgan.SYSTEM,
    vnet.SYSTEM.name: vnet.SYSTEM,
}


def get_system(system: str | System) -> System:
    """A :class:`System` by name (a System is returned as is).

    Raises:
        ValueError: an unknown name (the valid ones listed).
    """
    if isinstance(system, System):
        return system
    if system not in SYSTEMS:
        raise ValueError(f"unknown system {system!r}; expected one of {tuple(SYSTEMS)}")
    return SYSTEMS[system]


__all__ = ["SYSTEMS", "Splits", "System", "get_system", "summarise_epoch"]
