"""System 3 end to end: back-projection is the projector's adjoint, the generator places each view where its rays
run, CT cubes are prepared on one grid, exact resume, a tiny generator that learns, the baselines and bad input."""

import dataclasses

import numpy as np
import pytest
import torch

from voxhelpers.config.xray_ct import xray_ct_config
from voxhelpers.data.ct_io import CTVolume, reorient
from voxhelpers.data.segmentation import phantom_case
from voxhelpers.data.xray_ct import prepare_ct_cube
from voxhelpers.nets.xray_ct import XrayToCT
from voxhelpers.ops.backprojection import backproject_parallel
from voxhelpers.ops.projector import project_parallel
from voxhelpers.systems import get_system
from voxhelpers.systems.base import SmallInputFp32Conv3d, bf16_weight_grad_faulty
from voxhelpers.systems.xray_ct import baselines, learning_rate, projection_l1, render_xrays
from voxhelpers.training import TrainState, fit


def _cfg(**kw):
    return xray_ct_config("smoke", **{"size": 32, "beam": "parallel", "epochs": 2, "batch_size": 2, **kw})


def _cubes(n=4, size=32, fov=160.0):
    return [prepare_ct_cube(phantom_case(s, (40, 40, 40), ("a", "b")), size, fov, name=f"ph{s}") for s in range(n)]


# --------------------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("axes", ["RAS", "PLI", "LPS"])
@pytest.mark.parametrize("view", ["pa", "ap", "lateral"])
def test_backprojection_is_the_adjoint_of_parallel_projection(axes, view):
    """⟨P v, w⟩ = Δ_ray ⟨v, Bᵀ w⟩ for every view and storage order (anisotropic spacing)."""
    torch.manual_seed(0)
    spacing = (1.0, 2.0, 3.0)
    v = torch.rand(2, 3, 5, 6, 7, dtype=torch.float64)
    p = project_parallel(v, spacing, view, axes)
    w = torch.rand_like(p)
    ray = next(i for i, c in enumerate(axes) if c in ("AP" if view in ("pa", "ap") else "LR"))
    b = backproject_parallel(w, v.shape[2 + ray], view, axes)
    assert b.shape == v.shape
    torch.testing.assert_close((p * w).sum(), spacing[ray] * (v * b).sum())


@pytest.mark.parametrize("view", ["pa", "lateral"])
def test_cone_beam_backprojection_is_the_adjoint_of_the_cone_projector(view):
    from voxhelpers.ops.backprojection import backproject
    from voxhelpers.ops.projector import project_cone

    torch.manual_seed(0)
    v = torch.rand(2, 1, 12, 12, 12, dtype=torch.float64)
    p = project_cone(v, (2.0, 2.0, 3.0), view, image_size=10)
    w = torch.rand_like(p)
    b = backproject(w, (12, 12, 12), (2.0, 2.0, 3.0), view, beam="cone")
    torch.testing.assert_close((p * w).sum(), (v * b).sum())
    with pytest.raises(ValueError, match="beam must be"):
        backproject(w, (12, 12, 12), beam="fan")


def test_backprojection_spreads_a_pixel_along_its_ray():
    img = torch.zeros(1, 8, 8)
    img[0, 1, 6] = 1  # PA: row 1 = near the head, column 6 = towards the patient's left
    vol = backproject_parallel(img, 8, "pa", "RAS")[0]  # (X, Y, Z), RAS
    x, y, z = torch.nonzero(vol, as_tuple=True)
    assert set(y.tolist()) == set(range(8))  # the whole anterior-posterior line
    assert set(x.tolist()) == {1} and set(z.tolist()) == {6}  # patient's left = small x in RAS; head = large z
    with pytest.raises(ValueError, match="depth must be a positive integer"):
        backproject_parallel(img, 0, "pa")


def test_prepare_ct_cube_is_one_grid_whatever_the_storage():
    vol = phantom_case(3, (40, 36, 30), ("a", "b"), spacing=(2.0, 2.5, 3.0))
    a = prepare_ct_cube(vol, 16, 128.0)
    b = prepare_ct_cube(reorient(vol, "PLI"), 16, 128.0)
    np.testing.assert_array_equal(a.ct, b.ct)
    assert a.ct.shape == (1, 16, 16, 16) and a.spacing == (8.0, 8.0, 8.0) and a.ct.dtype == np.float16
    assert a.ct.min() >= 0 and a.ct.max() <= 1 and a.ct[0, 0, 0, 0] == pytest.approx(0.0, abs=1e-3)  # air
    bad = dataclasses.replace(vol, hu=np.full(vol.hu.shape, np.nan, np.float32))
    with pytest.raises(ValueError, match="NaN or inf"):
        prepare_ct_cube(bad, 16)


