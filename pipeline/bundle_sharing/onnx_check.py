"""``dmg bundle verify``: each ONNX model (``models/model_<name>.onnx``) against its PyTorch weights.

Per ONNX file, one row:

* FAIL when ONNX Runtime cannot load it, when its recorded source (weights SHA-256, network config,
  slice size; :func:`pipeline.inference.onnx_export.stale_reason`) does not match the bundle's
  ``model_<name>.pt`` and ``inference.json``, or when its logits differ from the PyTorch model's by
  more than ``atol`` (1e-4) on a fixed random batch (seed 0, values in [0, 1), batch 3: the batch axis
  must be dynamic);
* PASS otherwise, with the largest logit difference and the count of mask pixels (sigmoid >
  threshold) that differ, which may be non-zero only for logits within ``atol`` of the threshold.

A ``.pt`` without an export gets a NOTE; without ``onnxruntime`` installed every ONNX row is a WARN.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from pipeline.bundle_sharing.report import Check

__all__ = ["check_onnx_models"]

BATCH = 3


def check_onnx_models(root: str | os.PathLike, threshold: float = 0.5, atol: float = 1e-4) -> list[Check]:
    """Rows for every ``models/model_<name>.onnx`` of the bundle folder ``root`` (see the module docstring)."""
    root = Path(root)
    models = root / "models"
    onnx_files = sorted(models.glob("model_*.onnx")) if models.is_dir() else []
    weights = sorted(models.glob("model_*.pt")) if models.is_dir() else []
    checks = [Check(f"model {p.stem[6:]}: ONNX", "NOTE",
                    "no ONNX export (make it with: python -m pipeline.inference.onnx_export BUNDLE)")
              for p in weights if not p.with_suffix(".onnx").is_file()]
    for path in onnx_files:
        checks.append(_check_one(root, path, threshold, atol))
    return checks


def _check_one(root: Path, path: Path, threshold: float, atol: float) -> Check:
    from pipeline.inference.bundle_models import config_in_channels, inference_config_for, load_pytorch_model
    from pipeline.inference.onnx_export import expected_source, stale_reason
    from pipeline.inference.onnx_runtime import OnnxNetwork, onnxruntime_available

    name = path.stem[len("model_"):]
    label = f"model {name}: ONNX vs PyTorch"
    if not onnxruntime_available():
        return Check(label, "WARN", f"{path.name} not checked: onnxruntime is not installed")
    try:
        onnx_net = OnnxNetwork(path, "cpu")
    except ValueError as exc:
        return Check(label, "FAIL", str(exc).replace(str(root) + os.sep, ""))
    pt = path.with_suffix(".pt")
    if not pt.is_file():
        return Check(label, "NOTE", f"{path.name} loads; no {pt.name} to compare with")
    try:
        parser = inference_config_for(root, name)
        stale = stale_reason(path, expected_source(pt, parser))
        if stale is not None:
            return Check(label, "FAIL", stale)
        eager = load_pytorch_model(root, name, pt)
        x = torch.rand((BATCH, config_in_channels(parser), *onnx_net.spatial_size), generator=torch.Generator().manual_seed(0))
        with torch.inference_mode():
            reference = eager(x)
        got = onnx_net(x)
    except Exception as exc:  # a config that does not build, weights that do not fit, a failing session
        return Check(label, "FAIL", f"{type(exc).__name__}: {str(exc)[:300]}".replace(str(root) + os.sep, ""))
    if got.shape != reference.shape:
        return Check(label, "FAIL", f"output shape {tuple(got.shape)}, PyTorch {tuple(reference.shape)}")
    worst = (got - reference).abs().max().item()
    flipped = int(((torch.sigmoid(got) > threshold) != (torch.sigmoid(reference) > threshold)).sum())
    detail = (f"max |logit diff| {worst:.2e} (tolerance {atol:g}) on {tuple(x.shape)}; "
              f"{flipped} of {reference.numel()} mask pixels differ")
    return Check(label, "PASS" if worst <= atol else "FAIL", detail)
