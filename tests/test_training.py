"""The update rule, the fit loop for every system (exact resume, NaN stop, torchrun), weights and cards, a tiny model
learning."""

import dataclasses
import json
import re
import sys

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from _ddp_worker import CONFIGS, GENERATOR
from conftest import run_two_processes

from voxhelpers import metrics
from voxhelpers.config import iwgan_config, vae_iwgan_config, voxel_cgan_config
from voxhelpers.data.io import (
    dequantize_int8,
    load_checkpoint,
    load_weights,
    quantize_int8,
    save_checkpoint,
    save_weights,
)
from voxhelpers.data.shapes import make_conditions
from voxhelpers.data.synthetic import procedural_shapes
from voxhelpers.inference import evaluate_voxel_cgan, load_pretrained, save_pretrained
from voxhelpers.nets import CGANDiscriminator, CGANGenerator
from voxhelpers.plots import SampleSheets
from voxhelpers.systems import get_system
from voxhelpers.systems.voxel_cgan import consistency_weight
from voxhelpers.systems.voxel_cgan import step as voxel_cgan_step
from voxhelpers.training import CHECKPOINT_NAME, TrainState, fit, seed_everything

SYSTEMS = ("voxel_cgan", "iwgan", "vae_iwgan")


# --------------------------------------------------------------------------------------------------
# the conditional GAN's step, on tiny networks
# --------------------------------------------------------------------------------------------------
def _cgan_cfg(**kw):
    """A smoke config running the seed's step (no consistency term unless asked, then from the first epoch)."""
    return voxel_cgan_config("smoke", **{"data": "procedural:car", "consistency": 0.0, "consistency_start": 0.0, **kw})


def _tiny_nets(output="probs"):
    torch.manual_seed(0)
    return {"G": CGANGenerator(channels=(16, 8, 8, 4)), "D": CGANDiscriminator(channels=(4, 8, 8, 16), output=output)}


def _rmsprop(models, lr_g=2.5e-3, lr_d=5e-5):
    return {"G": torch.optim.RMSprop(models["G"].parameters(), lr_g), "D": torch.optim.RMSprop(models["D"].parameters(),
                                                                                              lr_d)}


def _state(models, optimizers, acc=0.0, epoch=0):
    """A run's state as the step sees it: the draw generator, D's gate (its accuracy on the previous batch)."""
    return TrainState(models, optimizers, torch.Generator().manual_seed(0), epoch=epoch, extra={"gate": {"acc": acc}})


def _cars(n=4):
    """{"voxels": (n, 2, 1, 32, 32, 32)} float {0, 1}: procedural cars with their two rotation conditions."""
    return {"voxels": torch.as_tensor(make_conditions(procedural_shapes("car", n), 2), dtype=torch.float32)[:, :, None]}


def test_step_runs_each_phase_and_respects_the_gate():
    models = _tiny_nets()
    opts = _rmsprop(models)
    cfg, batch = _cgan_cfg(loss="triple"), _cars()
    D = models["D"]
    d_before = [p.clone() for p in D.parameters()]
    state = _state(models, opts, acc=0.0)
    out = voxel_cgan_step(models, opts, batch, cfg, state)
    assert set(out) == {"loss_d", "loss_g", "loss_pair", "acc_d", "d_steps"}
    assert out["d_steps"] == 2 and all(np.isfinite(v) for v in out.values())
    assert state.extra["gate"]["acc"] == out["acc_d"]  # the gate of the next batch
    assert any(not torch.equal(a, b) for a, b in zip(d_before, D.parameters(), strict=True))
    # gate at 1.0 (D was perfect on the last batch): no D update at all
    d_before = [p.clone() for p in D.parameters()]
    out = voxel_cgan_step(models, opts, batch, cfg, _state(models, opts, acc=1.0))
    assert out["d_steps"] == 0
    assert all(torch.equal(a, b) for a, b in zip(d_before, D.parameters(), strict=True))


