"""``dmg evaluate`` under ``torchrun``: each rank evaluates its own cases, rank 0 writes the report of all.

:class:`ShardedCohortEvaluator` is an :class:`evaluation.CohortEvaluator` whose :meth:`evaluate` runs the
per-case metrics of this rank's share (:meth:`CohortRanks.shard`, MONAI's ``DistributedSampler``), gathers
every rank's case table in pairing order and summarises the whole cohort once (same bootstrap seed, so
the summary equals a single-process run's). :meth:`run` writes the outputs on rank 0 only.
:func:`cohort_evaluator` gives the plain evaluator in a single process.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from evaluation import CohortEvaluator
from evaluation.cohort_result import CohortResult
from evaluation.pairing import EvaluationCase, Pairing
from pipeline.inference.distributed import CohortRanks

__all__ = ["ShardedCohortEvaluator", "cohort_evaluator"]

logger = logging.getLogger(__name__)


class ShardedCohortEvaluator(CohortEvaluator):
    """A :class:`CohortEvaluator` over the ranks of a ``torchrun`` job (see the module docstring)."""

    def __init__(self, ranks: CohortRanks, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ranks = ranks

    def _case_rows(self, case_list: list[EvaluationCase]) -> list[dict[str, Any]]:
        """This rank's share of the rows, gathered from every rank in input order."""
        mine = self.ranks.shard(list(range(len(case_list))))
        logger.info("rank %d of %d: %d of %d cases", self.ranks.rank, self.ranks.world_size, len(mine), len(case_list))
        rows = list(zip(mine, super()._case_rows([case_list[i] for i in mine]), strict=True))
        merged = self.ranks.gather(rows, key=lambda row: row[0], order=range(len(case_list)))
        return [row for _, row in merged]

    def run(self, cases: Pairing | Iterable[EvaluationCase | Mapping], output_dir: str | os.PathLike,
            title: str = "Cohort evaluation", inputs: Mapping[str, str] | None = None) -> CohortResult:
        from evaluation.reports.segmentation import write_outputs

        result = self.evaluate(cases)
        if self.ranks.is_main:
            write_outputs(result, output_dir, title=title, inputs=inputs)
        self.ranks.barrier()
        return result


def cohort_evaluator(**kwargs: Any) -> CohortEvaluator:
    """:class:`ShardedCohortEvaluator` under ``torchrun`` (``WORLD_SIZE > 1``), else a plain :class:`CohortEvaluator`."""
    ranks = CohortRanks.from_environment()
    return ShardedCohortEvaluator(ranks, **kwargs) if ranks.distributed else CohortEvaluator(**kwargs)
