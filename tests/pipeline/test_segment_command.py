"""``dmg segment``: a tiny untrained generator in a copy of the real bundle config, run over the tiny cohort."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from monai.bundle import run as run_bundle

from pipeline.cli import main
from pipeline.inference import is_torchscript_file, load_segmentation_model, parse_overrides
from pipeline.inference.model import SegmentationModel
from pipeline.networks import build_generator
from transforms import build_transforms

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "dmg_mscg_segmentation"
FEATURES = [4, 8, 16]
TINY_SET = ["--set", "features=[4,8,16]", "spatial_size=32", "sw_batch_size=8"]

pytestmark = pytest.mark.usefixtures("single_thread")


def _tiny_generator(cohort_dir: Path) -> torch.nn.Module:
    """Random tiny generator whose head bias is centred on one patient's median logit, so masks hold 0s and 1s."""
    torch.manual_seed(0)
    net = build_generator("MSCG", features=FEATURES).eval()
    volume = build_transforms("infer", spatial_size=32)({"image": str(cohort_dir / "images" / "tiny_00_t2.nii.gz")})
    with torch.no_grad():
        logits = net(volume["image"].as_tensor().permute(3, 0, 1, 2))
        net.head.bias -= logits.median()
    return net


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, tiny_cohort: Path) -> Path:
    """A bundle folder with the repository's configs/ and a tiny generator as models/model_t2.pt."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("segment_bundle")
    shutil.copytree(BUNDLE / "configs", root / "configs")
    if (BUNDLE / "scripts").is_dir():  # the code the bundle's configs name (carried for MONAI-only recipients)
        shutil.copytree(BUNDLE / "scripts", root / "scripts")
    (root / "models").mkdir()
    net = _tiny_generator(tiny_cohort.parent)
    torch.save(net.state_dict(), root / "models" / "model_t2.pt")
    torch.jit.script(net).save(str(root / "scripted.ts"))  # outside models/: used with --model
    return root


def _segment(bundle: Path, cohort: Path, out: Path, *extra: str, sequence: str = "t2") -> int:
    return main(["segment", "--bundle", str(bundle), "--cohort", str(cohort), "--sequence", sequence,
                 "--out", str(out), "--device", "cpu", *TINY_SET, *extra])


def _masks(out: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asanyarray(nib.load(p).dataobj) for p in sorted(out.glob("*_seg.nii.gz"))}


def _report(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "segment_report.csv", keep_default_na=False).set_index("patient_id")


def _assert_no_temp_files(out: Path) -> None:
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert not leftovers, leftovers


@pytest.fixture(scope="module")
def pytorch_run(bundle: Path, tiny_cohort: Path, tmp_path_factory) -> tuple[Path, int, str]:
    """One run of the state-dict model over the whole tiny cohort: (output folder, exit code, stdout)."""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("pred_pytorch")
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        rc = _segment(bundle, tiny_cohort, out)
    return out, rc, stdout.getvalue()


def test_segments_every_patient_on_the_input_grid(pytorch_run, tiny_cohort: Path):
    out, rc, stdout = pytorch_run
    manifest = pd.read_csv(tiny_cohort)
    assert rc == 0
    assert stdout.splitlines()[0].startswith("t2: 8 segmented, 0 reused, 0 skipped, 0 failed of 8 patients")
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{pid}_t2_seg.nii.gz" for pid in manifest.patient_id] + ["segment_report.csv", "segment_model_t2.json"])
    values = set()
    for row in manifest.itertuples():
        image = nib.load(tiny_cohort.parent / row.t2)
        mask = nib.load(out / f"{row.patient_id}_t2_seg.nii.gz")
        data = np.asanyarray(mask.dataobj)
        assert data.shape == image.shape and data.dtype == np.uint8
        np.testing.assert_allclose(mask.affine, image.affine, atol=1e-6)
        for code in ("qform_code", "sform_code"):
            assert mask.header[code] == image.header[code], code
        assert set(np.unique(data)) <= {0, 1}
        values |= set(np.unique(data).tolist())
    assert values == {0, 1}, "masks are all empty or all full: the comparisons below would prove nothing"
    report = _report(out)
    assert list(report.index) == list(manifest.patient_id) and set(report.status) == {"done"}
    assert (report.seconds > 0).all()
    _assert_no_temp_files(out)


def test_same_masks_as_the_bundle_inference_config(pytorch_run, bundle: Path, tiny_cohort: Path, tmp_path: Path):
    out, _, _ = pytorch_run
    config = bundle / "configs"
    run_bundle(config_file=str(config / "inference.json"), meta_file=str(config / "metadata.json"),
               logging_file=str(config / "logging.conf"), bundle_root=str(bundle),
               dataset_dir=str(tiny_cohort.parent), output_dir=str(tmp_path), features=FEATURES, spatial_size=32,
               num_workers=0)
    ours, theirs = _masks(out), _masks(tmp_path)
    assert sorted(ours) == sorted(theirs) and len(ours) == 8
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


def test_torchscript_model_gives_identical_masks(pytorch_run, bundle: Path, tiny_cohort: Path, tmp_path: Path):
    out, _, _ = pytorch_run
    assert _segment(bundle, tiny_cohort, tmp_path / "ts", "--model", str(bundle / "scripted.ts")) == 0
    ours, scripted = _masks(out), _masks(tmp_path / "ts")
    assert sorted(ours) == sorted(scripted) and len(ours) == 8
    for name in ours:
        np.testing.assert_array_equal(ours[name], scripted[name], err_msg=name)
    _assert_no_temp_files(tmp_path / "ts")


def test_model_file_resolution(bundle: Path, tmp_path: Path):
    overrides = parse_overrides(TINY_SET[1:])
    assert load_segmentation_model(bundle, "t2", device="cpu", overrides=overrides).kind == "pytorch"
    # a bundle with only models/model_t2.ts falls back to it; TorchScript is recognised by content, not name
    ts_only = tmp_path / "ts_bundle"
    shutil.copytree(bundle / "configs", ts_only / "configs")
    shutil.copytree(bundle / "scripts", ts_only / "scripts")
    (ts_only / "models").mkdir()
    shutil.copy(bundle / "scripted.ts", ts_only / "models" / "model_t2.ts")
    model = load_segmentation_model(ts_only, "t2", device="cpu", overrides=overrides)
    assert model.kind == "torchscript" and model.model_file.name == "model_t2.ts"
    shutil.copy(bundle / "scripted.ts", tmp_path / "scripted_named.pt")
    assert is_torchscript_file(tmp_path / "scripted_named.pt")
    assert not is_torchscript_file(bundle / "models" / "model_t2.pt")
    assert load_segmentation_model(bundle, "t2", tmp_path / "scripted_named.pt", "cpu", overrides).kind == "torchscript"


def _copy_cohort(tiny_cohort: Path, dest: Path) -> Path:
    shutil.copytree(tiny_cohort.parent, dest)
    return dest / tiny_cohort.name


def test_unreadable_inputs_are_skipped_and_reported(bundle: Path, tiny_cohort: Path, tmp_path: Path, capsys):
    manifest = _copy_cohort(tiny_cohort, tmp_path / "cohort")
    images = manifest.parent / "images"
    (images / "tiny_02_t2.nii.gz").write_bytes(b"not a nifti at all")  # caught by the cohort check
    whole = (images / "tiny_05_t2.nii.gz").read_bytes()
    (images / "tiny_05_t2.nii.gz").write_bytes(whole[: len(whole) // 2])  # header fine, data truncated
    nan_image = nib.load(images / "tiny_06_t2.nii.gz")
    data = nan_image.get_fdata().astype(np.float32)
    data[10, 10, 3] = np.nan
    nib.save(nib.Nifti1Image(data, nan_image.affine), str(images / "tiny_06_t2.nii.gz"))
    out = tmp_path / "pred"
    capsys.readouterr()
    assert _segment(bundle, manifest, out) == 0
    stdout = capsys.readouterr().out
    assert stdout.splitlines()[0].startswith("t2: 5 segmented, 0 reused, 3 skipped, 0 failed of 8 patients")
    report = _report(out)
    broken = ["tiny_02", "tiny_05", "tiny_06"]
    assert list(report.index[report.status == "skipped"]) == broken
    assert "unreadable NIfTI" in report.reason["tiny_02"]
    assert "cannot read or preprocess" in report.reason["tiny_05"]
    assert "NaN" in report.reason["tiny_06"]
    for pid in broken:
        assert f"SKIPPED patient '{pid}': {images / f'{pid}_t2.nii.gz'}" in stdout
        assert not (out / f"{pid}_t2_seg.nii.gz").exists()
    assert len(list(out.glob("*_seg.nii.gz"))) == 5
    _assert_no_temp_files(out)


def test_a_failing_patient_is_reported_and_the_run_goes_on(bundle: Path, tiny_cohort: Path, tmp_path: Path,
                                                           monkeypatch, capsys):
    predict = SegmentationModel.predict

    def flaky(self, data):
        if data["patient_id"] == "tiny_03":
            raise RuntimeError("simulated out of memory")
        return predict(self, data)

    monkeypatch.setattr(SegmentationModel, "predict", flaky)
    out = tmp_path / "pred"
    assert _segment(bundle, tiny_cohort, out) == 0
    assert "FAILED patient 'tiny_03'" in capsys.readouterr().out
    report = _report(out)
    assert report.status["tiny_03"] == "failed" and "simulated out of memory" in report.reason["tiny_03"]
    assert (report.status == "done").sum() == 7 and not (out / "tiny_03_t2_seg.nii.gz").exists()


def test_second_run_reuses_a_corrupt_output_is_redone_and_overwrite_redoes_all(
        pytorch_run, bundle: Path, tiny_cohort: Path, tmp_path: Path, capsys):
    out = tmp_path / "pred"
    shutil.copytree(pytorch_run[0], out)
    names = sorted(p.name for p in out.glob("*_seg.nii.gz"))
    before = {n: (out / n).stat().st_mtime_ns for n in names}
    capsys.readouterr()
    assert _segment(bundle, tiny_cohort, out) == 0
    assert capsys.readouterr().out.startswith("t2: 0 segmented, 8 reused, 0 skipped, 0 failed")
    assert {n: (out / n).stat().st_mtime_ns for n in names} == before
    assert set(_report(out).status) == {"reused"}

    (out / "tiny_04_t2_seg.nii.gz").write_bytes(b"half-written garbage")  # not a readable NIfTI: redone
    assert _segment(bundle, tiny_cohort, out) == 0
    report = _report(out)
    assert report.status["tiny_04"] == "done" and (report.status == "reused").sum() == 7
    np.testing.assert_array_equal(_masks(out)["tiny_04_t2_seg.nii.gz"], _masks(pytorch_run[0])["tiny_04_t2_seg.nii.gz"])

    for n in names:
        os.utime(out / n, ns=(10**18, 10**18))
    assert _segment(bundle, tiny_cohort, out, "--overwrite") == 0
    assert set(_report(out).status) == {"done"}
    assert all((out / n).stat().st_mtime_ns != 10**18 for n in names)
    _assert_no_temp_files(out)


def test_resuming_with_another_model_is_refused_unless_overwrite(
        pytorch_run, bundle: Path, tiny_cohort: Path, tmp_path: Path, capsys):
    out = tmp_path / "pred"
    shutil.copytree(pytorch_run[0], out)
    record = json.loads((out / "segment_model_t2.json").read_text())
    assert record["sha256"] == hashlib.sha256((bundle / "models" / "model_t2.pt").read_bytes()).hexdigest()
    other = tmp_path / "other_t2.pt"
    torch.manual_seed(7)
    torch.save(build_generator("MSCG", features=FEATURES).state_dict(), other)
    before = _masks(out)
    capsys.readouterr()
    assert _segment(bundle, tiny_cohort, out, "--model", str(other)) == 2
    err = capsys.readouterr().err
    assert "holds t2 masks made by" in err and "--overwrite" in err
    assert all(np.array_equal(before[n], m) for n, m in _masks(out).items())  # nothing touched
    # the same weights under another threshold would make other masks too
    assert _segment(bundle, tiny_cohort, out, "--set", "threshold=0.9") == 2
    assert _segment(bundle, tiny_cohort, out, "--model", str(other), "--overwrite") == 0
    assert set(_report(out).status) == {"done"}
    assert json.loads((out / "segment_model_t2.json").read_text())["model_file"] == str(other.resolve())


def test_nothing_segmented_exits_1(bundle: Path, tiny_cohort: Path, tmp_path: Path, capsys):
    out = tmp_path / "pred"
    rc = _segment(bundle, tiny_cohort, out, "--model", str(bundle / "models" / "model_t2.pt"), sequence="flair")
    assert rc == 1
    assert capsys.readouterr().out.startswith("flair: 0 segmented, 0 reused, 8 skipped, 0 failed")
    assert set(_report(out).reason) == {"no flair image in the cohort"}


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("no_bundle", "missing_bundle does not exist"),
        ("no_config", "configs/inference.json does not exist"),
        ("no_model", "neither {root}/models/model_t2.pt nor {root}/models/model_t2.ts exists"),
        ("wrong_width", "model_t2.pt: the weights do not fit the bundle's network_def"),
        ("unknown_key", "unknown config key 'featurs'"),
        ("reserved_key", "set 'sequence' with --sequence"),
        ("garbage_model", "garbage.pt: cannot load the weights"),
    ],
)
def test_errors_name_the_problem(case: str, expected: str, bundle: Path, tiny_cohort: Path, tmp_path: Path, capsys):
    root, extra, tiny = bundle, [], True
    if case == "no_bundle":
        root = tmp_path / "missing_bundle"
    elif case == "no_config":
        root = tmp_path / "empty_bundle"
        root.mkdir()
    elif case == "no_model":
        root = tmp_path / "no_model"
        shutil.copytree(bundle / "configs", root / "configs")
        shutil.copytree(bundle / "scripts", root / "scripts")
    elif case == "wrong_width":
        tiny = False
    elif case == "unknown_key":
        extra = ["--set", "featurs=[4,8,16]"]
    elif case == "reserved_key":
        extra = ["--set", "sequence=flair"]
    elif case == "garbage_model":
        (tmp_path / "garbage.pt").write_bytes(b"\x00" * 64)
        extra = ["--model", str(tmp_path / "garbage.pt")]
    args = ["segment", "--bundle", str(root), "--cohort", str(tiny_cohort), "--sequence", "t2",
            "--out", str(tmp_path / "pred"), "--device", "cpu", *(TINY_SET if tiny else []), *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected.format(root=root) in err, err
    assert not (tmp_path / "pred").exists()


def test_parse_overrides():
    assert parse_overrides(["features=[4,8,16]", "spatial_size=32", "threshold=0.3", "variant=MSCG-Dis",
                            "amp=true", "inferer#sw_batch_size=4"]) == {
        "features": [4, 8, 16], "spatial_size": 32, "threshold": 0.3, "variant": "MSCG-Dis", "amp": True,
        "inferer#sw_batch_size": 4}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["features"])


# ----------------------------------------------------------------------------- output folder: refusal, lock, resume


class NotATensor:
    """A pickled class: torch.load(weights_only=True) refuses it."""


def _error_lines(stderr: str) -> list[str]:
    """The CLI's error lines (stderr also carries progress bars)."""
    return [line for line in stderr.splitlines() if line.startswith("dmg ")]


