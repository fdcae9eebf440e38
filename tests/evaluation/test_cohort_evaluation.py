"""Batch cohort evaluation: pairing, per-case failures, summary statistics, report, ``dmg evaluate``."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from evaluation import (
    RAW_POLICY,
    CohortEvaluator,
    EmptyCasePolicy,
    bootstrap_mean_ci,
    compute_case_metrics,
    pair_cohort,
    pair_folders,
    summarize,
    write_outputs,
)
from evaluation.atomic_io import atomic_write_bytes
from evaluation.json_values import json_text
from evaluation.summary import METRICS, summary_records
from tests.helpers import write_tiny_cohort

N_PATIENTS = 9
EXPECTED_FAILURES = {  # patient -> (kind, words the reason must contain)
    "tiny_00": ("missing_prediction", ["does not exist", "tiny_00_t2_seg.nii.gz"]),
    "tiny_01": ("unreadable_prediction", ["tiny_01_t2_seg.nii.gz"]),
    "tiny_02": ("grid_mismatch", ["affine mismatch", "tiny_02_t2_seg.nii.gz", "2 mm"]),
    "tiny_08": ("unreadable_reference", ["tiny_08_t2_seg.nii.gz", "not a binary mask"]),
}
EVALUATED = ["tiny_03", "tiny_04", "tiny_05", "tiny_06", "tiny_07"]


def _save_like(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    nib.save(nib.Nifti1Image(array.astype(np.uint8), affine), str(path))


def build_predictions(root: Path, pred_dir: Path) -> None:
    """Predictions from the references: one missing, one garbage, one shifted grid, empty, dilated, ..."""
    pred_dir.mkdir(parents=True, exist_ok=True)
    for i in range(N_PATIENTS):
        pid = f"tiny_{i:02d}"
        label_path = root / "labels" / f"{pid}_t2_seg.nii.gz"
        img = nib.load(str(label_path))
        ref = np.asanyarray(img.dataobj) > 0
        affine = img.affine.copy()
        out = pred_dir / f"{pid}_t2_seg.nii.gz"
        if i == 0:
            continue  # missing prediction
        if i == 1:
            out.write_bytes(b"\x00garbage, not a NIfTI file" * 8)
            continue
        if i == 2:
            affine[0, 3] += 2.0  # same shape, grid shifted by 2 mm
            pred = ref
        elif i == 3:
            pred = np.zeros_like(ref)  # missed lesion: exactly one mask empty
        elif i == 4:
            pred = ndimage.binary_dilation(ref)
        elif i == 5:
            pred = ndimage.binary_erosion(ref)
        elif i == 6:
            pred = np.roll(ref, 2, axis=0)
        elif i == 7:
            _save_like(label_path, np.zeros_like(ref), affine)  # empty reference and empty prediction
            pred = np.zeros_like(ref)
        else:
            pred = ref
            _save_like(label_path, ref.astype(np.uint8) * 2, affine)  # reference is not a mask
        _save_like(out, pred, affine)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_cohort")
    manifest = write_tiny_cohort(root, n_patients=N_PATIENTS, seed=1)
    pred_dir = root / "pred"
    build_predictions(root, pred_dir)
    table = pd.read_csv(manifest)
    items = [{"patient_id": r.patient_id, "center": r.center, "sequence": "t2", "label": str(root / r.label_t2),
              "image": str(root / r.t2), "label_classes": [1]} for r in table.itertuples()]
    pairing = pair_cohort(pred_dir, items)
    result = CohortEvaluator(workers=1, progress=False, bootstrap=500).evaluate(pairing)
    out = root / "report"
    paths = write_outputs(result, out, title="test report")
    return {"root": root, "manifest": manifest, "pred": pred_dir, "items": items, "pairing": pairing,
            "result": result, "out": out, "paths": paths}


def _by_patient(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.set_index("patient_id")


def test_failures_are_reported_by_name_and_the_rest_is_evaluated(setup):
    result = setup["result"]
    failures = {f.patient_id: f for f in result.failures}
    assert set(failures) == set(EXPECTED_FAILURES)
    for pid, (kind, words) in EXPECTED_FAILURES.items():
        assert failures[pid].kind == kind
        for word in words:
            assert word in failures[pid].reason, (pid, failures[pid].reason)
        assert Path(failures[pid].file).name == f"{pid}_t2_seg.nii.gz"
    cases = _by_patient(result.cases)
    assert sorted(cases.index[cases["status"] == "evaluated"]) == EVALUATED
    assert result.n_evaluated == len(EVALUATED) and result.n_failed == len(EXPECTED_FAILURES)
    assert list(result.cases["patient_id"]) == [f"tiny_{i:02d}" for i in range(N_PATIENTS)]  # input order


def test_cases_csv_equals_compute_case_metrics(setup):
    cases = _by_patient(pd.read_csv(setup["out"] / "cases.csv"))
    for pid in EVALUATED:
        pred_img = nib.load(str(setup["pred"] / f"{pid}_t2_seg.nii.gz"))
        ref_img = nib.load(str(setup["root"] / "labels" / f"{pid}_t2_seg.nii.gz"))
        expected = compute_case_metrics(np.asanyarray(pred_img.dataobj) > 0, np.asanyarray(ref_img.dataobj) > 0,
                                        ref_img.header.get_zooms()[:3])
        for metric in METRICS:
            np.testing.assert_equal(cases.loc[pid, f"{metric}_raw"], expected[metric], err_msg=f"{pid} {metric}")
        assert cases.loc[pid, "ref_volume_ml"] == pytest.approx(expected["ref_volume_ml"], rel=1e-12)
        assert bool(cases.loc[pid, "pred_empty"]) == expected["pred_empty"]
    assert cases.loc["tiny_04", "dsc_raw"] < 1.0 and cases.loc["tiny_04", "sensitivity_raw"] == 1.0  # dilated


def test_empty_case_policy_in_policy_columns_raw_columns_keep_nan_inf(setup):
    cases = _by_patient(pd.read_csv(setup["out"] / "cases.csv"))
    missed, both = cases.loc["tiny_03"], cases.loc["tiny_07"]
    assert missed["empty_case"] == "pred" and bool(missed["policy_applied"])
    assert missed["hd95_raw"] == math.inf and math.isnan(missed["ppv_raw"]) and missed["dsc_raw"] == 0.0
    assert missed["hd95_policy"] == 373.13 and missed["ppv_policy"] == 0.0 and missed["dsc_policy"] == 0.0
    assert both["empty_case"] == "both"
    assert all(math.isnan(both[f"{m}_raw"]) for m in METRICS)
    assert both["dsc_policy"] == 1.0 and both["hd95_policy"] == 0.0
    normal = cases.loc["tiny_05"]
    assert not bool(normal["policy_applied"])
    assert all(normal[f"{m}_raw"] == normal[f"{m}_policy"] for m in METRICS)

    custom = CohortEvaluator(policy=EmptyCasePolicy(one_empty_hd95=100.0), progress=False, bootstrap=0)
    assert _by_patient(custom.evaluate(setup["pairing"]).cases).loc["tiny_03", "hd95_policy"] == 100.0

    raw = CohortEvaluator(policy=RAW_POLICY, progress=False, bootstrap=100).evaluate(setup["pairing"])
    raw_cases = _by_patient(raw.cases)
    assert raw_cases.loc["tiny_03", "hd95_policy"] == math.inf and not bool(raw_cases.loc["tiny_03", "policy_applied"])
    overall = raw.summary[(raw.summary.level == "overall")].set_index("metric")
    # never averaged silently: the missed lesion makes the HD95 mean infinite, the both-empty NaN is counted
    assert overall.loc["hd95", "n_nonfinite"] == 2 and not np.isfinite(overall.loc["hd95", "mean"])
    assert math.isnan(overall.loc["hd95", "ci_low"])


def test_summary_equals_pandas_on_cases_csv(setup):
    cases = pd.read_csv(setup["out"] / "cases.csv")
    summary = pd.read_csv(setup["out"] / "summary.csv")
    for center in ("center_a", "center_b"):
        group = cases[cases.center == center]
        values = group[group.status == "evaluated"]
        for metric in ("dsc", "hd95", "sensitivity"):
            row = summary[(summary.level == "center") & (summary.center == center) & (summary.metric == metric)]
            assert len(row) == 1
            row = row.iloc[0]
            v = values[f"{metric}_policy"]
            assert row.n_evaluated == len(v) and row.n_failed == int((group.status == "failed").sum())
            assert row["mean"] == pytest.approx(v.mean(), rel=1e-12)
            assert row["sd"] == pytest.approx(v.std(ddof=1), rel=1e-12)
            assert row["median"] == pytest.approx(v.median(), rel=1e-12)
            assert row["q1"] == pytest.approx(v.quantile(0.25), rel=1e-12, abs=1e-12)
            assert row["q3"] == pytest.approx(v.quantile(0.75), rel=1e-12, abs=1e-12)
            assert row["iqr"] == pytest.approx(v.quantile(0.75) - v.quantile(0.25), abs=1e-12)
    overall = summary[(summary.level == "overall") & (summary.metric == "dsc")].iloc[0]
    assert overall.n_evaluated == len(EVALUATED) and overall.n_failed == len(EXPECTED_FAILURES)
    document = json.loads((setup["out"] / "summary.json").read_text())
    assert document["n_evaluated"] == len(EVALUATED) and document["n_failed"] == len(EXPECTED_FAILURES)
    levels = {(g["level"], g["sequence"], g["center"]) for g in document["groups"]}
    assert levels == {("overall", "t2", "all"), ("center", "all", "center_a"), ("center", "all", "center_b")}
    assert {f["patient_id"] for f in document["failures"]} == set(EXPECTED_FAILURES)


def test_bootstrap_ci_contains_mean_and_is_seeded(setup):
    values = setup["result"].evaluated["dsc_policy"].to_numpy()
    first = bootstrap_mean_ci(values, resamples=1000, seed=7)
    assert first == bootstrap_mean_ci(values, resamples=1000, seed=7)
    assert first != bootstrap_mean_ci(values, resamples=1000, seed=8)
    assert first[0] <= values.mean() <= first[1] and first[0] < first[1]
    # the CI of a tight sample is narrower than that of a spread one
    rng = np.random.default_rng(0)
    tight, wide = rng.normal(0.8, 0.01, 40), rng.normal(0.8, 0.2, 40)
    assert np.diff(bootstrap_mean_ci(tight))[0] < np.diff(bootstrap_mean_ci(wide))[0]
    assert all(math.isnan(v) for v in bootstrap_mean_ci([0.5]))
    a = summarize(setup["result"].cases, resamples=300, seed=3)
    b = summarize(setup["result"].cases, resamples=300, seed=3)
    pd.testing.assert_frame_equal(a, b)
    finite = a[a.n_evaluated > 1]
    assert ((finite.ci_low <= finite["mean"] + 1e-12) & (finite["mean"] <= finite.ci_high + 1e-12)).all()


def test_summary_json_writes_nan_as_null_and_inf_as_text(tmp_path):
    cases = pd.DataFrame({"status": "evaluated", "sequence": "t2", "center": ["a", "a", "b"],
                          "dsc_policy": [0.5, 0.7, 0.9], "hd95_policy": [1.0, math.inf, 2.0]})
    records = summary_records(summarize(cases, metrics=("dsc", "hd95"), resamples=50))
    text = json_text({"groups": records})
    assert "NaN" not in text and '"nan"' not in text
    groups = {g["center"]: g["metrics"] for g in json.loads(text)["groups"]}
    assert groups["b"]["dsc"]["sd"] is None and groups["b"]["dsc"]["ci_low"] is None  # one case: undefined
    assert groups["all"]["hd95"]["mean"] == "inf" and groups["all"]["hd95"]["n_nonfinite"] == 1
    assert groups["all"]["dsc"]["mean"] == pytest.approx(0.7)


def test_parallel_workers_give_the_same_table(setup):
    parallel = CohortEvaluator(workers=2, progress=False, bootstrap=500).evaluate(setup["pairing"])
    pd.testing.assert_frame_equal(parallel.cases, setup["result"].cases)
    pd.testing.assert_frame_equal(parallel.summary, setup["result"].summary)


def test_folder_mode_pairs_by_file_name(tmp_path, setup):
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir()
    pred_dir.mkdir()
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    blob = np.zeros((16, 16, 4), bool)
    blob[4:10, 5:11, 1:3] = True
    other = np.zeros_like(blob)
    other[8:14, 2:6, 0:2] = True
    _save_like(ref_dir / "case_b.nii.gz", blob, affine)
    _save_like(ref_dir / "case_a.nii.gz", other, affine)
    _save_like(ref_dir / "case_c.nii.gz", blob, affine)
    _save_like(pred_dir / "case_a.nii.gz", other, affine)  # perfect
    _save_like(pred_dir / "case_b.nii.gz", np.roll(blob, 1, 0), affine)
    _save_like(pred_dir / "aaa_extra.nii.gz", blob, affine)  # sorts first: order-based pairing would misalign
    pairing = pair_folders(pred_dir, ref_dir)
    assert [c.case_id for c in pairing.cases] == ["case_a", "case_b", "case_c"]
    assert [Path(p).name for p in pairing.unpaired_predictions] == ["aaa_extra.nii.gz"]
    cases = CohortEvaluator(progress=False, bootstrap=0).evaluate(pairing).cases.set_index("case_id")
    assert cases.loc["case_a", "dsc_raw"] == 1.0
    expected = compute_case_metrics(np.roll(blob, 1, 0), blob, (1.0, 1.0, 2.0))
    assert cases.loc["case_b", "dsc_raw"] == expected["dsc"] and cases.loc["case_b", "hd95_raw"] == expected["hd95"]
    assert cases.loc["case_c", "failure"] == "missing_prediction"
    assert set(cases["center"]) == {"unknown"}

    # with cohort items: reference files named like the cohort's labels get their patient and center
    cohort_refs, cohort_preds = tmp_path / "cref", tmp_path / "cpred"
    cohort_refs.mkdir()
    cohort_preds.mkdir()
    for pid in ("tiny_05", "tiny_06"):
        name = f"{pid}_t2_seg.nii.gz"
        shutil.copy(setup["root"] / "labels" / name, cohort_refs / name)
        shutil.copy(setup["pred"] / name, cohort_preds / name)
    paired = pair_folders(cohort_preds, cohort_refs, cohort_items=setup["items"])
    info = {c.patient_id: (c.center, c.sequence) for c in paired.cases}
    assert info == {"tiny_05": ("center_b", "t2"), "tiny_06": ("center_a", "t2")}


def test_report_html_is_self_contained_and_lists_failures(setup):
    text = (setup["out"] / "report.html").read_text()
    for pid, (kind, _) in EXPECTED_FAILURES.items():
        row = re.search(rf"<tr><td>{pid}_t2</td><td>{pid}</td>.*?</tr>", text)
        assert row and kind in row.group(0), pid
    assert "prediction file does not exist" in text and "affine mismatch" in text
    sources = re.findall(r'src="([^"]*)"', text)
    assert len(sources) == len(METRICS) + 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "373.13" in text and "HD95 pooled" in text and "bootstrap" in text
    for name in ("best", "median", "worst"):
        png = (setup["out"] / "figures" / f"overlay_{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG")
    # best = highest DSC among cases with a lesion (tiny_07, both masks empty, scores 1 but shows nothing),
    # worst = the missed lesion
    evaluated = setup["result"].evaluated.set_index("patient_id")
    best = evaluated.drop(index="tiny_07")["dsc_policy"].idxmax()
    assert evaluated.loc["tiny_07", "dsc_policy"] == 1.0 and evaluated.loc[best, "dsc_policy"] < 1.0
    assert re.search(rf"best: {best}_t2 .*DSC {evaluated.loc[best, 'dsc_policy']:.3f}", text)
    assert "tiny_07_t2 (" not in text.split("<h2>All cases</h2>")[0]
    assert re.search(r"worst: tiny_03_t2 .*DSC 0\.000", text)


def test_hd95_plot_draws_the_empty_mask_penalty_above_a_broken_axis(setup):
    from evaluation.reports.segmentation import metric_plot_figure

    evaluated = setup["result"].evaluated
    penalty = evaluated.loc[evaluated.patient_id == "tiny_03", "hd95_policy"].item()
    assert penalty == pytest.approx(373.13)
    others = evaluated.loc[evaluated.patient_id != "tiny_03", "hd95_policy"]
    fig = metric_plot_figure(evaluated, "hd95", "brats")
    top, boxes = fig.axes
    assert boxes.get_ylim()[1] < 2 * others.max() < penalty  # the boxes are not flattened by the penalty
    drawn_top = np.concatenate([c.get_offsets()[:, 1] for c in top.collections])
    drawn_boxes = np.concatenate([c.get_offsets()[:, 1] for c in boxes.collections])
    np.testing.assert_allclose(drawn_top, [penalty])
    np.testing.assert_allclose(sorted(drawn_boxes), sorted(others))
    assert any("1 one empty" in t.get_text() for t in boxes.get_xticklabels())
    assert len(metric_plot_figure(evaluated, "dsc", "brats").axes) == 1  # overlap metrics: no break


def test_summary_rows_add_information_only(setup):
    cases = setup["result"].cases.copy()
    one_center = cases.assign(center="center_a")
    levels = summarize(one_center, ("dsc",), resamples=0)[["level", "sequence", "center"]]
    assert levels.values.tolist() == [["overall", "t2", "center_a"]]
    three_sequences = pd.concat([one_center.assign(sequence=s, case_id=one_center.case_id + s)
                                 for s in ("t1c", "t2", "flair")])
    levels = summarize(three_sequences, ("dsc",), resamples=0)[["level", "sequence", "center"]]
    assert levels.values.tolist() == [["overall", "all", "center_a"], ["sequence", "flair", "all"],
                                      ["sequence", "t1c", "all"], ["sequence", "t2", "all"]]
    second_center = three_sequences.assign(center="center_b", case_id=three_sequences.case_id + "b")
    both = pd.concat([three_sequences, second_center])
    assert len(summarize(both, ("dsc",), resamples=0)) == 1 + 3 + 2 + 6


def test_atomic_writes_leave_no_temp_files(setup, tmp_path, monkeypatch):
    leftovers = [p for p in setup["out"].rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []
    assert {p.name for p in setup["out"].iterdir()} == {"cases.csv", "summary.csv", "summary.json", "report.html",
                                                        "figures"}
    target = tmp_path / "file.txt"
    atomic_write_bytes(target, b"old")

    def fail(*_):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_dmg_evaluate_cli_end_to_end(setup, tmp_path, capsys):
    from pipeline.cli import main

    out = tmp_path / "cli_report"
    rc = main(["evaluate", "--pred", str(setup["pred"]), "--cohort", str(setup["manifest"]), "--sequence", "t2",
               "--out", str(out), "--workers", "1", "--bootstrap", "200"])
    printed = capsys.readouterr().out
    assert rc == 0
    assert f"{N_PATIENTS} cases: {len(EVALUATED)} evaluated, {len(EXPECTED_FAILURES)} failed" in printed
    for pid in ("tiny_00", "tiny_01", "tiny_02"):
        assert re.search(rf"FAILED {pid}_t2 .*{EXPECTED_FAILURES[pid][0]}", printed), pid
    # the cohort loader already rejects the non-mask reference: reported as a cohort issue
    assert re.search(r"FAILED tiny_08_t2 .*cohort_issue.*not a mask", printed)
    assert re.search(r"center_a\s+\d+\s+\d+\s+[\d.]+ ± ", printed)
    assert str(out / "report.html") in printed
    cases = pd.read_csv(out / "cases.csv")
    assert sorted(cases.loc[cases.status == "evaluated", "patient_id"]) == EVALUATED
    assert cases.set_index("patient_id").loc["tiny_05", "image_path"].endswith("images/tiny_05_t2.nii.gz")

    # nothing evaluable -> exit 1; bad arguments -> exit 2 with a message
    empty = tmp_path / "empty_pred"
    empty.mkdir()
    assert main(["evaluate", "--pred", str(empty), "--cohort", str(setup["manifest"]), "--sequence", "t2",
                 "--out", str(tmp_path / "r1"), "--workers", "1", "--bootstrap", "0"]) == 1
    assert main(["evaluate", "--pred", str(tmp_path / "nope"), "--ref", str(empty), "--out", str(tmp_path / "r2")]) == 2
    assert main(["evaluate", "--pred", str(empty), "--cohort", str(setup["manifest"]), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "nope: no such folder" in err and "--cohort needs --sequence" in err


def test_evaluation_package_never_imports_pipeline():
    package = Path(__file__).resolve().parents[2] / "evaluation"
    offenders = [p.name for p in package.rglob("*.py")
                 if re.search(r"^\s*(from|import)\s+pipeline\b", p.read_text(), re.MULTILINE)]
    assert offenders == []


def test_evaluate_checks_the_output_folder_before_computing(setup, tmp_path, monkeypatch, capsys):
    import errno
    import tempfile

    from evaluation import cohort_evaluator
    from pipeline.cli import main

    out = tmp_path / "report"
    real = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS))
        return real(*args, dir=dir, **kwargs)

    computed = []
    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(cohort_evaluator, "evaluate_case", lambda *a: computed.append(a))
    assert main(["evaluate", "--pred", str(setup["pred"]), "--cohort", str(setup["manifest"]), "--sequence", "t2",
                 "--out", str(out), "--workers", "1"]) == 2
    assert capsys.readouterr().err == (f"dmg evaluate: error: {out}: Read-only file system (output folder not "
                                       "writable)\n")
    assert computed == []


def test_disk_full_while_writing_the_report_is_one_line_and_leaves_no_partial_file(setup, tmp_path, monkeypatch,
                                                                                   capsys):
    import errno

    from pipeline.cli import main

    out = tmp_path / "report"
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def fdopen(fd, mode="r", *args, **kwargs):
        f = real_fdopen(fd, mode, *args, **kwargs)
        return FullDisk(f) if "w" in mode and not out.joinpath("cases.csv").exists() else f

    monkeypatch.setattr(os, "fdopen", fdopen)
    assert main(["evaluate", "--pred", str(setup["pred"]), "--cohort", str(setup["manifest"]), "--sequence", "t2",
                 "--out", str(out), "--workers", "1", "--bootstrap", "10"]) == 2
    err = capsys.readouterr().err
    assert err.endswith(f"dmg evaluate: error: {out / 'cases.csv'}: No space left on device (disk full); nothing "
                        "half-written was left behind\n"), err
    assert "Traceback" not in err and list(out.iterdir()) == []


def test_a_symlink_loop_fails_that_case_only(setup, tmp_path):
    pred = tmp_path / "pred"
    shutil.copytree(setup["pred"], pred)
    (pred / "tiny_05_t2_seg.nii.gz").unlink()
    (pred / "loop").symlink_to("tiny_05_t2_seg.nii.gz")
    (pred / "tiny_05_t2_seg.nii.gz").symlink_to("loop")
    result = CohortEvaluator(workers=1, progress=False, bootstrap=0).evaluate(pair_cohort(pred, setup["items"]))
    cases = _by_patient(result.cases)
    assert cases.loc["tiny_05", "failure"] == "missing_prediction"
    assert "cannot be accessed (Too many levels of symbolic links)" in cases.loc["tiny_05", "reason"]
    assert sorted(cases.index[cases.status == "evaluated"]) == [p for p in EVALUATED if p != "tiny_05"]


def test_a_prediction_that_is_the_reference_file_is_not_scored(setup, tmp_path):
    labels = setup["root"] / "labels"
    result = CohortEvaluator(workers=1, progress=False, bootstrap=0).evaluate(pair_cohort(labels, setup["items"]))
    cases = _by_patient(result.cases)
    assert set(cases.failure[cases.index != "tiny_08"]) == {"prediction_is_reference"}
    assert result.n_evaluated == 0 and "DSC 1" in cases.loc["tiny_03", "reason"]


def test_folder_mode_reports_a_looping_reference_instead_of_dropping_it(setup, tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    for pid in ("tiny_04", "tiny_05"):
        shutil.copy(setup["root"] / "labels" / f"{pid}_t2_seg.nii.gz", refs)
    (refs / "tiny_06_t2_seg.nii.gz").symlink_to("loop")
    (refs / "loop").symlink_to("tiny_06_t2_seg.nii.gz")
    result = CohortEvaluator(workers=1, progress=False, bootstrap=0).evaluate(pair_folders(setup["pred"], refs))
    cases = result.cases.set_index("case_id")
    assert sorted(cases.index) == ["tiny_04_t2_seg", "tiny_05_t2_seg", "tiny_06_t2_seg"]
    assert cases.loc["tiny_06_t2_seg", "failure"] == "missing_reference"
    assert "Too many levels of symbolic links" in cases.loc["tiny_06_t2_seg", "reason"]
    assert result.n_evaluated == 2


@pytest.mark.parametrize("old, new", [("report", "segmentation"), ("classification_report", "classification"),
                                      ("html", "html"), ("slice_figures", "slice_figures")])
def test_report_modules_live_only_in_evaluation_reports(old, new):
    import importlib

    importlib.import_module(f"evaluation.reports.{new}")
    with pytest.raises(ModuleNotFoundError):  # the one-release aliases at the top of evaluation are gone
        importlib.import_module(f"evaluation.{old}")
