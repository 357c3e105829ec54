"""System 5 end to end: config checks, case preparation (orientation, resampling, windowing, the foreground crop),
patches and the left-right mirror, folds by patient, exact resume, a tiny network that learns, the OpenKBP listing."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from voxhelpers.config.vnet import VNetConfig, parse_label_map, vnet_config
from voxhelpers.data.ct_io import reorient
from voxhelpers.data.segmentation import lr_swap, patch_start, phantom_case, prepare_case
from voxhelpers.systems import get_system
from voxhelpers.systems.base import SmallInputFp32Conv3d, bf16_weight_grad_faulty, guard_bf16_convs
from voxhelpers.systems.vnet import SegmentationDataset, _crop_batch, evaluate_cases, learning_rate, summarise_cases
from voxhelpers.training import TrainState, fit

NAMES = ("organ_a", "organ_b")


def _cfg(**kw):
    base = {"data": "nifti:/nowhere", "classes": NAMES, "width": 0.125, "volume_shape": (32, 32, 32),
            "patch_size": (16, 16, 16), "spacing": None, "n_folds": 2, "max_cases": None, "epochs": 3,
            "batch_size": 2, "sample_every": 100, "flip_lr": False, "intensity": 0.0, "norm": "batch",
            "dropout": 0.0, "overlap": 0.0, "precision": "fp32"}
    return vnet_config("smoke", **{**base, **kw})


def _cases(n=4, **kw):
    return [prepare_case(phantom_case(s, names=NAMES), 3, name=f"ph{s}", volume_shape=(32, 32, 32), **kw)
            for s in range(n)]


# --------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kw,match", [
    ({"data": "openkbp:test"}, "OpenKBP split"),
    ({"data": "dicom:/x"}, "data must be"),
    ({"fold": 3, "n_folds": 3}, "fold < n_folds"),
    ({"patch_size": (24, 32, 32)}, "multiple of 16"),
    ({"patch_size": (64, 64, 64), "volume_shape": (32, 32, 32)}, "must fit in volume_shape"),
    ({"data": "nifti:/x", "classes": None}, "nifti: data needs classes"),
    ({"label_map": "5:1,5:2"}, "label_map must be"),
    ({"window": (250.0, -175.0)}, "high > low"),
    ({"network": "unet"}, "network must be one of"),
    ({"dice_weight": 0.0, "focal_weight": 0.0}, "not both 0"),
    ({"norm": "instance", "patch_size": (16, 16, 16), "volume_shape": (32, 32, 32)}, "bottleneck"),
])
def test_bad_config_values_name_the_field(kw, match):
    with pytest.raises(ValueError, match=match):
        vnet_config("smoke", **kw)


def test_config_defaults_and_class_names():
    cfg = VNetConfig()
    assert cfg.n_classes == 8 and cfg.class_names[0] == "Brainstem"  # OpenKBP: background + 7 organs
    assert vnet_config("smoke", data="flare22:/x").n_classes == 14
    assert parse_label_map("5:1, 2:2") == {5: 1, 2: 2} and parse_label_map(None) is None
    assert VNetConfig.from_dict(cfg.to_dict()) == cfg  # a card's config round trip


# --------------------------------------------------------------------------------------------------
# preparation
# --------------------------------------------------------------------------------------------------
def test_prepare_case_reorients_windows_and_crops_around_the_body():
    vol = phantom_case(1, shape=(40, 36, 32), names=NAMES)
    lps = reorient(vol, "LPS")  # the same patient stored another way round
    a = prepare_case(vol, 3, volume_shape=(32, 32, 32))
    b = prepare_case(lps, 3, volume_shape=(32, 32, 32))
    np.testing.assert_array_equal(a.labels, b.labels)  # back in RAS whatever the stored orientation
    np.testing.assert_array_equal(a.image, b.image)
    assert a.image.shape == (1, 32, 32, 32) and a.image.dtype == np.float16
    assert 0 <= a.image.min() and a.image.max() <= 1
    # window [-175, 250]: air → 0, soft tissue 40 HU → (40 + 175) / 425
    assert a.image[0, 0, 0, 0] == 0
    assert abs(float(np.median(a.image[0][a.labels == 0][a.image[0][a.labels == 0] > 0])) - 215 / 425) < 0.05
    # the crop keeps every organ voxel (the body is centred)
    assert [(a.labels == k).sum() for k in (1, 2)] == [(vol.labels == k).sum() for k in (1, 2)]


def test_resampling_keeps_labels_nearest_and_spacing_right():
    vol = phantom_case(2, shape=(32, 32, 32), names=NAMES, spacing=(2.0, 2.0, 3.0))
    c = prepare_case(vol, 3, spacing=(4.0, 4.0, 4.0))
    assert c.labels.shape == (16, 16, 24) and c.spacing == (4.0, 4.0, 4.0)
    assert set(np.unique(c.labels)) <= {0, 1, 2}  # never an interpolated id
    ratio = (c.labels > 0).sum() * 64 / ((vol.labels > 0).sum() * 12)  # organ volume in mm³ is kept
    assert 0.8 < ratio < 1.25


def test_bad_cases_raise():
    vol = phantom_case(0, names=NAMES)
    with pytest.raises(ValueError, match="label id 2 but only 2 classes"):
        prepare_case(vol, 2)
    bad = dataclasses.replace(vol, hu=np.full(vol.hu.shape, np.nan, np.float32))
    with pytest.raises(ValueError, match="NaN or inf"):
        prepare_case(bad, 3)
    with pytest.raises(ValueError, match="share one shape"):
        SegmentationDataset([prepare_case(vol, 3), prepare_case(phantom_case(0, (16, 16, 16), NAMES), 3)])


def test_label_map_maps_ids_and_drops_the_rest():
    vol = phantom_case(0, names=("a", "b", "c"))
    c = prepare_case(vol, 2, label_map={2: 1})  # keep organ 2 as class 1; organs 1 and 3 become background
    assert c.labels.max() == 1 and (c.labels == 1).sum() == (vol.labels == 2).sum()
    assert list(c.labelled) == [True]


# --------------------------------------------------------------------------------------------------
# patches and mirror
# --------------------------------------------------------------------------------------------------
def test_positive_patches_hold_an_organ_and_draws_repeat_with_the_seed():
    labels = torch.zeros(32, 32, 32, dtype=torch.long)
    labels[27:30, 2:4, 5:7] = 1
    for seed in range(20):
        x0, y0, z0 = patch_start(labels, (16, 16, 16), True, torch.Generator().manual_seed(seed))
        assert labels[x0:x0 + 16, y0:y0 + 16, z0:z0 + 16].any() and 0 <= min(x0, y0, z0) and max(x0, y0, z0) <= 16
    draws = [patch_start(labels, (16, 16, 16), False, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert draws[0] == draws[1]


def test_class_balanced_draws_centre_a_thin_organ_as_often_as_a_large_one():
    """``by_class``: one of the classes present first, each as likely, then a voxel of it (MONAI's
    RandCropByLabelClasses, equal ratios); by voxel a one-voxel organ beside a 27,000-voxel one is almost never a
    centre. The voxel draw's stream is unchanged by the option (old runs replay)."""
    labels = torch.zeros(40, 40, 40, dtype=torch.long)
    labels[:30, :30, :30] = 1
    labels[36, 36, 36] = 2  # the thin organ: its patch's corner is clamped to (32, 32, 32)
    n = 400
    gen = torch.Generator().manual_seed(0)
    by_class = sum(patch_start(labels, (8, 8, 8), True, gen, by_class=True) == (32, 32, 32) for _ in range(n))
    gen = torch.Generator().manual_seed(0)
    by_voxel = sum(patch_start(labels, (8, 8, 8), True, gen) == (32, 32, 32) for _ in range(n))
    assert abs(by_class / n - 0.5) < 0.08 and by_voxel == 0
    gen_a, gen_b = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert [patch_start(labels, (8, 8, 8), True, gen_a) for _ in range(5)] == \
        [patch_start(labels, (8, 8, 8), True, gen_b, by_class=False) for _ in range(5)]
    empty = torch.zeros(20, 20, 20, dtype=torch.long)  # no organ: a uniform corner either way
    assert all(0 <= c <= 12 for c in patch_start(empty, (8, 8, 8), True, torch.Generator().manual_seed(1), True))


