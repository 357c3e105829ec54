"""Issue 19's grid report: every command parses into the config it names, and the table / summary gather the runs'
metrics without selecting seeds."""

import json
import shlex

import pytest

from voxhelpers.cli import _parser, given_config
from voxhelpers.config import VoxelCGANConfig
from voxhelpers.reports.robustness import (
    CATEGORIES,
    IWGAN_RECIPES,
    RECIPES,
    iwgan_robustness_commands,
    iwgan_robustness_table,
    robustness_commands,
    robustness_summary,
    robustness_table,
    run_folder,
)


def test_each_command_parses_into_its_recipe():
    commands = robustness_commands("runs/x")
    assert len(commands) == len(RECIPES) * len(CATEGORIES) * 2 and len(set(commands)) == len(commands)
    for command in commands:
        argv = shlex.split(command)[3:]  # after "VOXHELPERS_PROFILE=cpu python -m"
        assert argv[:2] == ["voxhelpers", "train"]
        args = _parser().parse_args(argv[1:])
        cfg = VoxelCGANConfig.for_profile("cpu", **given_config(args, VoxelCGANConfig))
        recipe, cell = args.out.split("/")[-2:]
        assert cfg.condition == "onehot" and cfg.consistency_start == (0 if recipe == "diffaug_s0w4" else 0.75)
        assert cfg.consistency == {"diffaug_c0": 0, "diffaug_w4": 4, "diffaug_b16_w4": 4,
                                   "diffaug_s0w4": 4}.get(recipe, 12)
        assert cfg.precision == "auto"  # every cell in the same arithmetic
        assert cell == f"{cfg.category}_s{cfg.seed}" and cfg.category in CATEGORIES
        assert (cfg.augment, cfg.r1, cfg.d_norm, cfg.consistency_distance, cfg.batch_size, cfg.d_mbstd) == {
            "shipped": ("none", 0.0, "batch", "jaccard", 128, 0),
            "diffaug": ("translate+cutout", 0.0, "batch", "jaccard", 128, 0),
            "diffaug_l1": ("translate+cutout", 0.0, "batch", "l1", 128, 0),
            "diffaug_r1": ("translate+cutout", 1.0, "batch", "jaccard", 128, 0),
            "robust": ("translate+cutout", 1.0, "spectral", "jaccard", 128, 0),
            "diffaug_b16": ("translate+cutout", 0.0, "batch", "jaccard", 16, 0),
            "diffaug_mbstd": ("translate+cutout", 0.0, "batch", "jaccard", 128, 4),
            "diffaug_b16_mbstd": ("translate+cutout", 0.0, "batch", "jaccard", 16, 4),
            "diffaug_c0": ("translate+cutout", 0.0, "batch", "jaccard", 128, 0),
            "diffaug_w4": ("translate+cutout", 0.0, "batch", "jaccard", 128, 0),
            "diffaug_b16_w4": ("translate+cutout", 0.0, "batch", "jaccard", 16, 0),
            "diffaug_s0w4": ("translate+cutout", 0.0, "batch", "jaccard", 128, 0),
            "diffaug_nogate": ("translate+cutout", 0.0, "batch", "jaccard", 128, 0),
            "diffaug_anchor": ("translate+cutout", 0.0, "batch", "jaccard", 128, 0)}[recipe]
        assert cfg.consistency_anchor == (recipe == "diffaug_anchor")
        assert cfg.d_acc_gate == (1.01 if recipe == "diffaug_nogate" else 0.95)
    with pytest.raises(ValueError, match="unknown recipes"):
        robustness_commands(recipes=["best"])


