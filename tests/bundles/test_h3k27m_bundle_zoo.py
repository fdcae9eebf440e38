"""`dmg bundle ship --checkpoint` on the H3K27M bundle and the MONAI Model Zoo's own checks on the shipped copy.

A temporary copy of the bundle gets one tiny, randomly initialised network (base width 8, 64x64 slices; the
repository's bundle ships an ensemble of five width-16 fold models) as a training checkpoint, and is shipped the way
trained weights are (tests/pipeline/test_h3k27m_ensemble.py ships an ensemble)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.cli import main
from pipeline.networks import build_h3k27m_export_net, build_h3k27m_net
from tests.helpers import ONE_NET_H3K27M, copy_bundle, h3k27m_net_keys

REPO = Path(__file__).resolve().parents[2]
H3_BUNDLE = REPO / "bundles" / "h3k27m_classification"
SEG_BUNDLE = REPO / "bundles" / "dmg_mscg_segmentation"
ZOO_CHECK = REPO.parent / "shared" / "model-zoo-check" / "check_bundle.py"
TINY = {"base_width": 8, "spatial_size": 64, "sw_batch_size": 8, "num_workers": 0, **ONE_NET_H3K27M}
SHIPPED_NET = h3k27m_net_keys(H3_BUNDLE)
"""The shipped configuration's input channels and head (a tiny checkpoint must fit its network_def)."""

pytestmark = pytest.mark.usefixtures("single_thread")


def _checkpoint(path: Path, base_width: int = 8, seed: int = 0) -> Path:
    """A training checkpoint of the co-training network (H3K27MNet: the export net's keys), as train.json saves it."""
    torch.manual_seed(seed)
    net = build_h3k27m_net("full", base_width=base_width, img_size=64, **SHIPPED_NET)
    torch.save({"network": net.state_dict(), "optimizer": {"state": {}, "param_groups": []}, "trainer": {"epoch": 3}},
               path)
    return path


@pytest.fixture(scope="module")
def shipped(tmp_path_factory) -> Path:
    """A copy of the H3K27M bundle shipped with a tiny checkpoint; its metadata still says 256x256 before."""
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("h3_ship")
    root = copy_bundle(H3_BUNDLE, tmp / "h3k27m_classification", **TINY)
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    meta["version"], meta["changelog"]["9.9.9"] = "9.9.9", "a version only this test ships"
    (root / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4) + "\n")
    assert main(["bundle", "ship", str(root), "--checkpoint", str(_checkpoint(tmp / "checkpoint_epoch=3.pt"))]) == 0
    return root


def test_ship_writes_weights_exports_and_the_default_model(shipped: Path):
    models = shipped / "models"
    for name in ("model_t2.pt", "model_t2.ts", "model_t2.onnx", "model.pt", "model.ts"):
        assert (models / name).is_file(), name
    state = torch.load(models / "model.pt", weights_only=True)  # a plain state dict, not the training checkpoint
    assert set(state) == set(torch.load(models / "model_t2.pt", weights_only=True))
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    torch.manual_seed(0)  # the checkpoint's network
    expected = build_h3k27m_net("full", base_width=8, img_size=64, **SHIPPED_NET)
    assert all(torch.equal(state[k], v) for k, v in expected.state_dict().items())


def test_exports_agree_with_pytorch_and_carry_the_current_metadata(shipped: Path):
    import onnxruntime as ort

    net = build_h3k27m_export_net("full", base_width=8, img_size=64, **SHIPPED_NET).eval()
    net.load_state_dict(torch.load(shipped / "models" / "model.pt", weights_only=True))
    x = torch.rand(2, SHIPPED_NET["in_channels"], 64, 64)
    extra = {"metadata.json": "", "inference.json": ""}
    scripted = torch.jit.load(str(shipped / "models" / "model.ts"), _extra_files=extra)
    with torch.no_grad():
        reference = net(x)
        torch.testing.assert_close(scripted(x), reference)
    embedded = json.loads(extra["metadata.json"])
    assert embedded["version"] == "9.9.9"  # refreshed at export, not a stale copy
    assert embedded["network_data_format"] == json.loads((shipped / "configs" / "metadata.json").read_text())[
        "network_data_format"]
    session = ort.InferenceSession(str(shipped / "models" / "model_t2.onnx"), providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    np.testing.assert_allclose(result, reference.numpy(), atol=1e-4)


def test_ship_sets_fixed_metadata_shapes_to_the_config(shipped: Path):
    fmt = json.loads((shipped / "configs" / "metadata.json").read_text())["network_data_format"]
    assert fmt["inputs"]["image"]["spatial_shape"] == [64, 64]
    assert fmt["outputs"]["pred"]["spatial_shape"] == [64, 64]


def test_ship_refuses_weights_of_another_width_before_writing(tmp_path: Path, capsys):
    root = copy_bundle(H3_BUNDLE, tmp_path / "h3", **TINY)
    before = (root / "configs" / "metadata.json").read_bytes()
    wide = _checkpoint(tmp_path / "wide.pt", base_width=16)
    assert main(["bundle", "ship", str(root), "--checkpoint", str(wide)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not fit the bundle's network_def" in err[0], err
    assert not any((root / "models").iterdir())
    assert (root / "configs" / "metadata.json").read_bytes() == before


@pytest.mark.skipif(not ZOO_CHECK.is_file(), reason=f"{ZOO_CHECK} is not there")
def test_shipped_h3k27m_bundle_passes_every_zoo_check(shipped: Path, tiny_cohort_t2_t1c: Path):
    result = subprocess.run([sys.executable, str(ZOO_CHECK), str(shipped), "--no-pip", "--dataset_dir",
                             str(tiny_cohort_t2_t1c.parent)], capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"})
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, "\n".join(lines[-20:])
    assert lines[-1] == "8 passed, 0 failed"  # all but the requirements check, which asks the package index


@pytest.mark.parametrize("bundle", [SEG_BUNDLE, H3_BUNDLE], ids=["segmentation", "h3k27m"])
def test_metadata_pins_what_a_monai_only_run_imports(bundle: Path):
    """MONAI requires only numpy and torch; `python -m monai.bundle run` imports fire (its command line), the configs
    nibabel (NIfTI), ignite (engines) and tqdm (progress bar). A recipient installs only the pins: in a fresh venv
    without fire the run stopped at `import fire`."""
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert {"fire", "nibabel", "pytorch-ignite", "tqdm"} <= set(meta["required_packages_version"])
