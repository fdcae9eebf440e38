"""Segment every patient of a cohort with a :class:`~pipeline.inference.model.SegmentationModel`.

Per patient, one of four outcomes (``segment_report.csv`` in the output folder):

* ``done``: segmented; ``<patient_id>_<sequence>_seg.nii.gz`` written atomically (temp file in the
  same folder, then ``os.replace``), uint8, on the input's shape and affine with its header
  (qform/sform codes, units, pixdim) and no intensity scaling;
* ``reused``: the output already exists and is a binary (0/1) integer NIfTI on the input's shape and
  affine (resume; any other file there is redone, the reason says why); ``overwrite=True`` redoes it. ``segment_model_<sequence>.json`` records which weights (SHA-256)
  and threshold made the masks of a folder; resuming with different ones is refused (a folder
  never mixes two models' masks) unless ``overwrite=True``;
* ``skipped``: the input cannot be used: a cohort problem found by ``load_cohort`` (missing or
  unreadable file, not 3D, ...), no image for the sequence, a float image with NaN or infinite
  values (as ``check-cohort`` reports them), or an image that fails to load or preprocess (truncated data);
* ``failed``: inference or writing failed for that patient (the run goes on).

The report is rewritten (atomically) after every patient, so an interrupted run leaves one; it has a
``sequence`` column, and the rows of the other sequences segmented into the same folder are kept.

The output folder (:mod:`pipeline.inference.output_folder`) must not hold the cohort's images or
reference labels, nor files ``dmg segment`` does not write; it is checked writable before any work,
and locked for the run. A DICOM series input is converted to a temporary NIfTI for the model; its
mask is a NIfTI on the series' grid. A full disk or read-only folder while writing stops the run
(:class:`OutputWriteError`); atomic writes leave nothing half-written.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from evaluation.atomic_io import check_writable_folder
from evaluation.image_io import is_dicom_series, load_image
from pipeline.data.cohort import AFFINE_TOLERANCE_MM, SEQUENCES, Cohort, CohortIssue, load_cohort
from pipeline.data.writers import atomic_write_text, save_nifti_gz
from pipeline.inference.model import SegmentationModel
from pipeline.inference.output_folder import OutputFolderLock, check_output_folder

__all__ = ["CaseResult", "CohortSegmenter", "OutputWriteError", "REPORT_NAME", "STATUSES", "SegmentationReport",
           "mask_image_like", "prediction_path"]

REPORT_NAME = "segment_report.csv"
MODEL_RECORD = "segment_model_{sequence}.json"
STATUSES = ("done", "reused", "skipped", "failed")
REPORT_COLUMNS = ("patient_id", "sequence", "status", "reason", "seconds", "image", "output")
logger = logging.getLogger(__name__)


class OutputWriteError(OSError):
    """Writing into the output folder failed (disk full, read-only, ...): the run stops."""


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
    other_rows: list[dict] = field(default_factory=list)  # rows of other sequences already in the report

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
        writer.writerows(self.other_rows)
        for result in self.results:
            writer.writerow({**asdict(result), "sequence": self.sequence, "seconds": f"{result.seconds:.3f}"})
        return atomic_write_text(self.report_file, buffer.getvalue())

    def keep_other_sequences(self) -> None:
        """Keep the rows of other sequences from an existing report (older reports: sequence from the output name)."""
        try:
            with open(self.report_file, newline="") as f:
                rows = list(csv.DictReader(f))
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(f"{self.report_file}: unreadable report ({exc}); delete it or choose another --out") \
                from exc
        for row in rows:
            sequence = row.get("sequence") or next(
                (s for s in SEQUENCES if str(row.get("output", "")).endswith(f"_{s}_seg.nii.gz")), "")
            if sequence and sequence != self.sequence:
                self.other_rows.append({k: row.get(k, "") for k in REPORT_COLUMNS} | {"sequence": sequence})


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


def _reuse_problem(path: Path, reference: nib.spatialimages.SpatialImage) -> str | None:
    """Why the existing ``path`` is not a mask of ``reference`` to resume with (None: reuse it)."""
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as exc:  # nibabel raises many types for a broken file
        return f"unreadable ({type(exc).__name__})"
    if tuple(data.shape) != tuple(reference.shape):
        return f"shape {tuple(data.shape)}, not the input's {tuple(reference.shape)}"
    if not np.allclose(img.affine, reference.affine, atol=AFFINE_TOLERANCE_MM):
        return "an affine other than the input's"
    if data.dtype.kind not in "uib" or not np.isin(data, (0, 1)).all():
        return f"not a binary mask ({data.dtype}, values other than 0/1)" if data.dtype.kind in "uib" \
            else f"not a binary mask ({data.dtype} data)"
    return None


def _cohort_files(cohort: Cohort) -> list[str]:
    return [case[key] for case in cohort.cases for seq in SEQUENCES for key in (seq, f"label_{seq}") if case.get(key)]


@contextlib.contextmanager
def _model_input(image_file: str, reference: nib.spatialimages.SpatialImage):
    """The file the model's preprocessing reads: the NIfTI itself, or a DICOM series as a temporary NIfTI."""
    if not is_dicom_series(image_file):
        yield image_file
        return
    with tempfile.TemporaryDirectory(prefix="dmg_dicom_") as tmp:
        path = Path(tmp) / "series.nii.gz"
        nib.save(reference, str(path))
        yield str(path)


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
        check_output_folder(self.output_dir, _cohort_files(cohort))
        check_writable_folder(self.output_dir)
        with OutputFolderLock(self.output_dir):
            check_output_folder(self.output_dir, _cohort_files(cohort))  # again, now that no other run writes
            return self._run_locked(cohort)

    def _run_locked(self, cohort: Cohort) -> SegmentationReport:
        self.check_model_record()
        report = SegmentationReport(self.sequence, self.output_dir)
        report.keep_other_sequences()
        start = time.perf_counter()
        bar = tqdm(cohort.cases, desc=f"segmenting {self.sequence}", unit="patient", disable=not self.progress)
        try:
            for case in bar:
                bar.set_postfix_str(str(case.get("patient_id", "")), refresh=False)
                report.results.append(self.segment_case(cohort, case))
                report.seconds = time.perf_counter() - start
                report.write_csv()
        except OutputWriteError:
            bar.close()
            try:
                report.write_csv()
            except OSError:
                pass  # the disk is full or read-only: the report of the last patient stays
            raise
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
            reference = load_image(image_file)
        except Exception as exc:
            return finish("skipped", f"unreadable image ({_reason(exc)})")
        redo = ""
        if not self.overwrite and output.exists():
            problem = _reuse_problem(output, reference)
            if problem is None:
                return finish("reused")
            redo = f"redone: the existing mask was {problem}"
        try:
            if reference.get_data_dtype().kind == "f" and not np.isfinite(np.asanyarray(reference.dataobj)).all():
                return finish("skipped", "image contains NaN or infinite values")
            with _model_input(image_file, reference) as model_input:
                data = self.model.preprocess(model_input, patient_id=pid)
        except Exception as exc:
            return finish("skipped", f"cannot read or preprocess the image ({_reason(exc)})")
        try:
            mask, affine = self.model.predict(data)
            if affine is not None and not np.allclose(affine, reference.affine, atol=AFFINE_TOLERANCE_MM):
                raise ValueError("the inverted prediction's affine differs from the input's")
            image = mask_image_like(mask, reference)
        except Exception as exc:
            return finish("failed", _reason(exc))
        try:
            save_nifti_gz(output, image)
        except OSError as exc:  # disk full, read-only: every other patient would fail the same way
            raise OutputWriteError(exc.errno, exc.strerror, str(output)) from exc
        return finish("done", redo)
