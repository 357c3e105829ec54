"""DiffAugment in 3D (voxhelpers.ops.diffaugment): each transform checked against a plain numpy reference, the
gradient, the draws' reproducibility, and that the flip keeps the voxel cGAN's rotation conditions."""

import itertools

import numpy as np
import pytest
import torch

from voxhelpers.data.transforms import condition_rotation
from voxhelpers.ops.diffaugment import diff_augment, parse_policy


def _shifted(a: np.ndarray, shift) -> np.ndarray:
    """a (D, H, W) moved by shift (voxels per axis), zeros shifted in: the plain reference."""
    out = np.zeros_like(a)
    src = tuple(slice(max(0, -s), a.shape[i] - max(0, s)) for i, s in enumerate(shift))
    dst = tuple(slice(max(0, s), a.shape[i] - max(0, -s)) for i, s in enumerate(shift))
    out[dst] = a[src]
    return out


def _grids(b=16, s=8, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((b, 1, s, s, s)).astype(np.float32))


def test_parse_policy_orders_names_and_refuses_unknown_ones():
    assert parse_policy("none") == () and parse_policy("cutout+translate") == ("translate", "cutout")
    assert parse_policy(["flip", "cutout"]) == ("flip", "cutout")
    for bad in ("rotate", "translate+translate", "colour+cutout"):
        with pytest.raises(ValueError, match="augment must be"):
            parse_policy(bad)


def test_translate_is_a_zero_filled_shift_within_the_range():
    x = _grids()
    out = diff_augment(x, "translate", torch.Generator().manual_seed(1), translate=0.25)  # up to 2 of 8 voxels
    shifts = []
    for a, b in zip(x[:, 0].numpy(), out[:, 0].numpy(), strict=True):
        found = [s for s in itertools.product(range(-2, 3), repeat=3) if np.array_equal(_shifted(a, s), b)]
        assert len(found) == 1, "each output is exactly one shift of its input"
        shifts.append(found[0])
    assert len(set(shifts)) > 4  # the samples drew their own shifts


def test_cutout_zeroes_one_box_of_at_most_the_fraction():
    x = torch.ones(32, 1, 8, 8, 8)
    out = diff_augment(x, "cutout", torch.Generator().manual_seed(2), cutout=0.5)
    for o in out[:, 0].numpy():
        zero = np.argwhere(o == 0)
        assert len(zero), "p = 1: every sample loses a box"
        lo, hi = zero.min(0), zero.max(0) + 1
        assert (hi - lo <= 4).all() and (o[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))] == 0).all()
        assert (o == 0).sum() == np.prod(hi - lo)  # one box, nothing else
    assert torch.equal(diff_augment(x, "cutout", torch.Generator().manual_seed(2), p=0.0), x)


def test_flip_mirrors_the_axis_of_the_condition_turns_and_commutes_with_them():
    x = _grids(64)
    out = diff_augment(x, "flip", torch.Generator().manual_seed(3))
    flipped = [bool(torch.equal(o, a.flip(-1))) for a, o in zip(x, out, strict=True)]
    kept = [bool(torch.equal(o, a)) for a, o in zip(x, out, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True)) and 10 < sum(flipped) < 54  # p / 2 = 0.5
    for c in range(4):  # conditions 0-3: quarter turns in plane (0, 1)
        assert torch.equal(condition_rotation(x.flip(-1), c), condition_rotation(x, c).flip(-1))
    assert not torch.equal(condition_rotation(x.flip(-1), 4), condition_rotation(x, 4).flip(-1))


def test_gradient_flows_through_every_transform_and_draws_repeat_with_the_seed():
    x = _grids(8).requires_grad_(True)
    out = diff_augment(x, "flip+translate+cutout", torch.Generator().manual_seed(4))
    out.sum().backward()
    assert set(torch.unique(x.grad).tolist()) <= {0.0, 1.0} and x.grad.sum() > 0
    again = diff_augment(x.detach(), "flip+translate+cutout", torch.Generator().manual_seed(4))
    assert torch.equal(out.detach(), again)
    assert diff_augment(x, "none") is x


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="float"):
        diff_augment(torch.ones(2, 1, 8, 8, 8, dtype=torch.bool), "cutout")
    with pytest.raises(ValueError, match=r"\(B, C, D, H, W\)"):
        diff_augment(torch.ones(2, 8, 8, 8), "cutout")
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        diff_augment(torch.ones(2, 1, 8, 8, 8), "cutout", p=1.5)
