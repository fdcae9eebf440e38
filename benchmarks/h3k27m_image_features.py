"""How much of the H3K27M status simple image features show: a radiomics-style baseline beside the ceilings.

``synth.json``'s Bayes ceiling and :mod:`benchmarks.h3k27m_visible_ceiling` use the generator's own latent
variables (site, enhancement, necrosis, margin, texture), which no image reader sees directly. This measures
the image side: each patient is preprocessed exactly as the H3K27M model sees it
(:func:`transforms.build_transforms` ``"validate"`` with the given slice size, central crop and extra
sequences), and a few features are read inside the **reference** lesion mask: for every channel (sequence)
the lesion's mean and 95th percentile relative to the median of the rest of the head, and its standard
deviation; the lesion's height in the head (axial centroid over the head's axial extent: brainstem lies
lower than thalamus) and its log volume. A logistic regression (scikit-learn, standardised, 5-fold
stratified cross-validation, fewer folds when a status has fewer than 5 patients, seed 0) gives their
AUROC, plus each feature's own AUROC.

    python -m benchmarks.h3k27m_image_features COHORT [--extra-sequences t1c] [--spatial-size 96]
        [--center-crop-fraction 0.5] [--out image_features.md]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmarks.h3k27m_visible_ceiling import report_aurocs, stratified_folds

HEAD_THRESHOLD = 0.05  # of the normalised image: head voxels
MIN_LESION_VOXELS = 5
logger = logging.getLogger(__name__)


def lesion_features(image: np.ndarray, lesion: np.ndarray, channels: tuple[str, ...]) -> dict[str, float]:
    """Features of one preprocessed ``(C, H, W, D)`` image inside the boolean ``(H, W, D)`` lesion mask."""
    head = image[0] > HEAD_THRESHOLD
    rest = head & ~lesion
    if not rest.any():
        rest = ~lesion
    features = {}
    for c, name in enumerate(channels):
        inside, background = image[c][lesion], float(np.median(image[c][rest]))
        features[f"{name}_mean_rel"] = float(inside.mean()) - background
        features[f"{name}_p95_rel"] = float(np.percentile(inside, 95)) - background
        features[f"{name}_sd"] = float(inside.std())
    lesion_z, head_z = np.flatnonzero(lesion.any((0, 1))), np.flatnonzero(head.any((0, 1)))
    features["height_in_head"] = float((lesion_z.mean() - head_z[0]) / max(1, head_z[-1] - head_z[0]))
    features["log_volume"] = float(np.log(lesion.sum()))
    return features


def cohort_image_features(cohort: str | Path, sequence: str = "t2", extra_sequences: tuple[str, ...] = (),
                          spatial_size: int = 96, center_crop_fraction: float = 1.0
                          ) -> tuple[list[dict[str, float]], np.ndarray]:
    """Features and statuses of every patient with a known status and a lesion of at least a few voxels."""
    from pipeline.data.datalists import cohort_datalist
    from transforms import build_transforms

    transform = build_transforms("validate", spatial_size=spatial_size, center_crop_fraction=center_crop_fraction,
                                 extra_image_keys=tuple(extra_sequences))
    items = [d for d in cohort_datalist(cohort, sequence, require_label=True, extra_sequences=extra_sequences)
             if d["h3k27m"] in (0, 1)]
    features, statuses = [], []
    for item in items:
        data = transform(item)
        lesion = np.asarray(data["label"][0]) > 0
        if lesion.sum() < MIN_LESION_VOXELS:
            logger.warning("%s: lesion under %d voxels after preprocessing, left out", item["patient_id"],
                           MIN_LESION_VOXELS)
            continue
        features.append(lesion_features(np.asarray(data["image"], dtype=np.float32), lesion,
                                        (sequence, *extra_sequences)))
        statuses.append(int(item["h3k27m"]))
    return features, np.asarray(statuses)


def image_feature_aurocs(features: list[dict[str, float]], statuses: np.ndarray) -> dict[str, float]:
    """``{"all features (cross-validated logistic)": AUROC, <feature>: its own AUROC, ...}``."""
    names = list(features[0])
    x = np.array([[f[k] for k in names] for f in features])
    model = make_pipeline(StandardScaler(), LogisticRegression())
    folds = stratified_folds(statuses)
    p = cross_val_predict(model, x, statuses, cv=folds, method="predict_proba")[:, 1]
    result = {"all features (cross-validated logistic)": float(roc_auc_score(statuses, p))}
    result.update({k: float(roc_auc_score(statuses, x[:, i])) for i, k in enumerate(names)})
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohort", type=Path)
    parser.add_argument("--sequence", default="t2")
    parser.add_argument("--extra-sequences", nargs="*", default=[])
    parser.add_argument("--spatial-size", type=int, default=96)
    parser.add_argument("--center-crop-fraction", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    args = parser.parse_args(argv)
    features, statuses = cohort_image_features(args.cohort, args.sequence, tuple(args.extra_sequences),
                                               args.spatial_size, args.center_crop_fraction)
    reads = "+".join([args.sequence, *args.extra_sequences])
    if not features:
        parser.exit(2, f"{args.cohort}: no patient with a known status and a lesion of {MIN_LESION_VOXELS} voxels\n")
    try:
        aurocs = image_feature_aurocs(features, statuses)
    except ValueError as exc:
        parser.exit(2, f"{args.cohort}: {exc}\n")
    report_aurocs(f"Cohort `{args.cohort}`: {len(statuses)} patients ({int(statuses.sum())} altered), {reads}, "
                  f"{args.spatial_size} px, central crop {args.center_crop_fraction:g}",
                  "image features (reference lesion mask) | AUROC", aurocs, args.out)


if __name__ == "__main__":
    main()
