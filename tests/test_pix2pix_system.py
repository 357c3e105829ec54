"""System 4's Pix2Pix end to end: config validation, the dataset's checks, augmentation, the step's pieces by hand,
exact resume, a tiny U-Net that learns, the threshold chosen on validation and applied to test, the figure, folder
data, and the command line on the real OCTA-500 images."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from voxhelpers import cli
from voxhelpers.config.pix2pix import ANCHOR, Pix2PixConfig, pix2pix_config
from voxhelpers.data.retina import RetinaSample
from voxhelpers.systems import get_system
from voxhelpers.systems.base import Splits
from voxhelpers.systems.pix2pix import VesselPairDataset, augment, learning_rates, masked_mean, random_crop, variant
from voxhelpers.training import fit


@pytest.fixture(autouse=True)
def one_thread():
    """One thread for this module, restored after each test: its tensors are tiny, and on a busy 2-core machine two
    threads fight (a smoke fit: 0.2 s with one thread, 9 s with two)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _cfg(**kw):
    return pix2pix_config("smoke", **{"size": 64, "epochs": 2, "batch_size": 2, **kw})


def _samples(n=4, size=64, channels=1, fov=False, seed=0, levels=(60, 200)):
    """Synthetic vessel images: a few random bright lines (``levels[1]``) on a noisy background (``levels[0]``), the
    lines as the mask; with ``fov`` a centred disc as the field of view (vessels inside it only)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = ((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2 < (0.45 * size) ** 2).astype(np.uint8)
    out = []
    for i in range(n):
        mask = np.zeros((size, size), np.uint8)
        for _ in range(4):
            a, b = rng.uniform(-1, 1), rng.uniform(0, size)
            mask[np.abs(yy - (a * xx + b)) < 1.5] = 1  # a line about 3 pixels wide
        if fov:
            mask &= disc
        gray = np.clip(np.where(mask, levels[1], levels[0]) + rng.integers(-10, 11, (size, size)), 0, 255)
        tint = (1.0,) if channels == 1 else (1.0, 0.6, 0.3)  # RGB: a reddish fundus-like colour
        image = np.stack([gray * t for t in tint]).astype(np.uint8)
        out.append(RetinaSample(f"s{seed}_{i}", image, mask, disc.copy() if fov else None))
    return out


# --------------------------------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------------------------------
def test_defaults_are_the_seeds_and_the_profiles_build():
    cfg = Pix2PixConfig()
    assert (cfg.l1_weight, cfg.mse_weight, cfg.adv_weight, cfg.gan_loss) == (200.0, 10.0, 1.0, "vanilla")  # SPEC §4
    assert (cfg.lr, cfg.lr_d, cfg.betas, cfg.lr_step, cfg.lr_gamma) == (2e-4, 1e-4, (0.5, 0.999), 20, 0.9)
    assert (cfg.batch_size, cfg.size, cfg.channels, cfg.dropout) == (32, 256, (64, 128, 256, 512, 512, 512), 0.5)
    assert cfg.in_channels == 1 and Pix2PixConfig(data="drive").in_channels == 3  # the data's channels
    assert pix2pix_config("full").epochs == 250
    for profile in ("smoke", "cpu", "full"):
        assert pix2pix_config(profile, data="drive").in_channels == 3
    anchor = pix2pix_config("cpu", **ANCHOR)
    assert (anchor.l1_weight, anchor.mse_weight, anchor.gan_loss) == (100.0, 0.0, "lsgan")
    assert Pix2PixConfig.from_dict(json.loads(json.dumps(anchor.to_dict()))) == anchor  # a card's round trip


@pytest.mark.parametrize("kw,match", [
    ({"size": 200}, r"multiple of 2\^6 = 64"),
    ({"size": 64}, "at least 128"),
    ({"channels": (8,)}, "at least two"),
    ({"data": "octa500:train"}, "data must be 'octa500', 'drive' or 'folder:"),
    ({"data": "folder:images"}, "data must be"),
    ({"data": "kaggle"}, "data must be"),
    ({"in_channels": 3}, "octa500 images are grayscale"),
    ({"data": "drive", "in_channels": 1}, "drive images are RGB"),
    ({"in_channels": 2}, r"1 \(grayscale\) or 3 \(RGB\)"),
    ({"gan_loss": "wgangp"}, "gan_loss must be one of"),
    ({"fit": "pad"}, "fit must be one of"),
    ({"adv_weight": -1.0}, ">= 0"),
    ({"l1_weight": 0.0, "mse_weight": 0.0}, r"l1_weight \+ mse_weight \+ bce_weight > 0"),
    ({"lr_gamma": 0.0}, "lr_gamma"),
    ({"rotate": 270.0}, "rotate"),
    ({"max_images": 0}, "max_images"),
    ({"batch_size": 0}, "batch_size"),
    ({"crop": 48}, "crop must be None or a multiple of 2"),
    ({"size": 256, "crop": 512}, "crop must be None or a multiple of 2"),
    ({"network": "unet"}, "network must be one of"),
])
def test_bad_config_values(kw, match):
    with pytest.raises(ValueError, match=match):
        Pix2PixConfig(**kw)


def test_bad_data_flags_are_one_error_line(capsys):
    assert cli.main(["train", "pix2pix", "--data", "octa"]) == 2  # checked by the parser, before any data is read
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "data must be 'octa500', 'drive' or 'folder:" in err[0]
    assert cli.main(["train", "pix2pix", "--data", "drive", "--in-channels", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: drive images are RGB")


# --------------------------------------------------------------------------------------------------
# dataset, augmentation, losses, schedule
# --------------------------------------------------------------------------------------------------
def test_dataset_items_and_bad_samples():
    ds = VesselPairDataset(_samples(2, fov=True), 1, 64)
    item = ds[0]
    assert item["image"].shape == (1, 64, 64) and -1 <= item["image"].min() and item["image"].max() <= 1
    assert set(item["mask"].unique().tolist()) == {0.0, 1.0} and item["fov"].shape == (1, 64, 64)
    assert VesselPairDataset(_samples(1), 1, 64)[0]["fov"].min() == 1  # no field of view: the whole frame
    with pytest.raises(ValueError, match=r"expected \(1, 64, 64\): in_channels=1 \(grayscale\) was configured"):
        VesselPairDataset(_samples(1, channels=3), 1, 64)
    with pytest.raises(ValueError, match=r"expected uint8 \(1, 64, 64\)"):
        VesselPairDataset(_samples(1, size=32), 1, 64)
    bad = _samples(1)[0]
    bad.mask = bad.mask * 255
    with pytest.raises(ValueError, match=r"mask of s0_0 must be \(64, 64\) in \{0, 1\}"):
        VesselPairDataset([bad], 1, 64)
    with pytest.raises(ValueError, match="no training images"):
        VesselPairDataset([], 1, 64)


def test_augment_flips_and_rotates_image_mask_and_fov_together():
    ds = VesselPairDataset(_samples(4), 1, 64)
    batch = {k: torch.stack([ds[i][k] for i in range(4)]) for k in ("image", "mask", "fov")}
    same = augment(*batch.values(), _cfg(flip=False, rotate=0.0), torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, b in zip(same, batch.values(), strict=True))
    image, mask, fov = augment(*batch.values(), _cfg(flip=True, rotate=0.0), torch.Generator().manual_seed(0))
    for i in range(4):  # each sample is one of its four flips, the same one for image and mask
        flips = [(), (-1,), (-2,), (-2, -1)]
        k = next(j for j, d in enumerate(flips) if torch.equal(image[i], batch["image"][i].flip(d) if d else
                                                                batch["image"][i]))
        d = flips[k]
        assert torch.equal(mask[i], batch["mask"][i].flip(d) if d else batch["mask"][i])
    image, mask, fov = augment(*batch.values(), _cfg(flip=False, rotate=30.0), torch.Generator().manual_seed(1))
    assert set(mask.unique().tolist()) <= {0.0, 1.0} and set(fov.unique().tolist()) == {0.0, 1.0}
    assert (fov == 0).any() and (mask <= fov).all()  # rotated corners leave the field of view, vessels with them
    deep = torch.nn.functional.max_pool2d(fov, 3, 1, 1) == 0  # pixels whose 3×3 neighbourhood is all outside
    assert deep.any() and (image[deep] == -1).all()  # black there (bilinear blends only at the frame's edge)


def test_random_crop_cuts_one_window_per_image_the_same_for_mask_and_fov():
    """Each image gets its own window (positions drawn on the generator), and its mask and field of view the very
    same one: a ramp image whose pixel encodes its (row, column) tells where each window came from."""
    b, s, c = 3, 16, 8
    yy, xx = torch.meshgrid(torch.arange(s), torch.arange(s), indexing="ij")
    code = (yy * s + xx).float()[None, None].repeat(b, 1, 1, 1)  # (B, 1, S, S)
    image, mask, fov = random_crop(code, code + 1000, code + 2000, c, torch.Generator().manual_seed(0))
    assert image.shape == mask.shape == fov.shape == (b, 1, c, c)
    assert torch.equal(mask, image + 1000) and torch.equal(fov, image + 2000)
    for i in range(b):
        top, left = divmod(int(image[i, 0, 0, 0]), s)
        assert torch.equal(image[i, 0], code[0, 0, top:top + c, left:left + c])
    assert len({int(image[i, 0, 0, 0]) for i in range(b)}) > 1  # not one window for the whole batch
    same = random_crop(code, code, code, s, None)
    assert all(t is code for t in same)


def test_variant_names_and_the_monai_peer():
    """Weights and run folders are named by the variant; MONAI's UNet is built by the same registry (Tanh range,
    same widths) and refuses an image with the wrong channel count as ours does."""
    from voxhelpers.nets import build_network
    from voxhelpers.nets.pix2pix import MonaiUNet2D

    assert [variant(_cfg(**kw)) for kw in ({}, {"gan_loss": "lsgan"}, {"adv_weight": 0.0},
                                            {"network": "monai_unet", "adv_weight": 0.0})] == \
        ["", "_lsgan", "_no_gan", "_monai_unet_no_gan"]
    net = build_network("pix2pix", "generator", _cfg(network="monai_unet"))
    assert isinstance(net, MonaiUNet2D)
    y = net(torch.randn(2, 1, 64, 64) * 3)
    assert y.shape == (2, 1, 64, 64) and y.abs().max() < 1
    with pytest.raises(ValueError, match="1 channel"):
        net(torch.randn(1, 3, 64, 64))


def test_monai_peer_learns_on_crops_and_is_evaluated_on_whole_images():
    """MONAI's UNet without the PatchGAN, trained on random 32² windows of 64² images (the DRIVE recipe, scaled down):
    it learns the vessels, and the evaluation predicts whole 64² images (Dice on unseen images > 0.8)."""
    torch.manual_seed(0)
    data = _samples(4)
    cfg = _cfg(network="monai_unet", adv_weight=0.0, crop=32, channels=(8, 16, 32, 32), epochs=40, lr=5e-3,
               rotate=0.0)
    result = fit("pix2pix", cfg, None, "cpu", data=data, progress=False)
    assert set(result.models) == {"G"}
    held_out = Splits(data, {"validation": _samples(2, seed=1), "test": _samples(3, seed=2)})
    metrics = get_system("pix2pix").evaluate(result.model, cfg, held_out)
    assert metrics["dice"] > 0.8, metrics


def test_masked_mean_and_learning_rates_by_hand():
    values = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert float(masked_mean(values, torch.tensor([[1.0, 0.0], [0.0, 1.0]]))) == pytest.approx(2.5)  # (1 + 4) / 2
    assert float(masked_mean(values, torch.zeros(2, 2))) == 0.0  # an empty field: 0, not NaN
    cfg = Pix2PixConfig()
    lrs = [learning_rates(cfg, e) for e in (0, 19, 20, 45)]  # StepLR(20, 0.9): ×1, ×1, ×0.9, ×0.81
    assert [r["G"] for r in lrs] == pytest.approx([2e-4, 2e-4, 1.8e-4, 1.62e-4])
    assert [r["D"] for r in lrs] == pytest.approx([1e-4, 1e-4, 0.9e-4, 0.81e-4])


# --------------------------------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------------------------------
def test_resumed_run_equals_uninterrupted_run(tmp_path):
    """Flips, rotations, dropout and shuffling are all drawn from checkpointed generators: stopping after the first
    epoch and resuming gives the same weights and history as one uninterrupted run (GAN and field of view on)."""
    cfg, data = _cfg(epochs=3), _samples(4, fov=True)
    a = fit("pix2pix", cfg, tmp_path / "a", "cpu", data=data, progress=False)
    fit("pix2pix", cfg, tmp_path / "b", "cpu", data=data, progress=False, max_minutes=0)
    b = fit("pix2pix", cfg, tmp_path / "b", "cpu", data=data, progress=False)
    for key in ("G", "D"):
        for k, v in a.models[key].state_dict().items():
            assert torch.equal(v, b.models[key].state_dict()[k]), (key, k)
    assert a.history.equals(b.history) and len(a.history) == 3
    assert {"loss_d", "loss_g", "loss_rec", "loss_mse", "loss_adv", "lr"} <= set(a.history.columns)


@pytest.mark.parametrize("adv_weight,precision", [(0.0, "fp32"), (1.0, "fp32"), (1.0, "bf16")])
def test_tiny_unet_learns_the_vessels(adv_weight, precision):
    """Four synthetic 64² images, 60 steps of the smoke U-Net (the seed's losses): the masked L1 (in the Tanh range,
    starting near 1.2) ends below a quarter of what the best constant mask (all background) scores, 2 × the vessel
    fraction (0.26 here; measured: 0.11 of it, both variants) — the model draws vessels, not background — and on
    three unseen images of the same kind the evaluation's Dice exceeds 0.9 (measured 0.98). Without the GAN
    (adv_weight 0) there is no critic and no loss_d. The GAN learns under bf16 autocast too (G and D in bf16)."""
    torch.manual_seed(0)
    data = _samples(4)
    cfg = _cfg(adv_weight=adv_weight, epochs=30, lr=5e-3, lr_d=2.5e-3, rotate=0.0, precision=precision)
    result = fit("pix2pix", cfg, None, "cpu", data=data, progress=False)
    assert set(result.models) == ({"G"} if adv_weight == 0 else {"G", "D"})
    assert ("loss_d" in result.history) == (adv_weight > 0)
    rec = result.history["loss_rec"]
    background_l1 = 2 * np.mean([s.mask.mean() for s in data])  # |−1 − 1| on vessel pixels, 0 elsewhere
    assert rec.iloc[-3:].mean() < 0.25 * background_l1, (rec.iloc[0], rec.iloc[-3:].mean(), background_l1)
    held_out = Splits(data, {"validation": _samples(2, seed=1), "test": _samples(3, seed=2)})
    assert get_system("pix2pix").evaluate(result.model, cfg, held_out)["dice"] > 0.9


def test_bce_on_the_logits_alone_learns_the_vessels_and_is_the_masked_bce_of_sigma_2u():
    """With L1 and MSE off and BCE on the generator's logits (2u) on, the U-Net learns the masks (Dice > 0.9 on
    unseen images); the logged loss_bce is the BCE of σ(2u) = (output + 1) / 2 against the mask in the field of view."""
    from voxhelpers.nets import Pix2PixGenerator
    from voxhelpers.nets.pix2pix import MonaiUNet2D

    for G in (Pix2PixGenerator(1, channels=(8, 16, 16)), MonaiUNet2D(1, (8, 16, 16))):
        x = torch.rand(2, 1, 32, 32) * 2 - 1
        G.eval()
        torch.testing.assert_close(torch.tanh(G.logits(x)), G(x))
        p = (G(x) + 1) / 2
        torch.testing.assert_close(torch.sigmoid(2 * G.logits(x)), p, atol=1e-6, rtol=1e-5)
    torch.manual_seed(0)
    data = _samples(4)
    cfg = _cfg(adv_weight=0.0, l1_weight=0.0, mse_weight=0.0, bce_weight=1.0, epochs=30, lr=5e-3, rotate=0.0)
    result = fit("pix2pix", cfg, None, "cpu", data=data, progress=False)
    bce = result.history["loss_bce"]
    assert bce.iloc[-3:].mean() < 0.3 * bce.iloc[0]
    held_out = Splits(data, {"validation": _samples(2, seed=1), "test": _samples(3, seed=2)})
    assert get_system("pix2pix").evaluate(result.model, cfg, held_out)["dice"] > 0.9


# --------------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------------
class _Passthrough(nn.Module):
    """A "generator" whose probability is the image's brightness: (x + 1) / 2 = pixel / 255."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return x[:, :1]


