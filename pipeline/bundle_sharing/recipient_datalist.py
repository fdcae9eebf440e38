"""The data list of a bundle's ``inference.json`` for a recipient: a folder of images, or a cohort.

This module is carried inside a bundle as ``scripts/image_folder.py`` (see
:mod:`pipeline.bundle_trust.carried_code`), so it imports only the standard library; the cohort formats need the
dmg-pipeline package and are used only when it is installed.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["image_datalist"]

IMAGE_SUFFIXES = (".nii.gz", ".nii")


def image_datalist(dataset_dir: str, sequence: str, extra_sequences: list[str] | tuple[str, ...] = ()) -> list[dict]:
    """``[{"image": path}, ...]`` for every NIfTI image directly in folder ``dataset_dir`` (sorted by name;
    each mask is then named ``<image stem>_seg.nii.gz``); a folder without images, a manifest CSV or a
    datalist JSON is read as a cohort with dmg-pipeline's ``cohort_datalist`` when that package is installed.
    A model that reads ``extra_sequences`` too needs a cohort (it pairs a patient's sequences)."""
    folder = Path(dataset_dir)
    if folder.is_dir() and not extra_sequences:
        images = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(IMAGE_SUFFIXES))
        if images:
            return [{"image": str(p)} for p in images]
    try:
        from pipeline.data.datalists import cohort_datalist
    except ImportError:
        raise ValueError(f"dataset_dir {dataset_dir}: no *.nii.gz or *.nii images in it (a cohort manifest or "
                         "folder, or a model reading several sequences, needs the dmg-pipeline package)") from None
    return cohort_datalist(dataset_dir, sequence, extra_sequences=tuple(extra_sequences))
