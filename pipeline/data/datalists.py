"""The training / validation / unlabeled data lists of one segmentation run (sequence, fold, stage).

Bundle configs declare :func:`segmentation_datalists` as a component (named arguments) so that the protocol
lives in code:

* ``stage="finetune"`` (stage 2, and the only stage without BraTS): train on the DMG training
  folds, validate on the held-out fold.
* ``stage="pretrain"`` (stage 1): the BraTS 2021 cases of ``brats_dir`` are added to the DMG
  training folds; validation is still the DMG held-out fold.
* ``fold=-1``: no cross-validation; train on every labelled DMG patient and validate on
  ``validation_dir`` (a separate cohort, e.g. held-out patients).

Patients whose sequence has an image but no reference mask form the unlabeled list (the
paper's unsupervised part). ``labeled_fraction < 1`` simulates scarce labels: only that fraction of
the DMG training patients (per center, drawn from ``seed``) keep their masks; the others join the
unlabeled list without them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from pipeline.data.cohort import Cohort, load_cohort, nifti_stem
from pipeline.data.splits import fold_split, labeled_patient_subset

STAGES = ("pretrain", "finetune")
logger = logging.getLogger(__name__)


def _load(source: str | os.PathLike, sequence: str) -> Cohort:
    cohort = load_cohort(source, strict=False, sequence=sequence)
    for issue in cohort.issues:
        logger.warning("skipped: %s", issue)
    return cohort


def segmentation_datalists(
    dataset_dir: str | os.PathLike,
    sequence: str,
    *,
    fold: int = 0,
    n_folds: int = 5,
    seed: int = 0,
    stage: str = "finetune",
    brats_dir: str | os.PathLike | None = None,
    validation_dir: str | os.PathLike | None = None,
    labeled_fraction: float = 1.0,
) -> dict[str, list[dict]]:
    """``{"train": [...], "validate": [...], "unlabeled": [...]}`` per-sequence data dicts.

    Everything after ``sequence`` is named (a bundle config declares it as a component with these keys);
    ``seed`` draws the folds and the labeled subset."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    cohort = _load(dataset_dir, sequence)
    items = cohort.datalist(sequence)
    labelled = [d for d in items if "label" in d]
    unlabeled = [d for d in items if "label" not in d]
    if not labelled:
        raise ValueError(f"{dataset_dir}: no patient has a {sequence} image with a reference mask")
    if fold < 0:
        if validation_dir is None:
            raise ValueError("fold=-1 (no cross-validation) needs validation_dir")
        train, validate = labelled, _load(validation_dir, sequence).datalist(sequence, require_label=True)
    else:
        train, validate = fold_split(labelled, fold, n_folds=n_folds, seed=seed)
    keep = labeled_patient_subset(train, float(labeled_fraction), seed=seed)
    unlabeled = unlabeled + [{k: v for k, v in d.items() if k != "label"} for d in train if d["patient_id"] not in keep]
    train = [d for d in train if d["patient_id"] in keep]
    if stage == "pretrain":
        if brats_dir is None:
            raise ValueError("stage 'pretrain' needs brats_dir (a BraTS 2021 folder)")
        train = train + _load(brats_dir, sequence).datalist(sequence, require_label=True)
    logger.info("%s %s fold %d: %d training, %d validation, %d unlabeled volumes",
                sequence, stage, fold, len(train), len(validate), len(unlabeled))
    return {"train": train, "validate": validate, "unlabeled": unlabeled}


def cohort_datalist(source: str | os.PathLike, sequence: str, require_label: bool = False,
                    extra_sequences: Sequence[str] = ()) -> list[dict]:
    """Per-sequence data dicts of every usable patient of a cohort; skipped patients are logged.
    ``extra_sequences``: as in :func:`status_datalists`."""
    cohort = _load(source, sequence)
    items = with_extra_channels(cohort, cohort.datalist(sequence, require_label=require_label), extra_sequences)
    if not items:
        raise ValueError(f"{source}: no usable {sequence} image" + (" with a reference mask" if require_label else ""))
    return items


def status_datalists(
    dataset_dir: str | os.PathLike,
    sequence: str = "t2",
    fold: int = 0,
    n_folds: int = 5,
    seed: int = 0,
    validation_dir: str | os.PathLike | None = None,
    extra_sequences: Sequence[str] = (),
) -> dict[str, list[dict]]:
    """H3K27M co-training lists: patients with a known status and a reference mask, folds stratified by status.

    ``fold=-1`` trains on every such patient and validates on ``validation_dir``. With ``extra_sequences``
    (e.g. ``["t1c"]``) each item also carries those sequences' files under their names (``build_transforms(...,
    extra_image_keys=extra_sequences)`` resamples them onto the ``sequence`` image's grid as extra input
    channels); the mask is still that of ``sequence``; patients lacking one of them are left out (logged).
    """
    items = _status_items(dataset_dir, sequence, extra_sequences)
    if not items:
        raise ValueError(f"{dataset_dir}: no patient with a {sequence} image, a reference mask and a known status")
    if fold < 0:
        if validation_dir is None:
            raise ValueError("fold=-1 (no cross-validation) needs validation_dir")
        return {"train": items, "validate": _status_items(validation_dir, sequence, extra_sequences)}
    train, validate = fold_split(items, fold, n_folds=n_folds, seed=seed, stratify_key="h3k27m")
    return {"train": train, "validate": validate}


def _status_items(source: str | os.PathLike, sequence: str, extra_sequences: Sequence[str]) -> list[dict]:
    cohort = _load(source, sequence)
    items = [d for d in cohort.datalist(sequence, require_label=True) if d["h3k27m"] in (0, 1)]
    return with_extra_channels(cohort, items, extra_sequences)


def with_extra_channels(cohort: Cohort, items: list[dict], extra_sequences: Sequence[str]) -> list[dict]:
    """``items`` (of ``cohort.datalist``) with the patient's ``extra_sequences`` files added under the
    sequences' names; patients without a usable image of each are dropped (logged)."""
    if not extra_sequences:
        return items
    cases = {c["patient_id"]: c for c in cohort.cases}
    out = []
    for item in items:
        case = cases[item["patient_id"]]
        missing = [s for s in extra_sequences if not cohort.usable(case, s)]
        if missing:
            logger.warning("skipped: %s has no usable %s image", item["patient_id"], ", ".join(missing))
            continue
        out.append({**item, **{s: case[s] for s in extra_sequences}})
    return out


def pretraining_datalist(source: str | os.PathLike, sequence: str = "t2") -> list[dict]:
    """Images for masked-image pretraining: a cohort (manifest, datalist JSON, BraTS folder) gives its
    ``sequence`` images; any other folder gives every ``*.nii``/``*.nii.gz`` below it (IXI layout)."""
    source = Path(source)
    if source.is_dir() and not (source / "manifest.csv").exists() and not any(source.glob("BraTS*")):
        files = sorted(p for p in source.rglob("*") if p.name.endswith((".nii", ".nii.gz")))
        if not files:
            raise ValueError(f"{source}: no NIfTI files found for pretraining")
        return [{"image": str(p), "patient_id": nifti_stem(p.name)} for p in files]
    return [{"image": d["image"], "patient_id": d["patient_id"]} for d in cohort_datalist(source, sequence)]
