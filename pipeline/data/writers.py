"""Atomic, byte-reproducible file writers (temp file in the same folder, then ``os.replace``)."""

from __future__ import annotations

import gzip
import os
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask can only be read by setting it


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; a reader sees the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


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
