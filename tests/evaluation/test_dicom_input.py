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
import pytest

from evaluation.image_io import ImageReadError, load_image, read_dicom_series
from pipeline.data.cohort import load_cohort
from tests.helpers import dicom_cohort, write_dicom_series

pydicom = pytest.importorskip("pydicom")
MR_SMALL = Path(pydicom.__file__).parent / "data" / "test_files" / "MR_small.dcm"


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
