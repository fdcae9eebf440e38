"""H3K27MEnsembleNet: several fold models as one bundle network (mean of their one-tensor outputs), its state dict,
its exports, and `dmg bundle ship` with several checkpoints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from monai.bundle import verify_net_in_out

from pipeline.cli import main
from pipeline.inference.status import predict_patient_status
from pipeline.networks import (
    H3K27MEnsembleNet,
    H3K27MExportNet,
    build_h3k27m_ensemble_net,
    build_h3k27m_export_net,
    ensemble_state_dict,
)
from tests.helpers import copy_bundle

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "h3k27m_classification"
TINY = {"base_width": 8, "img_size": 64, "in_channels": 2, "lesion_pooling": True}

pytestmark = pytest.mark.usefixtures("single_thread")


def _members(n: int) -> list[H3K27MExportNet]:
    nets = []
    for seed in range(n):
        torch.manual_seed(seed)
        nets.append(build_h3k27m_export_net("full", **TINY).eval())
    return nets


def test_ensemble_output_is_the_mean_of_its_members_outputs():
    members = _members(3)
    ensemble = build_h3k27m_ensemble_net("full", ensemble_size=3, **TINY).eval()
    assert isinstance(ensemble, H3K27MEnsembleNet) and ensemble.ensemble_size == 3
    ensemble.load_state_dict(ensemble_state_dict([m.state_dict() for m in members]))
    x = torch.rand(2, 2, 64, 64)
    with torch.no_grad():
        outputs = [m(x) for m in members]
        out = ensemble(x)
    torch.testing.assert_close(out, (outputs[0] + outputs[1] + outputs[2]) / 3)
    assert not torch.allclose(outputs[0], outputs[1])  # the members differ, so the mean is not one of them
    assert out.shape == (2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(ensemble)(x), out)
    volume = torch.rand(2, 64, 64, 4)  # the patient rule runs on it unchanged
    assert 0.0 < predict_patient_status(ensemble, volume).probability < 1.0


def test_ensemble_of_copies_of_one_net_is_that_net():
    (member,) = _members(1)
    ensemble = build_h3k27m_ensemble_net("full", ensemble_size=2, **TINY).eval()
    ensemble.load_state_dict(ensemble_state_dict([member.state_dict()] * 2))
    x = torch.rand(1, 2, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ensemble(x), member(x))


def test_ensemble_size_one_is_the_plain_export_net_and_bad_sizes_are_refused():
    single = build_h3k27m_ensemble_net("full", ensemble_size=1, **TINY)
    assert type(single) is H3K27MExportNet
    assert set(single.state_dict()) == set(_members(1)[0].state_dict())  # no prefix: earlier weights load
    ensemble = build_h3k27m_ensemble_net("full", ensemble_size=2, **TINY)
    assert set(ensemble.state_dict()) == {f"members.{i}.{k}" for i in range(2) for k in single.state_dict()}
    with pytest.raises(ValueError, match="at least 1"):
        build_h3k27m_ensemble_net("full", ensemble_size=0, **TINY)
    with pytest.raises(ValueError, match="fixes use_decoder"):
        build_h3k27m_ensemble_net("full", ensemble_size=2, use_decoder=False, **TINY)
    with pytest.raises(ValueError, match="at least 2"):
        ensemble_state_dict([single.state_dict()])


def test_dmg_status_runs_an_ensemble_bundle_and_names_ensemble_size_for_one_fold_model(
        tmp_path: Path, tiny_cohort_t2_t1c: Path, capsys):
    members = _members(2)
    keys = {"base_width": 8, "spatial_size": 64, "sw_batch_size": 8, "extra_sequences": ["t1c"],
            "lesion_pooling": True, "center_crop_fraction": 0.5}
    root = copy_bundle(BUNDLE, tmp_path / "ens", **keys, ensemble_size=2, temperature=1.0, threshold=0.5)
    torch.save(ensemble_state_dict([m.state_dict() for m in members]), root / "models" / "model_t2.pt")
    torch.save(members[0].state_dict(), tmp_path / "fold0.pt")
    cohort = str(tiny_cohort_t2_t1c)
    assert main(["status", "--bundle", str(root), "--cohort", cohort, "--out", str(tmp_path / "ens_pred"),
                 "--no-report", "--runtime", "torch"]) == 0
    ensemble = pd.read_csv(tmp_path / "ens_pred" / "predictions.csv")
    assert len(ensemble) == 6 and ensemble["probability_altered"].between(0, 1).all()
    capsys.readouterr()
    fold0 = ["status", "--bundle", str(root), "--cohort", cohort, "--model", str(tmp_path / "fold0.pt"),
             "--no-report", "--runtime", "torch"]
    assert main([*fold0, "--out", str(tmp_path / "refused")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'ensemble_size': 2" in err[0] and "ensemble_size=1" in err[0], err
    assert main([*fold0, "--out", str(tmp_path / "fold0_pred"), "--set", "ensemble_size=1"]) == 0
    single = pd.read_csv(tmp_path / "fold0_pred" / "predictions.csv")
    assert not np.allclose(single["logit_uncalibrated"], ensemble["logit_uncalibrated"])  # another network


def test_ship_with_several_checkpoints_installs_an_ensemble_that_the_zoo_defaults_accept(tmp_path: Path, capsys):
    members = _members(2)
    files = []
    for i, member in enumerate(members):  # training checkpoints, as train.json saves them
        files.append(tmp_path / f"fold{i}.pt")
        torch.save({"network": member.state_dict(), "trainer": {"epoch": 3}}, files[-1])
    keys = {"base_width": 8, "spatial_size": 64, "extra_sequences": ["t1c"], "lesion_pooling": True}
    root = copy_bundle(BUNDLE, tmp_path / "one", **keys, ensemble_size=1)
    assert main(["bundle", "ship", str(root), "--checkpoint", str(files[0]), "--checkpoint", str(files[1])]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 checkpoint(s) given" in err[0] and "ensemble_size 1" in err[0], err
    assert not any((root / "models").iterdir())

    root = copy_bundle(BUNDLE, tmp_path / "two", **keys, ensemble_size=2)
    assert main(["bundle", "ship", str(root), "--checkpoint", str(files[0]), "--checkpoint", str(files[1])]) == 0
    assert f"{files[0]} + {files[1]}" in capsys.readouterr().out
    state = torch.load(root / "models" / "model.pt", weights_only=True)
    expected = ensemble_state_dict([m.state_dict() for m in members])
    assert set(state) == set(expected) and all(torch.equal(state[k], v) for k, v in expected.items())
    verify_net_in_out(net_id="network_def", meta_file=str(root / "configs" / "metadata.json"),
                      config_file=str(root / "configs" / "inference.json"), bundle_root=str(root))
    x = torch.rand(1, 2, 64, 64)
    with torch.no_grad():
        reference = (members[0](x) + members[1](x)) / 2
        torch.testing.assert_close(torch.jit.load(str(root / "models" / "model.ts"))(x), reference)
    import onnxruntime as ort

    session = ort.InferenceSession(str(root / "models" / "model_t2.onnx"), providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(result, reference.numpy(), atol=1e-4)
    assert json.loads((root / "configs" / "metadata.json").read_text())["network_data_format"]["inputs"]["image"][
        "num_channels"] == 2
    capsys.readouterr()
    assert main(["bundle", "verify", str(root)]) == 0  # TorchScript and ONNX (two input channels) agree with PyTorch
    out = capsys.readouterr().out
    assert "model t2: ONNX vs PyTorch                PASS" in out and "(3, 2, 64, 64)" in out, out
