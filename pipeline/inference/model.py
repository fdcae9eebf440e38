"""A trained segmentation bundle (or a TorchScript export of it), ready to segment one image at a time.

:func:`load_segmentation_model` reads the bundle's own ``configs/inference.json`` with MONAI's
``ConfigParser`` (plus ``key=value`` overrides, as ``monai.bundle run`` takes them), so the
preprocessing, the ``SliceInferer`` and the threshold are the bundle's. The weights file:

* ``model_file`` given: a PyTorch state dict (``*.pt``, loaded into the config's ``network_def``
  with ``torch.load(weights_only=True)``) or a TorchScript archive (``*.ts``/``*.pt``; recognised by
  its content, not its name), which needs no network code from this package;
* otherwise the config's ``model_file`` (``BUNDLE/models/model_<sequence>.pt``), and if that does
  not exist ``BUNDLE/models/model_<sequence>.ts``.

``runtime`` (``auto`` by default): ONNX Runtime runs the export ``model_<sequence>.onnx`` beside the
``.pt`` when it is current and ONNX Runtime can run on the device (CPU; CUDA only with
``onnxruntime-gpu``), PyTorch otherwise; ``onnx`` and ``torch`` force one
(:mod:`pipeline.inference.runtime_choice`). An ``.onnx`` ``model_file`` runs with ONNX Runtime.

:meth:`SegmentationModel.segment` maps the predicted mask back onto the input's exact grid with the
shared postprocessing (``transforms.build_postprocessing``: sigmoid, ``Invertd``, threshold).

Speed options of :class:`SegmentationModel` (the defaults are the fastest choice measured on CPU;
``BENCHMARKS.md`` has the numbers):

* ``fast_slices=True``: when the inferer is a 2D ``SliceInferer`` whose ROI is the whole slice (the
  bundle's setting), the axial slices go straight through the network (``slice_batch_size`` at a
  time, under ``torch.inference_mode``) instead of through the sliding-window machinery. With one
  slice per pass (the CPU default; batching 240² slices was ~1.4x slower on CPU) the logits are
  bit-identical to ``SliceInferer``; other batch sizes (the config's ``sw_batch_size`` on CUDA) differ
  by float rounding only. Any other inferer is used as configured.
* ``skip_empty_slices`` (opt-in, default ``False``): slices with no voxel above ``empty_slice_threshold`` (the foreground
  threshold of the preprocessing crop, 0.05 on the [0, 1] scale) contain no head and get logits of
  ``-inf`` (an empty mask) without running the network. This is a rule, not a rounding: it equals
  the plain path only where the model predicts background on a head-free slice (a trained model
  should; an untrained one need not, so it is off by default to keep masks identical to the bundle's
  own ``inference.json`` run).
* ``channels_last`` and ``bf16`` (autocast): off by default; on this project's CPUs both are slower
  (channels_last ~2x for this network; bf16 is emulated without AVX-512/AMX) and bf16 changes logits.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from monai.inferers import Inferer, SliceInferer
from monai.transforms import Compose

from pipeline.checkpoint_io import INFERENCE_CONFIG, ModelKind, load_state_dict, model_file_kind
from pipeline.data.cohort import SEQUENCES
from pipeline.inference.onnx_runtime import OnnxNetwork
from pipeline.inference.runtime_choice import choose_onnx_file
from transforms import build_postprocessing

__all__ = [
    "RESERVED_OVERRIDES",
    "apply_overrides",
    "SegmentationModel",
    "load_segmentation_model",
    "parse_overrides",
    "resolve_device",
    "resolve_model_file",
]

RESERVED_OVERRIDES = {"bundle_root": "--bundle", "sequence": "--sequence", "model_file": "--model",
                      "device": "--device"}
"""Config keys that have their own argument; overriding them with ``key=value`` is refused."""
KIND_NAMES = {"pytorch": "PyTorch state dict", "torchscript": "TorchScript", "onnx": "ONNX Runtime"}


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
    fast_slices: bool = True
    slice_batch_size: int = 16
    skip_empty_slices: bool = False
    empty_slice_threshold: float = 0.05
    channels_last: bool = False
    bf16: bool = False

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
            logits = self.logits(image)
            item = {**data, "pred": logits[0].cpu()}
            mask = self.postprocessing(item)["pred"]
        affine = mask.affine.numpy() if isinstance(mask, MetaTensor) else None
        return np.ascontiguousarray(mask[0].numpy().astype(np.uint8)), affine

    def uses_fast_slices(self, image: torch.Tensor) -> bool:
        """Whether :meth:`logits` batches whole slices itself (a 2D ``SliceInferer`` whose ROI is the slice)."""
        inferer = self.inferer
        return (self.fast_slices and isinstance(inferer, SliceInferer) and inferer.spatial_dim == 2
                and image.ndim == 5 and tuple(int(r) for r in inferer.roi_size)[:2] == tuple(image.shape[2:4]))

    def logits(self, image: torch.Tensor) -> torch.Tensor:
        """Network logits ``(B, C, H, W, D)`` of a preprocessed batch ``(B, 1, H, W, D)`` with the speed options."""
        with torch.inference_mode():
            if not self.uses_fast_slices(image):
                with self._autocast():
                    return self.inferer(image, self._forward).float()
            x = image.as_tensor() if isinstance(image, MetaTensor) else image
            b, c, h, w, d = x.shape
            slices = x.permute(0, 4, 1, 2, 3).reshape(b * d, c, h, w)
            all_empty = False
            if self.skip_empty_slices:
                keep = torch.nonzero(slices.flatten(1).amax(dim=1) > self.empty_slice_threshold).flatten()
                if keep.numel() == 0:  # nothing to segment; run one slice for the output channel count
                    keep, all_empty = torch.zeros(1, dtype=torch.long, device=x.device), True
            else:
                keep = torch.arange(b * d, device=x.device)
            out: torch.Tensor | None = None
            step = max(int(self.slice_batch_size), 1)
            for start in range(0, keep.numel(), step):
                index = keep[start:start + step]
                with self._autocast():
                    pred = self._forward(slices[index]).float()
                if out is None:
                    out = torch.full((b * d, pred.shape[1], h, w), float("-inf"), dtype=torch.float32, device=x.device)
                out[index] = pred
            assert out is not None
            if all_empty:
                out.fill_(float("-inf"))
            return out.reshape(b, d, -1, h, w).permute(0, 2, 3, 4, 1).contiguous()

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.network(x)

    def _autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16)

    def segment(self, image_file: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`preprocess` then :meth:`predict` one image file."""
        return self.predict(self.preprocess(image_file))

    def describe(self) -> str:
        return f"{self.model_file} ({KIND_NAMES[self.kind]}, {self.sequence}, {self.device})"


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


