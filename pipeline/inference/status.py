"""Patient-level H3K27M prediction with the co-training network, slice by slice.

A patient's probability of H3K27M alteration is the **mean of the slice probabilities over
the slices that show the tumour** (:func:`evaluation.patient_probabilities`, ``how="mean"``).
Its log-odds is the patient's logit (:attr:`PatientStatus.logit`). Temperature scaling acts on that
patient logit (``P(altered) = sigmoid(logit / temperature)``, :mod:`evaluation.calibration`), so the
temperature fitted on validation patients' logits is exactly the one applied; slice probabilities are
computed in float64, so the patient logit is finite up to about +-34.5.
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
from scipy.special import logit

from evaluation.calibration import apply_temperature
from evaluation.classification import patient_probabilities, point_metrics
from pipeline.networks.h3k27m_export import split_status_mask

HEAD_FRACTION = 0.05  # a slice "shows the head" when this fraction of it is above 0.05 (images in [0, 1])
PROBABILITY_EPS = 1e-15  # patient probabilities are clipped to [eps, 1 - eps] before taking their log-odds


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
    """One patient's prediction: probability, its log-odds, the slices used, tumour-mask probabilities, features.

    ``logit`` is before temperature scaling, ``probability`` after it (``sigmoid(logit / temperature)``)."""

    probability: float
    logit: float
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
    temperature: float = 1.0,
) -> PatientStatus:
    """Run ``net`` over the axial slices of a preprocessed ``(C, H, W, D)`` volume (values in [0, 1]; C input
    channels, one per sequence the net reads).

    ``net``: an :class:`~pipeline.networks.H3K27MNet` (dict output) or an
    :class:`~pipeline.networks.H3K27MExportNet` (one tensor; also its TorchScript export and its ONNX
    Runtime form, :class:`~pipeline.inference.onnx_runtime.OnnxNetwork`)."""
    if volume.ndim != 4:
        raise ValueError(f"expected a (C, H, W, D) volume, got shape {tuple(volume.shape)}")
    device = next(iter(net.parameters()), torch.empty(0)).device  # an ONNX network has none: CPU tensors in
    slices = torch.as_tensor(volume).permute(3, 0, 1, 2).float()  # (D, C, H, W)
    logits, masks, feats = [], [], []
    net.eval()
    with torch.inference_mode():
        for start in range(0, slices.shape[0], sw_batch_size):
            class_logits, mask_logits, features = _status_outputs(net(slices[start:start + sw_batch_size].to(device)))
            logits.append(class_logits.float().cpu())
            feats.append(features.float().cpu())
            if mask_logits is not None:
                masks.append(torch.sigmoid(mask_logits.float()).cpu())
    mask = torch.cat(masks).permute(1, 2, 3, 0) if masks else None  # (1, H, W, D)
    return patient_status_from_slices(torch.cat(logits), mask, volume, min_tumour_pixels, aggregation, temperature,
                                      features=torch.cat(feats))


def patient_status_from_slices(
    class_logits: torch.Tensor,
    mask_probability: torch.Tensor | None,
    volume: torch.Tensor,
    min_tumour_pixels: int = 20,
    aggregation: str = "mean",
    temperature: float = 1.0,
    features: torch.Tensor | None = None,
) -> PatientStatus:
    """A patient's status from the network's outputs on every axial slice of ``volume`` ``(1, H, W, D)``:
    ``class_logits`` ``(D, num_classes)``, ``mask_probability`` ``(1, H, W, D)`` or None, ``features``
    ``(D, F)`` (default: the class logits). Slice probability = ``softmax(class_logits)`` of class 1; the
    slices used are those of the module docstring; the patient's ``logit`` is the log-odds of their mean, and
    its ``probability`` is ``sigmoid(logit / temperature)`` (1 leaves it as it is)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    volume = torch.as_tensor(volume).float().cpu()
    class_logits = torch.as_tensor(class_logits).float().cpu()
    if class_logits.ndim != 2 or class_logits.shape[0] != volume.shape[-1]:
        raise ValueError(f"expected (D={volume.shape[-1]}, classes) slice logits, got shape {tuple(class_logits.shape)}")
    slice_probs = torch.softmax(class_logits.double(), 1)[:, 1].numpy()
    features = (class_logits if features is None else torch.as_tensor(features).float().cpu()).numpy()
    mask = None if mask_probability is None else torch.as_tensor(mask_probability).float().cpu()
    head = ((volume > 0.05).flatten(0, 2).float().mean(0) >= HEAD_FRACTION).numpy()
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
    patient_logit = float(logit(np.clip(probability, PROBABILITY_EPS, 1.0 - PROBABILITY_EPS)))
    if temperature != 1.0:
        probability = float(apply_temperature(patient_logit, temperature))
    return PatientStatus(probability, patient_logit, slice_probs, used, mask, features[used].mean(0))


def patient_status_from_volume_output(
    output: torch.Tensor,
    volume: torch.Tensor,
    min_tumour_pixels: int = 20,
    aggregation: str = "mean",
    temperature: float = 1.0,
    num_classes: int = 2,
) -> PatientStatus:
    """:func:`patient_status_from_slices` of an :class:`~pipeline.networks.H3K27MExportNet` run over the axial
    slices of ``volume`` by ``monai.inferers.SliceInferer``: ``output`` ``(num_classes + 1, H, W, D)``."""
    if output.ndim != 4:
        raise ValueError(f"expected a (C, H, W, D) network output, got shape {tuple(output.shape)}")
    class_logits, mask_logits = split_status_mask(torch.as_tensor(output).permute(3, 0, 1, 2), num_classes)
    mask_probability = torch.sigmoid(mask_logits.float()).permute(1, 2, 3, 0)
    return patient_status_from_slices(class_logits, mask_probability, volume, min_tumour_pixels, aggregation,
                                      temperature)


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
    out = point_metrics(statuses, probs, threshold)
    out["dice"] = float(np.nanmean(table["dice"])) if table["dice"].notna().any() else float("nan")
    return out