def test_table_and_summary_count_every_run(tmp_path):
    metrics = {("shipped", "chair", 0): (0.95, 0.1, 0.5, 1.8, 0.6), ("shipped", "chair", 1): (0.85, 0.3, 0.4, 0.2, 0.9),
               ("robust", "chair", 0): (0.80, 0.3, 0.4, 0.25, 0.85), ("robust", "chair", 1): (0.70, 0.4, 0.3, 0.5, 0.9)}
    for (r, c, s), (nna, cov, mmd, occ, avar) in metrics.items():
        folder = run_folder(tmp_path, r, c, s)
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"one_nna": nna, "cov": cov, "mmd": mmd,
                                                         "occupancy_error": occ, "avar": avar, "aad": 1 - avar}))
    table = robustness_table(tmp_path, categories=("chair", "lamp"), recipes=("shipped", "robust"))
    assert len(table) == 8 and table["done"].sum() == 4
    assert list(table.loc[table["done"], "converged"]) == [False, True, True, True]
    assert list(table.loc[table["done"], "meets_aim"]) == [False, True, True, False]  # occupancy 0.5 > 0.3
    summary = robustness_summary(table).set_index("recipe")
    assert summary.loc["shipped", ["runs", "done", "converged", "meets_aim"]].tolist() == [4, 2, 1, 1]
    assert summary.loc["robust", ["runs", "done", "converged", "meets_aim"]].tolist() == [4, 2, 2, 1]
    assert summary.loc["robust", "median one_nna"] == pytest.approx(0.75)
    # an earlier session's table fills the cells whose folders are gone; a run here replaces its row
    earlier = table.copy()
    earlier.loc[(earlier["recipe"] == "robust") & (earlier["category"] == "chair") & (earlier["seed"] == 1),
                "one_nna"] = 0.99
    earlier.loc[(earlier["recipe"] == "shipped") & (earlier["category"] == "lamp") & (earlier["seed"] == 0),
                ["done", "one_nna", "cov", "mmd", "occupancy_error", "avar", "aad"]] = [True, 0.5, .5, .2, .1, .9, .1]
    earlier.to_csv(tmp_path / "earlier.csv", index=False)
    merged = robustness_table(tmp_path, categories=("chair", "lamp"), recipes=("shipped", "robust"),
                              previous=tmp_path / "earlier.csv").set_index(["recipe", "category", "seed"])
    assert merged["done"].sum() == 5 and bool(merged.loc[("shipped", "lamp", 0), "meets_aim"])
    assert merged.loc[("robust", "chair", 1), "one_nna"] == pytest.approx(0.70)  # the run folder wins
    with pytest.raises(ValueError, match="missing columns"):
        robustness_table(tmp_path, previous=earlier.drop(columns="avar"))
    (run_folder(tmp_path, "robust", "lamp", 0)).mkdir(parents=True)
    (run_folder(tmp_path, "robust", "lamp", 0) / "metrics.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="lamp_s0/metrics.json: expected a JSON object"):
        robustness_table(tmp_path, categories=("chair", "lamp"), recipes=("shipped", "robust"))


def test_iwgan_grid_commands_parse_and_its_table_has_no_avar(tmp_path):
    from voxhelpers.config import IWGANConfig

    commands = iwgan_robustness_commands("runs/y")
    assert len(commands) == len(IWGAN_RECIPES) * len(CATEGORIES) * 2
    for command in commands:
        args = _parser().parse_args(shlex.split(command)[4:])
        cfg = IWGANConfig.for_profile("full", **given_config(args, IWGANConfig))
        recipe = args.out.split("/")[-2]
        assert cfg.epochs == 4500 and cfg.ema_decay == 0.99 and cfg.data.split(":")[1] in CATEGORIES
        assert cfg.augment == {"paper": "none", "diffaug": "translate+cutout"}[recipe]
    with pytest.raises(ValueError, match="unknown recipes"):
        iwgan_robustness_commands(recipes=["robust"])
    for seed, (nna, occ) in enumerate([(0.85, 0.2), (0.95, 0.1)]):
        folder = run_folder(tmp_path, "diffaug", "sofa", seed)
        folder.mkdir(parents=True)
        (folder / "metrics.json").write_text(json.dumps({"one_nna": nna, "cov": 0.3, "mmd": 0.6,
                                                         "occupancy_error": occ, "aad_real": 0.5}))
    table = iwgan_robustness_table(tmp_path, categories=("sofa",), recipes=("paper", "diffaug"))
    assert "avar" not in table and list(table["meets_aim"]) == [False, False, True, False]
    summary = robustness_summary(table).set_index("recipe")
    assert summary.loc["diffaug", ["done", "converged"]].tolist() == [2, 1]
    assert summary.loc["diffaug", "median one_nna"] == pytest.approx(0.90) and "median avar" not in summary
