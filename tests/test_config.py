"""The validated config dataclasses: bad choices listed, profiles, and old cards' configs upgraded."""

import dataclasses

import pytest

from voxhelpers.config import IWGANConfig, VAEIWGANConfig, VoxelCGANConfig

OLD_CARD = {  # a voxel_cgan card's config before the refactor: category + data source, output beside variant, size
    "category": "car", "data": "synthevox3d", "loss": "bce", "n_conditions": 2, "z_dim": 200, "size": 32,
    "condition": "scalar", "output": "probs", "variant": "seed", "epochs": 401, "batch_size": 128,
}


@pytest.mark.parametrize("cls,field,value,valid", [
    (VoxelCGANConfig, "loss", "hinge", "('bce', 'bce_bcewithlogits', 'bce_mse_60_40', 'bce_mse_40_60', 'triple')"),
    (VoxelCGANConfig, "variant", "fixed", "('seed', 'sound')"),
    (VoxelCGANConfig, "optimizer", "sgd", "('rmsprop', 'adam')"),
    (VoxelCGANConfig, "condition", "both", "('scalar', 'onehot')"),
    (VAEIWGANConfig, "rec_reduction", "max", "('sum', 'mean')"),
])
def test_a_bad_choice_lists_the_valid_values(cls, field, value, valid):
    with pytest.raises(ValueError) as e:
        cls(**{field: value})
    assert str(e.value) == f"{field} must be one of {valid}, got {value!r}"


def test_bad_values_and_unknown_fields():
    for cls in (VoxelCGANConfig, IWGANConfig, VAEIWGANConfig):
        with pytest.raises(ValueError, match=r"data must be '<source>:<name>' with source in \('synthevox3d', "
                                             r"'modelnet10', 'procedural', 'npy'\).*got 'airplane'"):
            cls(data="airplane")
        with pytest.raises(ValueError, match=rf"unknown {cls.__name__} fields \['categry'\]; expected some of"):
            cls.for_profile("smoke", categry="car")
    with pytest.raises(ValueError, match=r"n_conditions must be in \[1, 10\], got 11"):
        VoxelCGANConfig(n_conditions=11)
    with pytest.raises(ValueError, match="holdout must be a fraction"):
        IWGANConfig(holdout=1.0)
    with pytest.raises(ValueError, match="image_size must be a power of two >= 64, got 96"):
        VAEIWGANConfig(image_size=96)
    with pytest.raises(ValueError, match="unknown profile 'gpu'"):
        VoxelCGANConfig.for_profile("gpu")


def test_profiles_apply_their_budget_then_overrides():
    cfg = VoxelCGANConfig.for_profile("smoke", loss="bce")
    assert (cfg.epochs, cfg.n_train, cfg.batch_size, cfg.loss) == (3, 8, 8, "bce")
    assert VoxelCGANConfig.for_profile("full") == VoxelCGANConfig(**VoxelCGANConfig.PROFILES["full"])
    assert IWGANConfig.PROFILES["smoke"]["epochs"] == 2 and VAEIWGANConfig.PROFILES["smoke"]["image_size"] == 64


def test_data_is_one_field_and_output_follows_the_variant():
    cfg = VoxelCGANConfig(data="synthevox3d:car")
    assert cfg.category == "car" and cfg.output == "probs"
    assert VoxelCGANConfig(variant="sound").output == "logits"
    with pytest.raises(AttributeError):
        cfg.category = "airplane"  # read-only: derived from data
    assert {"category", "output", "size"}.isdisjoint(f.name for f in dataclasses.fields(cfg))


def test_from_dict_upgrades_an_old_card_config():
    cfg = VoxelCGANConfig.from_dict(OLD_CARD)
    assert cfg.data == "synthevox3d:car" and cfg.category == "car" and cfg.output == "probs" and cfg.loss == "bce"
    assert cfg == VoxelCGANConfig(data="synthevox3d:car", loss="bce", epochs=401, batch_size=128)
    assert VoxelCGANConfig.from_dict(cfg.to_dict()) == cfg  # today's dicts go through unchanged
    no_source = {k: v for k, v in OLD_CARD.items() if k != "data"}  # the oldest cards named only the category
    assert VoxelCGANConfig.from_dict(no_source).data == "synthevox3d:car"
    sound = {**OLD_CARD, "variant": "sound", "output": "logits"}
    assert VoxelCGANConfig.from_dict(sound).output == "logits"
    with pytest.raises(ValueError, match=r"variant='seed' and output='logits' is not supported: 'sound' uses logits"):
        VoxelCGANConfig.from_dict({**OLD_CARD, "output": "logits"})
    with pytest.raises(ValueError, match=r"unknown VoxelCGANConfig fields \['colour'\]"):
        VoxelCGANConfig.from_dict({**OLD_CARD, "colour": "red"})
    assert IWGANConfig.from_dict({"betas": [0.5, 0.9], "g_channels": [16, 8, 8, 4]}).betas == (0.5, 0.9)  # JSON lists
