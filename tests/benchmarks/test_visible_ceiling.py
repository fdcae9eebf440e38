"""benchmarks.h3k27m_visible_ceiling: the feature set that carries the status scores high, one that does not ~0.5."""

import numpy as np

from benchmarks.h3k27m_visible_ceiling import FEATURE_SETS, visible_ceilings


def test_ceiling_follows_the_features_that_carry_the_status():
    rng = np.random.default_rng(0)
    n = 400
    keys = sorted({k for keys in FEATURE_SETS.values() for k in keys})
    features = [{k: float(rng.normal()) for k in keys} for _ in range(n)]
    # the status depends on ring enhancement only: invisible on T2, not a site feature
    statuses = np.array([int(f["ring_enhancement"] + 0.3 * rng.normal() > 0) for f in features])
    result = visible_ceilings(features, statuses)
    assert result["all status features (T2 + T1C)"] > 0.9
    assert abs(result["T2-visible (site, necrosis, margin, heterogeneity)"] - 0.5) < 0.1
    assert abs(result["site only (brainstem, pontine)"] - 0.5) < 0.1
