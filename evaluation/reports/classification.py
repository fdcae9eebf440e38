"""H3K27M status report: ROC and PR curves, t-SNE of features, saliency overlays, metrics with CIs, HTML.

* :func:`roc_curve_points`, :func:`pr_curve_points`: the curves' points (scikit-learn's ``roc_curve`` and
  ``precision_recall_curve``), refusing one class.
* :func:`plot_roc_curves`, :func:`plot_pr_curves`: one curve per fold plus the pooled curve,
  AUROC / AUPRC in the legend, chance diagonal / prevalence line; PNG bytes.
* :func:`plot_tsne`: 2D t-SNE (scikit-learn) of feature vectors coloured by status; PNG bytes.
* :func:`saliency_overlay_png` (of :mod:`evaluation.reports.slice_figures`): a slice with a saliency heat map and an
  optional mask outline (the map itself comes from :mod:`pipeline.inference.saliency`, which needs torch).
* :func:`write_classification_report`: ``patients.csv``, ``metrics.csv``, ``metrics.json``,
  ``roc.png``, ``pr.png``, ``tsne.png``, ``saliency/*.png`` and a self-contained
  ``report.html``, all written atomically (:mod:`evaluation.atomic_io`).

Metrics are those of :func:`evaluation.classification.classification_metrics` (percentile
bootstrap CI over patients) per fold and pooled over folds.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_curve, roc_curve

from evaluation.atomic_io import atomic_write_bytes, atomic_write_text
from evaluation.classification_ceiling import ceiling_text
from evaluation.classification import (
    CLASSIFICATION_METRICS,
    _as_arrays,
    average_precision,
    classification_metrics,
    roc_auc,
)
from evaluation.json_values import json_text
from evaluation.metric_table import CLASSIFICATION_TABLE, DICE_MEAN, Metric, metric_row
from evaluation.reports.html import PAGE_END, fmt, html_table, img_tag, new_figure, page_start, png_bytes
from evaluation.reports.slice_figures import saliency_overlay_png  # noqa: F401  (re-exported)
from evaluation.summary import bootstrap_mean_ci
from transforms.vocabulary import STATUS_NAMES

__all__ = [
    "POOLED",
    "roc_curve_points",
    "pr_curve_points",
    "plot_roc_curves",
    "plot_pr_curves",
    "plot_tsne",
    "saliency_overlay_png",
    "classification_metrics_table",
    "metrics_summary_text",
    "write_classification_report",
]

POOLED = "pooled"
"""Name of the row / curve over the patients of all (pooled) folds."""
STATUS_COLOURS = {0: "#1f6fb4", 1: "#d62728"}
FOLD_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")

LabelsScores = tuple[Sequence[Any], Sequence[float]]


def _row(metric: str) -> Metric:
    return metric_row(metric, CLASSIFICATION_TABLE, (DICE_MEAN,))


# ----------------------------------------------------------------------------- curves


def _two_class_arrays(labels: Sequence[Any], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y, s = _as_arrays(labels, scores)
    n1 = int(y.sum())
    if n1 == 0 or n1 == y.size:
        raise ValueError(f"a curve needs both classes; got {n1} altered of {y.size} patients")
    return y, s


def roc_curve_points(labels: Sequence[Any], scores: Sequence[float],
                     drop_intermediate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC curve ``(fpr, tpr, thresholds)`` of scikit-learn's ``roc_curve``: thresholds decreasing from ``inf``
    (the point (0, 0)); ``drop_intermediate`` drops collinear points. Raises ``ValueError`` with one class only.
    """
    y, s = _two_class_arrays(labels, scores)
    return roc_curve(y, s, drop_intermediate=drop_intermediate)


