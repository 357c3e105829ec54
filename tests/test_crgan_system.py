"""System 4's CRGAN end to end: config validation, the WGAN-GP critic loss by hand, the dataset's checks, exact
resume, a tiny model that learns stage-dependent brightness, evaluation's keys and pairing, the sequence figure, and
the command line on the real OCTA-500 images (simulated BRVO sequences)."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from voxhelpers import cli
from voxhelpers.config.crgan import CRGANConfig, crgan_config
from voxhelpers.systems import get_system
from voxhelpers.systems.base import Splits
from voxhelpers.systems.crgan import (
    SequenceDataset,
    critic_loss,
    eval_noise,
    generate,
    resize_sequences,
    sequence_scores,
)
from voxhelpers.training import fit

#: the synthetic sequences' brightness per stage: dark, middle, bright
LEVELS = (40, 128, 215)


@pytest.fixture(autouse=True)
def one_thread():
    """One thread for this module, restored after each test (tiny tensors; two threads fight on a busy machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _sequences(n=4, size=16, seed=0, levels=LEVELS):
    """n synthetic sequences of len(levels) stages: every image is its stage's level ± 15 (uniform noise); the left
    half of the frame is the "sector"."""
    rng = np.random.default_rng(seed)
    images = np.stack([np.stack([np.clip(lv + rng.integers(-15, 16, (1, size, size)), 0, 255) for lv in levels])
                       for _ in range(n)]).astype(np.uint8)  # (n, T, 1, S, S)
    sector = np.zeros((n, size, size), bool)
    sector[:, :, : size // 2] = True
    return SimpleNamespace(images=images, patient=np.arange(n), sector=sector, names=[f"q{seed}_{i}" for i in range(n)],
                           stage_names=tuple(f"t{s}" for s in range(len(levels))))


def _cfg(**kw):
    return crgan_config("smoke", **{"n_stages": 3, "image_size": 16, "max_images": 4, "epochs": 2, "batch_size": 2,
                                    **kw})


# --------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------
def test_defaults_are_the_seeds_and_the_profiles_build():
    cfg = CRGANConfig()
    assert (cfg.z_dim, cfg.lr, cfg.batch_size, cfg.gp_weight, cfg.epochs) == (100, 1e-4, 32, 10.0, 1000)  # SPEC §4
    assert (cfg.n_critic, cfg.betas, cfg.image_size, cfg.n_stages) == (5, (0.5, 0.9), 64, 6)
    assert (cfg.g_channels, cfg.d_channels, cfg.max_channels) == (64, 64, 512)  # the slides' 512 → 64 ladder
    assert cfg.n_patients == 127 and cfg.unknown_patient == 126  # OCTA-500's 126 training images + the unknown one
    assert crgan_config("smoke").n_patients == 9 and _cfg(n_patients=20).unknown_patient == 19
    for profile in ("smoke", "cpu", "full"):
        c = crgan_config(profile)
        assert c.n_critic == 5 and c.gp_weight == 10.0 and c.lr == 1e-4
    assert crgan_config("full").epochs == 1000 and crgan_config("full").batch_size == 32
    cfg = crgan_config("cpu")
    assert CRGANConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # a card's round trip


@pytest.mark.parametrize("kw,match", [
    ({"data": "octa500"}, "data must be one of"),
    ({"image_size": 48}, "power of two"),
    ({"image_size": 4}, "power of two"),
    ({"n_patients": 1}, "n_patients must be >= 2"),
    ({"max_images": 0}, "max_images"),
    ({"n_critic": 0}, "must be >= 1"),
    ({"batch_size": 0}, "must be >= 1"),
    ({"epochs": -1}, "epochs >= 0"),
    ({"gp_weight": -1.0}, "gp_weight >= 0"),
    ({"lr": 0.0}, "lr > 0"),
    ({"ema_decay": 1.0}, "ema_decay"),
    ({"unknown_patient_p": 1.0}, "unknown_patient_p"),
    ({"betas": (0.5, 1.0)}, "betas"),
])
def test_bad_config_values(kw, match):
    with pytest.raises(ValueError, match=match):
        CRGANConfig(**kw)


def test_bad_data_flag_is_one_error_line(capsys):
    assert cli.main(["train", "crgan", "--data", "soul"]) == 2  # checked by the parser, before any data is read
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "brvo:octa500" in err[0]


# --------------------------------------------------------------------------------------------------
# losses, dataset, resize
# --------------------------------------------------------------------------------------------------
class _LinearCritic(nn.Module):
    """D(x, patient, stage) = Σ x + bias[stage]: its gradient in x is all ones, norm √(C·S²) per frame."""

    def __init__(self, n_stages=3):
        super().__init__()
        self.bias = nn.Parameter(torch.arange(n_stages, dtype=torch.float32))

    def forward(self, x, patient, stage):
        return x.flatten(1).sum(1) + self.bias[stage]


def test_critic_loss_sign_and_gradient_penalty_by_hand():
    """Frames (2, 1, 2, 2): real all ones, fake all zeros, stages (0, 2). D(real) = 4 + (0, 2) → mean 5;
    D(fake) = 0 + (0, 2) → mean 1. The critic minimises E[D(fake)] − E[D(real)] = 1 − 5 = −4, so the Wasserstein
    estimate E[D(real)] − E[D(fake)] is +4 (real scored higher: the right sign). ∇ₓ D = ones(4) at every x̂, norm
    √4 = 2 per frame, so GP = (2 − 1)² = 1 whatever ε, and loss_d = −4 + 10·1 = 6."""
    D = _LinearCritic()
    real, fake = torch.ones(2, 1, 2, 2), torch.zeros(2, 1, 2, 2)
    patient, stage = torch.tensor([0, 1]), torch.tensor([0, 2])
    loss_d, gp, w = critic_loss(D, real, fake, patient, stage, 10.0, torch.Generator().manual_seed(0))
    assert [float(t.detach()) for t in (w, gp, loss_d)] == pytest.approx([4.0, 1.0, 6.0])
    loss_d.backward()  # the penalty trains the critic only; here only the bias has a gradient: ∂(E[D(f)] − E[D(r)]) = 0
    assert D.bias.grad is not None and torch.allclose(D.bias.grad, torch.zeros(3))
    # a steeper critic, D = 3 Σ x: norm 6 per frame, GP = 25
    steep = lambda x, patient, stage: 3 * x.flatten(1).sum(1)  # noqa: E731
    assert float(critic_loss(steep, real, fake, patient, stage, 10.0, None)[1]) == pytest.approx(25.0)


def test_dataset_items_and_bad_sequences():
    cfg = _cfg()
    item = SequenceDataset(_sequences(), cfg)[1]
    assert item["images"].shape == (3, 1, 16, 16) and -1 <= item["images"].min() and item["images"].max() <= 1
    assert int(item["patient"]) == 1 and item["stages"].tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match=r"uint8 \(N, 3, 1, 16, 16\)"):
        SequenceDataset(_sequences(size=8), cfg)
    with pytest.raises(ValueError, match=r"patient ids must be in \[0, 4\)"):  # n_patients 5: row 4 is the unknown
        SequenceDataset(SimpleNamespace(images=_sequences(5).images, patient=np.arange(5)), cfg)


def test_resize_is_antialiased():
    """A fine 0 / 200 checkerboard shrunk 4× by the anti-aliased bilinear resize averages to its mean, 100 (± 2 where
    the triangle filter meets the frame's edge: measured 99 / 101); a constant image stays constant."""
    board = (np.indices((8, 8)).sum(0) % 2 * 200).astype(np.uint8)[None]
    out = resize_sequences(board, 2)
    assert out.shape == (1, 2, 2) and out.dtype == np.uint8 and np.abs(out.astype(int) - 100).max() <= 2
    assert (resize_sequences(np.full((2, 3, 1, 20, 20), 77, np.uint8), 8) == 77).all()


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------
def test_step_reports_and_resumed_run_equals_uninterrupted_run(tmp_path):
    """Noise, condition dropout, ε and shuffling are drawn from checkpointed generators and the n_critic counter is
    checkpointed: stopping after the first epoch and resuming gives the same weights (EMA included) and history."""
    cfg, data = _cfg(epochs=3, unknown_patient_p=0.5), _sequences()
    a = fit("crgan", cfg, tmp_path / "a", "cpu", data=data, progress=False)
    fit("crgan", cfg, tmp_path / "b", "cpu", data=data, progress=False, max_minutes=0)
    b = fit("crgan", cfg, tmp_path / "b", "cpu", data=data, progress=False)
    for key in ("G", "D", "G_ema"):
        for k, v in a.models[key].state_dict().items():
            assert torch.equal(v, b.models[key].state_dict()[k]), (key, k)
    assert a.history.equals(b.history) and len(a.history) == 3
    assert {"loss_d", "loss_g", "loss_gp", "wasserstein", "g_steps"} <= set(a.history.columns)
    assert a.history["g_steps"].sum() == 2  # 6 batches, the generator on batches 0 and 5 (n_critic 5)
    assert a.shipped == "G_ema"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tiny_crgan_learns_stage_brightness(precision):
    """Four sequences of three stages whose brightness is the stage's (40, 128, 215 ± 15 → 0.16, 0.50, 0.84), 200
    batches (40 generator steps, lr 2e-3): the generated per-stage mean brightness, 0.40 for every stage at
    initialisation (mean |error| 0.26), ends within a quarter of that error (measured: 0.012) and increases with the
    stage — the stage embedding, through the LSTM, sets the brightness. Under bf16 autocast too (the penalty's
    double backward through bf16 layers)."""
    cfg = _cfg(epochs=200, batch_size=4, lr=2e-3, ema_decay=0.0, unknown_patient_p=0.0, precision=precision)
    data, system = _sequences(), get_system("crgan")
    torch.manual_seed(0)
    start = generate(system.build(cfg, "cpu")["G"], np.arange(4), 3, eval_noise(cfg, 4)).mean(axis=(0, 1, 3, 4))
    torch.manual_seed(0)
    result = fit("crgan", cfg, None, "cpu", data=data, progress=False)
    end = generate(result.model, np.arange(4), 3, eval_noise(cfg, 4)).mean(axis=(0, 1, 3, 4))
    truth = data.images.mean(axis=(0, 2, 3, 4)) / 255
    before, after = np.abs(start - truth).mean(), np.abs(end - truth).mean()
    assert after < 0.25 * before, (start, end, truth)
    assert end[0] < end[1] < end[2]
    assert np.isfinite(result.history["wasserstein"]).all() and result.history["wasserstein"].abs().max() < 50


def test_bf16_precision_runs_both_networks_in_bf16_and_keeps_fp32_weights():
    cfg, data, system = _cfg(precision="bf16"), _sequences(), get_system("crgan")
    models = system.build(cfg, "cpu")
    optimizers = system.optimizers(cfg, models)
    seen = {k: [] for k in ("G", "D")}
    for k in seen:
        models[k].register_forward_hook(lambda m, i, o, k=k: seen[k].append(o.dtype))
    batch = next(iter(torch.utils.data.DataLoader(system.dataset(cfg, data), batch_size=2)))
    state = SimpleNamespace(step=0, generator=torch.Generator().manual_seed(0))
    out = system.step(models, optimizers, batch, cfg, state)  # batch 0: a critic and a generator step
    assert set(seen["G"]) == {torch.bfloat16} and set(seen["D"]) == {torch.bfloat16} and len(seen["G"]) == 2
    assert all(np.isfinite(out[k]) for k in ("loss_d", "loss_gp", "wasserstein", "loss_g"))
    assert all(p.dtype == torch.float32 for k in ("G", "D") for p in models[k].parameters())
    assert crgan_config("cpu").precision == "cuda"  # the shipped weights' arithmetic: fp32 on every CPU


# --------------------------------------------------------------------------------------------------
# evaluation and figures
# --------------------------------------------------------------------------------------------------
def test_sequence_scores_pair_by_sequence_and_stage():
    """Truth (1, 2 stages) of constant images 0.2 and 0.6; two draws: one equal to the truth, one 0.1 brighter
    everywhere. MSE: 0 and 0.01; sector error 0 and 0.1 — per (sequence, draw, stage); SSIM 1 for the exact draw."""
    truth = np.stack([np.full((8, 8), 0.2), np.full((8, 8), 0.6)])[None].astype(np.float32)  # (1, 2, 8, 8)
    generated = np.stack([truth[0], truth[0] + 0.1])[None]  # (1, 2 draws, 2 stages, 8, 8)
    sector = np.zeros((1, 8, 8), bool)
    sector[0, :4] = True
    s = sequence_scores(generated, truth, sector)
    assert s["mse"].shape == (1, 2, 2)
    np.testing.assert_allclose(s["mse"][0], [[0, 0], [0.01, 0.01]], atol=1e-6)
    np.testing.assert_allclose(s["sector_error"][0], [[0, 0], [0.1, 0.1]], atol=1e-6)
    assert s["ssim"][0, 0] == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError, match="truth must be"):
        sequence_scores(generated, truth[:, :1], sector)