def test_threshold_is_chosen_on_validation_and_applied_to_test_unchanged():
    """Validation: background 60 ± 10, vessels 200 (probabilities ≤ 0.275 and 0.784): the lowest threshold with Dice 1
    is 0.30. Test: background 115 ± 10 (0.41 … 0.49): at 0.30 every pixel is called vessel, so Dice = 2V / (2V + B)
    with V vessel and B background pixels — a threshold read off the test split (0.50) would have given 1."""
    val, test = _samples(3, seed=1), _samples(2, seed=2, levels=(115, 200))
    cfg = _cfg()
    metrics, table = get_system("pix2pix").details(_Passthrough(), cfg, Splits([], {"validation": val, "test": test}))
    assert metrics["threshold"] == pytest.approx(0.30) and metrics["validation_dice"] == 1.0
    expected = [2 * s.mask.sum() / (2 * s.mask.sum() + (1 - s.mask).sum()) for s in test]
    assert metrics["dice"] == pytest.approx(np.mean(expected))
    assert metrics["sensitivity"] == 1.0 and metrics["specificity"] == 0.0
    assert list(table["name"]) == [s.name for s in test] and metrics["n_images"] == 2 and metrics["n_validation"] == 3


def test_native_metrics_score_the_images_own_pixels():
    """Held-out images cropped to a 40² window of their 64² frames (fit ``crop``): at the fitted size the passthrough
    "generator" is perfect (Dice 1), but at the images' own pixels every vessel pixel outside the window is missed,
    so each native Dice is 2·TP / (2·TP + FN) with TP the vessel pixels inside the window, FN those outside, no false
    positive — counted here by hand from the window's position (rows and columns 12..51 of the disc's 64² frame)."""
    from voxhelpers.data.retina import fit_sample

    native_val, native_test = _samples(3, fov=True, seed=1), _samples(2, fov=True, seed=2)
    val, test = ([fit_sample(s, 40, "crop") for s in part] for part in (native_val, native_test))
    cfg = _cfg(fit="crop")
    splits = Splits([], {"validation": val, "test": test, "validation_native": native_val,
                         "test_native": native_test})
    metrics, _ = get_system("pix2pix").details(_Passthrough(), cfg, splits)
    assert metrics["dice"] == 1.0 and metrics["native_threshold"] == pytest.approx(0.30)
    window = np.zeros((64, 64), bool)
    window[12:52, 12:52] = True
    expected = []
    for s in native_test:
        tp, fn = (s.mask.astype(bool) & window).sum(), (s.mask.astype(bool) & ~window).sum()
        assert fn > 0  # the case is not trivial: vessels leave the window
        expected.append(2 * tp / (2 * tp + fn))
    assert metrics["native_dice"] == pytest.approx(np.mean(expected))
    assert metrics["native_specificity"] == 1.0 and metrics["native_n_images"] == 2
    # without the native parts (splits built by hand, as above) the metrics are the fitted ones only
    plain, _ = get_system("pix2pix").details(_Passthrough(), cfg, Splits([], {"validation": val, "test": test}))
    assert not any(k.startswith("native_") for k in plain)


