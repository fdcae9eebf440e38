"""Write a cohort evaluation: ``cases.csv``, ``summary.csv``, ``summary.json``, PNG figures, ``report.html``.

Every file is written atomically (:mod:`evaluation.atomic_io`). ``report.html`` is
self-contained: the figures are embedded as base64 PNGs (matplotlib, Agg canvas, no display
needed) and also written to ``figures/``:

* ``<metric>_by_center.png``: box plot plus jittered points of the policy values per center
  (per sequence and center when several sequences were evaluated). For the distance metrics, the
  cases where exactly one mask is empty get the policy's penalty (e.g. 373 mm), which would flatten
  every box: they are left out of the boxes and drawn in a separate strip above a broken axis;
* ``overlay_{best,median,worst}.png``: among the cases with a lesion in the reference or the
  prediction (both empty shows nothing), those with the highest, median and lowest policy
  DSC, at the axial slice with the largest reference area (largest predicted area when the
  reference is empty), reoriented to RAS and shown in radiological convention; reference
  outline green, prediction outline red, on the image when its path is known and it shares
  the reference's grid, else on the reference mask. Left: whole slice; right: zoomed on the
  lesion.
"""

from __future__ import annotations

import html
import math
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from evaluation.atomic_io import atomic_write_bytes, atomic_write_text
from evaluation.cohort_result import CohortResult
from evaluation.image_io import load_image
from evaluation.json_values import json_text
from evaluation.mask_io import load_mask
from evaluation.metric_table import SEGMENTATION_TABLE, Metric, metric_row
from evaluation.pairing import FAILURE_KINDS
from evaluation.reports.html import PAGE_END, fmt, html_table, img_tag, new_figure, page_start, png_bytes
from evaluation.reports.slice_figures import axial_display, draw_outline, draw_slice, mark_sides
from evaluation.summary import METRICS, summary_records

__all__ = ["write_outputs", "metric_plot_figure", "metric_plot_png", "overlay_png", "pick_showcase_cases"]

REFERENCE_COLOUR = "#00e000"
PREDICTION_COLOUR = "#ff2020"


def _row(metric: str) -> Metric:
    return metric_row(metric, SEGMENTATION_TABLE)


def _group_labels(cases: pd.DataFrame, by_sequence: bool) -> pd.Series:
    if by_sequence:
        return cases["sequence"].astype(str) + " | " + cases["center"].astype(str)
    return cases["center"].astype(str)


def _penalised(evaluated: pd.DataFrame, metric: str) -> pd.Series:
    """Cases whose distance value is the empty-case policy's penalty (exactly one mask empty)."""
    if _row(metric).kind != "distance" or "policy_applied" not in evaluated:
        return pd.Series(False, index=evaluated.index)
    applied = evaluated["policy_applied"].fillna(False).astype(bool)
    return applied & evaluated["empty_case"].isin(("ref", "pred"))


