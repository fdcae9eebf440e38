"""Per-case metrics against an independent numpy/scipy implementation written here."""

from __future__ import annotations

import math
import re
import time

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from evaluation import (
    BRATS_POLICY,
    RAW_POLICY,
    EmptyCasePolicy,
    apply_empty_policy,
    compute_case_metrics,
    compute_slice_metrics,
    load_mask,
    spacing_from_nifti,
    surface_distances,
)
from evaluation.mask_io import grid_mismatch

RTOL = 1e-6
DISTANCE_KEYS = ("hd95", "hd95_pooled")
OVERLAP_KEYS = ("dsc", "jaccard", "sensitivity", "ppv")


# ----------------------------------------------------------------------------------------------
# Independent reference implementation (numpy / scipy only)
# ----------------------------------------------------------------------------------------------


def ref_surface(mask: np.ndarray) -> np.ndarray:
    """Face-connected boundary; outside the array counts as background."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def ref_directed(a: np.ndarray, b: np.ndarray, spacing) -> np.ndarray:
    """Exact EDT (mm) from every surface voxel of a to the surface of b."""
    edt = ndimage.distance_transform_edt(~ref_surface(b), sampling=spacing)
    return edt[ref_surface(a)]


def ref_percentile(values: np.ndarray, q: float = 95.0) -> float:
    """Linear interpolation between order statistics, written out."""
    s = np.sort(np.asarray(values, dtype=np.float64))
    h = (len(s) - 1) * q / 100.0
    lo = int(math.floor(h))
    hi = min(lo + 1, len(s) - 1)
    return float(s[lo] + (h - lo) * (s[hi] - s[lo]))


def ref_div(num: float, den: float) -> float:
    return float("nan") if den == 0 else num / den


def ref_metrics(pred: np.ndarray, ref: np.ndarray, spacing) -> dict:
    pred, ref = pred.astype(bool), ref.astype(bool)
    tp = int((pred & ref).sum())
    fp = int((pred & ~ref).sum())
    fn = int((~pred & ref).sum())
    out = {
        "dsc": ref_div(2 * tp, 2 * tp + fp + fn),
        "jaccard": ref_div(tp, tp + fp + fn),
        "sensitivity": ref_div(tp, tp + fn),
        "ppv": ref_div(tp, tp + fp),
    }
    if not pred.any() and not ref.any():
        out["hd95"] = out["hd95_pooled"] = float("nan")
    elif not pred.any() or not ref.any():
        out["hd95"] = out["hd95_pooled"] = float("inf")
    else:
        d1, d2 = ref_directed(pred, ref, spacing), ref_directed(ref, pred, spacing)
        out["hd95"] = max(ref_percentile(d1), ref_percentile(d2))
        out["hd95_pooled"] = ref_percentile(np.concatenate([d1, d2]))
    voxel = float(np.prod(spacing))
    if pred.ndim == 3:
        out["ref_volume_ml"] = ref.sum() * voxel / 1000.0
        out["pred_volume_ml"] = pred.sum() * voxel / 1000.0
    else:
        out["ref_area_mm2"] = ref.sum() * voxel
        out["pred_area_mm2"] = pred.sum() * voxel
    out["ref_empty"] = not ref.any()
    out["pred_empty"] = not pred.any()
    return out


def assert_rows_identical(a: dict, b: dict) -> None:
    """Exact equality, NaN equal to NaN."""
    assert set(a) == set(b)
    for key in a:
        assert a[key] == b[key] or (math.isnan(a[key]) and math.isnan(b[key])), (key, a[key], b[key])


def assert_rows_close(got: dict, want: dict) -> None:
    assert set(got) == set(want), (sorted(got), sorted(want))
    for key, w in want.items():
        g = got[key]
        if isinstance(w, (bool, np.bool_)):
            assert g is bool(w), (key, g, w)
        elif math.isnan(w):
            assert math.isnan(g), (key, g)
        elif math.isinf(w):
            assert g == w, (key, g, w)
        else:
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=1e-12, err_msg=key)


# ----------------------------------------------------------------------------------------------
# Test data
# ----------------------------------------------------------------------------------------------


def random_blob(shape, seed: int, sigma: float = 2.0, fraction: float = 0.08) -> np.ndarray:
    """Irregular, possibly multi-component blobs: thresholded smoothed noise."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return field > np.quantile(field, 1.0 - fraction)


