"""How much of the H3K27M status one MRI sequence can show: cross-validated AUROC of a logistic model
of the generator's own status features, all of them and only those a sequence shows.

``synth.json`` holds the Bayes ceiling (the true status probabilities, every latent variable known). A
model that reads one sequence cannot see all of them: enhancement (focal or ring) is a T1C finding, while
site, necrosis, margin and T2 heterogeneity show on T2. This fits a logistic regression (scikit-learn,
5-fold cross-validated (fewer folds when a status has fewer patients), stratified, seed 0) on the
per-patient features in ``parameters/<id>.json`` and reports its AUROC for each feature set, as an estimate of the ceiling of a perfect T2-only reader.

    python -m benchmarks.h3k27m_visible_ceiling COHORT [--out visible_ceiling.md]
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from transforms.atomic_writer import atomic_write_text

FEATURE_SETS = {
    "all status features (T2 + T1C)": ("brainstem", "pontine", "focal_enhancement", "ring_enhancement", "necrosis",
                                       "margin", "t2_heterogeneity"),
    "T2-visible (site, necrosis, margin, heterogeneity)": ("brainstem", "pontine", "necrosis", "margin",
                                                          "t2_heterogeneity"),
    "site only (brainstem, pontine)": ("brainstem", "pontine"),
}


def cohort_features(cohort: Path) -> tuple[list[dict[str, float]], np.ndarray]:
    """Each patient's status features (``pipeline.data.h3k27m.style_status_features`` of its lesion) and status."""
    from pipeline.data.h3k27m import style_status_features
    from pipeline.data.lesion import LesionSpec

    features, statuses = [], []
    for row in csv.DictReader(open(cohort / "manifest.csv")):
        lesion = json.loads((cohort / "parameters" / f"{row['patient_id']}.json").read_text())["lesion"]
        spec = LesionSpec(**{k: tuple(tuple(tuple(x) for x in lobe) for lobe in v) if k == "lobes" else
                             (tuple(v) if isinstance(v, list) else v) for k, v in lesion.items()})
        features.append(style_status_features(spec))
        statuses.append(int(row["h3k27m"]))
    return features, np.asarray(statuses)


def visible_ceilings(features: list[dict[str, float]], statuses: np.ndarray) -> dict[str, float]:
    """Cross-validated AUROC of a logistic model per feature set."""
    folds = stratified_folds(statuses)
    result = {}
    for name, keys in FEATURE_SETS.items():
        x = np.array([[f[k] for k in keys] for f in features])
        p = cross_val_predict(LogisticRegression(), x, statuses, cv=folds, method="predict_proba")[:, 1]
        result[name] = float(roc_auc_score(statuses, p))
    return result


def stratified_folds(statuses: np.ndarray, max_folds: int = 5) -> StratifiedKFold:
    """Stratified, shuffled (seed 0) folds: ``max_folds``, or fewer when a status has fewer patients;
    ``ValueError`` when a status has fewer than 2 (no cross-validated AUROC is possible)."""
    counts = np.bincount(np.asarray(statuses, dtype=int), minlength=2)
    if counts.min() < 2:
        raise ValueError(f"{len(statuses)} patients, {counts[1]} altered: cross-validation needs at least 2 "
                         "patients of each status")
    return StratifiedKFold(n_splits=int(min(max_folds, counts.min())), shuffle=True, random_state=0)


def report_aurocs(title: str, header: str, aurocs: dict[str, float], out: Path | None) -> str:
    """``title`` and a Markdown table (``header``: its two column names, ``a | b``) of ``aurocs``; printed, and
    written atomically to ``out`` when given."""
    lines = [title, "", f"| {header} |", "|---|---|"]
    lines += [f"| {name} | {auroc:.3f} |" for name, auroc in aurocs.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        atomic_write_text(out, text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cohort", type=Path, help="a randomised synthetic cohort (manifest.csv, parameters/, synth.json)")
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    args = parser.parse_args(argv)
    features, statuses = cohort_features(args.cohort)
    try:
        ceilings = visible_ceilings(features, statuses)
    except ValueError as exc:
        parser.exit(2, f"{args.cohort}: {exc}\n")
    bayes = json.loads((args.cohort / "synth.json").read_text()).get("h3k27m_ceiling", {}).get("bayes_auroc")
    title = (f"Cohort `{args.cohort}`: {len(statuses)} patients, {int(statuses.sum())} altered; Bayes AUROC "
             f"(synth.json, true probabilities) {bayes:.3f}" if bayes is not None else "")
    report_aurocs(title, "features a reader sees | cross-validated AUROC (logistic, up to 5 folds)",
                  ceilings, args.out)


if __name__ == "__main__":
    main()
