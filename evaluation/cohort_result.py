"""The result of a cohort evaluation: the per-case table, the summary and the failures.

Its own module so that :mod:`evaluation.reports.segmentation` (which writes a result) and
:mod:`evaluation.cohort_evaluator` (which computes one, then writes it) do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from evaluation.empty_policy import EmptyCasePolicy

__all__ = ["CaseFailure", "CohortResult"]


@dataclass(frozen=True)
class CaseFailure:
    """A case that could not be evaluated: which, what kind, which file, why."""

    case_id: str
    patient_id: str
    sequence: str
    center: str
    kind: str
    file: str
    reason: str

    def __str__(self) -> str:
        return f"{self.case_id} (patient {self.patient_id!r}, {self.sequence}): {self.kind}: {self.reason}"


@dataclass
class CohortResult:
    """Per-case table, summary and failures of one cohort evaluation."""

    cases: pd.DataFrame
    summary: pd.DataFrame
    policy: EmptyCasePolicy
    affine_atol_mm: float
    bootstrap: int
    seed: int
    confidence: float = 0.95
    unpaired_predictions: list[str] = field(default_factory=list)

    @property
    def evaluated(self) -> pd.DataFrame:
        """Rows of the evaluated cases."""
        return self.cases[self.cases["status"] == "evaluated"]

    @property
    def failures(self) -> list[CaseFailure]:
        """The cases that could not be evaluated, in input order."""
        failed = self.cases[self.cases["status"] != "evaluated"]
        return [CaseFailure(str(r.case_id), str(r.patient_id), str(r.sequence), str(r.center), str(r.failure),
                            str(r.failed_file or ""), str(r.reason)) for r in failed.itertuples()]

    @property
    def n_evaluated(self) -> int:
        return int((self.cases["status"] == "evaluated").sum())

    @property
    def n_failed(self) -> int:
        return int(len(self.cases) - self.n_evaluated)
