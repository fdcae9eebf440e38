"""Every speed option of SegmentationModel against the plain MONAI path (SliceInferer, one slice at a time)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.inferers import SliceInferer, SlidingWindowInferer

from pipeline.inference import load_segmentation_model
from pipeline.networks import build_generator
from transforms import build_transforms

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "dmg_mscg_segmentation"
OVERRIDES = {"features": [4, 8, 16], "spatial_size": 32, "sw_batch_size": 8}
LOGIT_ATOL = 1e-5

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def image_file(tiny_cohort: Path) -> Path:
    return tiny_cohort.parent / "images" / "tiny_00_t2.nii.gz"


class _BrightIsForeground(torch.nn.Module):
    """A network that, like a trained one, says background where there is no head: ``net(x) + 20 (x - 0.3)``."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) + 20.0 * (x - 0.3)


def _bundle(root: Path, image_file: Path) -> Path:
    """Random tiny generator, head bias centred on the median logit (so masks hold 0s and 1s)."""
    torch.manual_seed(0)
    net = build_generator("MSCG", features=OVERRIDES["features"]).eval()
    volume = build_transforms("infer", spatial_size=32)({"image": str(image_file)})["image"]
    with torch.no_grad():
        net.head.bias -= net(volume.as_tensor().permute(3, 0, 1, 2)).median()
    shutil.copytree(BUNDLE / "configs", root / "configs")
    shutil.copytree(BUNDLE / "scripts", root / "scripts")  # the code the configs name
    (root / "models").mkdir()
    torch.save(net.state_dict(), root / "models" / "model_t2.pt")
    torch.jit.script(net).save(str(root / "scripted.ts"))
    return root


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, image_file: Path) -> Path:
    return _bundle(tmp_path_factory.mktemp("fast_bundle"), image_file)


def _model(bundle: Path, **options):
    return load_segmentation_model(bundle, "t2", device="cpu", overrides=OVERRIDES, **options)


def _plain(model, data: dict) -> tuple[torch.Tensor, np.ndarray]:
    """Logits and mask of the plain path: SliceInferer with sw_batch_size=1, then the same postprocessing."""
    with torch.no_grad():
        logits = SliceInferer(roi_size=(32, 32), sw_batch_size=1, spatial_dim=2)(data["image"].unsqueeze(0), model.network)
    mask = model.postprocessing({**data, "pred": logits[0]})["pred"]
    return logits.as_tensor(), np.asarray(mask[0].numpy(), dtype=np.uint8)


def _head_slices(image: torch.Tensor, threshold: float = 0.05) -> torch.Tensor:
    return image.as_tensor().flatten(0, 2).amax(0) > threshold


@pytest.mark.parametrize("options", [{}, {"slice_batch_size": 1}, {"slice_batch_size": 3}, {"slice_batch_size": 100},
                                     {"channels_last": True}, {"fast_slices": False}])
def test_exact_options_equal_the_plain_path(bundle: Path, image_file: Path, options: dict):
    model = _model(bundle, **options)
    data = model.preprocess(image_file)
    logits_ref, mask_ref = _plain(model, data)
    assert set(np.unique(mask_ref)) == {0, 1}, "a constant mask would prove nothing"
    logits = model.logits(data["image"].unsqueeze(0))
    assert logits.shape == logits_ref.shape
    torch.testing.assert_close(logits, logits_ref, atol=LOGIT_ATOL, rtol=0)
    mask, _ = model.predict(data)
    np.testing.assert_array_equal(mask, mask_ref)


def test_defaults_are_the_exact_fast_path(bundle: Path, image_file: Path):
    model = _model(bundle)
    data = model.preprocess(image_file)
    assert model.fast_slices and not model.skip_empty_slices and not model.bf16 and not model.channels_last
    assert model.slice_batch_size == 1  # CPU default: one slice per pass (faster there, bit-identical)
    with torch.no_grad():
        plain = SliceInferer(roi_size=(32, 32), sw_batch_size=1, spatial_dim=2)(data["image"].unsqueeze(0), model.network)
    assert torch.equal(model.logits(data["image"].unsqueeze(0)), plain.as_tensor())
    assert model.uses_fast_slices(data["image"].unsqueeze(0))


