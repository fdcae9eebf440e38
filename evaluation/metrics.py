"""Per-case segmentation metrics for binary masks (3D volumes and 2D slices).

Definitions
-----------
The metrics and their order are the rows of :data:`evaluation.metric_table.SEGMENTATION_TABLE`
(overlap metrics by their MONAI confusion-matrix name, distance metrics by a function of the two
directed surface distance sets); adding a row there adds a column here.

``P`` is the predicted mask, ``R`` the reference, ``TP = |P & R|``,
``FP = |P & ~R|``, ``FN = |~P & R|`` (exact integer voxel counts).

* **dsc** ``2 TP / (2 TP + FP + FN)``; **jaccard** ``TP / (TP + FP + FN)``;
  **sensitivity** ``TP / (TP + FN)``; **ppv** ``TP / (TP + FP)``. Computed
  with MONAI's confusion-matrix metric (``compute_confusion_matrix_metric``:
  ``"f1 score"``, ``"threat score"``, ``"sensitivity"``, ``"precision"``),
  which returns NaN for 0/0. Counts are taken with numpy in int64 and passed
  to it as float64 (MONAI's ``get_confusion_matrix`` counts in float32, which
  stops being exact above 2**24 voxels).
* **Surface**: the face-connected boundary of a mask, ``M & ~erode(M)`` with
  the cross-shaped structuring element (``generate_binary_structure(ndim,
  1)``) and voxels outside the array counted as background, so an object
  touching the array edge has a surface there. This is the edge definition
  of ``monai.metrics.utils.get_mask_edges`` (scipy ``binary_erosion``,
  ``border_value=0``) and of medpy (``connectivity=1``).
* **Surface distances**: for every surface voxel of one mask, the exact
  Euclidean distance in mm (voxel index times spacing per axis) to the
  nearest surface voxel of the other mask; computed by MONAI's
  ``get_edge_surface_distance`` (on CPU a KD-tree over the surface voxels,
  mathematically equal to scipy's ``distance_transform_edt(sampling=
  spacing)``; MONAI returns float32, i.e. a relative rounding of at most
  6e-8).
* **hd95** (MONAI's definition): ``max(p95(d(P->R)), p95(d(R->P)))``, the
  larger of the two directed 95th percentiles.
* **hd95_pooled** (medpy ``hd95``, BraTS toolkits):
  ``p95(d(P->R) ∪ d(R->P))``, the 95th percentile of both directed sets
  pooled. Always ``<= hd95``.
* Percentiles use linear interpolation between order statistics (numpy's
  default ``method="linear"``, identical to ``torch.quantile``'s default
  that MONAI uses), evaluated in float64.
* **Volumes**: 3D input gives ``ref_volume_ml`` / ``pred_volume_ml``
  (voxel count x product of spacing / 1000). 2D input gives
  ``ref_area_mm2`` / ``pred_area_mm2`` instead (pixel count x product of
  the two spacings). A slice stored as a 3D array of shape ``(H, W, 1)`` is
  evaluated as a 3D volume (its in-plane pixels are all surface voxels,
  because the array edge above and below is background) and reports mL.
* **Spacing** is in mm, one value per array axis, in array axis order
  (``nibabel`` ``header.get_zooms()[:ndim]``; see :mod:`evaluation.mask_io`).

Empty masks (raw values)
------------------------
Values are returned raw: NaN for 0/0 (every overlap metric when both masks
are empty; sensitivity when only the reference is empty; PPV when only the
prediction is empty), ``inf`` for a distance to an empty mask (both HD95
columns when exactly one mask is empty), NaN for both HD95 columns when both
are empty. DSC and Jaccard are 0 (not NaN) when exactly one mask is empty.
The flags ``ref_empty`` / ``pred_empty`` say which case applies. The values
that enter means are given by :func:`evaluation.empty_policy.apply_empty_policy`
(default BraTS rule: both empty -> overlap 1, HD95 0; exactly one empty ->
overlap 0, HD95 373.13 mm).

Speed
-----
Both masks are cropped to the bounding box of their union plus a 1-voxel
margin (clipped at the array edge) before counting, edges and distances.
This cannot change any value: everything outside the box is background in
both masks, so a voxel at the box edge has the same (background)
neighbours outside the box as in the full array, and erosion treats
outside-the-array as background either way (so even a tight box would be
exact; the margin follows MONAI's own ``get_mask_edges`` crop). Distances
are translation invariant and TP/FP/FN do not depend on background voxels.
``crop=False`` exists to check exactly that (the tests assert bit-identical
rows). A 240x240x155 case with a ~3 cm lesion takes ~30-70 ms on 2 CPU
cores; without the crop ~0.4-0.7 s. The crop only helps when the union box
is small: a far-away false positive enlarges it.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.metrics import compute_confusion_matrix_metric
from monai.metrics.utils import get_edge_surface_distance

from evaluation.metric_table import HD_PERCENTILE, SEGMENTATION_TABLE

__all__ = [
    "HD_PERCENTILE",
    "compute_case_metrics",
    "compute_slice_metrics",
    "surface_distances",
    "union_bbox",
    "as_binary_mask",
]

def as_binary_mask(mask: Any, name: str = "mask") -> np.ndarray:
    """Return ``mask`` as a bool array; raise if it holds values other than 0 and 1."""
    array = np.asarray(mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else mask)
    if array.dtype == bool:
        return array
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ValueError(f"{name} must be a numeric or bool array, got dtype {array.dtype}.")
    bad = (array != 0) & (array != 1)
    if bad.any():
        values = np.unique(array[bad])[:10]
        raise ValueError(
            f"{name} is not a binary mask: it holds values other than 0 and 1 (e.g. {values.tolist()}). "
            "Select the foreground labels first."
        )
    return array != 0


def _check_spacing(spacing: Sequence[float], ndim: int) -> tuple[float, ...]:
    values = tuple(float(s) for s in np.atleast_1d(np.asarray(spacing, dtype=np.float64)))
    if len(values) != ndim:
        raise ValueError(f"spacing has {len(values)} values but the masks have {ndim} axes; give one per axis.")
    if not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing must be finite and positive, got {values}.")
    return values


def union_bbox(pred: np.ndarray, ref: np.ndarray, margin: int = 1) -> tuple[slice, ...] | None:
    """Slices of the bounding box of ``pred | ref`` grown by ``margin`` (clipped to the array); None if empty."""
    union = pred | ref
    if not union.any():
        return None
    slices = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        hits = np.flatnonzero(union.any(axis=others)) if others else np.flatnonzero(union)
        slices.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, union.shape[axis])))
    return tuple(slices)


def surface_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], crop: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Directed surface distances in mm, ``(d(pred -> ref), d(ref -> pred))``, as float64 arrays.

    One value per surface voxel of the first mask (in C order of the surface
    voxels). Both masks must be non-empty. See the module docstring for the
    surface definition.
    """
    pred = as_binary_mask(pred, "pred")
    ref = as_binary_mask(ref, "ref")
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref shapes differ: {pred.shape} vs {ref.shape}.")
    spacing = _check_spacing(spacing, pred.ndim)
    if not pred.any() or not ref.any():
        raise ValueError("surface_distances needs two non-empty masks.")
    if crop:
        box = union_bbox(pred, ref, margin=1)
        pred, ref = pred[box], ref[box]
    pred_t = torch.from_numpy(np.ascontiguousarray(pred))
    ref_t = torch.from_numpy(np.ascontiguousarray(ref))
    with warnings.catch_warnings():
        # MONAI 1.5+ passes its own deprecated `always_return_as_numpy` argument internally.
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*", category=FutureWarning)
        _, distances, _ = get_edge_surface_distance(
            pred_t, ref_t, distance_metric="euclidean", spacing=list(spacing), symmetric=True
        )
    pred_to_ref, ref_to_pred = (np.asarray(torch.as_tensor(d).cpu().numpy(), dtype=np.float64) for d in distances)
    return pred_to_ref, ref_to_pred


