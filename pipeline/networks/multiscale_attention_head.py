"""Classification head over features at three depths, and the decoder-to-head attention exchange."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import ChannelSELayer
from torch import nn

__all__ = ["AttentionExchange", "MultiScaleAttentionHead"]


def _se(channels: int, reduction: int) -> ChannelSELayer:
    # Narrow layers keep at least 4 hidden units (a 1-unit ReLU bottleneck dies easily).
    return ChannelSELayer(spatial_dims=2, in_channels=channels, r=max(1, min(int(reduction), channels // 4)))


class AttentionExchange(nn.Module):
    """Adds a decoder feature, reweighted by SE channel attention, to the encoder feature of its scale.

    ``out = encoder + SE(decoder)``: the classification head then sees what the
    segmentation branch found at that scale, channel by channel as the attention weights it.
    """

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.attention = _se(channels, reduction)

    def forward(self, encoder: torch.Tensor, decoder: torch.Tensor) -> torch.Tensor:
        if encoder.shape != decoder.shape:
            raise ValueError(f"encoder {list(encoder.shape)} and decoder {list(decoder.shape)} features differ")
        return encoder + self.attention(decoder)


class MultiScaleAttentionHead(nn.Module):
    """SE channel attention on each of several feature maps, pooled to one scale, concatenated, classified.

    Each input ``i`` goes through its own :class:`monai.networks.blocks.ChannelSELayer`, is
    average-pooled to ``pooled_size x pooled_size`` (global average pooling at the default 1,
    so maps of any size meet at one scale), flattened and concatenated to the feature vector
    ``(B, sum(C_i) * pooled_size²)``; dropout and a linear layer give the class logits.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int = 2,
        reduction: int = 16,
        pooled_size: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.attention = nn.ModuleList(_se(c, reduction) for c in in_channels)
        self.pool = nn.AdaptiveAvgPool2d(pooled_size)
        self.feature_dim = int(sum(in_channels)) * pooled_size * pooled_size
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(logits (B, num_classes), features (B, feature_dim))`` (TorchScript-able)."""
        if len(features) != len(self.attention):
            raise ValueError(f"expected {len(self.attention)} feature maps, got {len(features)}")
        pooled: list[torch.Tensor] = []
        for i, att in enumerate(self.attention):
            pooled.append(self.pool(att(features[i])).flatten(1))
        vector = torch.cat(pooled, dim=1)
        return self.classifier(self.dropout(vector)), vector
