"""3D-IWGAN training (SPEC §2): config and profiles, the held-out split, exact resume, the NaN stop, pretrained
weights and evaluation, the command line, and the benchmark cases. Tiny networks and batches; no wall times."""

import json
import math

import numpy as np
import pytest
import torch

from voxhelpers import bench, cli
from voxhelpers.config import IWGANConfig, iwgan_config
from voxhelpers.data.grids import split_holdout, unique_grids
from voxhelpers.data.synthetic import procedural_shapes
from voxhelpers.inference import (
    card_config,
    evaluate_iwgan,
    generate,
    generate_unconditional,
    load_pretrained,
    save_pretrained,
)
from voxhelpers.nets import IWGANGenerator, build_network
from voxhelpers.nets.iwgan import IWGANCritic
from voxhelpers.plots import SampleSheets
from voxhelpers.systems import get_system
from voxhelpers.systems.iwgan import shapes
from voxhelpers.training import fit

TINY = {"g_channels": (16, 8, 8, 4), "d_channels": (4, 8, 8, 16), "z_dim": 16}
SYSTEM = get_system("iwgan")


def _tiny_cfg(**kw):
    # 8 procedural chairs, 20 % held out → 6 train shapes, 2 held out; batch 4 → 2 batches (4 + 2) per epoch
    base = dict(data="procedural:chair", max_shapes=8, batch_size=4, epochs=3, sample_every=100, **TINY)
    return iwgan_config("smoke", **{**base, **kw})


def _fit(cfg, out_dir):
    """Train as the command line does: the one loop, with sample sheets in ``out_dir/samples`` when there is one."""
    sheets = [SampleSheets(SYSTEM, cfg, SYSTEM.data(cfg), out_dir)] if out_dir is not None else []
    return fit("iwgan", cfg, out_dir, device="cpu", progress=False, callbacks=sheets)


def _keys(grids):
    return {g.tobytes() for g in np.asarray(grids)}


# --------------------------------------------------------------------------------------------------
# config and data
# --------------------------------------------------------------------------------------------------
def test_config_defaults_profiles_and_errors():
    cfg = IWGANConfig()
    assert (cfg.z_dim, cfg.batch_size, cfg.epochs, cfg.lr, cfg.betas) == (200, 256, 1500, 1e-4, (0.5, 0.9))
    assert (cfg.gp_weight, cfg.n_critic, cfg.holdout, cfg.ema_decay) == (10.0, 5, 0.2, 0.0)
    smoke = iwgan_config("smoke")
    assert (smoke.epochs, smoke.batch_size, smoke.max_shapes) == (2, 8, 16)
    assert (iwgan_config("cpu").epochs, iwgan_config("cpu").batch_size) == (60, 64)
    assert (iwgan_config("full").epochs, iwgan_config("full").batch_size) == (1500, 256)
    assert set(IWGANConfig.PROFILES) == {"smoke", "cpu", "full"}
    assert iwgan_config("full", seed=3).seed == 3  # overrides win over the profile
    assert json.loads(json.dumps(cfg.to_dict()))["betas"] == [0.5, 0.9]  # a card can hold it
    with pytest.raises(ValueError, match=r"unknown IWGANConfig fields \['n_epochs'\]"):
        iwgan_config("smoke", n_epochs=3)
    with pytest.raises(ValueError, match="unknown profile"):
        iwgan_config("huge")
    with pytest.raises(ValueError, match="<source>:<name>"):
        IWGANConfig(data="chair")
    with pytest.raises(ValueError, match="holdout"):
        IWGANConfig(holdout=1.0)