def metric_plot_figure(evaluated: pd.DataFrame, metric: str, policy_mode: str,
                       failed: Mapping[str, int] | None = None, by_sequence: bool | None = None):
    """The figure of :func:`metric_plot_png` (a matplotlib ``Figure``; its last axes hold the boxes)."""
    if by_sequence is None:
        by_sequence = evaluated["sequence"].nunique() > 1
    labels = _group_labels(evaluated, by_sequence)
    values = evaluated[f"{metric}_policy"].astype(float)
    penalised = _penalised(evaluated, metric)
    groups = sorted(set(labels.unique()) | {g for g, n in (failed or {}).items() if n})
    fig = new_figure(max(3.6, 1.2 + 1.1 * len(groups)), 4.2 if penalised.any() else 3.6)
    if penalised.any():  # broken axis: a strip for the penalty values above the boxes
        top, ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 5], "hspace": 0.08})
    else:
        top, ax = None, fig.add_subplot(1, 1, 1)
    rng = np.random.default_rng(0)
    data, ticks, hidden = [], [], 0
    for index, group in enumerate(groups):
        in_group = (labels == group).to_numpy()
        v = values[in_group & ~penalised.to_numpy()].to_numpy()
        finite = v[np.isfinite(v)]
        hidden += int(v.size - finite.size)
        data.append(finite)
        n_failed = int((failed or {}).get(group, 0))
        n_penalty = int(penalised[in_group].sum())
        notes = [f"{n_failed} failed"] if n_failed else []
        notes += [f"{n_penalty} one empty"] if n_penalty else []
        ticks.append(f"{group}\n(n={int(in_group.sum())}" + "".join(f", {n}" for n in notes) + ")")
        if finite.size:
            ax.scatter(index + 1 + rng.uniform(-0.12, 0.12, finite.size), finite, s=16, color="#1f5fa8",
                       alpha=0.8, zorder=3, linewidths=0)
        if n_penalty:
            p = values[in_group & penalised.to_numpy()].to_numpy()
            top.scatter(index + 1 + rng.uniform(-0.12, 0.12, p.size), p, s=22, marker="x", color="#d62728",
                        zorder=3, linewidths=1.2)
    if top is not None:
        penalty_values = values[penalised].to_numpy()
        low, high = float(penalty_values.min()), float(penalty_values.max())
        top.set_ylim(low - max(1.0, 0.05 * low), high + max(1.0, 0.05 * high))
        top.set_yticks(sorted(set(np.round(penalty_values, 2))))
        top.spines["bottom"].set_visible(False)
        ax.spines["top"].set_visible(False)
        top.tick_params(axis="x", bottom=False)
        for axis, y in ((top, 0.0), (ax, 1.0)):  # the break marks
            axis.plot([0, 0.02], [y - 0.03, y + 0.03], transform=axis.transAxes, color="k", clip_on=False, lw=1)
        top.grid(axis="y", alpha=0.3)
    filled = [i for i, d in enumerate(data) if d.size]
    if filled:
        ax.boxplot([data[i] for i in filled], positions=[i + 1 for i in filled], widths=0.5,
                   showfliers=False, medianprops={"color": "#d62728"}, boxprops={"color": "#444444"})
    ax.set_xticks(range(1, len(groups) + 1), ticks, fontsize=8)
    ax.set_xlim(0.4, len(groups) + 0.6)
    ax.set_ylabel(_row(metric).label)
    if _row(metric).kind == "overlap":
        ax.set_ylim(-0.03, 1.03)
    title = f"{_row(metric).label} by center ({policy_mode} policy)"
    if hidden:
        title += f"\n{hidden} non-finite value(s) not drawn"
    if top is not None:
        title += "\nx: one mask empty (penalty)"
    (top if top is not None else ax).set_title(title, fontsize=9 if top is not None else 10)
    ax.grid(axis="y", alpha=0.3)
    if top is None:
        fig.tight_layout()
    else:
        fig.subplots_adjust(left=0.24, right=0.97, top=0.86, bottom=0.2)
    return fig


def metric_plot_png(evaluated: pd.DataFrame, metric: str, policy_mode: str,
                    failed: Mapping[str, int] | None = None, by_sequence: bool | None = None) -> bytes:
    """Box plot and jittered points of ``<metric>_policy`` per center (finite values only; the rest counted).

    ``failed``: cases not evaluated per group label (shown under the group's n). Groups are
    ``<sequence> | <center>`` when ``by_sequence`` (default: more than one sequence evaluated).
    Distance metrics: the one-empty-mask penalty cases are drawn above a broken axis, not in the boxes.
    """
    return png_bytes(metric_plot_figure(evaluated, metric, policy_mode, failed, by_sequence))


def pick_showcase_cases(evaluated: pd.DataFrame) -> dict[str, pd.Series]:
    """Best, median and worst evaluated case by policy DSC among the cases with a lesion in the reference or
    the prediction (ties broken by case id; NaN DSC excluded)."""
    both_empty = evaluated["ref_empty"].fillna(False).astype(bool) & evaluated["pred_empty"].fillna(False).astype(bool)
    ranked = evaluated[np.isfinite(evaluated["dsc_policy"].astype(float)) & ~both_empty]
    if ranked.empty:
        return {}
    ranked = ranked.sort_values(["dsc_policy", "case_id"], ascending=[False, True], kind="mergesort")
    picks = {"best": ranked.iloc[0], "median": ranked.iloc[(len(ranked) - 1) // 2], "worst": ranked.iloc[-1]}
    return picks


def _canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, tuple[float, ...]]:
    if array.ndim == 2:
        array = array[..., None]
    img = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(array), affine))
    return np.asanyarray(img.dataobj), tuple(float(z) for z in img.header.get_zooms()[:3])


