"""Shared fixtures: a tiny labelled cohort written with nibabel (fast, unlike the full synthetic generator)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from transforms.vocabulary import prediction_file_name

TINY_SHAPE = (40, 36, 8)


def write_tiny_cohort(root: Path, n_patients: int = 6, seed: int = 0, unlabeled: int = 0) -> Path:
    """Patients with a bright blob (the 'lesion') in a dim ellipse (the 'head'), two centers, RAS and LPS storage."""
    rng = np.random.default_rng(seed)
    rows = []
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in TINY_SHAPE], indexing="ij"), -1).astype(float)
    for i in range(n_patients + unlabeled):
        pid, center = f"tiny_{i:02d}", ("center_a", "center_b")[i % 2]
        head = (((grid - np.array(TINY_SHAPE) / 2) / (np.array(TINY_SHAPE) * 0.42)) ** 2).sum(-1) < 1
        centre = np.array([20, 18, 4]) + rng.integers(-4, 5, 3) * np.array([1, 1, 0])
        blob = (((grid - centre) / np.array([5, 4, 2.5])) ** 2).sum(-1) < 1
        image = (head * 100 + blob * 150 + rng.normal(0, 5, TINY_SHAPE) * head).astype(np.float32)
        affine = np.diag([0.9, 0.9, 5.5, 1.0])
        if i % 2:  # LPS storage
            affine = np.diag([-0.9, -0.9, 5.5, 1.0])
            affine[:2, 3] = 0.9 * (np.array(TINY_SHAPE[:2]) - 1)
        (root / "images").mkdir(parents=True, exist_ok=True)
        (root / "labels").mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(image, affine), str(root / "images" / f"{pid}_t2.nii.gz"))
        row = {"patient_id": pid, "center": center, "t2": f"images/{pid}_t2.nii.gz", "h3k27m": i % 2}
        if i < n_patients:
            nib.save(nib.Nifti1Image(blob.astype(np.uint8), affine), str(root / "labels" / prediction_file_name(pid, "t2")))
            row["label_t2"] = f"labels/{prediction_file_name(pid, 't2')}"
        rows.append(row)
    manifest = root / "manifest.csv"
    pd.DataFrame(rows).to_csv(manifest, index=False)
    return manifest


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    return write_tiny_cohort(tmp_path_factory.mktemp("tiny_cohort"), n_patients=6, unlabeled=2)


def count_modules(module: torch.nn.Module, kind: type) -> int:
    """How many submodules of ``module`` (itself included) are instances of ``kind``."""
    return sum(isinstance(m, kind) for m in module.modules())


@pytest.fixture()
def single_thread():
    """Run a test single-threaded (two test workers share two cores; tiny convs gain nothing from
    threads and stall badly on busy CI cores) and restore the setting after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def copy_bundle(src: Path, dest: Path, **config: object) -> Path:
    """configs/, docs/, scripts/ (the carried code its configs name) and LICENSE of ``src`` with ``config`` written
    into the copied inference.json."""
    for folder in ("configs", "docs", "scripts"):
        if (src / folder).is_dir():
            shutil.copytree(src / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(src / "LICENSE", dest / "LICENSE")
    inference = dest / "configs" / "inference.json"
    inference.write_text(json.dumps({**json.loads(inference.read_text()), **config}, indent=4))
    (dest / "models").mkdir()
    return dest