def test_refuses_the_cohorts_label_folder_even_with_overwrite(bundle: Path, tiny_cohort: Path, tmp_path: Path, capsys):
    manifest = _copy_cohort(tiny_cohort, tmp_path / "cohort")
    labels = manifest.parent / "labels"
    before = {p.name: p.read_bytes() for p in labels.iterdir()}
    for extra in ((), ("--overwrite",)):
        assert _segment(bundle, manifest, labels, *extra) == 2
        err = capsys.readouterr().err
        assert "holds the cohort's own input images or reference labels" in _error_lines(err)[0], err
        assert {p.name: p.read_bytes() for p in labels.iterdir()} == before  # ground truth untouched
    assert _segment(bundle, manifest, manifest.parent) == 2  # the cohort folder holds them too (below it)


def test_refuses_a_folder_with_files_it_did_not_write(bundle: Path, tiny_cohort: Path, tmp_path: Path, capsys):
    out = tmp_path / "pred"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert _segment(bundle, tiny_cohort, out) == 2
    assert "holds files dmg segment did not write (notes.txt)" in capsys.readouterr().err
    (out / "notes.txt").unlink()
    # masks named like predictions but from no recorded dmg segment run (e.g. copied references)
    shutil.copy(tiny_cohort.parent / "labels" / "tiny_00_t2_seg.nii.gz", out)
    assert _segment(bundle, tiny_cohort, out, "--overwrite") == 2
    assert "tiny_00_t2_seg.nii.gz" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["tiny_00_t2_seg.nii.gz"]


