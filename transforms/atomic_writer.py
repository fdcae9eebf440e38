"""A MONAI image writer that never leaves a half-written mask behind."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from monai.data import NibabelWriter
from monai.config import PathLike

__all__ = ["AtomicNibabelWriter"]


class AtomicNibabelWriter(NibabelWriter):
    """``NibabelWriter`` that writes to a temporary file in the target folder, then renames it into place.

    An interrupted run (killed process, full disk) leaves either the previous file or none, never a
    truncated ``.nii.gz`` that a later resume would take as done. The temporary name keeps the
    ``.nii.gz`` suffix so that nibabel still compresses. Use it as ``SaveImage(d)(writer=AtomicNibabelWriter)``.
    """

    def write(self, filename: PathLike, verbose: bool = False, **obj_kwargs) -> None:
        target = Path(filename)
        tmp = target.with_name(f".{uuid.uuid4().hex}.tmp.{target.name}")
        try:
            super().write(tmp, verbose=verbose, **obj_kwargs)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
