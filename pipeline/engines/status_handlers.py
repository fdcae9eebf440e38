"""Ignite handler of the H3K27M co-training that loads a pretrained encoder (validation: :mod:`.status_validation`)."""

from __future__ import annotations

import logging
import os

import torch
from ignite.engine import Engine, Events

from pipeline.checkpoint_io import read_checkpoint
from pipeline.engines.masked_pretraining import load_pretrained_encoder

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