def _background(row: Mapping, ref: Any) -> tuple[np.ndarray, str]:
    path = row.get("image_path")
    if isinstance(path, str) and path and os.path.exists(path):
        try:
            img = load_image(path)  # NIfTI or DICOM series folder
            if tuple(img.shape[:3]) == tuple(ref.array.shape[:3]) and np.allclose(img.affine, ref.affine, atol=1e-3):
                data = np.asanyarray(img.dataobj).astype(np.float32)
                return (data[..., 0] if data.ndim == 4 else data), "image"
        except Exception:  # an unreadable image only costs the background
            pass
    return ref.array.astype(np.float32), "reference mask (no image)"


def overlay_png(row: Mapping, title: str) -> bytes:
    """Overlay of one evaluated case (module docstring)."""
    ref = load_mask(row["ref_path"], _label_classes(row))
    pred = load_mask(row["pred_path"])
    background, background_name = _background(row, ref)
    ref_c, zooms = _canonical(ref.array.astype(np.uint8), ref.affine)
    pred_c, _ = _canonical(pred.array.astype(np.uint8), ref.affine)
    image_c, _ = _canonical(background, ref.affine)
    source = ref_c if ref_c.any() else pred_c
    k = int(np.argmax(source.sum(axis=(0, 1)))) if source.any() else source.shape[2] // 2
    image, ref_s, pred_s = (axial_display(v, k) for v in (image_c, ref_c, pred_c))
    aspect = zooms[1] / zooms[0]  # display rows are the y axis, columns the x axis

    fig = new_figure(9.0, 4.9, facecolor="black")
    union = (ref_s > 0) | (pred_s > 0)
    for n, zoom in enumerate((False, True)):
        ax = fig.add_subplot(1, 2, n + 1)
        draw_slice(ax, image, aspect=aspect)
        for mask, colour in ((ref_s, REFERENCE_COLOUR), (pred_s, PREDICTION_COLOUR)):
            draw_outline(ax, mask > 0, colour, linewidth=1.6 if zoom else 0.9)
        if zoom and union.any():
            rows, cols = np.nonzero(union)
            half_mm = max(20.0, 0.8 * max((np.ptp(rows) + 1) * zooms[1], (np.ptp(cols) + 1) * zooms[0]))
            cy, cx = rows.mean(), cols.mean()
            ax.set_xlim(cx - half_mm / zooms[0], cx + half_mm / zooms[0])
            ax.set_ylim(cy + half_mm / zooms[1], cy - half_mm / zooms[1])
        mark_sides(ax)
        empty = [name for name, m in (("reference", ref_c), ("prediction", pred_c)) if not m.any()]
        note = f" ({' and '.join(empty)} empty)" if empty else ""
        ax.set_title(f"zoom{note}" if zoom else f"axial slice {k} (RAS), on {background_name}", color="white",
                     fontsize=9)
        ax.set_axis_off()
    fig.text(0.30, 0.03, "reference", color=REFERENCE_COLOUR, fontsize=10, ha="center")
    fig.text(0.70, 0.03, "prediction", color=PREDICTION_COLOUR, fontsize=10, ha="center")
    fig.suptitle(title, color="white", fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.08, top=0.86, wspace=0.04)
    return png_bytes(fig)


def _label_classes(row: Mapping) -> tuple[int, ...] | None:
    value = row.get("ref_label_classes")
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() in ("", "1"):
        return None
    return tuple(int(v) for v in str(value).split())


# ----------------------------------------------------------------------------- HTML


