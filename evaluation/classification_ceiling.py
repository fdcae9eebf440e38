"""The best H3K27M status prediction a cohort allows: the Bayes-optimal classifier's AUROC and accuracy.

A synthetic cohort draws each patient's status from a known probability ``p`` (a function of the
generator's latent variables, :mod:`pipeline.data.h3k27m`). No model that sees only the images can
beat the classifier that knows ``p``, so its scores are the ceiling printed beside a model's:

* ``bayes_auroc``: AUROC of ``p`` against the drawn statuses of *this* cohort
  (:func:`evaluation.metric_table.auroc`, scikit-learn's ``roc_auc_score``), the number to compare a
  model's AUROC on the same patients with;
* ``bayes_accuracy``: accuracy of ``p >= 0.5`` against the drawn statuses;
* ``expected_bayes_auroc`` / ``expected_bayes_accuracy``: their expectations over the status draw
  given ``p`` (``mean(max(p, 1 - p))`` for the accuracy; for the AUROC the ratio of the expected
  concordant pair count to the expected pair count, which the finite-cohort mean approaches as the
  cohort grows), i.e. what the cohort's latent variables allow before the coin flips.

The ceiling is an upper bound: images show the latent variables only approximately.
:func:`read_status_ceiling` reads it from a cohort's ``synth.json``; :func:`status_ceiling_for` recomputes
it on exactly the patients a report scores, from their ``parameters/<patient_id>.json``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import rankdata

from evaluation.metric_table import auroc

__all__ = ["CEILING_KEY", "SYNTH_JSON", "bayes_ceiling", "expected_auroc", "read_status_ceiling",
           "status_ceiling_for", "ceiling_text"]

SYNTH_JSON = "synth.json"
CEILING_KEY = "h3k27m_ceiling"
"""Key of the ceiling block in ``synth.json``."""


def expected_auroc(probabilities: Sequence[float]) -> float:
    """Expected concordant pairs over expected pairs when status ``i`` ~ Bernoulli(``p_i``) independently.

    ``sum_{i != j} p_i (1 - p_j) c_ij / sum_{i != j} p_i (1 - p_j)`` with ``c_ij`` 1 when ``p_i > p_j``,
    1/2 on ties; O(n log n) through the ranks of ``p``.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim != 1 or p.size < 2 or not np.all((p >= 0) & (p <= 1)):
        raise ValueError(f"probabilities must be a 1D array of at least 2 values in [0, 1], got shape {p.shape}")
    order = np.argsort(p, kind="mergesort")
    p_sorted, q_sorted = p[order], 1.0 - p[order]
    # sum over j of (1 - p_j) for p_j < p_i, plus half of the tied ones (excluding j = i itself)
    # (integer indices: SciPy >= 1.18 returns float ranks for every method)
    ranks = rankdata(p_sorted, method="min").astype(np.intp) - 1  # index of the first element of each tie block
    maxr = rankdata(p_sorted, method="max").astype(np.intp)  # one past the last element of each tie block
    cum_q = np.r_[0.0, np.cumsum(q_sorted)]
    below = cum_q[ranks]
    tied = cum_q[maxr] - cum_q[ranks] - q_sorted
    concordant = float(np.sum(p_sorted * (below + 0.5 * tied)))
    pairs = float(p.sum() * (1.0 - p).sum() - np.sum(p * (1.0 - p)))
    return concordant / pairs if pairs > 0 else math.nan


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else value


def _fmt(value: Any) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.3f}"


def bayes_ceiling(statuses: Sequence[int], probabilities: Sequence[float]) -> dict[str, float | int | None]:
    """Realised and expected Bayes-optimal AUROC and accuracy of a cohort (see the module docstring); an
    AUROC that is undefined (one status only, or one patient) is None, so the block is plain JSON."""
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(statuses).astype(np.int64)
    if p.shape != y.shape or p.ndim != 1 or p.size == 0:
        raise ValueError(f"statuses and probabilities must be 1D of the same length, got {y.shape} and {p.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError(f"statuses must be 0 or 1, got {np.unique(y)[:5].tolist()}")
    return {
        "n_patients": int(y.size),
        "n_altered": int(y.sum()),
        "bayes_auroc": _none_if_nan(auroc(y, p)),
        "bayes_accuracy": float(np.mean((p >= 0.5) == (y == 1))),
        "expected_bayes_auroc": _none_if_nan(expected_auroc(p)) if p.size >= 2 else None,
        "expected_bayes_accuracy": float(np.mean(np.maximum(p, 1.0 - p))),
        "expected_prevalence": float(p.mean()),
    }


def read_status_ceiling(cohort_dir: str | os.PathLike | None) -> dict[str, Any] | None:
    """The ceiling block of ``cohort_dir/synth.json``; None when there is no such file or block
    (a real cohort, a classic or lesion-free synthetic one). An unreadable file raises ``ValueError``
    naming it."""
    if cohort_dir is None:
        return None
    path = Path(cohort_dir) / SYNTH_JSON
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a readable synth.json ({exc})") from exc
    block = document.get(CEILING_KEY) if isinstance(document, dict) else None
    return dict(block) if isinstance(block, dict) else None


def ceiling_text(ceiling: dict[str, Any] | None) -> str:
    """One printable line with the cohort's Bayes-optimal AUROC and accuracy ('' without a ceiling)."""
    if not ceiling:
        return ""
    return (f"ceiling (Bayes-optimal, from the generator's latent variables; status signal "
            f"{ceiling.get('status_signal', 'n/a')}): AUROC {_fmt(ceiling.get('bayes_auroc'))}, accuracy "
            f"{_fmt(ceiling.get('bayes_accuracy'))} on this cohort's {ceiling.get('n_patients', '?')} patients "
            f"(expected AUROC {_fmt(ceiling.get('expected_bayes_auroc'))})")


def status_ceiling_for(cohort_dir: str | os.PathLike | None, patient_ids: Sequence[str],
                       statuses: Sequence[int]) -> dict[str, Any] | None:
    """The ceiling on the given patients of a synthetic cohort: :func:`bayes_ceiling` of their recorded
    ``statuses`` and ``h3k27m_probability`` (``cohort_dir/parameters/<patient_id>.json``), with the
    cohort's ``status_signal``. Falls back to the whole cohort's block of ``synth.json`` (marked
    ``"scope": "cohort"``) when a patient's probability is missing; None without a ceiling block."""
    block = read_status_ceiling(cohort_dir)
    if block is None:
        return None
    probabilities = []
    for pid in patient_ids:
        path = Path(cohort_dir) / "parameters" / f"{pid}.json"
        try:
            probability = json.loads(path.read_text()).get("h3k27m_probability")
        except (OSError, ValueError):
            probability = None
        if probability is None:
            return {**block, "scope": "cohort"}
        probabilities.append(float(probability))
    ceiling = bayes_ceiling(statuses, probabilities)
    return {**ceiling, "status_signal": block.get("status_signal"), "scope": "evaluated patients"}
