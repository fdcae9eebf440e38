"""Percentile bootstrap confidence intervals: the one implementation, on ``scipy.stats.bootstrap``.

:func:`percentile_ci` draws ``resamples`` resamples of the observations with replacement
(``numpy.random.default_rng(seed)``; ``paired=True`` resamples the observations of several arrays
together, e.g. the (label, score) of a patient), evaluates a vectorised statistic on each and returns
the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of the draws (linear interpolation),
one per value the statistic returns. Used by :func:`evaluation.summary.bootstrap_mean_ci` (the mean of
per-case metrics) and :func:`evaluation.classification.classification_metrics` (patient-level metrics).

Degenerate cases:

* a resample on which the statistic is undefined (it returns NaN, e.g. AUROC of a resample that drew
  patients of one class only) is left out of every quantile and counted in :attr:`BootstrapCI.skipped`;
  the interval comes from the other resamples, and is NaN when none is left;
* all-equal observations give the interval ``(value, value)``;
* fewer than two observations: scipy cannot resample one observation, and every resample of a single
  observation is that observation, so the statistic is evaluated once: NaN gives a NaN interval with every
  resample skipped, a value ``v`` the interval ``(v, v)``; no observation or ``resamples == 0``: NaN.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from scipy.stats import DegenerateDataWarning, bootstrap

__all__ = ["BootstrapCI", "percentile_ci"]

BATCH_ELEMENTS = 1_000_000
"""Resampled observations held in memory at once (scipy's ``batch`` is this divided by the sample size)."""


@dataclass(frozen=True)
class BootstrapCI:
    """Lower and upper interval bounds (one per value of the statistic) and the resamples left out."""

    low: np.ndarray
    high: np.ndarray
    skipped: int


def _nan_ci(size: int, skipped: int) -> BootstrapCI:
    return BootstrapCI(np.full(size, np.nan), np.full(size, np.nan), skipped)


def percentile_ci(
    data: Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    paired: bool = False,
) -> BootstrapCI:
    """Percentile bootstrap interval of ``statistic(*data, axis=-1)`` (module docstring).

    Args:
        data: the samples, 1D arrays (of one length when ``paired``).
        statistic: vectorised: takes arrays of shape ``(batch, n)`` and ``axis=-1`` and returns ``(batch,)``
            or ``(values, batch)``; NaN marks a resample on which it is undefined.
        resamples: number of resamples; 0 gives NaN bounds.
        confidence: interval level in (0, 1).
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same interval.
        paired: resample the observations of all arrays together (by index).
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    samples = tuple(np.asarray(d) for d in data)
    n = samples[0].shape[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # e.g. the mean of no observation
        values = np.atleast_1d(np.asarray(statistic(*(s[None, :] for s in samples), axis=-1), dtype=np.float64))
    size = values.shape[0] if values.ndim > 1 else 1
    if int(resamples) < 1 or n == 0:
        return _nan_ci(size, 0)
    if n == 1:
        single = values.reshape(size)
        if np.isnan(single).any():
            return _nan_ci(size, int(resamples))
        return BootstrapCI(single.copy(), single.copy(), 0)
    common = {"vectorized": True, "paired": paired, "confidence_level": confidence, "method": "percentile"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)  # NaN draws: left out below
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 in the statistic of a degenerate draw
        result = bootstrap(samples, statistic, n_resamples=int(resamples), batch=max(1, BATCH_ELEMENTS // n),
                           rng=np.random.default_rng(seed), **common)
    draws = np.asarray(result.bootstrap_distribution, dtype=np.float64).reshape(size, -1)
    defined = ~np.isnan(draws).any(axis=0)
    skipped = int(np.count_nonzero(~defined))
    if not defined.any():
        return _nan_ci(size, skipped)
    if skipped:  # the percentile interval of the defined draws only
        kept = SimpleNamespace(bootstrap_distribution=draws[:, defined].reshape(
            np.shape(result.bootstrap_distribution)[:-1] + (-1,)))
        result = bootstrap(samples, statistic, n_resamples=0, bootstrap_result=kept, **common)
    interval = result.confidence_interval
    return BootstrapCI(np.asarray(interval.low, dtype=np.float64).reshape(size),
                       np.asarray(interval.high, dtype=np.float64).reshape(size), skipped)