def test_generator_steps_leave_d_without_gradients_and_flags_intact():
    """D is frozen in the G and pairing steps: no weight gradient is computed for it (a gated-off batch leaves every
    .grad None), G still learns through it, and D's requires_grad flags are back afterwards."""
    models = _tiny_nets()
    opts = _rmsprop(models)
    G, D = models["G"], models["D"]
    g_before = [p.clone() for p in G.parameters()]
    voxel_cgan_step(models, opts, _cars(), _cgan_cfg(loss="triple"), _state(models, opts, acc=1.0))
    assert all(p.grad is None for p in D.parameters())
    assert all(p.requires_grad for p in D.parameters())
    assert all(p.grad is not None for p in G.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(g_before, G.parameters(), strict=True))


def test_pairing_steps_count_generator_updates():
    """Each pairing step is one more G update (its own z); pairing_steps < 1 is refused by the config."""
    calls = {}
    for k in (1, 3):
        models = _tiny_nets()
        opts = _rmsprop(models)
        opts["G"].register_step_post_hook(lambda *_, k=k: calls.__setitem__(k, calls.get(k, 0) + 1))
        out = voxel_cgan_step(models, opts, _cars(), _cgan_cfg(loss="triple", pairing_steps=k),
                              _state(models, opts, acc=1.0))
        assert np.isfinite(out["loss_pair"])
    assert calls == {1: 2 + 1, 3: 2 + 3}  # one G step per condition, then the pairing steps
    with pytest.raises(ValueError, match=r"pairing_steps and sample_every must be >= 1.*, 0, "):
        _cgan_cfg(pairing_steps=0)


@pytest.mark.parametrize("distance", ["jaccard", "l1"])
def test_consistency_term_makes_conditions_agree(distance):
    """--consistency adds a distance between the conditions' turned-back views to the pairing step (soft Jaccard,
    or L1 over a fixed scale): it is reported, and a tiny G trained with it draws more consistent conditions than
    without it."""
    from voxhelpers.data.transforms import condition_rotation
    from voxhelpers.losses import soft_jaccard_distance

    batch = _cars()
    z = torch.randn(8, 200, generator=torch.Generator().manual_seed(1))

    def distance_after(weight: float) -> float:
        models = _tiny_nets()
        opts = _rmsprop(models)
        cfg = _cgan_cfg(loss="bce", consistency=weight, consistency_distance=distance)
        state = _state(models, opts, acc=0.0)
        for _ in range(15):
            out = voxel_cgan_step(models, opts, batch, cfg, state)
            assert ("loss_consistency" in out) == (weight > 0)
            assert out.get("consistency_weight", 0.0) == weight  # no schedule: the weight from the first epoch
        G = models["G"].eval()
        with torch.no_grad():
            views = [condition_rotation(G(z, torch.full((8,), c)), c, inverse=True) for c in range(2)]
        if distance == "l1":  # the voxels the views disagree on (a soft Jaccard could fall by filling both)
            return float((views[0] - views[1]).abs().mean())
        return float(soft_jaccard_distance(*views).mean())

    assert distance_after(20.0) < 0.5 * distance_after(0.0)
    with pytest.raises(ValueError, match="need consistency >= 0"):
        _cgan_cfg(consistency=-1.0)
    with pytest.raises(ValueError, match="consistency_distance must be one of"):
        _cgan_cfg(consistency_distance="dice")


class _GridPerCondition(torch.nn.Module):
    """A "generator" that ignores z: condition c draws sigmoid(P[c]), one free near-binary grid per condition."""

    z_dim, n_conditions = 200, 2

    def __init__(self):
        super().__init__()
        self.P = torch.nn.Parameter(4 * torch.randn(2, 1, 32, 32, 32, generator=torch.Generator().manual_seed(0)))

    def forward(self, z, cond):
        return torch.sigmoid(self.P[cond])


class _ConstantD(torch.nn.Module):
    """A critic whose probability ignores its input: every adversarial gradient reaching G is zero."""

    output = "probs"

    def __init__(self):
        super().__init__()
        self.b = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, cond):
        return torch.sigmoid(self.b + 0 * x.sum((1, 2, 3, 4))).expand(len(x))[:, None]


