"""Calibration of H3K27M status probabilities: temperature scaling, expected calibration error, the threshold.

The status is binary, so a patient's prediction is one logit ``z`` (log-odds of "altered"), and the two-class
softmax of the class logits is ``sigmoid(z)``. Temperature scaling (Guo et al., ICML 2017) divides the logit
by one scalar ``T > 0`` fitted on validation patients: ``p = sigmoid(z / T)``. It keeps the ranking (AUROC,
AUPRC unchanged) and only makes the probabilities mean what they say.

* :func:`fit_temperature`: the ``T`` that minimises the negative log-likelihood of the validation statuses
  (``scipy.optimize.minimize_scalar``, bounded, on ``log T``);
* :func:`apply_temperature`: ``sigmoid(z / T)``;
* :func:`expected_calibration_error`: ``sum_b (n_b / N) |mean p_b - fraction altered_b|`` over ``bins``
  equal-width bins of P(altered) on [0, 1] (empty bins contribute nothing); the reliability of P(altered),
  which for two classes is what the reliability diagram (:func:`plot_reliability`) shows;
* :func:`youden_threshold`: the decision threshold on validation probabilities (rule in its docstring);
* :func:`fit_calibration`: all of it from validation logits, as one JSON-ready record.

Patients are predicted altered when ``probability >= threshold`` (the rule of :mod:`evaluation.classification`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_expit

from evaluation.classification import threshold_metrics
from evaluation.reports.html import new_figure, png_bytes

__all__ = ["THRESHOLD_RULE", "TEMPERATURE_BOUNDS", "apply_temperature", "binary_nll", "expected_calibration_error",
           "fit_calibration", "fit_temperature", "plot_reliability", "reliability_table", "youden_threshold"]

TEMPERATURE_BOUNDS = (0.01, 100.0)
THRESHOLD_RULE = ("Youden's J on the validation patients' calibrated probabilities: the cut that maximises "
                  "sensitivity + specificity - 1, placed halfway between the lowest probability called altered "
                  "and the next lower one (ties in J: the cut nearest 0.5)")


def _labels_values(labels: Sequence[Any], values: Sequence[float], what: str) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels)
    v = np.asarray(values, dtype=np.float64)
    if y.ndim != 1 or v.shape != y.shape:
        raise ValueError(f"labels and {what} must be 1D of the same length, got {y.shape} and {v.shape}")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError(f"labels must be 0 (wild-type) or 1 (altered), got values {np.unique(y)[:5].tolist()}")
    if not np.isfinite(v).all():
        raise ValueError(f"{what} must be finite (found NaN or inf)")
    return y.astype(np.int64), v


def apply_temperature(logits: Sequence[float] | float, temperature: float = 1.0) -> np.ndarray:
    """P(altered) = ``sigmoid(logit / temperature)`` (float64)."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0, got {temperature}")
    return expit(np.asarray(logits, dtype=np.float64) / float(temperature))


