"""Data lists of a segmentation run: folds, BraTS pretraining stage, no-CV mode, unlabeled patients."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pipeline.data.datalists import cohort_datalist, segmentation_datalists
from tests.helpers import TINY_SHAPE, write_tiny_cohort


def _brats(root: Path, n: int = 2) -> Path:
    for i in range(n):
        pid = f"BraTS2021_{i:05d}"
        for suffix in ("t1ce", "t2", "flair"):
            (root / pid).mkdir(parents=True, exist_ok=True)
            nib.save(nib.Nifti1Image(np.random.rand(*TINY_SHAPE).astype(np.float32), np.eye(4)),
                     str(root / pid / f"{pid}_{suffix}.nii.gz"))
        seg = np.zeros(TINY_SHAPE, np.uint8)
        seg[10:14, 10:14, 2:4] = 4
        seg[14:18, 10:14, 2:4] = 2
        nib.save(nib.Nifti1Image(seg, np.eye(4)), str(root / pid / f"{pid}_seg.nii.gz"))
    return root


def test_fold_split_and_unlabeled_patients(tiny_cohort: Path):
    lists = segmentation_datalists(tiny_cohort, "t2", fold=1, n_folds=3, seed=0)
    train_ids = {d["patient_id"] for d in lists["train"]}
    val_ids = {d["patient_id"] for d in lists["validate"]}
    assert not train_ids & val_ids and len(train_ids | val_ids) == 6
    assert [d["patient_id"] for d in lists["unlabeled"]] == ["tiny_06", "tiny_07"]
    assert all("label" not in d for d in lists["unlabeled"])
    assert lists == segmentation_datalists(tiny_cohort, "t2", fold=1, n_folds=3, seed=0)


def test_pretrain_stage_adds_brats_cases_with_their_targets(tiny_cohort: Path, tmp_path: Path):
    brats = _brats(tmp_path / "brats")
    finetune = segmentation_datalists(tiny_cohort, "t2", fold=0, n_folds=3)
    pretrain = segmentation_datalists(tiny_cohort, "t2", fold=0, n_folds=3, stage="pretrain", brats_dir=brats)
    added = pretrain["train"][len(finetune["train"]):]
    assert [d["patient_id"] for d in added] == ["BraTS2021_00000", "BraTS2021_00001"]
    assert all(d["label_classes"] == [1, 2, 4] for d in added)
    assert pretrain["validate"] == finetune["validate"]  # validation stays on the DMG fold
    t1c = segmentation_datalists(brats, "t1c", fold=0, n_folds=2)
    assert all(d["label_classes"] == [4] for d in t1c["train"] + t1c["validate"])
    with pytest.raises(ValueError, match="needs brats_dir"):
        segmentation_datalists(tiny_cohort, "t2", stage="pretrain")
    with pytest.raises(ValueError, match="stage must be"):
        segmentation_datalists(tiny_cohort, "t2", stage="warmup")


def test_no_cross_validation_mode_uses_a_separate_validation_cohort(tiny_cohort: Path, tmp_path: Path):
    other = write_tiny_cohort(tmp_path / "other", n_patients=2, seed=5)
    lists = segmentation_datalists(tiny_cohort, "t2", fold=-1, validation_dir=other)
    assert len(lists["train"]) == 6 and len(lists["validate"]) == 2
    with pytest.raises(ValueError, match="needs validation_dir"):
        segmentation_datalists(tiny_cohort, "t2", fold=-1)


def test_missing_sequence_is_a_clear_error(tiny_cohort: Path):
    with pytest.raises(ValueError, match="no patient has a flair image"):
        segmentation_datalists(tiny_cohort, "flair")
    with pytest.raises(ValueError, match="no usable flair image"):
        cohort_datalist(tiny_cohort, "flair")
    assert len(cohort_datalist(tiny_cohort, "t2")) == 8
    assert len(cohort_datalist(tiny_cohort, "t2", require_label=True)) == 6