def test_resume_redoes_masks_with_another_affine_or_non_binary_values(pytorch_run, bundle: Path, tiny_cohort: Path,
                                                                      tmp_path: Path):
    out = tmp_path / "pred"
    shutil.copytree(pytorch_run[0], out)
    good = _masks(pytorch_run[0])
    shifted = nib.load(out / "tiny_01_t2_seg.nii.gz")
    affine = shifted.affine.copy()
    affine[0, 3] += 3.0
    nib.save(nib.Nifti1Image(np.full(shifted.shape, 0.7, np.float32), affine), str(out / "tiny_01_t2_seg.nii.gz"))
    ref = nib.load(out / "tiny_02_t2_seg.nii.gz")
    nib.save(nib.Nifti1Image(np.full(ref.shape, 2, np.uint8), ref.affine), str(out / "tiny_02_t2_seg.nii.gz"))
    assert _segment(bundle, tiny_cohort, out) == 0
    report = _report(out)
    assert report.status["tiny_01"] == "done" and "affine other than the input's" in report.reason["tiny_01"]
    assert report.status["tiny_02"] == "done" and "not a binary mask" in report.reason["tiny_02"]
    assert (report.status == "reused").sum() == 6
    for name in ("tiny_01_t2_seg.nii.gz", "tiny_02_t2_seg.nii.gz"):
        np.testing.assert_array_equal(_masks(out)[name], good[name])
        np.testing.assert_allclose(nib.load(out / name).affine, nib.load(pytorch_run[0] / name).affine)


