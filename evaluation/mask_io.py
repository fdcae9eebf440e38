"""Read binary masks and their voxel spacing from NIfTI files, with checks.

* Spacing is ``header.get_zooms()[:ndim]``: one value per *array* axis, in
  the order of the array nibabel returns, converted to mm from the header's
  spatial unit (``unknown`` is taken as mm). It is checked against the voxel
  sizes implied by the affine (column norms of its 3x3 part); a mismatch
  means the header's pixdim and the affine disagree (e.g. permuted axes) and
  is refused.
* The number of axes is the file's own: a 3D file of shape ``(H, W, 1)``
  stays 3D. Only a trailing singleton 4th axis (``(H, W, D, 1)``) is dropped.
* A mask must hold only 0 and 1 unless ``label_classes`` is given; then the
  foreground is the voxels whose value is one of ``label_classes`` (BraTS:
  ``[4]`` for enhancing tumour, ``[1, 2, 4]`` for the whole tumour), and all
  values must still be integers.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import nibabel as nib
import numpy as np

from evaluation.image_io import check_nifti_size

__all__ = ["MaskVolume", "spacing_from_nifti", "load_mask", "grid_mismatch"]

_UNIT_TO_MM = {"mm": 1.0, "unknown": 1.0, "meter": 1000.0, "micron": 1e-3}


@dataclass(frozen=True)
class MaskVolume:
    """A binary mask read from disk."""

    array: np.ndarray
    spacing: tuple[float, ...]
    affine: np.ndarray
    path: str


def _spatial_ndim(img: Any, path: str) -> int:
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        return 3
    if len(shape) not in (2, 3):
        raise ValueError(f"{path}: expected a 2D or 3D mask, got shape {tuple(shape)}.")
    return len(shape)


def spacing_from_nifti(img: Any, path: str | None = None) -> tuple[float, ...]:
    """Voxel spacing in mm per array axis of a nibabel image (or a path to one).

    ``path`` only names the file in error messages. Raises ValueError when the
    header's pixdim and the affine's voxel sizes disagree.
    """
    if isinstance(img, (str, os.PathLike)):
        path = str(img)
        img = nib.load(path)
    path = path or str(getattr(img, "get_filename", lambda: None)() or "<in-memory image>")
    ndim = _spatial_ndim(img, path)
    unit = img.header.get_xyzt_units()[0] if hasattr(img.header, "get_xyzt_units") else "unknown"
    if unit not in _UNIT_TO_MM:
        raise ValueError(f"{path}: unsupported spatial unit {unit!r} in the NIfTI header.")
    zooms = np.asarray(img.header.get_zooms()[:ndim], dtype=np.float64) * _UNIT_TO_MM[unit]
    if not np.all(np.isfinite(zooms)) or np.any(zooms <= 0):
        raise ValueError(f"{path}: header voxel sizes must be positive, got {zooms.tolist()}.")
    affine_sizes = np.linalg.norm(np.asarray(img.affine, dtype=np.float64)[:3, :ndim], axis=0) * _UNIT_TO_MM[unit]
    if not np.allclose(zooms, affine_sizes, rtol=1e-3, atol=1e-5):
        raise ValueError(
            f"{path}: header voxel sizes {zooms.tolist()} (pixdim, per array axis) disagree with the "
            f"affine's voxel sizes {affine_sizes.tolist()}; the axis order or the header is inconsistent."
        )
    return tuple(float(z) for z in zooms)


def load_mask(path: str | os.PathLike, label_classes: Sequence[int] | None = None) -> MaskVolume:
    """Load a mask as bool with its spacing (mm per array axis) and affine; see the module docstring."""
    path = str(path)
    img = nib.load(path)
    check_nifti_size(img, path)
    _spatial_ndim(img, path)  # refuses shapes other than 2D, 3D or 3D + singleton 4th axis
    spacing = spacing_from_nifti(img, path)
    data = np.asanyarray(img.dataobj)
    if data.ndim == 4:
        data = data[..., 0]
    if label_classes is None:
        if data.dtype != bool:
            bad = (data != 0) & (data != 1)
            if bad.any():
                values = np.unique(data[bad])[:10].tolist()
                raise ValueError(
                    f"{path}: not a binary mask (values other than 0/1, e.g. {values}); "
                    "pass label_classes to select the foreground labels."
                )
        array = data != 0
    else:
        if np.issubdtype(data.dtype, np.floating) and not np.all(np.equal(np.mod(data, 1), 0)):
            raise ValueError(f"{path}: label map has non-integer values; cannot select label_classes.")
        array = np.isin(data, np.asarray(list(label_classes)))
    return MaskVolume(array=array, spacing=spacing, affine=np.asarray(img.affine, dtype=np.float64), path=path)


def grid_mismatch(pred: MaskVolume, ref: MaskVolume, affine_atol_mm: float = 1e-3) -> str | None:
    """Why ``pred`` is not on the grid of ``ref`` (shape, spacing, affine within ``affine_atol_mm``), or None.

    The message names both files.
    """
    if pred.array.shape != ref.array.shape:
        return f"shape mismatch: prediction {pred.path} has {pred.array.shape}, reference {ref.path} has {ref.array.shape}."
    if not np.allclose(pred.spacing, ref.spacing, rtol=1e-5, atol=1e-6):
        return f"spacing mismatch: prediction {pred.path} has {pred.spacing} mm, reference {ref.path} has {ref.spacing} mm."
    if not np.allclose(pred.affine, ref.affine, rtol=0, atol=affine_atol_mm):
        worst = float(np.abs(pred.affine - ref.affine).max())
        return (
            f"affine mismatch: prediction {pred.path} is not on the grid of reference {ref.path} "
            f"(affines differ by up to {worst:.4g} mm, tolerance {affine_atol_mm:g} mm)."
        )
    return None
