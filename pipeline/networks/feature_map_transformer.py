"""Transformer encoder over a 2D feature map: one token per feature pixel."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["FeatureMapTransformer"]



def resize_position_grid(pos_embed: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A ``(1, C, h, w)`` position-embedding grid at another ``size`` (bilinear): how a transformer made for
    one slice size runs at another, and how weights pretrained at one size load into a net of another."""
    return F.interpolate(pos_embed, size=size, mode="bilinear", align_corners=False)

class FeatureMapTransformer(nn.Module):
    """Global self-attention over a ``(B, C, h, w)`` feature map, returned in the same shape.

    Every feature pixel becomes one ``C``-dimensional token; a learned position embedding
    (one vector per pixel of a reference grid ``grid_size``) is added, then ``num_layers``
    pre-norm :class:`torch.nn.TransformerEncoderLayer` (``num_heads`` heads, MLP of
    ``mlp_ratio * C``, GELU) run over the ``h * w`` tokens. The layers are residual and there
    is no final norm, so the output stays on the scale of the CNN features it refines.

    For a map whose size differs from ``grid_size`` (other input sizes) the position
    embedding is resized bilinearly, as for ViTs at a new resolution.
    """

    def __init__(
        self,
        channels: int,
        grid_size: int | Sequence[int],
        num_layers: int = 2,
        num_heads: int = 8,
        mlp_ratio: float = 4.0,
        dropout: float = 0.1,
    ) -> None:
        """
        Args:
            channels: channels of the feature map = token dimension; divisible by ``num_heads``.
            grid_size: feature-map size the position embedding is learned at (``img_size / stride``).
            num_layers: transformer encoder layers.
            num_heads: attention heads.
            mlp_ratio: hidden width of the feed-forward block, relative to ``channels``.
            dropout: dropout in attention and feed-forward blocks.
        """
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        grid = (int(grid_size),) * 2 if isinstance(grid_size, int) else tuple(int(g) for g in grid_size)
        if len(grid) != 2 or min(grid) < 1:
            raise ValueError(f"grid_size must be a positive int or a pair, got {grid_size!r}")
        self.grid_size = grid
        self.pos_embed = nn.Parameter(torch.zeros(1, channels, *grid))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=channels,
            nhead=num_heads,
            dim_feedforward=max(1, int(round(mlp_ratio * channels))),
            dropout=dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)

    def position_embedding(self, size: tuple[int, int]) -> torch.Tensor:
        if tuple(size) == self.grid_size:
            return self.pos_embed
        return resize_position_grid(self.pos_embed, size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = (x + self.position_embedding((h, w))).flatten(2).transpose(1, 2)  # (B, h*w, C)
        return self.encoder(tokens).transpose(1, 2).reshape(b, c, h, w)
