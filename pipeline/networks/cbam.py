"""Convolutional Block Attention Module (CBAM)."""

from __future__ import annotations

import torch
from monai.networks.layers.factories import Conv, Pool
from torch import nn

__all__ = ["ChannelAttention", "SpatialAttention", "CBAM"]


class ChannelAttention(nn.Module):
    """CBAM channel attention: average- and max-pooled descriptors through one shared MLP.

    ``M_c(F) = sigmoid(MLP(AvgPool(F)) + MLP(MaxPool(F)))``; the output is ``F * M_c(F)``.
    The MLP is implemented with 1x1 convolutions so it works for any ``spatial_dims``.

    Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
    https://arxiv.org/abs/1807.06521.
    """

    def __init__(self, spatial_dims: int, in_channels: int, reduction: int = 16) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions (1, 2 or 3).
            in_channels: number of input channels.
            reduction: MLP reduction ratio (16 in the paper); the hidden layer keeps at
                least one unit.
        """
        super().__init__()
        if reduction < 1:
            raise ValueError(f"reduction must be a positive integer, got {reduction}.")
        hidden = max(in_channels // reduction, 1)
        conv = Conv[Conv.CONV, spatial_dims]
        self.avg_pool = Pool[Pool.ADAPTIVEAVG, spatial_dims](1)
        self.max_pool = Pool[Pool.ADAPTIVEMAX, spatial_dims](1)
        self.mlp = nn.Sequential(
            conv(in_channels, hidden, kernel_size=1, bias=True),
            nn.ReLU(),
            conv(hidden, in_channels, kernel_size=1, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.mlp(self.avg_pool(x)) + self.mlp(self.max_pool(x)))
        return x * gate


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a ``kernel_size`` conv over the channel-mean and channel-max maps.

    ``M_s(F) = sigmoid(conv([mean_c(F); max_c(F)]))``; the output is ``F * M_s(F)``.

    Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
    https://arxiv.org/abs/1807.06521.
    """

    def __init__(self, spatial_dims: int, kernel_size: int = 7) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions (1, 2 or 3).
            kernel_size: odd kernel size of the attention convolution (7 in the paper).
        """
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}.")
        self.conv = Conv[Conv.CONV, spatial_dims](2, 1, kernel_size=kernel_size, padding=kernel_size // 2, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel attention, then spatial attention (sequential).

    Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
    https://arxiv.org/abs/1807.06521.
    """

    def __init__(self, spatial_dims: int, in_channels: int, reduction: int = 16, kernel_size: int = 7) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions (1, 2 or 3).
            in_channels: number of input channels.
            reduction: channel-attention MLP reduction ratio (paper: 16).
            kernel_size: spatial-attention kernel size (paper: 7).
        """
        super().__init__()
        self.channel = ChannelAttention(spatial_dims, in_channels, reduction)
        self.spatial = SpatialAttention(spatial_dims, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))
