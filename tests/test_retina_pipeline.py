"""System 4's joined pipeline (voxhelpers.inference.retina): sector density by hand, the Pix2Pix segmenter's
threshold rule and resize round trip on a tiny U-Net whose last layer is patched (constant or echo of its input),
and the CRGAN → segmenter → density pipeline on tiny SIMULATED sequences with an intensity-threshold segmenter.

Light and single-threaded: 32² images, the smoke CRGAN, a (4, 8, 8) U-Net.
"""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import vessel_grid
from torch import nn

from voxhelpers.config.crgan import crgan_config
from voxhelpers.data.brvo import brvo_sequences
from voxhelpers.inference.retina import JoinedResult, joined_pipeline, pix2pix_segmenter, sector_density
from voxhelpers.nets import Pix2PixGenerator, build_network
from voxhelpers.systems.crgan import eval_noise, generate, resize_dataset

# --------------------------------------------------------------------------------------------------
# sector_density
# --------------------------------------------------------------------------------------------------
MASK = np.array([[1, 0, 0, 1],
                 [0, 1, 0, 0],
                 [0, 0, 1, 0],
                 [1, 1, 0, 0]], np.uint8)


def test_sector_density_hand_computed():
    top = np.zeros((4, 4), bool)
    top[:2] = True  # 8 pixels, vessels at (0, 0), (0, 3), (1, 1): 3 / 8
    assert sector_density(MASK, top) == pytest.approx(3 / 8)
    corner = np.zeros((4, 4), bool)
    corner[2:, :2] = True  # (2, 0) 0, (2, 1) 0, (3, 0) 1, (3, 1) 1: 2 / 4
    assert sector_density(MASK, corner) == pytest.approx(0.5)
    diag = np.eye(4, dtype=bool)  # (0,0) 1, (1,1) 1, (2,2) 1, (3,3) 0: 3 / 4
    assert sector_density(MASK, diag) == pytest.approx(0.75)
    assert sector_density(MASK, np.ones((4, 4), bool)) == pytest.approx(6 / 16)  # six vessel pixels
    # bool masks and a {0, 1} integer sector read the same
    assert sector_density(MASK.astype(bool), top.astype(np.uint8)) == pytest.approx(3 / 8)
    out = sector_density(MASK, top)
    assert out.shape == () and out.dtype == np.float64


def test_sector_density_broadcasts_over_leading_axes():
    top = np.zeros((4, 4), bool)
    top[:2] = True
    masks = np.stack([MASK, 1 - MASK, np.zeros_like(MASK)])  # densities in `top`: 3/8, 5/8, 0
    masks = np.stack([masks, masks[::-1]])  # (2, 3, 4, 4)
    d = sector_density(masks, top)  # one (H, W) sector for all
    assert d.shape == (2, 3)
    np.testing.assert_allclose(d, [[3 / 8, 5 / 8, 0], [0, 5 / 8, 3 / 8]])

    # one sector per leading element: (2, 1, 4, 4) against (2, 3, 4, 4)
    per = np.stack([top, np.eye(4, dtype=bool)])[:, None]
    d = sector_density(masks, per)
    # row 1 in the diagonal: MASK 3/4, 1 - MASK 1/4, zeros 0, reversed
    np.testing.assert_allclose(d, [[3 / 8, 5 / 8, 0], [0, 1 / 4, 3 / 4]])


def test_sector_density_empty_sector_is_nan():
    empty = np.zeros((4, 4), bool)
    assert math.isnan(float(sector_density(MASK, empty)))
    masks = np.stack([MASK, 1 - MASK])
    sectors = np.stack([empty, np.ones((4, 4), bool)])
    d = sector_density(masks, sectors)  # per-element sectors: the first is empty
    assert math.isnan(d[0]) and d[1] == pytest.approx(10 / 16)


def test_sector_density_refuses_a_sector_of_another_size():
    with pytest.raises(ValueError):
        sector_density(MASK, np.ones((3, 3), bool))


# --------------------------------------------------------------------------------------------------
# pix2pix_segmenter
# --------------------------------------------------------------------------------------------------
def _unet(seed=0):
    torch.manual_seed(seed)
    return Pix2PixGenerator(1, 1, channels=(4, 8, 8))  # depth 3: sides multiples of 8


def _constant_unet(probability: float):
    """The U-Net with its last convolution zeroed and its bias set so every output pixel is
    tanh(bias) = 2·probability − 1."""
    model = _unet()
    conv = model.head[0]
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(math.atanh(2 * probability - 1))
    return model


