"""Evaluate a whole cohort of predictions: per-case metrics, failures, summary, report.

:class:`CohortEvaluator` takes the cases of :mod:`evaluation.pairing` and evaluates each in
isolation: a missing, unreadable or misaligned file fails *that* case (with its kind, the
file and a reason naming it) and the others carry on. Cases run in parallel processes
(``workers > 1``) with a progress bar; results keep the input order.

Per-case table (:attr:`CohortResult.cases`, written as ``cases.csv``): ``case_id,
patient_id, sequence, center, status`` (``evaluated`` / ``failed``), ``failure`` (a key of
:data:`evaluation.pairing.FAILURE_KINDS`), ``failed_file``, ``reason``; for every metric of
:func:`evaluation.metrics.compute_case_metrics` the raw value ``<metric>_raw`` (NaN / inf
for empty masks) and the value after the empty-case policy ``<metric>_policy`` (what the
summary and the plots use); volumes; the flags ``ref_empty, pred_empty, empty_case``
(``none``/``both``/``ref``/``pred``) and ``policy_applied``; the file paths and the
reference's foreground labels (``ref_label_classes``, space separated; empty = binary mask).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import stat
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from evaluation.cohort_result import CaseFailure, CohortResult
from evaluation.empty_policy import BRATS_POLICY, EmptyCasePolicy, apply_empty_policy, empty_case
from evaluation.mask_io import grid_mismatch, load_mask
from evaluation.metrics import compute_case_metrics
from evaluation.pairing import EvaluationCase, Pairing
from evaluation.reports.segmentation import write_outputs
from evaluation.summary import METRICS, summarize

__all__ = ["CaseFailure", "CohortEvaluator", "CohortResult", "case_table", "evaluate_case", "CASE_COLUMNS"]

ID_COLUMNS: tuple[str, ...] = ("case_id", "patient_id", "sequence", "center", "status", "failure", "failed_file",
                               "reason")
VOLUME_COLUMNS: tuple[str, ...] = ("ref_volume_ml", "pred_volume_ml", "ref_area_mm2", "pred_area_mm2")
FLAG_COLUMNS: tuple[str, ...] = ("ref_empty", "pred_empty", "empty_case", "policy_applied")
PATH_COLUMNS: tuple[str, ...] = ("pred_path", "ref_path", "image_path", "ref_label_classes")
CASE_COLUMNS: tuple[str, ...] = (
    ID_COLUMNS + tuple(f"{m}_raw" for m in METRICS) + tuple(f"{m}_policy" for m in METRICS)
    + VOLUME_COLUMNS[:2] + FLAG_COLUMNS + PATH_COLUMNS
)


def _base_row(case: EvaluationCase) -> dict[str, Any]:
    return {"case_id": case.case_id, "patient_id": case.patient_id, "sequence": case.sequence,
            "center": case.center, "pred_path": case.pred_path, "ref_path": case.ref_path,
            "image_path": case.image_path,
            "ref_label_classes": "" if case.ref_label_classes is None else " ".join(map(str, case.ref_label_classes))}


def _failed(row: dict[str, Any], kind: str, file: str | None, reason: str) -> dict[str, Any]:
    row.update({"status": "failed", "failure": kind, "failed_file": file or "", "reason": reason})
    return row


def _file_problem(path: str | None) -> str | None:
    """Why ``path`` is not a readable file (None when it is): missing, or an OS error such as a symlink loop."""
    if not path:
        return "not given"
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be accessed ({exc.strerror or type(exc).__name__})"
    return None if stat.S_ISREG(st.st_mode) else "is not a file"


def _load_error(what: str, path: str, exc: Exception) -> str:
    text = str(exc)
    if path not in text:
        text = f"{path}: {text}"
    return f"cannot read the {what} as a mask ({type(exc).__name__}): {text}"


def evaluate_case(case: EvaluationCase, policy: EmptyCasePolicy = BRATS_POLICY,
                  affine_atol_mm: float = 1e-3) -> dict[str, Any]:
    """One row of the per-case table; never raises for a bad case (the row says why it failed)."""
    row = _base_row(case)
    if case.failure is not None:
        return _failed(row, case.failure, case.failed_file, case.reason or case.failure)
    for kind, what, path in (("prediction", "prediction", case.pred_path), ("reference", "reference", case.ref_path)):
        problem = _file_problem(path)
        if problem is not None:
            return _failed(row, f"missing_{kind}", path, f"{what} file {problem}: {path}")
    if os.path.samefile(case.pred_path, case.ref_path):
        return _failed(row, "prediction_is_reference", case.pred_path,
                       f"the prediction {case.pred_path} is the reference file itself; it would score DSC 1")
    # label classes (1,) mean a binary mask: read it strictly, so a stray value 2 is an error, not background
    classes = None if case.ref_label_classes in (None, (1,)) else case.ref_label_classes
    try:
        ref = load_mask(case.ref_path, classes)
    except Exception as exc:  # nibabel raises many types for corrupt files
        return _failed(row, "unreadable_reference", case.ref_path, _load_error("reference", case.ref_path, exc))
    try:
        pred = load_mask(case.pred_path)
    except Exception as exc:
        return _failed(row, "unreadable_prediction", case.pred_path, _load_error("prediction", case.pred_path, exc))
    problem = grid_mismatch(pred, ref, affine_atol_mm)
    if problem is not None:
        return _failed(row, "grid_mismatch", case.pred_path, problem)
    try:
        raw = compute_case_metrics(pred.array, ref.array, ref.spacing)
    except Exception as exc:
        return _failed(row, "error", case.pred_path, f"metric computation failed ({type(exc).__name__}: {exc})")
    adjusted = apply_empty_policy(raw, policy)
    row.update({"status": "evaluated", "failure": "", "failed_file": "", "reason": ""})
    for metric in METRICS:
        row[f"{metric}_raw"] = float(raw[metric])
        row[f"{metric}_policy"] = float(adjusted[metric])
    for key in VOLUME_COLUMNS:
        if key in raw:
            row[key] = float(raw[key])
    kind = empty_case(bool(raw["ref_empty"]), bool(raw["pred_empty"]))
    row.update({"ref_empty": bool(raw["ref_empty"]), "pred_empty": bool(raw["pred_empty"]), "empty_case": kind,
                "policy_applied": policy.mode != "raw" and kind != "none"})
    return row


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _pool_context() -> mp.context.BaseContext:
    return mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")


def case_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The per-case table of :func:`evaluate_case` rows: the columns in order, with their types."""
    frame = pd.DataFrame(list(rows))
    metric_columns = [f"{m}{suffix}" for suffix in ("_raw", "_policy") for m in METRICS]
    volumes = [c for c in VOLUME_COLUMNS if c in frame.columns] or list(VOLUME_COLUMNS[:2])
    frame = frame.reindex(columns=[*ID_COLUMNS, *metric_columns, *volumes, *FLAG_COLUMNS, *PATH_COLUMNS])
    for column in ("ref_empty", "pred_empty", "policy_applied"):
        frame[column] = frame[column].astype("boolean")
    for metric in METRICS:
        for suffix in ("_raw", "_policy"):
            frame[metric + suffix] = frame[metric + suffix].astype(float)
    for column in ("failure", "failed_file", "reason", "empty_case"):
        frame[column] = frame[column].astype(object).fillna("")
    return frame


