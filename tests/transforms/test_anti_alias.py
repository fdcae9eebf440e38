"""AntiAliasSmooth(d) against MONAI's own anti-aliased resize, alone and inside build_transforms (issue 15)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import Invertd, LoadImage, Resize

from benchmarks.anti_alias_speed import with_monai_anti_aliasing
from transforms import AntiAliasSmooth, AntiAliasSmoothd, anti_aliasing_sigma, build_transforms

# in-plane shrinks by < 1.75x give 3-tap kernels, larger ones 5 or more; then upsampling and a mixed case
SHAPES_AND_SIZES = [
    ((1, 60, 52, 6), (40, 40, -1)),  # sigma 0.25 / 0.15: 3 taps
    ((2, 100, 90, 5), (40, 40, -1)),  # sigma 0.75 / 0.625: 7 taps, two channels
    ((1, 30, 24, 5), (40, 40, -1)),  # upsampling: MONAI does not smooth
    ((1, 64, 24, 5), (40, 40, -1)),  # one axis shrinks, the other grows (sigma 0 there)
    ((1, 40, 40, 5), (40, 40, -1)),  # same size
]


def _resize_with_monai_smoothing(img: torch.Tensor, size) -> torch.Tensor:
    return Resize(size, mode="bilinear", anti_aliasing=True)(img)


def _resize_with_ours(img: torch.Tensor, size) -> torch.Tensor:
    return Resize(size, mode="bilinear", anti_aliasing=False)(AntiAliasSmooth(size)(img))


@pytest.mark.parametrize("shape,size", SHAPES_AND_SIZES)
def test_smoothing_then_resize_equals_monai_anti_aliased_resize(shape, size):
    torch.manual_seed(0)
    img = MetaTensor(torch.rand(shape) * 1000, affine=torch.diag(torch.tensor([0.9, 0.8, 5.0, 1.0])))
    ref, ours = _resize_with_monai_smoothing(img, size), _resize_with_ours(img, size)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype == torch.float32
    assert torch.equal(ours.affine, ref.affine)
    scale = float(ref.abs().max())
    # float32 rounding of the sums at most (torch's conv3d may fuse multiply-adds, depending on the shape)
    assert float((ours - ref).abs().max()) <= 1e-6 * scale


def test_sigma_is_monais_and_only_shrinking_axes_are_smoothed():
    assert anti_aliasing_sigma((60, 52, 6), (40, 40, 6)) == pytest.approx([0.25, 0.15, 0.0])
    assert anti_aliasing_sigma((30, 24, 5), (40, 40, 5)) == [0.0, 0.0, 0.0]
    img = torch.zeros(1, 9, 9, 5)
    img[0, 4, 4, 2] = 1.0
    out = AntiAliasSmooth((4, 9, -1))(img)  # only the first axis shrinks
    assert out[0, :, 4, 2].count_nonzero() > 1  # spread along axis 0
    assert out[0, 4, :, 2].count_nonzero() == 1 and out[0, 4, 4, :].count_nonzero() == 1  # not along the others
    assert torch.isclose(out.sum(), torch.tensor(1.0))


def test_dictionary_version_keeps_metadata_and_leaves_unshrunk_images_alone():
    img = MetaTensor(torch.rand(1, 60, 52, 6), affine=torch.diag(torch.tensor([2.0, 2.0, 5.0, 1.0])),
                     meta={"filename_or_obj": "x.nii.gz"})
    out = AntiAliasSmoothd("image", spatial_size=(40, 40, -1))({"image": img, "other": 1})
    assert isinstance(out["image"], MetaTensor) and out["other"] == 1
    assert torch.equal(out["image"].affine, img.affine) and out["image"].meta["filename_or_obj"] == "x.nii.gz"
    assert not torch.equal(out["image"].as_tensor(), img.as_tensor())
    small = torch.rand(1, 30, 24, 5, dtype=torch.float64)
    assert AntiAliasSmooth((40, 40, -1))(small) is small
    with pytest.raises(ValueError, match="spatial axes"):
        AntiAliasSmooth((40, 40))(img)


# ----------------------------------------------------------------------------- inside build_transforms


def _write(path: Path, array: np.ndarray, affine: np.ndarray) -> str:
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return str(path)


@pytest.fixture(scope="module")
def volumes(tmp_path_factory) -> dict:
    """A head-like volume (ellipse, texture, noise, blob label; LPS storage) and a random one, 90x84x6, and a
    second sequence of the head for multi-channel input."""
    root = tmp_path_factory.mktemp("anti_alias")
    rng = np.random.default_rng(1)
    shape = (90, 84, 6)
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    head = ((ii - 46) / 38) ** 2 + ((jj - 40) / 33) ** 2 < 1
    image = np.where(head, 300 + 80 * np.sin(ii / 4.0) * np.cos(jj / 5.0) + rng.normal(0, 20, shape), 0)
    blob = ((ii - 40) / 9) ** 2 + ((jj - 45) / 7) ** 2 + ((kk - 3) / 2) ** 2 < 1
    lps = np.diag([-0.9, -0.9, 5.0, 1.0])
    lps[:2, 3] = 0.9 * (np.array(shape[:2]) - 1)
    return {
        "head": {"image": _write(root / "head_t2.nii.gz", (image + 200 * blob).astype(np.float32), lps),
                 "label": _write(root / "head_seg.nii.gz", blob.astype(np.uint8), lps),
                 "t1c": _write(root / "head_t1c.nii.gz", (0.5 * image + 50 * blob).astype(np.float32), lps)},
        "random": {"image": _write(root / "random_t2.nii.gz", rng.uniform(1, 1000, shape).astype(np.float32),
                                   np.diag([1.0, 1.1, 4.0, 1.0])),
                   "label": _write(root / "random_seg.nii.gz", (rng.uniform(size=shape) > 0.9).astype(np.uint8),
                                   np.diag([1.0, 1.1, 4.0, 1.0]))},
    }


# 40: shrink with 5-7 taps, 64: 3 taps, 128: upsampling (no smoothing), (48, 96): one axis each way
@pytest.mark.parametrize("spatial_size", [40, 64, 128, (48, 96)])
@pytest.mark.parametrize("case", ["head", "random"])
@pytest.mark.parametrize("mode", ["infer", "validate"])
def test_pipeline_output_is_monais(volumes, case, mode, spatial_size):
    item = {k: v for k, v in volumes[case].items() if k != "t1c" and (mode == "validate" or k != "label")}
    pipeline = build_transforms(mode, spatial_size=spatial_size)
    ours, ref = pipeline(dict(item)), with_monai_anti_aliasing(pipeline)(dict(item))
    assert ours["image"].shape == ref["image"].shape
    assert float((ours["image"] - ref["image"]).abs().max()) <= 1e-5  # normalised to [0, 1]
    assert torch.equal(ours["image"].affine, ref["image"].affine)
    if mode == "validate":
        assert torch.equal(ours["label"].as_tensor(), ref["label"].as_tensor())


@pytest.mark.parametrize("options", [{"extra_image_keys": ("t1c",)}, {"center_crop_fraction": 0.5},
                                     {"extra_image_keys": ("t1c",), "center_crop_fraction": 0.6}])
def test_pipeline_with_extra_sequences_and_central_crop_is_monais(volumes, options):
    pipeline = build_transforms("validate", spatial_size=40, **options)
    item = dict(volumes["head"]) if "extra_image_keys" in options else {
        k: v for k, v in volumes["head"].items() if k != "t1c"}
    ours, ref = pipeline(dict(item)), with_monai_anti_aliasing(pipeline)(dict(item))
    channels = 2 if "extra_image_keys" in options else 1
    assert ours["image"].shape == ref["image"].shape == (channels, 40, 40, 6)
    assert float((ours["image"] - ref["image"]).abs().max()) <= 1e-5
    assert torch.equal(ours["label"].as_tensor(), ref["label"].as_tensor())


@pytest.mark.parametrize("spatial_size", [40, 128])
def test_inversion_restores_the_input_grid_as_before(volumes, spatial_size):
    """Invertd (as build_postprocessing uses it) undoes Resize the same way: its inverse never smooths."""
    item = {"image": volumes["head"]["image"]}
    pipeline = build_transforms("infer", spatial_size=spatial_size)
    reference = with_monai_anti_aliasing(pipeline)
    ours, ref = pipeline(dict(item)), reference(dict(item))
    traced = [op["class"] for op in ours["image"].applied_operations]
    assert traced == ["Orientation", "InPlaneForegroundCrop", "Resize"]  # the smoothing adds no trace
    pred = MetaTensor(ref["image"].as_tensor().clone())  # one prediction, inverted through each trace
    back_ours = Invertd("pred", transform=pipeline, orig_keys="image", nearest_interp=False)({**ours, "pred": pred})
    back_ref = Invertd("pred", transform=reference, orig_keys="image", nearest_interp=False)({**ref, "pred": pred})
    original = LoadImage(image_only=True)(item["image"])
    assert back_ours["pred"].shape == (1, *original.shape)
    np.testing.assert_allclose(back_ours["pred"].affine.numpy(), original.affine.numpy(), atol=1e-6)
    assert torch.equal(back_ours["pred"].as_tensor(), back_ref["pred"].as_tensor())