def sphere(shape, center, radius_mm: float, spacing) -> np.ndarray:
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in zip(shape, center, spacing)], indexing="ij")
    return sum(g**2 for g in grids) <= radius_mm**2


SPACINGS_3D = [(1.0, 1.0, 1.0), (0.47, 0.47, 6.0), (0.8, 1.3, 2.5)]


# ----------------------------------------------------------------------------------------------
# The reference implementation itself
# ----------------------------------------------------------------------------------------------


def test_reference_surface_and_percentile_sanity():
    cube = np.zeros((5, 5, 5), bool)
    cube[1:4, 1:4, 1:4] = True
    assert ref_surface(cube).sum() == 26  # all but the centre
    full = np.ones((3, 3, 3), bool)
    assert ref_surface(full).sum() == 26  # the array edge is background
    assert ref_percentile(np.arange(21.0)) == pytest.approx(19.0)
    assert ref_percentile(np.array([0.0, 10.0])) == pytest.approx(9.5)


# ----------------------------------------------------------------------------------------------
# Metric values against the reference
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("spacing", SPACINGS_3D)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_blobs_3d(seed, spacing):
    shape = (36, 32, 20)
    pred = random_blob(shape, seed)
    ref = random_blob(shape, seed + 100)
    pred |= ndimage.binary_dilation(ref, iterations=1) & random_blob(shape, seed + 200, fraction=0.5)
    got = compute_case_metrics(pred, ref, spacing)
    assert_rows_close(got, ref_metrics(pred, ref, spacing))
    assert 0 < got["dsc"] < 1 and got["hd95_pooled"] <= got["hd95"]


@pytest.mark.parametrize("spacing", SPACINGS_3D)
@pytest.mark.parametrize("shift", [(0, 0, 0), (2, 0, 0), (1, -3, 1), (0, 0, 2)])
def test_shifted_spheres(shift, spacing):
    shape = (48, 48, 24)
    center = np.array([24.0, 24.0, 12.0])
    ref = sphere(shape, center, 9.0, spacing)
    pred = sphere(shape, center + np.array(shift), 9.0, spacing)
    got = compute_case_metrics(pred, ref, spacing)
    assert_rows_close(got, ref_metrics(pred, ref, spacing))
    if shift == (0, 0, 0):
        assert got["dsc"] == 1.0 and got["hd95"] == 0.0 and got["hd95_pooled"] == 0.0


def test_directed_distances_match_reference_edt():
    spacing = (0.47, 0.47, 6.0)
    pred = random_blob((30, 30, 12), 5)
    ref = random_blob((30, 30, 12), 6)
    d_pr, d_rp = surface_distances(pred, ref, spacing)
    np.testing.assert_allclose(d_pr, ref_directed(pred, ref, spacing), rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(d_rp, ref_directed(ref, pred, spacing), rtol=RTOL, atol=1e-12)


def test_hd95_is_max_of_directed_percentiles_not_pooled():
    # The prediction adds a remote false-positive cube: ~6 % of the prediction's surface but only
    # ~3 % of the pooled surface set, so the directed and pooled 95th percentiles differ a lot.
    spacing = (1.0, 1.0, 1.0)
    ref = sphere((48, 40, 40), (14, 20, 20), 8.0, spacing)
    pred = ref.copy()
    pred[36:40, 18:22, 18:22] = True
    got = compute_case_metrics(pred, ref, spacing)
    d1, d2 = ref_directed(pred, ref, spacing), ref_directed(ref, pred, spacing)
    assert got["hd95"] == pytest.approx(max(ref_percentile(d1), ref_percentile(d2)), rel=RTOL)
    assert got["hd95_pooled"] == pytest.approx(ref_percentile(np.concatenate([d1, d2])), rel=RTOL)
    assert got["hd95"] > 10.0 and got["hd95_pooled"] < 1.0


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.47, 0.8, 6.0)])
def test_percentile_interpolates_linearly(spacing):
    # Reference: one voxel. Prediction: a one-voxel-thick line (every voxel is surface) at
    # 1..10 voxels along the last axis, so the distance sets are known in closed form:
    # d(P->R) = k*s for k = 1..10 and d(R->P) = {s}.
    ref = np.zeros((3, 3, 12), bool)
    pred = np.zeros((3, 3, 12), bool)
    ref[1, 1, 0] = True
    pred[1, 1, 1:11] = True
    s = spacing[2]
    got = compute_case_metrics(pred, ref, spacing)
    assert got["hd95"] == pytest.approx(9.55 * s, rel=RTOL)  # position 0.95 * 9 = 8.55 -> 9 + 0.55
    assert got["hd95_pooled"] == pytest.approx(9.5 * s, rel=RTOL)  # 11 values: 1, 1, 2, ..., 10
    assert_rows_close(got, ref_metrics(pred, ref, spacing))


@pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")
def test_hd95_equals_monai_compute_hausdorff_distance():
    from monai.metrics import compute_hausdorff_distance

    spacing = (0.47, 0.47, 6.0)
    pred = random_blob((40, 40, 14), 11)
    ref = random_blob((40, 40, 14), 12)
    monai_hd = compute_hausdorff_distance(
        pred[None, None].astype(np.float32), ref[None, None].astype(np.float32),
        include_background=True, percentile=95, spacing=spacing,
    )
    assert compute_case_metrics(pred, ref, spacing)["hd95"] == pytest.approx(float(monai_hd), rel=RTOL)


@pytest.mark.parametrize("seed", [0, 3])
def test_2d_slices(seed):
    shape = (40, 44)
    spacing = (0.47, 0.6)
    pred = random_blob(shape, seed, fraction=0.1)
    ref = random_blob(shape, seed + 1, fraction=0.1)
    got = compute_case_metrics(pred, ref, spacing)
    assert "ref_area_mm2" in got and "ref_volume_ml" not in got
    assert_rows_close(got, ref_metrics(pred, ref, spacing))


def test_slice_metrics_of_a_volume():
    spacing = (0.47, 0.6, 5.0)
    pred = random_blob((30, 32, 6), 21, fraction=0.1)
    ref = random_blob((30, 32, 6), 22, fraction=0.1)
    ref[..., 0] = False  # one slice with an empty reference
    pred[..., 0] = False  # ... and an empty prediction
    pred[..., 5] = False
    rows = compute_slice_metrics(pred, ref, spacing, axis=2)
    assert [r["slice_index"] for r in rows] == list(range(6))
    for k, row in enumerate(rows):
        row = dict(row)
        row.pop("slice_index")
        assert_rows_close(row, ref_metrics(pred[..., k], ref[..., k], spacing[:2]))
    assert rows[0]["ref_empty"] and rows[0]["pred_empty"] and rows[5]["pred_empty"]
    # Another axis: in-plane spacing is the other two values.
    rows = compute_slice_metrics(pred, ref, spacing, axis=0, slices=[7])
    row = dict(rows[0])
    row.pop("slice_index")
    assert_rows_close(row, ref_metrics(pred[7], ref[7], spacing[1:]))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.47, 0.47, 6.0)])
