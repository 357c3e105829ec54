"""System 4's joined pipeline (the seed's stated future work): the CRGAN draws a patient's BRVO progression, the
Pix2Pix U-Net labels every drawn image, and vessel density per stage is read off the masks.

- :func:`eval_noise`, :func:`generate`: the CRGAN's sequences from fixed noise, as images in [0, 1] (its evaluation
  and the pipeline draw the same ones);
- :func:`pix2pix_segmenter`: a trained Pix2Pix (or no-GAN / MONAI) generator as a function images → vessel masks,
  at any image size (bilinear to the model's size and back);
- :func:`sector_density` (from :mod:`voxhelpers.metrics.sequences`): vessel density (the fraction of vessel pixels)
  inside each sequence's occluded sector;
- :func:`joined_pipeline`: generated sequences, their masks, and the density per stage beside the same segmenter's
  reading of the true (SIMULATED) images and the simulator's own density.

The CRGAN's training data are SIMULATED sequences built from real OCTA-500 images (:mod:`voxhelpers.data.brvo`);
every figure and table made from them says so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..metrics.sequences import masks_of, sector_density


def eval_noise(cfg, n: int, draws: int | None = None) -> torch.Tensor:
    """The CRGAN's fixed evaluation noise (n, draws, z_dim) for its config ``cfg`` (``z_dim``, ``eval_draws``,
    ``seed``): seed ``seed + 1``, the same every epoch and every call."""
    draws = draws or cfg.eval_draws
    return torch.randn(n, draws, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed + 1))


def generate(model, patient, n_stages: int, z: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """Sequences of a generator in eval mode, as images in [0, 1].

    Args:
        model: a :class:`voxhelpers.nets.CRGANGenerator`.
        patient: (N,) integer ids (the unknown patient's row for held-out sequences).
        n_stages: T; every sequence is generated for stages 0 … T − 1.
        z: (N, K, z_dim): K noise draws per sequence.

    Returns:
        (N, K, T, S, S) float32 in [0, 1] ((output + 1) / 2).
    """
    device = next(model.parameters()).device
    n, k = z.shape[:2]
    patient = torch.as_tensor(np.asarray(patient), dtype=torch.long).repeat_interleave(k)  # (N·K,)
    zz = z.reshape(n * k, -1)
    was_training = model.training
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, n * k, batch_size):
            p = patient[i:i + batch_size]
            stages = torch.arange(n_stages).repeat(len(p), 1)  # (b, T)
            x = model(zz[i:i + batch_size].to(device), p.to(device), stages.to(device))  # (b, T, 1, S, S)
            out.append(((x[:, :, 0] + 1) / 2).clamp(0, 1).float().cpu())
    model.train(was_training)
    return torch.cat(out).reshape(n, k, n_stages, *out[0].shape[-2:]).numpy()


def pix2pix_segmenter(model, threshold: float = 0.5, size: int | None = None, batch_size: int = 16,
                      device=None) -> Callable[[np.ndarray], np.ndarray]:
    """A vessel segmenter from a trained Pix2Pix generator (one-channel input, Tanh output).

    Args:
        model: a :class:`voxhelpers.nets.Pix2PixGenerator` (or :class:`~voxhelpers.nets.pix2pix.MonaiUNet2D`) for
            grayscale images; its card's ``threshold`` is the one chosen on validation.
        threshold: probability ((output + 1) / 2) at or above which a pixel is a vessel.
        size: the side the model was trained at (images are resized to it bilinearly, the masks back by
            nearest-neighbour); None keeps each image's size (a multiple of 2^levels).
        batch_size: images per forward pass.

    Returns:
        ``segment(images)``: (N, H, W) float in [0, 1] → (N, H, W) bool vessel masks.

    Raises:
        ValueError: (from the returned function) images not (N, H, W), not finite or outside [0, 1].
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")

    def segment(images: np.ndarray) -> np.ndarray:
        x = np.asarray(images, dtype=np.float32)
        if x.ndim != 3 or not x.size:
            raise ValueError(f"images must be (N, H, W) in [0, 1], got shape {x.shape}")
        if not np.isfinite(x).all() or x.min() < 0 or x.max() > 1:
            raise ValueError("images must be finite and in [0, 1] (pixel / 255)")
        h, w = x.shape[1:]
        where = device or next(model.parameters()).device  # looked up per call: the model may have moved
        was_training = model.training
        model.eval()
        out = []
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                t = torch.from_numpy(x[i:i + batch_size])[:, None].to(where)
                if size is not None and (h, w) != (size, size):
                    t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
                p = (model(t * 2 - 1) + 1) / 2  # (b, 1, size, size) probability
                if size is not None and (h, w) != (size, size):
                    p = F.interpolate(p, size=(h, w), mode="nearest")
                out.append((p[:, 0] >= threshold).cpu().numpy())
        model.train(was_training)
        return np.concatenate(out)

    return segment


@dataclass
class JoinedResult:
    """What :func:`joined_pipeline` returns (N sequences, K draws, T stages, S² images).

    Attributes:
        generated: (N, K, T, S, S) float32 in [0, 1], the CRGAN's sequences.
        generated_masks: (N, K, T, S, S) bool, the segmenter's masks of them.
        truth: (N, T, S, S) float32 in [0, 1], the SIMULATED true sequences at S².
        truth_masks: (N, T, S, S) bool, the segmenter's masks of the true images (the same reading as the generated).
        density_generated: (N, K, T) vessel density in each sequence's sector of the generated masks.
        density_truth: (N, T) the same of the true images' masks.
        density_simulated: (N, T) the simulator's density (its own masks at the source resolution), or None.
        sector: (N, S, S) bool.
        names: N sequence names; stage_names: T stage names.
    """

    generated: np.ndarray
    generated_masks: np.ndarray
    truth: np.ndarray
    truth_masks: np.ndarray
    density_generated: np.ndarray
    density_truth: np.ndarray
    density_simulated: np.ndarray | None
    sector: np.ndarray
    names: tuple[str, ...]
    stage_names: tuple[str, ...]

    @property
    def density_error(self) -> np.ndarray:
        """(N, K, T) |density of the generated masks − density of the true images' masks| in the sector."""
        return np.abs(self.density_generated - self.density_truth[:, None])

    def table(self):
        """Per-stage DataFrame: mean density of generated, true (same segmenter) and simulated, and the error."""
        import pandas as pd

        rows = {"stage": list(self.stage_names),  # NaN-aware: a sector thinned to nothing by a resize has no density
                "density_generated": np.nanmean(self.density_generated, axis=(0, 1)),
                "density_truth": np.nanmean(self.density_truth, axis=0),
                "density_error": np.nanmean(self.density_error, axis=(0, 1))}
        if self.density_simulated is not None:
            rows["density_simulated"] = np.nanmean(self.density_simulated, axis=0)
        return pd.DataFrame(rows)


def joined_pipeline(crgan, segment: Callable[[np.ndarray], np.ndarray], sequences, cfg, patient=None,
                    draws: int | None = None) -> JoinedResult:
    """The CRGAN draws each held-out sequence's progression; the segmenter labels every image, generated and true.

    Args:
        crgan: a trained :class:`voxhelpers.nets.CRGANGenerator` (eval mode is set here).
        segment: images (M, S, S) in [0, 1] → bool masks (:func:`pix2pix_segmenter`).
        sequences: a :class:`voxhelpers.data.brvo.BRVODataset` already at the CRGAN's ``image_size``
            (:func:`voxhelpers.systems.crgan.resize_dataset`), SIMULATED.
        cfg: the CRGAN's config (``n_stages``, ``z_dim``, ``unknown_patient``, ``eval_draws``, ``seed``).
        patient: (N,) embedding rows; default the unknown patient (sequences never trained on).
        draws: noise draws per sequence (default ``cfg.eval_draws``); the evaluation's fixed noise.

    Returns:
        A :class:`JoinedResult`.
    """
    images = np.asarray(sequences.images)
    size = cfg.image_size
    if images.ndim != 5 or images.shape[2:] != (1, size, size):
        raise ValueError(f"sequences.images must be (N, T, 1, {size}, {size}) (the CRGAN's image_size; bring them "
                         f"there with voxhelpers.systems.crgan.resize_dataset), got {images.shape}")
    truth = images[:, :, 0].astype(np.float32) / 255  # (N, T, S, S)
    n, t = truth.shape[:2]
    if t != cfg.n_stages:
        raise ValueError(f"sequences have {t} stages, the CRGAN {cfg.n_stages}")
    sector = np.asarray(sequences.sector, bool)
    if sector.shape != (n, size, size):
        raise ValueError(f"sequences.sector must be (N, {size}, {size}) = {(n, size, size)} (resize_dataset), got "
                         f"{sector.shape}")
    patient = np.full(n, cfg.unknown_patient) if patient is None else np.asarray(patient)
    generated = generate(crgan, patient, cfg.n_stages, eval_noise(cfg, n, draws))  # (N, K, T, S, S)
    gen_masks, true_masks = masks_of(segment, generated), masks_of(segment, truth)
    simulated = getattr(sequences, "density", None)
    return JoinedResult(
        generated=generated, generated_masks=gen_masks, truth=truth, truth_masks=true_masks,
        density_generated=sector_density(gen_masks, sector[:, None, None]),
        density_truth=sector_density(true_masks, sector[:, None]),
        density_simulated=None if simulated is None else np.asarray(simulated, np.float64),
        sector=sector, names=tuple(str(x) for x in getattr(sequences, "names", range(n))),
        stage_names=tuple(getattr(sequences, "stage_names", [f"stage {s}" for s in range(t)])))


__all__ = ["JoinedResult", "eval_noise", "generate", "joined_pipeline", "pix2pix_segmenter", "sector_density"]
