"""Losses by role: :mod:`.adversarial` (one ``adversarial_loss(mode=...)`` for every GAN, the gradient penalty),
:mod:`.hybrid` (the seed's five hybrid losses, D's accuracy gate), :mod:`.reconstruction` (KL, soft Jaccard),
:mod:`.segmentation` (soft Dice with per-class weights on the per-class loss, softmax focal, class weights).

Each function maps tensors to a scalar (or per-sample) tensor; shapes are in the docstrings.
"""

from .adversarial import ADVERSARIAL_MODES, adversarial_loss, gradient_penalty, wgan_critic_loss, wgan_generator_loss
from .hybrid import HYBRID_LOSS_TITLES, HYBRID_LOSSES, OUTPUT_KINDS, VARIANTS, discriminator_accuracy, hybrid_loss
from .reconstruction import kl_divergence, scaled_l1_distance, soft_jaccard_distance
from .segmentation import class_weights_from_labels, dice_focal_loss, focal_loss, soft_dice_loss

__all__ = [
    "ADVERSARIAL_MODES", "HYBRID_LOSSES", "HYBRID_LOSS_TITLES", "OUTPUT_KINDS", "VARIANTS", "adversarial_loss",
    "class_weights_from_labels", "dice_focal_loss", "discriminator_accuracy", "focal_loss", "gradient_penalty",
    "hybrid_loss", "kl_divergence", "scaled_l1_distance", "soft_dice_loss", "soft_jaccard_distance",
    "wgan_critic_loss", "wgan_generator_loss",
]
