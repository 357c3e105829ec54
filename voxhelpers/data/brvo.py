"""SIMULATED longitudinal BRVO sequences built from real OCTA-500 images, for system 4's CRGAN (SPEC §4).

No public multi-visit OCTA series is available offline (SOUL, the seed's data, is CC BY-NC-ND and not shipped), so
the CRGAN trains on sequences *simulated* from real single-visit OCTA-500 en-face images: every output of this
module is labelled ``simulated=True``. Users who hold SOUL read real sequences with
:func:`voxhelpers.data.retina.load_soul` instead.

This module holds the simulator (:func:`simulate_brvo` → :class:`BRVOSequence`, :func:`vessel_density`) and the
dataset builders (:func:`brvo_sequences`, :func:`load_brvo_octa500` → :class:`BRVODataset`). The model's parameters,
its geometry and the stage schedule (:class:`BRVOModel`, :class:`BRVOSector`, :func:`draw_sector`,
:func:`stage_names`, :func:`default_severity`) live in :mod:`voxhelpers.data.brvo_model` and are re-exported here.

**The branch-retinal-vein-occlusion (BRVO) model.** A deliberately simple caricature of what OCTA shows in BRVO —
sectoral capillary non-perfusion next to the foveal avascular zone, lower vessel density in the affected sector:

- *Geometry* (:class:`BRVOSector`, drawn by :func:`draw_sector` from the seed). A wedge whose apex sits near the
  image centre (the fovea of a 3 mm macular scan; offset by up to ``apex_jitter`` of the side in each direction),
  with its axis at ``orientation_deg`` (uniform in [0, 360), counter-clockwise from the +column axis, 90° = towards
  row 0) and half-opening ``half_angle_deg`` (uniform in ``half_angle_range``, default 30°–50°; 90° would be a
  hemi-field, a hemiretinal occlusion). The wedge runs to the frame's edges. The *sector* is the whole wedge, fixed
  over the sequence; vessel densities are measured in it.
- *Non-perfusion front.* Inside the wedge, pixels are ranked by ``r / (1 + irregularity · n(φ))``, their distance
  ``r`` from the apex divided by a smooth random angular wobble ``n(φ)`` in [-1, 1] (three harmonics across the
  wedge). At severity ``s`` the non-perfused region is the first ``round(s · |wedge|)`` pixels of that ranking: it
  covers the fraction ``s`` of the wedge's area, starts at the apex (the FAZ enlarging into the sector) and grows
  outwards. Regions of larger severity contain those of smaller severity, so the outputs depend on the severity
  alone and vessel density in the sector falls monotonically with it.
- *Severity curve* (:data:`DEFAULT_SEVERITY`): ``[0.15, 0.35, 0.45, 0.30, 0.20, 0.10]`` for SOUL's six stages
  s1t1 … s3t2 (injection n, follow-up m): non-perfusion grows over the first follow-ups and recedes with the
  injections. (Reperfusion of non-perfused capillaries is a simplification the issue asks for; clinically it is
  partial at best.) Another number of stages interpolates this curve linearly over the course, unless a curve is
  given.
- *Soft edge.* The weight ``w = clip(depth / edge_px, 0, 1)``, ``depth`` the Euclidean distance to the region's
  edge (0 outside the region), ramps from 0 at the border to 1 ``edge_px`` pixels inside. ``w = 0`` outside the
  region, so nothing outside it (in particular nothing outside the sector) changes.
- *Mask.* The expert large-vessel mask is eroded ``round(w · max_thinning)`` times with a ``disk(1)`` footprint
  (scikit-image morphology): with the default 2, vessels up to ~4 px wide vanish in the non-perfused core and wider
  trunks are thinned by ~2 px per side; fragments smaller than ``min_fragment`` pixels left inside the affected
  region are removed.
- *Image.* With ``dark`` = the ``dark_percentile`` percentile of the source image (the FAZ's level), every pixel
  inside the region becomes ``dark + (I - dark) · g``: ``g = 1 - capillary_loss · w`` for the capillary background
  and the large-vessel pixels the mask lost, ``g = 1 - vessel_dimming · w`` for the vessel pixels it kept; ``g`` is
  smoothed by a Gaussian (σ = ``gain_sigma``) so thinned vessels have soft borders. Pixels outside the region are
  copied unchanged; a stage of severity 0 is the source image and mask exactly.

The simulator is deterministic: one seed fixes the geometry; the severity fixes each stage.

Sources: OCTA-500 (Li et al., Medical Image Analysis 2024); SOUL's stage scheme (Sci Data 2024,
doi:10.1038/s41597-024-03665-7).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .brvo_model import (
    DEFAULT_SEVERITY,
    BRVOModel,
    BRVOSector,
    _check_stages,
    _severity,
    _shape,
    default_severity,
    draw_sector,
    stage_names,
)

__all__ = [
    "DEFAULT_SEVERITY", "SIMULATED_LABEL", "BRVODataset", "BRVOModel", "BRVOSector", "BRVOSequence", "brvo_sequences",
    "default_severity", "draw_sector", "image_seed", "load_brvo_octa500", "simulate_brvo", "stage_names",
    "vessel_density",
]

#: the caption every figure of these sequences carries
SIMULATED_LABEL = "simulated BRVO progression (built from a real OCTA-500 image; not a patient series)"


# --------------------------------------------------------------------------------------------------
# one image
# --------------------------------------------------------------------------------------------------
def vessel_density(mask, region=None) -> float:
    """Vessel density: the fraction of vessel pixels of a binary mask, over ``region`` (bool (H, W)) or the frame
    (NaN for an empty region; :func:`voxhelpers.metrics.sequences.sector_density` for stacks of masks)."""
    from ..metrics.sequences import sector_density

    m = np.asarray(mask).astype(bool)
    return float(m.mean()) if region is None else float(sector_density(m, region))


@dataclass
class BRVOSequence:
    """One simulated BRVO sequence of T stages built from one real image.

    Attributes:
        name: the source image's id.
        images: (T, 1, H, W) uint8 in [0, 255].
        masks: (T, H, W) uint8 in {0, 1}, the large-vessel masks.
        nonperfusion: (T, H, W) float32 in [0, 1], the non-perfusion weight ``w`` (0 outside the affected region).
        sector: (H, W) bool, the occluded wedge (fixed over stages).
        geometry: the :class:`BRVOSector`.
        stages: T stage names (``"s1t1"`` …).
        severity: (T,) the curve used, fraction of the sector's area non-perfused.
        density_sector, density_outside, density_image: (T,) vessel density (mask fraction) in the sector, outside
            it, and over the frame.
        seed: the seed that drew the geometry.
        simulated: always True — these are not patient data.
    """

    name: str
    images: np.ndarray
    masks: np.ndarray
    nonperfusion: np.ndarray
    sector: np.ndarray
    geometry: BRVOSector
    stages: tuple[str, ...]
    severity: np.ndarray
    density_sector: np.ndarray
    density_outside: np.ndarray
    density_image: np.ndarray
    seed: int
    simulated: bool = True


def _check_pair(image, mask) -> tuple[np.ndarray, np.ndarray]:
    img = np.asarray(image)
    if img.ndim == 3 and img.shape[0] == 1:
        img = img[0]
    if img.ndim != 2:
        raise ValueError(f"image must be one grayscale en-face OCTA image, (H, W) or (1, H, W), got shape {img.shape}")
    if img.dtype != np.uint8:
        raise ValueError(f"image must be uint8 in [0, 255], got dtype {img.dtype}")
    _shape(img.shape)
    m = np.asarray(mask)
    if m.shape != img.shape:
        raise ValueError(f"mask must have the image's (H, W) {img.shape}, got {m.shape}")
    if m.dtype != bool and not np.isin(m, (0, 1)).all():
        raise ValueError(f"mask must be binary {{0, 1}}, got values {np.unique(m)[:8].tolist()}")
    return img, m.astype(bool)


def _front_order(sector: BRVOSector, shape: tuple[int, int], irregularity: float) -> tuple[np.ndarray, np.ndarray]:
    """The sector's mask and its flat pixel indices in the order the non-perfusion front reaches them."""
    r, phi = sector.polar(shape)
    wedge = sector.mask(shape)
    idx = np.flatnonzero(wedge)
    key = r.ravel()[idx] / (1.0 + irregularity * sector.wobble(phi.ravel()[idx]))
    return wedge, idx[np.argsort(key, kind="stable")]