def test_a_second_run_is_refused_with_the_holder_and_a_dead_runs_lock_is_taken_over(
        pytorch_run, bundle: Path, tiny_cohort: Path, tmp_path: Path, capsys):
    import socket
    import subprocess
    import sys

    from pipeline.inference.output_folder import LOCK_NAME

    out = tmp_path / "pred"
    shutil.copytree(pytorch_run[0], out)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        holder = {"pid": live.pid, "host": socket.gethostname(), "started": "2026-01-02 03:04:05 UTC",
                  "command": "dmg segment ..."}
        (out / LOCK_NAME).write_text(json.dumps(holder))
        before = (out / "segment_report.csv").read_bytes()
        assert _segment(bundle, tiny_cohort, out, "--overwrite") == 2
        err = capsys.readouterr().err
        assert f"in use by another dmg segment run (pid {live.pid} on host {socket.gethostname()}, " \
               "started 2026-01-02 03:04:05 UTC" in err, err
        assert (out / "segment_report.csv").read_bytes() == before
    finally:
        live.kill()
        live.wait()
    # the holder is dead now: its lock is stale and taken over; ours is removed at the end
    assert _segment(bundle, tiny_cohort, out) == 0
    assert not (out / LOCK_NAME).exists()
    assert set(_report(out).status) == {"reused"}


