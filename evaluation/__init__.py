"""Evaluation: per-case metrics, empty-case policy, cohort evaluation and reports."""

from evaluation.empty_policy import (
    BRATS_POLICY,
    RAW_POLICY,
    EmptyCasePolicy,
    apply_empty_policy,
    apply_empty_policy_frame,
    empty_case,
)
from evaluation.mask_io import MaskVolume, compute_case_metrics_from_files, load_mask, spacing_from_nifti
from evaluation.metrics import compute_case_metrics, compute_slice_metrics, surface_distances

__all__ = [
    "BRATS_POLICY",
    "RAW_POLICY",
    "EmptyCasePolicy",
    "MaskVolume",
    "apply_empty_policy",
    "apply_empty_policy_frame",
    "compute_case_metrics",
    "compute_case_metrics_from_files",
    "compute_slice_metrics",
    "empty_case",
    "load_mask",
    "spacing_from_nifti",
    "surface_distances",
]
