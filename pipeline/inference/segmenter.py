"""Segment every patient of a cohort with one :class:`~pipeline.inference.model.SegmentationModel` per sequence.

One run segments every sequence it has a model for (``dmg segment --sequence t2 flair t1c``: one process,
each model loaded once), sequence after sequence. Per patient and sequence, one of four outcomes
(``segment_report.csv`` in the output folder):

* ``done``: segmented; ``<patient_id>_<sequence>_seg.nii.gz`` written atomically (temp file in the
  same folder, then ``os.replace``), uint8, on the input's shape and affine with its header
  (qform/sform codes, units, pixdim) and no intensity scaling;
* ``reused``: the output already exists and is a binary (0/1) integer NIfTI on the input's shape and
  affine (resume; any other file there is redone, the reason says why); ``overwrite=True`` redoes it.
  ``segment_model_<sequence>.json`` records which weights (SHA-256) and threshold made the masks of a
  folder; resuming with different ones is refused (a folder never mixes two models' masks) unless
  ``overwrite=True``; with several sequences, every record is checked before any is written;
* ``skipped``: the input cannot be used: a cohort problem found by ``load_cohort`` (missing or
  unreadable file, not 3D, ...), no image for the sequence, a float image with NaN or infinite
  values (as ``check-cohort`` reports them), or an image that fails to load or preprocess (truncated data);
* ``failed``: inference or writing failed for that patient (the run goes on).

The report is rewritten (atomically) after every patient, so an interrupted run leaves one; it is one
table for all sequences (a ``sequence`` column), and the rows of other sequences segmented into the same
folder by earlier runs are kept.

The output folder (:mod:`pipeline.inference.output_folder`) must not hold the cohort's images or
reference labels, nor files ``dmg segment`` does not write; it is checked writable before any work,
and locked for the run. A DICOM series input is converted to a temporary NIfTI for the model; its
mask is a NIfTI on the series' grid. A full disk or read-only folder while writing stops the run
(:class:`OutputWriteError`); atomic writes leave nothing half-written.

Stages overlap (:mod:`pipeline.inference.prefetch`, ``overlap=True``): the next patient is loaded and
preprocessed in a background thread while this one is inferred (across sequences too: the first patient
of the next sequence while the last of this one is inferred), and masks are written in another;
``load_s``, ``infer_s`` and ``write_s`` in the report are each patient's stage times (``seconds`` their
sum). Under ``torchrun`` (:mod:`pipeline.inference.distributed`) each rank segments every sequence of
its own patients and writes their masks; rank 0 checks and locks the folder, records the models and
writes the report of all patients.
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
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from tqdm.auto import tqdm

from evaluation.atomic_io import check_writable_folder
from evaluation.image_io import is_dicom_series, load_image
from pipeline.checkpoint_io import sha256_file
from pipeline.data.cohort import AFFINE_TOLERANCE_MM, SEQUENCES, Cohort, CohortIssue, load_cohort
from pipeline.data.writers import atomic_write_text, save_nifti_gz
from pipeline.inference.distributed import CohortRanks
from pipeline.inference.model import SegmentationModel
from pipeline.inference.prefetch import BackgroundWriter, prefetched
from pipeline.inference.output_folder import OutputFolderLock, check_output_folder
from transforms.vocabulary import prediction_file_name, prediction_sequence

__all__ = ["CaseResult", "CohortSegmenter", "OutputWriteError", "REPORT_NAME", "STATUSES", "SegmentationReport",
           "mask_image_like", "prediction_path"]

REPORT_NAME = "segment_report.csv"
MODEL_RECORD = "segment_model_{sequence}.json"
STATUSES = ("done", "reused", "skipped", "failed")
REPORT_COLUMNS = ("patient_id", "sequence", "status", "reason", "seconds", "load_s", "infer_s", "write_s", "image",
                  "output")
STAGE_COLUMNS = ("load_s", "infer_s", "write_s")
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
    load_s: float = 0.0
    infer_s: float = 0.0
    write_s: float = 0.0
    sequence: str = ""


@dataclass
class PreparedCase:
    """A patient after the load stage: its result so far and, when it is to be segmented, the model's input."""

    result: CaseResult
    data: dict | None = None
    reference: nib.spatialimages.SpatialImage | None = None
    redo: str = ""