def test_split_is_disjoint_reproducible_and_seeded():
    cfg = iwgan_config("smoke", data="procedural:car", max_shapes=20, holdout=0.25)
    train, held = shapes(cfg)
    assert train.shape == (15, 32, 32, 32) and held.shape == (5, 32, 32, 32) and train.dtype == bool
    assert not _keys(train) & _keys(held)  # no shape in both
    again = shapes(cfg)
    assert np.array_equal(again[0], train) and np.array_equal(again[1], held)
    other = shapes(iwgan_config("smoke", data="procedural:car", max_shapes=20, holdout=0.25, seed=1))
    assert not np.array_equal(other[1], held)
    # every shape lands on exactly one side
    grids = procedural_shapes("car", 20)
    tr, he = split_holdout(grids, 0.25, 0)
    assert _keys(tr) | _keys(he) == _keys(grids) and len(tr) + len(he) == 20
    assert len(split_holdout(grids, 0.0, 0)[1]) == 0
    with pytest.raises(ValueError, match="at least 2"):
        split_holdout(grids[:1], 0.2, 0)
    # the system's data: the same split, the held-out part named "test", a card line saying what the data is
    splits = SYSTEM.data(cfg)
    assert np.array_equal(splits.train, train) and set(splits.held_out) == {"test"}
    assert np.array_equal(splits.held_out["test"], held)
    assert "not real data" in splits.description and "15 train / 5 held-out" in splits.description


def test_duplicates_never_straddle_the_split():
    grids = procedural_shapes("chair", 6)
    dup = np.concatenate([grids, grids[[0, 3, 3]]])  # 9 grids, 6 distinct
    u = unique_grids(dup)
    assert np.array_equal(u, grids)  # the first of each, original order
    tr, he = split_holdout(u, 0.5, 0)
    assert not _keys(tr) & _keys(he)


def test_real_modelnet10_split_has_no_shared_shape(data_root):
    # ModelNet10's training chairs repeat some grids exactly; the split is made on distinct shapes
    train, held = shapes(iwgan_config("smoke", data="modelnet10:chair", max_shapes=None))
    assert len(train) + len(held) == len(_keys(train) | _keys(held))
    assert not _keys(train) & _keys(held)
    assert abs(len(held) / (len(train) + len(held)) - 0.2) < 0.01


# --------------------------------------------------------------------------------------------------
# training: exact resume, NaN stop
# --------------------------------------------------------------------------------------------------
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    run_a = _fit(_tiny_cfg(epochs=3), tmp_path / "a")
    _fit(_tiny_cfg(epochs=2), tmp_path / "b")  # stopped after epoch 1
    run_b = _fit(_tiny_cfg(epochs=3), tmp_path / "b")  # resumed
    hist_a, hist_b = run_a.history, run_b.history
    assert run_a.model is run_a.models["G"]  # no moving average: the generator itself is shipped
    for a, b in ((run_a.models["G"], run_b.models["G"]), (run_a.models["D"], run_b.models["D"])):
        for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
            assert torch.equal(x, y), name
    assert hist_a.equals(hist_b) and list(hist_b["epoch"]) == [0, 1, 2]
    assert {"loss_d", "loss_gp", "wasserstein", "loss_g", "g_steps"} <= set(hist_a.columns)
    # 2 batches per epoch, batches 0..5 overall, the generator steps at batches 0 and 5 (every 5th, across epochs)
    assert list(hist_a["g_steps"]) == [1.0, 0.0, 1.0]
    assert hist_a["loss_g"][1] == hist_a["loss_g"][0]  # an epoch without a generator step repeats the last loss
    assert np.isfinite(hist_a[["loss_d", "loss_gp", "wasserstein", "loss_g"]].to_numpy()).all()
    names = lambda run: sorted(p.name for p in (tmp_path / run / "samples").glob("*.png"))  # noqa: E731
    assert names("a") == ["epoch_0000.png", "epoch_0002.png"]  # first and last, by the true epoch index
    assert names("b") == ["epoch_0000.png", "epoch_0001.png", "epoch_0002.png"]  # + the end of the first part


def test_ema_generator_is_returned_when_enabled(tmp_path):
    result = _fit(_tiny_cfg(epochs=1, ema_decay=0.5), None)
    G, G0 = result.model, _fit(_tiny_cfg(epochs=1), None).model
    assert G is result.models["G_ema"] and isinstance(G, IWGANGenerator)
    assert all(not p.requires_grad for p in G.parameters())  # the moving-average copy (frozen), not G itself
    assert any(not torch.equal(a, b) for a, b in zip(G.parameters(), G0.parameters(), strict=True))