def test_xrays_follow_the_ct():
    """A CT mirrored left-right gives a mirrored PA radiograph (columns reversed) and the same lateral one."""
    ct = torch.from_numpy(_cubes(1)[0].ct).float()[None]
    pa, lat = render_xrays(ct, _cfg())
    pa_m, lat_m = render_xrays(ct.flip(2), _cfg())
    assert pa.shape == lat.shape == (1, 1, 32, 32) and 0 <= pa.min() and pa.max() <= 1
    torch.testing.assert_close(pa_m, pa.flip(-1))
    torch.testing.assert_close(lat_m, lat, atol=1e-5, rtol=1e-5)  # parallel beam: a lateral sum ignores the side


# --------------------------------------------------------------------------------------------------
# networks and losses
# --------------------------------------------------------------------------------------------------
def test_generator_shapes_and_bad_xrays():
    G = XrayToCT(size=32, base_channels=4, max_channels=8, levels=3)
    y = G(torch.rand(2, 1, 32, 32), torch.rand(2, 1, 32, 32))
    assert y.shape == (2, 1, 32, 32, 32) and 0 <= y.min() and y.max() <= 1
    with pytest.raises(ValueError, match=r"lateral X-ray must be \(B, 1, 32, 32\)"):
        G(torch.rand(2, 1, 32, 32), torch.rand(2, 1, 16, 16))
    with pytest.raises(ValueError, match="batches differ"):
        G(torch.rand(2, 1, 32, 32), torch.rand(3, 1, 32, 32))
    with pytest.raises(ValueError, match="multiple of 2"):
        XrayToCT(size=24, levels=4)


def test_projection_loss_and_schedule_by_hand():
    real = torch.zeros(1, 1, 2, 2, 2)
    fake = torch.zeros(1, 1, 2, 2, 2)
    fake[0, 0, 0, 0, 0] = 1.0  # one voxel: each mean projection has one pixel at 1/2, of 4
    assert float(projection_l1(fake, real)) == pytest.approx(0.5 / 4)
    cfg = _cfg(epochs=10, decay_start=0.5, lr=1e-3)
    assert [learning_rate(cfg, e) for e in (0, 4, 5, 9)] == pytest.approx([1e-3, 1e-3, 1e-3, 2e-4])


@pytest.mark.parametrize("kw,match", [({"size": 24}, "multiple of 16"), ({"size": 16}, ">= 32"),
                                      ({"data": "openkbp:train"}, "data must be"),
                                      ({"beam": "fan"}, "beam must be one of"), ({"adv_weight": -1}, ">= 0")])
def test_bad_config_values(kw, match):
    with pytest.raises(ValueError, match=match):
        xray_ct_config("smoke", **kw)


# --------------------------------------------------------------------------------------------------
# training and evaluation
# --------------------------------------------------------------------------------------------------
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    cfg, cubes = _cfg(epochs=3), _cubes(4)
    a = fit("xray_ct", cfg, tmp_path / "a", "cpu", data=cubes, progress=False)
    fit("xray_ct", cfg, tmp_path / "b", "cpu", data=cubes, progress=False, max_minutes=0)
    b = fit("xray_ct", cfg, tmp_path / "b", "cpu", data=cubes, progress=False)
    for key in ("G", "D"):
        for k, v in a.models[key].state_dict().items():
            assert torch.equal(v, b.models[key].state_dict()[k]), (key, k)
    assert a.history.equals(b.history)
    assert {"loss_d", "loss_g", "loss_rec", "loss_proj", "loss_adv"} <= set(a.history.columns)


def test_no_gan_variant_has_no_critic_and_learns():
    """Without the critic (adv_weight 0) the generator alone fits four phantoms from their X-rays: in 80 steps the
    voxel MSE falls to under a third, and below what the best constant volume scores (the voxels' variance)."""
    torch.manual_seed(0)
    cfg, cubes = _cfg(adv_weight=0.0, epochs=40, lr=5e-3, decay_start=1.0), _cubes(4)
    result = fit("xray_ct", cfg, None, "cpu", data=cubes, progress=False)
    assert set(result.models) == {"G"} and "loss_d" not in result.history
    rec = result.history["loss_rec"]
    variance = np.stack([c.ct.astype(np.float32) for c in cubes]).var()
    assert rec.iloc[-3:].mean() < min(rec.iloc[:2].mean() / 3, variance), (rec.iloc[:2].mean(), variance)


