"""The voxel renderer for 3D-VAE-IWGAN's input views: exact silhouettes, orientation, determinism, batching."""

import math

import pytest
import torch

from voxhelpers.ops.render import VIEW_HALF_WIDTH, random_views, render_voxels

N = 64  # image size for most tests


def _hit(img, background=1.0):
    """(3, N, N) render → (N, N) bool mask of non-background pixels."""
    return (img != background).any(0)


def _extent(mask):
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    return rows.min().item(), rows.max().item(), cols.min().item(), cols.max().item()


def test_shape_range_and_dtype():
    g = torch.Generator().manual_seed(0)
    vox = (torch.rand(3, 1, 16, 16, 16, generator=g) > 0.6).float()
    img = render_voxels(vox, torch.tensor([0.0, 45.0, 200.0]), 30.0, image_size=32)
    assert img.shape == (3, 3, 32, 32) and img.dtype == torch.float32
    assert 0 <= img.min() and img.max() <= 1
    assert _hit(img[0]).any()
    # (B, D, H, W) input and bool input give the same picture
    assert torch.equal(render_voxels(vox[:, 0].bool(), torch.tensor([0.0, 45.0, 200.0]), 30.0, image_size=32), img)


def test_empty_grid_is_pure_background():
    img = render_voxels(torch.zeros(2, 1, 8, 8, 8), 30.0, 20.0, image_size=N, background=0.25)
    assert torch.equal(img, torch.full((2, 3, N, N), 0.25))


def test_threshold_on_probabilities():
    vox = torch.full((1, 1, 8, 8, 8), 0.4)
    assert not _hit(render_voxels(vox, 0.0, 0.0, image_size=N)[0]).any()  # 0.4 ≤ 0.5: empty
    assert _hit(render_voxels(vox, 0.0, 0.0, image_size=N, threshold=0.3)[0]).any()


@pytest.mark.parametrize("size", [64, 128])
def test_full_cube_face_on_covers_the_central_square(size):
    # Orthographic view of the unit cube face-on: width 1 in a view √3 wide → size/√3 pixels, centred.
    # 128: 73.9 px from (128 − 73.9)/2 = 27.05 → columns 27..100; 64: 36.95 px from 13.5 → 14..50 (± 1)
    img = render_voxels(torch.ones(1, 1, 32, 32, 32), 0.0, 0.0, image_size=size)[0]
    mask = _hit(img)
    width = size / math.sqrt(3)
    first, last = (size - width) / 2, (size + width) / 2 - 1
    r0, r1, c0, c1 = _extent(mask)
    for got, want in ((r0, first), (c0, first), (r1, last), (c1, last)):
        assert abs(got - want) <= 1, (got, want)
    assert mask[r0 : r1 + 1, c0 : c1 + 1].all() and mask.sum() == (r1 - r0 + 1) * (c1 - c0 + 1)  # a filled square
    # one flat face at one depth: a single colour
    colours = img[:, mask].T.unique(dim=0)
    assert colours.shape == (1, 3)
    assert 2 * VIEW_HALF_WIDTH == pytest.approx(math.sqrt(3))


def test_full_cube_at_45_degrees_is_wider():
    # azimuth 45°: two faces seen, projected width √2 → 128·√2/√3 = 104.5 px; height still 73.9 px
    mask = _hit(render_voxels(torch.ones(1, 1, 32, 32, 32), 45.0, 0.0, image_size=128)[0])
    r0, r1, c0, c1 = _extent(mask)
    assert abs((c1 - c0 + 1) - 128 * math.sqrt(2 / 3)) <= 1
    assert abs((r1 - r0 + 1) - 128 / math.sqrt(3)) <= 1


def _block():
    # a block at high x (axis 0), centred in z (axis 2), at high y (axis 1, up)
    vox = torch.zeros(1, 1, 16, 16, 16)
    vox[0, 0, 11:15, 10:14, 6:10] = 1
    return vox


