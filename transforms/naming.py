"""Prediction file naming: ``<patient_id>_<sequence>_seg.nii.gz`` via MONAI's ``SaveImaged``."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.data.folder_layout import default_name_formatter
from monai.transforms import MapTransform, Transform

__all__ = ["CopyToMetad", "prediction_name_formatter"]


class CopyToMetad(MapTransform):
    """Copy the dict entries ``source_keys`` (e.g. patient_id, sequence) into the meta of each MetaTensor key."""

    def __init__(
        self,
        keys: KeysCollection,
        source_keys: Sequence[str] = ("patient_id", "sequence"),
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.source_keys = tuple(source_keys)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            if isinstance(d[key], MetaTensor):
                d[key].meta.update({k: d[k] for k in self.source_keys if k in d})
        return d


def prediction_name_formatter(metadict: dict, saver: Transform) -> dict:
    """``SaveImage`` name formatter: subject ``<patient_id>_<sequence>`` when both are in the meta, else
    MONAI's default (the input file name)."""
    if metadict and metadict.get("patient_id") is not None and metadict.get("sequence") is not None:
        return {"subject": f"{metadict['patient_id']}_{metadict['sequence']}", "idx": None}
    return default_name_formatter(metadict, saver)
