"""A cohort's (patient, sequence) pairs as the plain dicts :mod:`evaluation.pairing` takes.

``evaluation`` never imports ``pipeline``, so the commands that evaluate a cohort (``dmg evaluate``,
``dmg demo``) translate a :class:`pipeline.data.cohort.Cohort` here.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.data.cohort import Cohort

__all__ = ["all_label_items", "labelled_items"]


def labelled_items(cohort: Cohort, sequences: Iterable[str]) -> tuple[list[dict], list[dict], list[str]]:
    """The labelled items, the cohort's problems for these sequences (failed cases) and the patients that
    have an image but no reference label (not evaluated, only listed)."""
    items, failures, unlabeled = [], [], []
    for seq in sequences:
        for d in cohort.datalist(seq):
            if d.get("label") is None:
                unlabeled.append(d["patient_id"])
                continue
            items.append({"patient_id": d["patient_id"], "center": d["center"], "sequence": seq, "label": d["label"],
                          "image": d["image"], "label_classes": d["label_classes"]})
        centers = {c["patient_id"]: c.get("center") for c in cohort.cases}
        for issue in cohort.issues:
            if issue.sequence not in (None, seq) or issue.patient_id == "-":
                continue
            case = next((c for c in cohort.cases if c["patient_id"] == issue.patient_id), {})
            if issue.sequence is None and case.get(seq) is None and case.get(f"label_{seq}") is None:
                continue  # a patient-level problem of a patient without this sequence
            failures.append({"patient_id": issue.patient_id, "sequence": seq, "center": centers.get(issue.patient_id),
                             "file": issue.file, "reason": f"cohort: {issue.problem}",
                             "label": case.get(f"label_{seq}"), "image": case.get(seq)})
    return items, failures, unlabeled


def all_label_items(cohort: Cohort, sequences: Iterable[str]) -> list[dict]:
    """Every labelled (patient, sequence) of a cohort, usable or not: for center/image lookup in folder mode."""
    return [{"patient_id": c["patient_id"], "center": c["center"], "sequence": seq, "label": c.get(f"label_{seq}"),
             "image": c.get(seq), "label_classes": c.get(f"label_classes_{seq}")}
            for c in cohort.cases for seq in sequences if c.get(f"label_{seq}") or c.get(seq)]
