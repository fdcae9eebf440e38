"""ONNX export and ONNX Runtime inference, checked against the plain PyTorch path on a tiny bundle."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from pipeline.cli import main  # noqa: E402
from pipeline.inference import load_segmentation_model  # noqa: E402
from pipeline.inference.onnx_export import export_bundle_onnx, read_onnx_metadata  # noqa: E402
from pipeline.inference.onnx_runtime import OnnxNetwork, session_options  # noqa: E402
from pipeline.networks import build_generator  # noqa: E402
from tests.helpers import TINY_FEATURES as FEATURES, copy_bundle, tiny_generator  # noqa: E402

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "dmg_mscg_segmentation"
pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory, tiny_cohort: Path) -> Path:
    """A tiny-width bundle (inference.json says the width) with model_t2.pt and its ONNX export."""
    torch.set_num_threads(1)
    root = copy_bundle(BUNDLE, tmp_path_factory.mktemp("onnx_bundle"), features=FEATURES, spatial_size=32)
    torch.save(tiny_generator(tiny_cohort.parent).state_dict(), root / "models" / "model_t2.pt")
    exported = export_bundle_onnx(root)
    assert exported == {"t2": root / "models" / "model_t2.onnx"}
    return root


def _segment(bundle: Path, cohort: Path, out: Path, *extra: str) -> int:
    return main(["segment", "--bundle", str(bundle), "--cohort", str(cohort), "--sequence", "t2", "--out", str(out),
                 "--device", "cpu", *extra])


def _masks(out: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asanyarray(nib.load(p).dataobj) for p in sorted(out.glob("*_seg.nii.gz"))}


def _record(out: Path) -> dict:
    return json.loads((out / "segment_model_t2.json").read_text())


def test_export_has_a_dynamic_batch_axis_and_matches_pytorch(onnx_bundle: Path):
    path = onnx_bundle / "models" / "model_t2.onnx"
    net = OnnxNetwork(path)
    assert net.input_shape[0] not in (1, 2) and net.spatial_size == (32, 32)
    eager = build_generator("MSCG", features=FEATURES).eval()
    eager.load_state_dict(torch.load(onnx_bundle / "models" / "model_t2.pt", weights_only=True))
    for batch in (1, 3, 5):
        x = torch.rand(batch, 1, 32, 32, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = eager(x)
        got = net(x)
        assert got.shape == expected.shape
        assert (got - expected).abs().max().item() <= 1e-4
    meta = read_onnx_metadata(path)
    assert json.loads(meta["dmg.network"]) == {"variant": "MSCG", "features": FEATURES}
    assert meta["dmg.spatial_size"] == "32"


def test_session_options_never_spin():
    options = session_options(3)
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_segment_uses_onnx_by_default_with_the_masks_of_pytorch(onnx_bundle: Path, tiny_cohort: Path,
                                                                 tmp_path: Path):
    assert _segment(onnx_bundle, tiny_cohort, tmp_path / "auto") == 0
    assert _segment(onnx_bundle, tiny_cohort, tmp_path / "torch", "--runtime", "torch") == 0
    assert _record(tmp_path / "auto")["model_file"].endswith("model_t2.onnx")
    assert _record(tmp_path / "torch")["model_file"].endswith("model_t2.pt")
    onnx_masks, torch_masks = _masks(tmp_path / "auto"), _masks(tmp_path / "torch")
    assert sorted(onnx_masks) == sorted(torch_masks) and len(onnx_masks) == 8
    assert {v for m in torch_masks.values() for v in np.unique(m).tolist()} == {0, 1}
    flipped = sum(int((onnx_masks[k] != torch_masks[k]).sum()) for k in onnx_masks)
    assert flipped == 0


def test_logits_of_every_option_match_pytorch(onnx_bundle: Path, tiny_cohort: Path):
    image_file = tiny_cohort.parent / "images" / "tiny_01_t2.nii.gz"
    reference = load_segmentation_model(onnx_bundle, "t2", device="cpu", runtime="torch")
    data = reference.preprocess(image_file)
    expected = reference.logits(data["image"].unsqueeze(0))
    for options in ({}, {"slice_batch_size": 4}, {"fast_slices": False}, {"skip_empty_slices": True}):
        model = load_segmentation_model(onnx_bundle, "t2", device="cpu", **options)
        assert model.kind == "onnx", options
        got = model.logits(data["image"].unsqueeze(0))
        finite = torch.isfinite(got)
        assert finite.any() and torch.equal(finite, torch.isfinite(expected.expand_as(got)) & finite)
        assert (got[finite] - expected[finite]).abs().max().item() <= 1e-4, options


def test_stale_export_falls_back_to_pytorch_and_forced_onnx_refuses(onnx_bundle: Path, tiny_cohort: Path,
                                                                   tmp_path: Path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(onnx_bundle, bundle)
    torch.save(tiny_generator(tiny_cohort.parent, seed=1).state_dict(), bundle / "models" / "model_t2.pt")
    model = load_segmentation_model(bundle, "t2", device="cpu")
    assert model.kind == "pytorch" and model.model_file.name == "model_t2.pt"
    assert _segment(bundle, tiny_cohort, tmp_path / "forced", "--runtime", "onnx") == 2
    err = capsys.readouterr().err
    assert "model_t2.onnx was exported from other weights" in err and "Traceback" not in err
    export_bundle_onnx(bundle, ["t2"])  # re-export after new weights: ONNX again
    assert load_segmentation_model(bundle, "t2", device="cpu").kind == "onnx"


def test_without_an_export_auto_is_pytorch_and_forced_onnx_says_how_to_make_one(onnx_bundle: Path, tmp_path: Path):
    bundle = tmp_path / "bundle"
    shutil.copytree(onnx_bundle, bundle)
    (bundle / "models" / "model_t2.onnx").unlink()
    assert load_segmentation_model(bundle, "t2", device="cpu").kind == "pytorch"
    with pytest.raises(ValueError, match="python -m pipeline.inference.onnx_export"):
        load_segmentation_model(bundle, "t2", device="cpu", runtime="onnx")


def _onnx_rows(bundle: Path) -> dict[str, tuple[str, str]]:
    from pipeline.bundle_sharing import verify_bundle

    return {c.name: (c.status, c.detail) for c in verify_bundle(bundle).checks if "ONNX" in c.name}


def test_bundle_verify_checks_onnx_against_pytorch(onnx_bundle: Path, tiny_cohort: Path, tmp_path: Path):
    from pipeline.inference.onnx_export import export_onnx, source_metadata

    status, detail = _onnx_rows(onnx_bundle)["model t2: ONNX vs PyTorch"]
    assert status == "PASS" and "mask pixels differ" in detail, detail
    # an export of other weights that claims to be of these: the numbers catch it
    bundle = tmp_path / "forged"
    shutil.copytree(onnx_bundle, bundle)
    pt = bundle / "models" / "model_t2.pt"
    meta = source_metadata(pt, {"variant": "MSCG", "features": FEATURES}, 32)
    export_onnx(tiny_generator(tiny_cohort.parent, seed=1), bundle / "models" / "model_t2.onnx", 32, metadata=meta)
    status, detail = _onnx_rows(bundle)["model t2: ONNX vs PyTorch"]
    assert status == "FAIL" and "max |logit diff|" in detail, detail
    # new weights without a re-export: stale
    torch.save(tiny_generator(tiny_cohort.parent, seed=2).state_dict(), pt)
    status, detail = _onnx_rows(bundle)["model t2: ONNX vs PyTorch"]
    assert status == "FAIL" and "exported from other weights" in detail, detail
    (bundle / "models" / "model_t2.onnx").unlink()
    assert _onnx_rows(bundle)["model t2: ONNX"][0] == "NOTE"


def test_export_without_onnxscript_says_what_to_install(tmp_path: Path, monkeypatch):
    import sys

    from pipeline.inference.onnx_export import export_onnx

    monkeypatch.setitem(sys.modules, "onnxscript", None)  # as if not installed
    with pytest.raises(RuntimeError, match="ONNX export needs onnxscript .*pip install onnxscript"):
        export_onnx(torch.nn.Conv2d(1, 1, 1), tmp_path / "m.onnx", 16)
    assert not (tmp_path / "m.onnx").exists()