def test_lr_mirror_swaps_left_and_right_organs():
    assert lr_swap(("Brainstem", "SpinalCord", "RightParotid", "LeftParotid", "Esophagus")).tolist() == \
        [0, 1, 2, 4, 3, 5]
    assert lr_swap(("kidney_right", "kidney_left", "liver")).tolist() == [0, 2, 1, 3]
    cfg = _cfg(classes=("Brainstem", "RightParotid", "LeftParotid"), flip_lr=True, pos_fraction=0.0,
               patch_size=(32, 32, 32))
    labels = torch.zeros(1, 32, 32, 32, dtype=torch.long)
    labels[0, 28:31, 10:12, 10:12] = 2  # right parotid, RAS: large x is the patient's right
    image = torch.rand(1, 1, 32, 32, 32)
    flipped = 0
    for seed in range(8):
        x, y = _crop_batch({"image": image, "labels": labels}, cfg, torch.Generator().manual_seed(seed))
        if (y == 3).any():  # mirrored: now a LEFT parotid, at small x
            flipped += 1
            assert not (y == 2).any() and y[0, 1:4].eq(3).any()
            torch.testing.assert_close(x, image.flip(2))
        else:
            torch.testing.assert_close(x, image) and torch.equal(y, labels)
    assert 0 < flipped < 8


