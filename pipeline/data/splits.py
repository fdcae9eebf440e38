"""Patient-level k-fold cross-validation splits, stratified (by center by default), reproducible from a seed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np


def cross_validation_folds(
    cases: Sequence[dict], n_folds: int = 5, seed: int = 0, stratify_key: str = "center"
) -> list[list[str]]:
    """Patient ids of each fold. A patient is in exactly one fold; every stratum is spread over the folds.

    Each stratum's patients are shuffled and dealt round-robin, continuing where the previous stratum
    stopped, so fold sizes differ by at most one and a center smaller than ``n_folds`` still works
    (MONAI's ``partition_dataset_classes`` refuses such a center). Ids are sorted before shuffling,
    so the split depends only on the set of patients and the seed, not on the manifest's order.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be at least 2, got {n_folds}")
    by_id = {c["patient_id"]: c for c in cases}
    if len(by_id) != len(cases):
        raise ValueError("patient ids are not unique; a patient-level split needs one entry per patient")
    if len(by_id) < n_folds:
        raise ValueError(f"{len(by_id)} patients cannot be split into {n_folds} folds")
    strata: dict[str, list[str]] = defaultdict(list)
    for pid in sorted(by_id):
        strata[str(by_id[pid].get(stratify_key, ""))].append(pid)
    rng = np.random.default_rng(seed)
    folds: list[list[str]] = [[] for _ in range(n_folds)]
    position = 0
    for stratum in sorted(strata):
        for pid in rng.permutation(strata[stratum]).tolist():
            folds[position % n_folds].append(pid)
            position += 1
    return [sorted(f) for f in folds]


def fold_split(
    cases: Sequence[dict], fold: int, n_folds: int = 5, seed: int = 0, stratify_key: str = "center"
) -> tuple[list[dict], list[dict]]:
    """(training, validation) items for ``fold``: validation = that fold's patients, training = the rest.

    ``cases`` may be per-patient or per-sequence dicts; they are grouped by ``patient_id``.
    """
    if not 0 <= fold < n_folds:
        raise ValueError(f"fold must be in 0..{n_folds - 1}, got {fold}")
    patients = list({c["patient_id"]: c for c in cases}.values())
    held_out = set(cross_validation_folds(patients, n_folds, seed, stratify_key)[fold])
    return ([c for c in cases if c["patient_id"] not in held_out], [c for c in cases if c["patient_id"] in held_out])


def labeled_patient_subset(
    cases: Sequence[dict], fraction: float, seed: int = 0, stratify_key: str = "center"
) -> set[str]:
    """Patient ids that keep their reference masks when only ``fraction`` of the training patients are labeled.

    Per stratum (center by default) ``round(fraction * n)`` patients are drawn, at least one per stratum when
    ``fraction > 0``; ids are sorted before a seeded shuffle, so the subset depends only on the set of
    patients, the fraction and the seed. ``fraction=1`` keeps every patient.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"labeled_fraction must be in (0, 1], got {fraction}")
    strata: dict[str, set[str]] = defaultdict(set)
    for case in cases:
        strata[str(case.get(stratify_key, ""))].add(case["patient_id"])
    rng = np.random.default_rng(seed)
    keep: set[str] = set()
    for stratum in sorted(strata):
        ids = sorted(strata[stratum])
        n_keep = max(1, int(round(fraction * len(ids))))
        keep.update(rng.permutation(ids)[:n_keep].tolist())
    return keep