class _Echo(nn.Module):
    """A last layer that outputs the U-Net's own input (captured by a forward pre-hook): output = input."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.source = None
        model.register_forward_pre_hook(lambda _module, args: setattr(self, "source", args[0]))

    def forward(self, _features):
        return self.source


def _echo_unet():
    """The real U-Net (encoders and decoders run) whose output is its input: probability = the image."""
    model = _unet()
    model.head = _Echo(model)
    return model


def test_constant_output_threshold_is_at_or_above():
    seg = pix2pix_segmenter(_constant_unet(0.5), threshold=0.5)  # tanh(0) = 0: probability exactly 0.5
    images = np.random.default_rng(0).uniform(0, 1, (3, 16, 16)).astype(np.float32)
    masks = seg(images)
    assert masks.shape == (3, 16, 16) and masks.dtype == bool
    assert masks.all()  # 0.5 >= 0.5: a vessel
    assert not pix2pix_segmenter(_constant_unet(0.5), threshold=0.5 + 1e-6)(images).any()

    low = _constant_unet(0.3)
    assert not pix2pix_segmenter(low, threshold=0.5)(images).any()
    assert pix2pix_segmenter(low, threshold=0.29)(images).all()


def test_echo_output_is_image_at_or_above_threshold():
    rng = np.random.default_rng(1)
    images = rng.choice(np.array([0.1, 0.3, 0.7, 0.9], np.float32), (5, 16, 24))  # 16×24: multiples of 8
    model = _echo_unet()
    for threshold in (0.5, 0.2, 0.8):
        masks = pix2pix_segmenter(model, threshold=threshold, batch_size=2)(images)  # 3 batches, order kept
        np.testing.assert_array_equal(masks, images >= threshold)


def test_resize_round_trip_to_size_and_back():
    # 32² of 8×8 blocks → 16² (bilinear ÷2 keeps 4×4 blocks exactly) → 32² by nearest: the blocks come back
    rng = np.random.default_rng(2)
    blocks = rng.choice(np.array([0.2, 0.8], np.float32), (3, 4, 4))
    images = np.kron(blocks, np.ones((8, 8), np.float32))  # (3, 32, 32)
    masks = pix2pix_segmenter(_echo_unet(), threshold=0.5, size=16)(images)
    assert masks.shape == images.shape
    np.testing.assert_array_equal(masks, images >= 0.5)

    # a non-square 24×40 image (the model runs at 16²): left 20 columns bright, right 20 dark; the mask comes back
    # at 24×40 with the same split (bilinear to 16² and nearest back both keep the column split at 20 exactly)
    stripes = np.full((2, 24, 40), 0.1, np.float32)
    stripes[:, :, :20] = 0.9
    masks = pix2pix_segmenter(_echo_unet(), threshold=0.5, size=16)(stripes)
    assert masks.shape == (2, 24, 40)
    np.testing.assert_array_equal(masks, stripes >= 0.5)

    # up to size² bilinearly, back by nearest (hand-computed): 16² with columns 0–7 at 0.2 and 8–15 at 0.8, at 32²
    # the pixel read back for column j is 32-column 2j = 0.75·x[j] + 0.25·x[j − 1]; column 8 gets 0.65 < 0.7, so the
    # mask starts at column 9 (nearest up would start it at 8)
    halves = np.full((1, 16, 16), 0.2, np.float32)
    halves[:, :, 8:] = 0.8
    masks = pix2pix_segmenter(_echo_unet(), threshold=0.7, size=32)(halves)
    expected = np.zeros((1, 16, 16), bool)
    expected[:, :, 9:] = True
    np.testing.assert_array_equal(masks, expected)

    # the model sees size² only: 20×20 (not a multiple of 8) is refused by the U-Net without `size`
    odd = np.full((1, 20, 20), 0.9, np.float32)
    assert pix2pix_segmenter(_echo_unet(), size=16)(odd).shape == (1, 20, 20)
    with pytest.raises(ValueError, match="multiples of"):
        pix2pix_segmenter(_echo_unet())(odd)


def test_segmenter_predicts_in_eval_mode_and_restores_the_mode():
    model = _constant_unet(0.5)
    model.train()
    pix2pix_segmenter(model)(np.zeros((1, 8, 8), np.float32))  # a 1×1 bottleneck with batch 1: fails in training
    assert model.training  # the caller's mode is given back
    model.eval()
    pix2pix_segmenter(model)(np.zeros((1, 8, 8), np.float32))
    assert not model.training


@pytest.mark.parametrize("images, match", [
    (np.zeros((16, 16), np.float32), r"\(N, H, W\)"),
    (np.zeros((2, 1, 16, 16), np.float32), r"\(N, H, W\)"),
    (np.zeros((0, 16, 16), np.float32), r"\(N, H, W\)"),
    (np.where(np.eye(16, dtype=bool), np.nan, 0.5).astype(np.float32)[None], "finite"),
    (np.full((1, 16, 16), np.inf, np.float32), "finite"),
    (np.full((1, 16, 16), 1.5, np.float32), r"\[0, 1\]"),
    (np.full((1, 16, 16), -0.01, np.float32), r"\[0, 1\]"),
    (np.full((1, 16, 16), 255, np.uint8), r"\[0, 1\]"),  # raw pixels, not pixel / 255
])
def test_segmenter_refuses_bad_images(images, match):
    seg = pix2pix_segmenter(_constant_unet(0.5))
    with pytest.raises(ValueError, match=match):
        seg(images)


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.1, 1.5, float("nan")])
def test_segmenter_refuses_threshold_outside_open_unit_interval(threshold):
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\)"):
        pix2pix_segmenter(_constant_unet(0.5), threshold=threshold)


# --------------------------------------------------------------------------------------------------
# joined_pipeline
# --------------------------------------------------------------------------------------------------
def _grid(seed, h=64, w=64):
    """conftest.vessel_grid as a sample: image (1, H, W), mask, name."""
    image, mask = vessel_grid(seed, h, w)
    return SimpleNamespace(name=f"g{seed}", image=image[None], mask=mask)


@pytest.fixture(scope="module")
def setup():
    cfg = crgan_config("smoke")
    torch.manual_seed(0)
    crgan = build_network("crgan", "generator", cfg)
    seqs = brvo_sequences([_grid(0), _grid(1)], stages=cfg.n_stages, seed=3)
    return cfg, crgan, resize_dataset(seqs, cfg.image_size)


def _threshold_segmenter(calls):
    def segment(images):
        calls.append(np.asarray(images).shape)
        return np.asarray(images) >= 0.5
    return segment


def _density_loop(masks, sector):
    """sector density by explicit loops over the leading axes."""
    out = np.empty(masks.shape[:-2])
    for idx in np.ndindex(*masks.shape[:-2]):
        out[idx] = masks[idx][sector[idx[0]]].mean()
    return out


def test_joined_pipeline_fields(setup):
    cfg, crgan, seqs = setup
    n, t, s, k = 2, cfg.n_stages, cfg.image_size, cfg.eval_draws
    calls = []
    r = joined_pipeline(crgan, _threshold_segmenter(calls), seqs, cfg)
    assert isinstance(r, JoinedResult)
    assert r.generated.shape == (n, k, t, s, s) and r.generated.dtype == np.float32
    assert r.generated.min() >= 0 and r.generated.max() <= 1
    assert r.generated_masks.shape == (n, k, t, s, s) and r.generated_masks.dtype == bool
    assert r.truth.shape == (n, t, s, s) and r.truth.dtype == np.float32
    assert r.truth_masks.shape == (n, t, s, s) and r.truth_masks.dtype == bool
    assert r.density_generated.shape == (n, k, t)
    assert r.density_truth.shape == (n, t)
    assert r.density_simulated.shape == (n, t)
    assert r.sector.shape == (n, s, s) and r.sector.dtype == bool
    assert r.names == ("g0", "g1") and r.stage_names == ("s1t1", "s1t2", "s2t1", "s2t2", "s3t1", "s3t2")
    # the segmenter saw every image once, as (M, S, S)
    assert sorted(calls) == sorted([(n * k * t, s, s), (n * t, s, s)])

    # values: the true images, the intensity rule, the default patient (the unknown one) with the fixed noise
    np.testing.assert_array_equal(r.truth, seqs.images[:, :, 0].astype(np.float32) / 255)
    np.testing.assert_array_equal(r.truth_masks, r.truth >= 0.5)
    np.testing.assert_array_equal(r.generated_masks, r.generated >= 0.5)
    expected = generate(crgan, np.full(n, cfg.unknown_patient), t, eval_noise(cfg, n))
    np.testing.assert_array_equal(r.generated, expected)
    np.testing.assert_array_equal(r.sector, seqs.sector)

    # densities by hand, in each sequence's own sector
    np.testing.assert_allclose(r.density_generated, _density_loop(r.generated_masks, r.sector))
    np.testing.assert_allclose(r.density_truth, _density_loop(r.truth_masks, r.sector))
    np.testing.assert_allclose(r.density_simulated, seqs.density)
    assert 0 < r.density_truth.mean() < 1  # the thresholded grid: vessels and background in the sector

    err = r.density_error
    assert err.shape == (n, k, t)
    for i, j, m in np.ndindex(n, k, t):
        assert err[i, j, m] == pytest.approx(abs(r.density_generated[i, j, m] - r.density_truth[i, m]))


def test_joined_result_error_and_table_by_hand():
    """density_error = |generated − truth| broadcast over draws, both signs; table() = per-stage means."""
    gen = np.array([[[0.2, 0.5, 0.0], [0.4, 0.1, 0.0]],
                    [[0.6, 0.6, 0.9], [0.0, 0.2, 0.3]]])  # (N 2, K 2, T 3)
    truth = np.array([[0.4, 0.1, 0.0],
                      [0.5, 0.5, 0.5]])  # (N 2, T 3)
    sim = np.array([[0.3, 0.2, 0.1], [0.5, 0.4, 0.3]])
    r = JoinedResult(generated=None, generated_masks=None, truth=None, truth_masks=None, density_generated=gen,
                     density_truth=truth, density_simulated=sim, sector=None, names=("a", "b"),
                     stage_names=("s1t1", "s1t2", "s2t1"))
    expected = np.array([[[0.2, 0.4, 0.0], [0.0, 0.0, 0.0]],
                         [[0.1, 0.1, 0.4], [0.5, 0.3, 0.2]]])
    np.testing.assert_allclose(r.density_error, expected, atol=1e-12)
    table = r.table()
    assert list(table["stage"]) == ["s1t1", "s1t2", "s2t1"]
    np.testing.assert_allclose(table["density_generated"], [0.3, 0.35, 0.3])
    np.testing.assert_allclose(table["density_truth"], [0.45, 0.3, 0.25])
    np.testing.assert_allclose(table["density_error"], [0.2, 0.2, 0.15])
    np.testing.assert_allclose(table["density_simulated"], [0.4, 0.3, 0.2])


def test_joined_pipeline_table(setup):
    cfg, crgan, seqs = setup
    r = joined_pipeline(crgan, _threshold_segmenter([]), seqs, cfg, draws=3)
    assert r.generated.shape[1] == 3
    table = r.table()
    assert len(table) == cfg.n_stages
    assert list(table["stage"]) == list(seqs.stage_names)
    assert set(table.columns) == {"stage", "density_generated", "density_truth", "density_error", "density_simulated"}
    np.testing.assert_allclose(table["density_generated"], r.density_generated.mean(axis=(0, 1)))
    np.testing.assert_allclose(table["density_truth"], r.density_truth.mean(axis=0))
    np.testing.assert_allclose(table["density_error"], r.density_error.mean(axis=(0, 1)))
    np.testing.assert_allclose(table["density_simulated"], seqs.density.mean(axis=0), rtol=1e-6)


def test_joined_pipeline_patient_and_plain_sequences(setup):
    cfg, crgan, seqs = setup
    default = joined_pipeline(crgan, _threshold_segmenter([]), seqs, cfg)
    known = joined_pipeline(crgan, _threshold_segmenter([]), seqs, cfg, patient=[0, 1])
    assert not np.array_equal(known.generated, default.generated)  # another embedding row, same noise
    np.testing.assert_array_equal(
        known.generated, generate(crgan, [0, 1], cfg.n_stages, eval_noise(cfg, 2)))

    # a plain object with images and sectors only: no simulator density, default names
    plain = SimpleNamespace(images=seqs.images, sector=seqs.sector)
    r = joined_pipeline(crgan, _threshold_segmenter([]), plain, cfg)
    assert r.density_simulated is None
    assert r.names == ("0", "1") and len(r.stage_names) == cfg.n_stages
    assert "density_simulated" not in r.table().columns and len(r.table()) == cfg.n_stages
    np.testing.assert_array_equal(r.density_truth, default.density_truth)


def test_joined_pipeline_refuses_stage_count_mismatch(setup):
    cfg, crgan, _ = setup
    four = resize_dataset(brvo_sequences([_grid(0)], stages=4, seed=3), cfg.image_size)
    with pytest.raises(ValueError, match="4 stages"):
        joined_pipeline(crgan, _threshold_segmenter([]), four, cfg)


def test_joined_pipeline_refuses_unresized_sequences_and_a_bad_segmenter(setup):
    """Sequences at another size than the CRGAN's (not through resize_dataset), a sector of another size, and a
    segmenter returning one mask too few are named errors, not numpy broadcasting messages."""
    cfg, crgan, seqs = setup
    big = brvo_sequences([_grid(0)], stages=cfg.n_stages, seed=3)  # 64², the CRGAN draws cfg.image_size²
    with pytest.raises(ValueError, match="resize_dataset"):
        joined_pipeline(crgan, _threshold_segmenter([]), big, cfg)
    odd = SimpleNamespace(images=seqs.images, sector=np.ones((2, 8, 8), bool))
    with pytest.raises(ValueError, match="sequences.sector must be"):
        joined_pipeline(crgan, _threshold_segmenter([]), odd, cfg)
    with pytest.raises(ValueError, match="one .* mask per image"):
        joined_pipeline(crgan, lambda x: np.asarray(x)[1:] >= 0.5, seqs, cfg)
