"""Cohort loading from manifest CSV, datalist JSON and BraTS folders, and every validation error."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from pipeline.cli import main as dmg
from pipeline.data.cohort import CohortError, load_cohort

SHAPE = (12, 10, 4)
AFFINE = np.diag([0.8, 0.8, 5.5, 1.0])


def _save(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return str(path)


def _mask(values=(0, 1)) -> np.ndarray:
    m = np.zeros(SHAPE, np.uint8)
    m[3:7, 3:6, 1:3] = values[1]
    return m


def _patient_files(root: Path, pid: str) -> dict:
    row = {"patient_id": pid, "center": "c1", "h3k27m": "1"}
    for seq in ("t1c", "t2", "flair"):
        row[seq] = Path(_save(root / "images" / f"{pid}_{seq}.nii.gz", np.random.rand(*SHAPE).astype(np.float32))
                        ).relative_to(root).as_posix()
        row[f"label_{seq}"] = Path(_save(root / "labels" / f"{pid}_{seq}_seg.nii.gz", _mask())
                                   ).relative_to(root).as_posix()
    return row


def _manifest(root: Path, rows: list[dict]) -> Path:
    path = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.fixture()
def good_cohort(tmp_path: Path) -> Path:
    rows = [_patient_files(tmp_path, f"p{i}") for i in range(3)]
    rows[1]["h3k27m"] = "0"
    rows[2]["h3k27m"] = ""
    rows[2]["label_t1c"] = ""
    rows[2]["site"] = "pons"
    return _manifest(tmp_path, rows)


def test_manifest_loads_into_data_dicts(good_cohort: Path):
    cohort = load_cohort(good_cohort)
    assert [c["patient_id"] for c in cohort.cases] == ["p0", "p1", "p2"]
    assert [c["h3k27m"] for c in cohort.cases] == [1, 0, -1]
    assert cohort.issues == []
    t2 = cohort.datalist("t2")
    assert len(t2) == 3 and all(Path(d["image"]).is_absolute() and Path(d["label"]).exists() for d in t2)
    assert t2[0]["sequence"] == "t2" and t2[0]["center"] == "c1" and t2[0]["label_classes"] == [1]
    t1c = cohort.datalist("t1c")
    assert "label" not in t1c[2]
    assert len(cohort.datalist("t1c", require_label=True)) == 2
    assert cohort.cases[2]["site"] == "pons"
    with pytest.raises(ValueError, match="unknown sequence"):
        cohort.datalist("t1")


def test_folder_with_manifest_is_read(good_cohort: Path):
    assert len(load_cohort(good_cohort.parent).cases) == 3


def test_datalist_json_with_manifest_keys_and_decathlon_items(tmp_path: Path):
    row = _patient_files(tmp_path, "p0")
    (tmp_path / "ours.json").write_text(json.dumps({"training": [row]}))
    cohort = load_cohort(tmp_path / "ours.json")
    assert cohort.cases[0]["flair"] == str((tmp_path / row["flair"]).resolve())

    decathlon = {"modality": {"0": "FLAIR"},
                 "training": [{"image": row["flair"], "label": row["label_flair"]}],
                 "test": [row["flair"]]}
    (tmp_path / "dataset.json").write_text(json.dumps(decathlon))
    items = load_cohort(tmp_path / "dataset.json").datalist("flair")
    assert len(items) == 1 and items[0]["patient_id"] == "p0_flair" and "label" in items[0]
    test_items = load_cohort(tmp_path / "dataset.json", data_list_key="test").datalist("flair")
    assert len(test_items) == 1 and "label" not in test_items[0]

    decathlon.pop("modality")
    (tmp_path / "nomod.json").write_text(json.dumps(decathlon))
    with pytest.raises(CohortError, match="needs a sequence"):
        load_cohort(tmp_path / "nomod.json")
    assert len(load_cohort(tmp_path / "nomod.json", sequence="t2").datalist("t2")) == 1


def test_brats_folder_maps_targets_per_sequence(tmp_path: Path):
    for pid in ("BraTS2021_00000", "BraTS2021_00002"):
        folder = tmp_path / pid
        for suffix in ("t1ce", "t2", "flair", "t1"):
            _save(folder / f"{pid}_{suffix}.nii.gz", np.random.rand(*SHAPE).astype(np.float32))
        seg = np.zeros(SHAPE, np.uint8)
        seg[2:4, 2:4, 1] = 1
        seg[4:6, 2:4, 1] = 2
        seg[6:8, 2:4, 1] = 4
        _save(folder / f"{pid}_seg.nii.gz", seg)
    cohort = load_cohort(tmp_path)
    assert cohort.issues == [] and len(cohort.cases) == 2
    assert cohort.datalist("t1c")[0]["label_classes"] == [4]
    assert cohort.datalist("flair")[0]["label_classes"] == [1, 2, 4]
    assert cohort.datalist("t1c")[0]["image"].endswith("BraTS2021_00000_t1ce.nii.gz")


def test_empty_brats_folder_is_refused(tmp_path: Path):
    with pytest.raises(CohortError, match="no BraTS2021"):
        load_cohort(tmp_path)


def _broken_cohort(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    rows = {pid: _patient_files(tmp_path, pid) for pid in
            ("ok", "missing", "corrupt", "shape", "affine", "nonbinary", "fourd", "status", "badid/x")}
    rows["missing"]["t2"] = "images/nowhere_t2.nii.gz"
    corrupt = tmp_path / "images" / "corrupt_t2.nii.gz"
    corrupt.write_bytes(b"this is not a nifti file at all")
    _save(tmp_path / "labels" / "shape_t2_seg.nii.gz", np.zeros((12, 10, 5), np.uint8))
    _save(tmp_path / "labels" / "affine_t2_seg.nii.gz", _mask(), np.diag([0.8, 0.8, 6.0, 1.0]))
    _save(tmp_path / "labels" / "nonbinary_t2_seg.nii.gz", _mask((0, 3)))
    _save(tmp_path / "images" / "fourd_t2.nii.gz", np.random.rand(*SHAPE, 2).astype(np.float32))
    rows["status"]["h3k27m"] = "maybe"
    expected = {
        "missing": "file does not exist",
        "corrupt": "unreadable NIfTI",
        "shape": "does not match image shape",
        "affine": "label affine differs",
        "nonbinary": "not a mask: values 3",
        "fourd": "image must be 3D",
        "status": "h3k27m must be 0, 1 or empty",
        "badid/x": "patient_id must be",
    }
    return _manifest(tmp_path, list(rows.values())), expected


def test_strict_mode_names_patient_file_and_problem(tmp_path: Path):
    manifest, expected = _broken_cohort(tmp_path)
    with pytest.raises(CohortError) as info:
        load_cohort(manifest)
    message = str(info.value)
    for pid, problem in expected.items():
        assert f"patient {pid!r}" in message and problem in message, pid
    assert "nowhere_t2.nii.gz" in message and "corrupt_t2.nii.gz" in message
    assert {i.patient_id for i in info.value.issues} == set(expected)


def test_lenient_mode_skips_only_what_is_broken(tmp_path: Path):
    manifest, expected = _broken_cohort(tmp_path)
    cohort = load_cohort(manifest, strict=False)
    assert {i.patient_id for i in cohort.issues} == set(expected)
    # sequence-level problems drop only that sequence; case-level ones drop the patient
    assert sorted(d["patient_id"] for d in cohort.datalist("t2")) == ["ok"]
    assert sorted(d["patient_id"] for d in cohort.datalist("flair")) == sorted(
        set(expected) - {"status", "badid/x"} | {"ok"})
    assert cohort.skipped_patients == ["badid/x", "status"]


def test_duplicate_ids_and_unknown_source(tmp_path: Path):
    row = _patient_files(tmp_path, "p0")
    manifest = _manifest(tmp_path, [row, row])
    with pytest.raises(CohortError, match="appears 2 times"):
        load_cohort(manifest)
    with pytest.raises(CohortError, match="does not exist"):
        load_cohort(tmp_path / "nope.csv")
    (tmp_path / "cohort.txt").write_text("x")
    with pytest.raises(CohortError, match="unknown cohort source"):
        load_cohort(tmp_path / "cohort.txt")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CohortError, match="not a cohort manifest"):
        load_cohort(tmp_path / "bad.csv")


def test_check_cohort_command_reports_problems(tmp_path: Path, good_cohort: Path, capsys):
    assert dmg(["check-cohort", str(good_cohort)]) == 0
    manifest, _ = _broken_cohort(tmp_path / "broken")
    assert dmg(["check-cohort", str(manifest)]) == 1
    out = capsys.readouterr().out
    assert "SKIPPED patient 'corrupt', t2:" in out and "9 patients" in out


def _absurd_header_nifti(path: Path) -> str:
    """A NIfTI whose header declares 2000^3 float32 voxels (32 GB) in a file of a few hundred bytes."""
    header = nib.Nifti1Header()
    header.set_data_shape((2000, 2000, 2000))
    header.set_data_dtype(np.float32)
    header.set_data_offset(352)
    path.write_bytes(header.binaryblock + b"\0" * 4 + b"\0" * 100)
    return str(path)


def test_symlink_loop_and_absurd_header_are_that_patients_problems(tmp_path: Path, good_cohort: Path, capsys):
    root = good_cohort.parent
    (root / "images" / "loop_a").symlink_to("loop_b")
    (root / "images" / "loop_b").symlink_to("loop_a")
    table = pd.read_csv(good_cohort, dtype=str, keep_default_na=False)
    table.loc[0, "t2"] = "images/loop_a/p0_t2.nii.gz"
    table.loc[1, "t1c"] = Path(_absurd_header_nifti(root / "images" / "p1_t1c.nii")).relative_to(root).as_posix()
    table.to_csv(good_cohort, index=False)
    cohort = load_cohort(good_cohort, strict=False)
    problems = {(i.patient_id, i.sequence): i.problem for i in cohort.issues}
    assert "Too many levels of symbolic links" in problems[("p0", "t2")]
    assert "declares shape (2000, 2000, 2000)" in problems[("p1", "t1c")] and "32 GB" in problems[("p1", "t1c")]
    assert len(cohort.datalist("t2")) == 2 and len(cohort.datalist("t1c")) == 2 and len(cohort.datalist("flair")) == 3
    assert dmg(["check-cohort", str(good_cohort)]) == 1
    out = capsys.readouterr().out
    assert "SKIPPED patient 'p0', t2:" in out and "p1_t1c.nii: header declares shape" in out


@pytest.mark.parametrize(("content", "expected"), [
    ({"training": {"image": "a.nii.gz"}}, "not a datalist: expected a JSON object with a list under key 'training'"),
    ([{"image": "a.nii.gz"}], "not a datalist: expected a JSON object with a list under key 'training', found a "
                              "JSON list"),
    (7, "found a JSON int"),
    ({"training": [3]}, "item 0 of 'training' is a JSON int, expected an object or an image path"),
    ({"training": [{"t2": 5}]}, "item 0 of 'training': 't2' must be a file path, got 5"),
])
def test_datalist_json_of_the_wrong_shape_is_one_line(content, expected: str, tmp_path: Path, capsys):
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(content))
    assert dmg(["check-cohort", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dmg check-cohort: error: {path}: ") and expected in err and err.count("\n") == 1, err
