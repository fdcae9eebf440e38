"""Cohort statistics of per-case metrics: overall, per sequence, per center.

Computed on the **policy** columns (``<metric>_policy``) of the evaluated cases, i.e. after
:func:`evaluation.empty_policy.apply_empty_policy`. Per group and metric:

* ``n_evaluated`` / ``n_failed``: cases of the group with metrics / not evaluated;
* ``n_nonfinite``: evaluated cases whose value is NaN or inf (only possible with the ``raw``
  policy). They are *not* dropped: mean, SD, median, quartiles and CI are then NaN or inf,
  so a missed lesion under the raw policy shows up as ``inf`` rather than vanishing;
* ``mean``; ``sd`` (sample SD, ``ddof=1``; NaN for one case); ``median``, ``q1``, ``q3``
  (25th/75th percentiles, linear interpolation) and ``iqr = q3 - q1``;
* ``ci_low`` / ``ci_high``: percentile bootstrap CI of the mean (``scipy.stats.bootstrap``:
  ``resamples`` resamples of the group's cases with replacement, ``numpy.random.default_rng(seed)``
  per group and metric, so the numbers do not depend on the order groups are computed in); NaN
  for fewer than two cases or non-finite values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from evaluation.bootstrap import percentile_ci
from evaluation.json_values import json_ready
from evaluation.metric_table import SEGMENTATION_TABLE, names

__all__ = ["METRICS", "STAT_COLUMNS", "bootstrap_mean_ci", "describe", "summarize", "summary_records",
           "summary_table_text"]

METRICS: tuple[str, ...] = names(SEGMENTATION_TABLE)
STAT_COLUMNS: tuple[str, ...] = (
    "n_evaluated", "n_failed", "n_nonfinite", "mean", "sd", "median", "q1", "q3", "iqr", "ci_low", "ci_high",
)
ALL = "all"


def bootstrap_mean_ci(values: Sequence[float], resamples: int = 2000, confidence: float = 0.95,
                      seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean (:func:`evaluation.bootstrap.percentile_ci`); ``(nan, nan)`` for
    fewer than 2 values or any non-finite one; ``(v, v)`` when every value is ``v``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2 or not np.all(np.isfinite(values)) or resamples < 1:
        return math.nan, math.nan
    interval = percentile_ci((values,), np.mean, resamples, confidence, seed)
    return float(interval.low[0]), float(interval.high[0])


def describe(values: Sequence[float], resamples: int = 2000, confidence: float = 0.95,
             seed: int = 0) -> dict[str, Any]:
    """The statistics of one group and metric (module docstring); ``n_failed`` is left to the caller."""
    values = np.asarray(values, dtype=np.float64)
    n = int(values.size)
    nonfinite = int(np.count_nonzero(~np.isfinite(values)))
    out: dict[str, Any] = {"n_evaluated": n, "n_nonfinite": nonfinite}
    if n == 0:
        out.update({k: math.nan for k in ("mean", "sd", "median", "q1", "q3", "iqr", "ci_low", "ci_high")})
        return out
    with np.errstate(invalid="ignore"):
        mean = float(np.mean(values))
        sd = float(np.std(values, ddof=1)) if n > 1 else math.nan
        if np.isnan(values).any():
            median = q1 = q3 = math.nan
        else:
            q1, median, q3 = (float(v) for v in np.percentile(values, [25.0, 50.0, 75.0]))
        iqr = q3 - q1
    low, high = bootstrap_mean_ci(values, resamples, confidence, seed)
    out.update({"mean": mean, "sd": sd, "median": median, "q1": q1, "q3": q3, "iqr": float(iqr),
                "ci_low": low, "ci_high": high})
    return out


def _groups(cases: pd.DataFrame) -> list[tuple[str, str, str, pd.DataFrame]]:
    """Only groups that add information: a level whose one group is the whole cohort is left out, and the
    overall row names the sequence (center) when there is only one."""
    sequences, centers = sorted(cases["sequence"].astype(str).unique()), sorted(cases["center"].astype(str).unique())
    several_sequences, several_centers = len(sequences) > 1, len(centers) > 1
    groups = [("overall", sequences[0] if len(sequences) == 1 else ALL, centers[0] if len(centers) == 1 else ALL,
               cases)]
    if several_sequences:
        for seq, part in cases.groupby("sequence", sort=True):
            groups.append(("sequence", str(seq), ALL, part))
    if several_centers:
        for center, part in cases.groupby("center", sort=True):
            groups.append(("center", ALL, str(center), part))
    if several_sequences and several_centers:
        for (seq, center), part in cases.groupby(["sequence", "center"], sort=True):
            groups.append(("sequence+center", str(seq), str(center), part))
    return groups


def summarize(cases: pd.DataFrame, metrics: Sequence[str] = METRICS, resamples: int = 2000,
              confidence: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Long table, one row per group and metric: ``level, sequence, center, metric`` + :data:`STAT_COLUMNS`.

    ``cases`` is the per-case table of :class:`evaluation.cohort_evaluator.CohortResult`
    (columns ``status``, ``sequence``, ``center`` and ``<metric>_policy``). Levels: ``overall``; ``sequence``
    with more than one sequence; ``center`` with more than one center; ``sequence+center`` with both (a
    level with one group would repeat the overall rows). With one sequence or center, the overall row
    names it instead of ``all``.
    """
    rows = []
    for level, seq, center, part in _groups(cases):
        evaluated = part[part["status"] == "evaluated"]
        n_failed = int((part["status"] != "evaluated").sum())
        for metric in metrics:
            column = f"{metric}_policy"
            values = evaluated[column].astype(float).to_numpy() if column in evaluated else np.array([])
            stats = describe(values, resamples, confidence, seed)
            rows.append({"level": level, "sequence": seq, "center": center, "metric": metric,
                         **stats, "n_failed": n_failed})
    frame = pd.DataFrame(rows, columns=["level", "sequence", "center", "metric", *STAT_COLUMNS])
    return frame.astype({"n_evaluated": int, "n_failed": int, "n_nonfinite": int})


