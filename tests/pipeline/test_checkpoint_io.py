"""pipeline.checkpoint_io (model files read the same way by inference and bundle sharing) and the model name id
that bundle_models reads from the syntax tree of ``model_file``, never by evaluating it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser

from pipeline.inference.bundle_models import inference_config_for, model_name_id
from pipeline.checkpoint_io import load_state_dict, model_file_kind, sha256_file, unwrap_state_dict


def _tiny() -> torch.nn.Module:
    return torch.nn.Conv2d(1, 2, 1)


def test_model_file_kind_by_content_not_by_name(tmp_path: Path):
    torch.save(_tiny().state_dict(), tmp_path / "model_t2.pt")
    torch.jit.save(torch.jit.script(_tiny()), str(tmp_path / "scripted.pt"))
    (tmp_path / "model_t2.onnx").write_bytes(b"not even onnx")
    (tmp_path / "broken.pt").write_bytes(b"PK\x03\x04 truncated")
    assert model_file_kind(tmp_path / "model_t2.pt") == "pytorch"
    assert model_file_kind(tmp_path / "scripted.pt") == "torchscript"
    assert model_file_kind(tmp_path / "model_t2.onnx") == "onnx"
    assert model_file_kind(tmp_path / "broken.pt") == "pytorch"  # loading it says what is wrong


def test_state_dict_of_a_training_checkpoint_and_of_a_bare_one(tmp_path: Path):
    weights = _tiny().state_dict()
    torch.save({"generator": weights, "g_optimizer": {"state": {}, "param_groups": []}}, tmp_path / "ckpt.pt")
    torch.save(weights, tmp_path / "bare.pt")
    for name in ("ckpt.pt", "bare.pt"):
        loaded = load_state_dict(tmp_path / name)
        assert set(loaded) == set(weights) and all(torch.equal(loaded[k], weights[k]) for k in weights)
    with pytest.raises(ValueError, match=r"odd\.pt: neither a state dict"):
        unwrap_state_dict({"epoch": 3}, tmp_path / "odd.pt")


def test_weights_that_need_unpickling_are_refused_naming_the_file(tmp_path: Path):
    torch.save({"generator": _tiny()}, tmp_path / "pickled.pt")  # a whole module: only loads unpickled
    with pytest.raises(ValueError, match=r"pickled\.pt: cannot load the weights"):
        load_state_dict(tmp_path / "pickled.pt")



def test_one_weights_reader_the_training_handlers_and_packing_use_it_too(tmp_path: Path):
    import ast

    from pipeline.checkpoint_io import read_checkpoint
    from pipeline.engines import handlers

    assert handlers.read_checkpoint is read_checkpoint
    repo = Path(__file__).resolve().parents[2]
    callers = set()
    for path in sorted((repo / "pipeline").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                callers.add(path.relative_to(repo).as_posix())
    assert callers == {"pipeline/checkpoint_io.py"}
    (tmp_path / "missing.pt").unlink(missing_ok=True)
    with pytest.raises(ValueError, match=r"missing\.pt: cannot load the weights \(FileNotFoundError"):
        read_checkpoint(tmp_path / "missing.pt")
    torch.save({"trainer": {"epoch": 2}, "net": _tiny().state_dict()}, tmp_path / "ckpt.pt")
    assert read_checkpoint(tmp_path / "ckpt.pt")["trainer"] == {"epoch": 2}  # a checkpoint as it is, not unwrapped

def test_sha256_file_is_sha256(tmp_path: Path):
    data = bytes(range(256)) * 5000
    (tmp_path / "blob").write_bytes(data)
    assert sha256_file(tmp_path / "blob") == hashlib.sha256(data).hexdigest()


def _parser(model_file: str, **extra) -> ConfigParser:
    return ConfigParser({"bundle_root": ".", "model_file": model_file, **extra})


@pytest.mark.parametrize("model_file, expected", [
    ("$@bundle_root + '/models/model_' + @sequence + '.pt'", "sequence"),
    ("$@bundle_root + \"/models/model_\" + @config_name + \".pt\"", "config_name"),
    ('$f"{@bundle_root}/models/model_{@config_name}.pt"', "config_name"),
    ("$@bundle_root + '/models/' + 'model_' + @net#name + '.pt'", "net#name"),
    ("$@bundle_root + '/models/model.pt'", None),
    ("models/model_t2.pt", None),
])
def test_model_name_id_is_read_from_the_expression_tree(model_file: str, expected: str | None):
    assert model_name_id(_parser(model_file)) == expected


def test_model_name_id_falls_back_to_sequence_and_never_runs_the_expression(tmp_path: Path):
    marker = tmp_path / "PWNED"
    model_file = f"$__import__('pathlib').Path({str(marker)!r}).touch() or 'model_' + @name"
    assert model_name_id(_parser(model_file, sequence="t2")) == "sequence"
    assert model_name_id(_parser("$not python (", sequence="t2")) == "sequence"
    assert not marker.exists()


def test_inference_config_for_binds_the_name_to_that_id(tmp_path: Path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "inference.json").write_text(json.dumps(
        {"config_name": "full", "model_file": '$f"{@bundle_root}/models/model_{@config_name}.pt"'}))
    parser = inference_config_for(tmp_path, "cls_only")
    assert parser.get_parsed_content("model_file") == f"{tmp_path}/models/model_cls_only.pt"
