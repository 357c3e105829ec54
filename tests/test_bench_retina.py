"""Tests for the Pix2Pix bench cases (voxhelpers.bench.retina) and the X-ray → CT step's plain port
(voxhelpers.bench.xray_ct_steps): each case runs in quick mode, and each port computes our step's losses on the same
inputs and weights — what makes "ours / port" a comparison of two ways of writing one step.

Nothing here asserts a wall time: the machines running the tests are shared and drift.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from voxhelpers import bench
from voxhelpers.bench import retina, xray_ct_steps
from voxhelpers.training.state import TrainState


@pytest.mark.parametrize("name, formats", [("pix2pix_step_256", ["plain port", "ours"]),
                                           ("pix2pix_inference", ["monai_unet", "pix2pix"]),
                                           ("xray_ct_step", ["plain port", "ours"])])
def test_quick_case_rows_are_measured_against_the_peak(name, formats):
    """The case's two rows run through the real runner (peak, FLOP count, timing) at the quick sizes: finite positive
    times, counted FLOPs, a % of the peak in (0, 100], and the second row names its time over the first's."""
    report = bench.run_benchmarks([name], repeats=1, quick=True, device="cpu")
    assert [r.name for r in report.results] == [name, name]
    assert [r.fmt for r in report.results] == formats
    for r in report.results:
        assert all(math.isfinite(s) and s > 0 for s in r.seconds)
        assert r.flops > 0 and r.samples_per_s > 0
        assert 0 < r.pct_of_peak <= 100
    assert "reference row" in report.results[0].notes
    assert " time = " in report.results[1].notes and "ours / " in report.results[1].notes
    text = bench.format_markdown(report)
    assert sum(line.startswith(f"| `{name}`") for line in text.splitlines()) == 2


def _close(ours: dict, port: dict, keys, rel: float) -> None:
    for k in keys:
        assert port[k] == pytest.approx(ours[k], rel=rel, abs=1e-6), k


def test_pix2pix_port_computes_our_losses():
    """With the augmentation off and a field of view of ones, our step (logits, stable BCE, D frozen) and the seed's
    plain port (Sigmoid + nn.BCELoss, D not frozen) give the same D and G losses from the same weights, inputs and
    dropout draws, and again on the next step (so the updates matched too)."""
    from voxhelpers.config.pix2pix import pix2pix_config
    from voxhelpers.systems import get_system

    cfg = pix2pix_config("smoke", flip=False, rotate=0.0)
    assert cfg.gan_loss == "vanilla" and (cfg.l1_weight, cfg.mse_weight, cfg.adv_weight) == (200, 10, 1)  # the seed
    system = get_system("pix2pix")
    torch.manual_seed(0)
    models = system.build(cfg, "cpu")
    optimizers = system.optimizers(cfg, models)
    state = TrainState(models, optimizers, torch.Generator().manual_seed(0))
    G, D, opt_g, opt_d = retina.port_models(cfg, "cpu")
    G.load_state_dict(models["G"].state_dict())
    D.load_state_dict(models["D"].state_dict())  # the Sigmoid has no weights: the same PatchGAN
    batch = retina.synthetic_retina_batch(cfg.batch_size, cfg.size, seed=3)
    keys = ("loss_d", "loss_g", "loss_rec", "loss_mse", "loss_adv")
    for k, rel in ((0, 1e-5), (1, 1e-4)):
        torch.manual_seed(10 + k)  # the same dropout masks in both generators
        ours = system.step(models, optimizers, batch, cfg, state)
        torch.manual_seed(10 + k)
        port = retina.pix2pix_port_step(G, D, opt_g, opt_d, batch["image"], batch["mask"], cfg.l1_weight,
                                        cfg.mse_weight, cfg.adv_weight)
        _close(ours, port, keys, rel)
    _same_weights(models["G"], G, cfg.lr)