@pytest.mark.parametrize("anchor", [False, True])
def test_consistency_anchor_holds_condition_0_and_moves_the_others(anchor):
    """With a critic that passes no gradient, only the consistency term moves G. Without the anchor it moves both
    conditions' grids (the soft Jaccard can be lowered by changing either view — emptying both is one way); with
    ``consistency_anchor`` condition 0's grid stays exactly as it was and condition 1's moves onto it."""
    from voxhelpers.data.transforms import condition_rotation
    from voxhelpers.losses import soft_jaccard_distance

    models = {"G": _GridPerCondition(), "D": _ConstantD()}
    opts = {"G": torch.optim.Adam(models["G"].parameters(), 0.5), "D": torch.optim.SGD(models["D"].parameters(), 0)}
    cfg = _cgan_cfg(loss="bce", consistency=10.0, consistency_anchor=anchor)
    before = models["G"].P.detach().clone()
    gap = lambda: float(soft_jaccard_distance(torch.sigmoid(models["G"].P[:1]).detach(),  # noqa: E731
                                              condition_rotation(torch.sigmoid(models["G"].P[1:]).detach(), 1,
                                                                 inverse=True)))
    start = gap()
    state = _state(models, opts, acc=0.0)
    for _ in range(20):
        voxel_cgan_step(models, opts, _cars(2), cfg, state)
    after = models["G"].P.detach()
    assert torch.equal(after[0], before[0]) == anchor
    assert not torch.equal(after[1], before[1])
    assert gap() < 0.5 * start


def test_step_sound_variant_with_logits():
    models = _tiny_nets(output="logits")
    opts = _rmsprop(models, 1e-3, 1e-4)
    cfg = _cgan_cfg(loss="bce_mse_60_40", variant="sound")
    assert cfg.output == "logits"  # the config's D ends in logits with the sound formulas
    out = voxel_cgan_step(models, opts, _cars(), cfg, _state(models, opts))
    assert all(np.isfinite(v) for v in out.values())


def test_step_rejects_bad_batch():
    models = _tiny_nets()
    opts = _rmsprop(models)
    with pytest.raises(ValueError, match=r"batch\['voxels'\] must be \(B, 2, 1, D, H, W\), got \(4, 2, 32, 32, 32\)"):
        voxel_cgan_step(models, opts, {"voxels": torch.zeros(4, 2, 32, 32, 32)}, _cgan_cfg(), _state(models, opts))


def test_consistency_schedule():
    """--consistency-start: no term for that fraction of the epochs, then a linear ramp over 10 % of them."""
    w = [consistency_weight(e, 100, 4.0, 0.5) for e in range(100)]
    assert w[:51] == [0.0] * 51 and w[55] == pytest.approx(2.0) and w[60:] == [4.0] * 40
    assert all(a <= b for a, b in zip(w[:-1], w[1:], strict=True))
    assert {consistency_weight(e, 100, 4.0) for e in range(100)} == {4.0}  # start 0: the weight throughout
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="consistency_start must be a fraction"):
            consistency_weight(0, 100, 4.0, bad)
    # the step reads the schedule from the config and the state's epoch: epoch 0 of 100 is before the start
    models = _tiny_nets()
    opts = _rmsprop(models)
    cfg = _cgan_cfg(consistency=4.0, consistency_start=0.5, epochs=100)
    out = voxel_cgan_step(models, opts, _cars(), cfg, _state(models, opts, epoch=0))
    assert out["consistency_weight"] == 0.0 and "loss_consistency" not in out
    out = voxel_cgan_step(models, opts, _cars(), cfg, _state(models, opts, epoch=55))
    assert out["consistency_weight"] == pytest.approx(2.0) and np.isfinite(out["loss_consistency"])


# --------------------------------------------------------------------------------------------------
# the fit loop, for every system: exact resume, refused checkpoints, NaN stop
# --------------------------------------------------------------------------------------------------
SMALL = dict(g_channels=(16, 8, 8, 4), d_channels=(4, 8, 8, 16))


