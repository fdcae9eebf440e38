"""configs/persistent_cache.json: cross-validation folds run side by side (or one after another) preprocess
each patient once, into a disk cache keyed by the patient's data item and the preprocessing itself."""

from __future__ import annotations

from pathlib import Path

import pytest
from monai.bundle import run as run_bundle

CONFIGS = Path(__file__).resolve().parents[2] / "bundles" / "h3k27m_classification" / "configs"
TINY = {"base_width": 8, "num_workers": 0, "batch_size": 8, "n_folds": 3, "num_epochs": 1, "val_interval": 1}

pytestmark = pytest.mark.usefixtures("single_thread")


def _fold(root: Path, cohort: Path, fold: int, spatial_size: int = 64) -> None:
    run_bundle(config_file=[str(CONFIGS / "train.json"), str(CONFIGS / "persistent_cache.json")],
               meta_file=str(CONFIGS / "metadata.json"), logging_file=str(CONFIGS / "logging.conf"),
               bundle_root=str(root), dataset_dir=str(cohort), fold=fold, spatial_size=spatial_size, **TINY)


def _cache(root: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in (root / "cache").glob("*.pt")}


def test_folds_share_one_preprocessing_pass(tmp_path: Path, tiny_cohort: Path):
    _fold(tmp_path, tiny_cohort.parent, 0)
    first = _cache(tmp_path)
    assert len(first) == 6  # the cohort's 6 labelled patients: fold 0's training and validation patients
    assert (tmp_path / "runs" / "full_fold0" / "checkpoint_epoch=1.pt").exists()

    _fold(tmp_path, tiny_cohort.parent, 1)  # other training/validation split, the same patients
    assert _cache(tmp_path) == first  # read back, nothing preprocessed or written again
    assert (tmp_path / "runs" / "full_fold1" / "checkpoint_epoch=1.pt").exists()

    _fold(tmp_path, tiny_cohort.parent, 2, spatial_size=48)  # other preprocessing: its own cache entries
    third = _cache(tmp_path)
    assert len(third) == 12 and set(first) < set(third)
