"""The SIMULATED BRVO sequences of system 4 (voxhelpers.data.brvo): determinism, the density ↔ severity relation,
the untouched outside, exact identity at severity 0, binary masks, the dataset builder on real OCTA-500, bad input.

Light and single-threaded: a 96×96 synthetic vessel grid for the model's properties, two real images for the builder.
"""

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import vessel_grid

from voxhelpers.data.brvo import (
    DEFAULT_SEVERITY,
    BRVOModel,
    BRVOSector,
    brvo_sequences,
    default_severity,
    draw_sector,
    image_seed,
    load_brvo_octa500,
    simulate_brvo,
    stage_names,
    vessel_density,
)

H = W = 96


def _grid(seed=0, h=H, w=W):
    """conftest.vessel_grid at this module's default size."""
    return vessel_grid(seed, h, w)


# --------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------
def test_stage_names_and_default_curve():
    assert stage_names() == ("s1t1", "s1t2", "s2t1", "s2t2", "s3t1", "s3t2")  # SOUL: injection × follow-up
    assert stage_names(3) == ("s1t1", "s1t2", "s2t1")
    np.testing.assert_array_equal(default_severity(), DEFAULT_SEVERITY)
    # 2 stages: the curve's end points, 0.15 and 0.10
    np.testing.assert_allclose(default_severity(2), [0.15, 0.10])
    assert default_severity(11).shape == (11,) and default_severity(11).max() == pytest.approx(0.45)


