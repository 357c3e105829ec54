"""3D-VAE-IWGAN (SPEC §2): reconstruction metrics, the joint update, the image → voxel model, rendering and
retrieval, evaluation, the by-object split, the config, training (resume, NaN stop, time limit), the command line
and a tiny model learning. Tiny networks and batches, CPU only; no wall times."""

import dataclasses
import json
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from voxhelpers import cli
from voxhelpers.config import VAEIWGANConfig, vae_iwgan_config
from voxhelpers.data.grids import unique_grids
from voxhelpers.data.sources import grid_up
from voxhelpers.data.synthetic import procedural_shapes
from voxhelpers.inference import (
    evaluate_reconstruction,
    reconstruct,
    render_views,
    retrieval_baseline,
)
from voxhelpers.inference.evaluation import _retrieval_features
from voxhelpers.metrics import DEFAULT_THRESHOLDS, choose_threshold, iou, voxel_average_precision
from voxhelpers.nets import VAEIWGAN, ImageEncoder, IWGANCritic, IWGANGenerator
from voxhelpers.nets.iwgan import reparameterize, tanh_to_occupancy
from voxhelpers.ops.render import random_views, render_voxels
from voxhelpers.plots import SampleSheets
from voxhelpers.systems import get_system
from voxhelpers.systems.vae_iwgan import step as vae_step
from voxhelpers.training import fit, read_checkpoint

TINY = {"g_channels": (16, 8, 8, 4), "d_channels": (4, 8, 8, 16), "z_dim": 16}
STEP_KEYS = {"loss_d", "loss_gp", "wasserstein", "loss_rec", "loss_kl", "loss_e", "loss_g", "g_steps"}
SYSTEM = get_system("vae_iwgan")


def _tiny_cfg(**kw):
    # 12 procedural chairs, 30 % held back → 8 train, 4 held back (2 validation, 2 test); batch 4 → 2 batches/epoch
    base = dict(data="procedural:chair", max_shapes=12, batch_size=4, epochs=2, sample_every=100, image_size=64,
                **TINY)
    return vae_iwgan_config("smoke", **{**base, **kw})


def _fit(cfg, out_dir, **kw):
    """Train as the command line does: the one loop, with sample sheets in ``out_dir/samples`` when there is one."""
    sheets = [SampleSheets(SYSTEM, cfg, SYSTEM.data(cfg), out_dir)] if out_dir is not None else []
    return fit("vae_iwgan", cfg, out_dir, device="cpu", progress=False, callbacks=sheets, **kw)


def _keys(grids):
    return {np.packbits(np.asarray(g, dtype=bool)).tobytes() for g in grids}


def _snapshot(net):
    return [p.detach().clone() for p in net.parameters()]


def _moved(before, net):
    return [not torch.equal(a, p) for a, p in zip(before, net.parameters(), strict=True)]


