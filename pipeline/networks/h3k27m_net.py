"""Co-training network for H3K27M status and tumour mask on 2D T2 slices (Huang et al., Cancer Med 2023).

Architecture (base width ``w``, 64 by default; sizes for a 256² input)::

    image 1@256² ─ ResNet-18 stem ─ stage1 w@64² ─ stage2 2w@32² ─[T2]─ stage3 4w@16² ─[T3]─┐
                          │              │               │                                 │
                          │              │               └──── skip ──┐                    │
                          │              └──── skip ───────────┐      │                    │
                          └──── skip ─────────────────────┐     │      │                    │
    mask logits 1@256² ── up256 ── up128 ─────────────── up64 ─ up32 ◄────────────────────────┘
                                                         │      │
    head: SE(stage1 [+ SE(dec64)]), SE(stage2 [+ SE(dec32)]), SE(stage3) → GAP → concat → FC → 2

* ``T2``/``T3``: :class:`FeatureMapTransformer` (2 layers, 8 heads, learned position
  embedding, one token per feature pixel) after stages 2 and 3. ``T2``'s output feeds stage
  3, the stage-2 skip and the head; ``T3``'s output is the decoder's bottleneck and the
  head's deepest input, so the global context is shared by both tasks.
* Residual U-decoder (:class:`ResidualUDecoder`): mask logits at input resolution.
* Head (:class:`MultiScaleAttentionHead`): SE channel attention on three features at
  strides 4, 8, 16, global average pooling (one scale), concatenation (``7w`` features,
  returned as ``"features"`` for t-SNE), linear layer to altered / wild-type logits. With
  ``lesion_pooling`` (ours, not the paper's) the same three maps are also averaged under the net's
  own tumour probability and appended (``14w`` features).
* Attention exchange (:class:`AttentionExchange`): the decoder features at strides 8 and
  4, reweighted by SE channel attention, are added to the encoder features the head reads.

The ablations of the paper are named configurations (:data:`H3K27M_CONFIGS`):

=======================  ========  ============  ========  ==================================
name                     decoder   transformers  exchange  head reads
=======================  ========  ============  ========  ==================================
``cls_only``             no        no            no        encoder stages 1-3
``cls+pretrain``         no        no            no        encoder stages 1-3 (pretrained)
``cls+seg``              yes       no            no        encoder stages 1-3
``cls+seg+attention``    yes       no            yes       stages 1-3 + decoder via attention
``full``                 yes       yes           yes       as above, transformer-refined
=======================  ========  ============  ========  ==================================

Pretraining (masked-patch inpainting, :mod:`pipeline.engines.masked_pretraining`) changes
no module: ``cls+pretrain`` builds the same net as ``cls_only``, and the config's
``pretrain`` flag tells the training code to load a pretrained encoder
(:func:`pipeline.engines.load_pretrained_encoder`) before co-training. The ablation is read
as cumulative (every configuration after ``cls_only`` is pretrained).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Mapping, Optional

import torch
from torch import nn

from pipeline.networks.feature_map_transformer import FeatureMapTransformer
from pipeline.networks.multiscale_attention_head import AttentionExchange, MultiScaleAttentionHead
from pipeline.networks.name_lookup import look_up_name
from pipeline.networks.residual_decoder import ResidualUDecoder
from pipeline.networks.resnet_encoder import ResNetEncoder

__all__ = [
    "H3K27MEncoder",
    "H3K27MNet",
    "H3K27MConfig",
    "H3K27M_CONFIGS",
    "get_h3k27m_config",
    "configured_net_kwargs",
    "build_h3k27m_net",
]

SIZE_MULTIPLE = 16  # total stride of the encoder


class H3K27MEncoder(nn.Module):
    """ResNet-18 stem and stages 1-3, with optional transformers after stages 2 and 3.

    This is the part that masked-patch pretraining trains and transfers. ``forward``
    returns ``{"stem", "stage1", "stage2", "stage3"}`` (stages 2 and 3 after their
    transformers when present).
    """

    def __init__(
        self,
        in_channels: int = 1,
        base_width: int = 64,
        img_size: int | Sequence[int] = 256,
        use_transformer: bool = True,
        transformer_layers: int = 2,
        transformer_heads: int = 8,
        transformer_mlp_ratio: float = 4.0,
        transformer_dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.resnet = ResNetEncoder(in_channels, base_width)
        size = (int(img_size),) * 2 if isinstance(img_size, int) else tuple(int(s) for s in img_size)
        if len(size) != 2 or any(s % SIZE_MULTIPLE or s < SIZE_MULTIPLE for s in size):
            raise ValueError(f"img_size must be a positive multiple of {SIZE_MULTIPLE} (or a pair), got {img_size!r}")
        self.img_size = size
        self.in_channels = in_channels
        self.channels = self.resnet.channels
        self.transformer2: FeatureMapTransformer | None = None
        self.transformer3: FeatureMapTransformer | None = None
        if use_transformer:
            kwargs = dict(
                num_layers=transformer_layers,
                num_heads=transformer_heads,
                mlp_ratio=transformer_mlp_ratio,
                dropout=transformer_dropout,
            )
            self.transformer2 = FeatureMapTransformer(2 * base_width, tuple(s // 8 for s in size), **kwargs)
            self.transformer3 = FeatureMapTransformer(4 * base_width, tuple(s // 16 for s in size), **kwargs)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        r = self.resnet
        stem = r.forward_stem(x)
        s1 = r.layer1(r.maxpool(stem))
        s2 = r.layer2(s1)
        if self.transformer2 is not None:
            s2 = self.transformer2(s2)
        s3 = r.layer3(s2)
        if self.transformer3 is not None:
            s3 = self.transformer3(s3)
        return {"stem": stem, "stage1": s1, "stage2": s2, "stage3": s3}


class H3K27MNet(nn.Module):
    """Co-training network: H3K27M status logits, tumour mask logits and a feature vector per slice.

    ``forward(x)`` with ``x`` of shape ``(B, in_channels, H, W)``, ``H`` and ``W`` multiples
    of 16 (e.g. 256, or 64 in tests), returns a dict:

    * ``"class_logits"``: ``(B, num_classes)``, class 1 = H3K27M-altered, 0 = wild-type;
    * ``"mask_logits"``: ``(B, 1, H, W)`` tumour logits, or ``None`` without decoder;
    * ``"features"``: ``(B, 7 * base_width)`` (``14 * base_width`` with ``lesion_pooling``) the head's
      pooled feature vector (for t-SNE; average a patient's slices for a patient-level point).

    See the module docstring for the architecture and the named ablations.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        base_width: int = 64,
        img_size: int | Sequence[int] = 256,
        use_decoder: bool = True,
        use_transformer: bool = True,
        use_exchange: bool = True,
        transformer_layers: int = 2,
        transformer_heads: int = 8,
        transformer_mlp_ratio: float = 4.0,
        transformer_dropout: float = 0.1,
        attention_reduction: int = 16,
        head_dropout: float = 0.0,
        mask_channels: int = 1,
        lesion_pooling: bool = False,
    ) -> None:
        """
        Args:
            in_channels: image channels (1: one MRI sequence).
            num_classes: status classes (2: wild-type, altered).
            base_width: channels of the stem and stage 1 (64 = ResNet-18).
            img_size: training slice size; sets the grid of the transformers' position
                embeddings (other sizes interpolate it).
            use_decoder: build the segmentation branch (residual U-decoder).
            use_transformer: transformers after stages 2 and 3.
            use_exchange: the head also reads the decoder features through channel
                attention (needs ``use_decoder``).
            transformer_layers, transformer_heads, transformer_mlp_ratio, transformer_dropout:
                of each transformer (paper: 2 layers, 8 heads).
            attention_reduction: SE bottleneck reduction of the head and exchange attention.
            head_dropout: dropout before the head's linear layer.
            mask_channels: output channels of the mask logits.
            lesion_pooling: the head also averages each feature map under the net's own tumour
                probability (sigmoid of the mask logits, gradient stopped, channels maxed), so the
                status is read from the lesion as well as from the whole slice (needs ``use_decoder``;
                not in the paper).
        """
        super().__init__()
        if use_exchange and not use_decoder:
            raise ValueError("use_exchange=True needs use_decoder=True: the exchange reads the decoder's features")
        if lesion_pooling and not use_decoder:
            raise ValueError("lesion_pooling=True needs use_decoder=True: it pools under the predicted mask")
        self.use_decoder, self.use_transformer = bool(use_decoder), bool(use_transformer)
        self.use_exchange, self.lesion_pooling = bool(use_exchange), bool(lesion_pooling)
        self.in_channels, self.num_classes, self.base_width = in_channels, num_classes, base_width
        self.size_multiple = SIZE_MULTIPLE
        self.encoder = H3K27MEncoder(
            in_channels,
            base_width,
            img_size,
            use_transformer,
            transformer_layers,
            transformer_heads,
            transformer_mlp_ratio,
            transformer_dropout,
        )
        w = base_width
        self.decoder = ResidualUDecoder(in_channels, w, mask_channels) if use_decoder else None
        self.exchange = (
            nn.ModuleDict(
                {
                    "stage1": AttentionExchange(w, attention_reduction),
                    "stage2": AttentionExchange(2 * w, attention_reduction),
                }
            )
            if use_exchange
            else None
        )
        self.head = MultiScaleAttentionHead(
            (w, 2 * w, 4 * w), num_classes, reduction=attention_reduction, dropout=head_dropout,
            lesion_pooling=lesion_pooling,
        )

    @property
    def feature_dim(self) -> int:
        return self.head.feature_dim

    def check_input(self, x: torch.Tensor) -> None:
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) batch of slices, got shape {list(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {self.in_channels} input channel(s), got {x.shape[1]} (shape {list(x.shape)})")
        h, w, m = x.shape[2], x.shape[3], self.size_multiple
        if h % m != 0 or w % m != 0 or min(h, w) < m:
            raise ValueError(f"slice size must be a multiple of {m}, got {[h, w]}")

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        class_logits, mask_logits, features = self.outputs(x)
        return {"class_logits": class_logits, "mask_logits": mask_logits, "features": features}

    def outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``(class_logits, mask_logits or None, features)``, the values of :meth:`forward`'s dict
        (TorchScript-able; :class:`~pipeline.networks.h3k27m_export.H3K27MExportNet` builds on it)."""
        self.check_input(x)
        feats = self.encoder(x)
        mask_logits: Optional[torch.Tensor] = None
        head_inputs = [feats["stage1"], feats["stage2"], feats["stage3"]]
        if self.decoder is not None:
            mask_logits, dec = self.decoder(feats, x)
            if self.exchange is not None:
                head_inputs[0] = self.exchange["stage1"](feats["stage1"], dec["dec_stage1"])
                head_inputs[1] = self.exchange["stage2"](feats["stage2"], dec["dec_stage2"])
        weights: Optional[torch.Tensor] = None
        if self.lesion_pooling and mask_logits is not None:
            weights = torch.sigmoid(mask_logits.detach()).amax(dim=1, keepdim=True)
        class_logits, features = self.head(head_inputs, weights)
        return class_logits, mask_logits, features


@dataclass(frozen=True)
class H3K27MConfig:
    """One named ablation: which modules the net has and whether its encoder is pretrained."""

    name: str
    use_decoder: bool
    use_transformer: bool
    use_exchange: bool
    pretrain: bool
    description: str

    def net_flags(self) -> dict[str, bool]:
        return {
            "use_decoder": self.use_decoder,
            "use_transformer": self.use_transformer,
            "use_exchange": self.use_exchange,
        }


H3K27M_CONFIGS: Mapping[str, H3K27MConfig] = MappingProxyType(
    {
        c.name: c
        for c in (
            H3K27MConfig("cls_only", False, False, False, False, "classification only, encoder from scratch"),
            H3K27MConfig("cls+pretrain", False, False, False, True, "classification only, pretrained encoder"),
            H3K27MConfig("cls+seg", True, False, False, True, "plus segmentation; head reads encoder only"),
            H3K27MConfig("cls+seg+attention", True, False, True, True, "plus exchange: head reads decoder too"),
            H3K27MConfig("full", True, True, True, True, "plus transformers after stages 2 and 3"),
        )
    }
)
"""Configuration name -> flags (Huang et al.'s ablation, cumulative)."""


def get_h3k27m_config(name: str) -> H3K27MConfig:
    """Look a configuration up by name (:func:`~pipeline.networks.name_lookup.look_up_name`: case, ``-``, ``_``
    and spaces do not count)."""
    return look_up_name(H3K27M_CONFIGS, name, "H3K27M configuration")


def configured_net_kwargs(name: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the module switches of configuration ``name``; a conflicting value raises ``ValueError``."""
    config = get_h3k27m_config(name)
    flags = config.net_flags()
    for key, value in flags.items():
        if key in kwargs and bool(kwargs[key]) != value:
            raise ValueError(f"configuration {config.name} fixes {key}={value}; got {key}={kwargs[key]!r}.")
    return {**kwargs, **flags}


def build_h3k27m_net(name: str = "full", **kwargs: Any) -> H3K27MNet:
    """Build the :class:`H3K27MNet` of configuration ``name``; ``kwargs`` go to the constructor.

    The module switches are fixed by the configuration; a conflicting value raises ``ValueError``.
    """
    return H3K27MNet(**configured_net_kwargs(name, kwargs))
