"""ResNet-18 stem and stages 1-3 (2D), taken from MONAI's ResNet."""

from __future__ import annotations

import torch
from monai.networks.nets import ResNet
from torch import nn

__all__ = ["ResNetEncoder"]


class ResNetEncoder(nn.Module):
    """Stem and the first three stages of a 2D ResNet-18, without ``layer4`` and classifier.

    The modules are MONAI's :class:`monai.networks.nets.ResNet` (``block="basic"``,
    two blocks per stage, 7x7 stride-2 stem convolution, 3x3 stride-2 max-pool, 1x1
    convolution + batch norm shortcuts without bias): the ResNet is built and only
    ``conv1``, ``bn1``, ``act``, ``maxpool`` and ``layer1``-``layer3`` are kept under the
    same names (so parameter names follow torchvision's ``resnet18``). Weights start from
    MONAI's Kaiming initialisation; nothing is downloaded.

    For an input of size ``H x W`` (both divisible by 16) and base width ``w`` it returns

    * ``"stem"``: ``w @ H/2`` (after conv1-bn-relu, before the max-pool; the decoder's
      high-resolution skip);
    * ``"stage1"``: ``w @ H/4``, ``"stage2"``: ``2w @ H/8``, ``"stage3"``: ``4w @ H/16``
      (64@64², 128@32², 256@16² for a 256² input at the default ``w = 64``).
    """

    def __init__(self, in_channels: int = 1, base_width: int = 64, blocks: tuple[int, int, int] = (2, 2, 2)) -> None:
        """
        Args:
            in_channels: input channels (1 for a single MRI sequence).
            base_width: channels of the stem and stage 1; stages 2 and 3 have 2x and 4x.
            blocks: basic blocks per stage (ResNet-18: 2, 2, 2).
        """
        super().__init__()
        if base_width < 1 or in_channels < 1:
            raise ValueError(f"in_channels and base_width must be positive, got {in_channels}, {base_width}")
        w = int(base_width)
        # layer4 is built by MONAI's ResNet whatever we ask for; give it one block of one
        # channel so that the discarded part costs nothing.
        resnet = ResNet(
            block="basic",
            layers=[*blocks, 1],
            block_inplanes=[w, 2 * w, 4 * w, 1],
            spatial_dims=2,
            n_input_channels=in_channels,
            conv1_t_size=7,
            conv1_t_stride=2,
            shortcut_type="B",
            bias_downsample=False,
            feed_forward=False,
        )
        self.conv1, self.bn1, self.act, self.maxpool = resnet.conv1, resnet.bn1, resnet.act, resnet.maxpool
        self.layer1, self.layer2, self.layer3 = resnet.layer1, resnet.layer2, resnet.layer3
        self.in_channels = in_channels
        self.channels: tuple[int, int, int, int] = (w, w, 2 * w, 4 * w)
        """Channels of ``stem``, ``stage1``, ``stage2``, ``stage3``."""
        self.strides: tuple[int, int, int, int] = (2, 4, 8, 16)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn1(self.conv1(x)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        stem = self.forward_stem(x)
        s1 = self.layer1(self.maxpool(stem))
        s2 = self.layer2(s1)
        return {"stem": stem, "stage1": s1, "stage2": s2, "stage3": self.layer3(s2)}
