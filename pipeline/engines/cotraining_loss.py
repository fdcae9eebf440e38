"""Co-training loss of the H3K27M network: focal + soft-IoU on the mask, cross-entropy on the status."""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from monai.losses import FocalLoss
from torch import nn

__all__ = ["CoTrainingLoss", "soft_iou_loss"]


def soft_iou_loss(logits: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """``1 - (|p*y| + s) / (|p| + |y| - |p*y| + s)`` per sample (``p = sigmoid(logits)``), batch mean.

    A reference mask that is present but empty (a lesion-free slice) gives 0 for an empty
    prediction and pushes every predicted pixel towards 0.
    """
    prob = torch.sigmoid(logits.float()).flatten(1)
    target = target.float().flatten(1)
    intersection = (prob * target).sum(1)
    union = prob.sum(1) + target.sum(1) - intersection
    return (1.0 - (intersection + smooth) / (union + smooth)).mean()


class CoTrainingLoss(nn.Module):
    """``focal_weight * focal(mask) + iou_weight * softIoU(mask) + ce_weight * CE(status)``.

    Defaults are the paper's: focal loss with gamma 2 (MONAI's sigmoid
    :class:`monai.losses.FocalLoss`, mean over pixels), soft IoU, and 0.1 x cross-entropy.

    The mask terms are computed on the samples that have a reference mask only: pass
    ``masks=None`` when no sample has one, or ``has_mask`` (``(B,)`` bool) to flag which do
    (the others' mask rows may hold anything). Samples without a mask contribute the CE
    term only; the CE is the mean over the whole batch, the mask terms the mean over the
    masked samples. Without mask logits (``cls_only``) or without any masked sample the
    loss is the CE term alone.
    """

    def __init__(
        self,
        focal_weight: float = 1.0,
        iou_weight: float = 1.0,
        ce_weight: float = 0.1,
        gamma: float = 2.0,
        focal_alpha: float | None = None,
        class_weight: torch.Tensor | list[float] | None = None,
        smooth: float = 1e-5,
        status_on_lesion_slices: bool = False,
    ) -> None:
        """
        Args:
            focal_weight, iou_weight, ce_weight: weights of the three terms.
            gamma: focal loss focusing parameter.
            focal_alpha: optional focal-loss foreground weight (MONAI's ``alpha``); none by default.
            class_weight: optional per-class weights of the cross-entropy.
            smooth: smoothing of the soft IoU.
            status_on_lesion_slices: the cross-entropy is the mean over the samples whose reference mask
                shows tumour only (none: 0), so lesion-free slices train the mask branch to say "no tumour"
                without teaching the status from slices that do not show the lesion. Off: every sample (paper).
        """
        super().__init__()
        self.focal_weight, self.iou_weight, self.ce_weight, self.smooth = focal_weight, iou_weight, ce_weight, smooth
        self.status_on_lesion_slices = bool(status_on_lesion_slices)
        self.focal = FocalLoss(gamma=gamma, alpha=focal_alpha, use_softmax=False, reduction="mean")
        weight = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)
        self.register_buffer("class_weight", weight, persistent=False)

    def terms(
        self,
        outputs: Mapping[str, torch.Tensor | None],
        labels: torch.Tensor,
        masks: torch.Tensor | None = None,
        has_mask: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The three terms, unweighted, and the weighted ``"loss"``; also ``"n_masked"`` samples.

        Args:
            outputs: the network's dict (``"class_logits"`` (B, K), ``"mask_logits"`` (B, 1, H, W) or None).
            labels: status per sample, ``(B,)`` or ``(B, 1)`` integers (1 = altered).
            masks: reference masks ``(B, 1, H, W)`` in {0, 1}, or None.
            has_mask: ``(B,)`` bool, which samples have a reference mask (all, when omitted
                and ``masks`` is given).
        """
        class_logits = outputs["class_logits"]
        labels = labels.reshape(-1).long().to(class_logits.device)
        if labels.shape[0] != class_logits.shape[0]:
            raise ValueError(f"{labels.shape[0]} labels for {class_logits.shape[0]} samples")
        status_rows = torch.ones_like(labels, dtype=torch.bool)
        if self.status_on_lesion_slices:
            if masks is None:
                raise ValueError("status_on_lesion_slices needs the reference masks")
            status_rows = masks.reshape(masks.shape[0], -1).to(labels.device).gt(0).any(1)
            if has_mask is not None:
                status_rows &= has_mask.reshape(-1).bool().to(labels.device)
        if status_rows.any():
            ce = F.cross_entropy(class_logits[status_rows].float(), labels[status_rows], weight=self.class_weight)
        else:
            ce = class_logits.float().sum() * 0.0
        zero = ce * 0.0
        focal, iou, n_masked = zero, zero, 0
        mask_logits = outputs.get("mask_logits")
        if mask_logits is not None and masks is not None:
            if masks.shape != mask_logits.shape:
                raise ValueError(f"masks {tuple(masks.shape)} and mask logits {tuple(mask_logits.shape)} differ")
            if has_mask is None:
                selected = torch.ones(mask_logits.shape[0], dtype=torch.bool, device=mask_logits.device)
            else:
                selected = has_mask.reshape(-1).bool().to(mask_logits.device)
                if selected.shape[0] != mask_logits.shape[0]:
                    raise ValueError(f"has_mask has {selected.shape[0]} entries for {mask_logits.shape[0]} samples")
            n_masked = int(selected.sum())
            if n_masked:
                logits, target = mask_logits[selected], masks.to(mask_logits.device)[selected].float()
                focal = self.focal(logits, target)
                iou = soft_iou_loss(logits, target, self.smooth)
        loss = self.focal_weight * focal + self.iou_weight * iou + self.ce_weight * ce
        return {"loss": loss, "focal": focal, "iou": iou, "ce": ce, "n_masked": torch.tensor(n_masked)}

    def forward(
        self,
        outputs: Mapping[str, torch.Tensor | None],
        labels: torch.Tensor,
        masks: torch.Tensor | None = None,
        has_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The weighted total (see :meth:`terms`)."""
        return self.terms(outputs, labels, masks, has_mask)["loss"]