def test_nan_critic_stops_training_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    _fit(_tiny_cfg(epochs=1), tmp_path)
    ckpt = tmp_path / "checkpoint.pt"
    before = ckpt.read_bytes()

    def nan_forward(self, x):
        return torch.full((x.shape[0],), float("nan"), device=x.device)

    monkeypatch.setattr(IWGANCritic, "forward", nan_forward)  # the critic diverges from epoch 1 on
    with pytest.raises(FloatingPointError, match=r"epoch 1, batch 2.*NaN or inf.*last good checkpoint"):
        _fit(_tiny_cfg(epochs=3), tmp_path)
    assert ckpt.read_bytes() == before
    assert not (tmp_path / "samples" / "epoch_0001.png").exists()


# --------------------------------------------------------------------------------------------------
# pretrained weights, sampling, evaluation
# --------------------------------------------------------------------------------------------------
def test_build_network_and_generate_dispatch():
    paper = build_network("iwgan", "generator", IWGANConfig())
    assert (paper.z_dim, paper.channels) == (200, (256, 128, 64, 32))  # no widths in the config: the paper's
    tiny = build_network("iwgan", "generator", _tiny_cfg())
    assert (tiny.z_dim, tiny.channels) == (16, (16, 8, 8, 4))
    torch.manual_seed(0)
    G = build_network("iwgan", "generator", _tiny_cfg()).train()
    z = torch.randn(3, 16)
    occ = generate(G, z, batch_size=2)
    assert occ.shape == (3, 1, 32, 32, 32) and 0 <= occ.min() and occ.max() <= 1
    assert torch.equal(occ, generate_unconditional(G, z, batch_size=2))
    assert G.training  # the mode is restored
    torch.testing.assert_close(occ, (G.eval()(z) + 1) / 2)  # eval mode, tanh → occupancy
    with pytest.raises(ValueError, match="no condition"):
        generate(G, z, condition=1)
    with pytest.raises(ValueError, match=r"z must be \(B, 16\)"):
        generate_unconditional(G, torch.randn(2, 8))


def test_pretrained_round_trip_and_evaluation(tmp_path):
    cfg = _tiny_cfg()
    torch.manual_seed(0)
    G = build_network("iwgan", "generator", cfg).eval()
    path = save_pretrained(G, "iwgan", cfg.to_dict(), tmp_path / "generation.safetensors", profile="smoke",
                           command="test", data="procedural", dtype="fp16")
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["system"] == "iwgan" and card["weights"]["dtype"] == "fp16"
    assert card["parameters"] == sum(p.numel() for p in G.parameters())
    G2, card2 = load_pretrained(path)
    assert isinstance(G2, IWGANGenerator) and not G2.training and card2["config"]["g_channels"] == [16, 8, 8, 4]
    assert card_config(card2) == cfg  # the card rebuilds the run's config
    z = torch.randn(4, 16)
    torch.testing.assert_close(generate(G2, z), generate(G, z), atol=2e-2, rtol=0)  # fp16 weights, same shapes
    splits = SYSTEM.data(cfg)
    held = splits.held_out["test"]
    m = evaluate_iwgan(G2, held, seed=1)
    assert {"cov", "mmd", "one_nna", "occupancy_error", "aad_real", "avar_real"} <= set(m)
    for k in ("cov", "mmd", "one_nna", "aad_real", "avar_real", "occupancy"):
        assert 0 <= m[k] <= 1, k
    assert m["occupancy_error"] >= 0 and m["avar_real"] == pytest.approx(1 - m["aad_real"])
    assert m["n_generated"] == m["n_real"] == len(held) == 2
    assert evaluate_iwgan(G2, held, seed=1) == m  # seeded
    assert evaluate_iwgan(G2, held, n=5)["n_generated"] == 5
    with pytest.raises(ValueError, match="held_out is empty"):
        evaluate_iwgan(G2, held[:0])
    # the system's protocol: as many generated as held out, latent seed cfg.seed + 1
    assert SYSTEM.evaluate(G2, card_config(card2), splits, "smoke") == evaluate_iwgan(G2, held, seed=cfg.seed + 1)


