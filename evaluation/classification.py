"""Patient-level classification metrics for H3K27M status, with percentile bootstrap CIs.

The metrics are the rows of :data:`evaluation.metric_table.CLASSIFICATION_TABLE` (adding a row adds a
metric with its CI everywhere):

* :func:`patient_probabilities`: slice probabilities → one probability per patient.
* :func:`roc_auc`: AUROC (the probability that a random altered patient scores above a random
  wild-type one, ties counting one half; scikit-learn's ``roc_curve`` and ``auc``, i.e. what its
  ``roc_auc_score`` computes for binary labels), NaN with one class.
* :func:`average_precision`: AUPRC as average precision, ``sum_n (R_n - R_{n-1}) P_n`` over the
  distinct score thresholds in decreasing order (``R_0 = 0``; tied scores form one threshold; no
  interpolation; scikit-learn's ``average_precision_score``), NaN without an altered patient.
* accuracy, sensitivity (recall of altered = class 1), specificity (recall of wild-type) of
  the prediction ``probability >= threshold`` (0.5 by default), by MONAI's
  ``compute_confusion_matrix_metric`` of the patient counts.
* :func:`classification_metrics`: all five with a percentile bootstrap CI over patients
  (:func:`evaluation.bootstrap.percentile_ci`, i.e. ``scipy.stats.bootstrap``: ``resamples`` paired
  draws of the patients' (label, probability) with replacement, ``numpy.random.default_rng(seed)``).
  Draws with a single class are skipped (AUROC, AUPRC, sensitivity or specificity are
  undefined there) and counted in ``resamples_skipped``; the CI comes from the remaining
  draws. A percentile CI usually, but not by construction, contains the point estimate.

Every function takes ``(labels, scores)`` in that order, as scikit-learn does. Undefined values
(one class only) are NaN, never a guess.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.metrics import compute_confusion_matrix_metric

from evaluation.bootstrap import percentile_ci
from evaluation.metric_table import CLASSIFICATION_TABLE, Metric, auprc, auroc, names, validated_input

__all__ = [
    "CLASSIFICATION_METRICS",
    "AGGREGATIONS",
    "ClassificationResult",
    "roc_auc",
    "average_precision",
    "threshold_metrics",
    "point_metrics",
    "classification_metrics",
    "patient_probabilities",
]

CLASSIFICATION_METRICS: tuple[str, ...] = names(CLASSIFICATION_TABLE)
AGGREGATIONS: tuple[str, ...] = ("mean", "max", "topk")


def _as_arrays(labels: Sequence[Any], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"labels and scores must be 1D of the same length, got {y.shape} and {s.shape}")
    if y.dtype == bool:
        y = y.astype(np.int64)
    elif y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 (wild-type) or 1 (altered), got values {np.unique(y)[:5].tolist()}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (found NaN or inf)")
    return y.astype(np.int64), s


def roc_auc(labels: Sequence[Any], scores: Sequence[float]) -> float:
    """AUROC (:func:`evaluation.metric_table.auroc`); NaN with one class."""
    return auroc(*_as_arrays(labels, scores))


def average_precision(labels: Sequence[Any], scores: Sequence[float]) -> float:
    """AUPRC as average precision (:func:`evaluation.metric_table.auprc`); NaN without positives."""
    return auprc(*_as_arrays(labels, scores))


def _table_values(y: np.ndarray, p: np.ndarray, threshold: float,
                  table: tuple[Metric, ...] = CLASSIFICATION_TABLE) -> np.ndarray:
    """The metrics of ``table`` along the last axis of ``y`` and ``p``: shape ``(len(table), *y.shape[:-1])``,
    NaN where undefined (no patient, no altered or no wild-type patient)."""
    pred = p >= threshold
    counts = [np.sum(pred & (y == 1), -1), np.sum(pred & (y == 0), -1), np.sum(~pred & (y == 0), -1),
              np.sum(~pred & (y == 1), -1)]  # TP, FP, TN, FN: MONAI's order
    confusion = torch.from_numpy(np.stack(counts, -1).reshape(-1, 4).astype(np.float64))
    n_rows = int(np.prod(y.shape[:-1]))  # 1 for one set of patients, the resamples for the bootstrap
    rows_y, rows_p = y.reshape(n_rows, y.shape[-1]), p.reshape(n_rows, p.shape[-1])
    with validated_input():  # y and p were checked by _as_arrays: scikit-learn need not check each resample
        values = [compute_confusion_matrix_metric(m.compute, confusion).numpy() if m.kind == "threshold"
                  else np.array([m.compute(a, b) for a, b in zip(rows_y, rows_p)], dtype=np.float64) for m in table]
    return np.stack(values).reshape(len(table), *y.shape[:-1])


def threshold_metrics(labels: Sequence[Any], scores: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """The threshold metrics (accuracy, sensitivity, specificity) of ``score >= threshold`` (NaN where undefined)."""
    table = tuple(m for m in CLASSIFICATION_TABLE if m.kind == "threshold")
    return dict(zip(names(table), map(float, _table_values(*_as_arrays(labels, scores), threshold, table))))


def point_metrics(labels: Sequence[Any], scores: Sequence[float], threshold: float = 0.5) -> dict[str, float]:
    """Every metric (``CLASSIFICATION_METRICS``) on the given patients, without CI."""
    return dict(zip(CLASSIFICATION_METRICS, map(float, _table_values(*_as_arrays(labels, scores), threshold))))


@dataclass
class ClassificationResult:
    """Point estimates and percentile bootstrap CIs of the patient-level metrics."""

    values: dict[str, float]
    ci_low: dict[str, float]
    ci_high: dict[str, float]
    n_patients: int
    n_positive: int
    threshold: float
    confidence: float
    resamples: int
    resamples_skipped: int
    seed: int
    extra: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """One row per metric: ``metric, value, ci_low, ci_high``."""
        return pd.DataFrame(
            [
                {"metric": m, "value": self.values[m], "ci_low": self.ci_low[m], "ci_high": self.ci_high[m]}
                for m in CLASSIFICATION_METRICS
            ]
        )

    def as_dict(self) -> dict[str, Any]:
        """Flat record: ``<metric>``, ``<metric>_ci_low``, ``<metric>_ci_high`` and the counts."""
        out: dict[str, Any] = {}
        for m in CLASSIFICATION_METRICS:
            out[m], out[f"{m}_ci_low"], out[f"{m}_ci_high"] = self.values[m], self.ci_low[m], self.ci_high[m]
        out.update(
            n_patients=self.n_patients,
            n_positive=self.n_positive,
            threshold=self.threshold,
            confidence=self.confidence,
            resamples=self.resamples,
            resamples_skipped=self.resamples_skipped,
            seed=self.seed,
        )
        return out


def _resample_metrics(threshold: float):
    """The statistic of the bootstrap: every metric of each resample (the rows of ``labels`` and ``scores``),
    shape ``(len(CLASSIFICATION_METRICS), resamples)``; a resample with one class has NaN among them."""

    def statistic(labels: np.ndarray, scores: np.ndarray, axis: int = -1) -> np.ndarray:
        return _table_values(np.moveaxis(labels, axis, -1), np.moveaxis(scores, axis, -1), threshold)

    return statistic


def classification_metrics(
    labels: Sequence[Any],
    scores: Sequence[float],
    threshold: float = 0.5,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ClassificationResult:
    """Every metric (accuracy, sensitivity, specificity, AUROC, AUPRC) of patient scores, with bootstrap CIs.

    Args:
        labels: 1 = H3K27M-altered, 0 = wild-type, per patient.
        scores: P(altered) per patient (e.g. from :func:`patient_probabilities`).
        threshold: a patient is predicted altered when ``score >= threshold``.
        resamples: bootstrap draws of the patients (with replacement); 0 for no CI.
        confidence: CI level (0.95: the 2.5th and 97.5th percentiles of the draws).
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same CIs.
    """
    y, p = _as_arrays(labels, scores)
    values = point_metrics(y, p, threshold)
    interval = percentile_ci((y, p), _resample_metrics(threshold), resamples, confidence, seed, paired=True)
    low = {m: float(v) for m, v in zip(CLASSIFICATION_METRICS, interval.low)}
    high = {m: float(v) for m, v in zip(CLASSIFICATION_METRICS, interval.high)}
    skipped = interval.skipped
    return ClassificationResult(
        values=values,
        ci_low=low,
        ci_high=high,
        n_patients=int(y.size),
        n_positive=int(y.sum()),
        threshold=float(threshold),
        confidence=float(confidence),
        resamples=int(resamples),
        resamples_skipped=skipped,
        seed=int(seed),
    )


def _aggregation(how: str) -> str:
    key = str(how).strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    if key in ("topkmean", "topk"):
        return "topk"
    if key in ("mean", "max"):
        return key
    raise ValueError(f"unknown aggregation {how!r}; use 'mean', 'max' or 'top-k mean'")


def patient_probabilities(
    slice_table: pd.DataFrame,
    how: str = "mean",
    k: int = 3,
    patient_col: str = "patient_id",
    prob_col: str = "probability",
    label_col: str = "label",
) -> pd.DataFrame:
    """Aggregate slice probabilities P(altered) to one probability per patient.

    ``how``:

    * ``"mean"`` (default): mean of the patient's slice probabilities. Every slice counts
      the same, so one confidently wrong slice moves the patient little, and the result
      does not drift with the number of slices (a max rises with more slices, which biases
      patients with thicker coverage towards "altered"). It is the paper's "patient
      prediction from slice probabilities" read in its plainest form. Feed it the slices
      that show the tumour: lesion-free slices dilute the mean.
    * ``"max"``: the most confident slice (sensitive, but grows with the slice count).
    * ``"top-k mean"`` (also ``"topk"``): mean of the ``k`` highest slice probabilities (all
      slices when a patient has fewer than ``k``); between the two.

    Returns one row per patient in order of first appearance: ``patient_col``,
    ``probability``, ``n_slices`` and, when the table has ``label_col``, the patient's label
    (which must be the same on all its slices).
    """
    method = _aggregation(how)
    for col in (patient_col, prob_col):
        if col not in slice_table.columns:
            raise ValueError(f"slice table has no column {col!r}; columns: {list(slice_table.columns)}")
    if method == "topk" and int(k) < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    probs = pd.to_numeric(slice_table[prob_col], errors="raise").astype(np.float64)
    if not np.isfinite(probs.to_numpy()).all():
        raise ValueError(f"column {prob_col!r} has NaN or infinite probabilities")
    table = slice_table.assign(**{prob_col: probs})
    groups = table.groupby(patient_col, sort=False)[prob_col]
    if method == "mean":
        agg = groups.mean()
    elif method == "max":
        agg = groups.max()
    else:
        agg = groups.apply(lambda s: float(np.sort(s.to_numpy())[::-1][: int(k)].mean()))
    out = pd.DataFrame({patient_col: agg.index, "probability": agg.to_numpy(dtype=np.float64)})
    out["n_slices"] = groups.size().to_numpy()
    if label_col in slice_table.columns:
        labels = table.groupby(patient_col, sort=False)[label_col]
        if (labels.nunique(dropna=False) > 1).any():
            bad = labels.nunique(dropna=False)
            raise ValueError(f"patients with conflicting labels across slices: {bad[bad > 1].index.tolist()[:5]}")
        out[label_col] = labels.first().to_numpy()
    return out
