"""Ignite handlers of the H3K27M co-training: pretrained-encoder loading and patient-level validation."""

from __future__ import annotations

import io
import logging
import math
import os

import torch
from ignite.engine import Engine, Events

from evaluation.atomic_io import atomic_write_bytes
from pipeline.checkpoint_io import read_checkpoint
from pipeline.engines.masked_pretraining import load_pretrained_encoder
from pipeline.inference.status import evaluate_status_model, status_summary

logger = logging.getLogger(__name__)
ENCODER_PREFIX = "encoder."


def load_pretrained_encoder_file(net: torch.nn.Module, path: str | os.PathLike):
    """Copy the encoder of a pretraining checkpoint (an ``InpaintingModel`` state dict, or an encoder state
    dict) into ``net``; read with ``weights_only=True``. Returns the :class:`EncoderTransfer` report."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"pretrained encoder file {path} does not exist")
    state = read_checkpoint(path)
    if any(k.startswith(ENCODER_PREFIX) for k in state):
        state = {k[len(ENCODER_PREFIX):]: v for k, v in state.items() if k.startswith(ENCODER_PREFIX)}
    return load_pretrained_encoder(net, state)


class PretrainedEncoderLoader:
    """Loads the pretrained encoder into ``network`` when training starts (skipped with ``path=None``)."""

    def __init__(self, network: torch.nn.Module, path: str | os.PathLike | None) -> None:
        self.network, self.path = network, path

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Engine) -> None:
        if self.path is None:
            return
        if engine.state.epoch > 0:  # resumed from a checkpoint: the encoder is already trained further
            logger.info("resumed at epoch %d: pretrained encoder not reloaded", engine.state.epoch)
            return
        report = load_pretrained_encoder_file(self.network, self.path)
        logger.info("pretrained encoder from %s: %s", self.path, report.summary())


class StatusValidationHandler:
    """Every ``interval`` epochs: patient-level validation (AUROC, accuracy, sensitivity, specificity,
    AUPRC, Dice of the mask branch) into ``engine.state.metrics`` as ``val_*``; the network with the best
    ``val_<key_metric>`` is saved (state dict, atomically) to ``model_path``. Put it in the training
    checkpoint (``state_dict``/``load_state_dict``) so the best score survives a resume."""

    def __init__(self, network: torch.nn.Module, dataset, model_path: str | os.PathLike, interval: int = 1,
                 key_metric: str = "auroc", sw_batch_size: int = 16, min_tumour_pixels: int = 20) -> None:
        self.network, self.dataset, self.model_path = network, dataset, str(model_path)
        self.interval, self.key_metric = interval, key_metric
        self.sw_batch_size, self.min_tumour_pixels = sw_batch_size, min_tumour_pixels
        self.best = -math.inf

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.interval), self)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The best score so far: in the training checkpoint, so that a resumed run does not overwrite a
        better ``model_path`` with its first validation."""
        return {"best": torch.tensor(self.best, dtype=torch.float64)}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])

    def __call__(self, engine: Engine) -> None:
        table, _ = evaluate_status_model(self.network, self.dataset, self.sw_batch_size, self.min_tumour_pixels)
        metrics = status_summary(table)
        engine.state.metrics.update({f"val_{k}": v for k, v in metrics.items()})
        score = metrics[self.key_metric]
        logger.info("epoch %d validation: %s", engine.state.epoch,
                    ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
        if not math.isnan(score) and score > self.best:
            self.best = score
            buffer = io.BytesIO()
            torch.save(self.network.state_dict(), buffer)
            atomic_write_bytes(self.model_path, buffer.getvalue())
            logger.info("new best val_%s %.4f: saved %s", self.key_metric, score, self.model_path)