def _ratio(metric_name: str, confusion: torch.Tensor) -> float:
    return float(compute_confusion_matrix_metric(metric_name, confusion).reshape(-1)[0])


def compute_case_metrics(
    pred: Any, ref: Any, spacing: Sequence[float], crop: bool = True
) -> dict[str, Any]:
    """Raw per-case metrics of a binary prediction against a binary reference.

    Args:
        pred: predicted mask, 2D ``(H, W)`` or 3D ``(H, W, D)``; bool or 0/1 values.
        ref: reference mask of the same shape.
        spacing: voxel size in mm per array axis (``len(spacing) == pred.ndim``).
        crop: crop to the union bounding box (+1 voxel) first; results are identical.

    Returns:
        dict with the :data:`~evaluation.metric_table.SEGMENTATION_TABLE` metrics (``dsc, jaccard,
        sensitivity, ppv, hd95, hd95_pooled`` (mm)),
        ``ref_volume_ml, pred_volume_ml`` (3D) or ``ref_area_mm2,
        pred_area_mm2`` (2D), and the flags ``ref_empty, pred_empty``.
        Empty masks give raw NaN / inf (module docstring); apply
        :func:`evaluation.empty_policy.apply_empty_policy` before averaging.
    """
    pred = as_binary_mask(pred, "pred")
    ref = as_binary_mask(ref, "ref")
    if pred.shape != ref.shape:
        raise ValueError(f"pred and ref shapes differ: {pred.shape} vs {ref.shape}.")
    if pred.ndim not in (2, 3):
        raise ValueError(f"masks must be 2D or 3D, got shape {pred.shape}.")
    spacing = _check_spacing(spacing, pred.ndim)

    box = union_bbox(pred, ref, margin=1) if crop else tuple(slice(None) for _ in pred.shape)
    n_total = int(pred.size)
    if box is None:
        n_pred = n_ref = tp = 0
    else:
        pred_c, ref_c = pred[box], ref[box]
        n_pred, n_ref = int(np.count_nonzero(pred_c)), int(np.count_nonzero(ref_c))
        tp = int(np.count_nonzero(pred_c & ref_c))
    fp, fn = n_pred - tp, n_ref - tp
    tn = n_total - tp - fp - fn
    confusion = torch.tensor([tp, fp, tn, fn], dtype=torch.float64)

    distances = surface_distances(pred_c, ref_c, spacing, crop=False) if n_pred and n_ref else None
    row: dict[str, Any] = {}
    for metric in SEGMENTATION_TABLE:
        if metric.kind == "overlap":
            row[metric.name] = _ratio(metric.compute, confusion)
        elif distances is not None:
            row[metric.name] = float(metric.compute(*distances))
        else:  # a distance to an empty mask is infinite; between two empty masks it is undefined
            row[metric.name] = float("nan") if n_pred == 0 and n_ref == 0 else float("inf")

    voxel_size = float(np.prod(spacing))
    if pred.ndim == 3:
        row["ref_volume_ml"] = n_ref * voxel_size / 1000.0
        row["pred_volume_ml"] = n_pred * voxel_size / 1000.0
    else:
        row["ref_area_mm2"] = n_ref * voxel_size
        row["pred_area_mm2"] = n_pred * voxel_size
    row["ref_empty"] = n_ref == 0
    row["pred_empty"] = n_pred == 0
    return row


def compute_slice_metrics(
    pred: Any,
    ref: Any,
    spacing: Sequence[float],
    axis: int = 2,
    slices: Sequence[int] | None = None,
) -> list[dict[str, Any]]:
    """2D metrics for each slice of a 3D pair along ``axis`` (default: the third, axial for RAS/LPS).

    Each row is :func:`compute_case_metrics` on the 2D slice with the two
    in-plane spacings, plus ``slice_index``.
    """
    pred = as_binary_mask(pred, "pred")
    ref = as_binary_mask(ref, "ref")
    if pred.shape != ref.shape or pred.ndim != 3:
        raise ValueError(f"compute_slice_metrics needs two 3D masks of equal shape, got {pred.shape} and {ref.shape}.")
    spacing = _check_spacing(spacing, 3)
    axis = axis % 3
    in_plane = tuple(s for a, s in enumerate(spacing) if a != axis)
    indices = range(pred.shape[axis]) if slices is None else slices
    rows = []
    for index in indices:
        row = compute_case_metrics(np.take(pred, index, axis=axis), np.take(ref, index, axis=axis), in_plane)
        rows.append({"slice_index": int(index), **row})
    return rows
