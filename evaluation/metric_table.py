"""The metric table: every metric of the evaluations, with its label, decimals, kind and computation.

Adding a metric is one row here. What reads the table:

* :mod:`evaluation.metrics` computes every ``SEGMENTATION_TABLE`` row per case and
  :mod:`evaluation.classification` every ``CLASSIFICATION_TABLE`` row per cohort (and per bootstrap
  resample);
* :mod:`evaluation.empty_policy` gives empty masks the values of the row's kind;
* :mod:`evaluation.summary`, :mod:`evaluation.reports.segmentation` and :mod:`evaluation.reports.classification`
  take the names, labels and decimals from it (tables, plots, JSON, CSV columns).

Kinds and what ``compute`` is:

* ``overlap`` (segmentation, per case): the name of a MONAI confusion-matrix metric
  (``monai.metrics.compute_confusion_matrix_metric``) of the voxel counts, NaN for 0/0. Empty masks:
  the policy's DSC values; plotted on [0, 1].
* ``distance`` (segmentation, per case, mm): ``compute(d_pred_to_ref, d_ref_to_pred)`` of the directed
  surface distances of two non-empty masks (NaN when both masks are empty, inf when one is). Empty
  masks: the policy's HD95 values; one empty mask is drawn above a broken axis.
* ``threshold`` (H3K27M, per cohort): the name of a MONAI confusion-matrix metric of the patients'
  counts at the decision threshold (altered = positive).
* ``ranking`` (H3K27M, per cohort): ``compute(labels, scores)`` on 1D arrays, NaN where undefined. AUROC and
  average precision are scikit-learn's: ``auc(*roc_curve(...)[:2])``, which is what ``roc_auc_score`` computes
  for binary labels, and ``average_precision_score``. The bootstrap calls them once per resample (thousands
  per report), inside :func:`validated_input` (scikit-learn's checks of every argument skipped: the labels and
  scores were checked once before); scikit-learn also draws the ROC and PR curves.
* ``mean`` (H3K27M, per cohort): the mean of a value supplied per patient (``compute`` is None); also the
  plain row :func:`metric_row` gives a name outside the tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import sklearn
from sklearn.metrics import auc, average_precision_score, roc_curve

__all__ = ["HD_PERCENTILE", "Metric", "SEGMENTATION_TABLE", "CLASSIFICATION_TABLE", "DICE_MEAN", "names", "metric_row",
           "hd95", "hd95_pooled", "auroc", "auprc", "validated_input"]

HD_PERCENTILE = 95.0

Kind = Literal["overlap", "distance", "threshold", "ranking", "mean"]



def validated_input():
    """A context in which scikit-learn skips its checks of every call's arguments (most of a call's time on a
    few hundred patients): for the ranking metrics on labels and scores already checked (0/1 labels, finite
    scores, one length)."""
    return sklearn.config_context(assume_finite=True, skip_parameter_validation=True)


@dataclass(frozen=True)
class Metric:
    """One metric: its key (column and JSON name), label in reports, decimals in tables, kind, computation."""

    name: str
    label: str
    digits: int
    kind: Kind
    compute: str | Callable[..., float] | None = None


def _percentile(values: np.ndarray) -> float:
    return float(np.percentile(values, HD_PERCENTILE, method="linear"))


def hd95(pred_to_ref: np.ndarray, ref_to_pred: np.ndarray) -> float:
    """MONAI's HD95: the larger of the two directed 95th percentiles."""
    return max(_percentile(pred_to_ref), _percentile(ref_to_pred))


def hd95_pooled(pred_to_ref: np.ndarray, ref_to_pred: np.ndarray) -> float:
    """medpy's / the BraTS toolkits' HD95: the 95th percentile of both directed sets pooled (``<= hd95``)."""
    return _percentile(np.concatenate([pred_to_ref, ref_to_pred]))


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """AUROC by scikit-learn: the trapezoidal area (``auc``) under ``roc_curve``, which is what ``roc_auc_score``
    computes for binary labels (the probability that a random positive scores above a random negative, ties
    counting one half) without its label-type detection; NaN unless both classes are present."""
    n_positive = int(np.sum(labels))
    if not 0 < n_positive < labels.size:
        return math.nan
    false_positive_rate, true_positive_rate, _ = roc_curve(labels, scores)
    return float(auc(false_positive_rate, true_positive_rate))


def auprc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision ``sum_n (R_n - R_{n-1}) P_n`` over the distinct thresholds by scikit-learn's
    ``average_precision_score``; NaN without a positive, 1 when every label is positive (every threshold is
    precise)."""
    n_positive = int(np.sum(labels))
    if n_positive in (0, labels.size):
        return math.nan if n_positive == 0 else 1.0
    return float(average_precision_score(labels, scores))


SEGMENTATION_TABLE: tuple[Metric, ...] = (
    Metric("dsc", "DSC", 3, "overlap", "f1 score"),
    Metric("jaccard", "Jaccard", 3, "overlap", "threat score"),
    Metric("sensitivity", "Sensitivity", 3, "overlap", "sensitivity"),
    Metric("ppv", "PPV", 3, "overlap", "precision"),
    Metric("hd95", "HD95 (mm)", 2, "distance", hd95),
    Metric("hd95_pooled", "HD95 pooled (mm)", 2, "distance", hd95_pooled),
)
"""Per-case segmentation metrics, in report order."""

CLASSIFICATION_TABLE: tuple[Metric, ...] = (
    Metric("accuracy", "Accuracy", 3, "threshold", "accuracy"),
    Metric("sensitivity", "Sensitivity", 3, "threshold", "sensitivity"),
    Metric("specificity", "Specificity", 3, "threshold", "specificity"),
    Metric("auroc", "AUROC", 3, "ranking", auroc),
    Metric("auprc", "AUPRC", 3, "ranking", auprc),
)
"""Patient-level H3K27M status metrics, in report order (each with a bootstrap CI)."""

DICE_MEAN = Metric("dice", "Dice (mask)", 3, "mean")
"""The H3K27M report's mean Dice of the mask branch (a column of the patient table, not computed here)."""


def names(table: tuple[Metric, ...], *kinds: Kind) -> tuple[str, ...]:
    """The names of the rows of ``table`` (of ``kinds`` only, when given), in table order."""
    return tuple(m.name for m in table if not kinds or m.kind in kinds)


def metric_row(name: str, *tables: tuple[Metric, ...]) -> Metric:
    """The row called ``name`` in ``tables`` (the first match); a name in none of them gets a plain row: its
    name as label, 3 decimals, kind ``mean``."""
    for table in tables:
        for metric in table:
            if metric.name == name:
                return metric
    return Metric(name, name, 3, "mean")