def test_objects_touching_the_border(spacing):
    shape = (24, 20, 10)
    ref = random_blob(shape, 31, fraction=0.3)
    ref[0, :, :] |= ref[1, :, :]
    ref[:, -1, :] = True
    ref[:, :, 0] |= ref[:, :, 1]
    pred = np.roll(ref, 1, axis=1)
    pred[:, :, -1] = True
    assert ref[0].any() and ref[:, -1].any() and pred[:, :, -1].any()
    got = compute_case_metrics(pred, ref, spacing)
    assert_rows_close(got, ref_metrics(pred, ref, spacing))
    # A mask filling the whole array has a surface on every face.
    full = np.ones(shape, bool)
    got = compute_case_metrics(full, ref, spacing)
    assert_rows_close(got, ref_metrics(full, ref, spacing))


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.47, 0.47, 6.0)])
def test_single_voxels(spacing):
    shape = (12, 12, 8)
    pred = np.zeros(shape, bool)
    ref = np.zeros(shape, bool)
    pred[2, 3, 1] = True
    ref[5, 7, 4] = True
    expected = math.sqrt((3 * spacing[0]) ** 2 + (4 * spacing[1]) ** 2 + (3 * spacing[2]) ** 2)
    got = compute_case_metrics(pred, ref, spacing)
    assert got["hd95"] == pytest.approx(expected, rel=RTOL)
    assert got["hd95_pooled"] == pytest.approx(expected, rel=RTOL)
    assert got["dsc"] == 0.0 and got["jaccard"] == 0.0 and got["sensitivity"] == 0.0 and got["ppv"] == 0.0
    assert_rows_close(got, ref_metrics(pred, ref, spacing))
    same = compute_case_metrics(ref, ref, spacing)
    assert same["dsc"] == 1.0 and same["hd95"] == 0.0
    assert same["ref_volume_ml"] == pytest.approx(np.prod(spacing) / 1000.0, rel=1e-12)
    # A single voxel against a blob (at the array corner).
    pred = np.zeros(shape, bool)
    pred[0, 0, 0] = True
    blob = random_blob(shape, 4, fraction=0.2)
    assert_rows_close(compute_case_metrics(pred, blob, spacing), ref_metrics(pred, blob, spacing))


def test_accepts_0_1_numeric_arrays_and_refuses_other_values():
    ref = random_blob((16, 16, 8), 1)
    got = compute_case_metrics(ref.astype(np.uint8), ref.astype(np.float32), (1, 1, 1))
    assert got["dsc"] == 1.0
    with pytest.raises(ValueError, match="not a binary mask"):
        compute_case_metrics(ref.astype(np.uint8) * 2, ref, (1, 1, 1))
    with pytest.raises(ValueError, match="shapes differ"):
        compute_case_metrics(ref, ref[:-1], (1, 1, 1))
    with pytest.raises(ValueError, match="one per axis"):
        compute_case_metrics(ref, ref, (1, 1))
    with pytest.raises(ValueError, match="positive"):
        compute_case_metrics(ref, ref, (1, 0, 1))


# ----------------------------------------------------------------------------------------------
# Empty cases: raw values and policy values, asserted exactly
# ----------------------------------------------------------------------------------------------

EMPTY = np.zeros((10, 10, 6), bool)
OBJECT = np.zeros((10, 10, 6), bool)
OBJECT[3:6, 3:7, 2:4] = True


def test_empty_raw_values():
    both = compute_case_metrics(EMPTY, EMPTY, (0.47, 0.47, 6.0))
    assert all(math.isnan(both[k]) for k in OVERLAP_KEYS + DISTANCE_KEYS)
    assert both["ref_empty"] is True and both["pred_empty"] is True
    assert both["ref_volume_ml"] == 0.0 and both["pred_volume_ml"] == 0.0

    ref_only_empty = compute_case_metrics(OBJECT, EMPTY, (0.47, 0.47, 6.0))  # hallucinated lesion
    assert ref_only_empty["dsc"] == 0.0 and ref_only_empty["jaccard"] == 0.0 and ref_only_empty["ppv"] == 0.0
    assert math.isnan(ref_only_empty["sensitivity"])
    assert ref_only_empty["hd95"] == math.inf and ref_only_empty["hd95_pooled"] == math.inf
    assert ref_only_empty["ref_empty"] is True and ref_only_empty["pred_empty"] is False
    assert ref_only_empty["pred_volume_ml"] == pytest.approx(24 * 0.47 * 0.47 * 6.0 / 1000.0, rel=1e-12)

    pred_only_empty = compute_case_metrics(EMPTY, OBJECT, (0.47, 0.47, 6.0))  # missed lesion
    assert pred_only_empty["dsc"] == 0.0 and pred_only_empty["jaccard"] == 0.0
    assert pred_only_empty["sensitivity"] == 0.0 and math.isnan(pred_only_empty["ppv"])
    assert pred_only_empty["hd95"] == math.inf and pred_only_empty["hd95_pooled"] == math.inf
    assert pred_only_empty["ref_empty"] is False and pred_only_empty["pred_empty"] is True

    for pred, ref in [(EMPTY, EMPTY), (OBJECT, EMPTY), (EMPTY, OBJECT)]:
        assert_rows_close(compute_case_metrics(pred, ref, (1, 1, 1)), ref_metrics(pred, ref, (1, 1, 1)))
        assert_rows_close(
            compute_case_metrics(pred[..., 2], ref[..., 2], (1, 1)), ref_metrics(pred[..., 2], ref[..., 2], (1, 1))
        )


