"""3D volume -> list of 2D axial slice dicts, with a lesion-aware selection policy."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Randomizable
from monai.transforms.traits import MultiSampleTrait
from monai.utils import convert_to_numpy

__all__ = ["AxialSlicesd", "SLICE_POLICIES", "lesion_slices"]

SlicePolicy = Literal["all", "lesion", "lesion+background"]
SLICE_POLICIES: tuple[str, ...] = ("all", "lesion", "lesion+background")


def lesion_slices(label: Any) -> np.ndarray:
    """Boolean vector over the last axis of a channel-first label: True where the slice has foreground."""
    arr = convert_to_numpy(label.detach() if isinstance(label, torch.Tensor) else label)
    return (arr.reshape(-1, arr.shape[-1]) > 0).any(axis=0)


def _take_slice(img: Any, index: int) -> Any:
    """Slice ``index`` of the last axis as an independent (copied) array; a MetaTensor gets the matching 2D
    affine (in-plane rows/columns, origin moved to the slice) and no trace of the 3D transforms."""
    if not isinstance(img, torch.Tensor):
        return np.ascontiguousarray(np.asarray(img)[..., index])
    data = img.as_tensor()[..., index].clone() if isinstance(img, MetaTensor) else img[..., index].clone()
    if not isinstance(img, MetaTensor):
        return data
    affine = img.affine.clone().to(torch.float64)
    affine[:-1, -1] += affine[:-1, -2] * index
    keep = [i for i in range(affine.shape[0]) if i != affine.shape[0] - 2]
    meta = {k: v for k, v in img.meta.items() if k not in ("affine", "spatial_shape")}
    meta["spatial_shape"] = np.asarray(data.shape[1:])
    return MetaTensor(data, affine=affine[keep][:, keep], meta=meta)


class AxialSlicesd(Randomizable, MapTransform, MultiSampleTrait):
    """Turn a ``(C, H, W, D)`` volume dict into a list of ``(C, H, W)`` slice dicts (axial = last axis).

    Policies: ``"all"`` slices; ``"lesion"`` slices whose label has foreground; ``"lesion+background"``
    the lesion slices plus ``max(round(background_ratio * n_lesion), min_background)`` lesion-free slices
    drawn at random (without replacement, capped at what exists). Without a label every slice is returned.
    Each slice dict holds the sliced ``keys``, the ``copy_keys`` present in the input, and the slice index
    under ``slice_key``; slices come in increasing index order. Returns a list, which MONAI's
    ``Compose``/``Dataset`` map the following transforms over and ``list_data_collate`` flattens.
    Deterministic under ``set_random_state``.
    """

    def __init__(
        self,
        keys: KeysCollection = ("image", "label"),
        label_key: str = "label",
        policy: SlicePolicy = "all",
        background_ratio: float = 1.0,
        min_background: int = 1,
        copy_keys: Sequence[str] = ("patient_id", "center", "sequence", "h3k27m"),
        slice_key: str = "slice_index",
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if policy not in SLICE_POLICIES:
            raise ValueError(f"policy must be one of {SLICE_POLICIES}, got {policy!r}")
        if background_ratio < 0 or min_background < 0:
            raise ValueError("background_ratio and min_background must be >= 0")
        self.label_key = label_key
        self.policy = policy
        self.background_ratio = background_ratio
        self.min_background = min_background
        self.copy_keys = tuple(copy_keys)
        self.slice_key = slice_key
        self._indices: np.ndarray = np.zeros(0, dtype=np.int64)

    def randomize(self, has_lesion: np.ndarray) -> None:
        """Choose the slice indices from the per-slice lesion flags."""
        if self.policy == "all":
            self._indices = np.arange(len(has_lesion))
            return
        lesion = np.flatnonzero(has_lesion)
        if self.policy == "lesion":
            self._indices = lesion
            return
        background = np.flatnonzero(~has_lesion)
        n_bg = min(max(int(round(self.background_ratio * len(lesion))), self.min_background), len(background))
        chosen = self.R.choice(background, size=n_bg, replace=False) if n_bg else background[:0]
        self._indices = np.sort(np.concatenate([lesion, chosen]).astype(np.int64))

    def __call__(self, data: Mapping[Hashable, Any]) -> list[dict[Hashable, Any]]:
        d = dict(data)
        present = list(self.key_iterator(d))
        if not present:
            raise KeyError(f"none of the keys {self.keys} is in the data")
        depth = int(d[present[0]].shape[-1])
        if self.policy != "all" and self.label_key in d and self.label_key in self.keys:
            self.randomize(lesion_slices(d[self.label_key]))
        else:  # every slice: policy "all", or no (loaded) label to select by
            self._indices = np.arange(depth)
        out = []
        for index in self._indices.tolist():
            item: dict[Hashable, Any] = {key: _take_slice(d[key], index) for key in present}
            item.update({key: d[key] for key in self.copy_keys if key in d})
            item[self.slice_key] = index
            out.append(item)
        return out
