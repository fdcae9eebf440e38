"""``dmg demo`` end to end on one synthetic patient with a tiny generator per sequence."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.cli import main
from pipeline.data.cohort import SEQUENCES
from pipeline.networks import build_generator
from tests.helpers import copy_bundle

REPO = Path(__file__).resolve().parents[2]
FEATURES = [4, 8, 16]

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory) -> Path:
    """The segmentation bundle with a tiny random generator per sequence (t1c as TorchScript only)."""
    torch.set_num_threads(1)
    root = copy_bundle(REPO / "bundles" / "dmg_mscg_segmentation", tmp_path_factory.mktemp("b") / "seg",
                       features=FEATURES, spatial_size=32, sw_batch_size=8)
    for i, seq in enumerate(SEQUENCES):
        torch.manual_seed(i)
        net = build_generator("MSCG", features=FEATURES).eval()
        if seq == "t1c":
            torch.jit.script(net).save(str(root / "models" / f"model_{seq}.ts"))
        else:
            torch.save(net.state_dict(), root / "models" / f"model_{seq}.pt")
    return root


@pytest.mark.slow
def test_demo_segments_evaluates_and_reports_every_sequence(tiny_bundle, tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--patients", "1", "--bundle", str(tiny_bundle), "--workers", "1",
                 "--device", "cpu"]) == 0
    printed = capsys.readouterr().out

    manifest = pd.read_csv(out / "cohort" / "manifest.csv")
    assert list(manifest["center"]) == ["center_c"]
    for pid in manifest["patient_id"]:
        for seq in SEQUENCES:
            image = nib.load(out / "cohort" / manifest.loc[manifest.patient_id == pid, seq].item())
            mask = nib.load(out / "predictions" / f"{pid}_{seq}_seg.nii.gz")
            assert mask.shape == image.shape
            np.testing.assert_allclose(mask.affine, image.affine, atol=1e-4)
            assert set(np.unique(np.asanyarray(mask.dataobj))) <= {0, 1}

    cases = pd.read_csv(out / "report" / "cases.csv")
    assert sorted(cases["sequence"].unique()) == sorted(SEQUENCES)
    assert len(cases) == len(SEQUENCES)
    summary = json.loads((out / "report" / "summary.json").read_text())
    assert summary  # written
    assert (out / "report" / "report.html").is_file()
    # the printed table: one row per sequence and the overall row, DSC and HD95 from the summary
    rows = {line.split()[0]: line for line in printed.splitlines() if line.split()[:1] in (["all"], *[[s] for s in SEQUENCES])}
    assert sorted(rows) == sorted(["all", *SEQUENCES]), printed
    for seq in SEQUENCES:
        dsc = cases.loc[cases.sequence == seq, "dsc_policy"].mean()
        assert f"{dsc:.3f}" in rows[seq]
    assert str(out / "report" / "report.html") in printed
    assert "HD95" in printed and "DSC" in printed


def test_demo_without_weights_fails_before_generating(tmp_path, capsys):
    bundle = copy_bundle(REPO / "bundles" / "dmg_mscg_segmentation", tmp_path / "empty_bundle")
    assert main(["demo", "--out", str(tmp_path / "demo"), "--patients", "1", "--bundle", str(bundle)]) == 2
    assert "no t1c model in the bundle" in capsys.readouterr().err
    assert not (tmp_path / "demo" / "cohort").exists()
