"""``dmg segment`` and ``dmg evaluate`` with several sequences in one process equal one run per sequence."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.cli import main
from tests.helpers import TINY_FEATURES as FEATURES, copy_bundle, tiny_generator, write_tiny_cohort

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "dmg_mscg_segmentation"
SEQUENCES = ("t2", "flair")
HAS_ONNX = all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnxscript"))
RUNTIMES = ["torch", pytest.param("onnx", marks=pytest.mark.skipif(not HAS_ONNX, reason="onnxruntime not installed"))]
EVALUATE = ["--workers", "1", "--bootstrap", "50"]

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """4 labelled patients and 1 without labels, each with a T2 and a FLAIR image."""
    return write_tiny_cohort(tmp_path_factory.mktemp("two_sequences"), n_patients=4, unlabeled=1,
                             extra_sequences=("flair",))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, cohort: Path) -> Path:
    """A tiny-width bundle with a different random model per sequence (and their ONNX exports when available)."""
    torch.set_num_threads(1)
    root = copy_bundle(BUNDLE, tmp_path_factory.mktemp("two_models"), features=FEATURES, spatial_size=32)
    for seed, sequence in enumerate(SEQUENCES):
        torch.save(tiny_generator(cohort.parent, seed=seed).state_dict(), root / "models" / f"model_{sequence}.pt")
    if HAS_ONNX:
        from pipeline.inference.onnx_export import export_bundle_onnx

        assert set(export_bundle_onnx(root)) == set(SEQUENCES)
    return root


def _segment(bundle: Path, cohort: Path, out: Path, *sequences: str, runtime: str = "torch") -> int:
    return main(["segment", "--bundle", str(bundle), "--cohort", str(cohort), "--sequence", *sequences,
                 "--out", str(out), "--device", "cpu", "--runtime", runtime])


def _report(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "segment_report.csv", keep_default_na=False)


@pytest.fixture(scope="module")
def runs(bundle: Path, cohort: Path, tmp_path_factory) -> dict[str, tuple[Path, Path, str]]:
    """Per runtime: (folder of one run of both sequences, folder of one run per sequence, stdout of the first)."""
    import contextlib
    import io

    folders = {}
    for runtime in ("torch", "onnx") if HAS_ONNX else ("torch",):
        together, separate = tmp_path_factory.mktemp(f"together_{runtime}"), tmp_path_factory.mktemp(runtime)
        stdout = io.StringIO()
        with contextlib.redirect_stdout(stdout):
            assert _segment(bundle, cohort, together, *SEQUENCES, runtime=runtime) == 0
        for sequence in SEQUENCES:
            assert _segment(bundle, cohort, separate, sequence, runtime=runtime) == 0
        folders[runtime] = (together, separate, stdout.getvalue())
    return folders


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_one_process_for_two_sequences_writes_the_masks_of_one_run_each(runs, cohort: Path, runtime: str):
    together, separate, stdout = runs[runtime]
    patients = list(pd.read_csv(cohort).patient_id)
    names = sorted(f"{pid}_{seq}_seg.nii.gz" for pid in patients for seq in SEQUENCES)
    assert sorted(p.name for p in together.glob("*_seg.nii.gz")) == names
    for name in names:
        assert (together / name).read_bytes() == (separate / name).read_bytes(), name
    values = {seq: set() for seq in SEQUENCES}
    for name in names:
        values[name.split("_")[-2]] |= set(np.unique(np.asanyarray(nib.load(together / name).dataobj)).tolist())
    assert values == {"t2": {0, 1}, "flair": {0, 1}}, "all-empty or all-full masks would not tell the models apart"
    for seq in SEQUENCES:  # each sequence recorded with its own model, as a run of that sequence alone records it
        record = json.loads((together / f"segment_model_{seq}.json").read_text())
        assert record == json.loads((separate / f"segment_model_{seq}.json").read_text())
        assert Path(record["model_file"]).name == f"model_{seq}.{'onnx' if runtime == 'onnx' else 'pt'}"
    lines = stdout.splitlines()
    assert lines[0].startswith(f"t2: {len(patients)} segmented, 0 reused, 0 skipped, 0 failed of {len(patients)}")
    assert lines[1].startswith(f"flair: {len(patients)} segmented") and lines[2].startswith("2 sequences in ")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_report_is_one_table_with_a_sequence_column(runs, cohort: Path, runtime: str):
    together, separate, _ = runs[runtime]
    report = _report(together)
    patients = list(pd.read_csv(cohort).patient_id)
    assert list(zip(report.sequence, report.patient_id)) == [(s, p) for s in SEQUENCES for p in patients]
    assert set(report.status) == {"done"}
    assert all(out.endswith(f"{pid}_{seq}_seg.nii.gz") for pid, seq, out in
               zip(report.patient_id, report.sequence, report.output))
    columns = ["patient_id", "sequence", "status", "reason", "image"]
    expected = _report(separate)
    pd.testing.assert_frame_equal(report[columns], expected[columns])
    assert [Path(p).name for p in report.output] == [Path(p).name for p in expected.output]


def test_resume_reuses_every_sequence(runs, bundle: Path, cohort: Path, capsys):
    together, _, _ = runs["torch"]
    masks = {p.name: p.read_bytes() for p in together.glob("*_seg.nii.gz")}
    assert _segment(bundle, cohort, together, *SEQUENCES) == 0
    assert set(_report(together).status) == {"reused"}
    assert {p.name: p.read_bytes() for p in together.glob("*_seg.nii.gz")} == masks
    assert "flair: 0 segmented, 5 reused" in capsys.readouterr().out


def test_model_file_with_two_sequences_is_refused_in_one_line(bundle: Path, cohort: Path, tmp_path: Path, capsys):
    rc = main(["segment", "--bundle", str(bundle), "--cohort", str(cohort), "--sequence", *SEQUENCES,
               "--model", str(bundle / "models" / "model_t2.pt"), "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("dmg segment: error: --model ") and "one --sequence" in err, err
    assert not (tmp_path / "out").exists()


def test_evaluate_two_sequences_in_one_process_equals_one_run_each(runs, cohort: Path, tmp_path: Path, capsys):
    predictions, _, _ = runs["torch"]
    common = ["evaluate", "--pred", str(predictions), "--cohort", str(cohort), *EVALUATE]
    assert main([*common, "--sequence", *SEQUENCES, "--out", str(tmp_path / "together")]) == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "together").iterdir()) == sorted(SEQUENCES)
    for seq in SEQUENCES:
        assert f"{seq}: 4 cases: 4 evaluated, 0 failed" in printed
        assert f"report: {tmp_path / 'together' / seq / 'report.html'}" in printed
        assert main([*common, "--sequence", seq, "--out", str(tmp_path / seq)]) == 0
        for name in ("cases.csv", "summary.csv", "summary.json", "report.html"):
            assert (tmp_path / "together" / seq / name).read_bytes() == (tmp_path / seq / name).read_bytes(), name
        cases = pd.read_csv(tmp_path / seq / "cases.csv")
        assert set(cases.sequence) == {seq} and len(cases) == 4


def test_evaluate_refuses_several_sequences_with_a_reference_folder(runs, cohort: Path, tmp_path: Path, capsys):
    predictions, _, _ = runs["torch"]
    rc = main(["evaluate", "--pred", str(predictions), "--ref", str(cohort.parent / "labels"), "--sequence",
               *SEQUENCES, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "at most one --sequence" in err, err