def test_rotate_volumes_matches_quarter_turns_and_scipy():
    from scipy import ndimage

    from voxhelpers.data.transforms import rotate_spatial, rotate_volumes

    x = torch.rand(2, 1, 8, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for plane in ((0, 1), (0, 2), (1, 2)):
        torch.testing.assert_close(rotate_volumes(x, torch.tensor([90.0, -90.0]), plane)[0],
                                   rotate_spatial(x, 1, plane)[0])
        torch.testing.assert_close(rotate_volumes(x, torch.tensor([90.0, -90.0]), plane)[1],
                                   rotate_spatial(x, -1, plane)[1])
    torch.testing.assert_close(rotate_volumes(x, torch.zeros(2)), x)
    # a small angle: scipy's trilinear rotation about the centre, zeros outside (inside voxels only: the border
    # conventions differ)
    smooth = torch.from_numpy(ndimage.gaussian_filter(np.random.default_rng(1).random((16, 16, 16)), 2))[None, None]
    ours = rotate_volumes(smooth, torch.tensor([7.0]), (0, 1))[0, 0].numpy()
    ref = ndimage.rotate(smooth[0, 0].numpy(), 7.0, axes=(0, 1), reshape=False, order=1, mode="constant")
    np.testing.assert_allclose(ours[4:12, 4:12], ref[4:12, 4:12], atol=1e-9)
    with pytest.raises(ValueError, match="one angle per volume"):
        rotate_volumes(x, torch.zeros(3))


def test_rotation_and_intensity_augment_the_ct_and_its_xrays():
    from voxhelpers.systems.xray_ct import augment_ct, augment_xrays

    cubes = _cubes(2)
    ct = torch.stack([torch.from_numpy(c.ct).float() for c in cubes])
    g = torch.Generator().manual_seed(0)
    views = (ct[:, :, 0], ct[:, :, 1])
    assert augment_ct(ct, _cfg(), g) is ct and augment_xrays(*views, _cfg(), g) == views  # off: untouched
    turned = augment_ct(ct, _cfg(rotate=10.0), torch.Generator().manual_seed(0))
    assert turned.shape == ct.shape and not torch.equal(turned, ct)
    # the S-I axis (spatial axis 2) is the rotation axis: every axial slice keeps its total roughly (air in at corners)
    torch.testing.assert_close(turned.sum((1, 2, 3)), ct.sum((1, 2, 3)), rtol=0.05, atol=1.0)
    pa, lateral = render_xrays(ct, _cfg())
    pa2, lateral2 = augment_xrays(pa, lateral, _cfg(intensity=0.2), torch.Generator().manual_seed(1))
    assert pa2.min() >= 0 and pa2.max() <= 1 and not torch.equal(pa2, pa) and not torch.equal(lateral2, lateral)
    inside = (pa > 0.05) & (pa < 0.6)  # away from the clip: a line per sample, slope within 1 ± 0.2
    for b in range(2):
        slope = np.polyfit(pa[b][inside[b]].numpy(), pa2[b][inside[b]].numpy(), 1)[0]
        assert 0.8 - 1e-4 <= slope <= 1.2 + 1e-4
    with pytest.raises(ValueError, match="rotate in"):
        _cfg(rotate=90.0)


def test_bf16_step_runs_both_networks_in_bf16_with_fp32_losses_and_weights():
    """Every convolution computes in bf16 — except, on a CPU whose bf16 conv3d weight gradient is wrong there
    (``bf16_weight_grad_faulty``), a stride-1 one on an input smaller than its kernel, which computes in fp32."""
    cfg, cubes = _cfg(precision="bf16"), _cubes(2)
    system = get_system("xray_ct")
    models = system.build(cfg, "cpu")
    seen = {k: set() for k in models}  # the dtypes the convolutions computed in (guarded small inputs apart)
    guarded = []

    def record(mod, inputs, out, k):
        small = isinstance(mod, SmallInputFp32Conv3d) and any(
            n < w for n, w in zip(inputs[0].shape[2:], mod.kernel_size, strict=True)) and max(mod.stride) == 1
        if small:
            guarded.append(out.dtype)
        else:
            seen[k].add(out.dtype)

    for k, m in models.items():
        for mod in m.modules():
            if isinstance(mod, torch.nn.modules.conv._ConvNd):
                mod.register_forward_hook(lambda mod, i, o, k=k: record(mod, i, o, k))
    batch = {"ct": torch.stack([torch.from_numpy(c.ct).float() for c in cubes])}
    optimizers = system.optimizers(cfg, models)
    state = TrainState(models, optimizers, torch.Generator().manual_seed(0))
    out = system.step(models, optimizers, batch, cfg, state)
    assert seen == {"G": {torch.bfloat16}, "D": {torch.bfloat16}} and set(guarded) <= {torch.float32}
    assert bool(guarded) == bf16_weight_grad_faulty("cpu")  # small inputs meet stride-1 kernels in this tiny config
    assert all(np.isfinite(v) for v in out.values())
    assert all(p.dtype == torch.float32 for m in models.values() for p in m.parameters())


@pytest.mark.parametrize("flip_lr", [False, True])
def test_prior_starts_the_generator_at_the_mean_training_ct(flip_lr):
    """init_models sets the prior to the logit of the training cubes' mean (mirrored and averaged when the training
    mirrors the CTs); with the decoder's head at zero the generator then draws exactly that mean, whatever X-rays."""
    system, cfg, cubes = get_system("xray_ct"), _cfg(adv_weight=0.0, flip_lr=flip_lr), _cubes(3)
    models = system.build(cfg, "cpu")
    system.init_models(models, system.dataset(cfg, cubes), cfg)
    mean = np.mean([c.ct[0].astype(np.float64) for c in cubes], axis=0)
    if flip_lr:
        mean = 0.5 * (mean + mean[::-1])  # axis 0: R-L
    mean = torch.as_tensor(mean, dtype=torch.float32).clamp(0.01, 0.99)
    G = models["G"]
    assert torch.allclose(G.prior[0, 0], torch.logit(mean), atol=1e-4)
    with torch.no_grad():
        G.head.weight.zero_()
        G.head.bias.zero_()
        pa, lateral = render_xrays(torch.from_numpy(cubes[1].ct).float()[None], cfg)
        assert torch.allclose(G(pa, lateral)[0, 0], mean, atol=1e-5)


def test_prior_bad_input_and_opt_out():
    G = XrayToCT(32, 4, 16, levels=3)
    with pytest.raises(ValueError, match=r"\(32, 32, 32\)"):
        G.init_prior(torch.full((16, 16, 16), 0.5))
    with pytest.raises(ValueError, match="finite"):
        G.init_prior(torch.full((32, 32, 32), float("nan")))
    bare = XrayToCT(32, 4, 16, levels=3, prior=False)
    assert bare.prior is None and "prior" not in dict(bare.named_parameters())
    with pytest.raises(ValueError, match="without a prior"):
        bare.init_prior(torch.full((32, 32, 32), 0.5))
    system, cfg = get_system("xray_ct"), _cfg(adv_weight=0.0, prior=False)
    models = system.build(cfg, "cpu")
    system.init_models(models, system.dataset(cfg, _cubes(2)), cfg)  # a no-op without a prior
    assert models["G"].prior is None


def test_baselines_and_evaluation_keys():
    from voxhelpers.systems.base import Splits

    cfg, cubes = _cfg(), _cubes(4)
    base = baselines(cfg, cubes[:3], cubes[3:])
    assert set(base) == {"mean CT", "back-projection"} and base["mean CT"].shape == (1, 32, 32, 32)
    np.testing.assert_allclose(base["mean CT"][0], np.mean([c.ct[0].astype(np.float32) for c in cubes[:3]], 0))
    model = get_system("xray_ct").build(cfg, "cpu")["G"]
    metrics = get_system("xray_ct").evaluate(model, cfg, Splits(cubes[:3], {"test": cubes[3:]}))
    for prefix in ("", "mean_ct_", "backprojection_"):
        assert {f"{prefix}{k}" for k in ("mae", "psnr", "psnr_slices", "ssim", "cosine")} <= set(metrics)
    assert metrics["backprojection_mae"] < metrics["mae"]  # an untrained generator is worse than the baseline


def test_a_ct_of_another_size_is_refused():
    cfg = _cfg()
    with pytest.raises(ValueError, match=r"expected \(1, 32, 32, 32\)"):
        fit("xray_ct", cfg, None, "cpu", data=_cubes(2, size=48), progress=False)
    assert CTVolume  # the reader's record, re-exported for users' own CTs


def test_xray_ct_figure_rows_and_bad_volumes():
    from voxhelpers.plots import xray_ct_figure

    cube = _cubes(1)[0].ct[0].astype(np.float32)
    xray = np.zeros((32, 32), np.float32)
    fig = xray_ct_figure(xray, xray, cube, cube, title="t", extra={"mean CT": cube})
    assert len(fig.axes) == 4 * 3  # X-rays, real, generated, mean CT
    assert [a.get_ylabel() for a in fig.axes[3::3]] == ["real CT", "generated CT", "mean CT"]
    with pytest.raises(ValueError, match="of one shape"):
        xray_ct_figure(xray, xray, cube, cube[:16])
    with pytest.raises(ValueError, match="NaN"):
        xray_ct_figure(xray, xray, cube, np.full_like(cube, np.nan))
