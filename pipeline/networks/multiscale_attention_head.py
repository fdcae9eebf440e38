"""Classification head over features at three depths, and the decoder-to-head attention exchange."""

from __future__ import annotations

from collections.abc import Sequence

from typing import Optional

import torch
from monai.networks.blocks import ChannelSELayer
from torch import nn
from torch.nn import functional as F

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

    With ``lesion_pooling``, each map is also averaged under a ``(B, 1, H, W)`` weight map in
    ``[0, 1]`` (the net's own tumour probability; resized to the map by area averaging), and those
    lesion-weighted vectors are appended: the classifier reads the lesion itself, not only the
    whole slice (``feature_dim`` doubles). A slice with no weight gives zeros there.
    """

    def __init__(
        self,
        in_channels: Sequence[int],
        num_classes: int = 2,
        reduction: int = 16,
        pooled_size: int = 1,
        dropout: float = 0.0,
        lesion_pooling: bool = False,
    ) -> None:
        super().__init__()
        self.attention = nn.ModuleList(_se(c, reduction) for c in in_channels)
        self.pool = nn.AdaptiveAvgPool2d(pooled_size)
        self.lesion_pooling = bool(lesion_pooling)
        self.feature_dim = int(sum(in_channels)) * (pooled_size * pooled_size + int(self.lesion_pooling))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(self.feature_dim, num_classes)

    def forward(self, features: list[torch.Tensor],
                weights: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(logits (B, num_classes), features (B, feature_dim))`` (TorchScript-able).

        ``weights``: the ``(B, 1, H, W)`` lesion weight map, required with ``lesion_pooling``."""
        if len(features) != len(self.attention):
            raise ValueError(f"expected {len(self.attention)} feature maps, got {len(features)}")
        if self.lesion_pooling and weights is None:
            raise ValueError("lesion_pooling needs the (B, 1, H, W) lesion weight map")
        pooled: list[torch.Tensor] = []
        lesion: list[torch.Tensor] = []
        for i, att in enumerate(self.attention):
            attended = att(features[i])
            pooled.append(self.pool(attended).flatten(1))
            if weights is not None and self.lesion_pooling:
                w = F.adaptive_avg_pool2d(weights.to(attended.dtype), attended.shape[-2:])
                lesion.append((attended * w).sum((2, 3)) / (w.sum((2, 3)) + 1e-3))
        vector = torch.cat(pooled + lesion, dim=1)
        return self.classifier(self.dropout(vector)), vector
