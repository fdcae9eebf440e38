"""Evaluate an H3K27M model on a cohort and write the classification report.

Patients with a known status are preprocessed once (``validate`` transforms), predicted with the
patient rule of :mod:`pipeline.inference.status`, and passed to
:func:`evaluation.reports.classification.write_classification_report` with their features (t-SNE)
and Grad-CAM overlays of the most and least confident patients of each status.

:func:`write_status_report` does the same from the ``predictions.csv`` table of ``dmg status``
(:mod:`pipeline.inference.status_cohort`): one row per center with the pooled row, the ceiling, and the
calibration of the probabilities (``calibration.png``, ``calibration.csv``, ``calibration.json`` with the
expected calibration error, :mod:`evaluation.calibration`).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from monai.data import Dataset

from evaluation.atomic_io import atomic_write_bytes, atomic_write_text
from evaluation.calibration import expected_calibration_error, plot_reliability, reliability_table
from evaluation.classification_ceiling import status_ceiling_for
from evaluation.reports.classification import metrics_summary_text, write_classification_report
from pipeline.checkpoint_io import load_state_dict
from pipeline.inference.saliency import saliency_overlay
from pipeline.inference.status import evaluate_status_model
from transforms import build_transforms

logger = logging.getLogger(__name__)


def _printed(paths: dict[str, Path], ceiling: dict | None) -> dict[str, Path]:
    """Print the metrics (value and 95% CI per fold), the ceiling and the report's path; return ``paths``."""
    print(metrics_summary_text(pd.read_csv(paths["metrics_csv"]), paths["report"], ceiling), flush=True)
    return paths


def _ceiling(cohort_dir: str | os.PathLike | None, tables: list[pd.DataFrame]) -> dict | None:
    """The Bayes-optimal ceiling of the scored patients when ``cohort_dir`` is a synthetic cohort with one."""
    patients = pd.concat(tables)
    return status_ceiling_for(cohort_dir, patients["patient_id"].astype(str).tolist(), patients["label"].tolist())


def _saliency_patients(table: pd.DataFrame, n: int) -> list[int]:
    """Row indices: the most confident altered and wild-type patients (alternating) and the two worst errors."""
    altered = table[table.label == 1].sort_values("probability", ascending=False).index.tolist()
    wild = table[table.label == 0].sort_values("probability").index.tolist()
    confident = [index for pair in zip(altered, wild) for index in pair]
    errors = (table.probability - table.label).abs().sort_values(ascending=False).index.tolist()
    chosen: list[int] = []
    for index in confident[: max(0, n - 2)] + errors[:2] + confident:
        if index not in chosen:
            chosen.append(index)
    return chosen[:n]


def _evaluate_items(
    net: torch.nn.Module, datalist: list[dict], spatial_size: int, sw_batch_size: int, min_tumour_pixels: int,
    n_saliency: int, caption_prefix: str = "", center_crop_fraction: float = 1.0,
    extra_sequences: Sequence[str] = (),
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, bytes]]:
    """Patient table, features (indexed by patient_id) and saliency PNGs of the known-status patients."""
    items = [d for d in datalist if d.get("h3k27m") in (0, 1)]
    if not items:
        raise ValueError("no patient with a known H3K27M status to evaluate")
    dataset = Dataset(items, build_transforms("validate", spatial_size=spatial_size,
                                              center_crop_fraction=center_crop_fraction,
                                              extra_image_keys=tuple(extra_sequences)))
    volumes = [dataset[i] for i in range(len(dataset))]
    table, features = evaluate_status_model(net, volumes, sw_batch_size, min_tumour_pixels)
    saliency = {}
    for index in _saliency_patients(table, n_saliency):
        volume = volumes[index]
        label = volume.get("label")
        area = (torch.as_tensor(label)[0] > 0).sum((0, 1)) if label is not None else None
        z = int(area.argmax()) if area is not None and area.max() > 0 else volume["image"].shape[-1] // 2
        mask = torch.as_tensor(label)[..., z] if label is not None else None
        row = table.loc[index]
        caption = f"{caption_prefix}{row.patient_id} ({'altered' if row.label == 1 else 'wild-type'}, slice {z})"
        saliency[caption] = saliency_overlay(net, torch.as_tensor(volume["image"])[..., z], mask=mask)
    columns = ["patient_id", "center", "label", "probability", "dice", "n_slices_used"]
    return table[columns], pd.DataFrame(features, index=table.patient_id), saliency


