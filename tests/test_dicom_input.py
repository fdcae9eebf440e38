"""DICOM series input: SimpleITK reads a series folder onto the grid its headers describe.

Checked against the real MR file that ships in pydicom's wheel (its affine computed here from the
raw DICOM attributes with pydicom) and against series written by SimpleITK from a synthetic NIfTI
(the round trip keeps the grid, affine and voxel values, whatever order the files are named in).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from evaluation.image_io import ImageReadError, kept_locale, load_image, read_dicom_series
from pipeline.data.cohort import load_cohort

pydicom = pytest.importorskip("pydicom")
MR_SMALL = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"


def write_dicom_series(nifti: nib.Nifti1Image, folder: Path, series_uid: str = "1.2.826.0.1.3680043.2.1125.1",
                       reverse_names: bool = True) -> Path:
    """One DICOM file per axial slice of ``nifti`` (int16), written with SimpleITK/GDCM.

    The file names run against the slice order when ``reverse_names``, so a reader that sorts by
    name instead of by position gets the volume upside down.
    """
    folder.mkdir(parents=True, exist_ok=True)
    data = np.asanyarray(nifti.dataobj).astype(np.int16)
    image = sitk.GetImageFromArray(data.transpose(2, 1, 0))  # (x, y, z) -> sitk's (z, y, x)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ nifti.affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((lps[:3, :3] / spacing).flatten().tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    with kept_locale():  # GDCM's writer sets LC_CTYPE to "C"
        _write_slices(image, writer, folder, series_uid, spacing, reverse_names)
    return folder


def _write_slices(image, writer, folder: Path, series_uid: str, spacing: np.ndarray, reverse_names: bool) -> None:
    direction, n = image.GetDirection(), image.GetDepth()
    for k in range(n):
        slice_k = image[:, :, k]
        for tag, value in {
            "0008|0060": "MR", "0008|0016": "1.2.840.10008.5.1.4.1.1.4", "0010|0020": "SYNTH",
            "0020|000d": series_uid + ".0", "0020|000e": series_uid, "0020|0013": str(k + 1),
            "0020|0037": "\\".join(f"{v:.10g}" for v in (direction[0], direction[3], direction[6],
                                                         direction[1], direction[4], direction[7])),
            "0020|0032": "\\".join(f"{v:.10g}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0018|0050": f"{spacing[2]:.10g}", "0008|0018": f"{series_uid}.{k + 1}",
        }.items():
            slice_k.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice_{(n - 1 - k) if reverse_names else k:03d}.dcm"))
        writer.Execute(slice_k)


def _oblique(affine: np.ndarray, degrees: float) -> np.ndarray:
    t = np.deg2rad(degrees)
    rotation = np.eye(4)
    rotation[:3, :3] = [[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]]
    return rotation @ affine


@pytest.mark.parametrize("storage", ["ras", "lps", "oblique"])
def test_series_written_from_a_nifti_reads_back_on_the_same_grid(storage: str, tmp_path: Path):
    rng = np.random.default_rng(1)
    data = rng.integers(0, 1000, size=(12, 10, 5)).astype(np.int16)
    affine = np.diag([0.8, 0.9, 5.5, 1.0])
    affine[:3, 3] = [-20.0, 30.0, -12.5]
    if storage == "lps":
        affine = np.diag([-0.8, -0.9, 5.5, 1.0])
        affine[:3, 3] = [20.0, 30.0, -12.5]
    elif storage == "oblique":
        affine = _oblique(affine, 20.0)
    folder = write_dicom_series(nib.Nifti1Image(data, affine), tmp_path / "series")
    img = read_dicom_series(folder)
    assert img.shape == data.shape
    np.testing.assert_allclose(img.affine, affine, atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), data)  # slices ordered by position, not name
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1


def test_pydicoms_mr_file_is_read_on_the_grid_of_its_headers(tmp_path: Path):
    folder = tmp_path / "mr"
    folder.mkdir()
    shutil.copy(MR_SMALL, folder)
    ds = pydicom.dcmread(MR_SMALL)
    img = load_image(folder)
    assert img.shape == (ds.Columns, ds.Rows, 1)
    row_dir, col_dir = np.array(ds.ImageOrientationPatient[:3], float), np.array(ds.ImageOrientationPatient[3:], float)
    col_spacing, row_spacing = (float(v) for v in ds.PixelSpacing[::-1])  # PixelSpacing = (row, column) spacing
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1] = row_dir * col_spacing, col_dir * row_spacing
    lps[:3, 3] = np.array(ds.ImagePositionPatient, float)
    expected = np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    np.testing.assert_allclose(img.affine[:, [0, 1, 3]], expected[:, [0, 1, 3]], atol=1e-4)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj)[:, :, 0], ds.pixel_array.T)


def test_a_folder_with_two_series_or_none_is_refused_by_name(tmp_path: Path):
    data = np.arange(4 * 4 * 2, dtype=np.int16).reshape(4, 4, 2)
    write_dicom_series(nib.Nifti1Image(data, np.eye(4)), tmp_path / "two", series_uid="1.2.3.4")
    write_dicom_series(nib.Nifti1Image(data, np.eye(4)), tmp_path / "other", series_uid="1.2.3.5")
    for f in (tmp_path / "other").iterdir():
        shutil.move(str(f), tmp_path / "two" / f"b_{f.name}")
    with pytest.raises(ImageReadError, match="holds 2 DICOM series"):
        read_dicom_series(tmp_path / "two")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageReadError, match="no DICOM series"):
        read_dicom_series(tmp_path / "empty")


def test_a_manifest_cell_may_name_a_series_folder(tmp_path: Path, tiny_cohort: Path):
    manifest = dicom_cohort(tiny_cohort, tmp_path)
    cohort = load_cohort(manifest, strict=False)
    assert not cohort.issues
    items = {d["patient_id"]: d for d in cohort.datalist("t2")}
    assert Path(items["tiny_00"]["image"]).is_dir() and items["tiny_00"]["label"].endswith(".nii.gz")


def test_a_datalist_entry_may_name_a_series_folder(tmp_path: Path, tiny_cohort: Path):
    import json

    manifest = dicom_cohort(tiny_cohort, tmp_path, patients=("tiny_00",))
    datalist = manifest.parent / "datalist.json"
    datalist.write_text(json.dumps({"training": [{"image": "dicom/tiny_00", "label": "labels/tiny_00_t2_seg.nii.gz"}],
                                    "modality": {"0": "T2"}}))
    cohort = load_cohort(datalist, strict=True)
    (item,) = cohort.datalist("t2")
    assert item["patient_id"] == "tiny_00" and Path(item["image"]).is_dir()


def dicom_cohort(tiny_cohort: Path, root: Path, patients: tuple[str, ...] = ("tiny_00", "tiny_01")) -> Path:
    """A copy of the tiny cohort whose ``patients`` have their T2 as a DICOM series folder (labels stay NIfTI)."""
    shutil.copytree(tiny_cohort.parent, root / "cohort")
    manifest = root / "cohort" / tiny_cohort.name
    table = pd.read_csv(manifest)
    for pid in patients:
        image = nib.load(root / "cohort" / "images" / f"{pid}_t2.nii.gz")
        write_dicom_series(image, root / "cohort" / "dicom" / pid)
        table.loc[table.patient_id == pid, "t2"] = f"dicom/{pid}"
    table.to_csv(manifest, index=False)
    return manifest
