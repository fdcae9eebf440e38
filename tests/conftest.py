"""Shared fixtures (helpers the tests import are in ``tests/helpers.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.helpers import write_tiny_cohort


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    return write_tiny_cohort(tmp_path_factory.mktemp("tiny_cohort"), n_patients=6, unlabeled=2)


@pytest.fixture(scope="session")
def tiny_cohort_t2_t1c(tmp_path_factory) -> Path:
    """The tiny cohort with a T1C image of each patient: what the shipped H3K27M bundle reads."""
    return write_tiny_cohort(tmp_path_factory.mktemp("tiny_cohort_t1c"), n_patients=6, extra_sequences=("t1c",))


@pytest.fixture()
def single_thread():
    """Run a test single-threaded (two test workers share two cores; tiny convs gain nothing from
    threads and stall badly on busy CI cores) and restore the setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
