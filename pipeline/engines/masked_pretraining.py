"""Masked-patch inpainting pretraining of the H3K27M encoder (Huang et al., Cancer Med 2023).

Healthy head MRI slices (``dmg synth --lesion-free``) are cut into ``patch x patch``
squares (16x16), a fixed fraction of them (45 %) is set to zero, and the network
reconstructs the image; the loss counts the masked pixels only. The encoder
(ResNet-18 stem + stages 1-3, and the transformers when the net has them) is then copied
into the co-training net::

    net = build_h3k27m_net("full")
    model = InpaintingModel(net)                        # trains net.encoder + a light decoder
    mask = random_patch_mask(images.shape, 16, 0.45, generator)
    loss = MaskedReconstructionLoss("l1")(model(apply_patch_mask(images, mask)), images, mask)
    ...
    report = load_pretrained_encoder(build_h3k27m_net("full"), encoder_state_dict(model))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from pipeline.networks.feature_map_transformer import resize_position_grid
from pipeline.networks.h3k27m_net import H3K27MEncoder, H3K27MNet
from pipeline.networks.residual_decoder import ResidualUDecoder

__all__ = [
    "random_patch_mask",
    "patch_mask_to_pixels",
    "apply_patch_mask",
    "MaskedReconstructionLoss",
    "InpaintingModel",
    "EncoderTransfer",
    "encoder_state_dict",
    "load_pretrained_encoder",
]


def random_patch_mask(
    shape: Sequence[int], patch: int = 16, ratio: float = 0.45, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Boolean patch mask ``(B, H // patch, W // patch)`` for images of shape ``(B, C, H, W)``.

    Each image gets exactly ``round(ratio * n_patches)`` masked (True) patches (Python's
    ``round``), chosen uniformly without replacement and independently per image; the
    patches are the same for all channels. ``H`` and ``W`` must be multiples of ``patch``.
    """
    if len(shape) != 4:
        raise ValueError(f"shape must be (B, C, H, W), got {tuple(shape)}")
    b, _, h, w = (int(s) for s in shape)
    if patch < 1 or h % patch or w % patch:
        raise ValueError(f"image size {(h, w)} is not a multiple of the patch size {patch}")
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"ratio must lie in [0, 1], got {ratio}")
    gh, gw = h // patch, w // patch
    n = gh * gw
    k = int(round(ratio * n))
    order = torch.rand(b, n, generator=generator).argsort(dim=1)
    mask = torch.zeros(b, n, dtype=torch.bool)
    mask.scatter_(1, order[:, :k], True)
    return mask.reshape(b, gh, gw)


