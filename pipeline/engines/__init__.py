"""Training engines and losses (Ignite/MONAI style)."""

from .adversarial_trainer import AdversarialSegTrainer
from .cotraining_loss import CoTrainingLoss, soft_iou_loss
from .discriminator_inputs import DiscriminatorInput
from .losses import AdversarialLoss, ConfidenceMaskedSelfTrainingLoss, DiceBCELoss
from .masked_pretraining import (
    EncoderTransfer,
    InpaintingModel,
    MaskedReconstructionLoss,
    apply_patch_mask,
    encoder_state_dict,
    load_pretrained_encoder,
    patch_mask_to_pixels,
    random_patch_mask,
)

__all__ = [
    "AdversarialLoss",
    "AdversarialSegTrainer",
    "ConfidenceMaskedSelfTrainingLoss",
    "DiscriminatorInput",
    "DiceBCELoss",
    "CoTrainingLoss",
    "soft_iou_loss",
    "EncoderTransfer",
    "InpaintingModel",
    "MaskedReconstructionLoss",
    "apply_patch_mask",
    "encoder_state_dict",
    "load_pretrained_encoder",
    "patch_mask_to_pixels",
    "random_patch_mask",
]
