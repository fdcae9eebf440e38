"""Per-volume robust intensity normalisation to [0, 1] by foreground percentiles."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_numpy, convert_to_tensor

from .utils import foreground_mask

__all__ = ["PercentileNormalize", "PercentileNormalized"]


class PercentileNormalize(Transform):
    """Clip to the ``[lower, upper]`` percentiles of the foreground voxels and rescale to exactly [0, 1].

    Percentiles are taken over the foreground (``foreground_threshold``: see
    :func:`transforms.utils.foreground_mask`; 0.0 = voxels above the minimum, i.e. nonzero voxels of a
    zero-background MRI; None = all voxels), so a large empty background does not shift them. The map is
    invariant to a global intensity scale. MONAI's ``ScaleIntensityRangePercentiles`` has no foreground
    option, hence this transform. A constant image maps to zeros.
    """

    backend = [TransformBackends.TORCH]

    def __init__(
        self,
        lower: float = 0.5,
        upper: float = 99.5,
        foreground_threshold: float | None = 0.0,
        channel_wise: bool = True,
    ) -> None:
        if not 0.0 <= lower < upper <= 100.0:
            raise ValueError(f"need 0 <= lower < upper <= 100, got lower={lower}, upper={upper}")
        self.lower = lower
        self.upper = upper
        self.foreground_threshold = foreground_threshold
        self.channel_wise = channel_wise

    def percentiles(self, img: NdarrayOrTensor) -> tuple[float, float]:
        """``(low, high)`` intensities of the configured percentiles over the foreground of ``img``."""
        arr = convert_to_numpy(img.detach() if isinstance(img, torch.Tensor) else img, dtype=np.float32)
        if self.foreground_threshold is None:
            values = arr[np.isfinite(arr)]
        else:
            values = arr[foreground_mask(arr, self.foreground_threshold)]
            if values.size == 0:
                values = arr[np.isfinite(arr)]
        if values.size == 0:
            return 0.0, 0.0
        low, high = np.percentile(values, [self.lower, self.upper])
        return float(low), float(high)

    def _scale(self, img: torch.Tensor) -> torch.Tensor:
        low, high = self.percentiles(img)
        if not high > low:
            return torch.zeros_like(img)
        return ((img - low) / (high - low)).clamp_(0.0, 1.0)

    def __call__(self, img: NdarrayOrTensor) -> torch.Tensor:
        """Normalise a channel-first image (MetaTensor meta is kept)."""
        img_t = convert_to_tensor(img, dtype=torch.float32, track_meta=True)
        img_t = torch.nan_to_num(img_t, nan=0.0, posinf=0.0, neginf=0.0)
        if not self.channel_wise:
            return self._scale(img_t)
        out = img_t.clone()
        for c in range(img_t.shape[0]):
            out[c] = self._scale(img_t[c].as_tensor() if hasattr(img_t, "as_tensor") else img_t[c])
        return out


class PercentileNormalized(MapTransform):
    """Dictionary wrapper of :class:`PercentileNormalize`."""

    backend = PercentileNormalize.backend

    def __init__(
        self,
        keys: KeysCollection = "image",
        lower: float = 0.5,
        upper: float = 99.5,
        foreground_threshold: float | None = 0.0,
        channel_wise: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.normalize = PercentileNormalize(lower, upper, foreground_threshold, channel_wise)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.normalize(d[key])
        return d