class CohortEvaluator:
    """Evaluate prediction/reference pairs of a cohort and write its report.

    Args:
        policy: empty-case policy for the ``*_policy`` columns, the summary and the plots.
        workers: processes (1 = in this process).
        affine_atol: largest allowed difference between the prediction's and the reference's
            affine entries (mm); shape and spacing must match exactly.
        bootstrap: bootstrap resamples for the 95% CI of the mean.
        seed: bootstrap seed (the summary is deterministic).
        confidence: CI level.
        progress: show a tqdm progress bar.

    Example (bundle config): ``{"_target_": "evaluation.CohortEvaluator", "workers": 2}`` then
    ``"$@evaluator.run(@cases, @output_dir)"``.
    """

    def __init__(self, policy: EmptyCasePolicy = BRATS_POLICY, workers: int = 1, affine_atol: float = 1e-3,
                 bootstrap: int = 2000, seed: int = 0, confidence: float = 0.95, progress: bool = True):
        if int(workers) < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        if not float(affine_atol) >= 0:
            raise ValueError(f"affine_atol must be >= 0 mm, got {affine_atol}")
        if int(bootstrap) < 0:
            raise ValueError(f"bootstrap must be >= 0 resamples, got {bootstrap}")
        if not 0.0 < float(confidence) < 1.0:
            raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
        self.policy = policy
        self.workers = int(workers)
        self.affine_atol = float(affine_atol)
        self.bootstrap = int(bootstrap)
        self.seed = int(seed)
        self.confidence = float(confidence)
        self.progress = bool(progress)

    @staticmethod
    def _as_cases(cases: Pairing | Iterable[EvaluationCase | Mapping]) -> tuple[list[EvaluationCase], list[str]]:
        if isinstance(cases, Pairing):
            return list(cases.cases), list(cases.unpaired_predictions)
        return [c if isinstance(c, EvaluationCase) else EvaluationCase.from_mapping(c) for c in cases], []

    def evaluate(self, cases: Pairing | Iterable[EvaluationCase | Mapping]) -> CohortResult:
        """Evaluate every case (a :class:`Pairing`, cases, or dicts with the case fields)."""
        case_list, unpaired = self._as_cases(cases)
        ids = [c.case_id for c in case_list]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"case ids must be unique; repeated: {', '.join(duplicates[:10])}")
        frame = case_table(self._case_rows(case_list))
        summary = summarize(frame, METRICS, self.bootstrap, self.confidence, self.seed)
        return CohortResult(cases=frame, summary=summary, policy=self.policy, affine_atol_mm=self.affine_atol,
                            bootstrap=self.bootstrap, seed=self.seed, confidence=self.confidence,
                            unpaired_predictions=unpaired)

    def _case_rows(self, case_list: list[EvaluationCase]) -> list[dict[str, Any]]:
        """One row per case, in input order (in ``workers`` processes); a subclass may share them out."""
        rows: list[dict[str, Any] | None] = [None] * len(case_list)
        workers = min(self.workers, max(1, len(case_list)))
        with tqdm(total=len(case_list), desc="evaluate", unit="case", disable=not self.progress) as bar:
            if workers == 1:
                for index, case in enumerate(case_list):
                    rows[index] = evaluate_case(case, self.policy, self.affine_atol)
                    bar.update()
            else:
                with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                                         initializer=_init_worker) as pool:
                    futures = {pool.submit(evaluate_case, case, self.policy, self.affine_atol): index
                               for index, case in enumerate(case_list)}
                    for future in as_completed(futures):
                        index = futures[future]
                        try:
                            rows[index] = future.result()
                        except Exception as exc:  # a crashed worker process fails its case only
                            rows[index] = _failed(_base_row(case_list[index]), "error", case_list[index].pred_path,
                                                  f"worker failed ({type(exc).__name__}: {exc})")
                        bar.update()
        return rows

    def run(self, cases: Pairing | Iterable[EvaluationCase | Mapping], output_dir: str | os.PathLike,
            title: str = "Cohort evaluation", inputs: Mapping[str, str] | None = None) -> CohortResult:
        """:meth:`evaluate`, then write ``cases.csv``, ``summary.csv``, ``summary.json``, ``report.html``."""
        result = self.evaluate(cases)
        write_outputs(result, output_dir, title=title, inputs=inputs)
        return result

