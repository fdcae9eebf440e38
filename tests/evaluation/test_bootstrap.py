"""The one percentile bootstrap (evaluation.bootstrap, on scipy.stats.bootstrap): values, pairing, degenerate cases."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from evaluation.bootstrap import percentile_ci
from evaluation.summary import bootstrap_mean_ci


def _mean(x, axis=-1):
    return np.mean(x, axis=axis)


def test_mean_ci_is_the_percentile_interval_of_resampled_means():
    values = np.random.default_rng(4).normal(0.7, 0.1, 25)
    low, high = bootstrap_mean_ci(values, resamples=500, confidence=0.9, seed=11)
    # written out: 500 draws of 25 indices from default_rng(11), the 5th and 95th percentiles of their means
    means = values[np.random.default_rng(11).integers(0, 25, (500, 25))].mean(axis=1)
    assert (low, high) == pytest.approx(tuple(np.percentile(means, [5.0, 95.0])), rel=1e-12)
    assert bootstrap_mean_ci(values, resamples=500, confidence=0.9, seed=12) != (low, high)


def test_all_equal_values_give_a_point_interval_without_warning():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        low, high = bootstrap_mean_ci([0.8] * 6, resamples=200)
    assert low == high == pytest.approx(0.8, rel=1e-15)  # every resample has the same mean


def test_fewer_than_two_values_or_non_finite_give_nan():
    for values in ([], [0.5], [0.5, math.inf], [0.5, math.nan]):
        assert all(math.isnan(v) for v in bootstrap_mean_ci(values, resamples=100))
    assert all(math.isnan(v) for v in bootstrap_mean_ci([0.1, 0.2], resamples=0))
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_mean_ci([0.1, 0.2, 0.3], confidence=1.0)


def test_undefined_resamples_are_skipped_and_counted():
    x = np.array([0.0, 0.0, 0.0, 1.0, 2.0])

    def positive_mean(sample, axis=-1):  # undefined (NaN) on a resample without a positive value
        total, count = np.sum(np.where(sample > 0, sample, 0.0), axis), np.sum(sample > 0, axis)
        with np.errstate(invalid="ignore"):
            return total / count

    ci = percentile_ci((x,), positive_mean, resamples=400, seed=3)
    draws = x[np.random.default_rng(3).integers(0, 5, (400, 5))]
    defined = (draws > 0).any(axis=1)
    assert ci.skipped == int((~defined).sum()) > 0
    kept = [row[row > 0].mean() for row in draws[defined]]
    np.testing.assert_allclose([ci.low[0], ci.high[0]], np.percentile(kept, [2.5, 97.5]), rtol=1e-12)

    never = percentile_ci((np.zeros(4),), positive_mean, resamples=50)
    assert never.skipped == 50 and math.isnan(never.low[0]) and math.isnan(never.high[0])


def test_single_observation_is_its_own_resample():
    one = percentile_ci((np.array([0.3]),), _mean, resamples=100)
    assert (one.low[0], one.high[0], one.skipped) == (0.3, 0.3, 0)
    undefined = percentile_ci((np.array([0.3]),), lambda x, axis=-1: np.full(x.shape[:-1], np.nan), resamples=100)
    assert undefined.skipped == 100 and math.isnan(undefined.low[0])
    empty = percentile_ci((np.array([]),), _mean, resamples=100)
    assert empty.skipped == 0 and math.isnan(empty.high[0])


def test_paired_resampling_keeps_pairs_together():
    x = np.random.default_rng(0).normal(size=30)

    def mean_difference(a, b, axis=-1):
        return np.mean(a - b, axis=axis)

    paired = percentile_ci((x, x.copy()), mean_difference, resamples=200, paired=True)
    assert (paired.low[0], paired.high[0]) == (0.0, 0.0)  # every resample takes both members of a pair
    unpaired = percentile_ci((x, x.copy()), mean_difference, resamples=200)
    assert unpaired.low[0] < 0.0 < unpaired.high[0]


def test_several_values_per_resample():
    x = np.random.default_rng(1).uniform(size=20)

    def mean_and_max(sample, axis=-1):
        return np.stack([np.mean(sample, axis), np.max(sample, axis)])

    both = percentile_ci((x,), mean_and_max, resamples=300, seed=5)
    alone = percentile_ci((x,), _mean, resamples=300, seed=5)
    assert both.low.shape == (2,) and both.low[0] == alone.low[0] and both.high[0] == alone.high[0]
    assert both.high[1] == pytest.approx(x.max())


def test_classification_draws_are_scikit_learn_ranking_metrics_without_its_per_call_checks(monkeypatch):
    import sklearn
    from sklearn.metrics import roc_auc_score

    from evaluation import metric_table
    from evaluation.classification import classification_metrics

    calls = {"roc_curve": [], "average_precision_score": []}

    def recording(name):
        original = getattr(metric_table, name)

        def wrapper(labels, scores):
            calls[name].append((labels.copy(), sklearn.get_config()["skip_parameter_validation"]))
            return original(labels, scores)
        return wrapper

    for name in calls:
        monkeypatch.setattr(metric_table, name, recording(name))
    rng = np.random.default_rng(1)
    y = np.array([0, 1] * 10)
    p = np.round(0.3 * y + 0.7 * rng.random(20), 1)
    res = classification_metrics(y, p, resamples=40, seed=3)
    assert res.values["auroc"] == pytest.approx(roc_auc_score(y, p), abs=1e-15)
    for name, made in calls.items():  # point estimate, percentile_ci's look at the statistic, each two-class draw
        assert len(made) == 2 + 40 - res.resamples_skipped, name
        assert all(skipped for _, skipped in made) and not sklearn.get_config()["skip_parameter_validation"]