def simulate_brvo(image, mask, stages: int = 6, severity=None, seed: int = 0, model: BRVOModel | None = None,
                  sector: BRVOSector | None = None, name: str = "") -> BRVOSequence:
    """Simulate a BRVO sequence (sectoral capillary non-perfusion over treatment stages) from one real OCTA image.

    SIMULATED data (see the module docstring for the model): the output carries ``simulated=True``.

    Args:
        image: (H, W) or (1, H, W) uint8, one grayscale en-face OCTA image (OCTA-500: 304×304).
        mask: (H, W) binary {0, 1} (or bool) large-vessel mask of that image.
        stages: T >= 2 stages, named by :func:`stage_names`.
        severity: (T,) fractions in [0, 1] of the sector's area non-perfused per stage; None = :func:`default_severity`.
        seed: draws the sector (:func:`draw_sector`) when ``sector`` is None.
        model: :class:`BRVOModel`; None = defaults.
        sector: a fixed :class:`BRVOSector` instead of a drawn one.
        name: the source image's id, kept in the output.

    Returns:
        A :class:`BRVOSequence` (images (T, 1, H, W) uint8, masks (T, H, W) uint8 {0, 1}, densities (T,)).

    Raises:
        ValueError: a non-grayscale or non-uint8 image, a non-binary mask, image and mask of different (H, W),
            ``stages`` < 2, a severity curve whose length is not ``stages`` or with values outside [0, 1], a sector
            whose apex lies outside the frame.
    """
    from scipy import ndimage as ndi
    from skimage.measure import label
    from skimage.morphology import disk, erosion

    model = model or BRVOModel()
    img, m0 = _check_pair(image, mask)
    n = _check_stages(stages)
    sev = _severity(severity, n)
    shape = img.shape
    if sector is None:
        sector = draw_sector(shape, seed, model)
    elif not (0 <= sector.apex[0] <= shape[0] - 1 and 0 <= sector.apex[1] <= shape[1] - 1):
        raise ValueError(f"sector apex {sector.apex} must lie inside the {shape} frame")
    wedge, order = _front_order(sector, shape, model.irregularity)

    eroded = [m0]  # eroded[k]: the mask after k erosions by disk(1)
    for _ in range(model.max_thinning):
        eroded.append(erosion(eroded[-1].astype(np.uint8), disk(1)).astype(bool))
    img_f = img.astype(np.float64)
    dark = float(np.percentile(img_f, model.dark_percentile))

    images = np.empty((n, 1, *shape), np.uint8)
    masks = np.empty((n, *shape), np.uint8)
    weights = np.zeros((n, *shape), np.float32)
    for t, s in enumerate(sev):
        region = np.zeros(shape, bool)
        region.ravel()[order[: int(round(s * len(order)))]] = True
        if not region.any():  # severity 0 (or below one pixel): the source, exactly
            images[t, 0], masks[t] = img, m0
            continue
        depth = ndi.distance_transform_edt(region)
        w = np.clip(depth / model.edge_px, 0.0, 1.0) if model.edge_px > 0 else region.astype(np.float64)
        affected = w > 0
        # mask: erode round(w * max_thinning) times, then drop small fragments inside the affected region
        k = np.floor(w * model.max_thinning + 0.5).astype(np.int64)
        thinned = m0.copy()
        for j in range(1, model.max_thinning + 1):
            thinned[k == j] = eroded[j][k == j]
        if model.min_fragment > 1 and thinned.any():
            lab = label(thinned, connectivity=2)
            small = np.bincount(lab.ravel()) < model.min_fragment
            small[0] = False
            thinned &= ~small[lab]
        m_t = np.where(affected, thinned, m0)
        # image: pull the signal towards the dark level, less on the vessels the mask kept
        gain = np.where(m_t, 1.0 - model.vessel_dimming * w, 1.0 - model.capillary_loss * w)
        if model.gain_sigma > 0:
            gain = ndi.gaussian_filter(gain, model.gain_sigma, mode="nearest")
        out = np.where(affected, dark + (img_f - dark) * gain, img_f)
        images[t, 0] = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        masks[t] = m_t
        weights[t] = w
    flat = masks.reshape(n, -1).astype(bool)
    inside = wedge.ravel()
    return BRVOSequence(
        name=str(name), images=images, masks=masks, nonperfusion=weights, sector=wedge, geometry=sector,
        stages=stage_names(n), severity=sev, density_sector=flat[:, inside].mean(1),
        density_outside=flat[:, ~inside].mean(1) if (~inside).any() else np.full(n, np.nan),
        density_image=flat.mean(1), seed=int(seed))