def binary_nll(labels: Sequence[Any], logits: Sequence[float], temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of the statuses under ``sigmoid(logit / temperature)`` (nats per patient)."""
    y, z = _labels_values(labels, logits, "logits")
    if y.size == 0:
        return math.nan
    z = z / float(temperature)
    return float(-np.mean(np.where(y == 1, log_expit(z), log_expit(-z))))


def fit_temperature(labels: Sequence[Any], logits: Sequence[float],
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The temperature ``T`` minimising :func:`binary_nll` on validation patients (``T`` within ``bounds``).

    Needs both statuses: with one class the likelihood is maximised by an infinitely sharp (or flat) model.
    """
    y, z = _labels_values(labels, logits, "logits")
    if len(set(y.tolist())) < 2:
        raise ValueError(f"fitting a temperature needs altered and wild-type patients; got statuses {sorted(set(y.tolist()))}")
    low, high = math.log(bounds[0]), math.log(bounds[1])
    result = minimize_scalar(lambda log_t: binary_nll(y, z, math.exp(log_t)), bounds=(low, high), method="bounded",
                             options={"xatol": 1e-6})
    return float(math.exp(result.x))


def _bin_index(probabilities: np.ndarray, bins: int) -> np.ndarray:
    """Bin ``b`` holds ``(b/bins, (b+1)/bins]``; 0 goes to the first bin (scikit-learn's ``calibration_curve``
    binning: ``searchsorted`` on the inner edges)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    return np.searchsorted(edges[1:-1], probabilities, side="left")


def reliability_table(labels: Sequence[Any], probabilities: Sequence[float], bins: int = 10) -> pd.DataFrame:
    """One row per bin of P(altered): ``bin_low, bin_high, n, mean_probability, fraction_altered`` (NaN when empty)."""
    y, p = _labels_values(labels, probabilities, "probabilities")
    if int(bins) < 1:
        raise ValueError(f"bins must be a positive integer, got {bins}")
    if ((p < 0) | (p > 1)).any():
        raise ValueError("probabilities must lie in [0, 1]")
    bins = int(bins)
    index = _bin_index(p, bins)
    n = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(index, weights=p, minlength=bins) / n
        frac = np.bincount(index, weights=y, minlength=bins) / n
    edges = np.linspace(0.0, 1.0, bins + 1)
    return pd.DataFrame({"bin_low": edges[:-1], "bin_high": edges[1:], "n": n, "mean_probability": mean_p,
                         "fraction_altered": frac})


def expected_calibration_error(labels: Sequence[Any], probabilities: Sequence[float], bins: int = 10) -> float:
    """ECE of P(altered): ``sum_b (n_b / N) |mean probability_b - fraction altered_b|`` (NaN without patients)."""
    table = reliability_table(labels, probabilities, bins)
    total = int(table["n"].sum())
    if total == 0:
        return math.nan
    used = table[table["n"] > 0]
    return float(np.sum(used["n"] / total * (used["mean_probability"] - used["fraction_altered"]).abs()))


def youden_threshold(labels: Sequence[Any], probabilities: Sequence[float]) -> float:
    """Decision threshold by Youden's J (see :data:`THRESHOLD_RULE`) on validation probabilities.

    The ROC points come from scikit-learn's ``roc_curve`` (a point per distinct probability, altered when
    ``probability >= cut``). The chosen cut is moved halfway down to the next lower distinct probability, so
    the validation patients are classified exactly as at the optimum while the threshold does not sit on one
    patient's value; below the lowest probability the cut is that probability halved.
    """
    from sklearn.metrics import roc_curve

    y, p = _labels_values(labels, probabilities, "probabilities")
    if len(set(y.tolist())) < 2:
        raise ValueError(f"choosing a threshold needs altered and wild-type patients; got statuses {sorted(set(y.tolist()))}")
    fpr, tpr, cuts = roc_curve(y, p, drop_intermediate=False)
    finite = np.isfinite(cuts)
    fpr, tpr, cuts = fpr[finite], tpr[finite], cuts[finite]
    j = tpr - fpr
    best = np.flatnonzero(np.isclose(j, j.max(), rtol=0, atol=1e-12))
    distinct = np.unique(p)

    def placed(cut: float) -> float:
        lower = distinct[distinct < cut]
        return float((cut + lower.max()) / 2.0) if lower.size else float(cut / 2.0)

    candidates = [placed(float(cuts[i])) for i in best]
    return min(candidates, key=lambda t: (abs(t - 0.5), t))


def fit_calibration(labels: Sequence[Any], logits: Sequence[float], bins: int = 10) -> dict[str, Any]:
    """Temperature and threshold from validation patients, with what they change: a JSON-ready record
    (``temperature``, ``threshold``, ``threshold_rule``, ``n_patients``, ``n_altered``, ``nll_before``/``after``,
    ``ece_before``/``after`` (``bins`` bins), and the accuracy, sensitivity and specificity at the threshold)."""
    y, z = _labels_values(labels, logits, "logits")
    temperature = fit_temperature(y, z)
    before, after = apply_temperature(z, 1.0), apply_temperature(z, temperature)
    threshold = youden_threshold(y, after)
    at = threshold_metrics(y, after, threshold)
    return {
        "temperature": temperature,
        "threshold": threshold,
        "threshold_rule": THRESHOLD_RULE,
        "n_patients": int(y.size),
        "n_altered": int(y.sum()),
        "nll_before": binary_nll(y, z, 1.0),
        "nll_after": binary_nll(y, z, temperature),
        "ece_bins": int(bins),
        "ece_before": expected_calibration_error(y, before, bins),
        "ece_after": expected_calibration_error(y, after, bins),
        **{f"validation_{k}": v for k, v in at.items()},
    }


def plot_reliability(labels: Sequence[Any], probabilities: Sequence[float], bins: int = 10,
                     title: str | None = None, figsize: tuple[float, float] = (5.6, 5.6)) -> bytes:
    """Reliability diagram of P(altered): fraction altered against mean probability per bin (marker area ~ patients),
    the diagonal of perfect calibration, and the ECE in the title; PNG bytes."""
    table = reliability_table(labels, probabilities, bins)
    ece = expected_calibration_error(labels, probabilities, bins)
    used = table[table["n"] > 0]
    fig = new_figure(*figsize)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1, label="perfect calibration")
    ax.bar(table["bin_low"], table["fraction_altered"].fillna(0), width=1.0 / len(table), align="edge",
           color="#d62728", alpha=0.25, edgecolor="#d62728", label="fraction altered per bin")
    ax.scatter(used["mean_probability"], used["fraction_altered"], s=20 + 200 * used["n"] / max(1, used["n"].max()),
               color="#d62728", zorder=3, label="bins (area ~ patients)")
    for row in used.itertuples():
        ax.annotate(str(int(row.n)), (row.mean_probability, row.fraction_altered), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.set_xlabel("predicted P(altered)")
    ax.set_ylabel("fraction altered")
    ax.legend(loc="upper left", fontsize=7.5, framealpha=0.9)
    n = int(table["n"].sum())
    ece_text = "n/a" if not math.isfinite(ece) else f"{ece:.3f}"
    ax.set_title(title or f"Calibration (n={n}, {len(table)} bins): ECE {ece_text}", fontsize=10)
    fig.tight_layout()
    return png_bytes(fig)