def test_empty_policy_brats_values_exact():
    both = apply_empty_policy(compute_case_metrics(EMPTY, EMPTY, (1, 1, 1)))
    assert [both[k] for k in OVERLAP_KEYS] == [1.0, 1.0, 1.0, 1.0]
    assert [both[k] for k in DISTANCE_KEYS] == [0.0, 0.0]
    for pred, ref in [(OBJECT, EMPTY), (EMPTY, OBJECT)]:
        raw = compute_case_metrics(pred, ref, (1, 1, 1))
        row = apply_empty_policy(raw, BRATS_POLICY)
        assert [row[k] for k in OVERLAP_KEYS] == [0.0, 0.0, 0.0, 0.0]
        assert [row[k] for k in DISTANCE_KEYS] == [373.13, 373.13]
        assert row["ref_empty"] == raw["ref_empty"] and row["pred_volume_ml"] == raw["pred_volume_ml"]
    normal = compute_case_metrics(OBJECT, np.roll(OBJECT, 1, 0), (1, 1, 1))
    assert apply_empty_policy(normal) == normal


def test_empty_policy_configurable_and_raw():
    policy = EmptyCasePolicy(one_empty_hd95=100.0, both_empty_hd95=0.5, both_empty_dsc=0.9, one_empty_dsc=0.1)
    row = apply_empty_policy(compute_case_metrics(EMPTY, OBJECT, (1, 1, 1)), policy)
    assert row["hd95"] == 100.0 and row["hd95_pooled"] == 100.0 and row["dsc"] == 0.1 and row["ppv"] == 0.1
    row = apply_empty_policy(compute_case_metrics(EMPTY, EMPTY, (1, 1, 1)), policy)
    assert row["hd95"] == 0.5 and row["dsc"] == 0.9
    raw = compute_case_metrics(EMPTY, OBJECT, (1, 1, 1))
    kept = apply_empty_policy(raw, RAW_POLICY)
    assert kept["hd95"] == math.inf and math.isnan(kept["ppv"]) and kept["dsc"] == 0.0
    with pytest.raises(ValueError):
        EmptyCasePolicy(one_empty_hd95=float("nan"))
    with pytest.raises(ValueError):
        EmptyCasePolicy(one_empty_dsc=1.0)  # a failure must not score as perfect
    with pytest.raises(ValueError):
        EmptyCasePolicy(one_empty_hd95=0.0)
    with pytest.raises(ValueError):
        EmptyCasePolicy(mode="ignore")


def test_a_missed_lesion_keeps_the_cohort_mean_from_perfect():
    rows = [
        compute_case_metrics(EMPTY, EMPTY, (1, 1, 1)),
        compute_case_metrics(OBJECT, EMPTY, (1, 1, 1)),
        compute_case_metrics(EMPTY, OBJECT, (1, 1, 1)),
        compute_case_metrics(OBJECT, np.roll(OBJECT, 1, 0), (1, 1, 1)),
    ]
    frame = pd.DataFrame([apply_empty_policy(r) for r in rows])
    assert list(frame["dsc"][:3]) == [1.0, 0.0, 0.0] and list(frame["hd95"][:3]) == [0.0, 373.13, 373.13]
    assert frame["dsc"].mean() < 1.0 and frame["hd95"].max() == 373.13


# ----------------------------------------------------------------------------------------------
# Singleton third axis, crop, medpy, NIfTI, speed
# ----------------------------------------------------------------------------------------------


