"""H3K27M status of a synthetic patient: a logistic model of imaging features plus unexplained noise.

Pontine location and little enhancement raise the odds of an altered tumour; the
status is drawn from the resulting probability, so imaging predicts it well but not
perfectly (overall about 70 % altered with the default lesion distribution).
"""

from __future__ import annotations

import math

import numpy as np

INTERCEPT = 0.7
PONS_LOG_ODDS = 1.2
ENHANCING_FRACTION_LOG_ODDS = -3.0  # per unit enhancing fraction of the lesion
LATENT_NOISE_SD = 0.5  # unobserved biology, on the log-odds scale


def h3k27m_log_odds(site: str, enhancing_fraction: float) -> float:
    """Imaging part of the log-odds of an H3K27M-altered tumour."""
    return INTERCEPT + PONS_LOG_ODDS * (site == "pons") + ENHANCING_FRACTION_LOG_ODDS * float(enhancing_fraction)


def h3k27m_probability(site: str, enhancing_fraction: float) -> float:
    """Probability of H3K27M alteration given only the imaging features (latent noise ignored)."""
    return 1.0 / (1.0 + math.exp(-h3k27m_log_odds(site, enhancing_fraction)))


def draw_h3k27m(rng: np.random.Generator, site: str, enhancing_fraction: float) -> int:
    """1 (altered) or 0 (wild-type)."""
    logit = h3k27m_log_odds(site, enhancing_fraction) + rng.normal(0.0, LATENT_NOISE_SD)
    return int(rng.random() < 1.0 / (1.0 + math.exp(-logit)))