def _fit_cfg(system: str, **kw):
    """A tiny config per system, two batches an epoch for the WGANs (10 / 8 training shapes), EMA on."""
    if system == "voxel_cgan":
        return voxel_cgan_config("smoke", **{"data": "procedural:car", "n_train": 4, "batch_size": 4, "epochs": 3,
                                             "sample_every": 100, **kw})
    if system == "iwgan":
        return iwgan_config("smoke", **{"data": "procedural:chair", "max_shapes": 12, "batch_size": 5, "epochs": 3,
                                        "sample_every": 100, "ema_decay": 0.5, **SMALL, **kw})
    return vae_iwgan_config("smoke", **{"data": "procedural:chair", "max_shapes": 12, "batch_size": 4, "epochs": 3,
                                        "sample_every": 100, "ema_decay": 0.5, "image_size": 64, **SMALL, **kw})


def _cheap_sheets(system, cfg, out_dir):
    """SampleSheets with a blank figure: the naming and timing of sheets without drawing voxels."""
    cheap = dataclasses.replace(get_system(system), figure=lambda model, cfg, inputs, title: plt.figure(figsize=(1, 1)))
    return SampleSheets(cheap, cfg, get_system(system).data(cfg), out_dir)


@pytest.mark.parametrize("system", SYSTEMS)
def test_resumed_run_equals_uninterrupted_run(system, tmp_path):
    """A run stopped after its first epoch (max_minutes=0) and resumed makes the same weights (every model, the
    moving average and the optimisers' moments included) and the same history as an uninterrupted one."""
    cfg = _fit_cfg(system)
    a = fit(system, cfg, tmp_path / "a", "cpu", progress=False, callbacks=[_cheap_sheets(system, cfg, tmp_path / "a")])
    stopped = fit(system, cfg, tmp_path / "b", "cpu", progress=False, max_minutes=0,
                  callbacks=[_cheap_sheets(system, cfg, tmp_path / "b")])
    assert list(stopped.history["epoch"]) == [0] and stopped.state.epoch == 1  # out of time after one epoch
    messages = []
    b = fit(system, cfg, tmp_path / "b", "cpu", progress=False, log=messages.append,
            callbacks=[_cheap_sheets(system, cfg, tmp_path / "b")])
    assert messages == [f"resuming from epoch 1 of 3, {tmp_path / 'b' / CHECKPOINT_NAME}"]
    assert set(a.models) == set(b.models) == set(get_system(system).build(cfg, "cpu"))
    for key in a.models:
        sa, sb = a.models[key].state_dict(), b.models[key].state_dict()
        assert list(sa) == list(sb)
        for name in sa:
            assert torch.equal(sa[name], sb[name]), f"{key}.{name}"
    for key, opt in a.state.optimizers.items():  # Adam / RMSprop moments too: a further epoch would agree as well
        ma, mb = opt.state_dict()["state"], b.state.optimizers[key].state_dict()["state"]
        assert all(torch.equal(ma[i][k], mb[i][k]) for i in ma for k in ma[i])
    assert a.history.equals(b.history) and list(b.history["epoch"]) == [0, 1, 2]
    assert a.state.step == b.state.step and torch.equal(a.state.generator.get_state(), b.state.generator.get_state())
    assert a.model is a.models[get_system(system).ema[0]]  # EMA on: the moving average is the model shipped
    assert np.isfinite(a.history.drop(columns="epoch").to_numpy()).all()
    names = lambda run: sorted(p.name for p in (tmp_path / run / "samples").glob("*.png"))  # noqa: E731
    assert names("a") == names("b") == ["epoch_0000.png", "epoch_0002.png"]  # first and last, by the true index


def test_checkpoint_of_another_run_is_refused(tmp_path):
    fit("voxel_cgan", _fit_cfg("voxel_cgan", epochs=1), tmp_path, "cpu", progress=False)
    with pytest.raises(ValueError, match=r"belongs to another run.*\['loss'\]"):
        fit("voxel_cgan", _fit_cfg("voxel_cgan", epochs=2, loss="triple"), tmp_path, "cpu", progress=False)
    fit("iwgan", _fit_cfg("iwgan", epochs=1), tmp_path / "iw", "cpu", progress=False)
    with pytest.raises(ValueError, match=r"belongs to another run.*\['max_shapes'\]"):  # iwgan, another config
        fit("iwgan", _fit_cfg("iwgan", epochs=2, max_shapes=11), tmp_path / "iw", "cpu", progress=False)


