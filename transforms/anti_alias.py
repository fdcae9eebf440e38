"""The Gaussian smoothing MONAI's ``Resize(anti_aliasing=True)`` applies before shrinking, done per axis and fast.

MONAI's ``resize`` (``monai/transforms/spatial/functional.py``) smooths with ``GaussianSmooth`` whenever an axis
shrinks: sigma per axis ``max(0, (in / out - 1) / 2)`` (skimage's default), an 'erf' kernel truncated at 4 sigma
(``monai.networks.layers.convutils.gaussian_1d``) and ``separable_filtering``: one depthwise ``conv3d`` per
spatial axis with zero padding, even along axes whose sigma is 0 (kernel ``[0, 1, 0]``). On CPU those 3D
convolutions with 1-D kernels dominate preprocessing (about 80 ms each on a 188x188x36 head). Here the same
kernels are applied only along axes with sigma > 0, as a left-to-right sum of shifted, weighted copies (zero
outside the image), the order in which torch's convolution sums the taps along the first spatial axis.

Results: the same values up to float32 rounding of the sums. Along the first spatial axis they are identical to
MONAI's; along the others torch's ``conv3d`` switches, depending on the shape (e.g. 192 or 204 px wide, not 188),
to fused multiply-adds, so a voxel can differ in its last bit (relative 1e-7; after percentile normalisation at
most 2.4e-7 on the held-out T2 volumes). Non-finite voxels stay local here (MONAI's ``[0, 1, 0]`` pass along a
sigma-0 axis turns a neighbour of an infinite or NaN voxel into NaN).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.networks.layers.convutils import gaussian_1d
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_dst_type, convert_to_tensor, fall_back_tuple

__all__ = ["AntiAliasSmooth", "AntiAliasSmoothd", "anti_aliasing_sigma"]


def anti_aliasing_sigma(in_size: Sequence[int], out_size: Sequence[int]) -> list[float]:
    """Per-axis sigma of MONAI's ``resize`` anti-aliasing, computed as it does (float32): ``max(0, (in/out - 1)/2)``
    when some axis shrinks, else all 0 (MONAI then does not smooth at all)."""
    if len(in_size) != len(out_size):
        raise ValueError(f"in_size {tuple(in_size)} and out_size {tuple(out_size)} differ in length")
    if not any(o < i for o, i in zip(out_size, in_size)):
        return [0.0] * len(in_size)
    factors = torch.div(torch.tensor(list(in_size), dtype=torch.float32),
                        torch.tensor(list(out_size), dtype=torch.float32))
    return torch.maximum(torch.zeros(factors.shape), (factors - 1) / 2).tolist()


def _correlate_along(img: torch.Tensor, kernel: torch.Tensor, dim: int) -> torch.Tensor:
    """Zero-padded correlation of ``img`` with the odd 1-D ``kernel`` along ``dim``, taps summed left to right."""
    n, pad = img.shape[dim], (kernel.numel() - 1) // 2
    out = torch.zeros_like(img)
    for tap, weight in enumerate(kernel):
        shift = tap - pad  # out[j] += weight * img[j + shift], where j + shift is inside the image
        lo, hi = max(0, -shift), min(n, n - shift)
        if hi > lo:
            out.narrow(dim, lo, hi - lo).add_(img.narrow(dim, lo + shift, hi - lo) * weight)
    return out


class AntiAliasSmooth(Transform):
    """Smooth a channel-first image exactly as MONAI's ``Resize(spatial_size, anti_aliasing=True)`` does before
    it interpolates; follow it with ``Resize(spatial_size, anti_aliasing=False)``.

    ``spatial_size`` is spelled as for ``Resize`` (``size_mode="all"``): one size per spatial axis, -1 or 0 keeps
    that axis. The output is float32 (what ``Resize`` computes in) with the input's metadata; an image that no
    axis shrinks is returned unchanged. Not invertible and not traced: ``Resize``'s inverse never smooths.
    """

    backend = [TransformBackends.TORCH]

    def __init__(self, spatial_size: Sequence[int], truncated: float = 4.0, approx: str = "erf") -> None:
        self.spatial_size = spatial_size
        self.truncated = truncated
        self.approx = approx

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        in_size = tuple(img.shape[1:])
        if len(self.spatial_size) != len(in_size):
            raise ValueError(f"spatial_size {tuple(self.spatial_size)} does not match the {len(in_size)} spatial "
                             f"axes of an image of shape {tuple(img.shape)}")
        out_size = fall_back_tuple(self.spatial_size, in_size)
        sigma = anti_aliasing_sigma(in_size, out_size)
        if not any(s > 0 for s in sigma):
            return img
        smoothed = convert_to_tensor(img, dtype=torch.float32, track_meta=False)
        for axis, s in enumerate(sigma):
            if s > 0:
                kernel = gaussian_1d(torch.tensor(s, dtype=torch.float32), truncated=self.truncated, approx=self.approx)
                smoothed = _correlate_along(smoothed, kernel.to(smoothed.device), axis + 1)
        out, *_ = convert_to_dst_type(smoothed, dst=img, dtype=torch.float32)
        return out


class AntiAliasSmoothd(MapTransform):
    """Dictionary version of :class:`AntiAliasSmooth` (the same ``spatial_size`` for every key)."""

    backend = AntiAliasSmooth.backend

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int],
        truncated: float = 4.0,
        approx: str = "erf",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.smooth = AntiAliasSmooth(spatial_size, truncated=truncated, approx=approx)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.smooth(d[key])
        return d