def pr_curve_points(labels: Sequence[Any], scores: Sequence[float],
                    drop_intermediate: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision-recall curve ``(precision, recall, thresholds)`` of scikit-learn's ``precision_recall_curve``:
    one point per distinct score (thresholds increasing), then the point (recall 0, precision 1) without a
    threshold; ``drop_intermediate`` keeps only the first and last point of each recall value. Raises
    ``ValueError`` with one class only.
    """
    y, s = _two_class_arrays(labels, scores)
    return precision_recall_curve(y, s, drop_intermediate=drop_intermediate)


def _both_classes(labels: Sequence[Any]) -> bool:
    y = np.asarray(labels)
    return bool(y.size) and 0 < int(np.sum(y == 1)) < y.size


def _with_pooled(folds: Mapping[str, LabelsScores], pooled: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    curves = {}
    for name, (labels, scores) in folds.items():
        curves[str(name)] = _as_arrays(labels, scores)
    if pooled and len(curves) > 1 and POOLED not in curves:
        curves[POOLED] = (np.concatenate([y for y, _ in curves.values()]),
                          np.concatenate([s for _, s in curves.values()]))
    return curves


def _fold_colours(names: Sequence[str]) -> dict[str, str]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    folds = [n for n in names if n != POOLED]
    out = {n: cmap(i % 10) for i, n in enumerate(folds)}
    out[POOLED] = "black"
    return out


def _curve_figure(folds: Mapping[str, LabelsScores], pooled: bool, kind: str, title: str | None,
                  figsize: tuple[float, float]) -> bytes:
    curves = _with_pooled(folds, pooled)
    colours = _fold_colours(list(curves))
    fig = new_figure(*figsize)
    ax = fig.add_subplot(1, 1, 1)
    for name, (y, s) in curves.items():
        is_pooled = name == POOLED
        style = {"color": colours[name], "linewidth": 2.4 if is_pooled else 1.3, "alpha": 1.0 if is_pooled else 0.85,
                 "zorder": 4 if is_pooled else 3}
        n_text = f"n={y.size}, {int(y.sum())} alt."
        if not _both_classes(y):
            ax.plot([], [], label=f"{name} ({n_text}): undefined, one class", **style)
            continue
        if kind == "roc":
            fpr, tpr, _ = roc_curve_points(y, s)
            ax.plot(fpr, tpr, label=f"{name} ({n_text}): AUROC {roc_auc(y, s):.3f}", **style)
        else:
            precision, recall, _ = pr_curve_points(y, s)
            ax.plot(recall, precision, drawstyle="steps-post",
                    label=f"{name} ({n_text}): AUPRC {average_precision(y, s):.3f}", **style)
    if kind == "roc":
        ax.plot([0, 1], [0, 1], linestyle="--", color="#999999", linewidth=1, label="chance (AUROC 0.5)", zorder=1)
        ax.set_xlabel("1 - specificity (false positive rate)")
        ax.set_ylabel("sensitivity (true positive rate)")
        default_title = "ROC, H3K27M-altered vs wild-type"
        legend_loc = "lower right"
    else:
        reference = curves.get(POOLED) or next(iter(curves.values()), None)
        if reference is not None and reference[0].size:
            prevalence = float(np.mean(reference[0]))
            ax.axhline(prevalence, linestyle="--", color="#999999", linewidth=1, zorder=1,
                       label=f"chance = prevalence {prevalence:.2f}")
        ax.set_xlabel("recall (sensitivity)")
        ax.set_ylabel("precision (PPV)")
        default_title = "Precision-recall, altered = positive"
        legend_loc = "lower left"
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc=legend_loc, fontsize=7.5, framealpha=0.9)
    ax.set_title(title or default_title, fontsize=10)
    fig.tight_layout()
    return png_bytes(fig)


def plot_roc_curves(folds: Mapping[str, LabelsScores], pooled: bool = True, title: str | None = None,
                    figsize: tuple[float, float] = (5.6, 5.6)) -> bytes:
    """ROC curve per fold (``name -> (labels, probabilities)``) and, with several folds, pooled; PNG.

    The legend gives each curve's AUROC (:func:`evaluation.classification.roc_auc`); a fold
    with one class is listed as undefined. Dashed diagonal: chance.
    """
    return _curve_figure(folds, pooled, "roc", title, figsize)


def plot_pr_curves(folds: Mapping[str, LabelsScores], pooled: bool = True, title: str | None = None,
                   figsize: tuple[float, float] = (5.6, 5.6)) -> bytes:
    """Precision-recall curve per fold and, with several folds, pooled; PNG.

    Step curves (average precision is the area under the step curve); AUPRC in the legend
    (:func:`evaluation.classification.average_precision`). Dashed line: the pooled
    prevalence of altered patients, the precision of a random ranking.
    """
    return _curve_figure(folds, pooled, "pr", title, figsize)


# ----------------------------------------------------------------------------- t-SNE


def tsne_embedding(features: Any, seed: int = 0, perplexity: float | None = None,
                   standardize: bool = True) -> np.ndarray:
    """2D t-SNE of ``features`` ``(N, F)``, ``N >= 3``; deterministic for a given ``seed``.

    ``perplexity`` defaults to ``min(30, (N - 1) / 3)`` (scikit-learn needs it below ``N``).
    With ``standardize`` every feature is z-scored first (constant features become 0), so that
    no single large-valued channel dominates the distances.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be a 2D array (patients x features), got shape {x.shape}")
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 feature vectors, got {n}")
    if not np.isfinite(x).all():
        raise ValueError("features contain NaN or infinite values")
    if standardize:
        sd = x.std(axis=0)
        x = (x - x.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    if perplexity is None:
        perplexity = min(30.0, (n - 1) / 3.0)
    if not 0 < perplexity < n:
        raise ValueError(f"perplexity must lie in (0, {n}) for {n} points, got {perplexity}")
    init = "pca" if min(x.shape) >= 2 and np.ptp(x, axis=0).any() else "random"
    tsne = TSNE(n_components=2, perplexity=float(perplexity), init=init, learning_rate="auto",
                random_state=int(seed))
    # One OpenMP thread: a cohort's few hundred points take well under a second, while busy-waiting
    # OpenMP threads on shared cores made a 16-point embedding take 30 s.
    with threadpool_limits(limits=1):
        return tsne.fit_transform(x)


def plot_tsne(features: Any, labels: Sequence[Any], ids: Sequence[str] | None = None, seed: int = 0,
              perplexity: float | None = None, groups: Sequence[str] | None = None, title: str | None = None,
              figsize: tuple[float, float] = (6.0, 5.0), annotate_max: int = 40) -> bytes:
    """t-SNE scatter of ``features`` (N, F), coloured by status (``labels`` 0/1); PNG bytes.

    ``ids`` label the points when there are at most ``annotate_max`` of them; ``groups``
    (e.g. the fold of each patient) set the marker shape. See :func:`tsne_embedding`.
    The image is ``figsize * 100`` pixels.
    """
    y = np.asarray(labels)
    x = np.asarray(features, dtype=np.float64)
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be 1D with one entry per feature row, got {y.shape} for {x.shape}")
    y, _ = _as_arrays(y, np.zeros(y.shape[0]))
    for name, seq in (("ids", ids), ("groups", groups)):
        if seq is not None and len(seq) != y.size:
            raise ValueError(f"{name} must have one entry per feature row ({y.size}), got {len(seq)}")
    perp = min(30.0, (y.size - 1) / 3.0) if perplexity is None else perplexity
    emb = tsne_embedding(x, seed=seed, perplexity=perp)
    fig = new_figure(*figsize)
    ax = fig.add_subplot(1, 1, 1)
    group_values = [str(g) for g in groups] if groups is not None else None
    group_names = list(dict.fromkeys(group_values)) if group_values is not None else [None]
    for gi, group in enumerate(group_names):
        in_group = np.ones(y.size, bool) if group is None else np.array([g == group for g in group_values])
        for status in (0, 1):
            sel = in_group & (y == status)
            if not sel.any():
                continue
            ax.scatter(emb[sel, 0], emb[sel, 1], s=36, color=STATUS_COLOURS[status], alpha=0.85,
                       marker=FOLD_MARKERS[gi % len(FOLD_MARKERS)], edgecolors="white", linewidths=0.5)
    for status in (0, 1):  # legend: colour = status, then marker = group
        ax.scatter([], [], s=36, color=STATUS_COLOURS[status],
                   label=f"{STATUS_NAMES[status]} (n={int(np.sum(y == status))})")
    if group_values is not None:
        for gi, group in enumerate(group_names):
            ax.scatter([], [], s=36, color="#888888", marker=FOLD_MARKERS[gi % len(FOLD_MARKERS)], label=group)
    if ids is not None and y.size <= annotate_max:
        for (px, py), text in zip(emb, ids):
            ax.annotate(str(text), (px, py), fontsize=6, xytext=(3, 3), textcoords="offset points", color="#444444")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_xlabel("t-SNE 1")
    ax.set_ylabel("t-SNE 2")
    ax.legend(fontsize=7.5, loc="best", framealpha=0.9)
    ax.set_title(title or f"t-SNE of features (n={y.size}, perplexity {perp:.1f}, seed {seed})", fontsize=10)
    fig.tight_layout()
    return png_bytes(fig)


# ----------------------------------------------------------------------------- metrics


def _patient_frames(per_fold: Mapping[str, pd.DataFrame], threshold: float) -> pd.DataFrame:
    if not per_fold:
        raise ValueError("per_fold is empty: give at least one fold's patient table")
    frames = []
    for name, table in per_fold.items():
        name = str(name)
        if name == POOLED:
            raise ValueError(f"{POOLED!r} is reserved for the pooled row; rename that fold")
        missing = [c for c in ("patient_id", "probability", "label") if c not in table.columns]
        if missing:
            raise ValueError(f"fold {name!r}: patient table lacks column(s) {missing}; columns: {list(table.columns)}")
        if table.empty:
            raise ValueError(f"fold {name!r}: patient table is empty")
        dup = table["patient_id"].astype(str)
        dup = dup[dup.duplicated()].unique().tolist()
        if dup:
            raise ValueError(f"fold {name!r}: patients listed more than once: {dup[:5]}")
        try:
            y, p = _as_arrays(table["label"].to_numpy(), pd.to_numeric(table["probability"]).to_numpy())
        except ValueError as exc:
            raise ValueError(f"fold {name!r}: {exc}") from None
        if ((p < 0) | (p > 1)).any():
            raise ValueError(f"fold {name!r}: probabilities must lie in [0, 1]")
        frame = table.copy()
        frame.insert(0, "fold", name)
        frame["patient_id"] = frame["patient_id"].astype(str)
        frame["label"], frame["probability"] = y, p
        frames.append(frame)
    patients = pd.concat(frames, ignore_index=True, sort=False)
    patients["status"] = patients["label"].map(STATUS_NAMES)
    patients["predicted"] = (patients["probability"] >= threshold).astype(np.int64)
    patients["predicted_status"] = patients["predicted"].map(STATUS_NAMES)
    patients["correct"] = patients["predicted"] == patients["label"]
    if "dice" in patients.columns:
        patients["dice"] = pd.to_numeric(patients["dice"], errors="raise").astype(np.float64)
    first = ["fold", "patient_id"] + (["center"] if "center" in patients.columns else []) + [
        "label", "status", "probability", "predicted", "predicted_status", "correct"] + (
        ["dice"] if "dice" in patients.columns else [])
    return patients[first + [c for c in patients.columns if c not in first]]


def classification_metrics_table(patients: pd.DataFrame, pool: Sequence[str] | None = None, threshold: float = 0.5,
                                 resamples: int = 2000, confidence: float = 0.95,
                                 seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Metrics per fold and pooled from a patient table with a ``fold`` column.

    Returns ``(table, groups)``: ``table`` has one row per fold (then ``pooled``) and metric
    (``fold, metric, value, ci_low, ci_high, n, n_patients, n_positive``; ``n`` = patients
    the value is computed on, for Dice those with a finite Dice); ``groups`` maps each fold
    to :meth:`ClassificationResult.as_dict` plus the Dice fields. ``pool``: the folds pooled
    (default all; the pooled folds must not share patients); empty for no pooled row.
    """
    folds = list(dict.fromkeys(patients["fold"].astype(str)))
    pool = folds if pool is None else [str(f) for f in pool]
    unknown = [f for f in pool if f not in folds]
    if unknown:
        raise ValueError(f"pool names unknown fold(s) {unknown}; folds: {folds}")
    groups_rows = {f: patients[patients["fold"].astype(str) == f] for f in folds}
    if pool:
        pooled = patients[patients["fold"].astype(str).isin(pool)]
        shared = pooled["patient_id"][pooled["patient_id"].duplicated()].unique().tolist()
        if shared:
            raise ValueError(f"pooled folds share patients {shared[:5]}: a pooled metric would count them twice; "
                             "pass pool= with folds that do not overlap")
        groups_rows[POOLED] = pooled
    rows, groups = [], {}
    has_dice = "dice" in patients.columns
    for name, frame in groups_rows.items():
        result = classification_metrics(frame["label"].to_numpy(), frame["probability"].to_numpy(),
                                        threshold=threshold, resamples=resamples, confidence=confidence, seed=seed)
        record = result.as_dict()
        if name == POOLED:
            record["folds"] = list(pool)
        for m in CLASSIFICATION_METRICS:
            rows.append({"fold": name, "metric": m, "value": result.values[m], "ci_low": result.ci_low[m],
                         "ci_high": result.ci_high[m], "n": result.n_patients, "n_patients": result.n_patients,
                         "n_positive": result.n_positive})
        if has_dice:
            dice = frame["dice"].to_numpy(dtype=np.float64)
            dice = dice[np.isfinite(dice)]
            value = float(dice.mean()) if dice.size else math.nan
            low, high = bootstrap_mean_ci(dice, resamples, confidence, seed)
            record.update(dice=value, dice_ci_low=low, dice_ci_high=high, dice_n=int(dice.size))
            rows.append({"fold": name, "metric": "dice", "value": value, "ci_low": low, "ci_high": high,
                         "n": int(dice.size), "n_patients": result.n_patients, "n_positive": result.n_positive})
        groups[name] = record
    return pd.DataFrame(rows), groups


# ----------------------------------------------------------------------------- report


def _features_for(patients: pd.DataFrame, features: Any) -> tuple[np.ndarray, pd.DataFrame, int]:
    """Feature rows matched to ``patients``: an array in patient-table order, or by patient id."""
    if isinstance(features, (pd.DataFrame, Mapping)):
        lookup = ({str(k): v for k, v in features.items()} if isinstance(features, Mapping)
                  else {str(k): row for k, row in zip(features.index, features.to_numpy())})
        keys = patients["patient_id"].astype(str)
        if patients["patient_id"].duplicated().any():
            keys = patients["fold"].astype(str) + "/" + keys  # a patient in several folds: key "<fold>/<id>"
            if not keys.isin(list(lookup)).any():
                raise ValueError("patients appear in several folds: key features by '<fold>/<patient_id>'")
        present = keys.isin(list(lookup)).to_numpy()
        x = np.stack([np.asarray(lookup[k], dtype=np.float64).ravel() for k in keys[present]]) if present.any() \
            else np.zeros((0, 0))
        return x, patients[present], int((~present).sum())
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != len(patients):
        raise ValueError(f"a feature array must be (patients, features) in patients.csv order: {len(patients)} "
                         f"rows expected, got shape {x.shape}")
    return x, patients, 0


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._") or "saliency"


def _metrics_html(table: pd.DataFrame, confidence: float) -> str:
    metrics = list(dict.fromkeys(table["metric"]))
    header = ["fold", "patients", "altered"] + [f"{_row(m).label} ({confidence:.0%} CI)" for m in metrics]
    rows = []
    for fold, frame in table.groupby("fold", sort=False):
        by_metric = {r.metric: r for r in frame.itertuples()}
        first = frame.iloc[0]
        cells = [str(fold), str(int(first["n_patients"])), str(int(first["n_positive"]))]
        for m in metrics:
            r = by_metric[m]
            n_note = f" [n={r.n}]" if _row(m).kind == "mean" else ""
            d = _row(m).digits
            cells.append(f"{fmt(r.value, d)} ({fmt(r.ci_low, d)}–{fmt(r.ci_high, d)}){n_note}")
        rows.append(cells)
    return html_table(header, rows)


def _patients_html(patients: pd.DataFrame) -> str:
    cols = [c for c in ("fold", "patient_id", "center", "status", "probability", "predicted_status", "correct",
                        "dice", "n_slices") if c in patients.columns]
    rows = [[fmt(r[c]) for c in cols] for r in patients[cols].to_dict("records")]
    return html_table(cols, rows)


def _definitions(threshold: float, resamples: int, confidence: float, seed: int, probability_definition: str,
                 pool: Sequence[str], skipped: Mapping[str, int], has_dice: bool, has_tsne: bool) -> str:
    skipped_text = ", ".join(f"{k}: {v}" for k, v in skipped.items() if v) or "none"
    dice = ("<li><b>Dice (mask)</b>: mean over patients of the mask branch's Dice as supplied in the <code>dice</code> "
            "column (patients without a finite Dice left out, their count is <code>n</code>); CI: percentile "
            "bootstrap of the mean with the same resamples and seed.</li>") if has_dice else ""
    pooled = (f"<li><b>Pooled</b>: the metrics over the patients of folds {html.escape(', '.join(pool))} together "
              "(each patient once, scored by the model of its own fold). Pooled AUROC/AUPRC also reward or penalise "
              "differences in calibration between the fold models.</li>") if pool else ""
    tsne = ("<li><b>t-SNE</b>: scikit-learn <code>TSNE</code> (2D, PCA initialisation, z-scored features, one point "
            "per patient); distances between clusters and cluster sizes in a t-SNE map are not meaningful, and "
            "feature vectors of different fold models live in different spaces.</li>") if has_tsne else ""
    return f"""
<ul>
<li><b>Patient probability</b>: {html.escape(probability_definition)}. Class 1 = H3K27M-altered (positive),
0 = wild-type.</li>
<li><b>Threshold</b>: a patient is predicted altered when its probability &ge; {threshold:g}.
<b>Accuracy</b> (TP+TN)/N, <b>sensitivity</b> TP/(TP+FN) (altered found), <b>specificity</b> TN/(TN+FP)
(wild-type found).</li>
<li><b>AUROC</b>: Mann-Whitney U / (n<sub>alt</sub>&middot;n<sub>wt</sub>), ties count one half (scikit-learn
<code>roc_curve</code> and <code>auc</code>, i.e. <code>roc_auc_score</code>). <b>AUPRC</b>: average precision
&Sigma;(R<sub>n</sub>&minus;R<sub>n&minus;1</sub>) P<sub>n</sub> over distinct thresholds, no interpolation
(scikit-learn <code>average_precision_score</code>); a random ranking
scores the prevalence. Threshold-free, so they ignore calibration.</li>
<li><b>{confidence:.0%} CI</b>: percentile bootstrap over patients (<code>scipy.stats.bootstrap</code>): {resamples}
draws of the patients with replacement (<code>numpy.random.default_rng({seed})</code>), all metrics recomputed
on each draw; draws with only one class are skipped (skipped per fold: {html.escape(skipped_text)}). Small folds
give wide intervals.</li>
{pooled}
{dice}
{tsne}
</ul>"""


def metrics_summary_text(table: pd.DataFrame, report: str | os.PathLike | None = None,
                         ceiling: Mapping[str, Any] | None = None) -> str:
    """The metrics of :func:`classification_metrics_table` (or ``metrics.csv``) as a few printable lines: one
    per fold (and pooled) with each metric's value and CI, the Bayes-optimal ceiling of the cohort when
    known (:mod:`evaluation.classification_ceiling`), then where the report is."""
    lines = []
    for fold, part in table.groupby("fold", sort=False):
        first = part.iloc[0]
        cells = []
        for row in part.itertuples():
            d = _row(row.metric).digits
            value = "n/a" if not np.isfinite(row.value) else f"{row.value:.{d}f}"
            ci = f" [{row.ci_low:.{d}f}, {row.ci_high:.{d}f}]" if np.isfinite(row.ci_low) and np.isfinite(row.ci_high) \
                else ""
            cells.append(f"{_row(row.metric).label} {value}{ci}")
        lines.append(f"{fold} ({int(first.n_patients)} patients, {int(first.n_positive)} altered): " + ", ".join(cells))
    if ceiling:
        lines.append(ceiling_text(dict(ceiling)))
    if report is not None:
        lines.append(f"report: {report}")
    return "\n".join(lines)


def write_classification_report(
    out_dir: str | os.PathLike,
    per_fold: Mapping[str, pd.DataFrame],
    features: Any = None,
    saliency_pngs: Mapping[str, bytes] | None = None,
    title: str = "H3K27M status prediction",
    threshold: float = 0.5,
    resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    pool: Sequence[str] | None = None,
    probability_definition: str = "mean of the slice probabilities P(altered) over the slices that show the tumour",
    inputs: Mapping[str, str] | None = None,
    ceiling: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write the H3K27M status report into ``out_dir``; returns the written paths by name.

    Args:
        per_fold: fold name -> patient table with ``patient_id``, ``probability`` (P(altered)),
            ``label`` (1 altered, 0 wild-type) and optionally ``center``, ``dice`` (the mask
            branch's Dice of the patient) and any other columns (kept in ``patients.csv``).
        features: feature vectors for the t-SNE (``tsne.png``): a mapping or a DataFrame indexed
            by ``patient_id`` (``"<fold>/<patient_id>"`` when a patient is in several folds), or
            an ``(N, F)`` array in ``patients.csv`` row order. Points are coloured by status,
            shaped by fold. Patients without features are left out (counted in the JSON).
        saliency_pngs: caption -> PNG bytes (e.g. from
            :func:`pipeline.inference.saliency.saliency_overlay`), embedded in the HTML and
            written to ``saliency/<caption>.png``.
        threshold, resamples, confidence, seed: as in
            :func:`evaluation.classification.classification_metrics`.
        pool: the folds whose patients make the pooled row and curve (default: all; ``[]``: none).
        probability_definition: how the patient probability was obtained (for the definitions).
        inputs: extra key/value lines for the report's header table (e.g. the model, cohort).
        ceiling: the Bayes-optimal AUROC and accuracy of the scored patients
            (:func:`evaluation.classification_ceiling.status_ceiling_for`), printed beside the
            model's metrics and stored in ``metrics.json`` under ``"ceiling"``.

    Files: ``patients.csv`` (every fold's patients with ``status``, ``predicted`` (0/1 at
    ``threshold``), ``predicted_status`` and ``correct``), ``metrics.csv`` (long: one row per
    fold and metric with value and CI), ``metrics.json``, ``roc.png``, ``pr.png``,
    ``tsne.png`` (with features), ``saliency/*.png``, ``report.html``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    patients = _patient_frames(per_fold, threshold)
    folds = list(dict.fromkeys(patients["fold"]))
    pool_list = folds if pool is None else [str(f) for f in pool]
    table, groups = classification_metrics_table(patients, pool_list, threshold, resamples, confidence, seed)
    paths: dict[str, Path] = {}
    paths["patients"] = atomic_write_text(out / "patients.csv", patients.to_csv(index=False, lineterminator="\n"))
    paths["metrics_csv"] = atomic_write_text(out / "metrics.csv", table.to_csv(index=False, lineterminator="\n"))

    curve_input = {f: (g["label"].to_numpy(), g["probability"].to_numpy())
                   for f, g in patients.groupby("fold", sort=False)}
    if len(pool_list) > 0 and len(folds) > 1:
        pooled = patients[patients["fold"].isin(pool_list)]
        curve_input[POOLED] = (pooled["label"].to_numpy(), pooled["probability"].to_numpy())
    roc_png = plot_roc_curves(curve_input, pooled=False)
    pr_png = plot_pr_curves(curve_input, pooled=False)
    paths["roc"] = atomic_write_bytes(out / "roc.png", roc_png)
    paths["pr"] = atomic_write_bytes(out / "pr.png", pr_png)

    tsne_png, tsne_info = None, None
    if features is not None:
        x, with_features, n_missing = _features_for(patients, features)
        tsne_info = {"n_points": int(len(with_features)), "n_without_features": n_missing, "seed": seed,
                     "perplexity": min(30.0, (len(with_features) - 1) / 3.0) if len(with_features) else None}
        if len(with_features) >= 3:
            tsne_png = plot_tsne(x, with_features["label"].to_numpy(), ids=with_features["patient_id"].tolist(),
                                 seed=seed, groups=with_features["fold"].tolist() if len(folds) > 1 else None)
            paths["tsne"] = atomic_write_bytes(out / "tsne.png", tsne_png)
        else:
            tsne_info["skipped"] = f"t-SNE needs at least 3 patients with features, got {len(with_features)}"

    saliency_files: dict[str, str] = {}
    for caption, png in (saliency_pngs or {}).items():
        name = _safe_name(caption)
        while f"{name}.png" in saliency_files.values():
            name += "_"
        saliency_files[caption] = f"{name}.png"
        paths[f"saliency_{name}"] = atomic_write_bytes(out / "saliency" / f"{name}.png", png)

    document = {
        "title": title,
        "inputs": dict(inputs or {}),
        "threshold": threshold,
        "probability": probability_definition,
        "bootstrap": {"method": "percentile bootstrap over patients; draws with one class skipped",
                      "resamples": resamples, "confidence": confidence, "seed": seed},
        "folds": folds,
        "pooled_folds": pool_list,
        "groups": groups,
        "tsne": tsne_info,
        "saliency": saliency_files,
        "ceiling": dict(ceiling) if ceiling else None,
    }
    paths["metrics_json"] = atomic_write_text(out / "metrics.json", json_text(document))

    parts = [page_start(title)]
    info = [[k, str(v)] for k, v in (inputs or {}).items()]
    info += [["folds", ", ".join(folds)], ["patients", str(len(patients))],
             ["altered / wild-type", f"{int(patients['label'].sum())} / {int((patients['label'] == 0).sum())}"],
             ["threshold", f"{threshold:g}"], ["bootstrap", f"{resamples} resamples, seed {seed}"]]
    parts.append(html_table(["", ""], info))
    parts.append("<h2>Metrics</h2>")
    parts.append(_metrics_html(table, confidence))
    if ceiling:
        parts.append(f"<p><b>Ceiling</b>: {html.escape(ceiling_text(dict(ceiling)))}. No model that sees only the "
                     "images can beat it: the status was drawn from these probabilities.</p>")
    parts.append("<h2>ROC and precision-recall curves</h2><div class='pair'>")
    parts += [img_tag(roc_png, "ROC curves"), img_tag(pr_png, "precision-recall curves")]
    parts.append("</div>")
    if tsne_info is not None and tsne_png is None:
        parts.append(f"<h2>t-SNE of the features</h2><p class='bad'>{html.escape(tsne_info['skipped'])}</p>")
    if tsne_png is not None:
        note = f" ({tsne_info['n_without_features']} patients without features left out)" \
            if tsne_info["n_without_features"] else ""
        parts.append(f"<h2>t-SNE of the features{html.escape(note)}</h2><div class='pair'>")
        parts.append(img_tag(tsne_png, "t-SNE of features"))
        parts.append("</div>")
    if saliency_pngs:
        parts.append("<h2>Saliency maps</h2><div class='overlays'>")
        for caption, png in saliency_pngs.items():
            parts.append(f"<h3>{html.escape(str(caption))}</h3>")
            parts.append(img_tag(png, str(caption)))
        parts.append("</div>")
    parts.append("<h2>Patients</h2>")
    parts.append(_patients_html(patients))
    parts.append("<h2>Definitions</h2>")
    skipped = {name: int(g["resamples_skipped"]) for name, g in groups.items()}
    parts.append(_definitions(threshold, resamples, confidence, seed, probability_definition, pool_list, skipped,
                              "dice" in patients.columns, tsne_png is not None))
    parts.append(PAGE_END)
    paths["report"] = atomic_write_text(out / "report.html", "\n".join(parts))
    return paths
