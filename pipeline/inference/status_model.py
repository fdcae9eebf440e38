"""A trained H3K27M status bundle, ready to predict patients: network, slice size, temperature and threshold.

:func:`load_status_model` reads the bundle's own ``configs/inference.json`` with MONAI's ``ConfigParser``,
after the same allow-list check as ``dmg segment`` (:func:`pipeline.bundle_trust.trust.require_safe_bundle`:
nothing is instantiated from a config that would run code, unless ``trust_bundle``). It uses these top-level
keys: ``network_def``, ``model_file``, ``spatial_size``, ``sequence``, and when present ``temperature``
(default 1.0), ``threshold`` (0.5), ``sw_batch_size`` (16), ``min_tumour_pixels`` (20), ``extra_sequences``
(none: the other sequences read as input channels, resampled onto ``sequence``'s grid) and
``center_crop_fraction`` (1.0: the central part of the head box the model sees).

The weights: ``model_file`` given (a state dict, a TorchScript archive, or an ``.onnx`` file), else the
config's ``model_file``, else a TorchScript file of the same name with ``.ts``; without any,
:class:`NoStatusWeightsError`. ``runtime`` chooses ONNX
Runtime or PyTorch exactly as for segmentation (:mod:`pipeline.inference.runtime_choice`: ``auto`` runs a
current ``.onnx`` export beside the ``.pt`` on CPU).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser

from pipeline.checkpoint_io import INFERENCE_CONFIG, ModelKind, load_state_dict, model_file_kind
from pipeline.inference.model import KIND_NAMES, apply_overrides, resolve_device
from pipeline.inference.onnx_runtime import OnnxNetwork
from pipeline.inference.runtime_choice import choose_onnx_file
from transforms.vocabulary import SEQUENCES

__all__ = ["NoStatusWeightsError", "StatusModel", "load_status_model"]


@dataclass
class StatusModel:
    """An H3K27M network (PyTorch, TorchScript or ONNX Runtime) with the bundle's inference settings."""

    network: Any
    sequence: str
    spatial_size: int
    temperature: float
    threshold: float
    sw_batch_size: int
    min_tumour_pixels: int
    model_file: Path
    kind: ModelKind
    device: torch.device
    extra_sequences: tuple[str, ...] = ()
    center_crop_fraction: float = 1.0

    def describe(self) -> str:
        return (f"{self.model_file} ({KIND_NAMES[self.kind]}, {'+'.join(self.reads)}, {self.device}; temperature "
                f"{self.temperature:g}, threshold {self.threshold:g})")

    @property
    def reads(self) -> tuple[str, ...]:
        """The sequences the model reads, one input channel each."""
        return (self.sequence, *self.extra_sequences)


def _read_config(bundle: Path, sequence: str | None, overrides: Mapping[str, Any] | None) -> ConfigParser:
    config_file = bundle / INFERENCE_CONFIG
    if not config_file.is_file():
        raise FileNotFoundError(f"bundle config {config_file} does not exist")
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser.update({"bundle_root": str(bundle)})
    if sequence is not None:
        parser.update({"sequence": sequence})
    apply_overrides(parser, overrides, config_file)
    for key in ("network_def", "model_file", "spatial_size"):
        if key not in parser:
            raise ValueError(f"{config_file} has no {key!r}: not an H3K27M status bundle")
    return parser


def _setting(parser: ConfigParser, key: str, default: Any, kind: type) -> Any:
    value = parser.get_parsed_content(key) if key in parser else default
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise ValueError(f"{INFERENCE_CONFIG}: {key} must be a {kind.__name__}, got {value!r}") from None


def _extra_sequences(parser: ConfigParser) -> tuple[str, ...]:
    value = parser.get_parsed_content("extra_sequences") if "extra_sequences" in parser else ()
    if isinstance(value, str) or not all(s in SEQUENCES for s in value):
        raise ValueError(f"{INFERENCE_CONFIG}: extra_sequences must be a list of {', '.join(SEQUENCES)}, "
                         f"got {value!r}")
    return tuple(value)


class NoStatusWeightsError(FileNotFoundError):
    """The bundle has no trained weights (``dmg demo`` skips its status part on this one)."""


