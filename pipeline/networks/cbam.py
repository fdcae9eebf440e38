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
    Its hidden width is ``in_channels // reduction`` but at least ``min(min_hidden,
    in_channels)``: with the paper's ``reduction=16`` a 32-channel layer would get two
    ReLU units, which are both dead at initialisation for a sizeable share of seeds
    (non-negative pooled inputs), leaving the attention without gradient.

    Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", ECCV 2018,
    https://arxiv.org/abs/1807.06521.
    """

    def __init__(self, spatial_dims: int, in_channels: int, reduction: int = 16, min_hidden: int = 8) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions (1, 2 or 3).
            in_channels: number of input channels.
            reduction: MLP reduction ratio (16 in the paper).
            min_hidden: lower bound on the hidden width (capped at ``in_channels``).
        """
        super().__init__()
        if reduction < 1 or min_hidden < 1:
            raise ValueError(f"reduction and min_hidden must be positive integers, got {reduction}, {min_hidden}.")
        hidden = min(max(in_channels // reduction, min_hidden), in_channels)
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

    def __init__(
        self, spatial_dims: int, in_channels: int, reduction: int = 16, kernel_size: int = 7, min_hidden: int = 8
    ) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions (1, 2 or 3).
            in_channels: number of input channels.
            reduction: channel-attention MLP reduction ratio (paper: 16).
            kernel_size: spatial-attention kernel size (paper: 7).
            min_hidden: lower bound on the channel-MLP hidden width (see :class:`ChannelAttention`).
        """
        super().__init__()
        self.channel = ChannelAttention(spatial_dims, in_channels, reduction, min_hidden)
        self.spatial = SpatialAttention(spatial_dims, kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))
