"""Image-conditioned PatchGAN discriminator with CBAM, for the MSCG adversarial term."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.layers.factories import Conv
from monai.networks.layers.utils import get_act_layer, get_dropout_layer, get_norm_layer
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as apply_spectral_norm

from pipeline.networks.cbam import CBAM

__all__ = ["PatchDiscriminator"]


class PatchDiscriminator(nn.Module):
    """Conditional PatchGAN: scores (image, mask) pairs patch by patch.

    The image and the mask probabilities (e.g. ``sigmoid(generator logits)`` or a
    reference mask) are concatenated along channels, image first (by the caller,
    ``disc(torch.cat([image, prob], 1))``, or here, ``disc(image, prob)``), and pass
    through ``kernel_size`` (default 4) convolutions with the given ``strides``. Every block is
    conv -> norm (not on the first block, as in pix2pix) -> act -> dropout -> CBAM, and a
    final conv maps to one channel of **logits** (no sigmoid; use a BCE-with-logits or
    least-squares GAN loss). With the defaults a 240x240 slice gives a 28x28 map, each
    logit seeing a 70x70 receptive field.

    Isola et al., "Image-to-Image Translation with Conditional Adversarial Networks"
    (pix2pix PatchGAN), CVPR 2017, https://arxiv.org/abs/1611.07004; CBAM: Woo et al.,
    ECCV 2018, https://arxiv.org/abs/1807.06521; spectral norm: Miyato et al., ICLR 2018,
    https://arxiv.org/abs/1802.05957; used as the MSCG discriminator of Deng et al.,
    Front. Oncol. 2026, doi:10.3389/fonc.2025.1602516.
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        image_channels: int = 1,
        mask_channels: int = 1,
        channels: Sequence[int] = (64, 128, 256, 512),
        strides: Sequence[int] = (2, 2, 2, 1),
        kernel_size: int = 4,
        use_cbam: bool = True,
        cbam_reduction: int = 16,
        cbam_kernel_size: int = 7,
        act: str | tuple = ("leakyrelu", {"negative_slope": 0.2, "inplace": True}),
        norm: str | tuple | None = ("instance", {"affine": True}),
        dropout: float = 0.0,
        spectral_norm: bool = False,
    ) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions.
            image_channels: channels of the conditioning image.
            mask_channels: channels of the mask probabilities.
            channels: output channels of each conv block.
            strides: stride of each conv block (same length as ``channels``).
            kernel_size: conv kernel size (4 in pix2pix; padding 1).
            use_cbam: CBAM after every conv block.
            cbam_reduction: CBAM channel-MLP reduction ratio.
            cbam_kernel_size: CBAM spatial-attention kernel size.
            act: activation (MONAI ``Act`` spec); LeakyReLU 0.2 by default.
            norm: normalisation of every block but the first (MONAI ``Norm`` spec or None).
            dropout: dropout probability after each block's activation.
            spectral_norm: wrap every convolution in spectral normalisation
                (``torch.nn.utils.parametrizations.spectral_norm``). Not TorchScript-scriptable.
        """
        super().__init__()
        channels = tuple(int(c) for c in channels)
        strides = tuple(int(s) for s in strides)
        if len(channels) == 0 or len(channels) != len(strides):
            raise ValueError(f"channels and strides must be non-empty and of equal length, got {channels}, {strides}.")
        conv_type = Conv[Conv.CONV, spatial_dims]
        padding = (kernel_size - 1) // 2
        self.spatial_dims: int = spatial_dims
        self.image_channels: int = image_channels
        self.mask_channels: int = mask_channels

        def make_conv(cin: int, cout: int, stride: int, bias: bool) -> nn.Module:
            conv = conv_type(cin, cout, kernel_size=kernel_size, stride=stride, padding=padding, bias=bias)
            return apply_spectral_norm(conv) if spectral_norm else conv

        blocks = []
        prev = image_channels + mask_channels
        for i, (c, s) in enumerate(zip(channels, strides)):
            block_norm = norm if i > 0 else None
            layers: list[nn.Module] = [make_conv(prev, c, s, bias=block_norm is None)]
            if block_norm is not None:
                layers.append(get_norm_layer(block_norm, spatial_dims=spatial_dims, channels=c))
            layers.append(get_act_layer(act))
            if dropout > 0:
                layers.append(get_dropout_layer(("dropout", {"p": dropout}), dropout_dim=spatial_dims))
            if use_cbam:
                layers.append(CBAM(spatial_dims, c, reduction=cbam_reduction, kernel_size=cbam_kernel_size))
            blocks.append(nn.Sequential(*layers))
            prev = c
        self.blocks = nn.Sequential(*blocks)
        self.head = make_conv(prev, 1, 1, bias=True)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Score image/mask pairs patch-wise.

        Args:
            x: ``(B, image_channels + mask_channels, *S)``, the image and mask
                probabilities already concatenated along channels (image first), or,
                when ``mask`` is given, the image alone ``(B, image_channels, *S)``.
            mask: optional ``(B, mask_channels, *S)`` mask probabilities, concatenated here.

        Returns:
            ``(B, 1, *S')`` real/fake logits, one per patch.
        """
        if mask is not None:
            if x.shape[0] != mask.shape[0] or x.shape[2:] != mask.shape[2:]:
                raise ValueError(
                    "image and mask must share batch and spatial sizes, got "
                    + str(list(x.shape))
                    + " and "
                    + str(list(mask.shape))
                    + "."
                )
            if x.shape[1] != self.image_channels or mask.shape[1] != self.mask_channels:
                raise ValueError(
                    "expected "
                    + str(self.image_channels)
                    + " image and "
                    + str(self.mask_channels)
                    + " mask channels, got "
                    + str(x.shape[1])
                    + " and "
                    + str(mask.shape[1])
                    + "."
                )
            x = torch.cat([x, mask.to(x.dtype)], dim=1)
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.image_channels + self.mask_channels:
            raise ValueError(
                "PatchDiscriminator expects (B, "
                + str(self.image_channels + self.mask_channels)
                + ", *spatial) = concat(image, mask) with "
                + str(self.spatial_dims)
                + " spatial dims, got "
                + str(list(x.shape))
                + "."
            )
        return self.head(self.blocks(x))
