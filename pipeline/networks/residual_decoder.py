"""Residual U-Net decoder for the ResNet encoder (mask logits or an image at input resolution)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import UnetResBlock
from monai.networks.layers.factories import Conv
from torch import nn

__all__ = ["ResidualUpBlock", "ResidualUDecoder"]


class ResidualUpBlock(nn.Module):
    """2x bilinear upsampling, concatenation with a skip, MONAI's residual ``UnetResBlock``.

    The upsampled map is resized to the skip's size, so any size the encoder accepts works.
    """

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, norm: str | tuple = "batch") -> None:
        super().__init__()
        self.block = UnetResBlock(
            spatial_dims=2,
            in_channels=in_channels + skip_channels,
            out_channels=out_channels,
            kernel_size=3,
            stride=1,
            norm_name=norm,
            act_name=("relu", {"inplace": True}),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[2:], mode="bilinear", align_corners=False)
        return self.block(torch.cat([x, skip], dim=1))


class ResidualUDecoder(nn.Module):
    """Decoder from stage 3 (stride 16) back to the input resolution, one residual up-block a scale.

    ===========  ======================  ===============  ===============
    block        input (upsampled 2x)    skip             output
    ===========  ======================  ===============  ===============
    ``up32``     stage 3, ``4w`` @ /16   stage 2 ``2w``   ``2w`` @ /8
    ``up64``     ``2w``                  stage 1 ``w``    ``w`` @ /4
    ``up128``    ``w``                   stem ``w``       ``w/2`` @ /2
    ``up256``    ``w/2``                 input image      ``w/2`` @ /1
    ===========  ======================  ===============  ===============

    then a 1x1 convolution to ``out_channels`` (no activation: mask logits, or the
    reconstructed image for masked-patch pretraining). The block names say the scale for a
    256² input. ``forward`` returns the output and the decoder features at /8 and /4
    (``"dec_stage2"``, ``"dec_stage1"``), which the co-training net's attention exchange reads.
    """

    def __init__(self, in_channels: int = 1, base_width: int = 64, out_channels: int = 1, norm: str | tuple = "batch"):
        super().__init__()
        w = int(base_width)
        half = max(1, w // 2)
        self.up32 = ResidualUpBlock(4 * w, 2 * w, 2 * w, norm)
        self.up64 = ResidualUpBlock(2 * w, w, w, norm)
        self.up128 = ResidualUpBlock(w, w, half, norm)
        self.up256 = ResidualUpBlock(half, in_channels, half, norm)
        self.out = Conv[Conv.CONV, 2](half, out_channels, kernel_size=1)

    def forward(
        self, features: dict[str, torch.Tensor], image: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``features``: the encoder's ``stem``, ``stage1``-``stage3``; ``image``: the network input."""
        d2 = self.up32(features["stage3"], features["stage2"])
        d1 = self.up64(d2, features["stage1"])
        d0 = self.up128(d1, features["stem"])
        out = self.out(self.up256(d0, image))
        return out, {"dec_stage2": d2, "dec_stage1": d1}
