"""Small array helpers shared by the transforms (no MONAI transform logic here)."""

from __future__ import annotations

import numpy as np
import torch
from monai.config import NdarrayOrTensor
from monai.utils import convert_to_numpy

__all__ = ["foreground_mask"]


def foreground_mask(img: NdarrayOrTensor, fraction: float = 0.0, robust_pct: float = 99.9) -> np.ndarray:
    """Boolean mask of voxels above ``min + fraction * (P[robust_pct] - min)``.

    The threshold is relative to the intensity range, so it does not depend on the scanner's
    intensity scale. ``fraction=0`` selects every voxel above the minimum (the nonzero voxels of
    a zero-background MRI).
    """
    arr = convert_to_numpy(img.detach() if isinstance(img, torch.Tensor) else img, dtype=np.float32)
    finite = arr[np.isfinite(arr)]
    if finite.size == 0:
        return np.zeros(arr.shape, dtype=bool)
    low = float(finite.min())
    high = float(np.percentile(finite, robust_pct)) if fraction > 0 else low
    return np.isfinite(arr) & (arr > low + fraction * (high - low))
