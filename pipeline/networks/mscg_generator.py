"""MSCG generator: a U-Net-like encoder-decoder with scSE, MFE (pyramid pooling) and CBAM."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv, Pool
from monai.networks.nets.basic_unet import TwoConv
from torch import nn

from pipeline.networks.cbam import CBAM
from pipeline.networks.pyramid_pooling import PyramidPoolingModule
from pipeline.networks.scse import SpatialChannelSE
from pipeline.networks.single_voxel_instance_norm import make_instance_norms_single_voxel_safe

__all__ = ["MSCGenerator", "MSCGEncoderBlock", "MSCGDecoderBlock"]


class MSCGEncoderBlock(nn.Module):
    """Encoder stage: optional 2x max-pool, two conv-norm-act(-dropout) layers, optional scSE."""

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        downsample: bool,
        use_scse: bool,
        scse_reduction: int,
        scse_combine: str,
        act: str | tuple,
        norm: str | tuple | None,
        bias: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.pool: nn.Module = Pool[Pool.MAX, spatial_dims](kernel_size=2) if downsample else nn.Identity()
        self.conv = TwoConv(spatial_dims, in_channels, out_channels, act=act, norm=norm, bias=bias, dropout=dropout)
        self.attention: nn.Module = (
            SpatialChannelSE(spatial_dims, out_channels, r=scse_reduction, combine=scse_combine)
            if use_scse
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(self.conv(self.pool(x)))


class MSCGDecoderBlock(nn.Module):
    """Decoder stage: 2x transposed-conv upsampling, CBAM on the skip, concat, two convs, scSE.

    When the upsampled map and the skip differ in size (odd input sizes), the upsampled
    map is resized to the skip with nearest interpolation.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        use_scse: bool,
        use_cbam: bool,
        scse_reduction: int,
        scse_combine: str,
        cbam_reduction: int,
        cbam_kernel_size: int,
        act: str | tuple,
        norm: str | tuple | None,
        bias: bool,
        dropout: float,
    ) -> None:
        super().__init__()
        self.up = Conv[Conv.CONVTRANS, spatial_dims](in_channels, out_channels, kernel_size=2, stride=2)
        self.skip_attention: nn.Module = (
            CBAM(spatial_dims, skip_channels, reduction=cbam_reduction, kernel_size=cbam_kernel_size)
            if use_cbam
            else nn.Identity()
        )
        self.conv = TwoConv(
            spatial_dims, out_channels + skip_channels, out_channels, act=act, norm=norm, bias=bias, dropout=dropout
        )
        self.attention: nn.Module = (
            SpatialChannelSE(spatial_dims, out_channels, r=scse_reduction, combine=scse_combine)
            if use_scse
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)
        if x.shape[2:] != skip.shape[2:]:
            x = F.interpolate(x, size=skip.shape[2:], mode="nearest")
        x = torch.cat([self.skip_attention(skip), x], dim=1)
        return self.attention(self.conv(x))


PAPER_FEATURES: tuple[int, ...] = (32, 64, 128, 256, 512)  # the paper's widths, 240 -> 15 at the bottleneck


