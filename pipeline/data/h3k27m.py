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


def draw_h3k27m(rng: np.random.Generator, site: str, enhancing_fraction: float) -> int:
    """1 (altered) or 0 (wild-type)."""
    logit = h3k27m_log_odds(site, enhancing_fraction) + rng.normal(0.0, LATENT_NOISE_SD)
    return int(rng.random() < 1.0 / (1.0 + math.exp(-logit)))


# ------------------------------------------------------------------ randomised styles
# The status of a randomised-style patient is drawn from a logistic model of the lesion's own latent
# variables (LesionSpec), nothing else, so p = P(altered | latents) is known exactly and the cohort's
# Bayes-optimal AUROC and accuracy (evaluation.classification_ceiling) are the ceiling of any model.
# Directions follow the published radiology of H3K27M-altered diffuse midline glioma against its
# wild-type midline counterparts (e.g. Aboian et al., AJNR 2017; the summary in issue 13): altered
# tumours are brainstem (pontine) more often, enhance little or not at all, are less often necrotic,
# have ill-defined infiltrative margins and heterogeneous T2 signal; wild-type ones are more often
# thalamic, enhancing (ring), necrotic and better defined.  The weights are ours, not fitted to data;
# with ``signal=1`` a randomised cohort's Bayes-optimal AUROC is about 0.90.
BRAINSTEM_SITES = ("pons", "midbrain", "medulla")
STYLE_STATUS_INTERCEPT = 1.1
STYLE_STATUS_WEIGHTS: dict[str, float] = {
    "brainstem": 2.1,  # pons, midbrain or medulla (vs thalamus)
    "pontine": 0.8,  # the pons on top of that
    "focal_enhancement": -1.8,  # patchy or nodular
    "ring_enhancement": -2.9,
    "necrosis": -5.2,  # per unit necrotic radius fraction (cyst core, or 0.35 inside a ring)
    "margin": 1.3,  # per SD of the infiltrative edge width
    "t2_heterogeneity": 0.8,  # per SD of the texture SD, clipped to +-1.5 SD
}
RING_NECROTIC_FRACTION = 0.35  # render_lesion's ring: necrotic inside 0.65 of the mean radius depth
EDGE_MEAN_MM, EDGE_SD_MM = 2.35, 1.0  # of the randomised style's edge widths (infiltrative family 1.5x)
TEXTURE_MEAN, TEXTURE_SD = 0.16, 0.08  # of the randomised style's texture SDs
TEXTURE_CLIP_SD = 1.5  # the held-out style's textures lie above the training range; the cue saturates


def style_status_features(spec) -> dict[str, float]:
    """The latent variables of a :class:`~pipeline.data.lesion.LesionSpec` that carry the status signal."""
    necrotic = spec.necrotic_fraction if spec.necrotic_fraction > 0 else (
        RING_NECROTIC_FRACTION if spec.enhancement == "ring" else 0.0)
    texture_z = (spec.texture_sd - TEXTURE_MEAN) / TEXTURE_SD
    return {
        "brainstem": float(spec.site in BRAINSTEM_SITES),
        "pontine": float(spec.site == "pons"),
        "focal_enhancement": float(spec.enhancement in ("patchy", "nodular")),
        "ring_enhancement": float(spec.enhancement == "ring"),
        "necrosis": float(necrotic),
        "margin": (spec.edge_mm - EDGE_MEAN_MM) / EDGE_SD_MM,
        "t2_heterogeneity": float(np.clip(texture_z, -TEXTURE_CLIP_SD, TEXTURE_CLIP_SD)),
    }


def style_status_probability(spec, signal: float = 1.0) -> float:
    """P(altered | lesion latents) = sigmoid(signal * (intercept + w . features)); 0.5 for every patient
    at ``signal=0`` (no imaging correlate)."""
    if not math.isfinite(signal) or signal < 0:
        raise ValueError(f"status signal must be a finite number >= 0, got {signal}")
    features = style_status_features(spec)
    logit = STYLE_STATUS_INTERCEPT + sum(STYLE_STATUS_WEIGHTS[k] * v for k, v in features.items())
    return 1.0 / (1.0 + math.exp(-signal * logit))


def draw_style_h3k27m(rng: np.random.Generator, spec, signal: float = 1.0) -> tuple[int, float]:
    """(status, probability): 1 (altered) with probability :func:`style_status_probability`, else 0."""
    probability = style_status_probability(spec, signal)
    return int(rng.random() < probability), probability