def test_checkpoint_from_before_an_option_existed_resumes_at_its_default(tmp_path):
    """A checkpoint written before an option was added (its config lacks the key) ran with the option's default:
    it resumes; asking for another value of that option is refused, naming it. A checkpoint of the config before
    the refactor (category + data source, output beside variant, size) is upgraded and resumes too."""
    fit("voxel_cgan", _fit_cfg("voxel_cgan", epochs=1), tmp_path, "cpu", progress=False)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT_NAME)
    for key in ("consistency", "pairing_steps"):
        del ckpt["config"][key]
    ckpt["config"].update(data="procedural", category="car", output="probs", size=32)  # the old layout
    save_checkpoint(tmp_path / CHECKPOINT_NAME, ckpt)
    history = fit("voxel_cgan", _fit_cfg("voxel_cgan", epochs=2), tmp_path, "cpu", progress=False).history
    assert list(history["epoch"]) == [0, 1]
    with pytest.raises(ValueError, match=r"belongs to another run.*\['consistency'\]"):
        fit("voxel_cgan", _fit_cfg("voxel_cgan", epochs=3, consistency=1.0), tmp_path, "cpu", progress=False)


def _diverging(system: str, how: str, from_epoch: int = 2):
    """The system with its step wrapped: from ``from_epoch`` on, ``"loss"``: the step reports a NaN critic loss;
    ``"weights"``: D's weights turn NaN before the step (a diverged critic; the step itself notices)."""
    real = get_system(system)

    def step(models, optimizers, batch, cfg, state):
        if state.epoch >= from_epoch and how == "weights":
            with torch.no_grad():
                next(models["D"].parameters()).fill_(float("nan"))
        out = real.step(models, optimizers, batch, cfg, state)
        return {**out, "loss_d": float("nan")} if state.epoch >= from_epoch and how == "loss" else out

    return dataclasses.replace(real, step=step)


@pytest.mark.parametrize("system", SYSTEMS)
def test_nan_stops_training_and_keeps_last_good_checkpoint(system, tmp_path):
    fit(system, _fit_cfg(system, epochs=2), tmp_path, "cpu", progress=False)
    ckpt = tmp_path / CHECKPOINT_NAME
    before = ckpt.read_bytes()
    # a step reporting a NaN loss: the run stops at that batch, before anything is written
    kept = f"the last good checkpoint is kept at {re.escape(str(ckpt))}"
    with pytest.raises(FloatingPointError, match=rf"{system}: \['loss_d'\] became NaN/inf at epoch 2, batch \d+; "
                                                 rf"{kept}"):
        fit(_diverging(system, "loss"), _fit_cfg(system, epochs=4), tmp_path, "cpu", progress=False)
    assert ckpt.read_bytes() == before
    # a diverged critic: the step raises at the first batch of epoch 2, the message names the kept checkpoint
    with pytest.raises(FloatingPointError, match=rf"{system}: epoch 2, batch \d+: .*NaN or inf.*; {kept}"):
        fit(_diverging(system, "weights"), _fit_cfg(system, epochs=4), tmp_path, "cpu", progress=False)
    assert ckpt.read_bytes() == before
    good = load_checkpoint(ckpt)
    assert good["epoch"] == 2 and all(torch.isfinite(t).all() for t in good["models"]["D"].values())
    # and it resumes: with a sane critic the run finishes
    assert list(fit(system, _fit_cfg(system, epochs=3), tmp_path, "cpu", progress=False).history["epoch"]) == [0, 1, 2]


