"""Instance normalisation that is defined for a single spatial element.

Instance norm of a ``1x1`` feature map divides ``x - mean(x) = 0`` by ``sqrt(var + eps)``: every value
normalises to 0, so the exact result is the affine bias (or 0). PyTorch refuses to compute it ("Expected
more than 1 spatial element when training") in training *and* in eval mode, so a network with instance
norm at a 1x1 bottleneck (an MSCG generator with four downsamplings on a 16x16 slice, the MONAI Model
Zoo's default test shape) cannot run at all. :class:`SingleVoxelSafeInstanceNorm` returns that exact
limit for one spatial element and is ``torch.nn.functional.instance_norm`` otherwise, with the same
parameters and buffers as ``nn.InstanceNorm{1,2,3}d`` (existing weights load unchanged).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.instancenorm import _InstanceNorm

__all__ = ["SingleVoxelSafeInstanceNorm", "make_instance_norms_single_voxel_safe"]


class SingleVoxelSafeInstanceNorm(_InstanceNorm):
    """``nn.InstanceNorm{1,2,3}d`` (any spatial rank) that maps a one-element feature map to its bias."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        spatial = 1
        for size in input.shape[2:]:
            spatial *= size
        if spatial == 1:
            out = torch.zeros_like(input)
            bias = self.bias
            if bias is not None:
                out = out + bias.reshape([1, -1] + [1] * (input.dim() - 2))
            return out
        return F.instance_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                               self.training or not self.track_running_stats,
                               self.momentum if self.momentum is not None else 0.0, self.eps)

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 3:
            raise ValueError(f"expected an input with a channel and spatial axes, got {input.dim()}D")


def make_instance_norms_single_voxel_safe(module: nn.Module) -> nn.Module:
    """Replace every ``nn.InstanceNorm{1,2,3}d`` in ``module`` (in place) by a
    :class:`SingleVoxelSafeInstanceNorm` with the same settings, parameters and buffers."""
    for name, child in list(module.named_children()):
        if isinstance(child, _InstanceNorm) and not isinstance(child, SingleVoxelSafeInstanceNorm):
            safe = SingleVoxelSafeInstanceNorm(child.num_features, child.eps, child.momentum, child.affine,
                                               child.track_running_stats)
            safe.load_state_dict(child.state_dict())
            safe.train(child.training)
            setattr(module, name, safe)
        else:
            make_instance_norms_single_voxel_safe(child)
    return module
