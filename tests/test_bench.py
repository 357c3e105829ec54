"""Tests for voxhelpers.bench: the GEMM peak, FLOP counting, the case registry and the markdown report.

Nothing here asserts a wall time: the machines running the tests are shared and drift.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from voxhelpers import bench
from voxhelpers.bench import report
from voxhelpers.nets import fast_conv3d


def test_gemm_peak_positive_finite_and_max_of_the_two():
    peak = bench.measure_gemm_peak(n=128, repeats=2, device="cpu", warmup=1)
    assert peak.n == 128 and peak.device == "cpu" and peak.dtype == "float32"
    for g in (peak.mm_gflops, peak.conv_gflops, peak.peak_gflops):
        assert math.isfinite(g) and g > 0
    assert peak.peak_gflops == max(peak.mm_gflops, peak.conv_gflops)
    assert peak.peak_for("fp32") == peak.peak_gflops
    from voxhelpers.systems.base import native_bf16

    if native_bf16("cpu"):  # a CPU with AMX or AVX-512 BF16: the bf16 product is measured too
        assert math.isfinite(peak.extra["bf16_mm"]) and peak.peak_for("bf16") == peak.extra["bf16_mm"] > 0
    else:  # no bf16 figure: falls back to fp32
        assert "bf16_mm" not in peak.extra and peak.peak_for("bf16") == peak.peak_gflops


def test_gemm_peak_without_native_bf16_has_no_bf16_figure(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    peak = bench.measure_gemm_peak(n=64, repeats=1, device="cpu", warmup=0)
    assert "bf16_mm" not in peak.extra and peak.peak_for("bf16") == peak.peak_gflops


def test_gemm_operands_are_the_same_product():
    n = 16
    ops = bench.gemm_operands(n)
    assert ops["x"].is_contiguous(memory_format=torch.channels_last)
    assert ops["w"].is_contiguous(memory_format=torch.channels_last)
    # conv2d(x, w)[0, o, 0, p] = sum_i w[o, i] * x[0, i, 0, p]: the matrix product W (n×n) @ X (n×n)
    conv = F.conv2d(ops["x"], ops["w"])[0, :, 0, :]
    torch.testing.assert_close(conv, ops["w"][:, :, 0, 0] @ ops["x"][0, :, 0, :], rtol=1e-4, atol=1e-4)
    # both are exactly 2·n³ FLOPs
    assert bench.count_flops(lambda: torch.mm(ops["a"], ops["b"])) == 2 * n**3
    assert bench.count_flops(lambda: F.conv2d(ops["x"], ops["w"])) == 2 * n**3


def test_count_flops_of_a_linear_layer():
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    x = torch.randn(16, 64, requires_grad=True)
    # forward: y = x W^T + b is one (16×64)·(64×32) product, 16·32 outputs of 64 multiply-adds each:
    # 2 · 16 · 64 · 32 = 65,536 FLOPs (the bias add is not a matmul and counts zero)
    assert bench.count_flops(lambda: lin(x)) == 2 * 16 * 64 * 32 == 65_536
    # forward + backward: dL/dx = g W (16×32)·(32×64) and dL/dW = g^T x (32×16)·(16×64), each as large as the
    # forward product, so 3 · 65,536 in all
    assert bench.count_flops(lambda: lin(x).sum().backward()) == 3 * 65_536


def test_time_counted_ops_times_exactly_the_counted_ops():
    """The ops timed apart are the ones count_flops counts: a linear layer's forward + backward is one addmm and two
    mm (3 calls); element-wise work is not timed; their seconds fit inside the call's own wall time."""
    torch.manual_seed(0)
    lin = torch.nn.Linear(64, 32)
    x = torch.randn(16, 64, requires_grad=True)
    t0 = time.perf_counter()
    seconds, calls = bench.time_counted_ops(lambda: torch.tanh(lin(x)).sum().backward())
    wall = time.perf_counter() - t0
    assert calls == 3 and 0 < seconds < wall
    y = torch.randn(256, 256)
    assert bench.time_counted_ops(lambda: (y.exp() * 2).sum()) == (0.0, 0)
    conv = torch.nn.Conv3d(2, 4, 3)
    v = torch.randn(1, 2, 6, 6, 6)
    assert bench.time_counted_ops(lambda: conv(v).sum().backward())[1] == 2  # convolution + convolution_backward