def test_evaluate_keys_and_the_unknown_patient():
    system, cfg = get_system("crgan"), _cfg(eval_draws=2)
    splits = Splits(_sequences(4), {"test": _sequences(3, seed=1)})
    torch.manual_seed(0)
    model = system.build(cfg, "cpu")["G_ema"]
    metrics, table = system.details(model, cfg, splits)
    per_stage = {f"{k}_s{s}" for k in ("ssim", "mse", "sector_error") for s in range(3)}
    assert {"ssim", "mse", "sector_error", "train_ssim", "train_mse", "train_sector_error"} | per_stage <= set(metrics)
    assert all(isinstance(v, float) and np.isfinite(v) for v in metrics.values())
    assert metrics["n_sequences"] == 3 and metrics["n_draws"] == 2
    assert metrics["mse"] == pytest.approx(np.mean([metrics[f"mse_s{s}"] for s in range(3)]))
    assert len(table) == 3 * 3 and list(table["name"].unique()) == ["q1_0", "q1_1", "q1_2"]
    assert system.evaluate(model, cfg, splits) == metrics  # fixed noise: the same numbers every call


def test_sequence_figure_rows_and_bad_input():
    from voxhelpers.plots.retina import sequence_figure

    system, cfg = get_system("crgan"), _cfg()
    splits = Splits(_sequences(4), {"test": _sequences(3, seed=1)})
    torch.manual_seed(0)
    inputs = system.sheet_inputs(cfg, splits)
    fig = system.figure(system.build(cfg, "cpu")["G_ema"], cfg, inputs, title="t")
    assert len(fig.axes) == 2 * 3 * 3  # rows: real and generated for 3 sequences; columns: 3 stages
    assert [a.get_title() for a in fig.axes[:3]] == ["t0", "t1", "t2"]
    assert fig.axes[0].get_ylabel() == "q1_0\nreal" and fig.axes[3].get_ylabel() == "q1_0\ngenerated"
    assert any("simulated BRVO" in t.get_text() for t in fig.texts)
    truth = np.zeros((1, 2, 8, 8), np.uint8)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        sequence_figure(truth, np.full((1, 2, 8, 8), 2.0))
    with pytest.raises(ValueError, match=r"\(N, T, H, W\)"):
        sequence_figure(truth, np.zeros((1, 3, 8, 8)))