def test_off_centre_block_is_mirrored_between_azimuth_0_and_180():
    front, back = render_voxels(_block().expand(2, -1, -1, -1, -1), torch.tensor([0.0, 180.0]), 0.0, image_size=N)
    m0, m180 = _hit(front), _hit(back)
    cols = torch.arange(N, dtype=torch.float32)
    # azimuth 0 looks down −z with +x to the right; azimuth 180 looks down +z, so +x is on the left
    assert (cols[None, :] * m0).sum() / m0.sum() > N / 2
    assert (cols[None, :] * m180).sum() / m180.sum() < N / 2
    # the block is symmetric in z, so the two silhouettes are mirror images; +y is up in both
    assert torch.equal(m180, m0.flip(-1))
    rows = torch.arange(N, dtype=torch.float32)
    assert (rows[:, None] * m0).sum() / m0.sum() < N / 2


def test_deterministic_and_batch_equals_single_views():
    g = torch.Generator().manual_seed(0)
    vox = (torch.rand(4, 1, 12, 12, 12, generator=g) > 0.5).float()
    az, el = random_views(4, generator=g)
    batch = render_voxels(vox, az, el, image_size=N)
    assert torch.equal(batch, render_voxels(vox, az, el, image_size=N))
    singles = torch.cat([render_voxels(vox[i : i + 1], az[i : i + 1], el[i : i + 1], image_size=N) for i in range(4)])
    assert torch.equal(batch, singles)


def test_random_views():
    az, el = random_views(500, generator=torch.Generator().manual_seed(0), elevation_range=(-10.0, 30.0))
    assert az.shape == el.shape == (500,)
    assert 0 <= az.min() and az.max() < 360 and -10 <= el.min() and el.max() <= 30
    az2, el2 = random_views(500, generator=torch.Generator().manual_seed(0), elevation_range=(-10.0, 30.0))
    assert torch.equal(az, az2) and torch.equal(el, el2)
    with pytest.raises(ValueError, match="elevation_range"):
        random_views(3, elevation_range=(40.0, 10.0))
    with pytest.raises(ValueError, match="n must be"):
        random_views(0)


def test_bad_input():
    good = torch.ones(2, 1, 8, 8, 8)
    with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\) or \(B, D, H, W\)"):
        render_voxels(torch.ones(8, 8, 8), 0.0, 0.0)
    with pytest.raises(ValueError, match=r"\(B, 1, D, H, W\) or \(B, D, H, W\)"):
        render_voxels(torch.ones(2, 2, 8, 8, 8), 0.0, 0.0)
    nan = good.clone()
    nan[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        render_voxels(nan, 0.0, 0.0)
    with pytest.raises(ValueError, match="image_size must be an integer >= 16"):
        render_voxels(good, 0.0, 0.0, image_size=8)
    with pytest.raises(ValueError, match=r"azimuth must be a float or a tensor \(B,\)"):
        render_voxels(good, torch.zeros(3), 0.0)
    with pytest.raises(ValueError, match="elevation must be finite"):
        render_voxels(good, 0.0, float("inf"))
    with pytest.raises(ValueError, match="light must be 3 finite numbers"):
        render_voxels(good, 0.0, 0.0, light=(0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="background"):
        render_voxels(good, 0.0, 0.0, background=2.0)


def test_up_axis_z_puts_high_axis2_voxels_at_the_top():
    # a block at the high end of axis 2: with up="z" it must land in the upper half of a level view
    v = torch.zeros(1, 8, 8, 8)
    v[0, 3:5, 3:5, 6:8] = 1
    img = render_voxels(v, 0.0, 0.0, image_size=32, up="z")[0, 0]
    rows = (img < 1).nonzero()[:, 0]
    assert len(rows) > 0 and rows.float().mean() < 16  # image row 0 is the top
    img_y = render_voxels(v, 0.0, 0.0, image_size=32, up="y")[0, 0]
    assert not torch.equal(img, img_y)
    with pytest.raises(ValueError, match="up must be"):
        render_voxels(v, 0.0, 0.0, up="x")
