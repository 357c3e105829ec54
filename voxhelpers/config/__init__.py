"""Profiles, data roots and one validated config dataclass per system.

:mod:`.profiles` (``VOXHELPERS_PROFILE``: smoke / cpu / full, the :class:`Config` base, evaluation budgets),
:mod:`.paths` (``VOXHELPERS_DATA`` and the project's folders), one module per system's config.
"""

from .crgan import CRGANConfig, crgan_config
from .iwgan import IWGANConfig, VAEIWGANConfig, iwgan_config, vae_iwgan_config
from .paths import (
    DATA_ENV,
    EXPORT_ENV,
    DatasetNotFoundError,
    data_roots,
    export_dir,
    exporting,
    find_data,
    models_dir,
    output_dir,
    project_root,
    runs_dir,
)
from .pix2pix import Pix2PixConfig, pix2pix_config
from .profiles import PROFILE_ENV, PROFILES, Config, EvalBudget, check_choice, eval_budget, get_profile, option
from .vnet import VNetConfig, vnet_config
from .voxel_cgan import DATA_SOURCES, VoxelCGANConfig, check_data, voxel_cgan_config
from .xray_ct import XrayCTConfig, xray_ct_config

__all__ = [
    "CRGANConfig", "Config", "DATA_ENV", "DATA_SOURCES", "DatasetNotFoundError", "EXPORT_ENV", "EvalBudget",
    "IWGANConfig", "PROFILES", "PROFILE_ENV", "Pix2PixConfig", "VAEIWGANConfig", "VNetConfig", "VoxelCGANConfig",
    "XrayCTConfig", "check_choice", "check_data", "crgan_config", "data_roots", "eval_budget", "export_dir",
    "exporting", "find_data", "get_profile", "iwgan_config", "models_dir", "option", "output_dir", "pix2pix_config",
    "project_root", "runs_dir", "vae_iwgan_config", "vnet_config", "voxel_cgan_config", "xray_ct_config",
]
