"""Slice-level training samples drawn from preprocessed 3D volumes.

The paper trains on batches of two 2D slices. A volume-level dataset whose transform returns
a list of slices would put all slices of a volume into one batch; :class:`SliceDataset`
instead makes every selected slice its own sample, so ``batch_size`` counts slices and the
loader shuffles slices across patients. The preprocessed volumes can come from a
``CacheDataset`` (preprocessing runs once), the slice selection is redrawn every epoch
(``set_epoch``), and augmentation runs per slice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from monai.transforms import apply_transform
from torch.utils.data import Dataset

from transforms import AxialSlicesd


class SliceDataset(Dataset):
    """Every slice chosen by ``slicer`` from every volume of ``volumes``, then ``transform`` per slice."""

    def __init__(self, volumes: Sequence[dict] | Dataset, slicer: AxialSlicesd, transform: Callable | None = None,
                 seed: int = 0, allow_empty: bool = False) -> None:
        self.volumes, self.slicer, self.transform, self.seed = volumes, slicer, transform, seed
        self.allow_empty = allow_empty
        self._slices: list[dict] = []
        self.set_epoch(0)

    def set_epoch(self, epoch: int) -> None:
        """Redraw the slice selection (deterministic from ``seed`` and ``epoch``)."""
        self.slicer.set_random_state(seed=(self.seed * 100_003 + epoch) % (2**32))
        self._slices = [s for index in range(len(self.volumes)) for s in self.slicer(self.volumes[index])]
        if not self._slices and not self.allow_empty:
            raise ValueError("the slice policy selected no slice from any training volume")

    def __len__(self) -> int:
        return len(self._slices)

    def __getitem__(self, index: int) -> dict:
        item = dict(self._slices[index])
        return apply_transform(self.transform, item) if self.transform is not None else item