def test_lock_is_exclusive_between_two_holders(tmp_path: Path):
    from pipeline.inference.output_folder import FolderInUseError, OutputFolderLock

    with OutputFolderLock(tmp_path) as first:
        with pytest.raises(FolderInUseError, match=f"pid {os.getpid()}"):
            OutputFolderLock(tmp_path).acquire()
        assert first.held
    assert list(tmp_path.iterdir()) == []


def test_report_keeps_the_rows_of_other_sequences(pytorch_run, bundle: Path, tiny_cohort: Path, tmp_path: Path):
    out = tmp_path / "pred"
    shutil.copytree(pytorch_run[0], out)
    model = str(bundle / "models" / "model_t2.pt")
    assert _segment(bundle, tiny_cohort, out, "--model", model, sequence="flair") == 1  # no flair images
    table = pd.read_csv(out / "segment_report.csv", keep_default_na=False)
    assert list(table.columns[:3]) == ["patient_id", "sequence", "status"]
    assert table.groupby("sequence").status.apply(set).to_dict() == {"t2": {"done"}, "flair": {"skipped"}}
    assert _segment(bundle, tiny_cohort, out) == 0
    table = pd.read_csv(out / "segment_report.csv", keep_default_na=False)
    assert table.groupby("sequence").status.apply(set).to_dict() == {"t2": {"reused"}, "flair": {"skipped"}}
    assert len(table) == 16


