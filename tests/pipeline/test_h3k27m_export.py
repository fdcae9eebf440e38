"""The H3K27M bundle's network exports: one tensor output that MONAI's ``verify_net_in_out`` (defaults),
``ckpt_export`` (TorchScript) and ``onnx_export`` accept, described channel by channel in the metadata."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ckpt_export, onnx_export, verify_net_in_out

from pipeline.inference.status import predict_patient_status
from pipeline.networks import H3K27MNet, build_h3k27m_export_net, build_h3k27m_net, split_status_mask
from tests.helpers import ONE_NET_H3K27M, h3k27m_net_keys

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "h3k27m_classification"
TINY = {"base_width": 8, "img_size": 64}
SHIPPED_TINY = {**TINY, **h3k27m_net_keys(BUNDLE)}
"""The shipped configuration's network (its input channels, its head) at a tiny width and size."""

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("lesion_pooling", [False, True])
def test_export_net_is_the_dict_net_in_one_tensor(lesion_pooling):
    torch.manual_seed(0)
    net = build_h3k27m_net("full", **TINY, lesion_pooling=lesion_pooling).eval()
    export = build_h3k27m_export_net("full", **TINY, lesion_pooling=lesion_pooling).eval()
    export.load_state_dict(net.state_dict())  # same parameters, same keys
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        ref, out = net(x), export(x)
    assert out.shape == (2, 3, 64, 64)
    class_logits, mask_logits = split_status_mask(out)
    torch.testing.assert_close(class_logits, ref["class_logits"])
    torch.testing.assert_close(mask_logits, ref["mask_logits"])
    assert torch.equal(out[:, :2].amin((2, 3)), out[:, :2].amax((2, 3)))  # status constant over the slice
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(export)(x), out)
    volume = torch.rand(1, 64, 64, 5)
    assert predict_patient_status(export, volume).probability == pytest.approx(
        predict_patient_status(net, volume).probability)
    with pytest.raises(ValueError, match="mask branch"):
        build_h3k27m_export_net("cls_only", **TINY)
    with pytest.raises(ValueError, match="mask channels"):
        split_status_mask(torch.zeros(2, 2))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A copy of the bundle with random weights as models/model.pt and a tiny network."""
    root = tmp_path_factory.mktemp("h3k27m_bundle")
    shutil.copytree(BUNDLE / "configs", root / "configs")
    (root / "models").mkdir()
    config = json.loads((root / "configs" / "inference.json").read_text())
    config.update(base_width=8, spatial_size=64, **ONE_NET_H3K27M)
    (root / "configs" / "inference.json").write_text(json.dumps(config, indent=4))
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    meta["network_data_format"]["inputs"]["image"]["spatial_shape"] = [64, 64]
    (root / "configs" / "metadata.json").write_text(json.dumps(meta, indent=4))
    torch.manual_seed(1)
    net = build_h3k27m_export_net(config["config_name"], **SHIPPED_TINY)
    torch.save(net.state_dict(), root / "models" / "model.pt")
    return root


def _args(bundle: Path) -> dict:
    return {"net_id": "network_def", "meta_file": str(bundle / "configs" / "metadata.json"),
            "config_file": str(bundle / "configs" / "inference.json"), "bundle_root": str(bundle)}


def test_metadata_describes_every_output_channel():
    meta = json.loads((BUNDLE / "configs" / "metadata.json").read_text())
    config = json.loads((BUNDLE / "configs" / "inference.json").read_text())
    (name, pred), = meta["network_data_format"]["outputs"].items()
    assert pred["num_channels"] == 3 and set(pred["channel_def"]) == {"0", "1", "2"}
    assert "build_h3k27m_ensemble_net" in config["network_def"]  # one export net, or several averaged
    assert pred["spatial_shape"] == meta["network_data_format"]["inputs"]["image"]["spatial_shape"] \
        == [config["spatial_size"]] * 2


def test_verify_net_in_out_with_defaults(bundle: Path):
    verify_net_in_out(**_args(bundle))  # raises on a dict or tuple output or a wrong channel count


def test_ckpt_export_gives_a_torchscript_module_that_matches(bundle: Path):
    ckpt_export(filepath=str(bundle / "models" / "model.ts"), ckpt_file=str(bundle / "models" / "model.pt"),
                **_args(bundle))
    scripted = torch.jit.load(str(bundle / "models" / "model.ts"))
    net = build_h3k27m_export_net("full", **SHIPPED_TINY).eval()
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    x = torch.rand(2, SHIPPED_TINY["in_channels"], 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), net(x))


def test_onnx_export_runs_in_onnx_runtime_and_matches(bundle: Path):
    import onnxruntime as ort

    out = bundle / "models" / "model.onnx"
    onnx_export(filepath=str(out), ckpt_file=str(bundle / "models" / "model.pt"), **_args(bundle))
    net = build_h3k27m_export_net("full", **SHIPPED_TINY).eval()
    net.load_state_dict(torch.load(bundle / "models" / "model.pt", weights_only=True))
    x = torch.rand(1, SHIPPED_TINY["in_channels"], 64, 64)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (result,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(result, net(x).numpy(), atol=1e-4)


def test_dict_net_still_fails_verify_net_in_out(bundle: Path):
    """The reason for the export net: the training network's dict output has no shape."""
    args = _args(bundle)
    config = json.loads(Path(args["config_file"]).read_text())
    config["imports"].append("$from pipeline.networks import build_h3k27m_net")
    config["network_def"] = ("$build_h3k27m_net(@config_name, base_width=@base_width, img_size=@spatial_size, "
                             "in_channels=@in_channels, lesion_pooling=@lesion_pooling)")
    Path(args["config_file"]).with_name("dict_net.json").write_text(json.dumps(config))
    with pytest.raises(AttributeError, match="shape"):
        verify_net_in_out(**{**args, "config_file": str(Path(args["config_file"]).with_name("dict_net.json"))})
    assert isinstance(build_h3k27m_net("full", **TINY), H3K27MNet)