def test_learning_rate_schedule():
    cfg = _cfg(epochs=11, lr=1e-3)
    assert learning_rate(cfg, 0) == pytest.approx(1e-3) and learning_rate(cfg, 10) == pytest.approx(1e-5)
    assert learning_rate(cfg, 5) == pytest.approx(1e-3 * (0.01 + 0.99 * 0.5))
    assert learning_rate(dataclasses.replace(cfg, lr_schedule="constant"), 7) == 1e-3


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------
def test_class_weights_are_inverse_frequency_of_the_training_labels():
    cases = _cases(2)
    ds = SegmentationDataset(cases, 1, 3, "auto")
    counts = np.bincount(np.concatenate([c.labels.ravel() for c in cases]), minlength=3)
    expected = counts.sum() / (3 * counts)
    np.testing.assert_allclose(ds.weights.numpy(), expected / expected.mean(), rtol=1e-5)
    assert torch.equal(SegmentationDataset(cases, 1, 3, "none").weights, torch.ones(3))


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    cfg, cases = _cfg(epochs=3, flip_lr=True, intensity=0.1), _cases(4)
    a = fit("vnet", cfg, tmp_path / "a", "cpu", data=cases, progress=False)
    fit("vnet", cfg, tmp_path / "b", "cpu", data=cases, progress=False, max_minutes=0)
    b = fit("vnet", cfg, tmp_path / "b", "cpu", data=cases, progress=False)
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k
    assert a.history.equals(b.history) and list(a.history["epoch"]) == [0, 1, 2]
    assert {"loss", "loss_dice", "loss_focal", "lr"} <= set(a.history.columns)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_tiny_network_learns_the_phantom_organs(precision):
    """180 steps on six 16³ phantoms: the training loss falls to under a quarter, and on two held-out phantoms the
    bone-like organ is found (Dice > 0.6; an untrained network scores < 0.1) — in fp32 and under bf16 autocast (on a
    CPU with AVX-512 BF16 and no AMX through ``guard_bf16_convs``: unguarded, this stopped on a NaN loss at step 0).
    At 120 steps this seed was borderline in either arithmetic (Dice 0.65 fp32, 0.55 bf16 on an EPYC); at 180 both
    reach 0.97."""
    torch.manual_seed(0)
    cfg = _cfg(epochs=60, lr=1e-2, width=0.5, volume_shape=(16, 16, 16), patch_size=(16, 16, 16),
               lr_schedule="constant", precision=precision)
    cases = [prepare_case(phantom_case(s, (24, 24, 24), NAMES), 3, name=f"ph{s}", volume_shape=(16, 16, 16))
             for s in range(8)]
    untrained = summarise_cases(evaluate_cases(get_system("vnet").build(cfg, "cpu")["net"], cfg, cases[6:], hd=False),
                                NAMES)
    result = fit("vnet", cfg, None, "cpu", data=cases[:6], progress=False)
    metrics = summarise_cases(evaluate_cases(result.model, cfg, cases[6:], hd=False), NAMES)
    assert untrained["dice_organ_b"] < 0.1 and metrics["dice_organ_b"] > 0.6, (untrained, metrics)
    assert result.history["loss"].iloc[-5:].mean() < 0.25 * result.history["loss"].iloc[:3].mean()