class MSCGenerator(nn.Module):
    """Generator of MSCG (Deng et al. 2026): U-Net-like encoder-decoder with three attention/context modules.

    Layout, for ``features=(f0, ..., fD)`` (``D`` = number of 2x downsamplings):

    * encoder stage ``i``: (max-pool for ``i > 0``) -> 2x[conv3x3-norm-act-dropout] -> **scSE**;
      the last stage (``fD``) is the bottleneck;
    * bottleneck: **MFE** = PSPNet pyramid pooling (bins 1, 2, 3, 6) + fusion conv;
    * decoder stage ``i`` (from ``D-1`` to 0): transposed conv -> concat with the
      **CBAM**-refined encoder skip ``i`` -> 2x[conv-norm-act-dropout] -> **scSE**;
    * head: 1x1 conv to ``out_channels`` **logits** (no sigmoid/softmax).

    Placement of CBAM is our reading of the paper: it re-weights each skip connection
    (channel then spatial attention) before fusion, so that low-level encoder features
    are filtered before they reach the decoder. Each module can be switched off
    (``use_scse``, ``use_mfe``, ``use_cbam``); disabled modules become ``nn.Identity``.
    The output has the input's spatial size; sizes divisible by ``2**D`` (e.g. 240 with
    ``D = 4``) map exactly, other sizes (>= ``2**D``) are handled by resizing the
    upsampled maps to the skips. The network is TorchScript-scriptable.

    Deng et al., "A deep learning-based automatic segmentation model for diffuse midline
    glioma with H3K27M alteration", Front. Oncol. 2026, doi:10.3389/fonc.2025.1602516.
    Blocks: Roy et al. 2018 (scSE), Zhao et al. 2017 (PSPNet pyramid pooling),
    Woo et al. 2018 (CBAM), Ronneberger et al. 2015 (U-Net).
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        out_channels: int = 1,
        features: Sequence[int] = PAPER_FEATURES,
        use_scse: bool = True,
        use_mfe: bool = True,
        use_cbam: bool = True,
        scse_reduction: int = 2,
        scse_combine: str = "add",
        cbam_reduction: int = 16,
        cbam_kernel_size: int = 7,
        mfe_bins: Sequence[int] = (1, 2, 3, 6),
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple | None = ("instance", {"affine": True}),
        bias: bool | None = None,
        dropout: float = 0.0,
    ) -> None:
        """
        Args:
            spatial_dims: number of spatial dimensions (2 for axial slices; 1 or 3 also work).
            in_channels: image channels (1 for one MRI sequence).
            out_channels: output logit channels (1 for a binary mask).
            features: channels per resolution level, finest first; ``len(features) - 1``
                downsamplings. The default has 4 (240 -> 15 at the bottleneck).
            use_scse: scSE after every encoder and decoder stage.
            use_mfe: pyramid-pooling MFE at the bottleneck.
            use_cbam: CBAM on every skip connection.
            scse_reduction: scSE channel reduction ratio.
            scse_combine: scSE aggregation, ``"add"`` (Roy et al. 2018) or ``"max"``.
            cbam_reduction: CBAM channel-MLP reduction ratio.
            cbam_kernel_size: CBAM spatial-attention kernel size.
            mfe_bins: pyramid-pooling bin sizes.
            act: activation (MONAI ``Act`` spec).
            norm: normalisation (MONAI ``Norm`` spec or None). Instance norm by default:
                the paper trains with batch size 2.
            bias: conv bias; ``None`` means bias only when ``norm`` is None (a bias
                before a normalisation layer is redundant and gets no gradient).
            dropout: dropout probability in every conv layer.
        """
        super().__init__()
        features = tuple(int(f) for f in features)
        if len(features) < 2:
            raise ValueError(f"features needs at least two levels, got {features}.")
        if any(f < 1 for f in features):
            raise ValueError(f"features must be positive, got {features}.")
        conv_bias = norm is None if bias is None else bias
        self.spatial_dims: int = spatial_dims
        self.in_channels: int = in_channels
        self.out_channels: int = out_channels
        self.depth: int = len(features) - 1

        encoder = []
        prev = in_channels
        for i, f in enumerate(features):
            encoder.append(
                MSCGEncoderBlock(
                    spatial_dims, prev, f, i > 0, use_scse, scse_reduction, scse_combine, act, norm, conv_bias, dropout
                )
            )
            prev = f
        self.encoder = nn.ModuleList(encoder)
        self.mfe: nn.Module = (
            PyramidPoolingModule(spatial_dims, features[-1], features[-1], bins=mfe_bins, act=act, norm=norm)
            if use_mfe
            else nn.Identity()
        )
        decoder = []
        for i in range(self.depth - 1, -1, -1):
            decoder.append(
                MSCGDecoderBlock(
                    spatial_dims,
                    features[i + 1],
                    features[i],
                    features[i],
                    use_scse,
                    use_cbam,
                    scse_reduction,
                    scse_combine,
                    cbam_reduction,
                    cbam_kernel_size,
                    act,
                    norm,
                    conv_bias,
                    dropout,
                )
            )
        self.decoder = nn.ModuleList(decoder)
        self.head = Conv[Conv.CONV, spatial_dims](features[0], out_channels, kernel_size=1, bias=True)
        make_instance_norms_single_voxel_safe(self)  # a 16x16 slice has a 1x1 bottleneck with 4 downsamplings

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, in_channels, *spatial)`` images to ``(B, out_channels, *spatial)`` logits."""
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                "MSCGenerator expects input of shape (B, "
                + str(self.in_channels)
                + ", *spatial) with "
                + str(self.spatial_dims)
                + " spatial dims, got "
                + str(list(x.shape))
                + "."
            )
        skips: list[torch.Tensor] = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        x = self.mfe(x)
        for i, stage in enumerate(self.decoder):
            x = stage(x, skips[self.depth - 1 - i])
        return self.head(x)