# --------------------------------------------------------------------------------------------------
# a dataset of sequences
# --------------------------------------------------------------------------------------------------
@dataclass
class BRVODataset:
    """N simulated sequences of T stages, one per source image, stacked for the CRGAN.

    Attributes:
        images: (N, T, 1, H, W) uint8 in [0, 255].
        masks: (N, T, H, W) uint8 in {0, 1}.
        density: (N, T) float32, vessel density in the occluded sector (the CRGAN's per-stage target).
        density_image, density_outside: (N, T) float32, over the frame / outside the sector.
        sector: (N, H, W) bool, each sequence's wedge.
        patient: (N,) int64, the index of the source image (the "patient" id of the condition).
        stage: (T,) int64, stage ids 0 … T-1; ``stage_names`` their names (``"s1t1"`` …).
        names: N source image ids; ``seeds``: (N,) int64, each sequence's seed; ``sectors``: the N geometries.
        severity: (T,) the curve shared by all sequences.
        simulated: always True — these are not patient data.
    """

    images: np.ndarray
    masks: np.ndarray
    density: np.ndarray
    density_image: np.ndarray
    density_outside: np.ndarray
    sector: np.ndarray
    patient: np.ndarray
    stage: np.ndarray
    stage_names: tuple[str, ...]
    names: tuple[str, ...]
    seeds: np.ndarray
    sectors: tuple[BRVOSector, ...]
    severity: np.ndarray
    simulated: bool = True

    def __len__(self) -> int:
        return len(self.images)