def test_singleton_third_axis_is_3d_not_2d():
    spacing3 = (0.5, 0.5, 5.0)
    ref2 = sphere((30, 30), (15, 15), 5.0, (0.5, 0.5))
    pred2 = sphere((30, 30), (15, 15), 3.0, (0.5, 0.5))
    ref3, pred3 = ref2[..., None], pred2[..., None]
    got3 = compute_case_metrics(pred3, ref3, spacing3)
    got2 = compute_case_metrics(pred2, ref2, spacing3[:2])
    assert "ref_volume_ml" in got3 and "ref_area_mm2" not in got3
    assert got3["ref_volume_ml"] == pytest.approx(ref2.sum() * 0.5 * 0.5 * 5.0 / 1000.0, rel=1e-12)
    assert_rows_close(got3, ref_metrics(pred3, ref3, spacing3))
    # In 3D every voxel of a one-slice mask is a surface voxel (the array edge above and below is
    # background); in 2D only the rim is.
    assert len(surface_distances(pred3, ref3, spacing3)[0]) == pred2.sum()
    assert len(surface_distances(pred2, ref2, spacing3[:2])[0]) < pred2.sum()
    assert abs(got3["hd95_pooled"] - got2["hd95_pooled"]) > 0.1
    with pytest.raises(ValueError, match="one per axis"):
        compute_case_metrics(pred3, ref3, spacing3[:2])


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.47, 0.47, 6.0)])
@pytest.mark.parametrize("seed", [0, 1])
def test_crop_gives_identical_numbers(seed, spacing):
    shape = (40, 36, 16)
    empty = np.zeros(shape, bool)
    pred = random_blob(shape, seed, fraction=0.05)
    ref = random_blob(shape, seed + 7, fraction=0.05)
    ref[0, 10:14, 3:6] = True  # touches the array edge
    pred[-1, :3, -2:] = True  # a far-away false positive at the opposite corner
    for p, r in [(pred, ref), (pred[..., 5], ref[..., 5]), (pred[5:12, 5:12, 5:8], ref[5:12, 5:12, 5:8])]:
        sp = spacing[: p.ndim]
        assert_rows_identical(compute_case_metrics(p, r, sp, crop=True), compute_case_metrics(p, r, sp, crop=False))
    small = np.zeros(shape, bool)
    small[20:23, 18:20, 7:9] = True
    assert_rows_identical(
        compute_case_metrics(small, np.roll(small, 2, 0), spacing),
        compute_case_metrics(small, np.roll(small, 2, 0), spacing, crop=False),
    )
    for p, r in [(small, empty), (empty, small), (empty, empty)]:
        assert_rows_identical(compute_case_metrics(p, r, spacing), compute_case_metrics(p, r, spacing, crop=False))


@pytest.mark.parametrize(
    "case",
    ["blobs_iso", "blobs_aniso", "spheres_aniso", "border", "single_voxels", "slice_2d"],
)
def test_pooled_hd95_agrees_with_medpy(case):
    medpy_binary = pytest.importorskip("medpy.metric.binary")
    if case == "blobs_iso":
        spacing, pred, ref = (1.0, 1.0, 1.0), random_blob((30, 30, 20), 1), random_blob((30, 30, 20), 2)
    elif case == "blobs_aniso":
        spacing, pred, ref = (0.47, 0.47, 6.0), random_blob((40, 40, 12), 3), random_blob((40, 40, 12), 4)
    elif case == "spheres_aniso":
        spacing = (0.47, 0.47, 6.0)
        ref = sphere((60, 60, 10), (30, 30, 5), 10.0, spacing)
        pred = sphere((60, 60, 10), (33, 28, 5), 11.0, spacing)
    elif case == "border":
        spacing = (0.8, 1.3, 2.5)
        ref = random_blob((20, 20, 10), 5, fraction=0.4)
        pred = np.roll(ref, 2, axis=0)
        pred[:, :, 0] = True
    elif case == "single_voxels":
        spacing = (0.47, 0.47, 6.0)
        pred, ref = np.zeros((8, 8, 5), bool), np.zeros((8, 8, 5), bool)
        pred[1, 1, 1] = ref[6, 2, 3] = True
    else:
        spacing, pred, ref = (0.47, 0.6), random_blob((50, 40), 6, fraction=0.1), random_blob((50, 40), 7, fraction=0.1)
    expected = medpy_binary.hd95(pred, ref, voxelspacing=spacing, connectivity=1)
    got = compute_case_metrics(pred, ref, spacing)
    assert got["hd95_pooled"] == pytest.approx(expected, rel=RTOL)


