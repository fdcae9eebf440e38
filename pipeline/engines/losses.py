"""Losses of the MSCG segmentation GAN (Deng et al., Front. Oncol. 2026).

* :class:`DiceBCELoss`: MONAI's ``DiceCELoss`` set up as the paper's loss: soft Dice whose denominator
  squares the prediction and the reference (``p=2``, the V-Net form, the paper's "p=2"; ``p=1`` plain)
  plus binary cross-entropy, both on logits.
* :class:`AdversarialLoss`: the conditional-GAN terms. The discriminator scores
  (image, mask) pairs; the generator is pushed to make (image, generated mask) look like
  (image, reference mask). ``k`` (the paper's "k=0.5"; the bundle uses 0.05, see its docs)
  weights the generator's adversarial term against the segmentation loss; ``unlabeled_weight``
  weights the same term on slices that have no reference mask (the paper's unsupervised part).
* :class:`ConfidenceMaskedSelfTrainingLoss`: Hung et al.'s semi-supervised term: on unlabeled
  slices, BCE between the generator and its own hard pseudo-label, counted only on pixels where
  the discriminator's confidence map exceeds ``threshold`` (their ``T_semi``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import nn


class DiceBCELoss(DiceCELoss):
    """MONAI's ``DiceCELoss`` with the paper's settings: ``dice_weight * (1 - Dice_p) + bce_weight * BCE`` on binary
    logits of shape (B, 1, ...), under the bundle's key names (``p``, ``dice_weight``, ``bce_weight``, ``smooth``).

    ``Dice_p = (2 * sum(s * y) + smooth) / (sum(s**p) + sum(y**p) + smooth)`` with ``s = sigmoid(logits)``, per
    sample over all spatial positions, then averaged over the batch: ``DiceCELoss(sigmoid=True,
    squared_pred=(p == 2), smooth_nr=smooth, smooth_dr=smooth, batch=False, reduction="mean")``; ``p=2`` is the
    V-Net form (the paper's "p=2"), ``p=1`` the plain Dice; MONAI offers no other exponent. For one channel MONAI
    takes ``BCEWithLogitsLoss``. The inputs are cast to float32 first, so that sums over a slice stay exact under
    mixed precision (as the hand-written loss this replaces did; ``tests/pipeline/test_adversarial_trainer.py`` checks the
    formula).

    ``smooth`` defaults to 1 (one pixel), not MONAI's 1e-5: a lesion-free slice (empty reference)
    gives ``1 - smooth / (sum(s**p) + smooth)``, whose gradient peaks where ``sum(s**p)`` is about
    ``smooth``; with 1e-5 that is a nearly empty prediction, so every lesion-free slice keeps
    pushing the network towards an all-background output. With 1e-5 our generator collapsed to an
    empty mask after ~400 steps (the FLAIR run, see the bundle docs); with 1 the pull fades as the
    prediction empties.
    """

    def __init__(self, p: float = 2.0, dice_weight: float = 1.0, bce_weight: float = 1.0, smooth: float = 1.0):
        if p not in (1, 2):
            raise ValueError(f"Dice denominator exponent p must be 1 or 2 (MONAI's squared_pred), got {p}")
        super().__init__(sigmoid=True, squared_pred=p == 2, smooth_nr=smooth, smooth_dr=smooth, batch=False,
                         reduction="mean", lambda_dice=dice_weight, lambda_ce=bce_weight)
        self.p = float(p)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.shape != target.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ in shape")
        return super().forward(logits.float(), target.float())


class AdversarialLoss(nn.Module):
    """Conditional-GAN losses on patch logits with BCE (real = 1, generated = 0)."""

    def __init__(self, k: float = 0.5, unlabeled_weight: float = 0.5):
        super().__init__()
        self.k, self.unlabeled_weight = k, unlabeled_weight

    @staticmethod
    def _bce(logits: torch.Tensor, real: bool) -> torch.Tensor:
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits.float(), target)

    def generator(self, fake_logits: torch.Tensor, unlabeled_fake_logits: torch.Tensor | None = None) -> torch.Tensor:
        """Weighted term that rewards the generator for masks the discriminator takes as real."""
        loss = self.k * self._bce(fake_logits, True)
        if unlabeled_fake_logits is not None:
            loss = loss + self.k * self.unlabeled_weight * self._bce(unlabeled_fake_logits, True)
        return loss

    def discriminator(
        self,
        real_logits: torch.Tensor,
        fake_logits: torch.Tensor,
        unlabeled_fake_logits: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean of the real and generated terms; unlabeled generated masks count as generated."""
        loss = 0.5 * (self._bce(real_logits, True) + self._bce(fake_logits, False))
        if unlabeled_fake_logits is not None:
            loss = loss + 0.5 * self.unlabeled_weight * self._bce(unlabeled_fake_logits, False)
        return loss


class ConfidenceMaskedSelfTrainingLoss(nn.Module):
    """Self-training on the generator's own pseudo-labels where the discriminator trusts them.

    ``L_semi = sum_pixels I(c > T) * BCE(s, 1[s > 0.5]) / sum_pixels I(c > T)`` with ``s`` the
    generator's probabilities on unlabeled slices and ``c`` the discriminator's per-pixel confidence
    (probability of "real", same spatial size as ``s``). Pixels at or below the threshold do not
    count; with no pixel above it the loss is zero (and has a zero gradient). The confidence map is a
    selector only: no gradient flows into it.

    Hung, Tsai, Liou, Lin, Yang, "Adversarial Learning for Semi-Supervised Semantic Segmentation",
    BMVC 2018, https://arxiv.org/abs/1802.07934 (eq. 5; they use ``T_semi`` 0.1-0.3).
    """

    def __init__(self, threshold: float = 0.2):
        super().__init__()
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"confidence threshold T_semi must be in [0, 1), got {threshold}")
        self.threshold = float(threshold)

    def forward(self, logits: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
        if logits.shape != confidence.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and confidence {tuple(confidence.shape)} differ in shape")
        logits = logits.float()
        pseudo_label = (logits.detach() > 0).float()  # sigmoid(logit) > 0.5
        selected = (confidence.detach() > self.threshold).float()
        per_pixel = F.binary_cross_entropy_with_logits(logits, pseudo_label, reduction="none")
        return (per_pixel * selected).sum() / selected.sum().clamp_min(1.0)
