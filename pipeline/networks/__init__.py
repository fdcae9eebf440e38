"""Networks of the DMG pipeline: the MSCG segmentation GAN and its building blocks."""

from pipeline.networks.cbam import CBAM, ChannelAttention, SpatialAttention
from pipeline.networks.mscg_generator import MSCGDecoderBlock, MSCGEncoderBlock, MSCGenerator
from pipeline.networks.patch_discriminator import PatchDiscriminator
from pipeline.networks.pyramid_pooling import PyramidPoolingModule
from pipeline.networks.scse import SpatialChannelSE, SpatialSELayer
from pipeline.networks.variants import (
    VARIANTS,
    VariantSpec,
    build_discriminator,
    build_generator,
    build_variant,
    get_variant,
)

__all__ = [
    "CBAM",
    "ChannelAttention",
    "SpatialAttention",
    "SpatialChannelSE",
    "SpatialSELayer",
    "PyramidPoolingModule",
    "MSCGenerator",
    "MSCGEncoderBlock",
    "MSCGDecoderBlock",
    "PatchDiscriminator",
    "VariantSpec",
    "VARIANTS",
    "get_variant",
    "build_generator",
    "build_discriminator",
    "build_variant",
]