def test_time_calls_counts_calls_and_rejects_bad_arguments():
    calls = []
    times = bench.time_calls(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(times) == 3 and len(calls) == 5 and all(t >= 0 for t in times)
    with pytest.raises(ValueError):
        bench.time_calls(lambda: None, repeats=0)


def test_registry_has_the_cases_and_rejects_duplicates(monkeypatch):
    assert {"voxel_cgan_iteration", "voxel_cgan_generator_fwd", "voxel_metrics_1000x80"} <= set(bench.CASES)
    opts = bench.BenchOptions(torch.device("cpu"), quick=True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    rows = bench.CASES["voxel_cgan_iteration"](opts)  # builders are lazy: nothing is built until setup()
    assert [r.fmt for r in rows] == ["channels_last_3d", "contiguous", "channels_last_3d", "channels_last_3d"]
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)  # AMX: a bf16 row too
    bf16 = bench.CASES["voxel_cgan_iteration"](opts)[-1]
    assert bf16.fmt == "channels_last_3d, bf16" and bf16.peak_kind == "bf16" and "--precision auto" in bf16.notes
    out = bf16.setup()()  # it runs (emulated where the CPU has no bf16 units)
    assert np.isfinite(out["loss_d"]) and np.isfinite(out["loss_g"])
    assert "fast_paths(False)" in rows[2].notes and "fast_paths" not in rows[0].notes
    # the backend this CPU does not pick
    other = next(b for b in fast_conv3d.GEMM_BACKENDS if b != fast_conv3d.GEMM_BACKEND)
    assert f"gemm_backend({other!r})" in rows[3].notes and "gemm_backend" not in rows[2].notes
    with pytest.raises(ValueError, match="already registered"):
        bench.register_case("voxel_cgan_iteration")(lambda o: [])


def test_run_case_and_report_of_a_custom_case():
    lin = torch.nn.Linear(64, 32)
    x = torch.randn(16, 64)
    case = bench.BenchCase("toy_linear", lambda: (lambda: lin(x)), batch=16, samples=16, fmt="dense",
                           notes="a | pipe", derive=lambda s: "derived")
    peak = bench.GemmPeak(10.0, 20.0, 8, "cpu")
    r = bench.run_case(case, peak, repeats=2, device="cpu")
    assert r.flops == 65_536 and len(r.seconds) == 2 and r.peak_gflops == 20.0
    assert r.samples_per_s > 0 and r.gflops > 0 and r.pct_of_peak == pytest.approx(100 * r.gflops / 20.0)
    assert r.peak_rss_mb > 0 and "derived" in r.notes
    text = bench.format_markdown(bench.BenchReport(peak, [r], torch.device("cpu"), repeats=2))
    row = next(line for line in text.splitlines() if line.startswith("| `toy_linear`"))
    assert len(row.strip("|").split("|")) == len(bench.COLUMNS)  # the pipe in the notes was escaped


def test_run_case_pairs_each_call_with_a_probed_peak():
    """With a probe, every timed call gets the peak probed right before it, and the paired ratio is the median of
    the per-call ratios (a fake probe makes the expected value exact)."""
    lin = torch.nn.Linear(64, 32)
    x = torch.randn(16, 64)
    case = bench.BenchCase("toy_linear", lambda: (lambda: lin(x)), batch=16, samples=16, fmt="dense")
    peaks = iter([1e-3, 2e-3, 4e-3])
    kinds = []
    r = bench.run_case(case, bench.GemmPeak(10.0, 20.0, 8, "cpu"), repeats=3, device="cpu",
                       probe=lambda kind: kinds.append(kind) or next(peaks))
    assert kinds == ["fp32"] * 3 and r.paired_peaks == [1e-3, 2e-3, 4e-3]
    per_call = sorted(100 * 65_536 / t / 1e9 / p for t, p in zip(r.seconds, r.paired_peaks, strict=True))
    assert r.pct_of_paired_peak == pytest.approx(per_call[1])
    assert f"{per_call[1]:.1f} % (median" in r.notes
    plain = bench.run_case(case, bench.GemmPeak(10.0, 20.0, 8, "cpu"), repeats=2, device="cpu")
    assert plain.paired_peaks == [] and plain.pct_of_paired_peak is None and "probed" not in plain.notes
    # the session's peak (20 GFLOP/s, the faster of mm and conv, say measured in a busy moment) is raised to a
    # faster probe beside the case
    peaks = iter([1e-3, 30.0, 4e-3])
    fast = bench.run_case(case, bench.GemmPeak(10.0, 20.0, 8, "cpu"), repeats=3, device="cpu",
                          probe=lambda kind: next(peaks))
    assert fast.peak_gflops == 30.0 and r.peak_gflops == 20.0


def test_peak_probe_measures_a_plausible_gemm_rate():
    probe = bench.PeakProbe(64, "cpu")
    g = probe("fp32")
    assert 0.01 < g < 1e5  # GFLOP/s of a 64³ product on any CPU
    assert probe("bf16") > 0  # no bf16 operands on CPU: falls back to the fp32 probe


def test_quick_cgan_iteration_runs_the_real_step():
    """Guards the case against API drift of ``voxhelpers.systems.voxel_cgan.step`` (tiny batch; channels-last row
    only)."""
    opts = bench.BenchOptions(torch.device("cpu"), quick=True)
    case = bench.CASES["voxel_cgan_iteration"](opts)[0]
    case.warmup = 0  # the FLOP-counting call already warmed it up
    r = bench.run_case(case, bench.GemmPeak(1.0, 1.0, 8, "cpu"), repeats=1, device="cpu")
    assert r.fmt == "channels_last_3d" and r.batch == 4 and r.flops > 0 and r.samples_per_s > 0
    assert "401-epoch seed run" in r.notes
    assert "matrix products and convolutions alone" in r.notes and "the other ops ≈" in r.notes


def test_quick_step_cases_make_the_updates_their_notes_name():
    """Each step case calls its system's real step (guarding it against API drift) and every call makes the same
    updates: the cGAN's gate is reset, so both D steps run on every call; the critic case's batch index is not a
    multiple of n_critic (no generator update), the VAE case's is 0 (generator update), on every call."""
    opts = bench.BenchOptions(torch.device("cpu"), quick=True)
    cgan = bench.CASES["voxel_cgan_iteration"](opts)[0].setup()
    outs = [cgan(), cgan()]
    assert [o["d_steps"] for o in outs] == [2.0, 2.0] and all(math.isfinite(o["loss_pair"]) for o in outs)
    critic = bench.CASES["iwgan_critic_step"](opts)[0].setup()
    outs = [critic(), critic()]
    assert [o["g_steps"] for o in outs] == [0.0, 0.0] and all(math.isnan(o["loss_g"]) for o in outs)
    assert all(math.isfinite(o["loss_d"]) for o in outs)
    vae = bench.CASES["vae_iwgan_step"](opts)[0].setup()
    outs = [vae(), vae()]
    assert [o["g_steps"] for o in outs] == [1.0, 1.0] and all(math.isfinite(o["loss_g"]) for o in outs)
    generator_step = bench.CASES["iwgan_generator_step"](opts)[0].setup()
    assert math.isfinite(generator_step())
    views = bench.CASES["render_64x128"](opts)[0].setup()()
    assert views.shape == (4, 3, 32, 32)  # quick: 4 shapes at 32²


def test_main_quick_writes_the_markdown_table(tmp_path, capsys):
    out = tmp_path / "sub" / "b.md"
    assert bench.main(["--quick", "--out", str(out), "--cases", "voxel_cgan_generator_fwd,voxel_metrics_1000x80"]) == 0
    text = out.read_text()
    assert text.strip() in capsys.readouterr().out  # printed as well
    lines = text.splitlines()
    header = "| " + " | ".join(bench.COLUMNS) + " |"
    assert header in lines
    for word in ("torch", "threads", "CPU", "GEMM", "peak"):
        assert word in text
    rows = [line for line in lines if line.startswith("| `")]
    assert [r.split("|")[1].strip() for r in rows] == ["`voxel_cgan_generator_fwd`"] * 2 + ["`voxel_metrics_1000x80`"]
    assert [r.split("|")[2].strip() for r in rows] == ["channels_last_3d", "contiguous", "bool"]
    for r in rows:
        cells = [c.strip() for c in r.strip().strip("|").split("|")]
        assert len(cells) == len(bench.COLUMNS)
        assert float(cells[3].replace(",", "")) > 0  # samples/s
    metrics_cells = [c.strip() for c in rows[-1].strip().strip("|").split("|")]
    assert metrics_cells[4] == metrics_cells[5] == "—"  # no FLOP figures for the metrics case
    assert not list(out.parent.glob(".*.tmp"))  # the temporary file was renamed away


def test_main_rejects_an_unknown_case(tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--quick", "--out", str(tmp_path / "b.md"), "--cases", "no_such_case"])


def test_ratio_lines_pair_the_right_rows():
    """channels-last against contiguous uses the fast row; the plain-layers and other-GEMM rows get their own lines."""
    def row(fmt, seconds, notes=""):
        return bench.CaseResult("it", fmt, 8, [seconds], 10**9, 100.0, 1.0, "case", 8, notes)

    lines = report._format_ratios([row("channels_last_3d", 2.0), row("contiguous", 3.0),
                                   row("channels_last_3d", 5.0, "x; plain torch.nn layers (fast_paths(False))"),
                                   row("channels_last_3d", 2.5, "x; GEMMs on the other backend (gemm_backend('mkl'))")])
    assert lines == ["- `it`: channels_last_3d is 1.50× the speed of contiguous (same run)",
                     "- `it` [channels_last_3d]: the layers' CPU fast paths are 2.50× the speed of plain torch.nn "
                     "layers (same run)",
                     f"- `it` [channels_last_3d]: the fast paths' GEMMs on {fast_conv3d.GEMM_BACKEND} are 1.25× the "
                     "speed of the same on the other backend (same run)"]


@pytest.mark.parametrize("name", ["drr_chest_parallel", "drr_chest_cone_256", "xray_ct_step", "vnet_step",
                                  "sliding_window_vnet"])
def test_quick_cases_of_the_new_systems_run(name):
    """Each row of the case builds and makes one call at the quick sizes (the real sizes run in `bench`)."""
    opts = bench.BenchOptions(torch.device("cpu"), quick=True)
    rows = bench.CASES[name](opts)
    assert rows and all(r.name == name for r in rows)
    for row in rows:
        row.setup()()


def test_vnet_port_step_crops_one_window_per_volume_and_steps_on_monais_loss():
    from monai.losses import DiceFocalLoss

    from voxhelpers.bench.segmentation import vnet_port_step
    from voxhelpers.nets.vnet import VNet

    torch.manual_seed(0)
    net = VNet(spatial_dims=3, in_channels=1, out_channels=3, width=0.125)
    image = torch.rand(2, 1, 32, 32, 48)
    labels = torch.randint(0, 3, (2, 32, 32, 48))
    loss_fn, seen = DiceFocalLoss(softmax=True, to_onehot_y=True), []
    net.register_forward_hook(lambda m, i, o: seen.append((i[0].detach().clone(), o.detach().clone())))
    before = [p.detach().clone() for p in net.parameters()]
    loss = vnet_port_step(net, torch.optim.Adam(net.parameters(), 1e-3), image, labels, (16, 16, 32), loss_fn,
                          torch.Generator().manual_seed(3))
    x, out = seen[0]
    assert x.shape == (2, 1, 16, 16, 32)
    for b in range(2):  # each patch is one window of its own volume
        hits = [(i, j, k) for i in range(17) for j in range(17) for k in range(17)
                if torch.equal(image[b, :, i:i + 16, j:j + 16, k:k + 32], x[b])]
        assert len(hits) == 1
        i, j, k = hits[0]
        if b == 0:
            y0 = labels[0, i:i + 16, j:j + 16, k:k + 32]
        else:
            y1 = labels[1, i:i + 16, j:j + 16, k:k + 32]
    assert loss == pytest.approx(float(loss_fn(out, torch.stack([y0, y1])[:, None])), rel=1e-6)
    assert any(not torch.equal(a, p) for a, p in zip(before, net.parameters(), strict=True))
