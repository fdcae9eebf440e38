"""Read a cohort's images: a NIfTI file, or a DICOM series folder read with SimpleITK, as a nibabel image.

* **NIfTI** (``nibabel.load``) with a sanity check of the header before any voxel is read: a header
  that declares more voxel data than its file could hold (``.nii``: the bytes after ``vox_offset``;
  ``.nii.gz``: gzip compresses at most ~1032:1) is refused naming the file, instead of an empty
  ``MemoryError`` from allocating it.
* **DICOM series**: a folder of one series' files (e.g. exported from PACS). SimpleITK's
  ``ImageSeriesReader`` with GDCM's file list orders the slices by their position along the slice
  normal, and takes spacing, origin and direction from the headers (ImagePositionPatient,
  ImageOrientationPatient, PixelSpacing). SimpleITK works in LPS; the returned NIfTI image is
  RAS (the nibabel convention), so a mask written with its affine lies on the series' grid.
"""

from __future__ import annotations

import contextlib
import locale
import os

import nibabel as nib
import numpy as np

__all__ = ["GZIP_MAX_RATIO", "ImageReadError", "check_nifti_size", "is_dicom_series", "kept_locale", "load_image",
           "read_dicom_series", "sitk_to_nifti"]

#: deflate's largest compression ratio (1032:1), with a margin: no .nii.gz decompresses to more.
GZIP_MAX_RATIO = 1100
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


class ImageReadError(ValueError):
    """An image file or series that cannot be read; the message names it."""


def is_dicom_series(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder (a cohort image that is a folder is read as a DICOM series)."""
    return os.path.isdir(path)


def check_nifti_size(img: nib.spatialimages.SpatialImage, path: str | os.PathLike) -> None:
    """Refuse a NIfTI header that declares more voxel data than ``path`` can hold (see the module docstring)."""
    shape = tuple(int(s) for s in img.shape)
    itemsize = np.dtype(img.get_data_dtype()).itemsize
    declared = int(np.prod(shape, dtype=object)) * itemsize
    size = os.path.getsize(path)
    compressed = str(path).endswith(".gz")
    if compressed:
        capacity = size * GZIP_MAX_RATIO
    else:
        capacity = max(0, size - int(getattr(img.header, "get_data_offset", lambda: 0)()))
    if declared > capacity:
        what = f"gzip cannot hold more than {GZIP_MAX_RATIO}x its {size} bytes" if compressed \
            else f"the file holds {capacity} bytes of data"
        raise ImageReadError(f"{path}: header declares shape {shape} of {img.get_data_dtype()} "
                             f"({declared / 1e9:.3g} GB of voxels) but {what}: corrupt or absurd NIfTI header")


def sitk_to_nifti(image) -> nib.Nifti1Image:
    """A 3D SimpleITK image (LPS) as a RAS ``Nifti1Image`` with sform/qform set (code 1) and mm units."""
    import SimpleITK as sitk

    if image.GetDimension() != 3:
        raise ImageReadError(f"expected a 3D image, got {image.GetDimension()}D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(f"expected one value per voxel, got {image.GetNumberOfComponentsPerPixel()} "
                             "(colour or multi-frame data)")
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    lps = np.eye(4)
    lps[:3, :3] = direction * np.asarray(image.GetSpacing(), dtype=np.float64)
    lps[:3, 3] = image.GetOrigin()
    affine = _LPS_TO_RAS @ lps
    data = np.ascontiguousarray(sitk.GetArrayFromImage(image).transpose(2, 1, 0))  # (z, y, x) -> (x, y, z)
    img = nib.Nifti1Image(data, affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    return img


@contextlib.contextmanager
def kept_locale():
    """Restore the process locale after GDCM, which may set ``LC_CTYPE`` to "C" (Python's ``open`` would then
    default to ASCII)."""
    saved = locale.setlocale(locale.LC_ALL)
    try:
        yield
    finally:
        locale.setlocale(locale.LC_ALL, saved)


def read_dicom_series(folder: str | os.PathLike) -> nib.Nifti1Image:
    """The one DICOM series in ``folder`` as a RAS ``Nifti1Image`` (see the module docstring)."""
    with kept_locale():
        return _read_dicom_series(str(folder))


def _read_dicom_series(folder: str) -> nib.Nifti1Image:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    try:
        series = reader.GetGDCMSeriesIDs(folder)
    except RuntimeError as exc:
        raise ImageReadError(f"{folder}: cannot scan the folder for DICOM series ({_first_line(exc)})") from exc
    if not series:
        raise ImageReadError(f"{folder}: no DICOM series in the folder")
    if len(series) > 1:
        raise ImageReadError(f"{folder}: holds {len(series)} DICOM series ({', '.join(series[:3])}"
                             f"{' ...' if len(series) > 3 else ''}); give one folder per series")
    files = reader.GetGDCMSeriesFileNames(folder, series[0])  # sorted along the slice normal
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        raise ImageReadError(f"{folder}: cannot read the DICOM series ({_first_line(exc)})") from exc
    try:
        return sitk_to_nifti(image)
    except ImageReadError as exc:
        raise ImageReadError(f"{folder}: {exc}") from exc


def load_image(path: str | os.PathLike) -> nib.spatialimages.SpatialImage:
    """A NIfTI file (header checked, data not read yet) or a DICOM series folder (read) as a nibabel image."""
    if is_dicom_series(path):
        return read_dicom_series(path)
    img = nib.load(str(path))
    check_nifti_size(img, path)
    return img


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[-1][:300] if lines else type(exc).__name__