def test_bf16_precision_runs_the_network_in_bf16_and_keeps_fp32_weights():
    cfg, cases = _cfg(epochs=1, precision="bf16"), _cases(2)
    system = get_system("vnet")
    models = system.build(cfg, "cpu")
    seen = []
    models["net"].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    batch = next(iter(torch.utils.data.DataLoader(system.dataset(cfg, cases), batch_size=2)))
    optimizers = system.optimizers(cfg, models)
    state = TrainState(models, optimizers, torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in models["net"].parameters()]
    out = system.step(models, optimizers, batch, cfg, state)
    assert seen == [torch.bfloat16] and np.isfinite(out["loss"])
    assert all(p.dtype == torch.float32 for p in models["net"].parameters())
    assert any(not torch.equal(a, p) for a, p in zip(before, models["net"].parameters(), strict=True))


@pytest.mark.parametrize("unlabelled", ["marginal", "background"])
def test_step_takes_the_unlabelled_rule_into_both_terms(unlabelled):
    """organ_b not drawn in the second phantom (its voxels read background): the step's Dice and focal terms are the
    losses with that rule, on the network's own logits; the two rules differ there (marginal: the default)."""
    from voxhelpers.losses.segmentation import focal_loss, soft_dice_loss

    assert VNetConfig().unlabelled == "marginal"
    cfg, cases = _cfg(epochs=1, patch_size=(32, 32, 32), unlabelled=unlabelled), _cases(2)
    cases[1].labels[cases[1].labels == 2] = 0
    cases[1].labelled[1] = False
    system = get_system("vnet")
    models = system.build(cfg, "cpu")
    seen = []
    models["net"].register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    batch = next(iter(torch.utils.data.DataLoader(system.dataset(cfg, cases), batch_size=2)))
    assert batch["labelled"].tolist() == [[True, True, True], [True, True, False]]
    optimizers = system.optimizers(cfg, models)
    out = system.step(models, optimizers, batch, cfg, TrainState(models, optimizers, torch.Generator().manual_seed(0)))
    logits, y, w = seen[0], batch["labels"], batch["class_weights"][0].float()  # patch = volume: no crop, no flip
    terms = {rule: (soft_dice_loss(logits, y, w, labelled=batch["labelled"], marginal=rule == "marginal").item(),
                    focal_loss(logits, y, gamma=cfg.focal_gamma,
                               labelled=batch["labelled"] if rule == "marginal" else None).item())
             for rule in ("marginal", "background")}
    assert (out["loss_dice"], out["loss_focal"]) == pytest.approx(terms[unlabelled], rel=1e-5)
    assert terms["marginal"][1] < terms["background"][1]  # organ_b's probability no longer counts against it


