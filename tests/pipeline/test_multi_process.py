"""Scale-out with ``torchrun``: 2 gloo processes on CPU give every patient's mask exactly once, equal to one process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
from monai.bundle import run as run_bundle

from pipeline.inference.distributed import CohortRanks
from pipeline.bundle_trust.trust import use_bundle_code
from tests.helpers import TINY_FEATURES as FEATURES, copy_bundle, tiny_generator, write_tiny_cohort

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "dmg_mscg_segmentation"
pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.slow]  # each test starts torchrun


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory, tiny_cohort: Path) -> Path:
    root = copy_bundle(BUNDLE, tmp_path_factory.mktemp("mp_bundle"), features=FEATURES, spatial_size=32,
                       num_workers=0)
    torch.save(tiny_generator(tiny_cohort.parent).state_dict(), root / "models" / "model_t2.pt")
    return root


def _masks(out: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asanyarray(nib.load(p).dataobj) for p in sorted(out.glob("*_seg.nii.gz"))}


def _torchrun(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=cwd)


def test_shard_gives_every_item_to_exactly_one_rank():
    items = [f"p{i}" for i in range(7)]
    shards = [CohortRanks(rank, 3).shard(items) for rank in range(3)]
    assert shards == [["p0", "p3", "p6"], ["p1", "p4"], ["p2", "p5"]]
    assert CohortRanks().shard(items) == items


def test_bundle_inference_under_torchrun_writes_each_mask_once(tiny_bundle: Path, tiny_cohort: Path, tmp_path: Path):
    configs = tiny_bundle / "configs"
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    with use_bundle_code(tiny_bundle):  # its scripts/ importable, as when run from the bundle folder
        run_bundle(config_file=str(configs / "inference.json"), meta_file=str(configs / "metadata.json"),
                   logging_file=str(configs / "logging.conf"), bundle_root=str(tiny_bundle),
                   dataset_dir=str(tiny_cohort.parent), output_dir=str(single))
    config_list = f"['{configs / 'inference.json'}','{configs / 'multi_gpu_inference.json'}']"
    done = _torchrun("-m", "monai.bundle", "run", "--config_file", config_list,
                     "--meta_file", str(configs / "metadata.json"), "--logging_file", str(configs / "logging.conf"),
                     "--bundle_root", str(tiny_bundle), "--dataset_dir", str(tiny_cohort.parent),
                     "--output_dir", str(sharded), cwd=tiny_bundle)  # in the bundle folder: its scripts/
    assert done.returncode == 0, done.stderr[-3000:]
    ours, reference = _masks(sharded), _masks(single)
    n_patients = len(pd.read_csv(tiny_cohort))
    assert len(reference) == n_patients and sorted(ours) == sorted(reference)
    for name in reference:
        np.testing.assert_array_equal(ours[name], reference[name], err_msg=name)


def test_dmg_segment_under_torchrun_equals_one_process(tiny_bundle: Path, tiny_cohort: Path, tmp_path: Path):
    from pipeline.cli import main

    single, sharded = tmp_path / "single", tmp_path / "sharded"
    common = ["--bundle", str(tiny_bundle), "--cohort", str(tiny_cohort), "--sequence", "t2", "--device", "cpu"]
    assert main(["segment", *common, "--out", str(single)]) == 0
    done = _torchrun("-m", "pipeline.cli", "segment", *common, "--out", str(sharded))
    assert done.returncode == 0, done.stderr[-3000:]
    n = len(pd.read_csv(tiny_cohort))
    for rank in (0, 1):
        assert f"rank {rank} of 2: {n // 2} of {n} patients" in done.stderr, done.stderr[-3000:]
    ours, reference = _masks(sharded), _masks(single)
    assert len(reference) == n and sorted(ours) == sorted(reference)
    for name in reference:
        np.testing.assert_array_equal(ours[name], reference[name], err_msg=name)
    report, expected = pd.read_csv(sharded / "segment_report.csv"), pd.read_csv(single / "segment_report.csv")
    assert list(report.patient_id) == list(expected.patient_id) == list(pd.read_csv(tiny_cohort).patient_id)
    assert (report.status == "done").all()
    assert not list(sharded.glob(".*lock*")), "rank 0 left its lock"


def test_dmg_segment_of_two_sequences_under_torchrun_writes_every_mask_once(tmp_path: Path):
    """Each rank segments both sequences of its own patients; the masks and report equal one process's."""
    from pipeline.cli import main

    cohort = write_tiny_cohort(tmp_path / "cohort", n_patients=4, unlabeled=1, extra_sequences=("flair",))
    bundle = copy_bundle(BUNDLE, tmp_path / "bundle", features=FEATURES, spatial_size=32)
    for seed, sequence in enumerate(("t2", "flair")):
        torch.save(tiny_generator(cohort.parent, seed=seed).state_dict(), bundle / "models" / f"model_{sequence}.pt")
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    common = ["--bundle", str(bundle), "--cohort", str(cohort), "--sequence", "t2", "flair", "--device", "cpu"]
    assert main(["segment", *common, "--out", str(single)]) == 0
    done = _torchrun("-m", "pipeline.cli", "segment", *common, "--out", str(sharded))
    assert done.returncode == 0, done.stderr[-3000:]
    patients = list(pd.read_csv(cohort).patient_id)
    assert "rank 0 of 2: 3 of 5 patients" in done.stderr and "rank 1 of 2: 2 of 5 patients" in done.stderr
    ours, reference = _masks(sharded), _masks(single)
    assert len(reference) == 2 * len(patients) and sorted(ours) == sorted(reference)
    for name in reference:
        np.testing.assert_array_equal(ours[name], reference[name], err_msg=name)
    report = pd.read_csv(sharded / "segment_report.csv")
    assert list(zip(report.sequence, report.patient_id)) == [(s, p) for s in ("t2", "flair") for p in patients]
    assert (report.status == "done").all()


def test_dmg_evaluate_under_torchrun_equals_one_process(tiny_cohort: Path, tmp_path: Path):
    """2 ranks evaluate half the cases each; rank 0's report equals a single process's."""
    from pipeline.cli import main

    preds = tmp_path / "preds"
    preds.mkdir()
    manifest = pd.read_csv(tiny_cohort)
    for i, row in enumerate(manifest.itertuples()):
        if isinstance(row.label_t2, str) and i != 3:  # patient 3 has no prediction: a failed case
            shutil.copy(tiny_cohort.parent / row.label_t2, preds / f"{row.patient_id}_t2_seg.nii.gz")
    common = ["--pred", str(preds), "--cohort", str(tiny_cohort), "--sequence", "t2", "--workers", "1",
              "--bootstrap", "200"]
    assert main(["evaluate", *common, "--out", str(tmp_path / "single")]) == 0
    done = _torchrun("-m", "pipeline.cli", "evaluate", *common, "--out", str(tmp_path / "sharded"))
    assert done.returncode == 0, done.stderr[-3000:]
    n = int(manifest.label_t2.notna().sum())
    for rank in (0, 1):
        assert f"rank {rank} of 2: {n // 2} of {n} cases" in done.stderr, done.stderr[-3000:]
    for name in ("cases.csv", "summary.csv"):
        single = pd.read_csv(tmp_path / "single" / name)
        sharded = pd.read_csv(tmp_path / "sharded" / name)
        pd.testing.assert_frame_equal(sharded, single, check_exact=False, rtol=1e-12)
    assert len(pd.read_csv(tmp_path / "sharded" / "cases.csv")) == manifest.label_t2.notna().sum()