# ----------------------------------------------------------------------------- faults: one line, nothing half-written


def test_disk_full_while_writing_a_mask_stops_in_one_line(bundle: Path, tiny_cohort: Path, tmp_path: Path,
                                                          monkeypatch, capsys):
    import errno

    from pipeline.inference import segmenter

    real = segmenter.save_nifti_gz
    written = []

    def fill_up(path, img):
        if len(written) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a full disk raises it from write()
        written.append(path)
        return real(path, img)

    monkeypatch.setattr(segmenter, "save_nifti_gz", fill_up)
    out = tmp_path / "pred"
    assert _segment(bundle, tiny_cohort, out) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "tiny_03_t2_seg.nii.gz: No space left on device (disk full)" in _error_lines(err)[0]
    assert sorted(p.name for p in out.glob("*_seg.nii.gz")) == ["tiny_00_t2_seg.nii.gz", "tiny_01_t2_seg.nii.gz",
                                                                "tiny_02_t2_seg.nii.gz"]
    _assert_no_temp_files(out)
    assert list(_report(out).status) == ["done"] * 3


def test_read_only_output_folder_is_reported_before_any_work(bundle: Path, tiny_cohort: Path, tmp_path: Path,
                                                              monkeypatch, capsys):
    import errno
    import tempfile

    out = tmp_path / "pred"
    out.mkdir()
    real = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == out:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(Path(dir) / ".x.tmp"))
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    called = []
    monkeypatch.setattr(SegmentationModel, "preprocess", lambda *a, **k: called.append(1))
    assert _segment(bundle, tiny_cohort, out) == 2
    err = capsys.readouterr().err
    assert f"dmg segment: error: {out}: Read-only file system (output folder not writable)" in err
    assert not called and list(out.iterdir()) == []


def test_weights_refused_by_weights_only_give_the_cause_without_torchs_advice(bundle: Path, tiny_cohort: Path,
                                                                            tmp_path: Path, capsys):
    pickled = tmp_path / "pickled.pt"
    torch.save({"state": NotATensor()}, pickled)  # a class weights_only does not allow
    assert _segment(bundle, tiny_cohort, tmp_path / "pred", "--model", str(pickled)) == 2
    err = capsys.readouterr().err
    assert _error_lines(err) == [err.strip()]
    assert f"{pickled}: cannot load the weights: torch.load(weights_only=True) refused it: " in err
    assert "Unsupported global: GLOBAL tests.pipeline.test_segment_command.NotATensor" in err
    assert "`False`" not in err and "trust" not in err and "add_safe_globals" not in err