def test_seeded_and_deterministic():
    image, mask = _grid()
    a, b = simulate_brvo(image, mask, seed=3), simulate_brvo(image, mask, seed=3)
    for k in ("images", "masks", "nonperfusion", "sector", "density_sector"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert a.geometry == b.geometry == draw_sector((H, W), 3)
    c = simulate_brvo(image, mask, seed=4)
    assert c.geometry.orientation_deg != a.geometry.orientation_deg
    assert not np.array_equal(c.images, a.images)
    assert a.simulated and c.simulated
    # a dataset's per-image seeds: fixed by (seed, index), distinct across images
    assert image_seed(0, 1) == image_seed(0, 1) != image_seed(0, 0) != image_seed(1, 0)


def test_sector_density_follows_the_severity_curve_and_the_outside_is_untouched():
    image, mask = _grid()
    curve = [0.0, 0.15, 0.35, 0.45, 0.30, 0.10, 0.0]  # grows, then recedes with treatment
    seq = simulate_brvo(image, mask, stages=len(curve), severity=curve, seed=1)
    d = seq.density_sector
    sector = seq.sector
    assert d[0] == pytest.approx(vessel_density(mask, sector))  # severity 0: the source
    # monotone in severity: a larger severity gives a strictly smaller density, an equal one the same density
    for i in range(len(curve)):
        for j in range(len(curve)):
            if curve[i] < curve[j]:
                assert d[i] > d[j], (i, j, d)
            elif curve[i] == curve[j]:
                assert d[i] == d[j]
    assert np.all(np.diff(d[:4]) < 0) and np.all(np.diff(d[3:]) > 0)  # falls, then recovers
    np.testing.assert_array_equal(seq.masks[-1], mask)  # back to severity 0: fully recovered
    # outside the sector nothing changes: the densities and the pixels themselves
    np.testing.assert_allclose(seq.density_outside, vessel_density(mask, ~sector), atol=1e-12)
    for t in range(len(curve)):
        np.testing.assert_array_equal(seq.images[t, 0][~sector], image[~sector])
        np.testing.assert_array_equal(seq.masks[t][~sector], mask[~sector])
        assert not seq.nonperfusion[t][~sector].any()
    # the non-perfused core is darker than the source there
    core = seq.nonperfusion[3] == 1
    assert core.sum() > 50
    assert seq.images[3, 0][core].mean() < 0.5 * image[core].mean()


def test_severity_zero_returns_the_source_exactly():
    image, mask = _grid(seed=2)
    seq = simulate_brvo(image[None], mask, stages=3, severity=[0.0, 0.4, 0.0], seed=5)  # (1, H, W) accepted
    for t in (0, 2):
        np.testing.assert_array_equal(seq.images[t, 0], image)
        np.testing.assert_array_equal(seq.masks[t], mask)
        assert not seq.nonperfusion[t].any()
    assert not np.array_equal(seq.images[1, 0], image)


@pytest.mark.parametrize("severity", [[0.2, 1.0], [1.0, 0.5]])
def test_masks_stay_binary_and_outputs_well_typed(severity):
    image, mask = _grid()
    seq = simulate_brvo(image, mask.astype(bool), stages=2, severity=severity, seed=0)
    assert seq.images.shape == (2, 1, H, W) and seq.images.dtype == np.uint8
    assert seq.masks.shape == (2, H, W) and seq.masks.dtype == np.uint8
    assert set(np.unique(seq.masks)) <= {0, 1}
    assert np.all(seq.masks <= mask)  # vessels are only removed or thinned, never added
    assert seq.nonperfusion.dtype == np.float32 and 0 <= seq.nonperfusion.min() and seq.nonperfusion.max() <= 1
    assert seq.density_sector.shape == seq.density_image.shape == (2,)


def test_a_given_sector_is_used():
    image, mask = _grid()
    sector = BRVOSector(apex=(47.5, 47.5), orientation_deg=90.0, half_angle_deg=45.0)  # the top quarter
    seq = simulate_brvo(image, mask, stages=2, severity=[0.0, 1.0], sector=sector)
    assert seq.sector[5, 47] and not seq.sector[90, 47] and not seq.sector[47, 5]
    assert seq.geometry is sector


# --------------------------------------------------------------------------------------------------
# the dataset builder
# --------------------------------------------------------------------------------------------------
def test_brvo_sequences_on_synthetic_samples():
    samples = [SimpleNamespace(name=f"g{i}", image=_grid(seed=i)[0][None], mask=_grid(seed=i)[1]) for i in range(3)]
    ds = brvo_sequences(samples, stages=4, seed=7)
    assert len(ds) == 3 and ds.images.shape == (3, 4, 1, H, W) and ds.masks.shape == (3, 4, H, W)
    assert ds.density.shape == (3, 4) and ds.density.dtype == np.float32
    np.testing.assert_array_equal(ds.patient, [0, 1, 2])
    np.testing.assert_array_equal(ds.stage, [0, 1, 2, 3])
    assert ds.stage_names == ("s1t1", "s1t2", "s2t1", "s2t2") and ds.names == ("g0", "g1", "g2")
    assert list(ds.seeds) == [image_seed(7, i) for i in range(3)] and len(set(ds.sectors)) == 3
    assert ds.simulated
    with pytest.raises(ValueError, match="share one"):
        brvo_sequences([samples[0], SimpleNamespace(name="small", image=_grid(h=64, w=64)[0],
                                                   mask=_grid(h=64, w=64)[1])])
    with pytest.raises(ValueError, match="empty"):
        brvo_sequences([])


def test_load_brvo_octa500_on_two_real_images(data_root):
    if not (data_root / "octa500").is_dir():
        pytest.skip("OCTA-500 (octa500/) is not under the real data root")
    ds = load_brvo_octa500("test", n_images=2, seed=0)
    assert ds.images.shape == (2, 6, 1, 304, 304) and ds.images.dtype == np.uint8
    assert ds.masks.shape == (2, 6, 304, 304) and ds.masks.dtype == np.uint8
    assert set(np.unique(ds.masks)) <= {0, 1}
    assert ds.density.shape == (2, 6) and ds.density.dtype == np.float32
    assert ds.names == ("10441", "10442") and ds.stage_names == stage_names(6) and ds.simulated
    np.testing.assert_array_equal(ds.patient, [0, 1])
    order = np.argsort(DEFAULT_SEVERITY)
    for i in range(2):
        assert np.all(np.diff(ds.density[i][order]) <= 0)  # sorted by rising severity, the sector's density falls
        assert ds.density[i].min() < ds.density[i].max()
        np.testing.assert_allclose(ds.density_outside[i], ds.density_outside[i][0], atol=1e-6)
    with pytest.raises(ValueError, match="split"):
        load_brvo_octa500("val")
    with pytest.raises(ValueError, match="n_images"):
        load_brvo_octa500("test", n_images=0)


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, match",
    [
        (dict(mask="x255"), "binary"),
        (dict(mask="small"), "image's"),
        (dict(image="rgb"), "grayscale"),
        (dict(image="float"), "uint8"),
        (dict(stages=1), "stages"),
        (dict(stages=2.5), "stages"),
        (dict(severity=[0.1, 0.2, 0.3]), "one value per stage"),
        (dict(severity=[0.1] * 5 + [1.5]), r"\[0, 1\]"),
        (dict(severity=[0.1] * 5 + [-0.1]), r"\[0, 1\]"),
        (dict(severity=[0.1] * 5 + [float("nan")]), r"\[0, 1\]"),
    ],
)
def test_bad_input_raises(change, match):
    image, mask = _grid()
    args = dict(image=image, mask=mask, stages=6, severity=None)
    fixes = {"x255": mask * 255, "small": mask[:-1], "rgb": np.stack([image] * 3), "float": image / 255.0}
    args.update({k: fixes.get(v, v) if isinstance(v, str) else v for k, v in change.items()})
    with pytest.raises(ValueError, match=match):
        simulate_brvo(**args)


def test_bad_model_and_sector_raise():
    with pytest.raises(ValueError, match="half_angle_range"):
        BRVOModel(half_angle_range=(50.0, 30.0))
    with pytest.raises(ValueError, match="capillary_loss"):
        BRVOModel(capillary_loss=1.5)
    with pytest.raises(ValueError, match="max_thinning"):
        BRVOModel(max_thinning=-1)
    with pytest.raises(ValueError, match="half_angle_deg"):
        BRVOSector(apex=(1.0, 1.0), orientation_deg=0.0, half_angle_deg=120.0)
    image, mask = _grid()
    with pytest.raises(ValueError, match="apex"):
        simulate_brvo(image, mask, sector=BRVOSector(apex=(-5.0, 10.0), orientation_deg=0.0, half_angle_deg=30.0))
