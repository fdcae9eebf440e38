"""The parts MONAI's ``SupervisedEvaluator`` needs to validate the H3K27M co-training patient by patient.

``train.json`` validates with MONAI's engine: a ``SupervisedEvaluator`` over the validation volumes (one
patient per iteration) with :func:`prepare_status_batch` and :class:`PatientStatusInferer`, MONAI/Ignite
metric handlers accumulated over the epoch, ``ValidationHandler`` on the trainer and
:class:`~pipeline.engines.handlers.BestModelSaver` on the evaluator, as the segmentation bundle does.
The patient rule is :func:`~pipeline.inference.status.predict_patient_status`'s (mean slice probability over
the slices the mask branch marks as tumour), the one of validation, evaluation and inference alike.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import IgniteMetricHandler
from monai.inferers import Inferer
from monai.metrics import DiceMetric

from evaluation.metric_table import CLASSIFICATION_TABLE, DICE_MEAN, names
from pipeline.inference.status import predict_patient_status

logger = logging.getLogger(__name__)
VALIDATION_METRICS: tuple[str, ...] = names(CLASSIFICATION_TABLE) + (DICE_MEAN.name,)
"""The validation metrics (``val_<name>`` in the evaluator's state), in the order of the logged line."""


def prepare_status_batch(batchdata: dict, device: str | torch.device | None = None, non_blocking: bool = False,
                         **kwargs: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``SupervisedEvaluator``'s ``prepare_batch`` for the validation volumes: the ``image`` and, as targets,
    the patient's H3K27M ``status`` ``(B, 1)`` (from ``h3k27m``) and reference tumour ``mask`` (from ``label``)."""
    status = torch.as_tensor(batchdata["h3k27m"]).reshape(-1, 1).float()
    targets = {"status": status, "mask": batchdata["label"]}
    return (batchdata["image"].to(device=device, non_blocking=non_blocking),
            {k: v.to(device=device, non_blocking=non_blocking) for k, v in targets.items()})


class PatientStatusInferer(Inferer):
    """Each volume ``(C, H, W, D)`` of the batch, slice by slice, to the patient's ``probability`` ``(B, 1)`` of
    H3K27M alteration and the mask branch's tumour ``mask`` ``(B, 1, H, W, D)`` (probability above 0.5) by
    :func:`~pipeline.inference.status.predict_patient_status`. A network without a mask branch gives a NaN mask
    (its Dice is undefined: :class:`MaskDice` skips it)."""

    def __init__(self, sw_batch_size: int = 16, min_tumour_pixels: int = 20) -> None:
        super().__init__()
        self.sw_batch_size, self.min_tumour_pixels = sw_batch_size, min_tumour_pixels

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args: Any, **kwargs: Any) -> dict:
        probabilities, masks = [], []
        for volume in inputs:
            volume = volume.as_tensor() if hasattr(volume, "as_tensor") else volume
            patient = predict_patient_status(network, volume, self.sw_batch_size, self.min_tumour_pixels)
            probabilities.append(patient.probability)
            mask = (torch.full((1, *volume.shape[1:]), math.nan) if patient.mask_probability is None
                    else (patient.mask_probability > 0.5).float())
            masks.append(mask)
        return {"probability": torch.tensor(probabilities, dtype=torch.float64).reshape(-1, 1).to(inputs.device),
                "mask": torch.stack(masks).to(inputs.device)}


class MaskDice(IgniteMetricHandler):
    """MONAI's mean Dice (``IgniteMetricHandler`` of ``DiceMetric(include_background=True, ignore_empty=False)``:
    1 when both masks are empty, 0 when only one is) of the mask branch over the patients, skipping the NaN
    masks of a network without a mask branch; NaN when no patient had a mask (MONAI's mean of nothing is 0)."""

    def __init__(self, output_transform: Callable = lambda x: x) -> None:
        super().__init__(metric_fn=DiceMetric(include_background=True, ignore_empty=False),
                         output_transform=output_transform, save_details=False)

    def update(self, output: Sequence) -> None:
        masks, references = output
        kept = [(m, r) for m, r in zip(masks, references) if not torch.isnan(m).any()]
        if kept:
            super().update(([m for m, _ in kept], [r for _, r in kept]))

    def compute(self) -> float:
        return math.nan if self.metric_fn.get_buffer() is None else super().compute()


class ValidationLine:
    """Attached to the evaluator: logs ``epoch N validation: accuracy 0.833, ..., dice 0.712`` (the
    ``val_*`` metrics in :data:`VALIDATION_METRICS` order) when a validation epoch completes."""

    def __init__(self, prefix: str = "val_") -> None:
        self.prefix = prefix

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        metrics = engine.state.metrics
        shown = [f"{name} {float(metrics[self.prefix + name]):.3f}" for name in VALIDATION_METRICS
                 if self.prefix + name in metrics]
        logger.info("epoch %d validation: %s", engine.state.epoch, ", ".join(shown))
