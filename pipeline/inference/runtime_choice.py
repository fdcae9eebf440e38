"""Which runtime runs a segmentation model: ONNX Runtime or PyTorch (``--runtime auto|onnx|torch``).

``auto`` (the default) uses ONNX Runtime when all of these hold, and PyTorch otherwise (saying why at
INFO level):

* the weights are a PyTorch state dict ``model_<name>.pt`` with an export ``model_<name>.onnx`` beside
  it, or the model file given *is* an ``.onnx`` file;
* ONNX Runtime can run on the device: always on CPU; on CUDA only with ``onnxruntime-gpu``;
* the export is current: made from these weights (SHA-256), for this ``network_def`` (variant, features)
  and slice size (:func:`pipeline.inference.onnx_export.stale_reason`).

``onnx`` requires ONNX Runtime (an error naming what is missing otherwise); ``torch`` never uses it.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import torch

__all__ = ["RUNTIMES", "Runtime", "choose_onnx_file"]

Runtime = Literal["auto", "onnx", "torch"]
RUNTIMES: tuple[str, ...] = ("auto", "onnx", "torch")
logger = logging.getLogger(__name__)


def choose_onnx_file(runtime: str, weights: Path, parser: Any, device: torch.device,
                     torchscript: bool = False) -> Path | None:
    """The ONNX file to run for ``weights`` (a resolved model file), or ``None`` for PyTorch."""
    from pipeline.inference.onnx_export import expected_source, onnx_file_for, stale_reason
    from pipeline.inference.onnx_runtime import onnx_providers

    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; expected one of {', '.join(RUNTIMES)}")
    if runtime == "torch":
        if weights.suffix == ".onnx":
            raise ValueError(f"{weights} is an ONNX model; --runtime torch needs a .pt or .ts model")
        return None

    def refuse(reason: str) -> None:
        if runtime == "onnx":
            raise ValueError(f"--runtime onnx: {reason}")
        logger.info("PyTorch runtime: %s", reason)
        return None

    if onnx_providers(device) is None:
        return refuse(f"ONNX Runtime cannot run on {device} here"
                      + (" (install onnxruntime-gpu)" if device.type == "cuda" else " (pip install onnxruntime)"))
    if weights.suffix == ".onnx":
        return weights
    if torchscript:
        return refuse(f"{weights.name} is a TorchScript model; ONNX exports are checked against .pt weights")
    candidate = onnx_file_for(weights)
    if not candidate.is_file():
        return refuse(f"no ONNX export {candidate} (make it with: python -m pipeline.inference.onnx_export "
                      f"{weights.parent.parent})")
    reason = stale_reason(candidate, expected_source(weights, parser))
    if reason is not None:
        return refuse(reason)
    return candidate
