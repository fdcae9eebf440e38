"""Byte-reproducible NIfTI writers on top of the atomic writes of :mod:`evaluation.atomic_io`."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from evaluation.atomic_io import atomic_write_bytes, atomic_write_text

__all__ = ["atomic_write_bytes", "atomic_write_text", "nifti_image", "save_nifti_gz"]


def nifti_image(data: np.ndarray, affine: np.ndarray, slope: float = 1.0) -> nib.Nifti1Image:
    """NIfTI-1 image with sform and qform (code 1, scanner) set to ``affine``, mm units, and ``slope``."""
    img = nib.Nifti1Image(data, affine)
    hdr = img.header
    hdr.set_data_dtype(data.dtype)
    hdr.set_qform(affine, code=1)
    hdr.set_sform(affine, code=1)
    hdr.set_xyzt_units("mm", "sec")
    if slope != 1.0:
        hdr.set_slope_inter(slope, 0.0)
    return img


def save_nifti_gz(path: str | os.PathLike, img: nib.Nifti1Image, compresslevel: int = 1) -> Path:
    """Gzip-compressed NIfTI with a fixed gzip header (no name, mtime 0), so files are byte-identical."""
    return atomic_write_bytes(path, gzip.compress(img.to_bytes(), compresslevel=compresslevel, mtime=0))