def test_skipped_slices_are_empty_and_the_rest_equal_the_plain_path(bundle: Path, image_file: Path):
    model = _model(bundle, skip_empty_slices=True)
    data = model.preprocess(image_file)
    image = data["image"].unsqueeze(0)
    head = _head_slices(data["image"])
    assert 0 < int(head.sum()) < head.numel(), "the tiny volume needs head-free slices for this test"
    logits_ref, _ = _plain(model, data)
    logits = model.logits(image)
    assert torch.isneginf(logits[..., ~head]).all()
    torch.testing.assert_close(logits[..., head], logits_ref[..., head], atol=LOGIT_ATOL, rtol=0)


def test_skipping_is_exact_when_the_model_predicts_background_without_a_head(bundle: Path, image_file: Path):
    plain_model, skip_model = _model(bundle), _model(bundle, skip_empty_slices=True)
    plain_model.network = skip_model.network = _BrightIsForeground(plain_model.network).eval()
    data = plain_model.preprocess(image_file)
    logits_ref, mask_ref = _plain(plain_model, data)
    head = _head_slices(data["image"])
    assert (logits_ref[..., ~head] < 0).all() and mask_ref.any()
    mask, _ = skip_model.predict(skip_model.preprocess(image_file))
    np.testing.assert_array_equal(mask, mask_ref)


def test_a_volume_without_head_gives_an_empty_mask(bundle: Path, image_file: Path):
    model = _model(bundle, skip_empty_slices=True)
    data = model.preprocess(image_file)
    image = torch.zeros_like(data["image"].unsqueeze(0))
    assert torch.isneginf(model.logits(image)).all()


def test_torchscript_model_takes_the_fast_path(bundle: Path, image_file: Path):
    model = load_segmentation_model(bundle, "t2", bundle / "scripted.ts", "cpu", OVERRIDES)
    reference = _model(bundle, fast_slices=False)
    data = model.preprocess(image_file)
    assert model.kind == "torchscript" and model.uses_fast_slices(data["image"].unsqueeze(0))
    np.testing.assert_array_equal(model.predict(data)[0], reference.predict(reference.preprocess(image_file))[0])


def test_bf16_runs_and_stays_close(bundle: Path, image_file: Path):
    """bf16 autocast is opt-in and not exact (8-bit mantissa); it must still run and stay near fp32."""
    model, fp32 = _model(bundle, bf16=True), _model(bundle)
    data = model.preprocess(image_file)
    image = data["image"].unsqueeze(0)[..., 3:5]
    logits, ref = model.logits(image), fp32.logits(image)
    assert logits.dtype == torch.float32 and logits.shape == ref.shape
    assert (logits - ref).abs().max() < 0.25


def test_other_inferers_are_used_as_configured(bundle: Path, image_file: Path):
    model = _model(bundle)
    data = model.preprocess(image_file)
    image = data["image"].unsqueeze(0)
    model.inferer = SliceInferer(roi_size=(16, 16), sw_batch_size=4, spatial_dim=2)
    assert not model.uses_fast_slices(image)
    with torch.no_grad():
        expected = model.inferer(image, model.network)
    torch.testing.assert_close(model.logits(image), expected.as_tensor(), atol=LOGIT_ATOL, rtol=0)
    model.inferer = SlidingWindowInferer(roi_size=(32, 32, 1), sw_batch_size=4)
    assert not model.uses_fast_slices(image)


def test_unknown_speed_option_is_refused(bundle: Path):
    with pytest.raises(TypeError, match="unknown speed option"):
        _model(bundle, turbo=True)