def test_configs_from_before_the_marginal_loss_keep_the_background_rule(tmp_path):
    """A card or checkpoint without ``unlabelled`` trained with the old rule: read back as ``background``, and a new
    run (``marginal`` by default) refuses to resume such a checkpoint, naming the field."""
    from voxhelpers.config import project_root
    from voxhelpers.inference.pretrained import card_config, read_card

    old = {k: v for k, v in _cfg(pos_sampling="class").to_dict().items() if k not in ("unlabelled", "pos_sampling")}
    assert VNetConfig.from_dict(old).unlabelled == "background"
    assert VNetConfig.from_dict(old).pos_sampling == "voxel"  # nor the class-balanced draws (2026-12-01)
    assert VNetConfig().pos_sampling == "class"  # what a new run draws
    shipped = card_config(read_card(project_root() / "models/vnet/vnet_fold0.json"))  # trained 2026-12-02
    assert (shipped.unlabelled, shipped.pos_sampling) == ("marginal", "class")
    cfg, cases = _cfg(epochs=1, unlabelled="background"), _cases(2)
    fit("vnet", cfg, tmp_path, "cpu", data=cases, progress=False)
    with pytest.raises(ValueError, match="unlabelled"):
        fit("vnet", dataclasses.replace(cfg, unlabelled="marginal", epochs=2), tmp_path, "cpu", data=cases,
            progress=False)


def test_precision_auto_follows_the_hardware(monkeypatch):
    from voxhelpers.systems.base import autocast_for, resolve_precision

    assert resolve_precision("cuda", "auto") == "bf16" and resolve_precision("cpu", "fp32") == "fp32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    assert resolve_precision("cpu", "auto") == "fp32" and resolve_precision("cpu", "bf16") == "bf16"
    with autocast_for("cpu", "auto"):
        assert not torch.is_autocast_enabled("cpu")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)  # AMD Zen 4, no AMX
    assert resolve_precision("cpu", "auto") == "bf16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert resolve_precision("cpu", "auto") == "bf16"
    with autocast_for("cpu", "auto"):
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    with autocast_for("cpu"):  # None is "cuda": the GAN systems' rule, CPU stays fp32
        assert not torch.is_autocast_enabled("cpu")
    with autocast_for("cpu", "cuda"):
        assert not torch.is_autocast_enabled("cpu")
    assert resolve_precision("cuda", "cuda") == "bf16" and resolve_precision("cpu", "cuda") == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("cpu", "fp16")


def test_nan_loss_stops_before_the_update():
    cfg, cases = _cfg(epochs=1), _cases(2)
    cases[0].image[:] = np.nan
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        fit("vnet", cfg, None, "cpu", data=cases, progress=False)


# --------------------------------------------------------------------------------------------------
# real data: the OpenKBP listing and folds
# --------------------------------------------------------------------------------------------------
def test_openkbp_folds_are_by_patient_and_cover_every_screened_patient(data_root):
    from voxhelpers.systems.vnet import fold_names

    cfg = vnet_config("smoke", max_cases=None, n_folds=5)
    listed, train, val = fold_names(cfg)
    assert len(listed) == 200 and not {"pt_143", "pt_51", "pt_170"} & {n for n, _ in listed}
    seen = []
    for fold in range(5):
        _, tr, va = fold_names(dataclasses.replace(cfg, fold=fold))
        assert not set(tr) & set(va) and len(tr) + len(va) == 200
        seen += va
    assert sorted(seen) == sorted(n for n, _ in listed)
    splits = get_system("vnet").data(vnet_config("smoke"))
    c = splits.train[0]
    assert c.image.shape == (1, 32, 32, 32) and c.labelled.shape == (7,) and c.labels.max() <= 7