def _definitions(result: CohortResult) -> str:
    p = result.policy
    if p.mode == "raw":
        policy = ("<b>raw</b>: values of empty cases are kept as computed (NaN for 0/0, inf for a distance to an "
                  "empty mask); groups with such values report NaN or inf statistics and count them in "
                  "<code>n_nonfinite</code>.")
    else:
        policy = (f"<b>BraTS-compatible</b>: both masks empty &rarr; DSC, Jaccard, sensitivity, PPV = "
                  f"{p.both_empty_dsc:g}, HD95 = {p.both_empty_hd95:g} mm; exactly one empty (missed or "
                  f"hallucinated lesion) &rarr; overlap metrics = {p.one_empty_dsc:g}, HD95 = {p.one_empty_hd95:g} "
                  "mm. The raw values stay in the <code>*_raw</code> columns of cases.csv.")
    return f"""
<ul>
<li><b>DSC</b> 2TP/(2TP+FP+FN), <b>Jaccard</b> TP/(TP+FP+FN), <b>sensitivity</b> TP/(TP+FN), <b>PPV</b>
TP/(TP+FP), exact voxel counts on the reference grid.</li>
<li>Surface: face-connected boundary voxels (the array edge counts as background); distances are exact
Euclidean distances in mm between surface voxels using the voxel spacing of the header.</li>
<li><b>HD95</b> = max of the two directed 95th percentiles, max(p95 d(P&rarr;R), p95 d(R&rarr;P)) (MONAI's
definition). <b>HD95 pooled</b> = 95th percentile of both directed distance sets pooled (medpy and BraTS
toolkits); always &le; HD95. Percentiles interpolate linearly.</li>
<li>Empty-case policy &mdash; {policy}</li>
<li>Statistics use the policy values of the evaluated cases: mean, sample SD (ddof 1), median, Q1/Q3 and
IQR (linear interpolation), and the {result.confidence:.0%} percentile bootstrap CI of the mean
({result.bootstrap} resamples, seed {result.seed}). Failed cases are not in any statistic; they are counted
in <code>n_failed</code> and listed above.</li>
<li>A prediction must lie on the reference's grid: same shape and spacing, affine within
{result.affine_atol_mm:g} mm; otherwise the case fails as <code>grid_mismatch</code>.</li>
</ul>"""


def _summary_table(summary: pd.DataFrame) -> str:
    rows = []
    order = {m: i for i, m in enumerate(METRICS)}
    summary = summary.sort_values("metric", key=lambda c: c.map(order), kind="mergesort")
    for r in summary.itertuples():
        d = _row(r.metric).digits
        rows.append([_row(r.metric).label, r.level, r.sequence, r.center, str(r.n_evaluated),
                     str(r.n_failed), str(r.n_nonfinite), fmt(r.mean, d), fmt(r.sd, d), fmt(r.median, d),
                     fmt(r.q1, d), fmt(r.q3, d), fmt(r.iqr, d), f"{fmt(r.ci_low, d)} – {fmt(r.ci_high, d)}"])
    return html_table(["metric", "level", "sequence", "center", "n", "failed", "non-finite", "mean", "SD", "median",
                   "Q1", "Q3", "IQR", "95% CI of mean"], rows)


def _cases_table(cases: pd.DataFrame) -> str:
    rows = []
    for r in cases.to_dict("records"):
        ok = r["status"] == "evaluated"
        rows.append([r["case_id"], str(r["center"]), str(r["sequence"]), r["status"] if ok else r["failure"]]
                    + [fmt(r[f"{m}_policy"], _row(m).digits) if ok else "" for m in METRICS]
                    + [fmt(r.get("ref_volume_ml")) if ok else "", fmt(r.get("pred_volume_ml")) if ok else "",
                       r["empty_case"] if ok else ""])
    return html_table(["case", "center", "sequence", "status"] + [_row(m).label for m in METRICS]
                  + ["ref mL", "pred mL", "empty"], rows)


