"""Tests for the `transforms` package: small synthetic volumes, CPU, fast."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset, MetaTensor
from monai.transforms import Compose, LoadImage
from scipy import ndimage

import transforms as T
from transforms import (
    AtomicNibabelWriter,
    AxialSlicesd,
    BinarizeLabel,
    BinarizeLabeld,
    InPlaneForegroundCrop,
    InPlaneForegroundCropd,
    PercentileNormalize,
    build_postprocessing,
    build_slice_augmentation,
    build_transforms,
)

# ----------------------------------------------------------------------------- helpers


def _lps_affine(spacing=(0.8, 0.8, 5.5), degrees=7.0, origin=(120.3, 110.7, -60.2)) -> np.ndarray:
    """LPS-stored (x and y flipped), slightly rotated, anisotropic affine."""
    th = np.deg2rad(degrees)
    rot = np.array([[np.cos(th), -np.sin(th), 0], [np.sin(th), np.cos(th), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([-spacing[0], -spacing[1], spacing[2]])
    affine[:3, 3] = origin
    return affine


@pytest.fixture(scope="module")
def lps_case(tmp_path_factory) -> dict:
    """300x280x24 head-like volume + BraTS-style multi-class blob, stored LPS with an oblique affine."""
    root = tmp_path_factory.mktemp("lps")
    shape = (300, 280, 24)
    rng = np.random.default_rng(0)
    ii, jj, kk = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    head = ((ii - 160) / 110) ** 2 + ((jj - 130) / 95) ** 2 + ((kk - 12) / 14) ** 2 < 1
    image = np.where(head, 200 + 50 * np.sin(ii / 9.0) + rng.normal(0, 5, shape), 0).astype(np.float32)
    mask = ((ii - 140) / 25) ** 2 + ((jj - 150) / 18) ** 2 + ((kk - 10) / 5) ** 2 < 1
    seg = np.zeros(shape, np.uint8)
    seg[mask] = 4
    seg[mask & (ii < 135)] = 2  # a second class inside the blob
    seg[(~mask) & head & (kk == 3) & (ii > 200)] = 1  # class not counted as foreground below
    affine = _lps_affine()
    nib.save(nib.Nifti1Image(image, affine), root / "P001_t1c.nii.gz")
    nib.save(nib.Nifti1Image(seg, affine), root / "P001_t1c_seg.nii.gz")
    return {
        "root": root,
        "image": str(root / "P001_t1c.nii.gz"),
        "label": str(root / "P001_t1c_seg.nii.gz"),
        "mask": mask,
        "shape": shape,
    }


def _volume_dict(depth: int = 10, lesion: tuple[int, ...] = (3, 4, 5, 8), with_label: bool = True) -> dict:
    affine = torch.tensor([[-1.0, 0, 0, 10], [0, -2.0, 0, 20], [0, 0, 5.0, -30], [0, 0, 0, 1]])
    image = MetaTensor(torch.arange(8 * 8 * depth, dtype=torch.float32).reshape(1, 8, 8, depth), affine=affine)
    d = {"image": image, "patient_id": "P7", "center": "A", "sequence": "t2", "h3k27m": 1, "label_classes": [1]}
    if with_label:
        label = torch.zeros(1, 8, 8, depth)
        for z in lesion:
            label[0, 2:4, 3:5, z] = 1
        d["label"] = MetaTensor(label, affine=affine)
    return d


# ----------------------------------------------------------------------------- label binarisation


def test_binarize_brats_classes():
    seg = torch.tensor([[0, 1, 2, 4, 4, 3]], dtype=torch.float32)
    assert BinarizeLabel([4])(seg).tolist() == [[0, 0, 0, 1, 1, 0]]
    assert BinarizeLabel([1, 2, 4])(seg).tolist() == [[0, 1, 1, 1, 1, 0]]
    assert BinarizeLabel()(seg).tolist() == [[0, 1, 1, 1, 1, 1]]  # default: > 0
    assert BinarizeLabel("1, 2,4")(seg).tolist() == [[0, 1, 1, 1, 1, 0]]  # CSV-style string

    meta_seg = MetaTensor(seg, affine=torch.diag(torch.tensor([2.0, 2.0, 2.0, 1.0])), meta={"filename_or_obj": "x"})
    t1c = BinarizeLabeld("label")({"label": meta_seg, "label_classes": [4]})["label"]
    t2 = BinarizeLabeld("label")({"label": meta_seg, "label_classes": [1, 2, 4]})["label"]
    default = BinarizeLabeld("label")({"label": meta_seg})["label"]
    assert t1c.tolist() == [[0, 0, 0, 1, 1, 0]] and t2.tolist() == [[0, 1, 1, 1, 1, 0]]
    assert default.sum() == 5
    assert isinstance(t1c, MetaTensor) and t1c.meta["filename_or_obj"] == "x" and float(t1c.affine[0, 0]) == 2.0
    assert set(torch.unique(t2).tolist()) <= {0.0, 1.0}
    assert BinarizeLabeld("label")({"image": seg}) == {"image": seg}  # label optional


# ----------------------------------------------------------------------------- normalisation


def test_normalisation_range_and_foreground_percentiles():
    rng = np.random.default_rng(1)
    img = np.zeros((1, 40, 40, 10), np.float32)
    fg = rng.gamma(2.0, 100.0, size=(1, 20, 20, 10)).astype(np.float32) + 1.0
    img[:, 10:30, 10:30] = fg
    out = PercentileNormalize(0.5, 99.5)(torch.from_numpy(img)).numpy()

    assert out.min() == 0.0 and out.max() == 1.0 and out.dtype == np.float32
    lo, hi = np.percentile(fg, [0.5, 99.5])  # over the foreground, not the (mostly zero) whole image
    np.testing.assert_allclose(out, np.clip((img - lo) / (hi - lo), 0, 1), atol=1e-5)
    assert np.all(out[:, :10] == 0)  # background stays at 0
    inner = out[:, 10:30, 10:30]
    assert 0.002 < np.mean(inner == 1.0) < 0.01 and 0.002 < np.mean(inner == 0.0) < 0.01
    wider = PercentileNormalize(5, 95)(torch.from_numpy(img)).numpy()[:, 10:30, 10:30]
    assert np.mean(wider == 1.0) > 0.04

    scaled = PercentileNormalize(0.5, 99.5)(torch.from_numpy(img * 37.5)).numpy()
    np.testing.assert_allclose(scaled, out, atol=1e-5)  # global intensity scale does not matter

    const = PercentileNormalize()(torch.full((1, 4, 4, 2), 7.0))
    assert torch.all(const == 0) and not torch.isnan(const).any()
    with pytest.raises(ValueError):
        PercentileNormalize(60, 40)


# ----------------------------------------------------------------------------- in-plane crop


def test_inplane_crop_box_slice_axis_and_inverse():
    img = torch.zeros(1, 40, 50, 6)
    img[0, 10:20, 5:35, 2] = 100.0  # foreground on a single slice
    img[0, 0, 0, 0] = 1.0  # below the relative threshold
    crop = InPlaneForegroundCrop(threshold=0.05, margin=2, square=False)
    out = crop(MetaTensor(img))
    assert out.shape == (1, 14, 34, 6)  # slice axis untouched, margin 2 each side
    assert float(out.sum()) == float(img[0, 10:20, 5:35, 2].sum())
    square = InPlaneForegroundCrop(threshold=0.05, margin=2, square=True)
    assert square.compute_box(img) == ([0, 3], [34, 37])
    assert square.compute_box(img * 1000) == square.compute_box(img)  # relative threshold

    cropd = InPlaneForegroundCropd(["image", "label"], margin=2, square=False)
    label = (img > 50).float()
    d = cropd({"image": MetaTensor(img), "label": MetaTensor(label)})
    assert d["label"].shape == (1, 14, 34, 6) and d["label"].sum() == label.sum()
    assert [op["class"] for op in d["image"].applied_operations] == ["InPlaneForegroundCrop"]
    inv = cropd.inverse(d)
    assert inv["image"].shape == img.shape and torch.equal(inv["label"].as_tensor(), label)
    assert not inv["image"].applied_operations

    empty = InPlaneForegroundCrop()(MetaTensor(torch.zeros(1, 9, 7, 3)))
    assert empty.shape == (1, 9, 7, 3)


# ----------------------------------------------------------------------------- axial slices


def test_axial_slices_policies_and_content():
    d = _volume_dict()
    assert len(AxialSlicesd(policy="all")(d)) == 10
    lesion = AxialSlicesd(policy="lesion")(d)
    assert [s["slice_index"] for s in lesion] == [3, 4, 5, 8]
    for ratio, expected in [(0.5, 6), (1.0, 8), (10.0, 10)]:
        out = AxialSlicesd(policy="lesion+background", background_ratio=ratio)(d)
        idx = [s["slice_index"] for s in out]
        assert len(out) == expected and {3, 4, 5, 8} <= set(idx) and idx == sorted(set(idx))

    s = lesion[1]
    assert s["image"].shape == (1, 8, 8) and s["label"].shape == (1, 8, 8)
    assert torch.equal(s["image"].as_tensor(), d["image"].as_tensor()[..., 4])
    assert {k: s[k] for k in ("patient_id", "center", "sequence", "h3k27m")} == {
        "patient_id": "P7", "center": "A", "sequence": "t2", "h3k27m": 1,
    }
    assert "label_classes" not in s
    # the 2D affine maps in-plane voxels to the same world point as the 3D affine at that slice
    voxel3d = d["image"].affine.double() @ torch.tensor([2.0, 3.0, 4.0, 1.0], dtype=torch.float64)
    voxel2d = s["image"].affine.double() @ torch.tensor([2.0, 3.0, 1.0], dtype=torch.float64)
    assert torch.allclose(voxel2d[:2], voxel3d[:2])

    empty = _volume_dict(lesion=())
    assert AxialSlicesd(policy="lesion")(empty) == []
    assert len(AxialSlicesd(policy="lesion+background", min_background=1)(empty)) == 1
    assert len(AxialSlicesd(policy="lesion+background")(_volume_dict(with_label=False))) == 10
    with pytest.raises(ValueError):
        AxialSlicesd(policy="some")


def test_axial_slices_deterministic_with_seed():
    d = _volume_dict(depth=30, lesion=(10, 11, 12, 13))

    def pick(seed: int) -> list[int]:
        t = AxialSlicesd(policy="lesion+background", background_ratio=1.0)
        t.set_random_state(seed=seed)
        return [s["slice_index"] for s in t(d)]

    assert pick(7) == pick(7)
    assert len({tuple(pick(seed)) for seed in range(8)}) > 1
    composed = Compose([AxialSlicesd(policy="lesion+background")])
    composed.set_random_state(seed=3)
    first = [s["slice_index"] for s in composed(d)]
    composed.set_random_state(seed=3)
    assert [s["slice_index"] for s in composed(d)] == first


def test_axial_slices_flatten_in_dataloader():
    data = [dict(_volume_dict(lesion=(3, 4, 5)), patient_id="A"), dict(_volume_dict(lesion=(7,)), patient_id="B")]
    ds = Dataset(data, Compose([AxialSlicesd(policy="lesion+background", background_ratio=1.0)]))
    batches = list(DataLoader(ds, batch_size=2, num_workers=0))
    assert len(batches) == 1
    batch = batches[0]
    assert batch["image"].shape == (6 + 2, 1, 8, 8) and batch["label"].shape == (8, 1, 8, 8)
    assert batch["patient_id"] == ["A"] * 6 + ["B"] * 2
    assert batch["slice_index"].shape == (8,) and batch["h3k27m"].tolist() == [1] * 8


# ----------------------------------------------------------------------------- pipelines


def _small_cases(root: Path) -> list[dict]:
    rng = np.random.default_rng(2)
    cases = []
    for p, lesion in enumerate([(2, 5), (3, 4)]):
        img = np.zeros((60, 50, 8), np.float32)
        img[5:55, 8:45] = rng.uniform(50, 150, (50, 37, 8))
        seg = np.zeros((60, 50, 8), np.uint8)
        seg[20:30, 20:30, lesion[0] : lesion[1]] = 2
        seg[40:45, 20:30, 0] = 1  # not foreground for t1c-style classes
        affine = np.diag([-1.0, -1.0, 5.0, 1.0])
        nib.save(nib.Nifti1Image(img * (p + 1) * 10, affine), root / f"P{p}_t2.nii.gz")
        nib.save(nib.Nifti1Image(seg, affine), root / f"P{p}_t2_seg.nii.gz")
        cases.append(
            {"image": str(root / f"P{p}_t2.nii.gz"), "label": str(root / f"P{p}_t2_seg.nii.gz"),
             "label_classes": [2, 4] if p == 0 else [2], "patient_id": f"P{p}", "center": "C1",
             "sequence": "t2", "h3k27m": p}
        )
    return cases


def test_slice_augmentation_intensity_changes_image_only():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.uniform(0.2, 0.8, (1, 48, 48)).astype(np.float32))
    label = torch.zeros(1, 48, 48)
    label[:, 20:30, 18:26] = 1
    # spatial augmentation off, every intensity transform on: the label is untouched
    aug = build_slice_augmentation(("image", "label"), flip_prob=0.0, rotate_prob=0.0, affine_prob=0.0,
                                   elastic_prob=0.0, intensity_prob=1.0)
    aug.set_random_state(seed=3)
    out = aug({"image": image.clone(), "label": label.clone()})
    assert torch.equal(out["label"], label)
    assert out["image"].shape == image.shape and out["image"].dtype == torch.float32
    assert not torch.allclose(out["image"], image, atol=1e-3)
    assert torch.isfinite(out["image"]).all()
    # reproducible from the seed, and off when intensity_prob=0 and the spatial part is off
    aug.set_random_state(seed=3)
    assert torch.equal(aug({"image": image.clone(), "label": label.clone()})["image"], out["image"])
    plain = build_slice_augmentation(("image", "label"), flip_prob=0.0, rotate_prob=0.0, affine_prob=0.0,
                                     elastic_prob=0.0, intensity_prob=0.0)
    assert torch.equal(plain({"image": image.clone(), "label": label.clone()})["image"], image)
    # an image-only dict (unlabeled slices) works too
    only = build_slice_augmentation(("image",), intensity_prob=1.0)({"image": image.clone()})
    assert set(only) == {"image"}


def test_train_pipeline_dataloader(tmp_path):
    cases = _small_cases(tmp_path)
    train = build_transforms("train", spatial_size=64, slice_policy="lesion+background", background_ratio=1.0,
                             intensity_prob=0.0)
    train.set_random_state(seed=0)
    batch = next(iter(DataLoader(Dataset(cases, train), batch_size=2, num_workers=0)))
    assert batch["image"].shape == (6 + 2, 1, 64, 64)
    assert type(batch["image"]) is torch.Tensor and batch["image"].dtype == torch.float32
    assert 0.0 <= float(batch["image"].min()) and float(batch["image"].max()) <= 1.0
    assert set(torch.unique(batch["label"]).tolist()) == {0.0, 1.0}
    assert batch["patient_id"] == ["P0"] * 6 + ["P1"] * 2 and "label_classes" not in batch

    # left-right flip is along RAS axis 0 of the slice; label follows the image
    base = build_transforms("train", spatial_size=64, slice_policy="all", augment=False)(cases[0])
    flip = build_transforms("train", spatial_size=64, slice_policy="all", flip_prob=1.0, rotate_prob=0.0,
                            intensity_prob=0.0, affine_prob=0.0, elastic_prob=0.0)(cases[0])
    assert len(base) == len(flip) == 8
    assert torch.allclose(flip[3]["image"], torch.flip(base[3]["image"], dims=[1]))
    assert torch.equal(flip[3]["label"], torch.flip(base[3]["label"], dims=[1]))
    rot = build_transforms("train", spatial_size=64, slice_policy="lesion", flip_prob=0.0, rotate_prob=1.0,
                           intensity_prob=0.0, affine_prob=0.0, elastic_prob=0.0)
    rot.set_random_state(seed=1)
    rotated = rot(cases[0])
    assert set(torch.unique(rotated[0]["label"]).tolist()) <= {0.0, 1.0}  # nearest for the label
    assert not torch.equal(rotated[0]["image"], base[rotated[0]["slice_index"]]["image"])


def test_validate_and_infer_outputs(tmp_path):
    case = _small_cases(tmp_path)[0]
    val = build_transforms("validate", spatial_size=(64, 48))(case)
    assert val["image"].shape == (1, 64, 48, 8) and val["label"].shape == (1, 64, 48, 8)
    assert isinstance(val["image"], MetaTensor) and "label_classes" not in val
    assert lesion_count(val["label"]) == 3
    assert nib.aff2axcodes(val["image"].affine.numpy()) == ("R", "A", "S")
    inf = build_transforms("infer")(case)
    assert inf["image"].shape == (1, 240, 240, 8) and "label" in inf and isinstance(inf["label"], str)
    with pytest.raises(ValueError):
        build_transforms("test")  # type: ignore[arg-type]


def lesion_count(label: torch.Tensor) -> int:
    return int(T.lesion_slices(label).sum())


def test_crop_resize_invert_round_trip(lps_case, tmp_path):
    pre = build_transforms("infer")
    item = pre({"image": lps_case["image"], "patient_id": "P001", "sequence": "t1c"})
    assert item["image"].shape == (1, 240, 240, lps_case["shape"][2])
    assert nib.aff2axcodes(item["image"].affine.numpy()) == ("R", "A", "S")
    traced = [op["class"] for op in item["image"].applied_operations]
    assert traced == ["Orientation", "InPlaneForegroundCrop", "Resize"]

    validate = build_transforms("validate")
    reference = validate({"image": lps_case["image"], "label": lps_case["label"], "label_classes": [2, 4]})
    item["pred"] = reference["label"].as_tensor().clone()  # processed label used as a prediction
    out = build_postprocessing(pre, output_dir=str(tmp_path))(item)
    pred = out["pred"]

    original = LoadImage(image_only=True)(lps_case["image"])
    assert pred.shape == (1, *lps_case["shape"]) and pred.dtype == torch.uint8
    np.testing.assert_allclose(pred.affine.numpy(), original.affine.numpy(), atol=1e-6)

    pm, mask = pred[0].numpy().astype(bool), lps_case["mask"]
    dice = 2 * (pm & mask).sum() / (pm.sum() + mask.sum())
    assert dice > 0.97
    band = ndimage.binary_dilation(mask) & ~ndimage.binary_erosion(mask)  # within one voxel of the boundary
    assert not ((pm ^ mask) & ~band).any()

    saved = nib.load(tmp_path / "P001_t1c_seg.nii.gz")
    source = nib.load(lps_case["image"])
    assert saved.shape == source.shape and saved.get_data_dtype() == np.uint8
    np.testing.assert_allclose(saved.affine, source.affine, atol=1e-5)
    assert np.array_equal(np.asarray(saved.dataobj).astype(bool), pm)


def test_postprocessing_argmax_and_file_name(tmp_path):
    case = _small_cases(tmp_path)[0]
    pre = build_transforms("validate", spatial_size=64)
    item = pre(case)
    fg = item["label"].as_tensor()
    logits = torch.cat([1.0 - 2.0 * fg, 2.0 * fg - 1.0])  # two-channel scores
    del item["patient_id"]  # name falls back to the input file stem
    out_dir = tmp_path / "pred"
    post = build_postprocessing(pre, activation="softmax", argmax=True, output_dir=str(out_dir))
    pred = post({**item, "pred": logits})["pred"]
    reference = np.asarray(nib.load(case["label"]).dataobj) == 2
    assert pred.shape == (1, 60, 50, 8) and np.array_equal(pred[0].numpy().astype(bool), reference)
    assert [p.name for p in out_dir.iterdir()] == ["P0_t2_seg.nii.gz"]


def test_package_does_not_import_pipeline_or_evaluation():
    pattern = re.compile(r"^\s*(from|import)\s+(pipeline|evaluation)\b", re.MULTILINE)
    sources = list(Path(T.__file__).parent.glob("*.py"))
    assert sources and not [p.name for p in sources if pattern.search(p.read_text())]


def test_atomic_writer_keeps_the_old_file_when_a_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "p_t2_seg.nii.gz"
    writer = AtomicNibabelWriter(output_dtype=np.uint8)
    first = np.zeros((6, 5, 4), dtype=np.uint8)
    first[2, 2, 2] = 1
    writer.set_data_array(first, channel_dim=None)
    writer.set_metadata({"affine": np.diag([0.5, 0.5, 5.0, 1.0])}, resample=False)
    writer.write(target)
    assert np.array_equal(np.asanyarray(nib.load(target).dataobj), first)

    def broken_save(img, filename):
        Path(filename).write_bytes(b"half a gzip")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", broken_save)
    writer.set_data_array(np.ones((6, 5, 4), dtype=np.uint8), channel_dim=None)
    with pytest.raises(OSError, match="disk full"):
        writer.write(target)
    monkeypatch.undo()
    assert np.array_equal(np.asanyarray(nib.load(target).dataobj), first)  # untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary file left


def test_spatial_augmentation_keeps_image_and_label_aligned():
    """Every spatial transform on (flip, rotation, scale/shear, elastic): the label still covers exactly the
    bright square it labelled in the image (image bilinear, label nearest), on many random draws."""
    image = torch.zeros(1, 64, 64)
    image[:, 20:44, 16:40] = 1.0
    aug = build_slice_augmentation(("image", "label"), flip_prob=0.5, rotate_prob=1.0, affine_prob=1.0,
                                   elastic_prob=1.0, intensity_prob=0.0)
    aug.set_random_state(seed=7)
    moved = 0
    for _ in range(12):
        out = aug({"image": image.clone(), "label": image.clone()})
        label, bright = out["label"] > 0.5, out["image"] > 0.5
        assert set(torch.unique(out["label"]).tolist()) <= {0.0, 1.0}
        iou = float((label & bright).sum()) / float((label | bright).sum())
        assert iou > 0.9, iou
        moved += not torch.equal(out["label"], image)
    assert moved >= 10  # the transforms did move things


def test_intensity_augmentation_covers_the_randomisations():
    names = [type(t).__name__ for t in build_slice_augmentation(("image", "label")).transforms]
    for expected in ("RandAffined", "Rand2DElasticd", "RandHistogramShiftd", "RandAdjustContrastd", "RandBiasFieldd",
                     "RandGaussianSmoothd", "RandGaussianSharpend", "RandGibbsNoised", "RandKSpaceSpikeNoised",
                     "RandSimulateLowResolutiond", "RandScaleIntensityd"):
        assert expected in names


def test_n4_removes_a_smooth_bias_and_keeps_shape_and_affine():
    from monai.data import MetaTensor

    from transforms import N4BiasFieldCorrectiond

    rng = np.random.default_rng(0)
    shape = (48, 48, 12)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    head = ((grid ** 2).sum(0) < 0.8).astype(np.float32)
    tissue = head * (100.0 + rng.normal(0, 2, shape))
    bias = np.exp(0.4 * grid[0] + 0.2 * grid[1])
    affine = torch.tensor([[0.0, -0.9, 0.0, 10.0], [0.9, 0.0, 0.0, -5.0], [0.0, 0.0, 5.0, 2.0], [0, 0, 0, 1.0]])
    image = MetaTensor(torch.from_numpy((tissue * bias)[None].astype(np.float32)), affine=affine)
    out = N4BiasFieldCorrectiond("image", shrink_factor=2)({"image": image})["image"]
    assert isinstance(out, MetaTensor) and out.shape == image.shape and torch.equal(out.affine, image.affine)
    inside = head > 0

    def spread(a: np.ndarray) -> float:
        values = a[inside]
        return float(values.std() / values.mean())

    assert spread(out[0].numpy()) < 0.5 * spread(image[0].numpy())
    # off by default in the preprocessing; on with n4=True
    names = [type(t).__name__ for t in build_transforms("infer", n4=True).transforms]
    assert "N4BiasFieldCorrectiond" in names
    assert "N4BiasFieldCorrectiond" not in [type(t).__name__ for t in build_transforms("infer").transforms]
