"""DiceBCELoss is MONAI's DiceCELoss set up as the paper's loss: the formula, its gradient, mixed precision."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceCELoss

from pipeline.engines import DiceBCELoss


def _formula(logits, target, p, dice_weight, bce_weight, smooth):
    """``dice_weight * (1 - Dice_p) + bce_weight * BCE``, Dice per sample then averaged (written out here)."""
    s, y = torch.sigmoid(logits.double()).flatten(1), target.double().flatten(1)
    dice = (2 * (s * y).sum(1) + smooth) / (s.pow(p).sum(1) + y.pow(p).sum(1) + smooth)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits.double(), target.double())
    return dice_weight * (1 - dice).mean() + bce_weight * bce


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0), (1.0, 0.5, 1e-5), (0.3, 2.0, 1.0)])
def test_loss_and_gradient_are_the_formula(p, weights):
    torch.manual_seed(p)
    logits = (torch.randn(3, 1, 16, 16) * 3).requires_grad_(True)
    target = (torch.rand(3, 1, 16, 16) > 0.7).float()
    target[1] = 0  # a lesion-free slice
    loss = DiceBCELoss(p, *weights)
    assert isinstance(loss, DiceCELoss)
    got = loss(logits, target)
    (grad,) = torch.autograd.grad(got, logits)
    logits64 = logits.detach().double().requires_grad_(True)
    want = _formula(logits64, target, p, *weights)
    (want_grad,) = torch.autograd.grad(want, logits64)
    assert abs(got.item() - want.item()) < 1e-5
    assert torch.allclose(grad.double(), want_grad, atol=1e-7)


def test_float32_under_mixed_precision_and_clear_errors():
    torch.manual_seed(0)
    logits, target = torch.randn(2, 1, 64, 64) * 4, (torch.rand(2, 1, 64, 64) > 0.5).float()
    exact = DiceBCELoss()(logits, target)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = DiceBCELoss()(logits.bfloat16(), target)
    assert mixed.dtype == torch.float32
    assert abs(mixed.item() - exact.item()) < 1e-2  # only the bf16 rounding of the logits themselves
    with pytest.raises(ValueError, match="exponent p must be 1 or 2"):
        DiceBCELoss(p=3)
    with pytest.raises(ValueError, match="differ in shape"):
        DiceBCELoss()(logits, target[:, :, :32])