# --------------------------------------------------------------------------------------------------
# the command line on the real OCTA-500 images
# --------------------------------------------------------------------------------------------------
def test_cli_trains_and_evaluates_on_real_octa500(data_root, tmp_path, capsys):
    """``python -m voxhelpers train crgan --profile smoke --out <tmp> --evaluate``: 8 simulated training sequences
    at 32², 2 epochs; the metrics are over the 10 held-out sequences (other source images). Then ``export`` writes
    weights + card and ``evaluate`` rebuilds the generator from the card and reproduces them."""
    if not (data_root / "octa500").is_dir():
        pytest.skip("OCTA-500 is not among the real data")
    run, export = tmp_path / "run", tmp_path / "models"
    assert cli.main(["train", "crgan", "--profile", "smoke", "--out", str(run), "--evaluate"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"ssim", "mse", "sector_error", "ssim_s5", "train_ssim"} <= set(metrics)
    assert metrics["n_sequences"] == 10 and 0 <= metrics["mse"] <= 1 and -1 <= metrics["ssim"] <= 1
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_0000.png", "epoch_0000.safetensors",
                                                                   "epoch_0001.png", "epoch_0001.safetensors"]
    assert len((run / "cases.csv").read_text().splitlines()) == 1 + 10 * 6  # one row per sequence and stage
    history = (run / "history.csv").read_text().splitlines()[0].split(",")
    assert {"loss_d", "loss_g", "loss_gp", "wasserstein", "g_steps"} <= set(history)
    assert cli.main(["export", "crgan", "--run", str(run), "--to", str(export), "--profile", "smoke",
                     "--evaluate"]) == 0
    card = json.loads((export / "generator.json").read_text())
    assert card["system"] == "crgan" and "SIMULATED" in card["data"] and "8 train (" in card["data"]
    assert "10 held-out sequences" in card["data"]
    capsys.readouterr()
    assert cli.main(["evaluate", "crgan", "--weights", str(export / "generator.safetensors")]) == 0
    again = json.loads(capsys.readouterr().out)
    for key, value in card["metrics"].items():
        assert again[key] == pytest.approx(value, rel=1e-6, abs=1e-9, nan_ok=True), key


