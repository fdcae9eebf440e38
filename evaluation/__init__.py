"""Evaluation: per-case metrics, empty-case policy, cohort evaluation and reports."""

from evaluation.classification import (
    ClassificationResult,
    average_precision,
    classification_metrics,
    patient_probabilities,
    roc_auc,
)
from evaluation.cohort_evaluator import CaseFailure, CohortEvaluator, CohortResult
from evaluation.empty_policy import (
    BRATS_POLICY,
    RAW_POLICY,
    EmptyCasePolicy,
    apply_empty_policy,
    empty_case,
)
from evaluation.mask_io import MaskVolume, load_mask, spacing_from_nifti
from evaluation.metrics import compute_case_metrics, compute_slice_metrics, surface_distances
from evaluation.pairing import EvaluationCase, Pairing, pair_cohort, pair_folders
from evaluation.reports.segmentation import write_outputs
from evaluation.summary import bootstrap_mean_ci, summarize

__all__ = [
    "BRATS_POLICY",
    "RAW_POLICY",
    "CaseFailure",
    "ClassificationResult",
    "CohortEvaluator",
    "CohortResult",
    "EmptyCasePolicy",
    "EvaluationCase",
    "MaskVolume",
    "Pairing",
    "apply_empty_policy",
    "average_precision",
    "bootstrap_mean_ci",
    "classification_metrics",
    "compute_case_metrics",
    "compute_slice_metrics",
    "empty_case",
    "load_mask",
    "pair_cohort",
    "pair_folders",
    "patient_probabilities",
    "roc_auc",
    "spacing_from_nifti",
    "summarize",
    "surface_distances",
    "write_outputs",
]
