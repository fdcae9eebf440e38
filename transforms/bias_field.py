"""N4 bias-field correction (Tustison et al., IEEE TMI 2010) with SimpleITK, as a MONAI transform.

The field is estimated on a shrunken copy of the volume inside an Otsu head mask and divided out
of the full-resolution image; the grid, affine and metadata stay as they are, so no inverse is
needed for ``Invertd``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_numpy

__all__ = ["N4BiasFieldCorrection", "N4BiasFieldCorrectiond"]


class N4BiasFieldCorrection(Transform):
    """Divide a channel-first 3D image by its N4-estimated multiplicative bias field, channel by channel.

    Args:
        shrink_factor: the field is fitted on the image shrunk by this factor along every axis (speed).
        iterations: maximum iterations per fitting level (one level per entry).
        convergence: N4's convergence threshold.
    """

    def __init__(self, shrink_factor: int = 4, iterations: Sequence[int] = (25, 25, 15),
                 convergence: float = 1e-3) -> None:
        if int(shrink_factor) < 1:
            raise ValueError(f"shrink_factor must be at least 1, got {shrink_factor}")
        self.shrink_factor = int(shrink_factor)
        self.iterations = [int(i) for i in iterations]
        self.convergence = float(convergence)

    def _correct(self, volume: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
        minimum = float(volume.min())
        shifted = (volume - minimum + 1.0).astype(np.float32)  # N4 works on positive intensities
        image = sitk.GetImageFromArray(shifted.transpose(2, 1, 0))  # (x, y, z) array -> SimpleITK (z, y, x)
        image.SetSpacing([float(s) for s in spacing])
        mask = sitk.OtsuThreshold(image, 0, 1, 200)
        factors = [min(self.shrink_factor, max(1, n // 4)) for n in image.GetSize()]
        small, small_mask = sitk.Shrink(image, factors), sitk.Shrink(mask, factors)
        n4 = sitk.N4BiasFieldCorrectionImageFilter()
        n4.SetMaximumNumberOfIterations(self.iterations)
        n4.SetConvergenceThreshold(self.convergence)
        n4.Execute(small, small_mask)
        log_field = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(image)).transpose(2, 1, 0)
        return (shifted / np.exp(log_field) + minimum - 1.0).astype(np.float32)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        arr = convert_to_numpy(img.detach() if isinstance(img, torch.Tensor) else img, dtype=np.float32)
        if arr.ndim != 4:
            raise ValueError(f"N4 expects a channel-first 3D image, got shape {tuple(arr.shape)}")
        spacing = (img.pixdim.tolist() if isinstance(img, MetaTensor) else [1.0, 1.0, 1.0])[:3]
        out = np.stack([self._correct(channel, spacing) for channel in arr])
        if isinstance(img, torch.Tensor):
            result = torch.as_tensor(out, device=img.device)
            if isinstance(img, MetaTensor):
                result = MetaTensor(result, meta=img.meta, applied_operations=img.applied_operations)
            return result
        return out


class N4BiasFieldCorrectiond(MapTransform):
    """Dictionary wrapper of :class:`N4BiasFieldCorrection`."""

    def __init__(self, keys: KeysCollection, shrink_factor: int = 4, iterations: Sequence[int] = (25, 25, 15),
                 convergence: float = 1e-3, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.corrector = N4BiasFieldCorrection(shrink_factor, iterations, convergence)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.corrector(d[key])
        return d
