"""System 4 in the quick evaluation (voxhelpers.reports.retina and the quick table): the card listing, the targets on
hand-made cards, the peers kept in a card, the protocols in words, and the recomputation on the shipped weights
(which reproduces the card: the card was measured on the same fp16 file with the same threshold)."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from voxhelpers import reports
from voxhelpers.reports.retina import retina_data_title

REPO = Path(__file__).resolve().parents[1]
OCTA_CARD = REPO / "models" / "pix2pix" / "octa500" / "generator.json"


def pix2pix_card(data="octa500", **metrics):
    return {"system": "pix2pix", "profile": "cpu", "path": "pix2pix/x/generator.json",
            "config": {"data": data}, "metrics": {"n_images": 10.0, **metrics}}


def crgan_card(**metrics):
    return {"system": "crgan", "profile": "cpu", "path": "crgan/generator.json", "config": {"data": "brvo:octa500"},
            "metrics": {"n_sequences": 10.0, "n_draws": 4.0, **metrics}}


@pytest.mark.parametrize(("data", "metrics", "met"), [
    ("octa500", {"dice": 0.849}, False), ("octa500", {"dice": 0.85}, True),
    ("drive", {"dice": 0.81, "auc": 0.969}, False), ("drive", {"dice": 0.80, "auc": 0.97}, True),
    ("drive", {"dice": 0.81}, False),  # a missing AUC never meets the target
    ("octa500", {"dice": float("nan")}, False),
])
def test_pix2pix_targets_are_the_issues_aims(data, metrics, met):
    words, ok = reports.retina_target(pix2pix_card(data, **metrics))
    assert ok is met
    assert words == ("Dice ≥ 0.85" if data == "octa500" else "Dice ≥ 0.80 and AUC ≥ 0.97")


def test_pix2pix_target_uses_the_native_metrics_when_the_card_has_them():
    card = pix2pix_card("drive", dice=0.70, auc=0.95, native_dice=0.80, native_auc=0.97)
    assert reports.retina_target(card) == ("Dice ≥ 0.80 and AUC ≥ 0.97 (at the images' own pixels)", True)
    card = pix2pix_card("drive", dice=0.85, auc=0.99, native_dice=0.79, native_auc=0.99)
    assert reports.retina_target(card)[1] is False  # judged at the images' own pixels, not at the fitted size


def test_crgan_target_is_the_seeds_ssim():
    assert reports.retina_target(crgan_card(ssim=0.72))[1] is True
    assert reports.retina_target(crgan_card(ssim=0.71))[1] is False
    assert "0.72" in reports.retina_target(crgan_card())[0]
    with pytest.raises(ValueError, match="not a retina system"):
        reports.retina_target({"system": "vnet", "config": {}})


def test_protocol_titles_and_table_rows():
    table = reports.quick_evaluation_table(
        [crgan_card(ssim=0.6, mse=0.01), pix2pix_card("drive", dice=0.7, cldice=0.6, auc=0.95)],
        {"pix2pix/x/generator.json": {"dice": 0.71, "n_images": 2, "data_here": True}}, "smoke")
    assert table["system"].tolist() == ["pix2pix", "crgan"]  # README order: Pix2Pix before the CRGAN
    assert table.loc[0, "data"] == "DRIVE fundus photographs"
    assert table.loc[0, "recomputed on"] == "2 held-out images, threshold from validation (smoke budget)"
    assert table.loc[0, "Dice"] == 0.71 and table.loc[0, "Dice (card)"] == 0.7 and table.loc[0, "AUC (card)"] == 0.95
    assert table.loc[1, "card measured on"] == "10 held-out SIMULATED sequences × 4 draws (cpu profile)"
    assert "SIMULATED" in table.loc[1, "data"] and table.loc[1, "SSIM (card)"] == 0.6
    assert table.loc[1, "recomputed on"] == "not recomputed"
    assert retina_data_title("folder:a:b") == "image/mask folders a, b"
    with pytest.raises(ValueError, match="not a retina data string"):
        retina_data_title("soul")


def test_peer_metrics_are_kept_in_the_card_and_tabled(tmp_path):
    """add_peer_metrics writes the peers' held-out metrics under their prefixes (the card stays a valid card: its
    weights untouched); pix2pix_comparison lists the GAN first, then each peer."""
    if not OCTA_CARD.is_file():
        pytest.skip("the shipped OCTA-500 Pix2Pix card is not here")
    for suffix in (".json", ".safetensors"):
        shutil.copy(OCTA_CARD.with_suffix(suffix), tmp_path / f"generator{suffix}")
    peer = {"dice": 0.5, "cldice": 0.4, "auc": 0.9, "threshold": 0.3}
    (tmp_path / "peer.json").write_text(json.dumps(peer))
    metrics = reports.add_peer_metrics(tmp_path / "generator.json", {"no_gan_": tmp_path / "peer.json",
                                                                     "monai_unet_": {**peer, "dice": 0.6}})
    assert metrics["no_gan_dice"] == 0.5 and metrics["monai_unet_dice"] == 0.6
    card = json.loads((tmp_path / "generator.json").read_text())
    table = reports.pix2pix_comparison(card)
    assert table["model"].tolist() == ["Pix2Pix (U-Net + PatchGAN)", "same U-Net, no GAN", "MONAI UNet, no GAN"]
    assert table["dice"].tolist()[1:] == [0.5, 0.6] and table["cldice"].tolist()[1] == 0.4
    # native rows: only the models whose metrics hold native_ keys
    reports.add_peer_metrics(tmp_path / "generator.json", {"no_gan_": {**peer, "native_dice": 0.55,
                                                                       "native_auc": 0.91}})
    native = reports.pix2pix_comparison(json.loads((tmp_path / "generator.json").read_text()), native=True)
    assert native["model"].tolist() == ["same U-Net, no GAN"] and native["dice"].tolist() == [0.55]
    assert native["auc"].tolist() == [0.91] and np.isnan(native["cldice"].iloc[0])
    with pytest.raises(ValueError, match="unknown peer prefix"):
        reports.add_peer_metrics(tmp_path / "generator.json", {"unet_": peer})
    with pytest.raises(ValueError, match="no 'dice'"):
        reports.add_peer_metrics(tmp_path / "generator.json", {"no_gan_": {"auc": 0.9}})


def _shipped_quick_metrics(path, what: str, data_root) -> tuple[dict, dict]:
    """(card, the quick evaluation's smoke metrics) of a shipped card on OCTA-500; skips where either is missing."""
    if not path.is_file():
        pytest.skip(f"the shipped {what} card is not here")
    if not (data_root / "octa500").is_dir():
        pytest.skip("OCTA-500 is not among the real data")
    card = {**json.loads(path.read_text()), "path": str(path)}
    return card, reports.quick_metrics(card, "smoke", roots=[data_root])


def test_shipped_pix2pix_card_is_reproduced_on_two_test_images(data_root):
    """The quick evaluation on the shipped OCTA-500 weights: the card's threshold, the first 2 of its 10 test images;
    the per-image metrics of those two (the card's cases.csv rows) are what the recomputation averages."""
    import pandas as pd

    card, m = _shipped_quick_metrics(OCTA_CARD, "OCTA-500 Pix2Pix", data_root)
    assert m["data_here"] and m["n_images"] == 2 and m["threshold"] == card["metrics"]["threshold"]
    rows = pd.read_csv(OCTA_CARD.with_suffix(".cases.csv")).head(2)
    assert m["dice"] == pytest.approx(rows["dice"].mean(), abs=1e-6)
    assert m["cldice"] == pytest.approx(rows["cldice"].mean(), abs=1e-6)


def test_shipped_crgan_card_is_reproduced_on_two_held_out_sequences(data_root):
    """The CRGAN's quick evaluation: the first 2 held-out SIMULATED sequences with the card's fixed noise (the first
    rows of the same seeded draw), so its SSIM is the mean of the card's per-sequence rows for those two; the counts
    survive (the protocol cell names them), the per-stage keys stay in the card."""
    import pandas as pd

    path = REPO / "models" / "crgan" / "generator.json"
    card, m = _shipped_quick_metrics(path, "CRGAN", data_root)
    assert m["n_sequences"] == 2 and m["n_draws"] == card["metrics"]["n_draws"] and "ssim_s0" not in m
    rows = pd.read_csv(path.with_suffix(".cases.csv"))
    first_two = rows[rows["name"].isin(rows["name"].unique()[:2])]
    assert m["ssim"] == pytest.approx(first_two["ssim"].mean(), abs=1e-5)
    assert m["mse"] == pytest.approx(first_two["mse"].mean(), abs=1e-6)
    assert reports.describe_protocol("crgan", m) == "2 held-out SIMULATED sequences × 4 draws"
