"""The project's words, in one place: MRI sequences, H3K27M statuses and the file naming of predictions.

Used by the CLI, the cohort loader, the segmenter, the pairing of predictions with references and the reports.
It lives in ``transforms``, the lowest layer (``transforms`` imports neither ``evaluation`` nor ``pipeline``), so
that every package can import it; it needs the standard library only.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["NIFTI_SUFFIXES", "PREDICTION_POSTFIX", "SEQUENCES", "STATUS_NAMES", "nifti_stem", "prediction_file_name",
           "prediction_sequence"]

SEQUENCES: tuple[str, ...] = ("t1c", "t2", "flair")
"""The MRI sequences, one segmentation model each (T1 post-contrast, T2, T2-FLAIR)."""

STATUS_NAMES: dict[int, str] = {0: "wild-type", 1: "altered"}
"""H3K27M status: the class index of the classifier -> its name."""

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
PREDICTION_POSTFIX = "seg"
"""A predicted mask is ``<patient_id>_<sequence>_<PREDICTION_POSTFIX>.nii.gz``."""


def prediction_file_name(patient_id: str, sequence: str) -> str:
    """``<patient_id>_<sequence>_seg.nii.gz``: the name of a predicted mask (segmentation or the H3K27M model's);
    a synthetic cohort names its reference masks the same way (under ``labels/``)."""
    return f"{patient_id}_{sequence}_{PREDICTION_POSTFIX}{NIFTI_SUFFIXES[0]}"


def prediction_sequence(name: str | os.PathLike) -> str | None:
    """The sequence of a file named as :func:`prediction_file_name` names them (``*_<sequence>_seg.nii.gz``),
    else None."""
    name = Path(name).name
    return next((s for s in SEQUENCES if name.endswith(prediction_file_name("", s))), None)


def nifti_stem(name: str | os.PathLike) -> str:
    """File name without ``.nii.gz`` / ``.nii`` (other names, e.g. a DICOM series folder, are kept whole)."""
    name = Path(name).name
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name
