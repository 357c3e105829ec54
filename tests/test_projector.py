"""DRR projector (voxhelpers.ops.projector): closed-form line integrals (boxes, spheres), cone-beam magnification,
anatomical orientation of the views, gradients, batching and input errors."""

import importlib.machinery
import math
import re
import sys
import types

import numpy as np
import pytest
import torch

from voxhelpers.data.ct import CTVolume, clip_normalise, denormalise, reorient
from voxhelpers.ops.projector import (
    MU_WATER,
    VIEWS,
    X2CT_SID,
    X2CT_SOD,
    cone_beam_rays,
    hu_to_attenuation,
    normalise_drr,
    project_cone,
    project_parallel,
    project_views,
)

MAG = X2CT_SID / X2CT_SOD


def _sphere(n: int, h: float, r: float, mu: float = MU_WATER) -> torch.Tensor:
    """(1, 1, n, n, n) float64 ball of radius r mm centred in the volume, partial-volume edges (a 1-voxel ramp)."""
    c = (torch.arange(n, dtype=torch.float64) + 0.5) * h - n * h / 2
    dist = (c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2).sqrt()
    return (mu * ((r + h / 2 - dist) / h).clamp(0, 1))[None, None]


def _half_max_radius(image: torch.Tensor, peak: float, pixel_mm: float) -> float:
    """Radius (mm) of the disc with the same area as the pixels above half the peak."""
    return math.sqrt(float((image > peak / 2).sum()) / math.pi) * pixel_mm


# --------------------------------------------------------------------------------------------------
# HU → μ
# --------------------------------------------------------------------------------------------------
def test_hu_to_attenuation_values_clamp_and_dtypes():
    hu = torch.tensor([-2000, -1000, 0, 500, 1000], dtype=torch.int16)
    mu = hu_to_attenuation(hu)
    assert mu.dtype == torch.float32
    torch.testing.assert_close(mu, torch.tensor([0.0, 0.0, 0.02, 0.03, 0.04]))
    assert hu_to_attenuation(np.array([0.0]), mu_water=0.019).item() == pytest.approx(0.019)
    assert hu_to_attenuation(torch.zeros(2, dtype=torch.float64)).dtype == torch.float64


