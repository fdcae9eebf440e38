"""The segmentation bundle's training configs declare their parts: conditional wiring in named Python factories
(pipeline.engines.adversarial_parts), the run folder in one place (pipeline.engines.run_folders), the data lists
with named arguments, handlers by name."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from pipeline.bundle_trust.config_allowlist import check_config_files
from pipeline.data.datalists import segmentation_datalists
from pipeline.engines.adversarial_parts import (
    discriminator_lr_scheduler,
    discriminator_optimizer,
    place_network,
    unlabeled_dataloader,
)
from pipeline.engines.run_folders import run_folder

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "dmg_mscg_segmentation" / "configs"
TINY = {"features": [4, 8, 16], "disc_channels": [4, 8, 8, 16], "spatial_size": 32}


def _train_config(tmp_path: Path, **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(CONFIGS / "train.json"))
    parser.update({"bundle_root": str(tmp_path), "device": "$torch.device('cpu')", **TINY, **overrides})
    return parser


def test_factories_pass_none_through_and_build_the_parts_otherwise():
    assert place_network(None, "cpu") is None
    assert discriminator_optimizer(None, lr=1e-4, weight_decay=0.01) is None
    assert discriminator_lr_scheduler(None, t_max=5) is None
    net = place_network(torch.nn.Conv2d(1, 1, 1), "cpu")
    optimizer = discriminator_optimizer(net, lr=1e-3, weight_decay=0.02)
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["lr"] == 1e-3 and optimizer.param_groups[0]["weight_decay"] == 0.02
    assert {id(p) for p in optimizer.param_groups[0]["params"]} == {id(p) for p in net.parameters()}
    assert discriminator_lr_scheduler(optimizer, t_max=7).T_max == 7


def test_unlabeled_loader_only_with_a_discriminator_and_unlabeled_slices():
    data = [{"image": torch.zeros(1, 4, 4)} for _ in range(5)]
    disc = torch.nn.Conv2d(1, 1, 1)
    assert unlabeled_dataloader(data, None, batch_size=2) is None
    assert unlabeled_dataloader([], disc, batch_size=2) is None
    loader = unlabeled_dataloader(data, disc, batch_size=2)
    assert [b["image"].shape[0] for b in loader] == [2, 2, 1]


def test_run_folder_is_the_one_naming_rule():
    assert run_folder("/b", ["t2", "MSCG", "finetune"], 0) == "/b/runs/t2_MSCG_finetune_fold0"
    assert run_folder("/b", "full", 3) == "/b/runs/full_fold3"
    with pytest.raises(ValueError, match="non-empty name"):
        run_folder("/b", [], 0)


@pytest.mark.parametrize("variant, adversarial", [("MSCG", True), ("MSCG-Dis", False)])
def test_train_config_builds_the_discriminator_side_only_for_adversarial_variants(tmp_path, variant, adversarial):
    parser = _train_config(tmp_path, variant=variant)
    discriminator = parser.get_parsed_content("discriminator")
    optimizer = parser.get_parsed_content("d_optimizer")
    scheduler = parser.get_parsed_content("d_lr_scheduler")
    assert (discriminator is not None, optimizer is not None, scheduler is not None) == (adversarial,) * 3
    if adversarial:
        assert {id(p) for p in optimizer.param_groups[0]["params"]} == {id(p) for p in discriminator.parameters()}
        assert scheduler.optimizer is optimizer
    assert parser.get_parsed_content("output_dir") == f"{tmp_path}/runs/t2_{variant}_finetune_fold0"


def _expressions(value):
    if isinstance(value, dict):
        for v in value.values():
            yield from _expressions(v)
    elif isinstance(value, list):
        for v in value:
            yield from _expressions(v)
    elif isinstance(value, str) and value.startswith("$"):
        yield value


def _compares_with_none(test: ast.expr) -> bool:
    return any(isinstance(c, ast.Compare) and any(isinstance(x, ast.Constant) and x.value is None for x in c.comparators)
               for c in ast.walk(test))


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.json")))
def test_configs_address_by_name_and_wire_no_none_conditionals(name):
    config = json.loads((CONFIGS / name).read_text())
    assert not [k for k in config if re.search(r"#\d+(#|$)", k)], "a list entry addressed by index"
    for text in _expressions(config):
        tree = ast.parse(re.sub(r"@[\w#]+", "ref", text[1:]).strip(), mode="exec")
        conditionals = [n for n in ast.walk(tree) if isinstance(n, ast.IfExp) and _compares_with_none(n.test)]
        assert not conditionals, f"{name}: {text!r} decides on None (a factory in pipeline.engines decides)"


def test_datalists_are_declared_with_named_arguments():
    datalists = json.loads((CONFIGS / "train.json").read_text())["datalists"]
    assert datalists["_target_"] == "pipeline.data.datalists.segmentation_datalists"
    assert {"fold", "n_folds", "seed", "stage", "labeled_fraction"} <= set(datalists)
    with pytest.raises(TypeError):
        segmentation_datalists("cohort", "t2", 0, 5, 0)  # positional beyond the sequence is refused


def test_multi_gpu_config_disables_the_tensorboard_handlers_by_name():
    train = json.loads((CONFIGS / "train.json").read_text())
    multi = json.loads((CONFIGS / "multi_gpu_train.json").read_text())
    disabled = [k for k in multi if k.endswith("#_disabled_")]
    assert disabled == ["train#handlers#tensorboard#_disabled_", "validate#handlers#tensorboard#_disabled_"]
    for key in disabled:
        section, _, handler, _ = key.split("#")
        assert train[section]["handlers"][handler]["_target_"] == "TensorBoardStatsHandler"
    assert multi["network#distributed"] is True and multi["discriminator#distributed"] is True


def test_segmentation_configs_pass_the_allow_list():
    assert check_config_files(CONFIGS) == []