def _same_weights(ours: torch.nn.Module, port: torch.nn.Module, lr: float) -> None:
    """The convolution weights after the steps agree to a fraction of a step (Adam moves each weight by about ±lr a
    step) — all but a few: where a weight's true gradient is near zero (a convolution before a normalisation), Adam
    scales rounding (which differs with the thread count's summation order) to ±lr whatever its sign. So at least 99 %
    of each layer's weights agree to lr / 4, and none differs by more than the 4 · lr two Adam steps can move two
    copies apart (about lr each a step, in opposite directions).
    Biases are left out (before a normalisation their gradient is rounding alone)."""
    for (name, a), b in zip(ours.named_parameters(), port.parameters(), strict=True):
        if a.ndim > 1:
            diff = (a - b).detach().abs()
            assert float((diff <= lr / 4).float().mean()) >= 0.99, (name, float((diff > lr / 4).float().mean()))
            assert float(diff.max()) <= 4 * lr * 1.01, (name, float(diff.max()))


@pytest.mark.parametrize("overrides", [{}, {"gan_loss": "vanilla", "voxel_loss": "l1"}])
def test_xray_ct_port_computes_our_losses(overrides):
    """With the left-right flip off, our X-ray → CT step (G run once, D frozen) and the plain port (G run once, sum
    projections, D not frozen) give the same losses from the same weights and CTs, and again on the next step."""
    from voxhelpers.config.xray_ct import xray_ct_config
    from voxhelpers.systems import get_system

    cfg = xray_ct_config("smoke", flip_lr=False, **overrides)
    system = get_system("xray_ct")
    torch.manual_seed(0)
    models = system.build(cfg, "cpu")
    optimizers = system.optimizers(cfg, models)
    state = TrainState(models, optimizers, torch.Generator().manual_seed(0))
    G, D = copy.deepcopy(models["G"]), copy.deepcopy(models["D"])
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=tuple(cfg.betas))
    ct = torch.rand(cfg.batch_size, 1, cfg.size, cfg.size, cfg.size, generator=torch.Generator().manual_seed(2))
    keys = ("loss_d", "loss_g", "loss_rec", "loss_proj", "loss_adv")
    for rel in (1e-5, 1e-4):
        ours = system.step(models, optimizers, {"ct": ct}, cfg, state)
        port = xray_ct_steps.xray_ct_port_step(G, D, opt_g, opt_d, ct, cfg)
        _close(ours, port, keys, rel)
    _same_weights(models["G"], G, cfg.lr)


def test_the_ports_differ_from_ours_only_where_the_notes_say():
    """The port's D has the seed's Sigmoid (probabilities), ours gives logits; both rows of each case are built
    lazily from the registry (nothing runs until setup)."""
    from voxhelpers.config.pix2pix import pix2pix_config

    _, D, _, _ = retina.port_models(pix2pix_config("smoke"), "cpu")
    batch = retina.synthetic_retina_batch(2, 64)
    p = D(batch["image"], 2 * batch["mask"] - 1)
    assert p.shape == (2, 1, 6, 6) and bool(((p > 0) & (p < 1)).all())
    opts = bench.BenchOptions(torch.device("cpu"), quick=True)
    for name in ("pix2pix_step_256", "pix2pix_inference"):
        rows = bench.CASES[name](opts)
        assert len(rows) == 2 and all(r.count for r in rows)
    notes = bench.CASES["pix2pix_step_256"](opts)[0].notes
    assert "nn.BCELoss" in notes and "no augmentation" in notes


def test_crgan_cycle_rows_follow_the_hardware():
    """The CRGAN cycle's fp32 row always, its bf16 row where the CPU computes bf16 natively; both measured (a finite
    time, counted FLOPs), and the bf16 row names its time over the fp32 row's."""
    from voxhelpers.systems.base import native_bf16

    report = bench.run_benchmarks(["crgan_cycle"], repeats=1, quick=True, device="cpu")
    assert [r.fmt for r in report.results] == (["fp32", "bf16"] if native_bf16("cpu") else ["fp32"])
    for r in report.results:
        assert all(math.isfinite(s) and s > 0 for s in r.seconds) and r.flops > 0
    assert "reference row" in report.results[0].notes
    if len(report.results) == 2:
        assert "ours / fp32 time" in report.results[1].notes