def _weights_file(parser: ConfigParser, model_file: str | os.PathLike | None) -> Path | None:
    """``model_file``, else the config's ``model_file``, else its ``.ts`` twin; ``None`` when none exists."""
    if model_file is not None:
        path = Path(model_file)
        if not path.is_file():
            raise FileNotFoundError(f"model file {path} does not exist")
        return path
    default = Path(parser.get_parsed_content("model_file"))
    for path in (default, default.with_suffix(".ts")):
        if path.is_file():
            return path
    return None


def load_status_model(
    bundle_dir: str | os.PathLike,
    sequence: str | None = None,
    model_file: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    overrides: Mapping[str, Any] | None = None,
    runtime: str = "auto",
    trust_bundle: bool = False,
) -> StatusModel:
    """Build a :class:`StatusModel` from ``BUNDLE/configs/inference.json`` (see the module docstring).

    ``sequence``: the MRI sequence to read (default: the bundle's ``sequence``); ``overrides`` set config ids
    as ``monai.bundle run --key value`` would. The bundle is checked first and refused (one line naming the
    file, key and expression) when a config holds code outside the allow-list, unless ``trust_bundle``."""
    from pipeline.bundle_trust.trust import activate_bundle_code, require_safe_bundle

    bundle = Path(bundle_dir)
    if not bundle.is_dir():
        raise FileNotFoundError(f"bundle folder {bundle} does not exist")
    if not (bundle / INFERENCE_CONFIG).is_file():
        raise FileNotFoundError(f"bundle config {bundle / INFERENCE_CONFIG} does not exist")
    require_safe_bundle(bundle, trust=trust_bundle)
    activate_bundle_code(bundle)  # its scripts/ importable, as for monai.bundle run in the bundle folder
    parser = _read_config(bundle, sequence, overrides)
    path = _weights_file(parser, model_file)
    if path is None:
        raise NoStatusWeightsError(f"bundle {bundle} has no trained H3K27M weights: "
                                f"{parser.get_parsed_content('model_file')} does not exist "
                                "(dmg bundle ship puts trained weights there; dmg status also takes --model FILE)")
    dev = resolve_device(device)
    kind = model_file_kind(path)
    onnx_file = choose_onnx_file(runtime, path, parser, dev, torchscript=kind == "torchscript")
    if onnx_file is not None:
        kind, path, network = "onnx", onnx_file, OnnxNetwork(onnx_file, dev)
    elif kind == "torchscript":
        try:
            network = torch.jit.load(str(path), map_location=dev)
        except Exception as exc:
            raise ValueError(f"{path}: cannot load the TorchScript model ({type(exc).__name__}: {exc})") from exc
    else:
        state_dict = load_state_dict(path, map_location=dev)
        network = parser.get_parsed_content("network_def")
        try:
            network.load_state_dict(state_dict)
        except RuntimeError as exc:
            width = {k: parser[k] for k in ("config_name", "base_width", "spatial_size", "ensemble_size")
                     if k in parser}
            first = " ".join(str(exc).splitlines()[:2])[:300]
            raise ValueError(f"{path}: the weights do not fit the bundle's network_def {width} ({first}); give the "
                             "network it was trained with, e.g. --set base_width=... config_name=... ensemble_size=1"
                             ) from exc
        network = network.to(dev)
    network.eval()
    for param in network.parameters():
        param.requires_grad_(False)
    temperature = _setting(parser, "temperature", 1.0, float)
    threshold = _setting(parser, "threshold", 0.5, float)
    if not (temperature > 0 and temperature < float("inf")):
        raise ValueError(f"{bundle / INFERENCE_CONFIG}: temperature must be a finite number > 0, got {temperature}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"{bundle / INFERENCE_CONFIG}: threshold must lie in [0, 1], got {threshold}")
    return StatusModel(
        network=network,
        sequence=str(parser.get_parsed_content("sequence")) if "sequence" in parser else (sequence or "t2"),
        spatial_size=_setting(parser, "spatial_size", None, int),
        temperature=temperature,
        threshold=threshold,
        sw_batch_size=_setting(parser, "sw_batch_size", 16, int),
        min_tumour_pixels=_setting(parser, "min_tumour_pixels", 20, int),
        extra_sequences=_extra_sequences(parser),
        center_crop_fraction=_setting(parser, "center_crop_fraction", 1.0, float),
        model_file=path,
        kind=kind,
        device=dev,
    )
