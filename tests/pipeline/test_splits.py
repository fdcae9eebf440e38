"""Patient-level, center-stratified, seeded cross-validation folds."""

import pytest

from pipeline.data.splits import cross_validation_folds, fold_split


def _cases(n_a: int = 13, n_b: int = 8) -> list[dict]:
    return [{"patient_id": f"a{i:02d}", "center": "A"} for i in range(n_a)] + [
        {"patient_id": f"b{i:02d}", "center": "B"} for i in range(n_b)]


def test_folds_partition_patients_and_spread_centers():
    cases = _cases()
    folds = cross_validation_folds(cases, n_folds=5, seed=3)
    flat = [p for f in folds for p in f]
    assert sorted(flat) == sorted(c["patient_id"] for c in cases)  # each patient exactly once
    for fold in folds:
        assert any(p.startswith("a") for p in fold) and any(p.startswith("b") for p in fold)
        assert 2 <= sum(p.startswith("a") for p in fold) <= 3
    assert max(map(len, folds)) - min(map(len, folds)) <= 1


def test_a_center_smaller_than_the_number_of_folds_is_fine():
    folds = cross_validation_folds(_cases(9, 2), n_folds=5, seed=0)
    assert sorted(p for f in folds for p in f) == sorted(c["patient_id"] for c in _cases(9, 2))
    assert sum(any(p.startswith("b") for p in f) for f in folds) == 2


def test_folds_are_reproducible_and_order_independent():
    cases = _cases()
    assert cross_validation_folds(cases, seed=1) == cross_validation_folds(list(reversed(cases)), seed=1)
    assert cross_validation_folds(cases, seed=1) != cross_validation_folds(cases, seed=2)


def test_fold_split_keeps_all_sequences_of_a_patient_together():
    per_sequence = [dict(c, sequence=s) for c in _cases() for s in ("t2", "flair")]
    for fold in range(5):
        train, val = fold_split(per_sequence, fold, seed=0)
        assert not {c["patient_id"] for c in train} & {c["patient_id"] for c in val}
        assert len(train) + len(val) == len(per_sequence)
        assert len(val) % 2 == 0


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="fold must be"):
        fold_split(_cases(), 5)
    with pytest.raises(ValueError, match="cannot be split"):
        cross_validation_folds(_cases(2, 1), n_folds=5)
    with pytest.raises(ValueError, match="not unique"):
        cross_validation_folds(_cases() + _cases(1, 0))
