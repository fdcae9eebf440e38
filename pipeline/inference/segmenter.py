"""Segment every patient of a cohort with a :class:`~pipeline.inference.model.SegmentationModel`.

Per patient, one of four outcomes (``segment_report.csv`` in the output folder):

* ``done``: segmented; ``<patient_id>_<sequence>_seg.nii.gz`` written atomically (temp file in the
  same folder, then ``os.replace``), uint8, on the input's shape and affine with its header
  (qform/sform codes, units, pixdim) and no intensity scaling;
* ``reused``: the output already exists and is a readable NIfTI of the input's shape (resume);
  ``overwrite=True`` redoes it. ``segment_model_<sequence>.json`` records which weights (SHA-256)
  and threshold made the masks of a folder; resuming with different ones is refused (a folder
  never mixes two models' masks) unless ``overwrite=True``;
* ``skipped``: the input cannot be used: a cohort problem found by ``load_cohort`` (missing or
  unreadable file, not 3D, ...), no image for the sequence, a float image with NaN or infinite
  values (as ``check-cohort`` reports them), or an image that fails to load or preprocess (truncated data);
* ``failed``: inference or writing failed for that patient (the run goes on).

The report is rewritten (atomically) after every patient, so an interrupted run leaves one.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from pipeline.data.cohort import AFFINE_TOLERANCE_MM, Cohort, CohortIssue, load_cohort
from pipeline.data.writers import atomic_write_text, save_nifti_gz
from pipeline.inference.model import SegmentationModel

__all__ = ["CaseResult", "CohortSegmenter", "REPORT_NAME", "STATUSES", "SegmentationReport", "mask_image_like",
           "prediction_path"]

REPORT_NAME = "segment_report.csv"
MODEL_RECORD = "segment_model_{sequence}.json"
STATUSES = ("done", "reused", "skipped", "failed")
REPORT_COLUMNS = ("patient_id", "status", "reason", "seconds", "image", "output")
logger = logging.getLogger(__name__)


@dataclass
class CaseResult:
    """What happened to one patient (a row of ``segment_report.csv``)."""

    patient_id: str
    status: str
    reason: str = ""
    seconds: float = 0.0
    image: str = ""
    output: str = ""


@dataclass
class SegmentationReport:
    """Results of one cohort run, in cohort order."""

    sequence: str
    output_dir: Path
    results: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def counts(self) -> Counter:
        return Counter(r.status for r in self.results)

    @property
    def ok(self) -> bool:
        """At least one patient has a mask (segmented now or reused)."""
        return self.counts["done"] + self.counts["reused"] > 0

    @property
    def problems(self) -> list[CaseResult]:
        return [r for r in self.results if r.status in ("skipped", "failed")]

    @property
    def report_file(self) -> Path:
        return self.output_dir / REPORT_NAME

    def summary(self) -> str:
        c = self.counts
        return (f"{self.sequence}: {c['done']} segmented, {c['reused']} reused, {c['skipped']} skipped, "
                f"{c['failed']} failed of {len(self.results)} patients in {self.seconds:.1f} s; "
                f"masks and {REPORT_NAME} in {self.output_dir}")

    def write_csv(self) -> Path:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for result in self.results:
            writer.writerow({**asdict(result), "seconds": f"{result.seconds:.3f}"})
        return atomic_write_text(self.report_file, buffer.getvalue())


def prediction_path(output_dir: str | os.PathLike, patient_id: str, sequence: str) -> Path:
    """``<output_dir>/<patient_id>_<sequence>_seg.nii.gz`` (the project's prediction naming)."""
    return Path(output_dir) / f"{patient_id}_{sequence}_seg.nii.gz"


def mask_image_like(mask: np.ndarray, reference: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    """uint8 NIfTI of ``mask`` with ``reference``'s affine and, for a NIfTI reference, its header: same
    qform/sform (and codes), pixdim, units and dim_info; scaling reset (slope 1, intercept 0), intent label."""
    mask = np.asarray(mask, dtype=np.uint8)
    if tuple(mask.shape) != tuple(reference.shape):
        raise ValueError(f"mask shape {mask.shape} differs from the input's {tuple(reference.shape)}")
    if not isinstance(reference, nib.Nifti1Image):  # Nifti2Image is a subclass
        img = nib.Nifti1Image(mask, reference.affine)
        img.set_qform(reference.affine, code=1)
        img.set_sform(reference.affine, code=1)
        return img
    header = reference.header.copy()
    img = type(reference)(mask, reference.affine, header=header)
    hdr = img.header
    hdr.set_data_dtype(np.uint8)
    hdr.set_slope_inter(1.0, 0.0)
    img.set_qform(reference.get_qform(), code=int(reference.header["qform_code"]))
    img.set_sform(reference.get_sform(), code=int(reference.header["sform_code"]))
    hdr.set_intent("label", (), name="")
    hdr["cal_min"], hdr["cal_max"] = 0, 1
    hdr["descrip"] = b"dmg segment mask"
    return img


def _reason(exc: BaseException) -> str:
    """The innermost cause (MONAI wraps transform errors in 'applying transform ...'), on one line."""
    root = exc
    while root.__cause__ is not None and root.__cause__ is not root:
        root = root.__cause__
    text = " ".join(str(root).split())
    return f"{type(root).__name__}: {text[:300]}" if text else type(root).__name__


def _readable_mask(path: Path, shape: tuple[int, ...]) -> bool:
    if not path.is_file():
        return False
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception:  # nibabel raises many types for a broken file
        return False
    return tuple(data.shape) == tuple(shape)


class CohortSegmenter:
    """Run a :class:`SegmentationModel` over a cohort, resumably, writing masks and ``segment_report.csv``."""

    def __init__(self, model: SegmentationModel, output_dir: str | os.PathLike, overwrite: bool = False,
                 progress: bool = True) -> None:
        self.model = model
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        self.progress = progress

    @property
    def sequence(self) -> str:
        return self.model.sequence

    def output_path(self, patient_id: str) -> Path:
        return prediction_path(self.output_dir, patient_id, self.sequence)

    def blocking_issues(self, cohort: Cohort, case: dict) -> list[CohortIssue]:
        """Problems that stop this patient's segmentation: case-level ones and those of this sequence's image
        (a bad reference *label* does not matter for inference)."""
        label = case.get(f"label_{self.sequence}")
        return [i for i in cohort.issues if i.patient_id == case["patient_id"]
                and (i.sequence is None or (i.sequence == self.sequence and i.file != label))]

    def run(self, cohort: str | os.PathLike | Cohort) -> SegmentationReport:
        """Segment every patient of ``cohort`` (a source for ``load_cohort`` or a loaded :class:`Cohort`)."""
        if not isinstance(cohort, Cohort):
            cohort = load_cohort(cohort, strict=False, read_data=False, sequence=self.sequence,
                                 progress=self.progress)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.check_model_record()
        report = SegmentationReport(self.sequence, self.output_dir)
        start = time.perf_counter()
        bar = tqdm(cohort.cases, desc=f"segmenting {self.sequence}", unit="patient", disable=not self.progress)
        try:
            for case in bar:
                bar.set_postfix_str(str(case.get("patient_id", "")), refresh=False)
                report.results.append(self.segment_case(cohort, case))
                report.seconds = time.perf_counter() - start
                report.write_csv()
        finally:
            bar.close()
            report.seconds = time.perf_counter() - start
            report.write_csv()
        return report

    def model_record(self) -> dict:
        """What identifies the masks this segmenter writes: the weights' SHA-256 and the threshold."""
        from pipeline.bundle_sharing.checksums import sha256_file

        return {"sequence": self.sequence, "model_file": str(Path(self.model.model_file).resolve()),
                "sha256": sha256_file(self.model.model_file), "threshold": self.model.threshold}

    def check_model_record(self) -> None:
        """Refuse to resume a folder whose masks another model made; record this model otherwise."""
        path = self.output_dir / MODEL_RECORD.format(sequence=self.sequence)
        record = self.model_record()
        if path.is_file() and not self.overwrite:
            try:
                previous = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"{path}: unreadable model record ({exc}); delete it or pass --overwrite") from exc
            if (previous.get("sha256"), previous.get("threshold")) != (record["sha256"], record["threshold"]):
                raise ValueError(
                    f"{self.output_dir} holds {self.sequence} masks made by {previous.get('model_file')} "
                    f"(sha256 {str(previous.get('sha256'))[:12]}, threshold {previous.get('threshold')}), not by "
                    f"{record['model_file']} (sha256 {record['sha256'][:12]}, threshold {record['threshold']}): "
                    "pass --overwrite to redo them, or choose another --out")
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")

    def segment_case(self, cohort: Cohort, case: dict) -> CaseResult:
        """Segment one patient dict of ``cohort`` (never raises for a per-patient problem)."""
        start = time.perf_counter()
        pid, image_file = case["patient_id"], case.get(self.sequence)
        output = self.output_path(pid)
        result = CaseResult(pid, "skipped", image=image_file or "", output=str(output))

        def finish(status: str, reason: str = "") -> CaseResult:
            result.status, result.reason, result.seconds = status, reason, time.perf_counter() - start
            if status in ("skipped", "failed"):
                result.output = ""
                logger.debug("%s %s: %s", status, pid, reason)
            return result

        issues = self.blocking_issues(cohort, case)
        if issues:
            result.image = issues[0].file if issues[0].file != "-" else result.image
            return finish("skipped", "; ".join(i.problem for i in issues))
        if image_file is None:
            return finish("skipped", f"no {self.sequence} image in the cohort")
        try:
            reference = nib.load(image_file)
            shape = tuple(reference.shape)
        except Exception as exc:
            return finish("skipped", f"unreadable image ({_reason(exc)})")
        if not self.overwrite and _readable_mask(output, shape):
            return finish("reused")
        try:
            if reference.get_data_dtype().kind == "f" and not np.isfinite(np.asanyarray(reference.dataobj)).all():
                return finish("skipped", "image contains NaN or infinite values")
            data = self.model.preprocess(image_file, patient_id=pid)
        except Exception as exc:
            return finish("skipped", f"cannot read or preprocess the image ({_reason(exc)})")
        try:
            mask, affine = self.model.predict(data)
            if affine is not None and not np.allclose(affine, reference.affine, atol=AFFINE_TOLERANCE_MM):
                raise ValueError("the inverted prediction's affine differs from the input's")
            save_nifti_gz(output, mask_image_like(mask, reference))
        except Exception as exc:
            return finish("failed", _reason(exc))
        return finish("done")
