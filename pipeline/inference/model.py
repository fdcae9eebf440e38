"""A trained segmentation bundle (or a TorchScript export of it), ready to segment one image at a time.

:func:`load_segmentation_model` reads the bundle's own ``configs/inference.json`` with MONAI's
``ConfigParser`` (plus ``key=value`` overrides, as ``monai.bundle run`` takes them), so the
preprocessing, the ``SliceInferer`` and the threshold are the bundle's. The weights file:

* ``model_file`` given: a PyTorch state dict (``*.pt``, loaded into the config's ``network_def``
  with ``torch.load(weights_only=True)``) or a TorchScript archive (``*.ts``/``*.pt``; recognised by
  its content, not its name), which needs no network code from this package;
* otherwise the config's ``model_file`` (``BUNDLE/models/model_<sequence>.pt``), and if that does
  not exist ``BUNDLE/models/model_<sequence>.ts``.

:meth:`SegmentationModel.segment` maps the predicted mask back onto the input's exact grid with the
shared postprocessing (``transforms.build_postprocessing``: sigmoid, ``Invertd``, threshold).
"""

from __future__ import annotations

import ast
import json
import os
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.inferers import Inferer
from monai.transforms import Compose

from pipeline.data.cohort import SEQUENCES
from transforms import build_postprocessing

__all__ = [
    "INFERENCE_CONFIG",
    "RESERVED_OVERRIDES",
    "SegmentationModel",
    "is_torchscript_file",
    "load_segmentation_model",
    "parse_overrides",
    "resolve_device",
    "resolve_model_file",
]

INFERENCE_CONFIG = Path("configs") / "inference.json"
RESERVED_OVERRIDES = {"bundle_root": "--bundle", "sequence": "--sequence", "model_file": "--model",
                      "device": "--device"}
"""Config keys that have their own argument; overriding them with ``key=value`` is refused."""
ModelKind = Literal["pytorch", "torchscript"]


