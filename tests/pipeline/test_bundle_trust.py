"""A received bundle never runs code: config allow-list, logging.conf, carried code; checked in verify, segment,
demo and pack before anything is instantiated, with --trust-bundle as the loud override."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipeline.bundle_sharing import pack_bundle, verify_bundle
from pipeline.bundle_trust.config_allowlist import check_config_files, check_expression
from pipeline.bundle_trust.trust import UntrustedBundleError, bundle_code_problems, require_safe_bundle
from pipeline.cli import main
from pipeline.inference import load_segmentation_model
from pipeline.networks import build_generator
from tests.helpers import copy_bundle

REPO = Path(__file__).resolve().parents[2]
SEG_BUNDLE = REPO / "bundles" / "dmg_mscg_segmentation"
H3_BUNDLE = REPO / "bundles" / "h3k27m_classification"
FEATURES = [4, 8, 16]

pytestmark = pytest.mark.usefixtures("single_thread")


def _touch(mark: Path) -> str:
    """An expression that, if it ever ran, would create ``mark`` (and evaluate to 0.5)."""
    return f"$__import__('pathlib').Path({str(mark)!r}).touch() or 0.5"


@pytest.fixture()
def tiny_bundle(tmp_path) -> Path:
    root = copy_bundle(SEG_BUNDLE, tmp_path / "bundle", features=FEATURES, spatial_size=32, sw_batch_size=8)
    torch.manual_seed(0)
    torch.save(build_generator("MSCG", features=FEATURES).state_dict(), root / "models" / "model_t2.pt")
    return root


def _set(bundle: Path, key: str, value, file: str = "inference.json") -> None:
    path = bundle / "configs" / file
    config = json.loads(path.read_text())
    config[key] = value
    path.write_text(json.dumps(config, indent=4))


@pytest.mark.parametrize("bundle", [SEG_BUNDLE, H3_BUNDLE], ids=["segmentation", "h3k27m"])
def test_every_shipped_config_is_wiring(bundle):
    assert check_config_files(bundle / "configs") == []
    assert bundle_code_problems(bundle) == []


@pytest.mark.parametrize("expression, reason", [
    ("$__import__('os').system('touch PWNED') * 0 + 0.5", "'__import__' is not allowed"),
    ("$import subprocess", "import of module 'subprocess'"),
    ("$os.system('x')", "os.system is not on the allow-list"),
    ("$monai.utils.optional_import('os')[0].system('x')", "monai.utils.optional_import is not on the allow-list"),
    ("$torch.load(@model_file)", "weights_only=True"),
    ("$torch.load(@model_file, weights_only=False)", "weights_only=True"),
    ("$@network.__class__.__init__.__globals__", "'__globals__' is not allowed"),
    ("$getattr(torch, 'load')", "'getattr' is not allowed"),
    ("$(lambda: 0)()", "call of a Lambda"),
    ("$@x.system('ls')", "method 'system'"),
    ("$exec('1')", "'exec' is not allowed"),
    ("$x = 1", "Assign statement"),
])
def test_expressions_outside_the_allow_list_are_refused(expression, reason):
    with pytest.raises(ValueError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        check_expression(expression, {"os": "os"})


@pytest.mark.parametrize("expression", [
    "$@bundle_root + '/models/model_' + @sequence + '.pt'",
    "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    "$[h for h in @handlers if not isinstance(h, monai.handlers.StatsHandler)]",
    "$lambda engine: engine.state.metrics['val_mean_dice']",
    "$@network.load_state_dict(torch.load(@model_file, map_location=@device, weights_only=True))",
])
def test_wiring_is_allowed(expression):
    check_expression(expression)


def test_verify_refuses_a_threshold_expression_and_runs_nothing(tiny_bundle, tmp_path):
    mark = tmp_path / "PWNED"
    _set(tiny_bundle, "threshold", _touch(mark))
    report = verify_bundle(tiny_bundle)
    assert not report.ok
    failed = {c.name: c.detail for c in report.failures}
    detail = failed["configs: no code outside the allow-list"]
    assert "configs/inference.json: threshold:" in detail and "__import__" in detail
    assert not mark.exists()


def test_verify_refuses_a_network_def_that_would_run_code_without_building_it(tiny_bundle, tmp_path):
    mark = tmp_path / "PWNED"
    _set(tiny_bundle, "network_def", _touch(mark))
    report = verify_bundle(tiny_bundle)
    assert not report.ok and not mark.exists()
    assert not any(c.name.startswith("model ") for c in report.checks)  # no network was built


@pytest.mark.parametrize("field, value, reason", [
    ("_target_", "os.system", "_target_ is not on the allow-list"),
    ("_target_", "ConfigWorkflow", "_target_ is not on the allow-list"),  # a monai.bundle component
    ("_mode_", "debug", "_mode_ must be one of"),
])
def test_targets_and_modes_outside_the_allow_list_are_refused(tiny_bundle, field, value, reason):
    _set(tiny_bundle, "evil", {"_target_": "Compose", field: value, "command": "touch PWNED"})
    problems = bundle_code_problems(tiny_bundle)
    assert len(problems) == 1 and "configs/inference.json: evil#" in problems[0] and reason in problems[0]


@pytest.mark.parametrize("component, reason", [
    ({"_target_": "LoadImaged", "keys": "image", "reader": "NumpyReader", "allow_pickle": True}, "allow_pickle must be"),
    ({"_target_": "PersistentDataset", "data": [], "cache_dir": ".", "weights_only": False}, "weights_only must be"),
])
def test_components_that_would_unpickle_are_refused(tiny_bundle, component, reason):
    _set(tiny_bundle, "loader", component)
    (problem,) = bundle_code_problems(tiny_bundle)
    assert problem.startswith("configs/inference.json: loader#") and reason in problem


def test_a_refused_key_in_another_config_file_is_named(tiny_bundle):
    _set(tiny_bundle, "output_dir", "$open('/tmp/x', 'w')", file="evaluate.json")
    (problem,) = bundle_code_problems(tiny_bundle)
    assert problem.startswith("configs/evaluate.json: output_dir: \"$open('/tmp/x', 'w')\"")



def test_a_yaml_config_is_parsed_with_yaml_and_checked_like_json(tmp_path):
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "extra.yaml").write_text("threshold: 0.5\nsizes: [1, 2]\noutput_dir: \"$open('/tmp/x', 'w')\"\n")
    (configs / "plain.yml").write_text("device: \"$torch.device('cpu')\"\n")
    (problem,) = check_config_files(configs)
    assert problem.file == "configs/extra.yaml" and problem.key == "output_dir"
    (configs / "broken.yaml").write_text("a: [1, 2\n")
    assert [p.file for p in check_config_files(configs)] == ["configs/broken.yaml", "configs/extra.yaml"]

def test_logging_conf_that_evals_is_refused(tiny_bundle):
    conf = tiny_bundle / "configs" / "logging.conf"
    conf.write_text(conf.read_text().replace("class=StreamHandler", "class=__import__('os').system('x')"))
    (problem,) = bundle_code_problems(tiny_bundle)
    assert problem.startswith("refusing to apply logging config configs/logging.conf")


def test_edited_carried_code_is_refused(tiny_bundle):
    carried = tiny_bundle / "scripts" / "transforms" / "crop.py"
    carried.write_text(carried.read_text() + "\nimport os\nos.system('touch PWNED')\n")
    (problem,) = bundle_code_problems(tiny_bundle)
    assert problem.startswith("scripts/transforms/crop.py: carried code differs")
    (tiny_bundle / "scripts" / "transforms" / "extra.py").write_text("x = 1\n")
    assert any("scripts/transforms/extra.py: unexpected file" in p for p in bundle_code_problems(tiny_bundle))


def test_a_bundle_without_the_carried_code_its_configs_name_is_refused(tiny_bundle):
    import shutil

    shutil.rmtree(tiny_bundle / "scripts")
    (problem,) = bundle_code_problems(tiny_bundle)
    assert problem.startswith("scripts/: missing, but the configs name code in it")


def test_segment_refuses_in_one_line_and_writes_nothing(tiny_bundle, tiny_cohort, tmp_path, capsys):
    mark, out = tmp_path / "PWNED", tmp_path / "preds"
    _set(tiny_bundle, "threshold", _touch(mark))
    code = main(["segment", "--bundle", str(tiny_bundle), "--cohort", str(tiny_cohort), "--sequence", "t2",
                 "--out", str(out), "--runtime", "torch"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "refusing bundle" in err[0] and "configs/inference.json: threshold" in err[0] and "--trust-bundle" in err[0]
    assert not mark.exists() and not out.exists()


def test_trust_bundle_overrides_loudly(tiny_bundle, tmp_path, capsys):
    mark = tmp_path / "PWNED"
    _set(tiny_bundle, "threshold", _touch(mark))
    with pytest.raises(UntrustedBundleError):
        load_segmentation_model(tiny_bundle, "t2", device="cpu", runtime="torch")
    assert not mark.exists()
    model = load_segmentation_model(tiny_bundle, "t2", device="cpu", runtime="torch", trust_bundle=True)
    assert model.threshold == 0.5 and mark.exists()  # it did run: that is what trusting means
    assert "WARNING: --trust-bundle" in capsys.readouterr().err


def test_demo_checks_the_bundle_first(tiny_bundle, tmp_path, capsys):
    _set(tiny_bundle, "threshold", _touch(tmp_path / "PWNED"))
    code = main(["demo", "--out", str(tmp_path / "demo"), "--bundle", str(tiny_bundle), "--patients", "1"])
    assert code == 2 and "refusing bundle" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists() and not (tmp_path / "PWNED").exists()


def test_pack_refuses_a_bundle_whose_configs_run_code(tiny_bundle, tmp_path):
    _set(tiny_bundle, "threshold", _touch(tmp_path / "PWNED"))
    with pytest.raises(ValueError, match="refusing to pack"):
        pack_bundle(tiny_bundle, tmp_path / "b.zip")
    assert not (tmp_path / "b.zip").exists()


def test_require_safe_bundle_names_the_first_problem_and_the_count(tiny_bundle):
    _set(tiny_bundle, "threshold", "$eval('1')")
    _set(tiny_bundle, "amp", "$exec('1')")
    with pytest.raises(UntrustedBundleError, match=r"\(and 1 more\)"):
        require_safe_bundle(tiny_bundle)


def test_each_bundle_imports_its_own_carried_code(tiny_bundle, tmp_path):
    import shutil
    import sys

    from pipeline.bundle_trust.trust import activate_bundle_code

    other = tmp_path / "other"
    shutil.copytree(tiny_bundle, other)
    for bundle in (tiny_bundle, other, tiny_bundle):
        activate_bundle_code(bundle)
        import scripts.networks

        assert Path(scripts.networks.__file__).resolve().is_relative_to(bundle.resolve())
    assert str(other.resolve()) not in sys.path
