"""Pair predictions with references: the case list of a cohort evaluation.

Two modes:

* **cohort mode** (:func:`pair_cohort`): the caller gives one plain dict per patient and
  sequence (``patient_id, center, sequence, label, image, label_classes``; e.g. the items of
  ``pipeline.data.Cohort.datalist(sequence)`` - this package never imports ``pipeline``).
  The prediction of a patient is ``PRED_DIR/<patient_id>_<sequence>_seg.nii.gz`` (or
  ``.nii``). Items without a reference label and problems the caller already knows about
  (e.g. the cohort loader's issues) become failed cases.
* **folder mode** (:func:`pair_folders`, like ``nnUNetv2_evaluate_folder``): every
  ``REF_DIR/*.nii.gz`` / ``*.nii`` is paired with the file of the same name in ``PRED_DIR``.
  The center is ``"unknown"`` unless cohort items are given to look the patient up (by the
  label's file name, else by a ``<patient_id>_...`` file-name prefix).

Pairing never reads a file; whether a prediction exists, can be read and lies on the
reference's grid is decided per case by :class:`evaluation.cohort_evaluator.CohortEvaluator`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from transforms.vocabulary import NIFTI_SUFFIXES, PREDICTION_POSTFIX, nifti_stem, prediction_file_name

__all__ = [
    "FAILURE_KINDS",
    "EvaluationCase",
    "Pairing",
    "pair_cohort",
    "pair_folders",
]

UNKNOWN = "unknown"

#: Why a case was not evaluated.
FAILURE_KINDS: dict[str, str] = {
    "missing_prediction": "no prediction file for the case",
    "missing_reference": "no reference mask for the case",
    "unreadable_prediction": "the prediction cannot be read as a mask",
    "unreadable_reference": "the reference cannot be read as a mask",
    "grid_mismatch": "the prediction is not on the reference's grid (shape, spacing or affine)",
    "cohort_issue": "the cohort loader rejected the case",
    "error": "an unexpected error while computing the metrics",
    "prediction_is_reference": "the prediction is the reference file itself (predictions written over the labels?)",
}


@dataclass(frozen=True)
class EvaluationCase:
    """One prediction/reference pair to evaluate (plain data, picklable).

    ``failure`` / ``reason`` are set when pairing already knows the case cannot be
    evaluated (then the evaluator only records it); ``failed_file`` names the file at fault.
    """

    case_id: str
    patient_id: str
    pred_path: str | None
    ref_path: str | None
    sequence: str = UNKNOWN
    center: str = UNKNOWN
    image_path: str | None = None
    ref_label_classes: tuple[int, ...] | None = None
    failure: str | None = None
    reason: str | None = None
    failed_file: str | None = None

    def __post_init__(self) -> None:
        if self.failure is not None and self.failure not in FAILURE_KINDS:
            raise ValueError(f"unknown failure kind {self.failure!r}; expected one of {', '.join(FAILURE_KINDS)}")
        if self.ref_label_classes is not None:
            object.__setattr__(self, "ref_label_classes", tuple(int(c) for c in self.ref_label_classes))

    @classmethod
    def from_mapping(cls, item: Mapping) -> EvaluationCase:
        """Build a case from a dict with the field names (``case_id`` defaults to the patient id)."""
        known = {k: item[k] for k in cls.__dataclass_fields__ if k in item}
        known.setdefault("case_id", str(item["patient_id"]))
        return cls(**known)


@dataclass
class Pairing:
    """The cases to evaluate and the predictions that no reference claimed."""

    cases: list[EvaluationCase]
    unpaired_predictions: list[str] = field(default_factory=list)


def _nifti_files(folder: Path) -> list[Path]:
    # a broken or looping symlink is listed too: its case then fails by name instead of vanishing
    return sorted(p for p in folder.iterdir()
                  if (p.is_file() or p.is_symlink()) and not p.name.startswith(".")
                  and p.name.endswith(NIFTI_SUFFIXES))


def _find_prediction(pred_dir: Path, patient_id: str, sequence: str) -> Path:
    stem = nifti_stem(prediction_file_name(patient_id, sequence))
    for suffix in NIFTI_SUFFIXES:
        candidate = pred_dir / f"{stem}{suffix}"
        if candidate.exists():
            return candidate
    return pred_dir / f"{stem}{NIFTI_SUFFIXES[0]}"  # does not exist: reported as a missing prediction


def _check_dir(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {path} does not exist")
    if not path.is_dir():
        raise NotADirectoryError(f"{what} {path} is not a folder")
    return path.resolve()


def _classes(item: Mapping) -> tuple[int, ...] | None:
    classes = item.get("label_classes")
    return None if classes is None else tuple(int(c) for c in classes)


def pair_cohort(
    pred_dir: str | os.PathLike,
    items: Iterable[Mapping],
    known_failures: Iterable[Mapping] = (),
) -> Pairing:
    """Cases of a cohort: one per item (``patient_id, sequence, center, label, image, label_classes``).

    ``known_failures``: dicts ``patient_id, sequence, center, file, reason`` for cases the
    caller could not even pair (they become ``cohort_issue`` failures). Items without a
    ``label`` become ``missing_reference`` failures. Predictions in ``pred_dir`` named
    ``*_<sequence>_seg.nii*`` for an evaluated sequence that belong to no case are listed in
    :attr:`Pairing.unpaired_predictions`.
    """
    pred_dir = _check_dir(pred_dir, "prediction folder")
    cases: list[EvaluationCase] = []
    seen: set[tuple[str, str]] = set()
    for item in items:
        pid, seq = str(item["patient_id"]), str(item.get("sequence") or UNKNOWN)
        seen.add((pid, seq))
        pred = _find_prediction(pred_dir, pid, seq)
        label = item.get("label")
        common = dict(case_id=f"{pid}_{seq}", patient_id=pid, sequence=seq,
                      center=str(item.get("center") or UNKNOWN), image_path=item.get("image"),
                      pred_path=str(pred), ref_path=None if label is None else str(label),
                      ref_label_classes=_classes(item))
        if label is None:
            cases.append(EvaluationCase(**common, failure="missing_reference",
                                        reason=f"the cohort has no {seq} reference label for patient {pid!r}",
                                        failed_file=item.get("image")))
        else:
            cases.append(EvaluationCase(**common))
    for failure in known_failures:
        pid, seq = str(failure["patient_id"]), str(failure.get("sequence") or UNKNOWN)
        if (pid, seq) in seen:
            continue
        seen.add((pid, seq))
        cases.append(EvaluationCase(
            case_id=f"{pid}_{seq}", patient_id=pid, sequence=seq, center=str(failure.get("center") or UNKNOWN),
            pred_path=str(_find_prediction(pred_dir, pid, seq)), ref_path=failure.get("label"),
            image_path=failure.get("image"), failure="cohort_issue", reason=str(failure["reason"]),
            failed_file=failure.get("file")))
    sequences = {seq for _, seq in seen}
    claimed = {Path(c.pred_path).name for c in cases if c.pred_path}
    unpaired = [str(p) for p in _nifti_files(pred_dir)
                if p.name not in claimed and any(nifti_stem(p).endswith(f"_{s}_{PREDICTION_POSTFIX}") for s in sequences)]
    return Pairing(cases=cases, unpaired_predictions=unpaired)


def _match_item(stem: str, file_name: str, items: Sequence[Mapping], sequence: str | None) -> Mapping | None:
    by_label = [it for it in items if it.get("label") and Path(str(it["label"])).name == file_name]
    if sequence is not None:
        by_label = [it for it in by_label if it.get("sequence") == sequence] or by_label
    if by_label:
        return by_label[0]
    pids = sorted({str(it["patient_id"]) for it in items
                   if stem == str(it["patient_id"]) or stem.startswith(f"{it['patient_id']}_")}, key=len)
    if not pids:
        return None
    pid = pids[-1]  # the longest id that matches, so 'p1' does not claim 'p10_t2_seg'
    candidates = [it for it in items if str(it["patient_id"]) == pid]
    rest = stem[len(pid):]
    for it in candidates:
        if sequence is not None and it.get("sequence") == sequence:
            return it
    for it in candidates:
        if sequence is None and it.get("sequence") and rest.startswith(f"_{it['sequence']}"):
            return it
    return {"patient_id": pid, "center": candidates[0].get("center")}  # patient known, sequence not


def pair_folders(
    pred_dir: str | os.PathLike,
    ref_dir: str | os.PathLike,
    cohort_items: Sequence[Mapping] | None = None,
    sequence: str | None = None,
    ref_label_classes: Sequence[int] | None = None,
) -> Pairing:
    """Pair ``REF_DIR/<name>`` with ``PRED_DIR/<name>`` for every NIfTI reference.

    The case id is the file name without extension. ``cohort_items`` (dicts as in
    :func:`pair_cohort`) give patient, center, sequence and image where a reference matches
    an item's label file name or starts with ``<patient_id>_``; otherwise the patient is the
    file stem, the center ``"unknown"`` and the sequence ``sequence`` (or ``"unknown"``).
    ``ref_label_classes`` selects the foreground of multi-label references (e.g. BraTS).
    """
    pred_dir = _check_dir(pred_dir, "prediction folder")
    ref_dir = _check_dir(ref_dir, "reference folder")
    refs = _nifti_files(ref_dir)
    if not refs:
        raise ValueError(f"reference folder {ref_dir} holds no .nii.gz or .nii files")
    items = list(cohort_items or [])
    cases = []
    for ref in refs:
        stem = nifti_stem(ref.name)
        item = _match_item(stem, ref.name, items, sequence) if items else None
        item = item or {}
        classes = ref_label_classes if ref_label_classes is not None else (
            item.get("label_classes") if item.get("label") and Path(str(item["label"])).name == ref.name else None)
        cases.append(EvaluationCase(
            case_id=stem, patient_id=str(item.get("patient_id") or stem), pred_path=str(pred_dir / ref.name),
            ref_path=str(ref), sequence=str(item.get("sequence") or sequence or UNKNOWN),
            center=str(item.get("center") or UNKNOWN), image_path=item.get("image"),
            ref_label_classes=None if classes is None else tuple(int(c) for c in classes)))
    names = {ref.name for ref in refs}
    unpaired = [str(p) for p in _nifti_files(pred_dir) if p.name not in names]
    return Pairing(cases=cases, unpaired_predictions=unpaired)