@pytest.mark.parametrize("system", SYSTEMS)
def test_torchrun_two_processes_keep_identical_weights(system, tmp_path):
    # torchrun, 2 CPU processes (gloo): averaged gradients and rank-0 BatchNorm statistics keep both copies equal
    r0, _ = run_two_processes(f"_ddp_worker.py {system}", tmp_path)
    cfg = CONFIGS[system]()
    seed_everything(cfg.seed)
    initial = get_system(system).build(cfg, "cpu")[GENERATOR[system]].state_dict()  # the common initial weights
    assert set(initial) == set(r0["G"])
    assert any(not torch.equal(initial[k], r0["G"][k]) for k in initial)  # training moved them
    assert len(r0["loss_d"]) == cfg.epochs


def test_tiny_model_learns():
    # a small cGAN on 8 procedural cars: after 60 steps its samples match the real set far better than at start
    torch.manual_seed(0)
    real = make_conditions(procedural_shapes("car", 8, seed=0), 2)
    batch = {"voxels": torch.as_tensor(real, dtype=torch.float32)[:, :, None]}
    models = {"G": CGANGenerator(channels=(32, 16, 8, 8)), "D": CGANDiscriminator(channels=(8, 8, 16, 32))}
    opts = {k: torch.optim.Adam(m.parameters(), 1e-3, betas=(0.5, 0.999)) for k, m in models.items()}
    cfg, state = _cgan_cfg(loss="bce"), _state(models, opts)
    before = evaluate_voxel_cgan(models["G"], real, n_consistency=16, n_generated=8)
    for _ in range(60):
        voxel_cgan_step(models, opts, batch, cfg, state)
    after = evaluate_voxel_cgan(models["G"], real, n_consistency=16, n_generated=8)
    # the trajectory is chaotic: rounding (which GEMM backend, which CPU) moves where 60 steps land. Over both GEMM
    # backends and seeds 0-2 on an Intel Xeon, IoU to the nearest real shape went from 0.066 to 0.13-0.49 and the
    # occupancy error from 18 to 0.01-0.58, so the bounds below hold with room and still fail an untrained G
    assert after["avar_real"] > 1.5 * before["avar_real"], (before, after)  # IoU to the nearest real shape
    assert after["occupancy_error"] < before["occupancy_error"] / 5, (before, after)


# --------------------------------------------------------------------------------------------------
# weights and cards
# --------------------------------------------------------------------------------------------------
def test_int8_per_channel_quantisation_error_bound():
    w = torch.randn(6, 3, 4, 4, 4)
    q, scale = quantize_int8(w)
    assert q.dtype == torch.int8 and scale.shape == (6,)
    err = (dequantize_int8(q, scale) - w).abs().reshape(6, -1).amax(1)
    assert torch.all(err <= scale / 2 + 1e-7)  # rounding error at most half a step per channel


def test_weights_dtypes_and_corrupt_files(tmp_path):
    sd = {"w": torch.randn(4, 3), "b": torch.randn(4), "n": torch.tensor(7)}
    for dtype in ("fp16", "fp32", "int8"):
        save_weights(tmp_path / f"{dtype}.safetensors", sd, dtype=dtype)
        back = load_weights(tmp_path / f"{dtype}.safetensors")
        assert set(back) == set(sd) and back["n"].item() == 7
        torch.testing.assert_close(back["w"], sd["w"], atol=0.05, rtol=0.01)
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes((tmp_path / "fp16.safetensors").read_bytes()[:-9])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_weights(trunc)
    with pytest.raises(ValueError, match="NaN or inf"):
        save_weights(tmp_path / "nan.safetensors", {"w": torch.tensor([float("nan")])})
    assert not (tmp_path / "nan.safetensors").exists()  # nothing written half-way
    with pytest.raises(ValueError, match="unknown weight dtype"):
        save_weights(tmp_path / "x.safetensors", sd, dtype="bf8")


def _saved_generator(tmp_path):
    cfg = _fit_cfg("voxel_cgan")
    torch.manual_seed(0)
    G = CGANGenerator().eval()
    path = save_pretrained(G, "voxel_cgan", cfg.to_dict(), tmp_path / "bce.safetensors", profile="smoke",
                           command="test", data="procedural", metrics={"aad": 0.5}, dtype="int8")
    return G, path


