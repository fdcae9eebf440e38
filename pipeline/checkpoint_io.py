"""Model files of a bundle, read the same way everywhere: which kind a file is, its hash, its state dict.

A neutral module: ``pipeline.inference`` (loading and running a model) and ``pipeline.bundle_sharing``
(packing, verifying, exporting) both import it, and it imports neither, so neither leans on the other's
internals. It needs the standard library and PyTorch only.

* :data:`INFERENCE_CONFIG`: where a bundle keeps the config that builds its network;
* :func:`model_file_kind`: ``"onnx"`` (by suffix), ``"torchscript"`` (a zip holding ``code/`` or
  ``constants.pkl``, whatever its suffix) or ``"pytorch"`` (anything else: a state dict);
* :func:`sha256_file`: the SHA-256 of a file (checksum manifests, ONNX staleness, the segmentation record);
* :func:`read_checkpoint`: the one reader of a weights file, ``torch.load(weights_only=True)`` with a
  ``ValueError`` that names the file (used by inference, bundle packing and the training handlers);
* :func:`load_state_dict`: :func:`read_checkpoint` then :func:`unwrap_state_dict`, a bare state dict or the
  generator of a training checkpoint.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

__all__ = ["CHECKPOINT_NETWORK_KEYS", "INFERENCE_CONFIG", "ModelKind", "is_torchscript_file", "load_state_dict",
           "read_checkpoint",
           "model_file_kind", "sha256_file", "unwrap_state_dict"]

INFERENCE_CONFIG = Path("configs") / "inference.json"
"""A bundle's inference config, relative to the bundle folder (``network_def``, ``model_file``, preprocessing)."""

ModelKind = Literal["pytorch", "torchscript", "onnx"]

CHECKPOINT_NETWORK_KEYS = ("generator", "model", "network", "state_dict")
"""Keys of a training checkpoint that hold the network's state dict, in the order they are tried."""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of the file at ``path`` (read in chunks by ``hashlib.file_digest``)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def is_torchscript_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive (it holds ``code/`` and ``constants.pkl``, a state dict does not)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.endswith("/constants.pkl") for name in archive.namelist())


def model_file_kind(path: str | os.PathLike) -> ModelKind:
    """``"onnx"`` for an ``.onnx`` file, ``"torchscript"`` for a TorchScript archive (by content, so a scripted
    ``model.pt`` counts), else ``"pytorch"``. A corrupt zip counts as ``"pytorch"``: loading it says what is
    wrong."""
    if Path(path).suffix == ".onnx":
        return "onnx"
    try:
        return "torchscript" if is_torchscript_file(path) else "pytorch"
    except (zipfile.BadZipFile, ValueError, OSError):
        return "pytorch"


def unwrap_state_dict(checkpoint: Any, path: str | os.PathLike) -> Mapping[str, torch.Tensor]:
    """A bare state dict as it is, or the network of a training checkpoint (its first
    :data:`CHECKPOINT_NETWORK_KEYS` entry that is a mapping); ``ValueError`` naming ``path`` otherwise."""
    if isinstance(checkpoint, Mapping):
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            return checkpoint
        for key in CHECKPOINT_NETWORK_KEYS:
            if isinstance(checkpoint.get(key), Mapping):
                return checkpoint[key]
    raise ValueError(f"{path}: neither a state dict, a training checkpoint with a 'generator' entry, "
                     "nor a TorchScript model")


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> Any:
    """What ``torch.load(path, weights_only=True)`` gives (a state dict, a training checkpoint's dict of state
    dicts, ...): tensors and containers only, never code to unpickle. Any failure (a missing or truncated file,
    a pickle that ``weights_only`` refuses) as a ``ValueError`` that names the file."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path}: cannot load the weights ({type(exc).__name__}: {_first_line(exc)})") from exc


def load_state_dict(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Mapping[str, torch.Tensor]:
    """The state dict in ``path`` (:func:`read_checkpoint`, then :func:`unwrap_state_dict`); ``ValueError`` naming
    the file when it does not load."""
    return unwrap_state_dict(read_checkpoint(path, map_location), path)


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).strip().splitlines()[:1]).strip()
    return (text[:limit] + " ...") if len(text) > limit else (text or type(exc).__name__)
