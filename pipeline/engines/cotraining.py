"""Co-training of the H3K27M network with MONAI's ``SupervisedTrainer`` unchanged.

``SupervisedTrainer`` calls ``loss_function(network(image), targets)``; here ``targets`` is a
dict built by :func:`prepare_cotraining_batch` (status, mask, which slices have a mask) and
:class:`CoTrainingObjective` passes it to :class:`CoTrainingLoss`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from pipeline.engines.cotraining_loss import CoTrainingLoss

STATUS_KEY, MASK_KEY, HAS_MASK_KEY = "h3k27m", "label", "has_mask"


def prepare_cotraining_batch(batchdata: Mapping, device: str | torch.device | None = None,
                             non_blocking: bool = False, **kwargs) -> tuple[torch.Tensor, dict]:
    """``(image, {"status", "mask", "has_mask"})`` from a collated batch of slice dicts.

    ``h3k27m`` (0/1) is required; ``label`` (the tumour mask) and ``has_mask`` are optional
    (without ``has_mask`` every slice that comes with a mask counts as masked).
    """
    if STATUS_KEY not in batchdata:
        raise KeyError(f"co-training batches need the patient status under {STATUS_KEY!r}")
    image = batchdata["image"].to(device=device, non_blocking=non_blocking, **kwargs)
    status = torch.as_tensor(batchdata[STATUS_KEY]).reshape(-1).long().to(image.device)
    if (status < 0).any():
        raise ValueError("a training slice has an unknown H3K27M status (-1); filter such patients out")
    mask = batchdata.get(MASK_KEY)
    mask = None if mask is None else mask.to(device=device, non_blocking=non_blocking, **kwargs)
    has_mask = batchdata.get(HAS_MASK_KEY)
    has_mask = None if has_mask is None else torch.as_tensor(has_mask).reshape(-1).bool().to(image.device)
    return image, {"status": status, "mask": mask, "has_mask": has_mask}


class CoTrainingObjective(nn.Module):
    """``loss(outputs, targets)`` for ``SupervisedTrainer``: :class:`CoTrainingLoss` on the target dict."""

    def __init__(self, focal_weight: float = 1.0, iou_weight: float = 1.0, ce_weight: float = 0.1,
                 gamma: float = 2.0, status_on_lesion_slices: bool = False) -> None:
        super().__init__()
        self.loss = CoTrainingLoss(focal_weight=focal_weight, iou_weight=iou_weight, ce_weight=ce_weight, gamma=gamma,
                                   status_on_lesion_slices=status_on_lesion_slices)

    def forward(self, outputs: Mapping[str, torch.Tensor | None], targets: Mapping) -> torch.Tensor:
        return self.loss(outputs, targets["status"], targets.get("mask"), targets.get("has_mask"))
