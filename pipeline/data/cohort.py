"""Cohort loading: manifest CSV, MONAI/Decathlon datalist JSON or BraTS 2021 folder -> MONAI data dicts.

Every source becomes a list of *patient* dicts with the manifest's keys
(``patient_id, center, t1c, t2, flair, label_t1c, label_t2, label_flair, h3k27m``;
absolute paths or ``None``) plus ``label_classes_<seq>``: the label values that count as
tumour for that sequence (``[1]`` for binary masks; BraTS: T1C = enhancing tumour ``[4]``,
T2/FLAIR = whole tumour ``[1, 2, 4]``) and ``label_values``: the values a label file may
hold (``[0, 1]``; BraTS ``[0, 1, 2, 4]``).

An image or label cell may name a NIfTI file or a DICOM series folder (read with SimpleITK by
:func:`evaluation.image_io.load_image`, on the series' own grid).

Everything is validated up front (missing file, unreadable NIfTI, non-3D image,
image/label shape or affine mismatch, label values outside the allowed set, bad status,
duplicate ids).  ``strict=True`` raises :class:`CohortError` listing every problem;
``strict=False`` keeps going and reports the problems in :attr:`Cohort.issues`, dropping
only what is affected: one sequence of a patient, or the whole patient for case-level
problems (an OS error such as a symlink loop in one patient's path is such a problem, not the
cohort's).  :meth:`Cohort.datalist` then yields the per-sequence dicts that the
transforms consume (``image``, ``label``, ``label_classes``, ``patient_id``, ``center``,
``sequence``, ``h3k27m``).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from evaluation.image_io import ImageReadError, load_image
from transforms.vocabulary import SEQUENCES, nifti_stem  # noqa: F401  (nifti_stem: part of this module's API)

MANIFEST_COLUMNS: tuple[str, ...] = (
    "patient_id", "center", *SEQUENCES, *(f"label_{s}" for s in SEQUENCES), "h3k27m",
)
BRATS_SUFFIXES = {"t1c": "t1ce", "t2": "t2", "flair": "flair"}
BRATS_LABEL_CLASSES = {"t1c": [4], "t2": [1, 2, 4], "flair": [1, 2, 4]}
BINARY_CLASSES = [1]
BINARY_VALUES = [0, 1]
BRATS_VALUES = [0, 1, 2, 4]
UNKNOWN_STATUS = -1
AFFINE_TOLERANCE_MM = 1e-3
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_DECATHLON_MODALITY = {"flair": "flair", "t2-flair": "flair", "t2": "t2", "t2w": "t2",
                       "t1c": "t1c", "t1ce": "t1c", "t1gd": "t1c", "t1-gd": "t1c", "t1c+": "t1c"}


@dataclass(frozen=True)
class CohortIssue:
    """One problem found while loading a cohort; ``sequence=None`` means the whole patient."""

    patient_id: str
    file: str
    problem: str
    sequence: str | None = None

    def __str__(self) -> str:
        where = f"patient {self.patient_id!r}" + (f", {self.sequence}" if self.sequence else "")
        return f"{where}: {self.file}: {self.problem}"


class CohortError(ValueError):
    """Raised in strict mode; ``issues`` holds every problem found, not only the first."""

    def __init__(self, source: str | os.PathLike, issues: Sequence[CohortIssue]):
        self.issues = list(issues)
        if len(self.issues) == 1 and self.issues[0].patient_id == "-":  # a problem of the source itself
            super().__init__(f"{source}: {self.issues[0].problem}")
            return
        lines = "\n  ".join(str(i) for i in self.issues)
        super().__init__(f"{source}: {len(self.issues)} problem(s) in the cohort:\n  {lines}")


@dataclass
class Cohort:
    """Validated patients of one cohort source, with the problems that were skipped."""

    source: Path
    cases: list[dict]
    issues: list[CohortIssue] = field(default_factory=list)

    def usable(self, case: dict, sequence: str) -> bool:
        """Whether ``case`` has a valid image for ``sequence``."""
        if case.get(sequence) is None:
            return False
        return not any(i.patient_id == case["patient_id"] and i.sequence in (None, sequence) for i in self.issues)

    def datalist(self, sequence: str, require_label: bool = False) -> list[dict]:
        """Per-sequence MONAI data dicts for every usable patient."""
        if sequence not in SEQUENCES:
            raise ValueError(f"unknown sequence {sequence!r}; expected one of {', '.join(SEQUENCES)}")
        items = []
        for case in self.cases:
            if not self.usable(case, sequence):
                continue
            label = case.get(f"label_{sequence}")
            if require_label and label is None:
                continue
            item = {
                "image": case[sequence],
                "label_classes": list(case.get(f"label_classes_{sequence}", BINARY_CLASSES)),
                "patient_id": case["patient_id"],
                "center": case["center"],
                "sequence": sequence,
                "h3k27m": case["h3k27m"],
            }
            if label is not None:
                item["label"] = label
            items.append(item)
        return items

    @property
    def skipped_patients(self) -> list[str]:
        """Patients dropped entirely (case-level problems)."""
        return sorted({i.patient_id for i in self.issues if i.sequence is None})


# ----------------------------------------------------------------------------- readers


def _resolve(base: Path, value) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    path = Path(text) if Path(text).is_absolute() else base / text
    try:
        return str(path.resolve())
    except (OSError, RuntimeError):  # a symlink loop: keep the path, validation reports it for this patient
        return os.path.abspath(path)


def _status(value) -> int | str:
    """0/1 status, UNKNOWN_STATUS for empty; anything else is returned as text for validation."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return UNKNOWN_STATUS
    text = str(value).strip().lower()
    if text in ("", "nan", "na", "unknown"):
        return UNKNOWN_STATUS
    aliases = {"1": 1, "1.0": 1, "altered": 1, "mutant": 1, "0": 0, "0.0": 0, "wildtype": 0, "wild-type": 0}
    return aliases.get(text, text)