def test_progress_reads_the_snapshots_and_its_last_row_is_the_runs_metrics(data_root, tmp_path):
    """``train crgan --evaluate`` keeps one fp32 snapshot of the EMA generator per sample sheet; :func:`progress`
    re-evaluates each, and the last one is the model the run evaluated: the same metrics to float precision. With a
    segmenter it adds the vessel-density error (a constant segmenter gives density 1 in both: error 0)."""
    if not (data_root / "octa500").is_dir():
        pytest.skip("OCTA-500 is not among the real data")
    from voxhelpers.systems.crgan import progress

    run = tmp_path / "run"
    assert cli.main(["train", "crgan", "--profile", "smoke", "--out", str(run), "--evaluate"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    table = progress(run)
    assert table["epoch"].tolist() == [0, 1]
    for key in ("ssim", "mse", "sector_error", "ssim_s0", "mse_s5"):
        assert table[key].iloc[-1] == pytest.approx(metrics[key], rel=1e-5, abs=1e-7)
    assert not any(c.startswith("train_") for c in table.columns)
    with_density = progress(run, segmenter=lambda x: np.ones(x.shape, bool))
    assert (with_density["density_error"] == 0).all() and "density_error_s3" in with_density
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        progress(tmp_path)


def test_baselines_by_hand():
    """The other-eye baseline with the held-out sequences themselves as the training pool scores perfectly (SSIM 1,
    MSE 0, errors 0); the mean-image baseline of one training sequence repeated is that sequence, and its MSE against
    a held-out sequence is the mean squared pixel difference computed directly."""
    from voxhelpers.systems.crgan import baselines

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 6, 1, 16, 16)).astype(np.uint8)
    sector = np.zeros((3, 16, 16), bool)
    sector[:, 4:12, 4:12] = True
    held = SimpleNamespace(images=images, sector=sector)
    cfg = crgan_config("smoke")
    same = baselines(cfg, Splits(held, {"test": held}), segmenter=lambda x: np.asarray(x) > 0.5)
    assert same["other_eye_ssim"] == pytest.approx(1.0) and same["other_eye_mse"] == 0
    assert same["other_eye_sector_error"] == 0 and same["other_eye_density_error"] == 0
    one = SimpleNamespace(images=np.repeat(images[:1], 3, axis=0), sector=sector)
    got = baselines(cfg, Splits(one, {"test": held}))
    expected = ((images[:, :, 0] / 255 - images[:1, :, 0] / 255) ** 2).mean()
    assert got["mean_image_mse"] == pytest.approx(expected, rel=1e-5)
    assert got["other_eye_mse"] == pytest.approx(expected, rel=1e-5) and "mean_image_density_error" not in got
    with pytest.raises(ValueError, match="at least 3 training sequences"):
        baselines(cfg, Splits(SimpleNamespace(images=images[:2], sector=sector[:2]), {"test": held}))
