"""The benchmark harness at toy sizes: every part runs, the table is produced, the agreement checks pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.harness import SIZES, interleaved, lesion_pair, main, stats

pytestmark = pytest.mark.usefixtures("single_thread")


def test_interleaving_and_stats():
    calls: list[str] = []
    times = interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, reps=3, warmup=1)
    assert calls == ["a", "b"] * 4 and all(len(v) == 3 for v in times.values())
    assert stats([1.0, 2.0, 3.0, 4.0, 5.0]) == (3.0, 2.0) and stats([2.0]) == (2.0, 0.0)


def test_lesion_pair_is_a_realistic_overlap():
    pred, ref = lesion_pair((48, 48, 24), (1.0, 1.0, 1.0))
    assert ref.any() and pred.any() and (pred & ref).any() and (pred != ref).any()
    dice = 2 * (pred & ref).sum() / (pred.sum() + ref.sum())
    assert 0.5 < dice < 0.99


def test_smoke_run_writes_the_table_and_agrees(tmp_path: Path, capsys):
    out = tmp_path / "BENCHMARKS.md"
    assert main(["--smoke", "--out", str(out)]) == 0
    text = out.read_text()
    for heading in ("## Hardware limit", "## Evaluation", "## Training step", "## Inference", "Machine:"):
        assert heading in text
    assert "FAIL" not in text and text.count("PASS") == 4  # table and targets, both spacings
    assert "## Targets" in text and "## What the numbers decide" in text
    for row in ("| ours |", "medpy", "MSCG GAN step", "plain MONAI path, same MSCG", "BasicUNet", "bf16 autocast"):
        assert row in text
    ours_row = next(line for line in text.splitlines() if line.startswith("| ours |"))
    assert ours_row.split("|")[5].strip().startswith("0 /"), ours_row  # masks identical to the plain path


def test_sizes_are_ordered():
    full, quick, smoke = SIZES["full"], SIZES["quick"], SIZES["smoke"]
    assert np.prod(smoke.eval_shape) < np.prod(full.eval_shape) and smoke.infer_size < quick.infer_size <= full.infer_size