def patch_mask_to_pixels(mask: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Expand a ``(B, h, w)`` patch mask to a ``(B, 1, H, W)`` pixel mask for images of size ``(H, W)``."""
    if mask.ndim != 3:
        raise ValueError(f"patch mask must be (B, h, w), got shape {tuple(mask.shape)}")
    h, w = int(size[0]), int(size[1])
    if h % mask.shape[1] or w % mask.shape[2] or h // mask.shape[1] != w // mask.shape[2]:
        raise ValueError(f"patch mask {tuple(mask.shape[1:])} does not tile an image of size {(h, w)} in squares")
    p = h // mask.shape[1]
    return mask.bool().repeat_interleave(p, dim=1).repeat_interleave(p, dim=2).unsqueeze(1)


def apply_patch_mask(images: torch.Tensor, mask: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """Copy of ``images`` ``(B, C, H, W)`` with the masked patches (``mask`` ``(B, h, w)``) set to ``fill``."""
    pixels = patch_mask_to_pixels(mask, images.shape[2:]).to(images.device)
    return images.masked_fill(pixels, fill)


class MaskedReconstructionLoss(nn.Module):
    """L1 or MSE between prediction and image over the masked pixels only (mean over those pixels).

    ``mask`` is the patch mask ``(B, h, w)`` of :func:`random_patch_mask`, or a pixel mask
    broadcastable to the images; unmasked pixels do not enter the loss. Returns 0 when
    nothing is masked.
    """

    def __init__(self, kind: str = "l1") -> None:
        super().__init__()
        kind = str(kind).lower()
        if kind not in ("l1", "mse"):
            raise ValueError(f"kind must be 'l1' or 'mse', got {kind!r}")
        self.kind = kind

    def forward(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
        if mask.ndim == 3 and target.ndim == 4 and mask.shape[1:] != target.shape[2:]:
            mask = patch_mask_to_pixels(mask, target.shape[2:])
        weight = torch.broadcast_to(mask.to(prediction.device).bool(), prediction.shape)
        diff = prediction.float() - target.float()
        error = diff.abs() if self.kind == "l1" else diff.square()
        count = weight.sum()
        if count == 0:
            return (error * 0.0).sum()
        return torch.where(weight, error, torch.zeros_like(error)).sum() / count


class InpaintingModel(nn.Module):
    """Encoder of a co-training net plus a light reconstruction decoder: masked image → image.

    Holds ``net.encoder`` (shared, not copied: training this model trains the net's
    encoder) and a :class:`ResidualUDecoder` with one output channel at ``decoder_width``
    (half the net's base width by default; the mask decoder is not reused so that every
    configuration, ``cls_only`` included, pretrains the same way). The output has no
    activation; images are expected in [0, 1].
    """

    def __init__(self, encoder_net: H3K27MNet | H3K27MEncoder, decoder_width: int | None = None) -> None:
        super().__init__()
        encoder = encoder_net.encoder if isinstance(encoder_net, H3K27MNet) else encoder_net
        if not isinstance(encoder, H3K27MEncoder):
            raise TypeError(f"expected an H3K27MNet or H3K27MEncoder, got {type(encoder_net).__name__}")
        self.encoder = encoder
        base = encoder.resnet.channels[1]
        width = decoder_width or max(4, base // 2)
        # project the encoder's features to the decoder's width with 1x1 convolutions
        self.adapt = nn.ModuleDict(
            {
                "stem": nn.Conv2d(base, width, 1),
                "stage1": nn.Conv2d(base, width, 1),
                "stage2": nn.Conv2d(2 * base, 2 * width, 1),
                "stage3": nn.Conv2d(4 * base, 4 * width, 1),
            }
        )
        self.decoder = ResidualUDecoder(encoder.in_channels, width, out_channels=encoder.in_channels)

    def forward(self, masked_images: torch.Tensor) -> torch.Tensor:
        feats = self.encoder(masked_images)
        image, _ = self.decoder({k: conv(feats[k]) for k, conv in self.adapt.items()}, masked_images)
        return image


def _encoder_of(model: nn.Module) -> H3K27MEncoder:
    if isinstance(model, H3K27MEncoder):
        return model
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, H3K27MEncoder):
        return encoder
    raise TypeError(f"{type(model).__name__} has no H3K27MEncoder (expected H3K27MNet or InpaintingModel)")


def encoder_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The transferable weights of ``model`` (H3K27MNet, InpaintingModel or H3K27MEncoder).

    Keys are relative to the encoder: ``resnet.*`` (stem and stages 1-3, batch-norm
    statistics included) and ``transformer2.*``/``transformer3.*`` when present. Tensors
    are detached copies.
    """
    return {k: v.detach().clone() for k, v in _encoder_of(model).state_dict().items()}


@dataclass
class EncoderTransfer:
    """What :func:`load_pretrained_encoder` did; keys relative to the encoder."""

    loaded: list[str] = field(default_factory=list)
    """Copied from the checkpoint (all ``resnet.*`` keys, and transformer keys both sides have)."""
    skipped: list[str] = field(default_factory=list)
    """In the checkpoint but not in the net (e.g. transformers pretrained, net without them)."""
    not_pretrained: list[str] = field(default_factory=list)
    """Transformer keys of the net that the checkpoint lacks: left at their initialisation."""
    inflated: list[str] = field(default_factory=list)
    """Input-channel weights of a one-channel checkpoint spread over the net's input channels."""
    channels: int = 1
    """The net's input channels (when ``inflated``)."""

    def summary(self) -> str:
        text = (
            f"loaded {len(self.loaded)} encoder tensors; skipped {len(self.skipped)} checkpoint tensors "
            f"the net does not have; {len(self.not_pretrained)} net tensors not pretrained"
        )
        if self.inflated:
            text += f"; {len(self.inflated)} inflated from 1 to {self.channels} input channels"
        return text


def _inflatable(source: torch.Tensor, target: torch.Tensor) -> bool:
    """A convolution pretrained on one input channel, the net's with more: equal but for dimension 1."""
    return (source.ndim == target.ndim >= 3 and source.shape[1] == 1 and target.shape[1] > 1
            and source.shape[0] == target.shape[0] and source.shape[2:] == target.shape[2:])


def load_pretrained_encoder(net: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> EncoderTransfer:
    """Copy pretrained encoder weights (from :func:`encoder_state_dict`) into ``net``'s encoder.

    The ResNet stem and stages (``resnet.*``) are required: every such key of the net must be
    in ``state_dict``. Transformer weights are copied when both sides have them; otherwise
    they are listed in the returned :class:`EncoderTransfer`. A one-channel checkpoint loads into a
    multi-channel net (several sequences): the input convolution's filters are repeated over the channels
    and divided by their number (ImageNet-style inflation), listed in ``inflated``; transformer position
    embeddings pretrained at another slice size are interpolated to the net's grid. Any other shape
    mismatch (e.g. another ``base_width``) raises ``ValueError`` naming the tensors, before anything is
    copied; so does a state dict with none of the encoder's keys.
    """
    encoder = _encoder_of(net)
    target = encoder.state_dict()
    source = dict(state_dict)
    if not any(k in target for k in source):
        hint = ""
        if any(".resnet." in k or k.startswith("encoder.") for k in source):
            hint = " (it looks like a whole-model state dict: pass encoder_state_dict(model) instead)"
        raise ValueError(f"the state dict has none of the encoder's keys{hint}; first keys: {list(source)[:3]}")
    inflated = [k for k in target if k in source and _inflatable(source[k], target[k])]
    for k in inflated:  # a one-channel (one-sequence) pretraining, a multi-sequence net: share the filters
        channels = target[k].shape[1]
        source[k] = source[k].repeat(1, channels, *([1] * (source[k].ndim - 2))) / channels
    for k in target:  # pretrained at another slice size: the position grid interpolated, as the net does
        if k.endswith("pos_embed") and k in source and source[k].shape[:2] == target[k].shape[:2] \
                and source[k].shape != target[k].shape and source[k].ndim == 4:
            source[k] = resize_position_grid(source[k], (int(target[k].shape[2]), int(target[k].shape[3])))
    missing = sorted(k for k in target if k.startswith("resnet.") and k not in source)
    if missing:
        raise ValueError(f"pretrained encoder lacks {len(missing)} ResNet tensors, e.g. {missing[:3]}")
    mismatched = [
        f"{k}: checkpoint {tuple(source[k].shape)} vs net {tuple(target[k].shape)}"
        for k in target
        if k in source and tuple(source[k].shape) != tuple(target[k].shape)
    ]
    if mismatched:
        raise ValueError(
            f"pretrained encoder does not fit the net ({len(mismatched)} shape mismatches; different base_width, "
            f"in_channels or img_size?): " + "; ".join(mismatched[:4])
        )
    report = EncoderTransfer(
        loaded=[k for k in target if k in source],
        skipped=sorted(k for k in source if k not in target),
        not_pretrained=[k for k in target if k not in source],
        inflated=inflated,
        channels=int(target[inflated[0]].shape[1]) if inflated else 1,
    )
    encoder.load_state_dict({k: source[k] for k in report.loaded}, strict=False)
    return report
