"""What the segmentation discriminator sees as the mask channel: reference masks vs generated masks.

A reference mask is binary; a generator's sigmoid map is soft. Fed as they are (``"soft"``, the
original MSCG formulation) the discriminator can tell them apart by texture alone (values strictly
between 0 and 1, blurry edges) without looking at the image. The other modes remove that give-away:

* ``"hard"``: the generator's mask is thresholded at 0.5 in the forward pass, with a
  straight-through gradient (Bengio et al. 2013, https://arxiv.org/abs/1308.3432): the
  discriminator sees binary masks on both sides, the generator still gets the gradient of the
  sigmoid map.
* ``"smoothed"``: both reference and generated masks are blurred with the same Gaussian
  (``sigma`` pixels) and get the same additive Gaussian noise (``noise_std``), in the spirit of
  instance noise (Sønderby et al., ICLR 2017, https://arxiv.org/abs/1610.04490).

The bundle's ``disc_input`` key picks the mode; see the bundle docs for the measured discriminator
accuracy of each (``benchmarks/discriminator_giveaway.py``).
"""

from __future__ import annotations

import torch
from monai.networks.layers import GaussianFilter

DISC_INPUT_MODES = ("soft", "hard", "smoothed")


class _StraightThroughThreshold(torch.autograd.Function):
    """Exactly binary forward (``prob > 0.5``), identity backward. ``hard + prob - prob.detach()`` would leave
    rounding residues such as 0.99999994: a give-away of its own."""

    @staticmethod
    def forward(ctx, prob: torch.Tensor) -> torch.Tensor:
        return (prob > 0.5).to(prob.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output


class DiscriminatorInput:
    """Maps reference masks and generator probabilities to the discriminator's mask channel.

    Args:
        mode: ``"soft"`` (as they are), ``"hard"`` (straight-through threshold of the generated mask)
            or ``"smoothed"`` (same Gaussian blur and noise on both).
        sigma: Gaussian blur in pixels for ``"smoothed"``.
        noise_std: standard deviation of the additive noise for ``"smoothed"``.
    """

    def __init__(self, mode: str = "soft", sigma: float = 1.0, noise_std: float = 0.1) -> None:
        if mode not in DISC_INPUT_MODES:
            raise ValueError(f"disc_input must be one of {', '.join(DISC_INPUT_MODES)}; got {mode!r}")
        self.mode, self.sigma, self.noise_std = mode, float(sigma), float(noise_std)

    def _smooth(self, mask: torch.Tensor) -> torch.Tensor:
        blurred = GaussianFilter(mask.dim() - 2, self.sigma).to(mask.device)(mask.float())
        return blurred + self.noise_std * torch.randn_like(blurred)

    def real(self, label: torch.Tensor) -> torch.Tensor:
        """The discriminator's mask channel for a reference mask."""
        return self._smooth(label) if self.mode == "smoothed" else label

    def fake(self, prob: torch.Tensor) -> torch.Tensor:
        """The discriminator's mask channel for generator probabilities (differentiable in ``prob``)."""
        if self.mode == "hard":
            return _StraightThroughThreshold.apply(prob)
        if self.mode == "smoothed":
            return self._smooth(prob)
        return prob


def as_discriminator_input(value: str | DiscriminatorInput) -> DiscriminatorInput:
    """A :class:`DiscriminatorInput` from a mode name (config value) or the object itself."""
    return value if isinstance(value, DiscriminatorInput) else DiscriminatorInput(str(value))