def test_hu_to_attenuation_of_a_normalised_volume_matches_hu_and_denormalise():
    hu = torch.linspace(-1024, 1024, 41)
    x = clip_normalise(hu)  # [0, 1] through the project's default window (-1024, 1024)
    torch.testing.assert_close(hu_to_attenuation(x, normalised=True), hu_to_attenuation(hu), atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(hu_to_attenuation(x, normalised=True), hu_to_attenuation(denormalise(x)))
    # another window: 0.5 ↦ 0 HU ↦ μ_water; 1 ↦ 500 HU
    out = hu_to_attenuation(torch.tensor([0.5, 1.0]), normalised=True, window=(-500, 500))
    torch.testing.assert_close(out, torch.tensor([0.02, 0.03]))
    x = torch.rand(5, dtype=torch.float64, requires_grad=True)
    hu_to_attenuation(x, normalised=True).sum().backward()  # d μ/dx = μ_water · 2048 / 1000 above −1000 HU
    assert x.grad is not None and torch.all((x.grad == 0) | torch.isclose(x.grad, torch.tensor(0.02 * 2.048).double()))


@pytest.mark.parametrize("kwargs, volume, error", [
    ({}, torch.tensor([0.0, float("nan")]), ValueError),
    ({}, torch.tensor([True]), TypeError),
    ({}, [0.0, 100.0], TypeError),
    ({"normalised": True}, torch.tensor([0, 1]), TypeError),
    ({"mu_water": 0.0}, torch.zeros(2), ValueError),
    ({"window": (-1024, 1024)}, torch.zeros(2), ValueError),  # a window without normalised=True
    ({"normalised": True, "window": (5, 5)}, torch.zeros(2), ValueError),
])
def test_hu_to_attenuation_refuses_bad_input(kwargs, volume, error):
    with pytest.raises(error):
        hu_to_attenuation(volume, **kwargs)


# --------------------------------------------------------------------------------------------------
# parallel beam: closed forms
# --------------------------------------------------------------------------------------------------
def test_parallel_constant_box_is_mu_times_length_with_anisotropic_spacing():
    spacing = (1.5, 0.7, 2.5)  # RAS: R–L, A–P, S–I
    mu = torch.zeros(1, 1, 10, 12, 14)
    mu[..., 2:7, 3:11, 4:9] = 0.03  # 5 voxels R–L, 8 A–P, 5 S–I
    pa = project_parallel(mu, spacing, "pa")  # rays along A–P
    lateral = project_parallel(mu, spacing, "lateral")  # rays along R–L
    assert pa.shape == (1, 1, 14, 10) and lateral.shape == (1, 1, 14, 12)  # rows S→I; columns R→L / A→P
    assert torch.allclose(pa[pa > 0], torch.tensor(0.03 * 8 * 0.7), rtol=1e-6)
    assert torch.allclose(lateral[lateral > 0], torch.tensor(0.03 * 5 * 1.5), rtol=1e-6)
    # the shadow's place: S index 4..8 → rows 13−8..13−4; R index 2..6 → PA columns 9−6..9−2; A 3..10 → lateral 11−10..
    assert torch.equal(pa[0, 0] > 0, _mask((14, 10), slice(5, 10), slice(3, 8)))
    assert torch.equal(lateral[0, 0] > 0, _mask((14, 12), slice(5, 10), slice(1, 9)))
    intensity = project_parallel(mu, spacing, "pa", output="intensity")
    torch.testing.assert_close(intensity, torch.exp(-pa))


def _mask(shape, rows, cols) -> torch.Tensor:
    m = torch.zeros(shape, dtype=torch.bool)
    m[rows, cols] = True
    return m


def test_parallel_sphere_matches_the_chord_length():
    n, h, r = 64, 1.0, 24.0
    p = project_parallel(_sphere(n, h, r), (h, h, h), "pa")[0, 0]
    c = (torch.arange(n, dtype=torch.float64) + 0.5) * h - n * h / 2
    rho = (c[:, None] ** 2 + c[None, :] ** 2).sqrt()
    exact = 2 * MU_WATER * (r**2 - rho**2).clamp(min=0).sqrt()
    peak = 2 * MU_WATER * r
    assert p[n // 2, n // 2].item() == pytest.approx(exact[n // 2, n // 2].item(), rel=0.005)
    inside = rho <= 0.9 * r
    assert (p - exact)[inside].abs().max() < 0.01 * peak
    assert p[rho > r + 1.5 * h].abs().max() == 0


# --------------------------------------------------------------------------------------------------
# cone beam: closed forms and magnification
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("view, length", [("pa", 9 * 3.0), ("lateral", 7 * 2.0), ("ap", 9 * 3.0)])
def test_cone_central_ray_through_a_constant_box_is_its_length(view, length):
    spacing = (2.0, 3.0, 1.0)
    mu = torch.zeros(1, 1, 21, 25, 23)
    mu[..., 7:14, 8:17, 5:18] = 0.05  # centred: 7 voxels R–L, 9 A–P, 13 S–I
    image = project_cone(mu, spacing, view, image_size=33)  # odd: pixel 16 sits on the central ray
    assert image[0, 0, 16, 16].item() == pytest.approx(0.05 * length, rel=1e-5)


def test_cone_oblique_rays_cross_a_slab_over_its_thickness_over_cos_theta():
    mu = torch.full((1, 41, 9, 41), 0.5, dtype=torch.float64)  # RAS: a 9 mm slab across the PA rays, 41 mm wide
    sod, sid, size = 60.0, 100.0, 40.0  # a short source distance: angles up to ≈ 16°; rays never leave the sides
    image = project_cone(mu, view="pa", sod=sod, sid=sid, image_size=5, detector_size=size)[0]
    u = ((torch.arange(5, dtype=torch.float64) + 0.5) / 5 - 0.5) * size
    inv_cos = (sid**2 + u[:, None] ** 2 + u[None, :] ** 2).sqrt() / sid
    torch.testing.assert_close(image, 0.5 * 9.0 * inv_cos)
    assert image[0, 0] / image[2, 2] > 1.02  # the corner ray: 1/cos θ ≈ 1.025


def test_cone_sphere_profile_and_magnification_by_sid_over_sod():
    n, h, r = 64, 2.0, 40.0
    ball = _sphere(n, h, r)
    size = 128
    cone = project_cone(ball, (h, h, h), "pa", image_size=size)[0, 0]
    pixel = n * h * MAG / size  # default detector: the field of view at the isocentre, magnified
    u = ((torch.arange(size, dtype=torch.float64) + 0.5) - size / 2) * pixel
    u = (u[:, None] ** 2 + u[None, :] ** 2).sqrt()  # distance from the detector centre, mm
    d = X2CT_SOD * u / (X2CT_SID**2 + u**2).sqrt()  # the ray's distance from the sphere's centre
    exact = 2 * MU_WATER * (r**2 - d**2).clamp(min=0).sqrt()
    peak = 2 * MU_WATER * r
    inside = d <= 0.9 * r
    assert (cone - exact)[inside].abs().max() < 0.02 * peak
    parallel = project_parallel(ball, (h, h, h), "pa")[0, 0]
    r_cone, r_par = _half_max_radius(cone, peak, pixel), _half_max_radius(parallel, peak, h)
    assert r_par == pytest.approx(r * math.sqrt(3) / 2, rel=0.02)
    assert r_cone / r_par == pytest.approx(MAG, rel=0.02)  # 949 / 541 ≈ 1.754


def test_cone_with_distant_source_equals_parallel_for_every_view():
    gen = torch.Generator().manual_seed(0)
    mu = torch.rand(2, 1, 6, 7, 8, generator=gen, dtype=torch.float64)
    spacing = (1.0, 1.5, 2.0)
    for view in VIEWS:
        parallel = project_parallel(mu, spacing, view)
        rows, cols = parallel.shape[-2:]
        far = project_cone(mu, spacing, view, sod=1e7, sid=1e7 + 1, image_size=(rows, cols))
        torch.testing.assert_close(far, parallel, rtol=1e-5, atol=1e-6)


def test_cone_geometry_distances_and_the_lateral_source():
    shape, spacing = (20, 30, 40), (1.0, 1.0, 1.0)
    centre = torch.tensor([10.0, 15.0, 20.0], dtype=torch.float64)
    src, pix = cone_beam_rays(shape, spacing, "pa", image_size=(4, 6))
    torch.testing.assert_close(src, centre - torch.tensor([0, X2CT_SOD, 0], dtype=torch.float64))  # posterior
    assert pix.shape == (4, 6, 3) and torch.allclose(pix[..., 1] - src[1], torch.tensor(X2CT_SID).double())
    assert (pix[-1, 0, 2] - pix[0, 0, 2]).item() < 0  # rows run towards inferior (−S)
    assert (pix[0, -1, 0] - pix[0, 0, 0]).item() < 0  # PA columns run towards the patient's left (−R)
    width = (pix[0, -1, 0] - pix[0, 0, 0]).abs().item() * 6 / 5  # default detector: 20 mm × SID/SOD
    assert width == pytest.approx(20 * MAG)
    src, _ = cone_beam_rays(shape, spacing, "lateral", image_size=4)
    torch.testing.assert_close(src, centre + torch.tensor([X2CT_SOD, 0, 0], dtype=torch.float64))  # right
    _, pix = cone_beam_rays(shape, spacing, "pa", image_size=(4, 6), detector_size=(100.0, 300.0))
    assert (pix[0, -1, 0] - pix[0, 0, 0]).abs().item() == pytest.approx(300 * 5 / 6)


# --------------------------------------------------------------------------------------------------
# anatomy: which view sees what, head up
# --------------------------------------------------------------------------------------------------
def test_views_see_a_rod_along_their_rays_as_a_dot_and_across_as_a_line_head_up():
    mu = torch.zeros(1, 16, 20, 24)  # RAS, (B, D, H, W) without a channel
    mu[0, 4, :, 20] = 1.0  # rod along A–P at R index 4, near the head (S index 20 of 24)
    pa, lat = project_parallel(mu, view="pa")[0], project_parallel(mu, view="lateral")[0]
    assert pa.shape == (24, 16) and lat.shape == (24, 20)
    assert torch.nonzero(pa).tolist() == [[3, 11]] and pa[3, 11] == 20  # a dot, row 23−20, column 15−4
    assert torch.equal(lat.nonzero()[:, 0], torch.full((20,), 3)) and torch.all(lat[3] == 1)  # a line, row 3
    mu.zero_()
    mu[0, :, 5, 20] = 1.0  # rod along R–L at A index 5
    pa, lat = project_parallel(mu, view="pa")[0], project_parallel(mu, view="lateral")[0]
    assert torch.nonzero(lat).tolist() == [[3, 14]] and lat[3, 14] == 16  # columns A→P: 19−5
    assert torch.equal(pa.nonzero()[:, 0], torch.full((16,), 3))


def test_cone_views_dot_line_and_marker_positions():
    mu = torch.zeros(1, 1, 15, 21, 25)  # RAS, odd sizes: the centre is a voxel centre
    mu[..., 7, :, 12] = 1.0  # rod along A–P through the isocentre
    square = {"image_size": 31, "detector_size": 31 * MAG}  # 1 mm pixels at the isocentre
    pa = project_cone(mu, view="pa", **square)[0, 0]
    lat = project_cone(mu, view="lateral", **square)[0, 0]
    assert pa[15, 15].item() == pytest.approx(21.0, rel=1e-5)  # the rod end-on: all its 21 mm on one pixel
    assert pa[15, 15] > 0.9 * pa.sum() and pa[14:17, 14:17].sum() > 0.999 * pa.sum()  # a dot
    # side-on: a horizontal line through the middle, 21 mm × 949/541 ≈ 37 mm ≈ 21 pixels long, ≈ 1 mm of μ = 1 each
    assert (lat[15] > 0.99).sum() >= 19 and lat[15].sum() > 0.99 * lat.sum()
    assert lat[15].sum().item() == pytest.approx(21.0, rel=0.01)
    mu.zero_()
    mu[..., 1:4, 15:19, 19:23] = 1.0  # a marker high (superior), at the patient's left (low R index), anterior
    for view, left_half in (("pa", False), ("lateral", True)):
        image = project_cone(mu, view=view, image_size=31)[0, 0]
        rows, cols = torch.nonzero(image > 0.5 * image.max(), as_tuple=True)
        assert rows.float().mean() < 10  # head up
        assert (cols.float().mean() < 15) == left_half  # PA: patient's left on the image right; lateral: anterior left


def test_the_same_anatomy_in_ras_and_pli_gives_the_same_images():
    gen = np.random.default_rng(1)
    hu = gen.normal(0, 300, size=(9, 11, 13)).astype(np.float32)
    ras = CTVolume(hu, (1.2, 0.8, 2.0), axes="RAS")
    pli = reorient(ras, "PLI")  # nibabel's orientation tools, spacing permuted with the axes
    a = hu_to_attenuation(torch.from_numpy(ras.hu)[None])
    b = hu_to_attenuation(torch.from_numpy(pli.hu)[None])
    for view in VIEWS:
        torch.testing.assert_close(project_parallel(b, pli.spacing, view, "PLI"),
                                   project_parallel(a, ras.spacing, view, "RAS"))
        torch.testing.assert_close(project_cone(b, pli.spacing, view, "pli", image_size=(12, 10)),
                                   project_cone(a, ras.spacing, view, "RAS", image_size=(12, 10)), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# gradients, batching
# --------------------------------------------------------------------------------------------------
def test_gradcheck_in_float64():
    vol = torch.rand(1, 1, 4, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2), requires_grad=True)

    def cone(m):
        return project_cone(m, (1.0, 2.0, 1.5), "lateral", image_size=(3, 4), detector_size=(20.0, 25.0),
                            n_samples=7, output="intensity")

    assert torch.autograd.gradcheck(cone, (vol,))
    assert torch.autograd.gradcheck(lambda m: project_parallel(m, (1.0, 2.0, 1.5), "pa", output="intensity"), (vol,))
    x = torch.rand(1, 4, 4, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda v: normalise_drr(project_cone(hu_to_attenuation(v, normalised=True), image_size=3), (0.0, 1.0)), (x,))


def test_batched_equals_per_item_and_channel_layouts_agree():
    mu = torch.rand(3, 2, 8, 9, 7, generator=torch.Generator().manual_seed(3))
    for project in (project_parallel, project_cone):
        kwargs = {} if project is project_parallel else {"image_size": (10, 12)}
        batched = project(mu, (1.0, 1.3, 0.9), "lateral", **kwargs)
        for i in range(3):
            for c in range(2):
                one = project(mu[i:i + 1, c], (1.0, 1.3, 0.9), "lateral", **kwargs)  # (1, D, H, W) → (1, rows, cols)
                torch.testing.assert_close(batched[i, c], one[0])
    both = project_views(mu[:, :1], (1.0, 1.3, 0.9), views=("pa", "lateral"), image_size=16)
    assert set(both) == {"pa", "lateral"} and both["pa"].shape == (3, 1, 16, 16)
    torch.testing.assert_close(both["pa"], project_cone(mu[:, :1], (1.0, 1.3, 0.9), "pa", image_size=16))


# --------------------------------------------------------------------------------------------------
# normalisation
# --------------------------------------------------------------------------------------------------
def test_normalise_drr_per_image_fixed_bounds_and_intensity():
    p = torch.stack([torch.linspace(1, 3, 12).reshape(3, 4), torch.full((3, 4), 2.0)])[:, None]  # (2, 1, 3, 4)
    out = normalise_drr(p)
    assert out[0].min() == 0 and out[0].max() == 1 and torch.all(out[1] == 0)  # a flat image gives 0, not NaN
    torch.testing.assert_close(out[0, 0], (p[0, 0] - 1) / 2)
    torch.testing.assert_close(normalise_drr(p, (0.0, 4.0)), p / 4)
    assert normalise_drr(p, (2.0, 2.5)).tolist()[0][0][0] == [0.0, 0.0, 0.0, 0.0]  # clamped below
    torch.testing.assert_close(normalise_drr(torch.exp(-p), kind="intensity"), out)


# --------------------------------------------------------------------------------------------------
# errors
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("project", [project_parallel, project_cone])
@pytest.mark.parametrize("mu, kwargs, error, match", [
    (torch.zeros(4, 4, 4), {}, ValueError, "B, 1, D, H, W"),
    (torch.zeros(1, 1, 1, 4, 4, 4), {}, ValueError, "B, 1, D, H, W"),
    (torch.zeros(1, 4, 4, 4, dtype=torch.int32), {}, TypeError, "floating point"),
    (torch.full((1, 4, 4, 4), float("nan")), {}, ValueError, "NaN"),
    (torch.full((1, 4, 4, 4), float("inf")), {}, ValueError, "NaN or inf"),
    (np.zeros((1, 4, 4, 4)), {}, TypeError, "torch.Tensor"),
    (torch.zeros(1, 4, 4, 4), {"spacing": (1.0, 0.0, 1.0)}, ValueError, "spacing"),
    (torch.zeros(1, 4, 4, 4), {"spacing": (1.0, -1.0, 1.0)}, ValueError, "spacing"),
    (torch.zeros(1, 4, 4, 4), {"spacing": (1.0, 1.0)}, ValueError, "spacing"),
    (torch.zeros(1, 4, 4, 4), {"view": "oblique"}, ValueError, "'pa', 'ap', 'lateral'"),
    (torch.zeros(1, 4, 4, 4), {"axes": "RAX"}, ValueError, "L/R, A/P, S/I"),
    (torch.zeros(1, 4, 4, 4), {"axes": "RLS"}, ValueError, "L/R, A/P, S/I"),
    (torch.zeros(1, 4, 4, 4), {"axes": "RA"}, ValueError, "L/R, A/P, S/I"),
    (torch.zeros(1, 4, 4, 4), {"output": "log"}, ValueError, "line_integral"),
])
def test_projectors_refuse_bad_input(project, mu, kwargs, error, match):
    with pytest.raises(error, match=match):
        project(mu, **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    ({"sod": 949.0, "sid": 541.0}, "sod < sid"),
    ({"sod": 3.0}, "inside the volume"),
    ({"image_size": 0}, "image_size"),
    ({"image_size": (4, 4.5)}, "image_size"),
    ({"detector_size": -5.0}, "detector_size"),
    ({"n_samples": 0}, "n_samples"),
])
def test_cone_refuses_bad_geometry(kwargs, match):
    with pytest.raises(ValueError, match=match):
        project_cone(torch.zeros(1, 8, 8, 8), **kwargs)


def test_views_and_normalise_refuse_bad_input():
    with pytest.raises(ValueError, match="beam"):
        project_views(torch.zeros(1, 4, 4, 4), beam="fan")
    with pytest.raises(ValueError, match="'pa', 'ap', 'lateral'"):
        project_views(torch.zeros(1, 4, 4, 4), views=("pa", "side"))
    with pytest.raises(TypeError, match="floating-point"):
        normalise_drr(torch.zeros(2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="bounds"):
        normalise_drr(torch.zeros(2, 2), bounds=(1.0, 0.0))
    with pytest.raises(ValueError, match="NaN"):
        normalise_drr(torch.full((2, 2), float("nan")))


# --------------------------------------------------------------------------------------------------
# bench case
# --------------------------------------------------------------------------------------------------
def test_bench_case_runs_quick_forward_and_backward():
    from voxhelpers.bench import BenchOptions
    from voxhelpers.bench.core import CASES
    from voxhelpers.bench.xray_ct import diffdrr_available

    cases = CASES["drr_cone_128"](BenchOptions(torch.device("cpu"), quick=True))
    ours = cases[0]
    assert ours.name == "drr_cone_128" and ours.count is False and "32³" in ours.notes
    loss = float(ours.setup()())  # one step: forward, loss, backward
    assert math.isfinite(loss) and loss > 0
    if not diffdrr_available():
        assert len(cases) == 1 and "diffdrr" in ours.notes and "skipped" in ours.notes


class _FakeSiddon(torch.nn.Module):
    """Stands in for diffdrr's renderer (``forward(volume, spacing, source, target)``, voxel i spanning
    [i·s, (i + 1)·s]): an independent nearest-voxel ray caster, 300 samples per ray."""

    def forward(self, volume, spacing, source, target):
        t = (torch.arange(300, dtype=torch.float64) + 0.5) / 300
        src, tgt = source.double(), target.double()
        pts = src[..., None, :] + t[:, None] * (tgt - src)[..., None, :]  # (1, N, 300, 3)
        idx = torch.floor(pts / spacing.double()).long()
        inside = ((idx >= 0) & (idx < torch.tensor(volume.shape))).all(-1)
        idx = torch.where(inside[..., None], idx, torch.zeros_like(idx))
        values = volume[idx[..., 0], idx[..., 1], idx[..., 2]] * inside
        return values.sum(-1) * ((tgt - src).norm(dim=-1) / 300).to(volume.dtype)


class _FakeSiddon06(torch.nn.Module):
    """diffdrr 0.6's interface (``forward(volume, source, target, img)``: rays in voxel indices, voxel i centred on i,
    ``img`` (1, 1, N) the rays' lengths in mm): the same caster, in index units."""

    def forward(self, volume, source, target, img):
        t = (torch.arange(300, dtype=torch.float64) + 0.5) / 300
        src, tgt = source.double(), target.double()
        pts = src[..., None, :] + t[:, None] * (tgt - src)[..., None, :]
        idx = torch.floor(pts + 0.5).long()
        inside = ((idx >= 0) & (idx < torch.tensor(volume.shape))).all(-1)
        idx = torch.where(inside[..., None], idx, torch.zeros_like(idx))
        values = volume[idx[..., 0], idx[..., 1], idx[..., 2]] * inside
        return (values.mean(-1) * img[:, 0].double()).to(volume.dtype)[:, None]


@pytest.mark.parametrize("fake", [_FakeSiddon, _FakeSiddon06], ids=["spacing-interface", "diffdrr-0.6-interface"])
def test_bench_diffdrr_row_with_a_stand_in_renderer(monkeypatch, fake):
    from voxhelpers.bench import BenchOptions
    from voxhelpers.bench.core import CASES

    package, renderers = types.ModuleType("diffdrr"), types.ModuleType("diffdrr.renderers")
    package.__spec__ = importlib.machinery.ModuleSpec("diffdrr", None)
    renderers.Siddon, package.renderers = fake, renderers
    monkeypatch.setitem(sys.modules, "diffdrr", package)
    monkeypatch.setitem(sys.modules, "diffdrr.renderers", renderers)
    cases = CASES["drr_cone_128"](BenchOptions(torch.device("cpu"), quick=True))
    assert [c.fmt for c in cases] == ["ours (grid_sample)", "diffdrr (Siddon)"]
    step = cases[1].setup()
    assert math.isfinite(step())
    note = cases[1].derive(0.1)
    diff, peak = map(float, re.search(r"= ([\d.e+-]+) \(image max ([\d.e+-]+)\)", note).groups())
    assert 0 < diff < 0.2 * peak  # the same rays: only nearest-voxel vs trilinear sampling differ


def test_plane_by_plane_sampling_equals_trilinear_sampling():
    from voxhelpers.ops import projector

    vol = torch.rand(3, 6, 7, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    spacing = (1.0, 1.4, 0.8)
    for view in VIEWS:  # rays along every array axis: RAS PA/AP → 1, lateral → 0; SPL lateral → 2
        for axes in ("RAS", "SPL"):
            source, pixels = cone_beam_rays(vol.shape[1:], spacing, view, axes, image_size=(5, 9),
                                            detector_size=20.0)  # some rays leave the volume
            (ray, _), _, _ = projector._view_frame(axes, view)
            n, d = vol.shape[1 + ray], pixels - source
            frac = ((torch.arange(n, dtype=torch.float64) + 0.5) * spacing[ray] - source[ray]) / d[..., ray, None]
            extent = torch.tensor(vol.shape[1:], dtype=torch.float64) * torch.tensor(spacing, dtype=torch.float64)
            grid = 2 * source / extent - 1 + frac.permute(2, 0, 1)[..., None] * (2 * d / extent)
            torch.testing.assert_close(projector._sample_planes(vol, grid, ray), projector._sample_3d(vol, grid, ray))
