"""Patient-level H3K27M prediction with the co-training network, slice by slice.

A patient's probability of H3K27M alteration is the **mean of the slice probabilities over
the slices that show the tumour** (:func:`evaluation.patient_probabilities`, ``how="mean"``).
Which slices show the tumour is decided by the network's own mask branch (predicted tumour
area of at least ``min_tumour_pixels``), never by a reference mask, so validation, evaluation
and inference on unlabeled cohorts use one rule. Without a mask branch (``cls_only``), or when
no slice passes, every slice that shows the head is used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from evaluation.classification import patient_probabilities, point_metrics
from pipeline.networks.h3k27m_export import split_status_mask

HEAD_FRACTION = 0.05  # a slice "shows the head" when this fraction of it is above 0.05 (images in [0, 1])


def _status_outputs(out: dict | torch.Tensor, num_classes: int = 2) -> tuple[torch.Tensor, torch.Tensor | None,
                                                                           torch.Tensor]:
    """(class logits, mask logits or None, features) of a :class:`~pipeline.networks.H3K27MNet` dict or of an
    :class:`~pipeline.networks.H3K27MExportNet` tensor (its TorchScript form too), which has no features:
    then the class logits stand in for them."""
    if isinstance(out, torch.Tensor):
        class_logits, mask_logits = split_status_mask(out, num_classes)
        return class_logits, mask_logits, class_logits
    return out["class_logits"], out.get("mask_logits"), out["features"]


@dataclass
class PatientStatus:
    """One patient's prediction: probability, the slices used, tumour-mask probabilities, features."""

    probability: float
    slice_probabilities: np.ndarray
    slices_used: np.ndarray
    mask_probability: torch.Tensor | None
    features: np.ndarray


def predict_patient_status(
    net: torch.nn.Module,
    volume: torch.Tensor,
    sw_batch_size: int = 16,
    min_tumour_pixels: int = 20,
    aggregation: str = "mean",
) -> PatientStatus:
    """Run ``net`` over the axial slices of a preprocessed ``(1, H, W, D)`` volume (values in [0, 1]).

    ``net``: an :class:`~pipeline.networks.H3K27MNet` (dict output) or an
    :class:`~pipeline.networks.H3K27MExportNet` (one tensor; also its TorchScript export)."""
    if volume.ndim != 4 or volume.shape[0] != 1:
        raise ValueError(f"expected a (1, H, W, D) volume, got shape {tuple(volume.shape)}")
    device = next(net.parameters()).device
    slices = torch.as_tensor(volume).permute(3, 0, 1, 2).float()  # (D, 1, H, W)
    probs, masks, feats = [], [], []
    net.eval()
    with torch.inference_mode():
        for start in range(0, slices.shape[0], sw_batch_size):
            class_logits, mask_logits, features = _status_outputs(net(slices[start:start + sw_batch_size].to(device)))
            probs.append(torch.softmax(class_logits.float(), 1)[:, 1].cpu())
            feats.append(features.float().cpu())
            if mask_logits is not None:
                masks.append(torch.sigmoid(mask_logits.float()).cpu())
    slice_probs = torch.cat(probs).numpy().astype(np.float64)
    features = torch.cat(feats).numpy()
    mask = torch.cat(masks).permute(1, 2, 3, 0) if masks else None  # (1, H, W, D)
    head = ((slices > 0.05).flatten(1).float().mean(1) >= HEAD_FRACTION).numpy()
    chosen = head.copy()
    if mask is not None:
        tumour = ((mask[0] > 0.5).sum((0, 1)) >= min_tumour_pixels).numpy() & head
        if tumour.any():
            chosen = tumour
    if not chosen.any():
        chosen = np.ones_like(head)
    used = np.flatnonzero(chosen)
    table = pd.DataFrame({"patient_id": "p", "probability": slice_probs[used]})
    probability = float(patient_probabilities(table, how=aggregation)["probability"].iloc[0])
    return PatientStatus(probability, slice_probs, used, mask, features[used].mean(0))


def _dice(pred: torch.Tensor, ref: torch.Tensor) -> float:
    pred, ref = pred.bool(), ref.bool()
    total = int(pred.sum()) + int(ref.sum())
    return 1.0 if total == 0 else 2.0 * int((pred & ref).sum()) / total


def evaluate_status_model(
    net: torch.nn.Module,
    volumes: Iterable[dict],
    sw_batch_size: int = 16,
    min_tumour_pixels: int = 20,
    aggregation: str = "mean",
) -> tuple[pd.DataFrame, np.ndarray]:
    """Patient table (``patient_id, center, label, probability, n_slices_used, dice``) and features (N, F).

    Two meanings of "label" meet here: in ``volumes`` (MONAI's key names) ``label`` is the reference
    tumour *mask* and ``h3k27m`` the status; in the returned table (the input of
    :mod:`evaluation.classification`) ``label`` is the H3K27M *status*: 1 altered, 0 wild-type, -1 unknown.
    ``volumes`` yields preprocessed dicts (``image`` (1, H, W, D), optional ``label`` mask,
    ``patient_id``, ``center``, ``h3k27m``), e.g. a MONAI ``Dataset`` with the ``validate`` transforms.
    ``dice`` compares the mask branch with the reference mask on the preprocessed grid (NaN without one).
    """
    rows, features = [], []
    for item in volumes:
        pred = predict_patient_status(net, item["image"], sw_batch_size, min_tumour_pixels, aggregation)
        dice, reference_mask, status = float("nan"), item.get("label"), int(item.get("h3k27m", -1))
        if pred.mask_probability is not None and reference_mask is not None:
            dice = _dice(pred.mask_probability > 0.5, torch.as_tensor(reference_mask) > 0.5)
        rows.append({"patient_id": item.get("patient_id", f"case_{len(rows)}"), "center": item.get("center", ""),
                     "label": status, "probability": pred.probability,
                     "n_slices_used": len(pred.slices_used), "dice": dice})
        features.append(pred.features)
    return pd.DataFrame(rows), np.stack(features) if features else np.zeros((0, 0))


def status_summary(table: pd.DataFrame, threshold: float = 0.5) -> dict[str, float]:
    """AUROC, accuracy, sensitivity, specificity and mean Dice of a patient table (known statuses only)."""
    known = table[table["label"] >= 0]
    statuses, probs = known["label"].to_numpy(), known["probability"].to_numpy()
    if len(set(statuses.tolist())) < 2:
        raise ValueError(f"status metrics need altered and wild-type patients; got statuses {sorted(set(statuses))}")
    out = point_metrics(probs, statuses, threshold)
    out["dice"] = float(np.nanmean(table["dice"])) if table["dice"].notna().any() else float("nan")
    return out
