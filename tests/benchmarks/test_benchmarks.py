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
    parts = "hardware,evaluation,training,inference,runtimes"  # the cohort part starts ~40 processes: tested below
    assert main(["--smoke", "--only", parts, "--out", str(out)]) == 0
    text = out.read_text()
    for heading in ("## Hardware limit", "## Evaluation", "## Training step", "## Inference", "Machine:",
                    "## Runtimes, network only"):
        assert heading in text
    onnx_rows = [line for line in text.splitlines() if "| ONNX vs PyTorch |" in line]
    assert onnx_rows and float(onnx_rows[0].split("max logit difference ")[1].split()[0]) <= 1e-4
    assert "FAIL" not in text and text.count("PASS") == 4  # table and targets, both spacings
    assert "## Targets" in text and "## What the numbers decide" in text
    for row in ("| ours |", "medpy", "MSCG GAN step", "plain MONAI path, same MSCG", "BasicUNet", "bf16 autocast"):
        assert row in text
    ours_row = next(line for line in text.splitlines() if line.startswith("| ours |"))
    assert ours_row.split("|")[5].strip().startswith("0 /"), ours_row  # masks identical to the plain path


def test_sizes_are_ordered():
    full, quick, smoke = SIZES["full"], SIZES["quick"], SIZES["smoke"]
    assert np.prod(smoke.eval_shape) < np.prod(full.eval_shape) and smoke.infer_size < quick.infer_size <= full.infer_size


def test_cohort_table_and_targets_follow_the_measured_numbers():
    """Both steps reported (``dmg segment`` alone, the criterion, and segment + evaluate), each from its own times."""
    from benchmarks.cohort import DEFAULT, PLAIN, TORCH, cohort_targets, render_cohort

    def runs(quiet: float, loaded: float, segment_quiet: float, segment_loaded: float) -> dict:
        return {"quiet": [{"seconds": quiet, "segment_s": segment_quiet, "segment_peak_mb": 400.0,
                           "peak_mb": 500.0}],
                "loaded": [{"seconds": loaded, "segment_s": segment_loaded, "segment_peak_mb": 420.0,
                            "peak_mb": 510.0}]}

    res = {"patients": 10, "runs": {DEFAULT: runs(10.0, 14.0, 6.0, 8.0), TORCH: runs(25.0, 60.0, 18.0, 40.0),
                                    PLAIN: runs(40.0, 90.0, 33.0, 75.0)},
           "flipped": (3, 1000, 30), "flipped_plain": (5, 1000, 30),
           "stages": {"load_s": 0.5, "infer_s": 1.0, "write_s": 0.1, "seconds": 1.6},
           "torchrun": {1: {"seconds": 20.0, "threads": 2, "masks": 10},
                        2: {"seconds": 12.0, "threads": 1, "masks": 9}},
           "usable_cpus": 2, "loadavg": (1.0, 2.0)}
    text = "\n".join(render_cohort(res))
    assert ("| `dmg segment` | dmg segment (default: ONNX Runtime) | 6.0 | 8.0 | 1.33 | 300.0 | 3.00, 5.00 | "
            "5.50, 9.38 | 420 |") in text
    assert ("| segment + evaluate | dmg segment (default: ONNX Runtime) | 10.0 | 14.0 | 1.40 | 180.0 | 2.50, 4.29 | "
            "4.00, 6.43 | 510 |") in text
    assert "`dmg segment` alone: 3.00× quiet, 5.00× loaded; segment + evaluate: 2.50× quiet, 4.29× loaded" in text
    assert "3 of 1000 mask voxels differ over 30 masks" in text
    targets = cohort_targets(res)
    assert targets[0].startswith("* `dmg segment` default ≥2× (goal 3×) `--runtime torch` end to end")
    assert targets[0].endswith(": 3.00× — met (goal met).")
    assert "1.33× — met" in targets[1] and "4.00× — met (`dmg segment` alone: 5.50×)" in targets[2]
    assert "9 of 10 masks — missed" in targets[3]
    from benchmarks.merge import PART_SECTIONS

    assert all(t.startswith(PART_SECTIONS["cohort"][1]) for t in targets)  # merge.py keeps them when not rerun


def test_a_started_process_reports_its_own_peak_memory_not_this_one(tmp_path: Path):
    """Linux hands a parent's peak resident size to the child it forks; the cohort part measures through a launcher."""
    import resource
    import sys

    from benchmarks.cohort import _run

    ballast = np.ones(200 * 2**20 // 8)  # this process now holds 200 MB more than a bare interpreter
    parent_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds, peak_mb = _run([sys.executable, "-c", "pass"])
    assert ballast.sum() > 0 and seconds > 0 and parent_mb > 200
    assert peak_mb < 100, f"a bare interpreter measured at {peak_mb:.0f} MB (this process: {parent_mb:.0f} MB)"
    with pytest.raises(RuntimeError, match="exited 3: boom"):
        _run([sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"])


def test_parts_not_run_keep_their_earlier_sections_and_targets():
    from benchmarks.merge import merge_unmeasured

    old = ("# Benchmarks\n\nold header\n\n## Evaluation (s)\n\neval table\n\n## Training step\n\nold training\n\n"
           "## Targets\n\n* Evaluation ≥5×: 80× — met.\n* GAN step ≤1.5×: 1.53× — missed.\n")
    new = "# Benchmarks\n\nnew header\n\n## Training step\n\nnew training\n\n## Targets\n\n* GAN step ≤1.5×: 1.40× — met.\n"
    merged = merge_unmeasured(old, new, ("training",))
    assert "eval table" in merged and "## Evaluation (s) (kept from the previous run)" in merged
    assert "old training" not in merged and "new training" in merged and "1.53×" not in merged
    assert "* Evaluation ≥5×: 80× — met. (kept)" in merged and "new header" in merged
    assert merged.index("## Evaluation") < merged.index("## Targets") < merged.index("* GAN step ≤1.5×: 1.40×")
    assert merge_unmeasured(old, new, ("hardware", "evaluation", "training", "inference", "runtimes", "cohort")) == new


def test_h3k27m_speed_sweep_times_every_configuration():
    from benchmarks.h3k27m_speed_sweep import step_seconds

    medians = step_seconds([4], [32, 48], rounds=1, steps=1)
    assert set(medians) == {"w4_s32", "w4_s48"}
    assert all(v > 0 for v in medians.values())