def apply_overrides(parser: ConfigParser, overrides: Mapping[str, Any] | None, config_file: str | os.PathLike) -> None:
    """Set config ids of ``parser`` (read from ``config_file``) as ``monai.bundle run --key value`` would; ids that
    are not in the config and those of :data:`RESERVED_OVERRIDES` are refused."""
    for key, value in (overrides or {}).items():
        if key in RESERVED_OVERRIDES:
            raise ValueError(f"set {key!r} with {RESERVED_OVERRIDES[key]}, not as an override")
        if key not in parser:
            raise ValueError(f"unknown config key {key!r} for {config_file}")
        parser[key] = value


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


def load_segmentation_model(
    bundle_dir: str | os.PathLike,
    sequence: str,
    model_file: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    overrides: Mapping[str, Any] | None = None,
    runtime: str = "auto",
    trust_bundle: bool = False,
    **speed_options: Any,
) -> SegmentationModel:
    """Build a :class:`SegmentationModel` from ``BUNDLE/configs/inference.json`` (see the module docstring).

    ``overrides`` set config ids as ``monai.bundle run --key value`` would (e.g. ``{"features": [4, 8, 16],
    "spatial_size": 32}``); unknown ids and the ids in :data:`RESERVED_OVERRIDES` are refused.
    ``runtime``: ``auto``, ``onnx`` or ``torch`` (see the module docstring).
    The bundle is checked first (``pipeline.bundle_trust.trust.require_safe_bundle``: configs outside the
    allow-list are refused before anything is instantiated, unless ``trust_bundle``).
    ``speed_options`` set the :class:`SegmentationModel` speed fields (``fast_slices``, ``slice_batch_size``,
    ``skip_empty_slices``, ``empty_slice_threshold``, ``channels_last``, ``bf16``); ``slice_batch_size``
    defaults to 1 on CPU and to the config's ``sw_batch_size`` on CUDA.
    """
    allowed = {"fast_slices", "slice_batch_size", "skip_empty_slices", "empty_slice_threshold", "channels_last",
               "bf16"}
    unknown = sorted(set(speed_options) - allowed)
    if unknown:
        raise TypeError(f"unknown speed option(s) {unknown}; expected some of {sorted(allowed)}")
    if sequence not in SEQUENCES:
        raise ValueError(f"unknown sequence {sequence!r}; expected one of {', '.join(SEQUENCES)}")
    bundle = Path(bundle_dir)
    if not bundle.is_dir():
        raise FileNotFoundError(f"bundle folder {bundle} does not exist")
    config_file = bundle / INFERENCE_CONFIG
    if not config_file.is_file():
        raise FileNotFoundError(f"bundle config {config_file} does not exist")
    from pipeline.bundle_trust.trust import activate_bundle_code, require_safe_bundle

    require_safe_bundle(bundle, trust=trust_bundle)
    activate_bundle_code(bundle)  # its scripts/ importable, as for monai.bundle run in the bundle folder
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser.update({"bundle_root": str(bundle), "sequence": sequence})
    apply_overrides(parser, overrides, config_file)
    dev = resolve_device(device)
    default = parser.get_parsed_content("model_file") if "model_file" in parser else None
    path = resolve_model_file(bundle, sequence, model_file, default)

    torchscript = model_file_kind(path) == "torchscript"
    onnx_file = choose_onnx_file(runtime, path, parser, dev, torchscript=torchscript)
    if onnx_file is not None:
        kind: ModelKind = "onnx"
        path, network = onnx_file, OnnxNetwork(onnx_file, dev)
    elif torchscript:
        kind = "torchscript"
        try:
            network = torch.jit.load(str(path), map_location=dev)
        except Exception as exc:
            raise ValueError(f"{path}: cannot load the TorchScript model ({type(exc).__name__}: {exc})") from exc
    else:
        kind = "pytorch"
        state_dict = load_state_dict(path, map_location=dev)
        network = parser.get_parsed_content("network_def")
        try:
            network.load_state_dict(state_dict)
        except RuntimeError as exc:
            width = {k: parser[k] for k in ("variant", "features") if k in parser}
            raise ValueError(
                f"{path}: the weights do not fit the bundle's network_def {width} ({_first_line(exc, lines=2)}); "
                "give the network it was trained with, e.g. --set features=[...] variant=...") from exc
        network = network.to(dev)
    if speed_options.get("channels_last") and kind == "pytorch":
        network = network.to(memory_format=torch.channels_last)
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
        **{"slice_batch_size": _default_slice_batch(parser, dev), **speed_options},
    )


def _default_slice_batch(parser: ConfigParser, device: torch.device) -> int:
    """Slices per forward pass: 1 on CPU (batching 240² slices measured ~1.4x slower there, cache-bound), the
    config's ``sw_batch_size`` on CUDA."""
    if device.type == "cpu":
        return 1
    return int(parser.get_parsed_content("sw_batch_size")) if "sw_batch_size" in parser else 16


def _first_line(exc: BaseException, lines: int = 1, limit: int = 300) -> str:
    text = " ".join(line.strip() for line in str(exc).strip().splitlines()[:lines])
    return (text[:limit] + " ...") if len(text) > limit else (text or type(exc).__name__)
