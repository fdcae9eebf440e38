"""Run an exported ONNX segmentation model with ONNX Runtime, as a drop-in for the PyTorch network.

:class:`OnnxNetwork` is called like the network (a ``(B, C, H, W)`` float tensor in, logits out as a
tensor), so :class:`~pipeline.inference.model.SegmentationModel`'s slice loop and MONAI's
``SliceInferer`` use it unchanged. Sessions use :func:`session_options`: ``intra_op_num_threads`` from
the CPUs the process may really use (:func:`pipeline.cpu_threads.usable_cpus`, or ``OMP_NUM_THREADS``
when set), one inter-op thread, and ``allow_spinning=0`` so idle workers sleep instead of busy-waiting
on a core another process holds.

:func:`onnx_providers` decides where it runs: CPU on a CPU device; on CUDA only when ``onnxruntime-gpu``
offers the ``CUDAExecutionProvider`` (otherwise the caller stays on PyTorch).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

__all__ = ["OnnxNetwork", "onnx_providers", "onnxruntime_available", "session_options"]


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_providers(device: torch.device) -> list[str] | None:
    """ONNX Runtime execution providers for ``device``, or ``None`` when ONNX Runtime cannot run there."""
    if not onnxruntime_available():
        return None
    import onnxruntime as ort

    if device.type == "cpu":
        return ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    return None


def default_threads() -> int:
    from pipeline.cpu_threads import usable_cpus

    user = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(user) if user.isdigit() and int(user) > 0 else usable_cpus()


def session_options(threads: int | None = None):
    """``onnxruntime.SessionOptions``: ``threads`` intra-op threads (default :func:`default_threads`), one
    inter-op thread, sequential execution, no spinning, all graph optimisations."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or default_threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return options


class OnnxNetwork:
    """An ONNX model file as a callable network: ``logits = net(x)`` with ``x`` of shape ``(B, C, H, W)``."""

    def __init__(self, path: str | os.PathLike, device: torch.device | str = "cpu", threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.device = torch.device(device)
        providers = onnx_providers(self.device)
        if providers is None:
            raise ValueError(f"ONNX Runtime cannot run on {self.device} here (install onnxruntime-gpu for CUDA)")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=session_options(threads),
                                                providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{self.path}: cannot load the ONNX model ({type(exc).__name__}: "
                             f"{str(exc).strip().splitlines()[0][:200]})") from exc
        inp = self.session.get_inputs()[0]
        self.input_name = inp.name
        self.input_shape = tuple(inp.shape)  # e.g. ('batch', 1, 160, 160)

    @property
    def spatial_size(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.input_shape[2:] if isinstance(s, int))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.spatial_size:
            raise ValueError(f"{self.path.name} takes {self.spatial_size} slices, got {tuple(x.shape[2:])}")
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        (out,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(out).to(x.device)

    def eval(self) -> OnnxNetwork:
        return self

    def parameters(self):
        return iter(())

    def __repr__(self) -> str:
        return f"OnnxNetwork({self.path}, {self.session.get_providers()[0]})"
