"""Inference: load a trained segmentation bundle (or its TorchScript export) and segment a cohort."""

from pipeline.checkpoint_io import is_torchscript_file
from pipeline.inference.model import (
    SegmentationModel,
    load_segmentation_model,
    parse_overrides,
    resolve_device,
    resolve_model_file,
)
from pipeline.inference.segmenter import (
    REPORT_NAME,
    CaseResult,
    CohortSegmenter,
    SegmentationReport,
    mask_image_like,
    prediction_path,
)

__all__ = [
    "REPORT_NAME",
    "CaseResult",
    "CohortSegmenter",
    "SegmentationModel",
    "SegmentationReport",
    "is_torchscript_file",
    "load_segmentation_model",
    "mask_image_like",
    "parse_overrides",
    "prediction_path",
    "resolve_device",
    "resolve_model_file",
]
