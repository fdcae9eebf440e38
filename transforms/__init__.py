"""MONAI dictionary transforms for dmg-pipeline (never imports ``pipeline`` or ``evaluation``)."""

from .anti_alias import AntiAliasSmooth, AntiAliasSmoothd, anti_aliasing_sigma
from .atomic_writer import AtomicNibabelWriter
from .bias_field import N4BiasFieldCorrection, N4BiasFieldCorrectiond
from .builders import MODES, build_postprocessing, build_slice_augmentation, build_transforms
from .crop import InPlaneForegroundCrop, InPlaneForegroundCropd
from .intensity import PercentileNormalize, PercentileNormalized
from .label import BinarizeLabel, BinarizeLabeld, parse_label_classes
from .naming import CopyToMetad, prediction_name_formatter
from .slices import SLICE_POLICIES, AxialSlicesd, lesion_slices
from .utils import foreground_mask

__all__ = [
    "AntiAliasSmooth",
    "AntiAliasSmoothd",
    "AtomicNibabelWriter",
    "MODES",
    "SLICE_POLICIES",
    "AxialSlicesd",
    "BinarizeLabel",
    "BinarizeLabeld",
    "CopyToMetad",
    "InPlaneForegroundCrop",
    "N4BiasFieldCorrection",
    "N4BiasFieldCorrectiond",
    "InPlaneForegroundCropd",
    "PercentileNormalize",
    "PercentileNormalized",
    "anti_aliasing_sigma",
    "build_postprocessing",
    "build_slice_augmentation",
    "build_transforms",
    "foreground_mask",
    "lesion_slices",
    "parse_label_classes",
    "prediction_name_formatter",
]
