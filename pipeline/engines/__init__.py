"""Training engines and losses (Ignite/MONAI style)."""

from .adversarial_trainer import AdversarialSegTrainer
from .losses import AdversarialLoss, DiceBCELoss

__all__ = ["AdversarialLoss", "AdversarialSegTrainer", "DiceBCELoss"]