def evaluate_status_cohort(
    net: torch.nn.Module,
    datalist: list[dict],
    out_dir: str | os.PathLike,
    name: str = "external",
    spatial_size: int = 256,
    sw_batch_size: int = 16,
    min_tumour_pixels: int = 20,
    n_saliency: int = 4,
    title: str = "H3K27M status prediction",
    cohort_dir: str | os.PathLike | None = None,
    center_crop_fraction: float = 1.0,
    extra_sequences: Sequence[str] = (),
) -> dict[str, Path]:
    """Patient-level metrics with bootstrap CIs, curves, t-SNE and saliency for one cohort (one "fold").

    ``cohort_dir``: the cohort's folder; when it holds a synthetic ``synth.json`` with a status ceiling,
    the Bayes-optimal AUROC and accuracy of the scored patients are printed and reported beside the model's.
    ``center_crop_fraction`` and ``extra_sequences`` as the model was trained (:func:`transforms.build_transforms`).
    """
    table, features, saliency = _evaluate_items(net, datalist, spatial_size, sw_batch_size, min_tumour_pixels,
                                                n_saliency, center_crop_fraction=center_crop_fraction,
                                                extra_sequences=extra_sequences)
    ceiling = _ceiling(cohort_dir, [table])
    return _printed(write_classification_report(out_dir, {name: table}, features=features, saliency_pngs=saliency,
                                                title=title, ceiling=ceiling), ceiling)


def evaluate_status_cross_validation(
    net: torch.nn.Module,
    fold_models: Mapping[int, str | os.PathLike],
    fold_datalists: Mapping[int, list[dict]],
    out_dir: str | os.PathLike,
    spatial_size: int = 256,
    sw_batch_size: int = 16,
    min_tumour_pixels: int = 20,
    n_saliency: int = 2,
    title: str = "H3K27M status prediction, cross-validation",
    cohort_dir: str | os.PathLike | None = None,
    center_crop_fraction: float = 1.0,
    extra_sequences: Sequence[str] = (),
) -> dict[str, Path]:
    """Each fold's model on its own validation patients: per-fold rows plus the pooled row (every patient
    once, predicted by the model that did not see it). Folds without a model file are skipped, logged.
    ``cohort_dir`` as in :func:`evaluate_status_cohort` (the ceiling of the pooled patients)."""
    tables, features, saliency = {}, [], {}
    for fold in sorted(fold_models):
        path = Path(fold_models[fold])
        if not path.is_file():
            logger.warning("fold %d: no model at %s, left out of the report", fold, path)
            continue
        net.load_state_dict(load_state_dict(path, map_location=next(net.parameters()).device))
        name = f"fold{fold}"
        table, feats, pngs = _evaluate_items(net, fold_datalists[fold], spatial_size, sw_batch_size,
                                             min_tumour_pixels, n_saliency, caption_prefix=f"{name} ",
                                             center_crop_fraction=center_crop_fraction,
                                             extra_sequences=extra_sequences)
        tables[name] = table
        features.append(feats)
        saliency.update(pngs)
    if not tables:
        raise FileNotFoundError(f"no fold model found among {[str(p) for p in fold_models.values()]}")
    ceiling = _ceiling(cohort_dir, list(tables.values()))
    return _printed(write_classification_report(out_dir, tables, features=pd.concat(features),
                                                saliency_pngs=saliency, title=title, ceiling=ceiling), ceiling)


