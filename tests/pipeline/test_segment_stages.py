"""Overlapped stages of ``dmg segment`` (prefetch, background writes): same masks, per-stage times in the report."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.inference import CohortSegmenter, load_segmentation_model
from pipeline.inference.prefetch import BackgroundWriter, prefetched
from tests.helpers import TINY_FEATURES as FEATURES, copy_bundle, tiny_generator

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "dmg_mscg_segmentation"
pytestmark = pytest.mark.usefixtures("single_thread")


def test_prefetch_prepares_the_next_item_while_this_one_is_used():
    started: dict[int, float] = {}

    def prepare(i: int) -> int:
        started[i] = time.perf_counter()
        return i * 10

    seen = []
    for item, value, seconds in prefetched(range(4), prepare):
        if item == 0:
            time.sleep(0.2)
            assert 1 in started, "item 1 was not prepared while item 0 was in use"
        seen.append((item, value))
        assert seconds >= 0
    assert seen == [(0, 0), (1, 10), (2, 20), (3, 30)]
    assert [v for _, v, _ in prefetched(range(3), lambda i: -i, depth=0)] == [0, -1, -2]


def test_background_writer_keeps_order_and_raises_a_failed_write():
    writer = BackgroundWriter(max_pending=2)
    main_thread = threading.get_ident()
    for i in range(5):
        writer.submit(lambda i=i: (i, threading.get_ident() != main_thread))
    results = writer.collect() + writer.wait()
    assert results == [(i, True) for i in range(5)]

    def fail() -> None:
        raise OSError(28, "No space left on device")

    writer.submit(fail)
    with pytest.raises(OSError, match="No space"):
        writer.wait()
    writer.close()


def test_background_writer_keeps_the_writes_finished_before_a_failed_one():
    """The writes that finished before a failing one are still handed over (the segment report lists them),
    whichever call (submit, collect, wait) met the failure; deterministic: each write waits for its turn."""
    writer = BackgroundWriter(max_pending=2)
    first_done = threading.Event()

    def ok() -> str:
        first_done.set()
        return "done"

    def fail() -> None:
        first_done.wait()
        raise OSError(28, "No space left on device")

    writer.submit(ok)
    writer.submit(fail)
    with pytest.raises(OSError, match="No space"):
        writer.wait()  # takes 'done' from the first write, then meets the failure
    assert writer.finished() == ["done"]
    assert writer.finished() == []
    writer.close()


@pytest.fixture(scope="module")
def model(tmp_path_factory, tiny_cohort: Path):
    root = copy_bundle(BUNDLE, tmp_path_factory.mktemp("stages_bundle"), features=FEATURES, spatial_size=32)
    torch.save(tiny_generator(tiny_cohort.parent).state_dict(), root / "models" / "model_t2.pt")
    return load_segmentation_model(root, "t2", device="cpu", runtime="torch")


def test_overlapped_run_equals_the_sequential_one_and_reports_stage_times(model, tiny_cohort: Path, tmp_path: Path):
    overlapped = CohortSegmenter(model, tmp_path / "overlap", progress=False).run(tiny_cohort)
    sequential = CohortSegmenter(model, tmp_path / "sequential", progress=False, overlap=False).run(tiny_cohort)
    assert [r.patient_id for r in overlapped.results] == [r.patient_id for r in sequential.results]
    assert overlapped.counts["done"] == 8
    for result in overlapped.results:
        a = np.asanyarray(nib.load(tmp_path / "overlap" / Path(result.output).name).dataobj)
        b = np.asanyarray(nib.load(tmp_path / "sequential" / Path(result.output).name).dataobj)
        np.testing.assert_array_equal(a, b, err_msg=result.patient_id)
    report = pd.read_csv(tmp_path / "overlap" / "segment_report.csv")
    assert list(report.patient_id) == list(pd.read_csv(tiny_cohort).patient_id)
    done = report[report.status == "done"]
    assert (done[["load_s", "infer_s", "write_s"]] > 0).all().all()
    np.testing.assert_allclose(done.seconds, done.load_s + done.infer_s + done.write_s, atol=2e-3)
