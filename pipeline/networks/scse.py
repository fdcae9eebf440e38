"""Concurrent spatial and channel squeeze & excitation (scSE)."""

from __future__ import annotations

import torch
from monai.networks.blocks import ChannelSELayer
from monai.networks.layers.factories import Conv
from torch import nn

__all__ = ["SpatialSELayer", "SpatialChannelSE", "SCSE_COMBINE_MODES"]

SCSE_COMBINE_MODES = ("add", "max")


class SpatialSELayer(nn.Module):
    """Spatial squeeze & channel excitation ("sSE") of Roy et al. 2018.

    A 1x1 convolution squeezes the channels to one map, a sigmoid turns it into a
    per-voxel gate, and the input is multiplied by it.

    Roy, Navab, Wachinger, "Concurrent spatial and channel squeeze & excitation in
    fully convolutional networks", MICCAI 2018, https://arxiv.org/abs/1803.02579.
    """

    def __init__(self, spatial_dims: int, in_channels: int) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions (1, 2 or 3).
            in_channels: number of input channels.
        """
        super().__init__()
        self.conv = Conv[Conv.CONV, spatial_dims](in_channels, 1, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


class SpatialChannelSE(nn.Module):
    """Concurrent spatial and channel squeeze & excitation ("scSE").

    Channel half: MONAI's :class:`monai.networks.blocks.ChannelSELayer` (Hu et al.
    cSE: global average pool, bottleneck MLP with reduction ``r``, sigmoid).
    Spatial half: :class:`SpatialSELayer`. Both recalibrate the same input in
    parallel and are combined by element-wise **addition** (``combine="add"``),
    which is the aggregation of Roy et al., MICCAI 2018 (Sec. 2.3). The element-wise
    maximum ("max-out", ``combine="max"``) is the aggregation preferred in the
    authors' extended version (Roy et al., IEEE TMI 2019, "Recalibrating fully
    convolutional networks with spatial and channel squeeze and excitation blocks").

    Roy, Navab, Wachinger, "Concurrent spatial and channel squeeze & excitation in
    fully convolutional networks", MICCAI 2018, https://arxiv.org/abs/1803.02579.
    """

    def __init__(self, spatial_dims: int, in_channels: int, r: int = 2, combine: str = "add") -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions (1, 2 or 3).
            in_channels: number of input channels.
            r: channel reduction ratio of the cSE bottleneck (Roy et al. use 2); the
                bottleneck keeps at least one unit, so tiny widths work.
            combine: ``"add"`` (MICCAI 2018, default) or ``"max"`` (TMI 2019 max-out).
        """
        super().__init__()
        if combine not in SCSE_COMBINE_MODES:
            raise ValueError(f"combine must be one of {SCSE_COMBINE_MODES}, got {combine!r}.")
        if r < 1:
            raise ValueError(f"r must be a positive integer, got {r}.")
        self.combine_max: bool = combine == "max"
        # ChannelSELayer needs in_channels // r >= 1; clamp r for narrow layers.
        self.cse = ChannelSELayer(spatial_dims, in_channels, r=min(r, in_channels))
        self.sse = SpatialSELayer(spatial_dims, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.cse(x)
        s = self.sse(x)
        if self.combine_max:
            return torch.maximum(c, s)
        return c + s