def image_seed(seed: int, index: int) -> int:
    """The seed of sequence ``index`` in a dataset built with ``seed``: ``SeedSequence([seed, index])``'s first word."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def brvo_sequences(samples: Sequence, stages: int = 6, severity=None, seed: int = 0,
                   model: BRVOModel | None = None) -> BRVODataset:
    """Simulate one BRVO sequence per real image (SIMULATED data; see the module docstring).

    Args:
        samples: N :class:`~voxhelpers.data.retina.RetinaSample` (or objects with ``image`` (1, H, W) uint8,
            ``mask`` (H, W) {0, 1} and ``name``), all of one (H, W).
        stages, severity, model: as :func:`simulate_brvo` (one curve for all sequences).
        seed: the dataset's seed; sequence i uses :func:`image_seed` (seed, i).

    Returns:
        A :class:`BRVODataset`.

    Raises:
        ValueError: no samples, samples of different sizes, or the errors of :func:`simulate_brvo`.
    """
    samples = list(samples)
    if not samples:
        raise ValueError("samples is empty; expected at least one image with its vessel mask")
    seqs = []
    for i, s in enumerate(samples):
        seq = simulate_brvo(s.image, s.mask, stages, severity, image_seed(seed, i), model,
                            name=getattr(s, "name", str(i)))
        if seqs and seq.masks.shape != seqs[0].masks.shape:
            raise ValueError(f"all images must share one (H, W) to be stacked: sample 0 is {seqs[0].masks.shape[1:]}, "
                             f"sample {i} ({seq.name}) is {seq.masks.shape[1:]}")
        seqs.append(seq)
    n_stages = len(seqs[0].stages)
    return BRVODataset(
        images=np.stack([q.images for q in seqs]), masks=np.stack([q.masks for q in seqs]),
        density=np.stack([q.density_sector for q in seqs]).astype(np.float32),
        density_image=np.stack([q.density_image for q in seqs]).astype(np.float32),
        density_outside=np.stack([q.density_outside for q in seqs]).astype(np.float32),
        sector=np.stack([q.sector for q in seqs]), patient=np.arange(len(seqs), dtype=np.int64),
        stage=np.arange(n_stages, dtype=np.int64), stage_names=seqs[0].stages, names=tuple(q.name for q in seqs),
        seeds=np.array([q.seed for q in seqs], dtype=np.int64), sectors=tuple(q.geometry for q in seqs),
        severity=seqs[0].severity.copy())


def load_brvo_octa500(split: str = "train", n_images: int | None = None, stages: int = 6, severity=None,
                      seed: int = 0, model: BRVOModel | None = None, n_validation: int = 14, split_seed: int = 0,
                      roots=None) -> BRVODataset:
    """Simulated BRVO sequences from the real OCTA-500 images of one of our splits (SIMULATED; 304×304 grayscale).

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"`` of :func:`~voxhelpers.data.retina.octa500_splits`.
        n_images: the first ``n_images`` of the split (in its order), or None for all of it.
        stages, severity, seed, model: as :func:`brvo_sequences`.
        n_validation, split_seed, roots: as :func:`~voxhelpers.data.retina.octa500_splits`.

    Returns:
        A :class:`BRVODataset` (``names`` are the OCTA-500 ids).

    Raises:
        ValueError: an unknown split, ``n_images`` < 1, or the reader's and simulator's errors.
        DatasetNotFoundError: OCTA-500 is not under the data roots (the message says where to get it).
    """
    from .retina import load_pairs, octa500_splits

    if split not in ("train", "validation", "test"):
        raise ValueError(f"split must be 'train', 'validation' or 'test', got {split!r}")
    if n_images is not None and (isinstance(n_images, bool) or not isinstance(n_images, (int, np.integer))
                                 or n_images < 1):
        raise ValueError(f"n_images must be an integer >= 1 or None (the whole split), got {n_images!r}")
    pairs = octa500_splits(n_validation, split_seed, roots)[split]
    pairs = pairs[:n_images] if n_images is not None else pairs
    return brvo_sequences(load_pairs(pairs, channels=1), stages, severity, seed, model)