def _html(result: CohortResult, title: str, inputs: Mapping[str, str], plots: dict[str, bytes],
          overlays: dict[str, tuple[pd.Series, bytes | None, str]]) -> str:
    failures = result.failures
    parts = [page_start(title)]
    info = [[k, str(v)] for k, v in inputs.items()]
    info += [["cases", str(len(result.cases))], ["evaluated", str(result.n_evaluated)],
             ["failed", str(result.n_failed)], ["empty-case policy", result.policy.mode]]
    parts.append(html_table(["", ""], info))
    parts.append(f"<h2>Cases not evaluated ({len(failures)})</h2>")
    if failures:
        parts.append(html_table(["case", "patient", "sequence", "center", "kind", "file", "reason"],
                            [[f.case_id, f.patient_id, f.sequence, f.center, f.kind, f.file, f.reason]
                             for f in failures], "failures"))
        kinds = sorted({f.kind for f in failures})
        parts.append("<p>" + "; ".join(f"<code>{k}</code>: {html.escape(FAILURE_KINDS.get(k, k))}"
                                       for k in kinds) + ".</p>")
    else:
        parts.append('<p class="ok">Every case was evaluated.</p>')
    if result.unpaired_predictions:
        parts.append(f"<p>Predictions that match no reference ({len(result.unpaired_predictions)}, not evaluated): "
                     + ", ".join(f"<code>{html.escape(Path(p).name)}</code>" for p in result.unpaired_predictions)
                     + "</p>")
    parts.append("<h2>Summary (policy values)</h2>")
    parts.append(_summary_table(result.summary))
    if plots:
        parts.append("<h2>Metrics by center</h2><div class='figs'>")
        parts += [img_tag(png, f"{m} by center") for m, png in plots.items()]
        parts.append("</div>")
    if overlays:
        parts.append("<h2>Best, median and worst case (by policy DSC, among cases with a lesion in the reference "
                     "or the prediction)</h2><div class='overlays'>")
        for name, (row, png, error) in overlays.items():
            caption = (f"{name}: {row['case_id']} ({row['center']}, {row['sequence']}) — DSC "
                       f"{fmt(row['dsc_policy'])}, HD95 {fmt(row['hd95_policy'], 2)} mm")
            parts.append(f"<h3>{html.escape(caption)}</h3>")
            parts.append(img_tag(png, caption) if png
                         else f"<p class='bad'>overlay not drawn: {html.escape(error)}</p>")
        parts.append("</div>")
    parts.append("<h2>All cases</h2>")
    parts.append(_cases_table(result.cases))
    parts.append("<h2>Definitions</h2>")
    parts.append(_definitions(result))
    parts.append(PAGE_END)
    return "\n".join(parts)


def _showcase_title(name: str, row: pd.Series) -> str:
    return (f"{name}: {row['case_id']} ({row['center']}) DSC {fmt(row['dsc_policy'])}, "
            f"HD95 {fmt(row['hd95_policy'], 2)} mm")


def write_outputs(result: CohortResult, output_dir: str | os.PathLike, title: str = "Cohort evaluation",
                  inputs: Mapping[str, str] | None = None, plots: bool = True) -> dict[str, Path]:
    """Write every output of ``result`` into ``output_dir``; returns the paths by name."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    paths["cases"] = atomic_write_text(out / "cases.csv", result.cases.to_csv(index=False, lineterminator="\n"))
    paths["summary_csv"] = atomic_write_text(out / "summary.csv",
                                             result.summary.to_csv(index=False, lineterminator="\n"))
    document = {
        "inputs": dict(inputs or {}),
        "policy": asdict(result.policy),
        "affine_atol_mm": result.affine_atol_mm,
        "bootstrap": {"method": "percentile bootstrap of the mean", "resamples": result.bootstrap,
                      "seed": result.seed, "confidence": result.confidence},
        "n_cases": int(len(result.cases)),
        "n_evaluated": result.n_evaluated,
        "n_failed": result.n_failed,
        "groups": summary_records(result.summary),
        "failures": [asdict(f) for f in result.failures],
        "unpaired_predictions": list(result.unpaired_predictions),
    }
    paths["summary_json"] = atomic_write_text(out / "summary.json", json_text(document))
    plot_pngs: dict[str, bytes] = {}
    overlays: dict[str, tuple[pd.Series, bytes | None, str]] = {}
    evaluated = result.evaluated
    if plots and not evaluated.empty:
        by_sequence = bool(result.cases["sequence"].nunique() > 1)
        not_evaluated = result.cases[result.cases["status"] != "evaluated"]
        failed = _group_labels(not_evaluated, by_sequence).value_counts().to_dict() if len(not_evaluated) else {}
        for metric in METRICS:
            plot_pngs[metric] = metric_plot_png(evaluated, metric, result.policy.mode, failed, by_sequence)
            paths[f"plot_{metric}"] = atomic_write_bytes(out / "figures" / f"{metric}_by_center.png",
                                                         plot_pngs[metric])
        for name, row in pick_showcase_cases(evaluated).items():
            try:
                png = overlay_png(row, _showcase_title(name, row))
            except Exception as exc:  # a figure must not lose the report
                overlays[name] = (row, None, f"{type(exc).__name__}: {exc}")
                continue
            overlays[name] = (row, png, "")
            paths[f"overlay_{name}"] = atomic_write_bytes(out / "figures" / f"overlay_{name}.png", png)
    paths["report"] = atomic_write_text(out / "report.html",
                                        _html(result, title, dict(inputs or {}), plot_pngs, overlays))
    return paths
