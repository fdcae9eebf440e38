"""A cohort through a :class:`~pipeline.inference.status_model.StatusModel`: what ``dmg status`` and ``dmg demo`` run.

:func:`predict_status` loads the cohort as ``dmg segment`` does (a manifest CSV, a datalist JSON or a
folder, :func:`pipeline.data.load_cohort` with ``strict=False``), refuses an output folder that holds the
cohort's own images or labels, predicts every patient (:func:`~pipeline.inference.status_cohort.predict_cohort_status`:
``predictions.csv`` and masks) and, when statuses are known, writes the report into ``OUT/report``
(:func:`~pipeline.inference.status_report.write_status_report`). Patients the cohort check already found
unusable for the sequence (a missing or unreadable image, a duplicate id) are listed as skipped with that
problem; a problem of a reference *label* does not stop a status prediction.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from evaluation.atomic_io import check_writable_folder
from pipeline.data.cohort import Cohort, load_cohort
from pipeline.inference.status_cohort import predict_cohort_status
from pipeline.inference.status_model import StatusModel
from pipeline.inference.status_report import StatusReport, write_status_report

__all__ = ["StatusPrediction", "cohort_folder", "predict_status", "status_items"]

REPORT_FOLDER = "report"


@dataclass
class StatusPrediction:
    """``predictions``: the table written to ``predictions.csv``; ``report``: None without known statuses."""

    predictions: pd.DataFrame
    report: StatusReport | None


def cohort_folder(cohort: Cohort) -> Path:
    """The folder a cohort source lives in (where a synthetic cohort keeps ``synth.json``)."""
    return cohort.source if cohort.source.is_dir() else cohort.source.parent


def status_items(cohort: Cohort, sequence: str, extra_sequences: Sequence[str] = ()) -> list[dict]:
    """One data dict per patient, in the cohort's order; a patient that cannot be predicted carries ``skip``
    (the problem) and, as ``image``, the file it is about. ``extra_sequences``: the other sequences the model
    reads (their files under their names; a patient lacking one is skipped)."""
    items = []
    for case in cohort.cases:
        pid = case["patient_id"]
        item = {"image": case.get(sequence), "patient_id": pid, "center": case["center"], "sequence": sequence,
                "h3k27m": case["h3k27m"], **{s: case.get(s) for s in extra_sequences}}
        read = (sequence, *extra_sequences)
        labels = {case.get(f"label_{s}") for s in read}
        blocking = [i for i in cohort.issues if i.patient_id == pid
                    and (i.sequence is None or (i.sequence in read and i.file not in labels))]
        absent = [s for s in read if case.get(s) is None]
        if blocking:
            item.update(image=blocking[0].file, skip="; ".join(i.problem for i in blocking))
        elif absent:
            item["skip"] = f"no {' or '.join(absent)} image in the cohort"
        items.append(item)
    return items


def _refuse_inputs_inside(out: Path, cohort: Cohort) -> None:
    folder = out.resolve()
    for case in cohort.cases:
        for key, value in case.items():
            if isinstance(value, str) and value and key != "patient_id" and os.path.isabs(value):
                path = Path(value).resolve()
                if path == folder or folder in path.parents:
                    raise ValueError(f"--out {out} holds the cohort's own files ({value}): masks are never written "
                                     "among them; choose another --out")


def predict_status(model: StatusModel, cohort: str | os.PathLike | Cohort, out_dir: str | os.PathLike,
                   report: bool = True, inputs: Mapping[str, str] | None = None,
                   progress: bool = True, resamples: int = 2000) -> StatusPrediction:
    """Predict every patient of ``cohort`` into ``out_dir`` and report on those with a known status
    (``resamples``: bootstrap draws for the metrics' CIs)."""
    if not isinstance(cohort, Cohort):
        cohort = load_cohort(cohort, strict=False, read_data=False, sequence=model.sequence, progress=progress)
    out = Path(out_dir)
    _refuse_inputs_inside(out, cohort)
    check_writable_folder(out)
    features: dict = {}
    table = predict_cohort_status(model.network, status_items(cohort, model.sequence, model.extra_sequences), out,
                                  spatial_size=model.spatial_size, threshold=model.threshold,
                                  center_crop_fraction=model.center_crop_fraction,
                                  extra_sequences=model.extra_sequences,
                                  sw_batch_size=model.sw_batch_size, min_tumour_pixels=model.min_tumour_pixels,
                                  progress=progress, temperature=model.temperature, features=features)
    written = None
    if report:
        written = write_status_report(
            table, out / REPORT_FOLDER, features, threshold=model.threshold, cohort_dir=cohort_folder(cohort),
            title=f"H3K27M status: {cohort.source.name}", resamples=resamples,
            inputs={**(inputs or {}), "temperature": f"{model.temperature:g}", "threshold": f"{model.threshold:g}"})
    return StatusPrediction(table, written)