@dataclass
class SegmentationReport:
    """Results of one cohort run, sequence after sequence, each in cohort order."""

    sequences: tuple[str, ...]
    output_dir: Path
    results: list[CaseResult] = field(default_factory=list)
    seconds: float = 0.0
    sequence_ends: dict[str, float] = field(default_factory=dict)  # seconds into the run of each one's last result
    other_rows: list[dict] = field(default_factory=list)  # rows of other sequences already in the report

    @property
    def counts(self) -> Counter:
        return Counter(r.status for r in self.results)

    def counts_of(self, sequence: str) -> Counter:
        return Counter(r.status for r in self.results if r.sequence == sequence)

    @property
    def ok(self) -> bool:
        """Every sequence has at least one patient with a mask (segmented now or reused)."""
        return all(c["done"] + c["reused"] > 0 for c in map(self.counts_of, self.sequences))

    @property
    def problems(self) -> list[CaseResult]:
        return [r for r in self.results if r.status in ("skipped", "failed")]

    @property
    def report_file(self) -> Path:
        return self.output_dir / REPORT_NAME

    def summary(self) -> str:
        """One line per sequence (with several, each one's part of the run time, then the whole run's)."""
        lines = []
        for sequence in self.sequences:
            c = self.counts_of(sequence)
            seconds = self.seconds if len(self.sequences) == 1 else self.sequence_seconds[sequence]
            lines.append(f"{sequence}: {c['done']} segmented, {c['reused']} reused, {c['skipped']} skipped, "
                         f"{c['failed']} failed of {sum(c.values())} patients in {seconds:.1f} s; "
                         f"masks and {REPORT_NAME} in {self.output_dir}")
        if len(self.sequences) > 1:
            lines.append(f"{len(self.sequences)} sequences in {self.seconds:.1f} s")
        return "\n".join(lines)

    @property
    def sequence_seconds(self) -> dict[str, float]:
        """Wall seconds of each sequence's part of the run: from the end of the previous one's to its last result."""
        parts, previous = {}, 0.0
        for sequence in self.sequences:
            end = self.sequence_ends.get(sequence, previous)
            parts[sequence], previous = max(0.0, end - previous), max(previous, end)
        return parts

    def add(self, results: list[CaseResult], seconds: float) -> None:
        """Add finished results, ``seconds`` into the run."""
        self.results.extend(results)
        self.seconds = seconds
        for result in results:
            self.sequence_ends[result.sequence] = seconds

    def write_csv(self) -> Path:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=REPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.other_rows)
        for result in self.results:
            writer.writerow({**asdict(result), "seconds": f"{result.seconds:.3f}",
                             **{k: f"{getattr(result, k):.3f}" for k in STAGE_COLUMNS}})
        return atomic_write_text(self.report_file, buffer.getvalue())

    def keep_other_sequences(self) -> None:
        """Keep the rows of the sequences not run now from an existing report (older reports: sequence from the
        output name)."""
        try:
            with open(self.report_file, newline="") as f:
                rows = list(csv.DictReader(f))
        except FileNotFoundError:
            return
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(f"{self.report_file}: unreadable report ({exc}); delete it or choose another --out") \
                from exc
        for row in rows:
            sequence = row.get("sequence") or prediction_sequence(str(row.get("output", ""))) or ""
            if sequence and sequence not in self.sequences:
                self.other_rows.append({k: row.get(k, "") for k in REPORT_COLUMNS} | {"sequence": sequence})


def prediction_path(output_dir: str | os.PathLike, patient_id: str, sequence: str) -> Path:
    """``<output_dir>/<patient_id>_<sequence>_seg.nii.gz`` (the project's prediction naming)."""
    return Path(output_dir) / prediction_file_name(patient_id, sequence)


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
def _model_input(image_file: str, reference: nib.spatialimages.SpatialImage | None = None):
    """The file the model's preprocessing reads: the NIfTI itself, or a DICOM series as a temporary NIfTI
    (``reference``: the series as already loaded; read here only when it is a series and not given)."""
    if not is_dicom_series(image_file):
        yield image_file
        return
    with tempfile.TemporaryDirectory(prefix="dmg_dicom_") as tmp:
        path = Path(tmp) / "series.nii.gz"
        nib.save(reference if reference is not None else load_image(image_file), str(path))
        yield str(path)


