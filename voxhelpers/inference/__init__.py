"""Inference: :mod:`.sampling` (generators → grids, image → voxels, views, interpolation), :mod:`.pretrained`
(weights + model cards), :mod:`.evaluation` (the evaluation protocols of the voxel systems)."""

from .evaluation import evaluate_iwgan, evaluate_reconstruction, evaluate_voxel_cgan, retrieval_baseline
from .pretrained import card_config, load_pretrained, save_pretrained, update_card
from .sampling import (
    encode,
    generate,
    generate_conditions,
    generate_unconditional,
    interpolate_latents,
    make_sampler,
    reconstruct,
    render_views,
)

__all__ = [
    "card_config", "encode", "evaluate_iwgan", "evaluate_reconstruction", "evaluate_voxel_cgan", "generate",
    "generate_conditions", "generate_unconditional", "interpolate_latents", "load_pretrained", "make_sampler",
    "reconstruct", "render_views", "retrieval_baseline", "save_pretrained", "update_card",
]