# --------------------------------------------------------------------------------------------------
# metrics: voxel average precision, threshold choice
# --------------------------------------------------------------------------------------------------
def _hand_ap(scores, labels):
    """AP = Σ_k (R_k − R_{k−1}) P_k over the ranking by decreasing score (distinct scores)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    n_pos, tp, ap, last_recall = sum(labels), 0, 0.0, 0.0
    for k, i in enumerate(order, start=1):
        tp += labels[i]
        recall = tp / n_pos
        ap += (recall - last_recall) * (tp / k)
        last_recall = recall
    return ap


def test_voxel_average_precision_matches_a_hand_computation():
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    labels = [1, 0, 1, 1, 0, 0, 1, 0]
    # ranked + − + + − − + −: recall rises by 1/4 at ranks 1, 3, 4 and 7, where precision is 1/1, 2/3, 3/4, 4/7
    expected = (1 + 2 / 3 + 3 / 4 + 4 / 7) / 4
    assert _hand_ap(scores, labels) == pytest.approx(expected)
    perm = [5, 2, 7, 0, 3, 6, 1, 4]  # scatter the voxels over the 2×2×2 grid: the layout must not matter
    probs = torch.tensor([scores[i] for i in perm]).reshape(1, 2, 2, 2)
    target = torch.tensor([labels[i] for i in perm], dtype=torch.float32).reshape(1, 2, 2, 2)
    # a second shape ranked perfectly, every probability below 0.5: AP is threshold-free → 1
    probs2 = torch.tensor([0.3, 0.1, 0.2, 0.05, 0.25, 0.01, 0.02, 0.03]).reshape(1, 2, 2, 2)
    target2 = (probs2 >= 0.2).float()
    ap = voxel_average_precision(torch.cat([probs, probs2]), torch.cat([target, target2]))
    assert ap.dtype == torch.float64 and ap.shape == (2,)
    assert ap[0].item() == pytest.approx(expected, abs=1e-12)
    assert ap[1].item() == 1.0
    # (N, 1, D, H, W), numpy and bool targets give the same
    same = voxel_average_precision(probs[:, None].numpy(), target[:, None].bool().numpy())
    assert same.item() == pytest.approx(expected, abs=1e-12)
    # the worst ranking: the one positive ranked last of 8 → P = 1/8
    worst = voxel_average_precision(torch.linspace(0.9, 0.1, 8).reshape(1, 2, 2, 2),
                                    torch.tensor([0, 0, 0, 0, 0, 0, 0, 1.0]).reshape(1, 2, 2, 2))
    assert worst.item() == pytest.approx(1 / 8)


def test_voxel_average_precision_errors():
    probs = torch.full((1, 2, 2, 2), 0.5)
    target = torch.zeros(1, 2, 2, 2)
    target[0, 0, 0, 0] = 1
    assert voxel_average_precision(probs, target).item() == pytest.approx(1 / 8)  # all tied: precision = 1/8
    with pytest.raises(ValueError, match="no occupied voxel"):
        voxel_average_precision(probs, torch.zeros(1, 2, 2, 2))
    with pytest.raises(ValueError, match="no occupied voxel"):  # one empty target in a set is enough
        voxel_average_precision(probs.expand(2, 2, 2, 2), torch.stack([target[0], torch.zeros(2, 2, 2)]))
    half = target.clone()
    half[0, 1, 1, 1] = 0.5  # one occupied voxel, one fractional one
    with pytest.raises(ValueError, match="binary"):
        voxel_average_precision(probs, half)
    with pytest.raises(ValueError, match="0 and 1"):
        voxel_average_precision(probs, target.long() * 2)
    bad = probs.clone()
    bad[0, 1, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        voxel_average_precision(bad, target)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        voxel_average_precision(probs * 2.5, target)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        voxel_average_precision(probs - 0.75, target)
    with pytest.raises(ValueError, match="same"):
        voxel_average_precision(torch.full((1, 2, 2, 3), 0.5), target)
    with pytest.raises(ValueError, match="same"):
        voxel_average_precision(probs.expand(2, 2, 2, 2), target)


def test_choose_threshold_finds_the_known_best():
    target = torch.zeros(2, 2, 2, 2)
    target[0, 0] = 1
    target[1, :, 1] = 1
    probs = torch.where(target.bool(), torch.tensor(0.3), torch.tensor(0.2))  # 0.3 on the shape, 0.2 elsewhere
    best, scores = choose_threshold(probs, target)
    assert set(scores) == set(DEFAULT_THRESHOLDS) and len(scores) == 19
    assert best in (0.2, 0.25) and scores[best] == 1.0
    assert scores[0.15] == pytest.approx(0.5)  # every voxel predicted: |shape| / 8 = 4 / 8
    assert scores[0.3] == scores[0.5] == 0.0  # nothing predicted
    # 0.32 / 0.18: 0.2, 0.25 and 0.3 all separate perfectly; ties go to the lowest of them
    probs = torch.where(target.bool(), torch.tensor(0.32), torch.tensor(0.18))
    best, scores = choose_threshold(probs, target)
    assert best == 0.2 and scores[0.2] == scores[0.25] == scores[0.3] == 1.0
    # a unique best: shape voxels 0.9 / 0.5, others 0.42 / 0.1 → only 0.45 in the grid separates them
    probs = torch.full((1, 2, 2, 2), 0.1)
    probs[0, 0, 0, 0], probs[0, 0, 0, 1], probs[0, 1, 1, 1] = 0.9, 0.5, 0.42
    target = torch.zeros(1, 2, 2, 2)
    target[0, 0, 0, :2] = 1
    best, scores = choose_threshold(probs, target)
    assert best == 0.45 and scores[0.45] == 1.0
    assert scores[0.4] == pytest.approx(2 / 3) and scores[0.5] == pytest.approx(1 / 2)
    # the mean paired IoU over shapes, with the candidates given
    best, scores = choose_threshold(probs, target, (0.05, 0.95))
    assert best == 0.05 and scores == {0.05: 2 / 8, 0.95: 0.0}
    two = torch.zeros(2, 2, 2, 2)
    two[0, 0, 0, 0] = 1
    two[1, 0] = 1
    # at 0.05 everything is predicted: IoU 1/8 and 4/8 → mean 5/16
    assert choose_threshold(torch.full((2, 2, 2, 2), 0.5), two, (0.05,))[1] == {0.05: 5 / 16}
    with pytest.raises(ValueError, match="at least one candidate"):
        choose_threshold(probs, target, ())


# --------------------------------------------------------------------------------------------------
# the joint update
# --------------------------------------------------------------------------------------------------
# the original's weighting (δ = 100 times the MEAN over voxels); tiny widths
STEP_CFG = VAEIWGANConfig(image_size=64, z_dim=8, g_channels=(8, 8, 4, 4), d_channels=(4, 4, 8, 8), rec_weight=100.0,
                          rec_reduction="mean")


def _step_setup(d_seed=1, B=2):
    """The image → voxel model (encoder, then generator), a critic, their optimisers and one batch of renders."""
    torch.manual_seed(0)
    model = VAEIWGAN(64, 8, 3, (8, 8, 4, 4))
    torch.manual_seed(d_seed)
    D = IWGANCritic(channels=(4, 4, 8, 8))
    adam = lambda net: torch.optim.Adam(net.parameters(), lr=1e-3, betas=(0.5, 0.9))  # noqa: E731
    opts = {"E": adam(model.encoder), "G": adam(model.generator), "D": adam(D)}
    data = torch.Generator().manual_seed(1)
    images = torch.rand(B, 3, 64, 64, generator=data)
    real = (torch.rand(B, 1, 32, 32, 32, generator=data) > 0.8).float()
    return {"model": model, "D": D}, opts, {"images": images, "voxels": real}


def _state(step, generator=None):
    """The run state a step reads: the batch index and the draw generator."""
    return SimpleNamespace(generator=generator or torch.Generator().manual_seed(0), extra={}, epoch=0, step=step)


def _nets(models):
    return models["model"].encoder, models["model"].generator, models["D"]


def test_vae_iwgan_step_updates_each_network_on_its_schedule():
    models, opts, batch = _step_setup()
    E, G, D = _nets(models)
    g = torch.Generator().manual_seed(0)
    for step in (0, 1, 2, 5, 7):  # n_critic 5: the generator moves at 0 and 5 only
        before = {"E": _snapshot(E), "G": _snapshot(G)}
        before_d = {n: p.detach().clone() for n, p in D.named_parameters()}
        out = vae_step(models, opts, batch, STEP_CFG, _state(step, g))
        assert set(out) == STEP_KEYS
        assert out["g_steps"] == (1.0 if step % 5 == 0 else 0.0), step
        assert all(_moved(before["E"], E)), step  # the encoder every batch
        # every critic parameter moves except the output bias (its gradient cancels exactly, as in the iwgan step)
        d_moved = {n: not torch.equal(before_d[n], p) for n, p in D.named_parameters()}
        assert d_moved.pop("fc.bias") is False and all(d_moved.values()), step
        if step % 5 == 0:
            assert all(_moved(before["G"], G)) and math.isfinite(out["loss_g"]), step
        else:
            assert not any(_moved(before["G"], G)) and math.isnan(out["loss_g"]), step
        for k in STEP_KEYS - {"loss_g"}:
            assert math.isfinite(out[k]), (step, k)
        assert out["loss_d"] == pytest.approx(-out["wasserstein"] + 10 * out["loss_gp"], rel=1e-5, abs=1e-6)
        assert out["loss_e"] == pytest.approx(100 * out["loss_rec"] + 0.005 * out["loss_kl"], rel=1e-5)
        assert 0 <= out["loss_rec"] <= 1 and out["loss_kl"] >= 0 and out["loss_gp"] >= 0
    assert all(p.requires_grad for p in D.parameters())  # the critic is unfrozen after the generator step


def test_vae_iwgan_step_losses_follow_their_definitions():
    models, opts, batch = _step_setup()
    E, G, D = _nets(models)
    images, real = batch["images"], batch["voxels"]
    cfg = dataclasses.replace(STEP_CFG, rec_weight=3.0, kl_weight=0.5)
    # the same forward pass by hand: μ, log σ = E(images), z = μ + σ·ε on a twin generator, p̃ = (G(z) + 1)/2
    with torch.no_grad():
        mu, log_sigma = E(images)
        fake = G(reparameterize(mu, log_sigma, torch.Generator().manual_seed(7)))
        rec = ((tanh_to_occupancy(fake) - real) ** 2).mean().item()
        kl = (0.5 * (mu**2 + (2 * log_sigma).exp() - 1 - 2 * log_sigma).sum(1)).mean().item()
    out = vae_step(models, opts, batch, cfg, _state(0, torch.Generator().manual_seed(7)))
    assert out["loss_rec"] == pytest.approx(rec, rel=1e-5)
    assert out["loss_kl"] == pytest.approx(kl, rel=1e-5)
    assert out["loss_e"] == pytest.approx(3.0 * rec + 0.5 * kl, rel=1e-5)
    # the generator's loss, judged by the critic after its update of this batch: −E[D(x̃)] + δ·rec (no KL)
    with torch.no_grad():
        adversarial = -D(fake).mean().item()
    assert out["loss_g"] == pytest.approx(adversarial + 3.0 * rec, rel=1e-5)
    # reproducible from the same state and generator
    models2, opts2, batch2 = _step_setup()
    assert vae_step(models2, opts2, batch2, cfg, _state(0, torch.Generator().manual_seed(7))) == out


def test_vae_iwgan_step_renders_views_when_no_images_are_given():
    # without batch["images"] each object is rendered from a random view drawn on state.generator: the same draws
    # by hand (views first, then ε) give the same update
    models, opts, batch = _step_setup()
    real = batch["voxels"]
    g = torch.Generator().manual_seed(4)
    az, el = random_views(2, g, tuple(STEP_CFG.elevation_range))
    images = render_voxels(real, az, el, 64, up=grid_up(STEP_CFG.data))
    by_hand = vae_step(models, opts, {"images": images, "voxels": real}, STEP_CFG, _state(0, g))
    models2, opts2, _ = _step_setup()
    drawn = vae_step(models2, opts2, {"voxels": real}, STEP_CFG, _state(0, torch.Generator().manual_seed(4)))
    assert drawn == by_hand
    for net, twin in zip(_nets(models), _nets(models2), strict=True):
        assert _same(_snapshot(net), _snapshot(twin))


def test_adversarial_term_never_reaches_the_encoder():
    # with no reconstruction and no KL weight the encoder's gradient is exactly 0 and Adam (no weight decay)
    # leaves it where it is, on generator and critic-only batches alike; the generator still moves (adversarially)
    models, opts, batch = _step_setup()
    E, G, _ = _nets(models)
    assert opts["E"].param_groups[0]["weight_decay"] == 0
    cfg = dataclasses.replace(STEP_CFG, rec_weight=0.0, kl_weight=0.0)
    g = torch.Generator().manual_seed(0)
    for step in (0, 1, 5):
        before_e, before_g = _snapshot(E), _snapshot(G)
        out = vae_step(models, opts, batch, cfg, _state(step, g))
        assert not any(_moved(before_e, E)), step
        assert out["loss_e"] == 0.0
        assert all(_moved(before_g, G)) == (step % 5 == 0), step
    # with the default weights: a different critic changes the generator's update, never the encoder's
    runs = []
    for d_seed in (1, 2):
        models, opts, batch = _step_setup(d_seed)
        vae_step(models, opts, batch, STEP_CFG, _state(0, torch.Generator().manual_seed(3)))
        E, G, _ = _nets(models)
        runs.append((_snapshot(E), _snapshot(G)))
    (e1, g1), (e2, g2) = runs
    assert all(torch.equal(a, b) for a, b in zip(e1, e2, strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(g1, g2, strict=True))


def _one_step(**options):
    models, opts, batch = _step_setup()
    vae_step(models, opts, batch, dataclasses.replace(STEP_CFG, **options), _state(0, torch.Generator().manual_seed(3)))
    return tuple(_snapshot(net) for net in _nets(models))


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_each_weight_reaches_only_its_networks():
    # the generator's and critic's updates of a batch do not depend on the KL weight; the encoder's does
    e1, g1, d1 = _one_step(kl_weight=0.0)
    e2, g2, d2 = _one_step(kl_weight=5.0)
    assert _same(g1, g2) and _same(d1, d2) and not _same(e1, e2)
    # the reconstruction weight moves encoder and generator (δ·rec is in both losses), not the critic
    e3, g3, d3 = _one_step(kl_weight=0.0, rec_weight=0.0)
    assert not _same(g1, g3) and not _same(e1, e3) and _same(d1, d3)


def test_vae_iwgan_step_errors():
    models, opts, batch = _step_setup()
    images, real = batch["images"], batch["voxels"]
    before = [_snapshot(n) for n in _nets(models)]

    def step(images=images, voxels=real, cfg=STEP_CFG, index=0):
        return vae_step(models, opts, {"images": images, "voxels": voxels}, cfg, _state(index))

    with pytest.raises(ValueError, match=r"batch\['images'\] must be \(B, C, S, S\) with B = 2"):
        step(images=images[:1])
    with pytest.raises(ValueError, match=r"batch\['images'\] must be"):
        step(images=images[:, 0])
    with pytest.raises(ValueError, match=r"batch\['voxels'\] must be \(B, 1, 32, 32, 32\)"):
        step(voxels=real[:, 0])
    with pytest.raises(ValueError, match=r"batch\['voxels'\] must be \(B, 1, 32, 32, 32\)"):
        step(voxels=real.expand(2, 2, 32, 32, 32))
    # weights and n_critic are refused where they are set, the config; a negative batch index by the step
    for kw, match in (({"rec_weight": -1.0}, "rec_weight and kl_weight must be >= 0"),
                      ({"kl_weight": -0.1}, "rec_weight and kl_weight must be >= 0"),
                      ({"gp_weight": -1.0}, "gp_weight >= 0"), ({"n_critic": 0}, "n_critic")):
        with pytest.raises(ValueError, match=match):
            dataclasses.replace(STEP_CFG, **kw)
    with pytest.raises(ValueError, match="state.step"):
        step(index=-1)
    with pytest.raises(ValueError, match="binary"):
        step(voxels=real * 0.5)
    with pytest.raises(ValueError, match=r"img must be \(B, 3, 64, 64\)"):
        step(images=images[:, :, :32, :32])
    for b, net in zip(before, _nets(models), strict=True):  # a refused batch changes nothing
        assert not any(_moved(b, net))
    with torch.no_grad():
        models["D"].fc.bias.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        step(index=1)


class FrozenNaNCritic(IWGANCritic):
    """Finite while trainable, NaN while frozen: diverges only where the generator step judges x̃."""

    def forward(self, x):
        out = super().forward(x)
        return out if any(p.requires_grad for p in self.parameters()) else torch.full_like(out, float("nan"))


def test_vae_iwgan_step_checks_the_generator_steps_scores():
    models, opts, batch = _step_setup()
    D = FrozenNaNCritic(channels=(4, 4, 8, 8))
    models["D"], opts["D"] = D, torch.optim.Adam(D.parameters(), lr=1e-3, betas=(0.5, 0.9))
    G = models["model"].generator
    out = vae_step(models, opts, batch, STEP_CFG, _state(1))  # no generator step: all finite
    assert math.isfinite(out["loss_d"]) and math.isnan(out["loss_g"])
    before_g = _snapshot(G)
    with pytest.raises(FloatingPointError, match=r"reconstructed samples is NaN or inf \(step 5\)"):
        vae_step(models, opts, batch, STEP_CFG, _state(5))
    assert not any(_moved(before_g, G))  # no update from a NaN loss
    assert all(p.requires_grad for p in D.parameters())  # unfrozen again


# --------------------------------------------------------------------------------------------------
# the image → voxel model, rendering, reconstruction, retrieval
# --------------------------------------------------------------------------------------------------
def _tiny_model():
    torch.manual_seed(0)
    return VAEIWGAN(64, 16, g_channels=(16, 8, 8, 4))


def test_vaeiwgan_forward_decodes_the_mean():
    model = _tiny_model()
    img = torch.rand(3, 3, 64, 64)
    out = model(img)
    assert out.shape == (3, 1, 32, 32, 32) and -1 <= out.min() and out.max() <= 1
    model.eval()
    torch.testing.assert_close(model(img), model.generator(model.encoder(img)[0]))
    assert (model.image_size, model.z_dim, model.in_channels) == (64, 16, 3)
    assert model.generator.channels == (16, 8, 8, 4)
    with pytest.raises(ValueError, match=r"img must be \(B, 3, 64, 64\)"):
        model(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"img must be \(B, 3, 64, 64\)"):
        model(torch.rand(2, 1, 64, 64))


def test_reconstruct_is_eval_mode_occupancy_in_batches():
    model = _tiny_model().train()
    img = torch.rand(5, 3, 64, 64)
    probs = reconstruct(model, img, batch_size=2)
    assert probs.shape == (5, 32, 32, 32) and probs.dtype == torch.float32
    assert 0 <= probs.min() and probs.max() <= 1
    assert model.training  # the mode is restored
    with torch.no_grad():
        expected = (model.eval()(img)[:, 0] + 1) / 2
    torch.testing.assert_close(probs, expected)
    torch.testing.assert_close(reconstruct(model, img, batch_size=64), probs)
    assert reconstruct(model, img[:0]).shape == (0, 32, 32, 32)
    with pytest.raises(ValueError, match=r"img must be \(B, 3, 64, 64\)"):
        reconstruct(model, torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"img must be \(B, 3, 64, 64\)"):
        reconstruct(model, torch.rand(2, 1, 64, 64))


def test_render_views_is_seeded_and_object_major():
    grids = procedural_shapes("chair", 3)
    images, index = render_views(grids, 2, seed=4, image_size=32, up="y")
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    assert torch.equal(index, torch.arange(3).repeat_interleave(2))
    assert torch.equal(index, torch.tensor([0, 0, 1, 1, 2, 2]))
    again, index2 = render_views(grids, 2, seed=4, image_size=32, up="y")
    assert torch.equal(again, images) and torch.equal(index2, index)
    other, _ = render_views(grids, 2, seed=5, image_size=32, up="y")
    assert not torch.equal(other, images)
    # view k is object index[k] from the k-th seeded random angle; batching and a channel axis change nothing
    az, el = random_views(6, torch.Generator().manual_seed(4))
    by_hand = render_voxels(torch.as_tensor(grids)[index], az, el, 32, up="y")
    assert torch.equal(by_hand, images)
    chunked, _ = render_views(grids[:, None], 2, seed=4, image_size=32, up="y", batch_size=4)
    assert torch.equal(chunked, images)
    assert not torch.equal(render_views(grids, 2, seed=4, image_size=32)[0], images)  # default up = "z"
    with pytest.raises(ValueError, match="n_views"):
        render_views(grids, 0, seed=0)
    with pytest.raises(ValueError, match="non-empty"):
        render_views(grids[:0], 2, seed=0)


def test_retrieval_baseline_returns_the_rendered_shapes():
    train = procedural_shapes("chair", 5, seed=1)
    db_img, db_idx = render_views(train, 3, seed=0, image_size=64, up="y")
    perm = torch.tensor([7, 0, 14, 3, 9, 11])
    got = retrieval_baseline(train, db_img, db_idx, db_img[perm])
    assert got.dtype == torch.bool and got.shape == (6, 32, 32, 32)
    assert torch.equal(got, torch.as_tensor(train)[db_idx[perm]])
    assert torch.equal(iou(got, torch.as_tensor(train)[db_idx[perm]]), torch.ones(6, dtype=torch.float64))
    # larger query renders are pooled to the same 32² features
    big, big_idx = render_views(train[:2], 1, seed=9, image_size=128, up="y")
    db2, idx2 = render_views(train[:2], 1, seed=9, image_size=64, up="y")
    assert torch.equal(retrieval_baseline(train[:2], db2, idx2, big), torch.as_tensor(train[:2])[big_idx])
    # other objects: it can only return training shapes
    queries, _ = render_views(procedural_shapes("chair", 3, seed=2), 1, seed=1, image_size=64, up="y")
    keys = _keys(train)
    assert all(k in keys for k in _keys(retrieval_baseline(train, db_img, db_idx, queries).numpy()))


def test_retrieval_features_are_centred_unit_vectors():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 64, 64, generator=g)
    f = _retrieval_features(images)
    assert f.shape == (3, 32 * 32)
    torch.testing.assert_close(f.mean(1), torch.zeros(3), atol=1e-6, rtol=0)
    torch.testing.assert_close(f.norm(dim=1), torch.ones(3))
    # grey, 2×2 area means, centred, normalised, by hand
    grey = images.mean(1).reshape(3, 32, 2, 32, 2).mean((2, 4)).flatten(1)
    grey = grey - grey.mean(1, keepdim=True)
    torch.testing.assert_close(f, grey / grey.norm(dim=1, keepdim=True))
    # brightness and contrast do not matter: a·x + b (a > 0) gives the same vector
    torch.testing.assert_close(_retrieval_features(0.5 * images + 0.25), f)
    assert torch.equal(_retrieval_features(torch.ones(1, 3, 64, 64)), torch.zeros(1, 1024))  # blank render: no NaN


def test_evaluate_reconstruction_on_tiny_data():
    model = _tiny_model()
    grids = procedural_shapes("chair", 8, seed=3)
    train, val, test = grids[:4], grids[4:6], grids[6:]
    m = evaluate_reconstruction(model, train, val, test, up="y", eval_views=2, retrieval_views=2, seed=0)
    scalars = {"iou", "ap", "threshold", "iou_05", "baseline_iou", "oracle_iou", "beats_baseline", "n_train",
               "n_val", "n_test", "n_test_views"}
    assert set(m) == scalars | {"per_view"}
    for k in ("iou", "ap", "threshold", "iou_05", "baseline_iou", "oracle_iou"):
        assert 0 <= m[k] <= 1, k
    assert m["threshold"] in DEFAULT_THRESHOLDS
    assert (m["n_train"], m["n_val"], m["n_test"], m["n_test_views"]) == (4, 2, 2, 4)
    assert m["beats_baseline"] == (m["iou"] > m["baseline_iou"])
    pv = m["per_view"]
    assert isinstance(pv, pd.DataFrame) and len(pv) == m["n_test_views"]
    assert list(pv.columns) == ["object", "iou", "ap", "baseline_iou"]
    assert list(pv["object"]) == [0, 0, 1, 1]
    assert pv["iou"].mean() == pytest.approx(m["iou"]) and pv["ap"].mean() == pytest.approx(m["ap"])
    assert pv["baseline_iou"].mean() == pytest.approx(m["baseline_iou"])
    # the oracle by hand: each test object against its best training shape
    best = [max((a & b).sum() / (a | b).sum() for b in train) for a in test]
    assert m["oracle_iou"] == pytest.approx(float(np.mean(best)))
    # the same number of views per object: no retrieval beats the oracle on average
    assert m["oracle_iou"] >= m["baseline_iou"]
    for obj, rows in pv.groupby("object"):
        assert (rows["baseline_iou"] <= best[obj] + 1e-12).all()
    # the test objects' own renders at the chosen threshold and the AP of the same reconstructions
    test_img, test_idx = render_views(test, 2, seed=2, image_size=64, up="y")
    probs = reconstruct(model, test_img)
    targets = torch.as_tensor(test)[test_idx]
    assert m["iou"] == pytest.approx(float(iou(probs, targets, m["threshold"]).mean()))
    assert m["ap"] == pytest.approx(float(voxel_average_precision(probs, targets).mean()))
    again = evaluate_reconstruction(model, train, val, test, up="y", eval_views=2, retrieval_views=2, seed=0)
    assert {k: again[k] for k in scalars} == {k: m[k] for k in scalars}  # seeded
    # test objects that are training objects: the oracle finds them exactly
    assert evaluate_reconstruction(model, train, val, train[:2], up="y", eval_views=1, retrieval_views=1)[
        "oracle_iou"] == 1.0


class SilhouetteModel(torch.nn.Module):
    """A stand-in image → voxel model whose output depends on the view: the render's darkness, pooled to 32²,
    extruded along the depth axis (tanh range)."""

    image_size = 64

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(1.0))

    def forward(self, img):
        dark = 1 - torch.nn.functional.avg_pool2d(img.mean(1, keepdim=True), 2)  # (B, 1, 32, 32) in [0, 1]
        return (2 * dark * self.scale - 1).clamp(-1, 1)[:, :, None].expand(-1, -1, 32, -1, -1)


def test_evaluate_reconstruction_protocol():
    # validation picks the threshold (views seed + 1), test reports (seed + 2), the database uses seed + 3
    model, seed = SilhouetteModel(), 5
    grids = procedural_shapes("chair", 9, seed=4)
    train, val, test = grids[:5], grids[5:7], grids[7:]
    m = evaluate_reconstruction(model, train, val, test, up="y", eval_views=3, retrieval_views=2, seed=seed)
    kw = {"image_size": 64, "up": "y"}
    val_img, val_idx = render_views(val, 3, seed + 1, **kw)
    threshold, scores = choose_threshold(reconstruct(model, val_img), torch.as_tensor(val)[val_idx])
    assert m["threshold"] == threshold and len(set(scores.values())) > 1  # the choice is not a foregone one
    test_img, test_idx = render_views(test, 3, seed + 2, **kw)
    probs, targets = reconstruct(model, test_img), torch.as_tensor(test)[test_idx]
    assert len(set(probs.flatten().tolist())) > 10  # view-dependent reconstructions
    ious = iou(probs, targets, threshold)
    aps = voxel_average_precision(probs, targets)
    assert m["iou"] == pytest.approx(float(ious.mean()), abs=1e-12)
    assert m["ap"] == pytest.approx(float(aps.mean()), abs=1e-12)
    assert m["iou_05"] == pytest.approx(float(iou(probs, targets, 0.5).mean()), abs=1e-12)
    db_img, db_idx = render_views(train, 2, seed + 3, **kw)
    base = iou(retrieval_baseline(train, db_img, db_idx, test_img), targets)
    assert m["baseline_iou"] == pytest.approx(float(base.mean()), abs=1e-12)
    pv = m["per_view"]
    assert np.allclose(pv["iou"], ious.numpy()) and np.allclose(pv["ap"], aps.numpy())
    assert np.allclose(pv["baseline_iou"], base.numpy()) and list(pv["object"]) == test_idx.tolist()
    assert m["n_test_views"] == 6 and m["oracle_iou"] >= m["baseline_iou"]


# --------------------------------------------------------------------------------------------------
# data and config
# --------------------------------------------------------------------------------------------------
def test_split_by_object_is_disjoint_and_complete():
    cfg = _tiny_cfg(max_shapes=20)
    splits = SYSTEM.data(cfg)
    train, val, test = splits.train, splits.held_out["validation"], splits.held_out["test"]
    assert set(splits.held_out) == {"validation", "test"}
    assert "14 train / 3 validation / 3 test" in splits.description and "not real data" in splits.description
    assert (len(train), len(val), len(test)) == (14, 3, 3)  # 30 % of 20 held back, half of 6 to validation
    assert train.dtype == val.dtype == test.dtype == bool and train.shape[1:] == (32, 32, 32)
    parts = [_keys(p) for p in (train, val, test)]
    assert [len(p) for p in parts] == [14, 3, 3]  # no duplicates inside a part
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    everything = _keys(unique_grids(procedural_shapes("chair", 20, seed=0)))
    assert parts[0] | parts[1] | parts[2] == everything and len(everything) == 20
    again = SYSTEM.data(cfg)
    again = (again.train, again.held_out["validation"], again.held_out["test"])
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, val, test), strict=True))
    uneven = SYSTEM.data(_tiny_cfg(max_shapes=20, val_fraction=0.34))  # round(0.34 · 6) = 2 to validation
    assert [len(uneven.train), len(uneven.held_out["validation"]), len(uneven.held_out["test"])] == [14, 2, 4]
    with pytest.raises(ValueError, match=r"1 held-back shape\(s\); need at least 2"):
        SYSTEM.data(_tiny_cfg(max_shapes=4, holdout=0.1))  # 1 held back: no room for validation and test


def test_config_defaults_profiles_and_errors():
    cfg = VAEIWGANConfig()
    assert (cfg.holdout, cfg.val_fraction, cfg.image_size, cfg.rec_weight, cfg.kl_weight) == (0.3, 0.5, 128, 1.0,
                                                                                             0.005)
    assert (cfg.rec_reduction, cfg.g_rec_every_batch) == ("sum", False)
    with pytest.raises(ValueError, match="rec_reduction"):
        VAEIWGANConfig(rec_reduction="max")
    assert (cfg.z_dim, cfg.n_critic, cfg.gp_weight, cfg.lr) == (200, 5, 10.0, 1e-4)  # inherited
    smoke = vae_iwgan_config("smoke")
    for k, v in VAEIWGANConfig.PROFILES["smoke"].items():
        assert getattr(smoke, k) == v, k
    assert (smoke.epochs, smoke.batch_size, smoke.max_shapes, smoke.image_size) == (2, 8, 24, 64)
    assert vae_iwgan_config("smoke", epochs=5, seed=3).epochs == 5  # overrides win over the profile
    assert json.loads(json.dumps(cfg.to_dict()))["elevation_range"] == [-20.0, 40.0]
    with pytest.raises(ValueError, match=r"unknown VAEIWGANConfig fields \['views'\]"):
        vae_iwgan_config("smoke", views=3)
    for bad in ({"image_size": 96}, {"image_size": 32}, {"image_size": 48}):
        with pytest.raises(ValueError, match="power of two >= 64"):
            VAEIWGANConfig(**bad)
    for bad in ({"val_fraction": 0.0}, {"val_fraction": 1.0}, {"holdout": 0.0}):
        with pytest.raises(ValueError, match="val_fraction"):
            VAEIWGANConfig(**bad)
    for bad in ({"rec_weight": -1.0}, {"kl_weight": -0.1}):
        with pytest.raises(ValueError, match="rec_weight and kl_weight"):
            VAEIWGANConfig(**bad)
    with pytest.raises(ValueError, match="eval_views"):
        VAEIWGANConfig(eval_views=0)
    with pytest.raises(ValueError, match="<source>:<name>"):  # IWGANConfig's own checks still run
        VAEIWGANConfig(data="chair")
    assert VAEIWGANConfig(image_size=64, rec_weight=0.0, kl_weight=0.0).image_size == 64


# --------------------------------------------------------------------------------------------------
# training: outputs, exact resume, bad input, NaN stop, time limit
# --------------------------------------------------------------------------------------------------
def test_training_writes_checkpoint_and_sheets(tmp_path):
    # sample_every 100: a sheet at epoch 0 and one after the last epoch, one checkpoint at the end
    result = _fit(_tiny_cfg(sample_every=100), tmp_path)
    model, D, hist = result.model, result.models["D"], result.history
    assert model is result.models["model"]  # no moving average: the trained model is shipped
    assert isinstance(model, VAEIWGAN) and isinstance(D, IWGANCritic)
    assert (tmp_path / "checkpoint.pt").is_file()
    assert sorted(p.name for p in (tmp_path / "samples").glob("*.png")) == ["epoch_0000.png", "epoch_0001.png"]
    cols = {"epoch", "loss_d", "loss_gp", "wasserstein", "loss_rec", "loss_kl", "loss_e", "loss_g", "g_steps"}
    assert set(hist.columns) == cols and list(hist["epoch"]) == [0, 1]
    # 8 training shapes, batch 4: batches 0..3, the generator steps at batch 0 only
    assert list(hist["g_steps"]) == [1.0, 0.0] and hist["loss_g"][1] == hist["loss_g"][0]
    assert np.isfinite(hist.drop(columns="epoch").to_numpy()).all()
    ckpt = read_checkpoint(tmp_path / "checkpoint.pt")  # the batch counter is a field of the state now
    assert ckpt["epoch"] == 2 and ckpt["step"] == 4 and set(ckpt["models"]) == {"model", "D", "ema"}
    assert set(ckpt["optimizers"]) == {"E", "G", "D"}


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    run_a = _fit(_tiny_cfg(epochs=2), tmp_path / "a")
    _fit(_tiny_cfg(epochs=1), tmp_path / "b")  # stopped after epoch 0
    run_b = _fit(_tiny_cfg(epochs=2), tmp_path / "b")
    (model_a, D_a, hist_a), (model_b, D_b, hist_b) = ((r.model, r.models["D"], r.history) for r in (run_a, run_b))
    for a, b in ((model_a, model_b), (D_a, D_b)):
        sa, sb = a.state_dict(), b.state_dict()
        assert list(sa) == list(sb)
        for name in sa:
            assert torch.equal(sa[name], sb[name]), name
    assert hist_a.equals(hist_b) and list(hist_b["epoch"]) == [0, 1]
    # a fresh run without a folder starts from the same weights but is not the resumed one (it trained)
    fresh = _fit(_tiny_cfg(epochs=0), None).model
    assert any(not torch.equal(x, y) for x, y in zip(fresh.state_dict().values(), model_a.state_dict().values(),
                                                     strict=True))


def test_ema_model_is_returned_when_enabled():
    result = _fit(_tiny_cfg(epochs=1, ema_decay=0.5), None)
    ema, plain = result.model, _fit(_tiny_cfg(epochs=1), None).model
    assert ema is result.models["ema"]
    assert isinstance(ema, VAEIWGAN) and all(not p.requires_grad for p in ema.parameters())  # the frozen average
    assert all(p.requires_grad for p in plain.parameters())
    assert not _same(list(ema.parameters()), list(plain.parameters()))


def test_training_rejects_bad_volumes():
    grids = procedural_shapes("chair", 4)
    with pytest.raises(ValueError, match="binary"):
        _fit(_tiny_cfg(), None, data=np.where(grids, 1.0, 0.5))
    with pytest.raises(ValueError, match=r"\(N, 32, 32, 32\)"):
        _fit(_tiny_cfg(), None, data=grids[:, :16, :16, :16])
    with pytest.raises(ValueError, match="non-empty"):
        _fit(_tiny_cfg(), None, data=grids[:0])


def test_nan_critic_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = _tiny_cfg(sample_every=1)
    forward = IWGANCritic.forward
    calls = {"n": 0, "nan_from": None}

    def counting_forward(self, x):
        calls["n"] += 1
        out = forward(self, x)
        if calls["nan_from"] is not None and calls["n"] > calls["nan_from"]:
            return torch.full_like(out, float("nan"))
        return out

    monkeypatch.setattr(IWGANCritic, "forward", counting_forward)
    _fit(cfg, None)  # counts the critic calls of two good epochs
    calls.update(n=0, nan_from=calls["n"])  # the same run again diverges at the first batch of epoch 2
    run = tmp_path / "run"
    with pytest.raises(FloatingPointError, match=r"epoch 2, batch 4.*NaN or inf") as err:
        _fit(_tiny_cfg(sample_every=1, epochs=4), run)
    assert str(run / "checkpoint.pt") in str(err.value)
    ckpt = read_checkpoint(run / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and len(ckpt["history"]) == 2 and ckpt["step"] == 4
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["epoch_0000.png", "epoch_0001.png"]
    # the kept checkpoint resumes: with a sane critic the run finishes its 4 epochs
    monkeypatch.setattr(IWGANCritic, "forward", forward)
    hist = _fit(_tiny_cfg(sample_every=1, epochs=4), run).history
    assert list(hist["epoch"]) == [0, 1, 2, 3] and np.isfinite(hist["loss_d"]).all()


def test_fit_max_minutes_zero_stops_after_one_epoch(tmp_path):
    cfg = _tiny_cfg(epochs=2, sample_every=100)
    messages = []
    first = _fit(cfg, tmp_path, max_minutes=0, log=messages.append)
    assert list(first.history["epoch"]) == [0] and first.state.epoch == 1 and first.state.step == 2
    ckpt = read_checkpoint(tmp_path / "checkpoint.pt")  # written although sample_every is 100
    assert ckpt["epoch"] == 1 and len(ckpt["history"]) == 1 and ckpt["step"] == 2
    assert not messages  # nothing to resume from
    # a later call with the same budget and no limit resumes from there
    rest = _fit(cfg, tmp_path, log=messages.append)
    assert messages == [f"resuming from epoch 1 of 2, {tmp_path / 'checkpoint.pt'}"]
    assert list(rest.history["epoch"]) == [0, 1] and rest.state.step == 4
    assert rest.history.iloc[:1].equals(first.history)  # the first epoch's row came from the checkpoint
    # without an output folder the limit still stops after one epoch
    assert len(_fit(cfg, None, max_minutes=0).history) == 1


def test_cli_time_limit_export_and_evaluation(tmp_path):
    # the smoke profile (paper-size networks, 64² renders), stopped by --max-minutes 0 after one epoch
    run, export = tmp_path / "run", tmp_path / "m"  # --out is the run folder itself
    assert cli.main(["train", "vae_iwgan", "--data", "procedural:chair", "--profile", "smoke", "--out", str(run),
                     "--export", str(export), "--evaluate", "--device", "cpu", "--max-minutes", "0"]) == 0
    assert (run / "checkpoint.pt").is_file() and len(pd.read_csv(run / "history.csv")) == 1
    card = json.loads((export / "reconstruction.json").read_text())
    assert card["system"] == "vae_iwgan" and card["epochs"] == 1 and card["config"]["epochs"] == 1
    assert "--epochs 1" in card["command"] and "not real data" in card["data"]
    assert "17 train / 4 validation / 3 test" in card["data"]  # 24 shapes: 30 % held back, half to validation
    metrics = card["metrics"]
    assert (metrics["n_train"], metrics["n_val"], metrics["n_test"], metrics["n_test_views"]) == (17, 4, 3, 6)
    for k in ("iou", "ap", "iou_05", "baseline_iou", "oracle_iou"):
        assert 0 <= metrics[k] <= 1, k
    assert metrics["oracle_iou"] >= metrics["baseline_iou"]


# --------------------------------------------------------------------------------------------------
# learning
# --------------------------------------------------------------------------------------------------
def test_tiny_model_learns_to_reconstruct():
    # 8 training chairs, 64² renders, a generator step every batch (n_critic 1), lr 1e-3: 60 joint updates
    cfg = _tiny_cfg(epochs=30, n_critic=1, lr=1e-3)
    hist = _fit(cfg, None).history
    rec = hist["loss_rec"].to_numpy()
    assert len(rec) == 30 and list(hist["g_steps"]) == [2.0] * 30
    assert rec[-1] < 0.5 * rec[0], rec
    assert rec[-5:].mean() < rec[:5].mean(), rec


def test_summed_reconstruction_and_generator_every_batch():
    # rec_reduction="sum": the encoder's loss is δ · Σ_voxels (p − x)² averaged over the batch = δ · 32³ · mean;
    # g_rec_every_batch: G also moves on the batches between its adversarial steps (loss_g stays NaN there)
    torch.manual_seed(0)
    E, G, D = ImageEncoder(3, 64, 200), IWGANGenerator(200, channels=(16, 8, 8, 4)), IWGANCritic((4, 8, 8, 16))
    models = {"model": SimpleNamespace(encoder=E, generator=G), "D": D}  # the step reads .encoder and .generator
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in (("E", E), ("G", G), ("D", D))}
    batch = {"voxels": (torch.rand(4, 1, 32, 32, 32) > 0.8).float(), "images": torch.rand(4, 3, 64, 64)}
    cfg = VAEIWGANConfig(image_size=64, rec_weight=2.0, kl_weight=0.0, rec_reduction="sum", g_rec_every_batch=True)
    before = [p.detach().clone() for p in G.parameters()]
    out = vae_step(models, opts, batch, cfg, _state(1, torch.Generator().manual_seed(1)))
    assert out["loss_e"] == pytest.approx(2.0 * 32**3 * out["loss_rec"], rel=1e-4)
    assert math.isnan(out["loss_g"]) and out["g_steps"] == 0.0  # a reconstruction step is not a generator step
    assert any(not torch.equal(b, p) for b, p in zip(before, G.parameters(), strict=True))
    # without g_rec_every_batch G stays put on that batch
    before = [p.detach().clone() for p in G.parameters()]
    vae_step(models, opts, batch, dataclasses.replace(cfg, g_rec_every_batch=False), _state(1))
    assert all(torch.equal(b, p) for b, p in zip(before, G.parameters(), strict=True))
    with pytest.raises(ValueError, match="rec_reduction"):
        dataclasses.replace(cfg, rec_reduction="max")


def test_average_precision_rejects_different_grid_shapes_with_equal_voxel_counts():
    p = torch.rand(1, 2, 2, 2)
    t = torch.tensor([1, 0, 1, 1, 0, 0, 1, 0.0]).reshape(1, 8, 1, 1)
    with pytest.raises(ValueError, match="same"):
        voxel_average_precision(p, t)