def _patient(base: Path, row: dict, default_center: str = "unknown") -> dict:
    case = {k: v for k, v in row.items() if k not in MANIFEST_COLUMNS}
    center = row.get("center")
    case.update({
        "patient_id": str(row.get("patient_id", "")).strip(),
        "center": default_center if center is None or str(center).strip() in ("", "nan") else str(center).strip(),
        "h3k27m": _status(row.get("h3k27m")),
    })
    for seq in SEQUENCES:
        case[seq] = _resolve(base, row.get(seq))
        case[f"label_{seq}"] = _resolve(base, row.get(f"label_{seq}"))
        case.setdefault(f"label_classes_{seq}", list(BINARY_CLASSES))
    return case


def read_manifest(path: str | os.PathLike) -> list[dict]:
    """Read a cohort manifest CSV (paths relative to the CSV) into unvalidated patient dicts."""
    path = Path(path)
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise CohortError(path, [CohortIssue("-", str(path), f"cannot read manifest: {exc}")]) from exc
    missing = [c for c in ("patient_id",) if c not in table.columns]
    if missing or not any(c in table.columns for c in SEQUENCES):
        raise CohortError(path, [CohortIssue(
            "-", str(path),
            f"not a cohort manifest: needs a patient_id column and at least one of {', '.join(SEQUENCES)}; "
            f"found columns {list(table.columns)}")])
    return [_patient(path.parent, row) for row in table.to_dict("records")]