def test_evaluate_keys_and_the_field_of_view():
    system, cfg = get_system("pix2pix"), _cfg()
    splits = Splits(_samples(2, fov=True), {"validation": _samples(2, fov=True, seed=1),
                                            "test": _samples(3, fov=True, seed=2)})
    torch.manual_seed(0)
    model = system.build(cfg, "cpu")["G"]
    metrics = system.evaluate(model, cfg, splits)
    assert {"dice", "cldice", "auc", "accuracy", "mse", "ssim", "cosine", "threshold", "n_images"} <= set(metrics)
    assert all(isinstance(v, float) for v in metrics.values()) and metrics["n_images"] == 3
    from voxhelpers.systems.pix2pix import predict

    probs = predict(model, splits.held_out["test"], cfg)
    assert probs.shape == (3, 64, 64) and probs.min() >= 0 and probs.max() <= 1
    assert (probs[:, splits.held_out["test"][0].fov == 0] == 0).all()  # nothing is predicted outside the field


def test_vessel_figure_rows_and_bad_input():
    from voxhelpers.plots.retina import vessel_figure

    s = _samples(2, channels=3)
    probs = [np.full((64, 64), 0.5, np.float32)] * 2
    fig = vessel_figure([x.image for x in s], [x.mask for x in s], probs, names=["a", "b"], title="t")
    assert len(fig.axes) == 2 * 3 and [a.get_ylabel() for a in fig.axes[::3]] == ["a", "b"]
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        vessel_figure([s[0].image], [s[0].mask], [probs[0] * 4])
    with pytest.raises(ValueError, match="same"):
        vessel_figure([s[0].image], [s[0].mask[:32]], [probs[0]])
    with pytest.raises(ValueError, match="one truth"):
        vessel_figure([s[0].image], [], [])