def test_pretrained_round_trip_with_card(tmp_path):
    G, path = _saved_generator(tmp_path)
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["metrics"] == {"aad": 0.5} and card["weights"]["dtype"] == "int8" and card["parameters"] == 6_049_185
    G2, card2 = load_pretrained(path)
    assert card2 == card and not G2.training
    z = torch.randn(4, 200)
    a, b = G(z, torch.tensor([0, 1, 0, 1])), G2(z, torch.tensor([0, 1, 0, 1]))
    assert metrics.avar(a, b) > 0.95  # int8 weights draw the same shapes
    # a card that names a different network is refused clearly
    card["config"]["z_dim"] = 100
    path.with_suffix(".json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="do not match"):
        load_pretrained(path)


def test_pretrained_weights_other_than_the_cards_are_refused(tmp_path):
    """The card's sha256 is checked: one flipped byte is refused naming both hashes; verify=False loads them."""
    from voxhelpers.data.io import sha256

    _, path = _saved_generator(tmp_path)
    expected = json.loads(path.with_suffix(".json").read_text())["weights"]["sha256"]
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01  # the last byte: a weight's low bits, the file still parses
    path.write_bytes(bytes(data))
    actual = sha256(path)
    assert actual != expected
    with pytest.raises(ValueError, match=rf"sha256 {actual} differs from its card's {expected}.*verify=False"):
        load_pretrained(path)
    G, card = load_pretrained(path, verify=False)
    assert isinstance(G, CGANGenerator) and card["weights"]["sha256"] == expected


# --------------------------------------------------------------------------------------------------
# the allocator
# --------------------------------------------------------------------------------------------------
_FAULTS_SCRIPT = """
import resource, sys, torch
if sys.argv[1] == "retain":
    from voxhelpers.training import retain_freed_memory
    assert retain_freed_memory()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
counts = []
for _ in range(6):  # a step's worth of large activations, allocated and freed again and again
    f0 = faults()
    xs = [torch.empty(10 << 20).fill_(1.0) for _ in range(4)]  # 4 x 40 MiB, above glibc's 32 MiB mmap cap
    del xs
    counts.append(faults() - f0)
print(sum(counts[2:]))  # the last four rounds
"""


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's mallopt")
def test_retain_freed_memory_stops_the_page_faults_of_reallocation():
    """Without it every 40 MiB block is mapped and faulted in afresh (4 rounds x 4 blocks x 10,240 pages); with it,
    the blocks are reused (at most the odd block faulted in again as the heap settles)."""
    import subprocess

    def last_round_faults(mode: str) -> int:
        out = subprocess.run([sys.executable, "-c", _FAULTS_SCRIPT, mode], capture_output=True, text=True, check=True)
        return int(out.stdout.split()[-1])

    assert last_round_faults("default") > 4 * 4 * 10240 * 0.9
    assert last_round_faults("retain") < 2 * 10240


def test_summarise_epoch_sums_steps_averages_finite_values_and_repeats_the_last():
    from voxhelpers.systems import summarise_epoch

    nan, last = float("nan"), {}
    rows = [{"loss_d": 1.0, "loss_g": nan, "g_steps": 0.0, "d_steps": 2.0},
            {"loss_d": 3.0, "loss_g": 2.0, "g_steps": 1.0, "d_steps": 2.0}]
    # loss_d (1 + 3) / 2 = 2; loss_g: the mean of its one finite value; *_steps summed: 0 + 1 and 2 + 2
    assert summarise_epoch(rows, last) == {"loss_d": 2.0, "loss_g": 2.0, "g_steps": 1.0, "d_steps": 4.0}
    assert last == {"loss_d": 2.0, "loss_g": 2.0}
    # an epoch without a generator step repeats the last generator loss; a key never finite stays NaN
    row = summarise_epoch([{"loss_d": 5.0, "loss_g": nan, "g_steps": 0.0, "loss_pair": nan}], last)
    assert row["loss_d"] == 5.0 and row["loss_g"] == 2.0 and row["g_steps"] == 0.0 and np.isnan(row["loss_pair"])
    assert last == {"loss_d": 5.0, "loss_g": 2.0}