def _save(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return str(path)


def test_nifti_spacing_axis_order_and_singleton(tmp_path):
    # Array axes mapped to world axes in a permuted order: spacing must follow the array axes.
    affine = np.array([[0, 0, 6.0, 0], [0.47, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 0, 1]])
    ref = random_blob((30, 28, 8), 9).astype(np.uint8)
    pred = random_blob((30, 28, 8), 10).astype(np.uint8)
    ref_path = _save(tmp_path / "ref.nii.gz", ref, affine)
    pred_path = _save(tmp_path / "pred.nii.gz", pred, affine)
    assert spacing_from_nifti(ref_path) == pytest.approx((0.47, 0.5, 6.0), rel=1e-6)
    mask = load_mask(ref_path)
    assert mask.array.dtype == bool and mask.array.shape == ref.shape
    got = compute_case_metrics(load_mask(pred_path).array, mask.array, mask.spacing)
    assert_rows_close(got, ref_metrics(pred.astype(bool), ref.astype(bool), mask.spacing))

    # A 3D file with a singleton third axis stays 3D.
    one = _save(tmp_path / "one.nii.gz", ref[..., 3:4], np.diag([0.5, 0.5, 5.0, 1.0]))
    loaded = load_mask(one)
    assert loaded.array.shape == (30, 28, 1) and loaded.spacing == (0.5, 0.5, 5.0)
    row = compute_case_metrics(loaded.array, loaded.array, loaded.spacing)
    assert "ref_volume_ml" in row and row["dsc"] == 1.0

    # pixdim that disagrees with the affine is refused.
    bad = nib.Nifti1Image(ref, np.diag([0.5, 0.5, 5.0, 1.0]))
    bad.header.set_zooms((5.0, 0.5, 0.5))
    bad_path = str(tmp_path / "bad.nii.gz")
    nib.save(bad, bad_path)
    with pytest.raises(ValueError, match="bad.nii.gz.*disagree"):
        spacing_from_nifti(bad_path)


def test_nifti_errors_name_the_files(tmp_path):
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    ref = random_blob((20, 20, 6), 1).astype(np.uint8)
    ref_path = _save(tmp_path / "ref.nii.gz", ref, affine)
    labels = ref * 4
    labels[0, 0, 0] = 2
    lab_path = _save(tmp_path / "labels.nii.gz", labels, affine)
    with pytest.raises(ValueError, match="labels.nii.gz.*not a binary mask"):
        load_mask(lab_path)
    np.testing.assert_array_equal(load_mask(lab_path, label_classes=[4]).array, ref.astype(bool))
    reference = load_mask(ref_path)
    short = _save(tmp_path / "short.nii.gz", ref[:, :, :5], affine)
    assert re.search("short.nii.gz.*ref.nii.gz", grid_mismatch(load_mask(short), reference))
    coarse = _save(tmp_path / "coarse.nii.gz", ref, np.diag([1.0, 1.0, 3.0, 1.0]))
    assert re.search("spacing mismatch.*coarse.nii.gz", grid_mismatch(load_mask(coarse), reference))
    shifted_affine = affine.copy()
    shifted_affine[0, 3] = 5.0
    shifted = _save(tmp_path / "shifted.nii.gz", ref, shifted_affine)
    assert re.search("affine mismatch.*shifted.nii.gz", grid_mismatch(load_mask(shifted), reference))
    assert grid_mismatch(load_mask(lab_path, label_classes=[4]), reference) is None


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.47, 0.47, 6.0)])
def test_full_size_case_is_fast(spacing):
    shape = (240, 240, 155)
    rng = np.random.default_rng(0)
    field = ndimage.gaussian_filter(rng.standard_normal((48, 48, 48)), 3)
    center = np.array([120, 110, 77]) if spacing[2] == 1.0 else np.array([120, 110, 12])
    ref = np.zeros(shape, bool)
    pred = np.zeros(shape, bool)
    # An irregular ~3 cm lesion: a 15 mm sphere with a noisy radius.
    grids = np.meshgrid(*[(np.arange(n) - c) * s for n, c, s in zip(shape, center, spacing)], indexing="ij")
    dist = np.sqrt(sum(g**2 for g in grids))
    zoom = [(np.arange(n) * 47 / (n - 1)).astype(int) for n in shape]
    noise = field[np.ix_(*zoom)] / field.std()
    ref[:] = dist < 15.0 * (1 + 0.15 * noise)
    pred[:] = np.roll(ref, 2, axis=0) & (dist < 14.0 * (1 + 0.2 * noise))
    assert ref.sum() > 1000 and pred.sum() > 1000
    compute_case_metrics(pred, ref, spacing)  # warm-up
    timings = []
    for _ in range(3):
        start = time.perf_counter()
        row = compute_case_metrics(pred, ref, spacing)
        timings.append(time.perf_counter() - start)
    assert 0.5 < row["dsc"] < 1 and np.isfinite(row["hd95"])
    assert min(timings) < 0.5, timings  # measured ~30-70 ms on 2 cores