def test_unexpected_errors_are_one_line_and_debug_shows_the_traceback(bundle: Path, tiny_cohort: Path,
                                                                      tmp_path: Path, monkeypatch, capsys):
    from pipeline.inference import CohortSegmenter

    def boom(self, cohort):
        raise KeyError("surprise")

    monkeypatch.setattr(CohortSegmenter, "run", boom)
    assert _segment(bundle, tiny_cohort, tmp_path / "pred") == 2
    err = capsys.readouterr().err
    assert err == "dmg segment: error: KeyError: 'surprise'\n"
    assert main(["--debug", "segment", "--bundle", str(bundle), "--cohort", str(tiny_cohort), "--sequence", "t2",
                 "--out", str(tmp_path / "pred"), "--device", "cpu", *TINY_SET]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.endswith("dmg segment: error: KeyError: 'surprise'\n")


def test_a_symlink_loop_skips_that_patient_only(bundle: Path, tiny_cohort: Path, tmp_path: Path):
    manifest = _copy_cohort(tiny_cohort, tmp_path / "cohort")
    images = manifest.parent / "images"
    os.symlink("loop_b", images / "loop_a")
    os.symlink("loop_a", images / "loop_b")
    table = pd.read_csv(manifest)
    table.loc[table.patient_id == "tiny_03", "t2"] = "images/loop_a/tiny_03_t2.nii.gz"
    table.to_csv(manifest, index=False)
    out = tmp_path / "pred"
    assert _segment(bundle, manifest, out) == 0
    report = _report(out)
    assert report.status["tiny_03"] == "skipped" and "symbolic links" in report.reason["tiny_03"]
    assert (report.status == "done").sum() == 7


# ----------------------------------------------------------------------------- DICOM series input


def test_dicom_series_inputs_get_nifti_masks_on_the_series_grid_and_evaluate(pytorch_run, bundle: Path,
                                                                            tiny_cohort: Path, tmp_path: Path):
    from tests.helpers import dicom_cohort

    manifest = dicom_cohort(tiny_cohort, tmp_path, patients=("tiny_00", "tiny_01"))
    out = tmp_path / "pred"
    assert _segment(bundle, manifest, out) == 0
    report = _report(out)
    assert set(report.status) == {"done"} and report.image["tiny_01"].endswith("dicom/tiny_01")
    for pid in ("tiny_00", "tiny_01"):  # the series' grid is the NIfTI's it was written from (round trip)
        mask = nib.load(out / f"{pid}_t2_seg.nii.gz")
        source = nib.load(tiny_cohort.parent / "images" / f"{pid}_t2.nii.gz")
        assert mask.shape == source.shape and np.asanyarray(mask.dataobj).dtype == np.uint8
        np.testing.assert_allclose(mask.affine, source.affine, atol=1e-4)
        # same masks as from the NIfTI, up to the int16 rounding of the DICOM pixel data
        agreement = (np.asanyarray(mask.dataobj) == _masks(pytorch_run[0])[f"{pid}_t2_seg.nii.gz"]).mean()
        assert agreement > 0.97, agreement
    evaluation = tmp_path / "eval"
    assert main(["evaluate", "--pred", str(out), "--cohort", str(manifest), "--sequence", "t2", "--out",
                 str(evaluation), "--workers", "1", "--bootstrap", "10"]) == 0
    cases = pd.read_csv(evaluation / "cases.csv").set_index("patient_id")
    assert cases.status["tiny_00"] == "evaluated" and cases.status["tiny_01"] == "evaluated"
    assert cases.image_path["tiny_00"].endswith("dicom/tiny_00")