def summary_records(summary: pd.DataFrame) -> list[dict[str, Any]]:
    """The summary as JSON-ready groups: ``level, sequence, center, n_evaluated, n_failed, metrics{...}``.

    Numbers JSON cannot hold follow :func:`evaluation.json_values.json_ready`: NaN is ``null``, an
    infinite statistic ``"inf"`` / ``"-inf"``.
    """
    records = []
    for (level, seq, center), part in summary.groupby(["level", "sequence", "center"], sort=False):
        first = part.iloc[0]
        metrics = {
            row["metric"]: {k: json_ready(row[k]) for k in STAT_COLUMNS if k not in ("n_evaluated", "n_failed")}
            for _, row in part.iterrows()
        }
        records.append({"level": level, "sequence": seq, "center": center,
                        "n_evaluated": int(first["n_evaluated"]), "n_failed": int(first["n_failed"]),
                        "metrics": metrics})
    return records


def summary_table_text(summary: pd.DataFrame,
                       levels: Sequence[str] = ("overall", "sequence", "center", "sequence+center")) -> str:
    """A console table of :func:`summarize`'s output: DSC mean ± SD and HD95 median per row of ``levels``."""
    rows = summary[(summary["metric"] == "dsc") & summary["level"].isin(levels)]
    hd95 = summary[summary["metric"] == "hd95"].set_index(["level", "sequence", "center"])["median"]
    lines = [f"{'sequence':<10}{'center':<14}{'n':>5}{'failed':>8}{'DSC mean ± SD':>20}{'HD95 median mm':>17}"]
    for r in rows.itertuples():
        dsc = "-" if not r.n_evaluated else f"{r.mean:.3f} ± " + ("n/a" if r.sd != r.sd else f"{r.sd:.3f}")
        med = hd95.get((r.level, r.sequence, r.center), float("nan"))
        med = "-" if med != med else f"{med:.2f}"
        lines.append(f"{r.sequence:<10}{r.center:<14}{r.n_evaluated:>5}{r.n_failed:>8}{dsc:>20}{med:>17}")
    return "\n".join(lines)