# --------------------------------------------------------------------------------------------------
# the k-fold report and the command line
# --------------------------------------------------------------------------------------------------
def test_kfold_table_pools_patients_over_folds(tmp_path):
    from voxhelpers.reports.vnet import kfold_cases, kfold_table

    rows = {0: [("p1", 0.8, 0.5, 2.0, float("inf")), ("p2", 0.6, float("nan"), 4.0, float("nan"))],
            1: [("p3", 0.7, 0.9, 6.0, 1.0)]}
    for fold, cases in rows.items():
        folder = tmp_path / f"openkbp_vnet_fold{fold}"
        folder.mkdir()
        pd.DataFrame(cases, columns=["case", "dice_a", "dice_b", "hd95_a", "hd95_b"]).to_csv(folder / "cases.csv",
                                                                                            index=False)
    found, missing = kfold_cases(tmp_path, ["vnet", "monai_unet"], n_folds=2)
    assert len(found) == 3 and missing == [str(tmp_path / "openkbp_monai_unet_fold0"),
                                           str(tmp_path / "openkbp_monai_unet_fold1")]
    table = kfold_table(found, ["a", "b"])
    assert table.loc["a", ("vnet", "dice")] == "0.700 ± 0.100"  # over the 3 patients of both folds
    assert table.loc["b", ("vnet", "dice")] == "0.700 ± 0.283"  # p2's b not delineated: skipped
    assert table.loc["b", ("vnet", "hd95 missed")] == 1 and table.loc["b", ("vnet", "hd95")] == "1.000"
    # per patient first (p1: Dice 0.65, p2: 0.6, p3: 0.8), then over patients
    per_patient = [0.65, 0.6, 0.8]
    assert table.loc["mean", ("vnet", "dice")] == f"{np.mean(per_patient):.3f} ± {np.std(per_patient, ddof=1):.3f}"
    assert list(table.loc[["a", "b", "mean"], ("vnet", "patients")]) == [3, 2, 3]
    # rows saved earlier fill the folds whose run folders are gone; a run folder here wins over them
    saved = pd.concat([found, found[found["fold"] == 1].assign(network="monai_unet", dice_a=0.1)])
    saved.loc[(saved["network"] == "vnet") & (saved["fold"] == 1), "dice_a"] = 0.0
    saved.to_csv(tmp_path / "saved.csv", index=False)
    again, missing = kfold_cases(tmp_path, ["vnet", "monai_unet"], n_folds=2, previous=tmp_path / "saved.csv")
    assert missing == [str(tmp_path / "openkbp_monai_unet_fold0")] and len(again) == 4
    assert list(again.loc[again["network"] == "vnet", "dice_a"]) == [0.8, 0.6, 0.7]
    assert list(again.loc[again["network"] == "monai_unet", ["case", "dice_a"]].iloc[0]) == ["p3", 0.1]
    with pytest.raises(ValueError, match="case, network and fold"):
        kfold_cases(tmp_path, ["vnet"], n_folds=2, previous=saved.drop(columns="fold"))


