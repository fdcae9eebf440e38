"""Networks of the DMG pipeline: the MSCG segmentation GAN and its building blocks."""

from pipeline.networks.cbam import CBAM, ChannelAttention, SpatialAttention
from pipeline.networks.feature_map_transformer import FeatureMapTransformer
from pipeline.networks.h3k27m_ensemble import H3K27MEnsembleNet, build_h3k27m_ensemble_net, ensemble_state_dict
from pipeline.networks.h3k27m_export import H3K27MExportNet, build_h3k27m_export_net, split_status_mask
from pipeline.networks.h3k27m_net import (
    H3K27M_CONFIGS,
    H3K27MConfig,
    H3K27MEncoder,
    H3K27MNet,
    build_h3k27m_net,
    get_h3k27m_config,
)
from pipeline.networks.mscg_generator import MSCGDecoderBlock, MSCGEncoderBlock, MSCGenerator
from pipeline.networks.multiscale_attention_head import AttentionExchange, MultiScaleAttentionHead
from pipeline.networks.patch_discriminator import PatchDiscriminator
from pipeline.networks.pyramid_pooling import PyramidPoolingModule
from pipeline.networks.residual_decoder import ResidualUDecoder, ResidualUpBlock
from pipeline.networks.resnet_encoder import ResNetEncoder
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
    "ResNetEncoder",
    "FeatureMapTransformer",
    "ResidualUpBlock",
    "ResidualUDecoder",
    "AttentionExchange",
    "MultiScaleAttentionHead",
    "H3K27MEncoder",
    "H3K27MNet",
    "H3K27MConfig",
    "H3K27M_CONFIGS",
    "get_h3k27m_config",
    "build_h3k27m_net",
    "H3K27MExportNet",
    "build_h3k27m_export_net",
    "split_status_mask",
    "H3K27MEnsembleNet",
    "build_h3k27m_ensemble_net",
    "ensemble_state_dict",
]
