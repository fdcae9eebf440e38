"""Small Ignite handlers that MONAI does not have: crash-safe resumable checkpoints, best-model saving that
survives a resume, pretrained-weight loading with one-line errors, and per-epoch dataset updates.

Saving and restoring the trainer's own state (epoch, iteration) next to the networks would make
a bundle config refer to the trainer from inside the trainer's handler list, a circular
reference; these handlers add the engine they are attached to themselves.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from evaluation.atomic_io import atomic_write_bytes
from pipeline.checkpoint_io import read_checkpoint

TRAINER_KEY = "trainer"
logger = logging.getLogger(__name__)
_TRUE = {"true", "yes", "on", "1", "y", "t"}
_FALSE = {"false", "no", "off", "0", "n", "f", "none", "null", ""}


class TrainingRunError(SystemExit):
    """A training run cannot go on for a reason the user can fix (a missing or mismatched weight file).

    A ``SystemExit`` so that ``python -m monai.bundle run`` ends with this one line and exit status 1
    instead of a traceback; Ignite does not swallow it (it is not an ``Exception``).
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"error: {message}")


def as_bool(value: object, name: str = "value") -> bool:
    """``value`` as a boolean; accepts the strings a command line gives (``false``, ``True``, ``0``, ``yes``)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if value is None:
        return False
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise TrainingRunError(f"{name} must be true or false, got {value!r}")


def _checkpoints(folder: str | os.PathLike) -> list[tuple[int, str]]:
    """(epoch, path) of every ``*checkpoint*_epoch=N.pt`` in ``folder``, oldest first."""
    found = []
    for path in Path(folder).glob("*checkpoint*_epoch=*.pt"):
        match = re.search(r"_epoch=(\d+)\.pt$", path.name)
        if match:
            found.append((int(match.group(1)), str(path)))
    return sorted(found)


def latest_checkpoint(folder: str | os.PathLike) -> str | None:
    """The ``*checkpoint*_epoch=N.pt`` of highest N in ``folder``, or None (readable or not)."""
    found = _checkpoints(folder)
    return found[-1][1] if found else None


def resumes(folder: str | os.PathLike, resume: object) -> bool:
    """Whether a run with this ``resume`` setting continues from a checkpoint of ``folder``."""
    return as_bool(resume, "resume") and latest_checkpoint(folder) is not None


def _first_line(exc: BaseException, limit: int = 200) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    line = line if len(line) <= limit else line[:limit] + "..."
    return f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _present(objects: dict) -> dict:
    return {k: v for k, v in objects.items() if v is not None}


def _unwrapped(obj: object) -> object:
    """The module inside a (Distributed)DataParallel wrapper, so saved keys carry no ``module.`` prefix."""
    parallel = (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)
    return obj.module if isinstance(obj, parallel) else obj


def _state_bytes(objects: dict | torch.nn.Module) -> bytes:
    buffer = io.BytesIO()
    if isinstance(objects, dict):
        torch.save({key: _unwrapped(obj).state_dict() for key, obj in objects.items()}, buffer)
    else:
        torch.save(_unwrapped(objects).state_dict(), buffer)
    return buffer.getvalue()


class TrainingCheckpointSaver:
    """Saves the full training state every ``save_interval`` epochs: the given objects plus the trainer.

    ``None`` entries (e.g. no discriminator in a supervised-only variant) are left out.  Each
    ``checkpoint_epoch=N.pt`` is written atomically (temp file, fsync, rename) and only then are older
    checkpoints removed, so a run killed at any moment leaves at least one complete checkpoint.  The
    newest ``n_saved`` are kept; checkpoints of later epochs than the one just saved (left by a run that
    resumed from an older checkpoint because the newest was corrupt) are removed.
    """

    def __init__(self, save_dir: str, save_dict: dict, save_interval: int = 1, n_saved: int = 1) -> None:
        if int(n_saved) < 1:
            raise ValueError(f"n_saved must be at least 1, got {n_saved}")
        self.save_dir, self.objects = Path(save_dir), _present(save_dict)
        self.save_interval, self.n_saved = int(save_interval), int(n_saved)

    def attach(self, engine: Engine) -> None:
        self.objects[TRAINER_KEY] = engine
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self)

    def __call__(self, engine: Engine) -> None:
        epoch = engine.state.epoch
        path = self.save_dir / f"checkpoint_epoch={epoch}.pt"
        atomic_write_bytes(path, _state_bytes(self.objects))
        found = _checkpoints(self.save_dir)
        keep = {p for e, p in [item for item in found if item[0] <= epoch][-self.n_saved:]}
        for _, stale in found:
            if stale not in keep:
                Path(stale).unlink(missing_ok=True)


class ResumeCheckpointLoader:
    """Restores the newest readable ``checkpoint_epoch=N.pt`` of ``folder`` (objects and trainer) at start.

    A checkpoint that cannot be read (truncated by a crash, corrupted) is named in a warning and the one
    before it is tried.  Nothing to resume from is not an error: training starts from scratch, and says
    so.  A checkpoint that does not fit the networks (another width) ends the run with one line.
    ``enabled`` takes booleans and the strings a command line gives (``--resume false``).  Checkpoints
    are read with ``weights_only=True``.
    """

    def __init__(self, folder: str, load_dict: dict, map_location: str | torch.device | None = None,
                 enabled: bool | str = True) -> None:
        self.folder, self.objects, self.map_location = folder, _present(load_dict), map_location
        self.enabled = as_bool(enabled, "resume")
        self.loaded_path: str | None = None

    def attach(self, engine: Engine) -> None:
        self.objects[TRAINER_KEY] = engine
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if not self.enabled:
            logger.info("resume disabled: training from scratch in %s", self.folder)
            return
        for _, path in reversed(_checkpoints(self.folder)):
            try:
                checkpoint = read_checkpoint(path, self.map_location)
            except ValueError as exc:
                logger.warning("skipping checkpoint %s", exc)
                continue
            if not isinstance(checkpoint, dict):
                logger.warning("skipping checkpoint %s: it holds a %s, not a dict of state dicts", path,
                               type(checkpoint).__name__)
                continue
            missing = sorted(set(self.objects) - set(checkpoint))
            if missing:
                logger.warning("skipping checkpoint %s: it has no %s", path, ", ".join(missing))
                continue
            max_epochs = engine.state.max_epochs  # this run's length, not the checkpointed run's
            try:
                Checkpoint.load_objects(to_load=self.objects, checkpoint=checkpoint)
            except (RuntimeError, KeyError, ValueError) as exc:
                raise TrainingRunError(f"checkpoint {path} does not fit this run's networks or optimizers "
                                       f"({_first_line(exc)}); use another --output_dir or --resume false") from None
            if max_epochs is not None:
                if engine.state.epoch > max_epochs:
                    raise TrainingRunError(f"checkpoint {path} is at epoch {engine.state.epoch}, beyond this run's "
                                           f"{max_epochs} epochs; raise --num_epochs or use --resume false")
                engine.state.max_epochs = max_epochs
            self.loaded_path = path
            logger.info("resumed from %s (epoch %d)", path, engine.state.epoch)
            return
        logger.info("no readable checkpoint to resume from in %s: training from scratch", self.folder)


def load_weights(network: torch.nn.Module, path: str | os.PathLike, map_location: str | torch.device | None = None,
                 key: str | None = None) -> None:
    """Load a state dict file (or entry ``key`` of a checkpoint) into ``network``; one clear line on failure."""
    if not os.path.isfile(path):
        raise TrainingRunError(f"weight file {path} does not exist")
    try:
        state = read_checkpoint(path, map_location)
    except ValueError as exc:
        raise TrainingRunError(str(exc)) from None
    if not isinstance(state, dict):
        raise TrainingRunError(f"{path} holds a {type(state).__name__}, not a state dict")
    if key is not None and key in state and isinstance(state[key], dict):
        state = state[key]
    try:
        _unwrapped(network).load_state_dict(state)
    except RuntimeError as exc:
        raise TrainingRunError(f"weights in {path} do not fit the network ({_first_line(exc)}); "
                               "check --features and --variant") from None


class PretrainedWeightsLoader:
    """Loads ``path`` into ``network`` when training starts, unless the run resumed (or ``path`` is None).

    Accepts a state dict, or a training checkpoint whose ``key`` entry is one.
    """

    def __init__(self, network: torch.nn.Module, path: str | os.PathLike | None, key: str = "generator",
                 map_location: str | torch.device | None = None) -> None:
        self.network, self.path, self.key, self.map_location = network, path, key, map_location

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if self.path is None:
            return
        if engine.state.epoch > 0:
            logger.info("resumed at epoch %d: pretrained weights %s not reloaded", engine.state.epoch, self.path)
            return
        load_weights(self.network, self.path, self.map_location, self.key)
        logger.info("pretrained weights loaded from %s", self.path)


class BestModelSaver:
    """Attached to a validator: saves ``network``'s state dict (atomically) to ``model_path`` whenever
    ``metric_name`` beats the best so far.  Put it in the training checkpoint (``state_dict``) so that a
    resumed run keeps the best score and does not replace a better ``model_path`` with a worse one."""

    def __init__(self, network: torch.nn.Module, model_path: str | os.PathLike,
                 metric_name: str = "val_mean_dice") -> None:
        self.network, self.model_path, self.metric_name = network, Path(model_path), metric_name
        self.best = -math.inf

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"best": torch.tensor(self.best, dtype=torch.float64)}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])

    def __call__(self, engine: Engine) -> None:
        score = float(engine.state.metrics[self.metric_name])
        if math.isnan(score) or score <= self.best:
            logger.info("%s %.4f (best %.4f): %s kept", self.metric_name, score, self.best, self.model_path)
            return
        self.best = score
        atomic_write_bytes(self.model_path, _state_bytes(self.network))
        logger.info("new best %s %.4f: saved %s", self.metric_name, score, self.model_path)


class FinalModelFallback:
    """When training completes without any ``model_path`` (no validation ran, e.g. fewer epochs than
    ``val_interval``), saves the last weights there and says so, so a run never ends without a model."""

    def __init__(self, network: torch.nn.Module, model_path: str | os.PathLike) -> None:
        self.network, self.model_path = network, Path(model_path)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if self.model_path.is_file():
            return
        atomic_write_bytes(self.model_path, _state_bytes(self.network))
        logger.warning("no validation ran in %d epoch(s): %s holds the last epoch's weights, not a validated "
                       "best (set --val_interval at most --num_epochs to select on validation)",
                       engine.state.epoch, self.model_path)


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


def _writes_files_or_logs(handler: object) -> bool:
    from ignite.handlers import ProgressBar
    from monai.handlers import CheckpointSaver, StatsHandler, TensorBoardStatsHandler

    return isinstance(handler, (CheckpointSaver, StatsHandler, TensorBoardStatsHandler, ProgressBar,
                                TrainingCheckpointSaver, BestModelSaver, FinalModelFallback))


def handlers_for_rank(handlers: Sequence, is_rank0: bool) -> list:
    """``handlers`` for one process of a distributed run: off rank 0, those that write checkpoints, models,
    logs or progress bars are left out (rank 0 writes them once)."""
    return [h for h in handlers if is_rank0 or not _writes_files_or_logs(h)]
