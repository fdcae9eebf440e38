"""Invertible in-plane crop to the head foreground; the slice axis (last spatial axis) is never cropped."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Crop, InvertibleTransform, MapTransform

from .utils import foreground_mask

__all__ = ["InPlaneForegroundCrop", "InPlaneForegroundCropd"]


def _expand_to(start: int, end: int, length: int, size: int) -> tuple[int, int]:
    """Grow ``[start, end)`` symmetrically to ``min(length, size)``, shifted to stay inside ``[0, size)``."""
    target = min(max(length, end - start), size)
    start = start - (target - (end - start)) // 2
    start = min(max(start, 0), size - target)
    return start, start + target


class InPlaneForegroundCrop(Crop):
    """Crop the two in-plane axes (spatial axes 0 and 1) to the bounding box of the foreground over all slices.

    Foreground is ``image > min + threshold * (P99.9 - min)`` (see :func:`transforms.utils.foreground_mask`).
    ``margin`` voxels are added on each side and the box is clipped to the image, so nothing is padded;
    with ``square=True`` the shorter side is grown (inside the image) to the longer one, so a later
    resize to a square grid keeps the aspect ratio. Spatial axes beyond the first two are left whole.
    The crop is traced like MONAI's ``SpatialCrop``; :meth:`inverse` (inherited from ``Crop``) pads back
    with zeros, which ``monai.transforms.Invertd`` uses to restore the input grid.
    """

    def __init__(self, threshold: float = 0.05, margin: int = 8, square: bool = True) -> None:
        super().__init__(lazy=False)
        self.threshold = threshold
        self.margin = margin
        self.square = square

    @property
    def requires_current_data(self) -> bool:
        return True

    def compute_box(self, img: torch.Tensor) -> tuple[list[int], list[int]]:
        """In-plane box ``(start, end)`` (two ints each, end exclusive) for a channel-first image."""
        spatial = list(img.shape[1:])
        if len(spatial) < 2:
            raise ValueError(f"expected a channel-first image with >= 2 spatial dims, got shape {tuple(img.shape)}")
        mask = foreground_mask(img, self.threshold).any(axis=0)  # spatial mask
        plane = mask.reshape(spatial[0], spatial[1], -1).any(axis=-1)
        if not plane.any():
            return [0, 0], spatial[:2]
        starts, ends = [], []
        for axis in (0, 1):
            hits = np.flatnonzero(plane.any(axis=1 - axis))
            starts.append(max(int(hits[0]) - self.margin, 0))
            ends.append(min(int(hits[-1]) + 1 + self.margin, spatial[axis]))
        if self.square:
            side = max(e - s for s, e in zip(starts, ends))
            for axis in (0, 1):
                starts[axis], ends[axis] = _expand_to(starts[axis], ends[axis], side, spatial[axis])
        return starts, ends

    def __call__(  # type: ignore[override]
        self, img: torch.Tensor, box: tuple[list[int], list[int]] | None = None, lazy: bool | None = None
    ) -> torch.Tensor:
        """Crop ``img`` to ``box`` (computed from ``img`` itself when None)."""
        start, end = box if box is not None else self.compute_box(img)
        slices = tuple(slice(int(s), int(e)) for s, e in zip(start, end))
        return super().__call__(img=img, slices=slices, lazy=False)


class InPlaneForegroundCropd(MapTransform, InvertibleTransform):
    """Dictionary wrapper of :class:`InPlaneForegroundCrop`: the box is computed on ``source_key`` and
    applied to every key, so image and label stay aligned. Invertible (``Invertd``)."""

    def __init__(
        self,
        keys: KeysCollection,
        source_key: str = "image",
        threshold: float = 0.05,
        margin: int = 8,
        square: bool = True,
        box_key: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_key = source_key
        self.box_key = box_key
        self.cropper = InPlaneForegroundCrop(threshold=threshold, margin=margin, square=square)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        box = self.cropper.compute_box(d[self.source_key])
        if self.box_key is not None:
            d[self.box_key] = np.asarray(box, dtype=np.int64)  # [[start0, start1], [end0, end1]]
        for key in self.key_iterator(d):
            d[key] = self.cropper(d[key], box=box)
        return d

    def inverse(self, data: Mapping[Hashable, MetaTensor]) -> dict[Hashable, MetaTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.cropper.inverse(d[key])
        return d