# ----------------------------------------------------------------------------------------------
# The metric table: a metric is one row
# ----------------------------------------------------------------------------------------------

ONE_ROW_SCRIPT = """
import numpy as np, pandas as pd, evaluation
assert evaluation.__file__.startswith({root!r}), evaluation.__file__
from evaluation.cohort_evaluator import CASE_COLUMNS
from evaluation.empty_policy import apply_empty_policy
from evaluation.metrics import compute_case_metrics
from evaluation.reports.segmentation import _summary_table, metric_plot_figure
from evaluation.summary import METRICS, summarize
ref = np.zeros((8, 8, 4), bool)
ref[2:6, 2:6, 1:3] = True
row = compute_case_metrics(np.roll(ref, 1, 0), ref, (1, 1, 1))
assert abs(row["fmi"] - 24 / 32) < 1e-12, row  # TP / sqrt((TP + FP)(TP + FN)), 24 of 32 voxels shared
assert apply_empty_policy(compute_case_metrics(np.zeros_like(ref), ref, (1, 1, 1)))["fmi"] == 0.0
assert "fmi" in METRICS and "fmi_raw" in CASE_COLUMNS and "fmi_policy" in CASE_COLUMNS
cases = pd.DataFrame({{"status": "evaluated", "sequence": "t2", "center": "a", "fmi_policy": [0.5, 0.75],
                      "case_id": ["a", "b"]}})
page = _summary_table(summarize(cases, metrics=("fmi",), resamples=20))
assert "Fowlkes-Mallows" in page and "0.6250" in page, page
assert metric_plot_figure(cases, "fmi", "brats").axes[-1].get_ylim()[1] < 1.1  # an overlap metric: on [0, 1]
print("one row is enough")
"""


def test_a_metric_is_one_row_of_the_metric_table(tmp_path):
    """A copy of the evaluation package with one row added to its metric table: computed, given the empty-case
    value of its kind, a case-table column, a summary row and a report label with its decimals."""
    import os
    import shutil
    import subprocess
    import sys

    import evaluation

    copy = tmp_path / "evaluation"
    shutil.copytree(os.path.dirname(evaluation.__file__), copy, ignore=shutil.ignore_patterns("__pycache__"))
    table = copy / "metric_table.py"
    anchor = '    Metric("hd95", "HD95 (mm)", 2, "distance", hd95),\n'
    assert anchor in table.read_text()
    table.write_text(table.read_text().replace(
        anchor, '    Metric("fmi", "Fowlkes-Mallows", 4, "overlap", "fowlkes mallows index"),\n' + anchor))
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", ONE_ROW_SCRIPT.format(root=str(tmp_path))], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "one row is enough" in done.stdout, done.stderr[-3000:]