class CohortSegmenter:
    """Run one :class:`SegmentationModel` per sequence over a cohort, resumably, writing masks and
    ``segment_report.csv``. ``models``: one model, or several for different sequences (run in that order)."""

    def __init__(self, models: SegmentationModel | Sequence[SegmentationModel], output_dir: str | os.PathLike,
                 overwrite: bool = False, progress: bool = True, overlap: bool = True,
                 ranks: CohortRanks | None = None) -> None:
        models = list(models) if isinstance(models, (list, tuple)) else [models]
        if not models:
            raise ValueError("no model to segment with")
        self.models = {model.sequence: model for model in models}
        if len(self.models) != len(models):
            raise ValueError(f"one model per sequence, got {[m.sequence for m in models]}")
        self.output_dir = Path(output_dir)
        self.overwrite = overwrite
        self.progress = progress
        self.overlap = overlap
        self.ranks = ranks if ranks is not None else CohortRanks.from_environment()

    @property
    def sequences(self) -> tuple[str, ...]:
        return tuple(self.models)

    def output_path(self, patient_id: str, sequence: str) -> Path:
        return prediction_path(self.output_dir, patient_id, sequence)

    @staticmethod
    def blocking_issues(cohort: Cohort, case: dict, sequence: str) -> list[CohortIssue]:
        """Problems that stop this patient's segmentation of ``sequence``: case-level ones and those of that
        sequence's image (a bad reference *label* does not matter for inference)."""
        label = case.get(f"label_{sequence}")
        return [i for i in cohort.issues if i.patient_id == case["patient_id"]
                and (i.sequence is None or (i.sequence == sequence and i.file != label))]

    def run(self, cohort: str | os.PathLike | Cohort) -> SegmentationReport:
        """Segment every patient of ``cohort`` (a source for ``load_cohort`` or a loaded :class:`Cohort`)."""
        if not isinstance(cohort, Cohort):
            single = self.sequences[0] if len(self.sequences) == 1 else None  # names Decathlon image/label items
            cohort = load_cohort(cohort, strict=False, read_data=False, sequence=single, progress=self.progress)
        with contextlib.ExitStack() as stack:
            def start() -> None:  # rank 0 only under torchrun; the other ranks wait for it
                check_output_folder(self.output_dir, _cohort_files(cohort))
                check_writable_folder(self.output_dir)
                stack.enter_context(OutputFolderLock(self.output_dir))
                check_output_folder(self.output_dir, _cohort_files(cohort))  # again, now that no other run writes
                records = {sequence: self.checked_model_record(sequence) for sequence in self.sequences}
                for sequence, record in records.items():  # all checked before any is written
                    atomic_write_text(self.model_record_path(sequence), json.dumps(record, indent=2) + "\n")

            self.ranks.on_main(start)
            return self._run_locked(cohort)

    def _run_locked(self, cohort: Cohort) -> SegmentationReport:
        ranks = self.ranks
        report = SegmentationReport(self.sequences, self.output_dir)
        if ranks.is_main:
            report.keep_other_sequences()
        order = [(sequence, c["patient_id"]) for sequence in self.sequences for c in cohort.cases]
        start = time.perf_counter()
        cases = ranks.shard(cohort.cases)  # each rank its own patients, every sequence of them
        if ranks.distributed:
            logger.info("rank %d of %d: %d of %d patients", ranks.rank, ranks.world_size, len(cases),
                        len(cohort.cases))
        items = [(sequence, case) for sequence in self.sequences for case in cases]
        bar = tqdm(total=len(items), desc=f"segmenting {', '.join(self.sequences)}", unit="patient",
                   disable=not self.progress)
        writer = BackgroundWriter(enabled=self.overlap)

        def record(results: list[CaseResult]) -> None:
            report.add(results, time.perf_counter() - start)
            bar.update(len(results))
            if results and ranks.is_main:
                report.write_csv()

        try:  # the next item is prepared while this one is inferred, across sequences too
            for (_, case), prepared, _ in prefetched(items, lambda item: self.prepare_case(cohort, item[1], item[0]),
                                                     depth=1 if self.overlap else 0):
                bar.set_postfix_str(str(case.get("patient_id", "")), refresh=False)
                image = self.infer_case(prepared)
                if image is None:
                    record([prepared.result])
                else:
                    writer.submit(self.write_case, prepared, image)
                record(writer.collect())
            record(writer.wait())
        except OutputWriteError:
            bar.close()
            report.results.extend(writer.finished())  # masks written before the failed one
            if ranks.is_main:
                try:
                    report.write_csv()
                except OSError:
                    pass  # the disk is full or read-only: the report of the last patient stays
            raise
        finally:
            writer.close()
            bar.close()
        report.results = ranks.gather(report.results, key=lambda r: (r.sequence, r.patient_id), order=order)
        report.seconds = time.perf_counter() - start
        if ranks.is_main:
            report.write_csv()
        return report

    def model_record(self, sequence: str) -> dict:
        """What identifies the ``sequence`` masks this segmenter writes: the weights' SHA-256 and the threshold."""
        model = self.models[sequence]
        return {"sequence": sequence, "model_file": str(Path(model.model_file).resolve()),
                "sha256": sha256_file(model.model_file), "threshold": model.threshold}

    def model_record_path(self, sequence: str) -> Path:
        return self.output_dir / MODEL_RECORD.format(sequence=sequence)

    def checked_model_record(self, sequence: str) -> dict:
        """This run's record of the ``sequence`` model; refuses to resume a folder whose masks another model made."""
        path = self.model_record_path(sequence)
        record = self.model_record(sequence)
        if path.is_file() and not self.overwrite:
            try:
                previous = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"{path}: unreadable model record ({exc}); delete it or pass --overwrite") from exc
            if (previous.get("sha256"), previous.get("threshold")) != (record["sha256"], record["threshold"]):
                raise ValueError(
                    f"{self.output_dir} holds {sequence} masks made by {previous.get('model_file')} "
                    f"(sha256 {str(previous.get('sha256'))[:12]}, threshold {previous.get('threshold')}), not by "
                    f"{record['model_file']} (sha256 {record['sha256'][:12]}, threshold {record['threshold']}): "
                    "pass --overwrite to redo them, or choose another --out")
        return record

    @staticmethod
    def _finish(result: CaseResult, status: str, reason: str = "") -> CaseResult:
        result.status, result.reason = status, reason
        result.seconds = result.load_s + result.infer_s + result.write_s
        if status in ("skipped", "failed"):
            result.output = ""
            logger.debug("%s %s: %s", status, result.patient_id, reason)
        return result

    def prepare_case(self, cohort: Cohort, case: dict, sequence: str) -> PreparedCase:
        """Load stage of ``sequence``: checks, resume, load and preprocess; ``data`` is ``None`` when the result is
        final."""
        start = time.perf_counter()
        pid, image_file = case["patient_id"], case.get(sequence)
        output = self.output_path(pid, sequence)
        result = CaseResult(pid, "skipped", image=image_file or "", output=str(output), sequence=sequence)
        prepared = PreparedCase(result)

        def finish(status: str, reason: str = "") -> PreparedCase:
            result.load_s = time.perf_counter() - start
            self._finish(result, status, reason)
            return prepared

        issues = self.blocking_issues(cohort, case, sequence)
        if issues:
            result.image = issues[0].file if issues[0].file != "-" else result.image
            return finish("skipped", "; ".join(i.problem for i in issues))
        if image_file is None:
            return finish("skipped", f"no {sequence} image in the cohort")
        try:
            reference = load_image(image_file)
        except Exception as exc:
            return finish("skipped", f"unreadable image ({_reason(exc)})")
        if not self.overwrite and output.exists():
            problem = _reuse_problem(output, reference)
            if problem is None:
                return finish("reused")
            prepared.redo = f"redone: the existing mask was {problem}"
        try:
            if reference.get_data_dtype().kind == "f" and not np.isfinite(np.asanyarray(reference.dataobj)).all():
                return finish("skipped", "image contains NaN or infinite values")
            with _model_input(image_file, reference) as model_input:
                prepared.data = self.models[sequence].preprocess(model_input, patient_id=pid)
        except Exception as exc:
            return finish("skipped", f"cannot read or preprocess the image ({_reason(exc)})")
        prepared.reference = reference
        result.load_s = time.perf_counter() - start
        return prepared

    def infer_case(self, prepared: PreparedCase) -> nib.Nifti1Image | None:
        """Inference stage: the mask image on the input's grid, or ``None`` (result final: failed or not to do)."""
        if prepared.data is None:
            return None
        start = time.perf_counter()
        result, reference = prepared.result, prepared.reference
        try:
            mask, affine = self.models[result.sequence].predict(prepared.data)
            if affine is not None and not np.allclose(affine, reference.affine, atol=AFFINE_TOLERANCE_MM):
                raise ValueError("the inverted prediction's affine differs from the input's")
            image = mask_image_like(mask, reference)
        except Exception as exc:
            result.infer_s = time.perf_counter() - start
            self._finish(result, "failed", _reason(exc))
            return None
        finally:
            prepared.data = None  # free the preprocessed volume
        result.infer_s = time.perf_counter() - start
        return image

    def write_case(self, prepared: PreparedCase, image: nib.Nifti1Image) -> CaseResult:
        """Write stage: the mask, atomically; a disk error stops the run (:class:`OutputWriteError`)."""
        start = time.perf_counter()
        result = prepared.result
        try:
            save_nifti_gz(result.output, image)
        except OSError as exc:  # disk full, read-only: every other patient would fail the same way
            raise OutputWriteError(exc.errno, exc.strerror, str(result.output)) from exc
        result.write_s = time.perf_counter() - start
        return self._finish(result, "done", prepared.redo)