def test_cli_trains_exports_and_evaluates(tmp_path):
    run, export = tmp_path / "run", tmp_path / "m"  # --out is the run folder itself
    assert cli.main(["train", "iwgan", "--data", "procedural:chair", "--profile", "smoke", "--out", str(run),
                     "--export", str(export), "--evaluate"]) == 0
    assert (run / "checkpoint.pt").is_file() and (run / "history.csv").is_file()
    # the sheets are drawn with the shipped model every sample_every (1) epochs: no separate final sheet
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["epoch_0000.png", "epoch_0001.png"]
    card = json.loads((export / "generation.json").read_text())
    assert (export / "generation.safetensors").is_file() and card["system"] == "iwgan"
    assert card["weights"]["dtype"] == "fp16" and card["profile"] == "smoke" and card["epochs"] == 2
    assert "not real data" in card["data"] and "13 train / 3 held-out" in card["data"]
    metrics = card["metrics"]
    for k in ("cov", "mmd", "one_nna", "occupancy_error", "aad_real", "avar_real"):
        assert math.isfinite(metrics[k]), k
    assert metrics["n_generated"] == metrics["n_real"] == 3  # as many generated as held-out shapes
    assert card["command"].startswith("VOXHELPERS_PROFILE=smoke python -m voxhelpers train iwgan "
                                      "--data procedural:chair")


def test_cli_user_errors_print_one_line_and_return_2(tmp_path, capsys):
    assert cli.main(["train", "iwgan", "--data", "chair", "--profile", "smoke", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "<source>:<name>" in err and "Traceback" not in err
    assert not (tmp_path / "checkpoint.pt").exists()


# --------------------------------------------------------------------------------------------------
# benchmark cases (quick sizes; never a wall time)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["iwgan_critic_step", "iwgan_generator_step"])
def test_quick_iwgan_cases_run_the_real_steps(name):
    opts = bench.BenchOptions(torch.device("cpu"), quick=True)
    rows = bench.CASES[name](opts)
    assert [r.fmt for r in rows] == ["channels_last_3d", "contiguous"] and rows[0].batch == 4
    case = rows[0]
    case.warmup = 0
    r = bench.run_case(case, bench.GemmPeak(1.0, 1.0, 8, "cpu"), repeats=1, device="cpu")
    assert r.flops > 0 and r.samples_per_s > 0 and r.pct_of_peak is not None


def test_quick_critic_flops_include_the_double_backward():
    opts = bench.BenchOptions(torch.device("cpu"), quick=True)
    critic = bench.count_flops(bench.CASES["iwgan_critic_step"](opts)[0].setup())
    generator = bench.count_flops(bench.CASES["iwgan_generator_step"](opts)[0].setup())
    # the critic step runs D three times (real, fake, x̂) and backpropagates through the penalty's gradient;
    # the generator step runs G and D forward and backward once: the critic step must count clearly more
    assert critic > generator > 0


def test_main_quick_writes_the_iwgan_and_render_rows(tmp_path):
    out = tmp_path / "b.md"
    names = "iwgan_critic_step,iwgan_generator_step,render_64x128"
    assert bench.main(["--quick", "--out", str(out), "--cases", names]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| `")]
    cells = [[c.strip() for c in r.strip().strip("|").split("|")] for r in rows]
    assert [c[0] for c in cells] == ["`iwgan_critic_step`"] * 2 + ["`iwgan_generator_step`"] * 2 + ["`render_64x128`"]
    for c in cells[:4]:
        assert float(c[5].replace(",", "")) > 0  # % of peak
    assert cells[4][4] == cells[4][5] == "—" and float(cells[4][3].replace(",", "")) > 0  # no FLOPs for rendering
