"""Result tables assembled from model cards (pandas), one file per system, and the quick evaluation's table.

:mod:`.voxel_cgan` (the seed's published AAD / AVAR, the cells' cards, the target), :mod:`.iwgan` (3D-IWGAN /
3D-VAE-IWGAN cards and targets, generators compared on one reference set), :mod:`.ct` (X-ray → CT and VNet cards,
targets, data check and held-out patients), :mod:`.vnet` (the VNet k-fold table), :mod:`.retina` (Pix2Pix and
CRGAN cards, peers, targets), :mod:`.robustness` (the voxel cGAN's grid over untrained categories, seeds and
recipes), :mod:`.quick` (one tidy row per pretrained model for ``notebooks/00_quick_evaluation``).
"""

from .ct import (
    VNET_DICE_TARGET,
    card_data_here,
    ct_cards,
    ct_eval_cases,
    ct_quick_metrics,
    ct_target,
    held_out_cases,
    vnet_meets_target,
    xray_ct_meets_target,
)
from .iwgan import (
    IWGAN_ONE_NNA_TARGET,
    compare_generators,
    iwgan_cards,
    iwgan_meets_target,
    iwgan_table,
    vae_iwgan_meets_target,
)
from .quick import (
    QUICK_METRICS,
    card_target,
    data_status,
    data_title,
    describe_protocol,
    quick_evaluation_table,
    quick_metrics,
)
from .retina import (
    PIX2PIX_PEERS,
    add_peer_metrics,
    pix2pix_comparison,
    retina_cards,
    retina_eval_images,
    retina_quick_metrics,
    retina_target,
)
from .voxel_cgan import CARD_METRICS, SEED_AAD_AVAR, meets_target, voxel_cgan_cards, voxel_cgan_table

__all__ = [
    "PIX2PIX_PEERS", "add_peer_metrics", "pix2pix_comparison", "retina_cards", "retina_eval_images",
    "retina_quick_metrics", "retina_target",
    "CARD_METRICS", "IWGAN_ONE_NNA_TARGET", "QUICK_METRICS", "SEED_AAD_AVAR", "VNET_DICE_TARGET", "card_data_here",
    "card_target", "compare_generators", "ct_cards", "ct_eval_cases", "ct_quick_metrics", "ct_target", "data_status",
    "data_title", "describe_protocol", "held_out_cases", "iwgan_cards", "iwgan_meets_target", "iwgan_table",
    "meets_target", "quick_evaluation_table", "quick_metrics", "vae_iwgan_meets_target", "vnet_meets_target",
    "voxel_cgan_cards", "voxel_cgan_table", "xray_ct_meets_target",
]
