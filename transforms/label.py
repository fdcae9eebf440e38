"""Label binarisation: multi-class reference masks (e.g. BraTS) to a {0, 1} target."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.transforms import MapTransform, Transform
from monai.utils import TransformBackends, convert_to_tensor

__all__ = ["BinarizeLabel", "BinarizeLabeld", "parse_label_classes"]


def parse_label_classes(classes: Any) -> list[float] | None:
    """Normalise a ``label_classes`` value (list, tuple, int, tensor or "1,2,4" string) to a list or None."""
    if classes is None:
        return None
    if isinstance(classes, str):
        items = [c for c in classes.replace(";", ",").replace(" ", ",").split(",") if c.strip()]
        return [float(c) for c in items] or None
    if isinstance(classes, (torch.Tensor, np.ndarray)):
        return [float(c) for c in np.asarray(classes).reshape(-1)] or None
    if isinstance(classes, (int, float)):
        return [float(classes)]
    return [float(c) for c in classes] or None


class BinarizeLabel(Transform):
    """Map a label to {0, 1}: foreground = value in ``classes`` (default: ``> 0``). Keeps type, meta and shape."""

    backend = [TransformBackends.TORCH]

    def __init__(self, classes: Sequence[float] | None = None) -> None:
        self.classes = parse_label_classes(classes)

    def __call__(self, label: NdarrayOrTensor, classes: Sequence[float] | None = None) -> torch.Tensor:
        """Binarise ``label``; ``classes`` overrides the constructor value for this call."""
        fg_classes = parse_label_classes(classes) if classes is not None else self.classes
        lbl = convert_to_tensor(label, track_meta=True)
        if fg_classes is None:
            fg = lbl > 0
        else:
            fg = torch.isin(lbl, torch.as_tensor(fg_classes, dtype=lbl.dtype, device=lbl.device))
        return fg.to(torch.float32)


class BinarizeLabeld(MapTransform):
    """Dictionary wrapper of :class:`BinarizeLabel` reading the classes from ``data[classes_key]`` when present."""

    def __init__(
        self,
        keys: KeysCollection = "label",
        classes_key: str = "label_classes",
        classes: Sequence[float] | None = None,
        allow_missing_keys: bool = True,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.classes_key = classes_key
        self.binarize = BinarizeLabel(classes)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        classes = d.get(self.classes_key)
        for key in self.key_iterator(d):
            d[key] = self.binarize(d[key], classes=classes)
        return d