def test_cli_rejects_bad_segmentation_data_in_one_line(capsys):
    from voxhelpers.cli import main

    assert main(["train", "vnet", "--data", "openkbp:test"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: argument --data: OpenKBP split must be train, validation or all") and "\n" not in err


# --------------------------------------------------------------------------------------------------
# a user's own NIfTI pairs (FLARE22 naming, the nnU-Net layout)
# --------------------------------------------------------------------------------------------------
def _write_pair(image_path, label_path, seed, affine):
    import nibabel as nib

    vol = phantom_case(seed, (16, 16, 16), ("a", "b"))
    for path in (image_path, label_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(vol.hu.astype(np.int16), affine), image_path)
    nib.save(nib.Nifti1Image(vol.labels, affine), label_path)


def test_flare22_and_nnunet_folders_are_listed_and_read(tmp_path):
    from voxhelpers.data.segmentation import list_cases, load_case

    lps = np.diag([-2.0, -2.0, 3.0, 1.0])  # stored LPS, as DICOM-derived NIfTIs often are
    for i in (1, 2):
        folder = tmp_path / "flare"
        _write_pair(folder / f"FLARE22_Tr_000{i}_0000.nii.gz", folder / f"FLARE22_Tr_000{i}.nii.gz", i, lps)
    cases = list_cases(f"flare22:{tmp_path / 'flare'}")
    assert [n for n, _ in cases] == ["FLARE22_Tr_0001", "FLARE22_Tr_0002"]
    vol = load_case(cases[0][1])
    assert vol.axes == "RAS" and vol.spacing == (2.0, 2.0, 3.0) and vol.labels.max() == 2
    for i in (3, 4, 5):
        root = tmp_path / "nn"
        _write_pair(root / "imagesTr" / f"case{i}_0000.nii.gz", root / "labelsTr" / f"case{i}.nii.gz", i, np.eye(4))
    cfg = vnet_config("smoke", data=f"nifti:{tmp_path / 'nn'}", classes=("a", "b"), n_folds=3, spacing=None,
                      volume_shape=(16, 16, 16), patch_size=(16, 16, 16), width=0.125)
    splits = get_system("vnet").data(cfg)
    assert len(splits.train) == 2 and len(splits.held_out["validation"]) == 1
    assert splits.train[0].image.shape == (1, 16, 16, 16) and list(splits.train[0].labelled) == [True, True]


def test_a_folder_without_pairs_says_what_it_expected(tmp_path):
    from voxhelpers.config.paths import DatasetNotFoundError
    from voxhelpers.data.segmentation import list_cases

    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no image \\+ label pairs found; expected a folder with imagesTr"):
        list_cases(f"nifti:{tmp_path / 'empty'}")
    with pytest.raises(DatasetNotFoundError, match="no such folder"):
        list_cases(f"flare22:{tmp_path / 'missing'}")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keep_largest_components_against_scipy(seed):
    """Each organ keeps exactly its largest face-connected component (scipy.ndimage.label as the reference);
    background and the input are untouched; a 2-D map is refused."""
    from scipy import ndimage

    from voxhelpers.systems.vnet import keep_largest_components

    rng = np.random.default_rng(seed)
    labels = (rng.random((24, 20, 16)) < 0.12).astype(np.uint8) * rng.integers(1, 4, (24, 20, 16)).astype(np.uint8)
    labels[2:8, 2:8, 2:8] = 1  # one clearly largest island per class, so there are no ties
    labels[12:17, 10:15, 3:8] = 2
    labels[18:22, 2:6, 9:14] = 3
    before = labels.copy()
    kept = keep_largest_components(labels, 4)
    assert np.array_equal(labels, before)
    assert np.array_equal(kept == 0, (labels == 0) | ((labels > 0) & (kept == 0)))
    for c in (1, 2, 3):
        comp, n = ndimage.label(labels == c)  # face connectivity by default
        sizes = np.bincount(comp.ravel())[1:]
        assert n > 1 and sizes.max() > np.sort(sizes)[-2]
        assert np.array_equal(kept == c, comp == 1 + sizes.argmax()), c
    with pytest.raises(ValueError, match="one label map"):
        keep_largest_components(labels[0], 4)


def test_guarded_conv3d_leaves_bf16_autocast_only_where_the_input_is_smaller_than_its_kernel():
    """SmallInputFp32Conv3d: under CPU autocast a stride-1 convolution on an input smaller than its kernel computes in
    fp32 (its weight gradient then equals fp32's), a larger input or a strided one stays bf16; outside autocast it is
    nn.Conv3d exactly, with the same state dict. On a CPU where bf16_weight_grad_faulty, the plain layer's bf16 weight
    gradient at 4³ with a 5³ kernel is wrong (relative error > 0.5 or non-finite) and the guarded one is right."""
    torch.manual_seed(0)
    plain = torch.nn.Conv3d(16, 16, 5, padding=2)
    guarded = guard_bf16_convs(torch.nn.Sequential(torch.nn.Conv3d(16, 16, 5, padding=2)), "cpu", force=True)[0]
    guarded.load_state_dict(plain.state_dict())
    assert type(guarded) is SmallInputFp32Conv3d and guarded.state_dict().keys() == plain.state_dict().keys()
    small, large = torch.randn(2, 16, 4, 4, 4), torch.randn(2, 16, 8, 8, 8)
    assert torch.equal(guarded(small), plain(small))  # no autocast: the plain layer
    strided = guard_bf16_convs(torch.nn.Conv3d(16, 16, 5, stride=2, padding=2), "cpu", force=True)

    def weight_grad(layer, x, bf16):
        layer.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            y = layer(x)
        y.float().backward(torch.ones_like(y, dtype=torch.float32))
        return y.dtype, layer.weight.grad.clone()

    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert guarded(large).dtype == torch.bfloat16 and strided(small).dtype == torch.bfloat16
    dtype, g16 = weight_grad(guarded, small, True)
    _, g32 = weight_grad(plain, small, False)
    assert dtype == torch.float32 and torch.allclose(g16, g32, rtol=1e-5, atol=1e-5)
    if bf16_weight_grad_faulty("cpu"):  # the oneDNN kernel the guard steps around (AVX-512 BF16 without AMX)
        _, bad = weight_grad(plain, small, True)
        assert not torch.isfinite(bad).all() or ((bad - g32).norm() / g32.norm()) > 0.5


def test_build_guards_the_vnet_only_on_a_cpu_with_the_faulty_kernel(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    net = get_system("vnet").build(_cfg(), "cpu")["net"]
    kinds = {type(m) for m in net.modules() if isinstance(m, torch.nn.Conv3d)}
    assert kinds == {SmallInputFp32Conv3d}
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)  # AMX: the kernel is right
    net = get_system("vnet").build(_cfg(), "cpu")["net"]
    assert {type(m) for m in net.modules() if isinstance(m, torch.nn.Conv3d)} == {torch.nn.Conv3d}


def test_paired_comparison_and_fold_means_on_hand_values():
    from voxhelpers.reports.vnet import fold_means, paired_comparison

    # five patients; b's Dice of organ x is a's + 0.01..0.05 everywhere, organ y equal except one not delineated
    x_a = [0.5, 0.6, 0.7, 0.8, 0.9]
    rows = pd.DataFrame([
        *({"case": f"p{i}", "network": "a", "fold": i % 2, "dice_x": v, "dice_y": 0.5, "hd95_x": 2.0,
           "hd95_y": float("inf") if i == 0 else 3.0} for i, v in enumerate(x_a)),
        *({"case": f"p{i}", "network": "b", "fold": i % 2, "dice_x": v + 0.01 * (i + 1),
           "dice_y": float("nan") if i == 4 else 0.5, "hd95_x": 1.0, "hd95_y": 3.0} for i, v in enumerate(x_a)),
        {"case": "p9", "network": "b", "fold": 0, "dice_x": 0.0, "dice_y": 0.0, "hd95_x": 9.0, "hd95_y": 9.0},
    ])
    table = paired_comparison(rows, "a", "b", ["x", "y"])
    x = table.loc["x"]
    assert x["patients"] == 5  # p9 has no partner in a
    assert x["a − b"] == pytest.approx(-0.03) and (x["a better"], x["b better"]) == (0, 5)
    assert x["wilcoxon p"] == pytest.approx(2 / 32)  # exact two-sided: all 5 signed ranks one way, 2 of 2^5
    y = table.loc["y"]
    assert y["patients"] == 4 and np.isnan(y["wilcoxon p"]) and (y["a better"], y["b better"]) == (0, 0)
    mean = table.loc["mean"]  # per patient over organs first: p4's b is organ x alone
    per_a = [(v + 0.5) / 2 for v in x_a]
    per_b = [(v + 0.01 * (i + 1) + 0.5) / 2 for i, v in enumerate(x_a[:4])] + [x_a[4] + 0.05]
    assert mean["a"] == pytest.approx(np.mean(per_a)) and mean["b"] == pytest.approx(np.mean(per_b))
    hd = paired_comparison(rows, "a", "b", ["x", "y"], metric="hd95")
    assert (hd.loc["x", "a better"], hd.loc["x", "b better"]) == (0, 5)  # lower is better for a distance
    assert hd.loc["y", "patients"] == 4  # p0's missed organ (inf) leaves the pair out
    with pytest.raises(ValueError, match="no rows of network 'c'"):
        paired_comparison(rows, "a", "c", ["x", "y"])

    means = fold_means(rows, ["x", "y"])
    assert means.loc[0, "a"] == pytest.approx(np.mean([per_a[0], per_a[2], per_a[4]]))
    assert means.loc[0, "b"] == pytest.approx(np.mean([per_b[0], per_b[2], per_b[4], 0.0]))  # p9 counts here
    assert means.loc["all", "a"] == pytest.approx(np.mean(per_a)) and list(means.columns) == ["a", "b"]
