"""Evaluate an H3K27M model on a cohort and write the classification report.

Patients with a known status are preprocessed once (``validate`` transforms), predicted with the
patient rule of :mod:`pipeline.inference.status`, and passed to
:func:`evaluation.classification_report.write_classification_report` with their features (t-SNE)
and Grad-CAM overlays of the most and least confident patients of each status.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch
from monai.data import Dataset

from evaluation.classification_report import write_classification_report
from pipeline.inference.saliency import saliency_overlay
from pipeline.inference.status import evaluate_status_model
from transforms import build_transforms


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
) -> dict[str, Path]:
    """Patient-level metrics with bootstrap CIs, curves, t-SNE and saliency for one cohort (one "fold")."""
    items = [d for d in datalist if d.get("h3k27m") in (0, 1)]
    if not items:
        raise ValueError("no patient with a known H3K27M status to evaluate")
    dataset = Dataset(items, build_transforms("validate", spatial_size=spatial_size))
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
        caption = f"{row.patient_id} ({'altered' if row.label == 1 else 'wild-type'}, slice {z})"
        saliency[caption] = saliency_overlay(net, torch.as_tensor(volume["image"])[..., z], mask=mask)
    per_fold = {name: table[["patient_id", "center", "label", "probability", "dice", "n_slices_used"]]}
    return write_classification_report(out_dir, per_fold, features=pd.DataFrame(features, index=table.patient_id),
                                       saliency_pngs=saliency, title=title)