def read_datalist(path: str | os.PathLike, data_list_key: str = "training", sequence: str | None = None) -> list[dict]:
    """Read a MONAI/Decathlon datalist JSON.

    Items either use the manifest keys (``t2``, ``label_t2``, ...) or Decathlon's
    ``image``/``label``; the latter need a sequence from the ``sequence`` argument, the
    item's ``sequence`` field, or a single-entry ``modality`` table in the JSON.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CohortError(path, [CohortIssue("-", str(path), f"cannot read datalist JSON: {exc}")]) from exc
    if not isinstance(data, dict) or not isinstance(data.get(data_list_key), list):
        found = f"a JSON {type(data).__name__}" if not isinstance(data, dict) else f"keys {sorted(data)[:10]}"
        raise CohortError(path, [CohortIssue("-", str(path), f"not a datalist: expected a JSON object with a list "
                                                             f"under key {data_list_key!r}, found {found}")])
    modality = data.get("modality") if isinstance(data.get("modality"), dict) else {}
    default_seq = sequence
    if default_seq is None and len(modality) == 1:
        default_seq = _DECATHLON_MODALITY.get(str(next(iter(modality.values()))).strip().lower())
    cases = []
    for index, item in enumerate(data[data_list_key]):
        _check_datalist_item(path, index, item, data_list_key)
        item = {"image": item} if isinstance(item, str) else dict(item)
        if "image" in item:
            seq = item.pop("sequence", default_seq)
            image, label = item.pop("image"), item.pop("label", None)
            if seq not in SEQUENCES:
                raise CohortError(path, [CohortIssue(
                    str(item.get("patient_id", index)), str(image),
                    "Decathlon-style item needs a sequence (t1c, t2 or flair): pass sequence=..., "
                    "add a 'sequence' field, or a single-entry 'modality' table")])
            if isinstance(image, list):
                raise CohortError(path, [CohortIssue(str(item.get("patient_id", index)), str(image),
                                                     "multi-file images are not supported: one sequence per item")])
            item[seq], item[f"label_{seq}"] = image, label
            item.setdefault("patient_id", nifti_stem(image))
        item.setdefault("patient_id", f"case_{index:04d}")
        cases.append(_patient(path.parent, item))
    return cases


def _check_datalist_item(path: Path, index: int, item, key: str) -> None:
    """A datalist item is a path string or an object whose file entries are strings (or null labels)."""
    where = f"item {index} of {key!r}"
    if isinstance(item, str):
        return
    if not isinstance(item, dict):
        raise CohortError(path, [CohortIssue("-", str(path), f"{where} is a JSON {type(item).__name__}, "
                                                             "expected an object or an image path")])
    for name, value in item.items():
        is_file_key = name in ("image", "label") or name in SEQUENCES or name.startswith("label_")
        if is_file_key and not (value is None or isinstance(value, (str, list))):
            raise CohortError(path, [CohortIssue("-", str(path), f"{where}: {name!r} must be a file path, "
                                                                 f"got {value!r}")])


def read_brats_folder(path: str | os.PathLike, center: str = "brats2021") -> list[dict]:
    """Read a BraTS 2021 folder (``BraTS2021_XXXXX/*_{t1ce,t2,flair,seg}.nii.gz``)."""
    path = Path(path)
    cases = []
    for folder in sorted(p for p in path.iterdir() if p.is_dir() and p.name.startswith("BraTS")):
        pid = folder.name
        seg = folder / f"{pid}_seg.nii.gz"
        row = {"patient_id": pid, "center": center}
        for seq, suffix in BRATS_SUFFIXES.items():
            row[seq] = str(folder / f"{pid}_{suffix}.nii.gz")
            row[f"label_{seq}"] = str(seg) if seg.exists() else None
        case = _patient(path, row)
        case["label_values"] = list(BRATS_VALUES)
        for seq in SEQUENCES:
            case[f"label_classes_{seq}"] = list(BRATS_LABEL_CLASSES[seq])
        cases.append(case)
    if not cases:
        raise CohortError(path, [CohortIssue("-", str(path), "no BraTS2021_* case folders found")])
    return cases


# ----------------------------------------------------------------------------- validation


def _load_image(file: str, read_data: bool) -> tuple[nib.Nifti1Image | None, np.ndarray | None, str | None]:
    """A NIfTI file or DICOM series folder: (image, data or None, problem or None)."""
    try:
        os.stat(file)
    except FileNotFoundError:
        return None, None, "file does not exist"
    except OSError as exc:  # e.g. a symlink loop (ELOOP), a permission problem
        return None, None, f"cannot access the file ({exc.strerror or type(exc).__name__})"
    kind = "DICOM series" if os.path.isdir(file) else "NIfTI"
    try:
        img = load_image(file)
        data = np.asanyarray(img.dataobj) if read_data else None
    except ImageReadError as exc:
        return None, None, str(exc).removeprefix(f"{file}: ")
    except Exception as exc:  # nibabel raises many types for corrupt files
        return None, None, f"unreadable {kind} ({type(exc).__name__}: {exc})"
    return img, data, None


def _validate_sequence(case: dict, seq: str, read_data: bool) -> list[CohortIssue]:
    pid, image_file, label_file = case["patient_id"], case.get(seq), case.get(f"label_{seq}")
    issues: list[CohortIssue] = []
    if image_file is None:
        if label_file is not None:
            issues.append(CohortIssue(pid, label_file, f"label given but no {seq} image", seq))
        return issues
    image, image_data, error = _load_image(image_file, read_data)
    if error:
        return [CohortIssue(pid, image_file, error, seq)]
    if len(image.shape) != 3:
        return [CohortIssue(pid, image_file, f"image must be 3D, got shape {tuple(image.shape)}", seq)]
    if image_data is not None and not np.isfinite(image_data).all():
        issues.append(CohortIssue(pid, image_file, "image contains NaN or infinite values", seq))
    if label_file is None:
        return issues
    label, label_data, error = _load_image(label_file, True)
    if error:
        return issues + [CohortIssue(pid, label_file, error, seq)]
    if tuple(label.shape) != tuple(image.shape):
        return issues + [CohortIssue(
            pid, label_file, f"label shape {tuple(label.shape)} does not match image shape {tuple(image.shape)}", seq)]
    if not np.allclose(label.affine, image.affine, atol=AFFINE_TOLERANCE_MM):
        issues.append(CohortIssue(
            pid, label_file,
            f"label affine differs from the image's by up to {np.abs(label.affine - image.affine).max():.4g} "
            f"(tolerance {AFFINE_TOLERANCE_MM} mm)", seq))
    allowed = set(case.get("label_values", BINARY_VALUES))
    values = np.unique(label_data)
    bad = [v for v in values.tolist() if v not in allowed]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:5]) + (" ..." if len(bad) > 5 else "")
        issues.append(CohortIssue(
            pid, label_file, f"label is not a mask: values {shown} outside the allowed {sorted(allowed)}", seq))
    return issues


def validate_case(case: dict, read_data: bool = True) -> list[CohortIssue]:
    """All problems of one patient dict (empty list when it is fine)."""
    pid = case.get("patient_id", "")
    issues: list[CohortIssue] = []
    if not pid or not _SAFE_ID.match(pid):
        issues.append(CohortIssue(pid or "-", "-", "patient_id must be non-empty letters, digits, '.', '_' or '-'"))
    if case.get("h3k27m") not in (0, 1, UNKNOWN_STATUS):
        issues.append(CohortIssue(pid, "-", f"h3k27m must be 0, 1 or empty, got {case.get('h3k27m')!r}"))
    if all(case.get(seq) is None for seq in SEQUENCES):
        issues.append(CohortIssue(pid, "-", "no image for any sequence"))
    for seq in SEQUENCES:
        try:
            issues.extend(_validate_sequence(case, seq, read_data))
        except Exception as exc:  # an OS error (or anything else) in one patient's files must not stop the cohort
            file = case.get(seq) or case.get(f"label_{seq}") or "-"
            issues.append(CohortIssue(pid or "-", file, f"cannot check this file ({type(exc).__name__}: {exc})", seq))
    return issues


def _duplicate_issues(cases: Iterable[dict]) -> list[CohortIssue]:
    seen: dict[str, int] = {}
    for case in cases:
        seen[case["patient_id"]] = seen.get(case["patient_id"], 0) + 1
    return [CohortIssue(pid, "-", f"patient_id appears {n} times") for pid, n in seen.items() if n > 1]


def load_cohort(
    source: str | os.PathLike,
    strict: bool = True,
    read_data: bool = True,
    sequence: str | None = None,
    data_list_key: str = "training",
    workers: int = 4,
    progress: bool = False,
) -> Cohort:
    """Load and validate a cohort from a manifest CSV, a datalist JSON, or a folder.

    A folder is read as its ``manifest.csv`` if it has one, else as a BraTS 2021 folder.
    ``read_data=False`` checks headers only (fast, but cannot catch truncated data or
    non-binary labels in images). ``sequence`` names the sequence of Decathlon-style
    ``image``/``label`` items.
    """
    source = Path(source)
    if not source.exists():
        raise CohortError(source, [CohortIssue("-", str(source), "cohort source does not exist")])
    if source.is_dir():
        manifest = source / "manifest.csv"
        cases = read_manifest(manifest) if manifest.exists() else read_brats_folder(source)
    elif source.suffix.lower() == ".json":
        cases = read_datalist(source, data_list_key=data_list_key, sequence=sequence)
    elif source.suffix.lower() == ".csv":
        cases = read_manifest(source)
    else:
        raise CohortError(source, [CohortIssue(
            "-", str(source), "unknown cohort source: expected a manifest .csv, a datalist .json or a folder")])

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        per_case = list(tqdm(pool.map(lambda c: validate_case(c, read_data), cases), total=len(cases),
                             desc="checking cohort", unit="patient", disable=not progress))
    issues = _duplicate_issues(cases) + [i for found in per_case for i in found]
    if strict and issues:
        raise CohortError(source, issues)
    return Cohort(source=source, cases=cases, issues=issues)
