"""Small Ignite handlers that MONAI does not have: resumable checkpoints and per-epoch dataset updates.

Saving and restoring the trainer's own state (epoch, iteration) next to the networks would make
a bundle config refer to the trainer from inside the trainer's handler list, a circular
reference; these handlers add the engine they are attached to themselves.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader, CheckpointSaver

TRAINER_KEY = "trainer"
logger = logging.getLogger(__name__)


def _checkpoints(folder: str | os.PathLike) -> list[tuple[int, str]]:
    """(epoch, path) of every ``*checkpoint*_epoch=N.pt`` in ``folder``, oldest first."""
    found = []
    for path in Path(folder).glob("*checkpoint*_epoch=*.pt"):
        match = re.search(r"_epoch=(\d+)\.pt$", path.name)
        if match:
            found.append((int(match.group(1)), str(path)))
    return sorted(found)


def latest_checkpoint(folder: str | os.PathLike) -> str | None:
    """The ``*checkpoint*_epoch=N.pt`` of highest N written by ``CheckpointSaver`` in ``folder``, or None."""
    found = _checkpoints(folder)
    return found[-1][1] if found else None


def _present(objects: dict) -> dict:
    return {k: v for k, v in objects.items() if v is not None}


class TrainingCheckpointSaver(CheckpointSaver):
    """``CheckpointSaver`` of every epoch's full training state: the given objects plus the trainer itself.

    ``None`` entries (e.g. no discriminator in a supervised-only variant) are left out.
    Files are ``checkpoint_epoch=N.pt``; the last ``n_saved`` are kept.
    """

    def __init__(self, save_dir: str, save_dict: dict, save_interval: int = 1, n_saved: int = 1, **kwargs) -> None:
        super().__init__(save_dir=save_dir, save_dict=_present(save_dict), file_prefix="", save_interval=save_interval,
                         epoch_level=True, n_saved=n_saved, **kwargs)
        self._n_saved = n_saved

    def attach(self, engine: Engine) -> None:
        self.save_dict[TRAINER_KEY] = engine  # the Checkpoint objects hold this same dict
        super().attach(engine)

    def interval_completed(self, engine: Engine) -> None:
        """Save, then drop checkpoints beyond the newest ``n_saved`` (also those left by an earlier, resumed run)."""
        super().interval_completed(engine)
        for _, stale in _checkpoints(self.save_dir)[: -self._n_saved]:
            os.remove(stale)


class ResumeCheckpointLoader(CheckpointLoader):
    """Restores the newest ``checkpoint_epoch=N.pt`` of ``folder`` (objects and trainer state) when the run starts.

    Nothing to resume from is not an error: training starts from scratch, and says so.
    Checkpoints are read with ``weights_only=True``.
    """

    def __init__(self, folder: str, load_dict: dict, map_location: str | torch.device | None = None,
                 enabled: bool = True) -> None:
        super().__init__(load_path="", load_dict=_present(load_dict), map_location=map_location)
        self.folder, self.enabled = folder, enabled

    def attach(self, engine: Engine) -> None:
        self.load_dict[TRAINER_KEY] = engine
        super().attach(engine)

    def __call__(self, engine: Engine) -> None:
        path = latest_checkpoint(self.folder) if self.enabled else None
        if path is None:
            logger.info("no checkpoint to resume from in %s: training from scratch", self.folder)
            return
        self.load_path = path
        super().__call__(engine)


def loss_terms(output: dict | list[dict]) -> dict[str, float]:
    """Every scalar ``*loss`` entry of an engine's output as a float, for ``StatsHandler`` /
    ``TensorBoardStatsHandler`` ``output_transform``.

    Accepts the decollated output (a list of per-sample dicts, each carrying the batch's losses, as
    MONAI's trainers produce with ``decollate=True``) or the raw output dict.
    """
    first = output[0] if isinstance(output, list) else output
    return {str(k): float(v) for k, v in first.items()
            if str(k).endswith("loss") and (not isinstance(v, torch.Tensor) or v.numel() == 1)}


class SetEpochHandler:
    """Calls ``set_epoch(epoch)`` on each target when an epoch starts (e.g. :class:`SliceDataset`)."""

    def __init__(self, targets: Sequence | object) -> None:
        self.targets = [t for t in (targets if isinstance(targets, (list, tuple)) else [targets]) if t is not None]

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self)

    def __call__(self, engine: Engine) -> None:
        for target in self.targets:
            target.set_epoch(engine.state.epoch)