def test_folder_data_splits_by_image_and_checks_channels(tmp_path):
    from PIL import Image

    for folder in ("images", "masks"):
        (tmp_path / folder).mkdir()
    for s in _samples(5, channels=3):
        Image.fromarray(s.image.transpose(1, 2, 0)).save(tmp_path / "images" / f"{s.name}.png")
        Image.fromarray(s.mask * 255).save(tmp_path / "masks" / f"{s.name}.png")
    data = f"folder:{tmp_path / 'images'}:{tmp_path / 'masks'}"
    splits = get_system("pix2pix").data(_cfg(data=data, in_channels=3, max_images=None))
    sizes = (len(splits.train), len(splits.held_out["validation"]), len(splits.held_out["test"]))
    assert sizes == (3, 1, 1) and "3 train / 1 validation / 1 test" in splits.description
    with pytest.raises(ValueError, match="colour \\(RGB\\) image where channels=1"):  # default in_channels 1
        get_system("pix2pix").data(_cfg(data=data))
    (tmp_path / "images" / "s0_4.png").unlink()
    with pytest.raises(ValueError, match="mask file\\(s\\) without their image: s0_4.png"):
        get_system("pix2pix").data(_cfg(data=data, in_channels=3))


# --------------------------------------------------------------------------------------------------
# the command line on the real OCTA-500 images
# --------------------------------------------------------------------------------------------------
def test_cli_trains_and_evaluates_on_real_octa500(data_root, tmp_path, capsys):
    """``python -m voxhelpers train pix2pix --profile smoke --out <tmp> --evaluate``: 8 training images at 64², 2
    epochs; the metrics are over the 10 held-out test images with the threshold chosen on the 14 validation ones.
    Then ``export`` writes weights + card and ``evaluate`` rebuilds the generator from the card and reproduces them."""
    if not (data_root / "octa500").is_dir():
        pytest.skip("OCTA-500 is not among the real data")
    run, export = tmp_path / "run", tmp_path / "models"
    assert cli.main(["train", "pix2pix", "--profile", "smoke", "--out", str(run), "--evaluate"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"dice", "cldice", "auc", "accuracy", "mse", "ssim", "cosine"} <= set(metrics)
    assert metrics["n_images"] == 10 and metrics["n_validation"] == 14 and 0 < metrics["threshold"] < 1
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["epoch_0000.png", "epoch_0001.png"]
    assert len((run / "cases.csv").read_text().splitlines()) == 1 + 10  # one row per test image
    assert cli.main(["export", "pix2pix", "--run", str(run), "--to", str(export), "--profile", "smoke",
                     "--evaluate"]) == 0
    card = json.loads((export / "generator.json").read_text())
    assert card["system"] == "pix2pix" and card["metrics"]["n_images"] == 10
    assert "8 train / 14 validation / 10 test" in card["data"]  # smoke trains on 8 of the 126
    capsys.readouterr()
    assert cli.main(["evaluate", "pix2pix", "--weights", str(export / "generator.safetensors")]) == 0
    again = json.loads(capsys.readouterr().out)
    for key, value in card["metrics"].items():
        assert again[key] == pytest.approx(value, rel=1e-6, abs=1e-9, nan_ok=True), key