@dataclass
class SegmentationModel:
    """A network with the bundle's preprocessing, inferer and postprocessing, on one device."""

    network: torch.nn.Module
    preprocessing: Compose
    inferer: Inferer
    postprocessing: Compose
    threshold: float
    sequence: str
    model_file: Path
    kind: ModelKind
    device: torch.device

    def preprocess(self, image_file: str | os.PathLike, **extra: Any) -> dict:
        """Load and preprocess one image (``{"image": (1, H, W, D) MetaTensor, ...}``); raises on a bad image."""
        data = self.preprocessing({"image": str(image_file), "sequence": self.sequence, **extra})
        if not torch.isfinite(data["image"]).all():
            raise ValueError("image contains NaN or infinite values")
        return data

    def predict(self, data: dict) -> tuple[np.ndarray, np.ndarray]:
        """Mask of a :meth:`preprocess`-ed item on the input's original grid: ``(uint8 array, affine)``."""
        with torch.inference_mode():
            image = data["image"].unsqueeze(0).to(self.device)
            logits = self.inferer(image, self.network)
            item = {**data, "pred": logits[0].cpu()}
            mask = self.postprocessing(item)["pred"]
        affine = mask.affine.numpy() if isinstance(mask, MetaTensor) else None
        return np.ascontiguousarray(mask[0].numpy().astype(np.uint8)), affine

    def segment(self, image_file: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`preprocess` then :meth:`predict` one image file."""
        return self.predict(self.preprocess(image_file))

    def describe(self) -> str:
        return f"{self.model_file} ({'TorchScript' if self.kind == 'torchscript' else 'PyTorch state dict'}, " \
               f"{self.sequence}, {self.device})"


def parse_overrides(items: Iterable[str] | None) -> dict[str, Any]:
    """``["features=[4,8,16]", "spatial_size=32", "variant=MSCG"]`` -> dict; values are read as JSON, then
    as a Python literal, else kept as text (``#`` separates nested config ids, as in MONAI bundles)."""
    overrides: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = str(item).partition("=")
        key = key.strip().lstrip("-")
        if not sep or not key:
            raise ValueError(f"override {item!r} is not KEY=VALUE")
        overrides[key] = _parse_value(text.strip())
    return overrides


def _parse_value(text: str) -> Any:
    for parse in (json.loads, ast.literal_eval):
        try:
            return parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
    return text


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` -> CUDA when available, else CPU; a CUDA device that is not there is an error."""
    if device is None or str(device) == "":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {device!r} (expected cpu, cuda or cuda:N)") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but no CUDA device is available")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise ValueError(f"unsupported device {device!r} (expected cpu, cuda or cuda:N)")
    return dev


def is_torchscript_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive (it holds ``code/`` and ``constants.pkl``, a state dict does not)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name or name.endswith("/constants.pkl") for name in archive.namelist())


def resolve_model_file(bundle_dir: str | os.PathLike, sequence: str, model_file: str | os.PathLike | None = None,
                       default: str | os.PathLike | None = None) -> Path:
    """The weights to load: ``model_file`` if given; else ``default`` (the config's ``model_file``,
    normally ``BUNDLE/models/model_<sequence>.pt``); else ``BUNDLE/models/model_<sequence>.ts``."""
    if model_file is not None:
        path = Path(model_file)
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        return path
    models = Path(bundle_dir) / "models"
    candidates = [Path(default) if default is not None else models / f"model_{sequence}.pt",
                  models / f"model_{sequence}.ts"]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"no {sequence} model in the bundle: neither {candidates[0]} nor {candidates[1]} exists "
        "(train one, or pass --model FILE)")


def _state_dict(checkpoint: Any, path: Path) -> Mapping[str, torch.Tensor]:
    """A bare state dict, or the generator of a training checkpoint (``generator``/``model``/``state_dict`` key)."""
    if isinstance(checkpoint, Mapping):
        if checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
            return checkpoint
        for key in ("generator", "model", "network", "state_dict"):
            if isinstance(checkpoint.get(key), Mapping):
                return checkpoint[key]
    raise ValueError(f"{path}: neither a state dict, a training checkpoint with a 'generator' entry, "
                     "nor a TorchScript model")


def load_segmentation_model(
    bundle_dir: str | os.PathLike,
    sequence: str,
    model_file: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SegmentationModel:
    """Build a :class:`SegmentationModel` from ``BUNDLE/configs/inference.json`` (see the module docstring).

    ``overrides`` set config ids as ``monai.bundle run --key value`` would (e.g. ``{"features": [4, 8, 16],
    "spatial_size": 32}``); unknown ids and the ids in :data:`RESERVED_OVERRIDES` are refused.
    """
    if sequence not in SEQUENCES:
        raise ValueError(f"unknown sequence {sequence!r}; expected one of {', '.join(SEQUENCES)}")
    bundle = Path(bundle_dir)
    if not bundle.is_dir():
        raise FileNotFoundError(f"bundle folder {bundle} does not exist")
    config_file = bundle / INFERENCE_CONFIG
    if not config_file.is_file():
        raise FileNotFoundError(f"bundle config {config_file} does not exist")
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser.update({"bundle_root": str(bundle), "sequence": sequence})
    for key, value in (overrides or {}).items():
        if key in RESERVED_OVERRIDES:
            raise ValueError(f"set {key!r} with {RESERVED_OVERRIDES[key]}, not as an override")
        if key not in parser:
            raise ValueError(f"unknown config key {key!r} for {config_file}")
        parser[key] = value
    dev = resolve_device(device)
    default = parser.get_parsed_content("model_file") if "model_file" in parser else None
    path = resolve_model_file(bundle, sequence, model_file, default)

    if is_torchscript_file(path):
        kind: ModelKind = "torchscript"
        try:
            network = torch.jit.load(str(path), map_location=dev)
        except Exception as exc:
            raise ValueError(f"{path}: cannot load the TorchScript model ({type(exc).__name__}: {exc})") from exc
    else:
        kind = "pytorch"
        try:
            checkpoint = torch.load(path, map_location=dev, weights_only=True)
        except Exception as exc:
            raise ValueError(f"{path}: cannot load the weights ({type(exc).__name__}: {_first_line(exc)})") from exc
        network = parser.get_parsed_content("network_def")
        try:
            network.load_state_dict(_state_dict(checkpoint, path))
        except RuntimeError as exc:
            width = {k: parser[k] for k in ("variant", "features") if k in parser}
            raise ValueError(
                f"{path}: the weights do not fit the bundle's network_def {width} ({_first_line(exc, lines=2)}); "
                "give the network it was trained with, e.g. --set features=[...] variant=...") from exc
        network = network.to(dev)
    network.eval()
    for param in network.parameters():
        param.requires_grad_(False)

    preprocessing = parser.get_parsed_content("preprocessing")
    threshold = float(parser.get_parsed_content("threshold"))
    return SegmentationModel(
        network=network,
        preprocessing=preprocessing,
        inferer=parser.get_parsed_content("inferer"),
        postprocessing=build_postprocessing(preprocessing, activation="sigmoid", threshold=threshold),
        threshold=threshold,
        sequence=sequence,
        model_file=path,
        kind=kind,
        device=dev,
    )


def _first_line(exc: BaseException, lines: int = 1, limit: int = 300) -> str:
    text = " ".join(line.strip() for line in str(exc).strip().splitlines()[:lines])
    return (text[:limit] + " ...") if len(text) > limit else (text or type(exc).__name__)
