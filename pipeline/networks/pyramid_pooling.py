"""Pyramid pooling module (PSPNet), the "MFE" multi-scale feature extraction of MSCG."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers.factories import Pool
from torch import nn

__all__ = ["PyramidPoolingModule"]

_LINEAR_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}


class PyramidPoolingModule(nn.Module):
    """Pyramid pooling module of PSPNet, used as MSCG's multi-scale feature extraction ("MFE").

    For every bin size ``b`` in ``bins``: adaptive average pooling to ``b`` cells per
    axis, a 1x1 convolution reducing to ``branch_channels`` (default ``in_channels //
    len(bins)``, as in PSPNet) with norm and activation, and (bi/tri)linear upsampling
    back to the input size. The input and all branches are concatenated and fused by a
    3x3 convolution (+norm+act) to ``out_channels``.

    Branch normalisation defaults to a one-group GroupNorm (layer norm over channels and
    cells) instead of PSPNet's BatchNorm: the bin-1 branch has a single value per
    channel, so BatchNorm fails in training at batch size 1 and InstanceNorm would
    zero it. Pass ``branch_norm="batch"`` for the original choice.

    Zhao, Shi, Qi, Wang, Jia, "Pyramid Scene Parsing Network", CVPR 2017,
    https://arxiv.org/abs/1612.01105.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int | None = None,
        bins: Sequence[int] = (1, 2, 3, 6),
        branch_channels: int | None = None,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple | None = ("instance", {"affine": True}),
        branch_norm: str | tuple | None = ("group", {"num_groups": 1}),
        align_corners: bool = False,
    ) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions (1, 2 or 3).
            in_channels: number of input channels.
            out_channels: channels after the fusion conv; defaults to ``in_channels``.
            bins: pooled grid sizes per axis (PSPNet: 1, 2, 3, 6).
            branch_channels: channels of each pooled branch; defaults to
                ``max(in_channels // len(bins), 1)``.
            act: activation of branches and fusion conv (MONAI ``Act`` spec).
            norm: normalisation of the fusion conv (MONAI ``Norm`` spec, or None).
            branch_norm: normalisation of the pooled 1x1 branches (see class docstring).
            align_corners: passed to the (bi/tri)linear upsampling.
        """
        super().__init__()
        if spatial_dims not in _LINEAR_MODES:
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}.")
        if len(bins) == 0 or any(int(b) < 1 for b in bins):
            raise ValueError(f"bins must be a non-empty sequence of positive integers, got {tuple(bins)}.")
        out_channels = in_channels if out_channels is None else out_channels
        branch_channels = max(in_channels // len(bins), 1) if branch_channels is None else branch_channels
        pool = Pool[Pool.ADAPTIVEAVG, spatial_dims]
        self.branches = nn.ModuleList(
            [
                nn.Sequential(
                    pool(int(b)),
                    Convolution(
                        spatial_dims,
                        in_channels,
                        branch_channels,
                        kernel_size=1,
                        act=act,
                        norm=branch_norm,
                        bias=branch_norm is None,
                    ),
                )
                for b in bins
            ]
        )
        self.fusion = Convolution(
            spatial_dims,
            in_channels + len(bins) * branch_channels,
            out_channels,
            kernel_size=3,
            act=act,
            norm=norm,
            bias=norm is None,
        )
        self.mode: str = _LINEAR_MODES[spatial_dims]
        self.align_corners: bool = align_corners

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        features = [x]
        for branch in self.branches:
            features.append(F.interpolate(branch(x), size=size, mode=self.mode, align_corners=self.align_corners))
        return self.fusion(torch.cat(features, dim=1))