@dataclass
class StatusReport:
    """What :func:`write_status_report` wrote and measured."""

    paths: dict[str, Path]
    metrics: pd.DataFrame
    ceiling: dict | None
    ece: float
    ece_bins: int
    n_patients: int

    def summary_text(self) -> str:
        """Metrics with CIs per center and pooled, the ceiling, the ECE and the report's path (printable)."""
        text = metrics_summary_text(self.metrics, None, self.ceiling)
        ece = "n/a" if not math.isfinite(self.ece) else f"{self.ece:.3f}"
        return (f"{text}\nexpected calibration error (ECE, {self.ece_bins} bins) {ece} on {self.n_patients} "
                f"patients: {self.paths['calibration']}\nreport: {self.paths['report']}")


def write_status_report(
    predictions: pd.DataFrame,
    out_dir: str | os.PathLike,
    features: Mapping[str, Any] | None = None,
    threshold: float = 0.5,
    cohort_dir: str | os.PathLike | None = None,
    title: str = "H3K27M status prediction",
    inputs: Mapping[str, str] | None = None,
    bins: int = 10,
    resamples: int = 2000,
) -> StatusReport | None:
    """The classification report of the predicted patients whose status is known (``None`` when none is).

    ``predictions``: the table of :func:`~pipeline.inference.status_cohort.predict_cohort_status`
    (``probability_altered`` is already temperature-scaled); ``features``: patient id -> feature vector
    (t-SNE); ``threshold``: the one the predictions were made with; ``cohort_dir``: the cohort's folder, for
    the Bayes-optimal ceiling of a synthetic cohort (``synth.json``). Metrics come per center, with the pooled
    row when there are several centers; ``resamples`` bootstrap draws give their 95% CIs."""
    done = predictions[(predictions["status"] == "done") & predictions["h3k27m"].isin([0, 1])]
    if done.empty:
        return None
    table = pd.DataFrame({"patient_id": done["patient_id"].astype(str), "center": done["center"].astype(str),
                          "label": done["h3k27m"].astype(int).to_numpy(),
                          "probability": done["probability_altered"].astype(float).to_numpy(),
                          "logit_uncalibrated": done["logit_uncalibrated"].astype(float).to_numpy(),
                          "n_slices_used": done["slices_used"].astype(int).to_numpy()})
    per_center = {center: part.reset_index(drop=True) for center, part in table.groupby("center", sort=True)}
    feature_frame = None
    if features:
        known = [pid for pid in table["patient_id"] if pid in features]
        feature_frame = pd.DataFrame(np.stack([np.asarray(features[pid]) for pid in known]), index=known) \
            if known else None
    ceiling = status_ceiling_for(cohort_dir, table["patient_id"].tolist(), table["label"].tolist())
    paths = write_classification_report(out_dir, per_center, features=feature_frame, title=title,
                                        threshold=threshold, resamples=resamples,
                                        pool=None if len(per_center) > 1 else [], inputs=inputs, ceiling=ceiling)
    labels, probabilities = table["label"].to_numpy(), table["probability"].to_numpy()
    ece = expected_calibration_error(labels, probabilities, bins)
    out = Path(out_dir)
    paths["calibration"] = atomic_write_bytes(out / "calibration.png", plot_reliability(labels, probabilities, bins))
    paths["calibration_csv"] = atomic_write_text(
        out / "calibration.csv", reliability_table(labels, probabilities, bins).to_csv(index=False, lineterminator="\n"))
    record = {"ece": None if not math.isfinite(ece) else ece, "bins": int(bins), "n_patients": int(len(table)),
              "definition": "sum over equal-width bins of P(altered) of (patients in bin / N) * "
                            "|mean P(altered) - fraction altered|"}
    paths["calibration_json"] = atomic_write_text(out / "calibration.json", json.dumps(record, indent=2) + "\n")
    return StatusReport(paths, pd.read_csv(paths["metrics_csv"]), ceiling, ece, int(bins), int(len(table)))
