"""Forward checks of a bundle's networks against its metadata, and of a TorchScript export against its source.

:func:`check_in_out` is what ``monai.bundle verify_net_in_out`` checks (a random input shaped as
``network_data_format.inputs`` gives an output with the declared channels and dtype), run on the
network *with its shipped weights* and also on a TorchScript model. Spatial shapes such as
``"16*n"`` are evaluated with ``n`` (``"x**p"`` with ``p``, ``"*"`` is ``any``), as MONAI does.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from pipeline.bundle_sharing.metadata_checks import torch_dtype
from pipeline.bundle_sharing.report import Check

__all__ = ["IOSpec", "check_in_out", "compare_outputs", "fake_spatial_shape", "io_spec"]

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Pow: operator.pow,
        ast.FloorDiv: operator.floordiv}


def _evaluate(expr: str, names: Mapping[str, int]) -> int:
    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in names:
            return names[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](ev(node.left), ev(node.right))
        raise ValueError(f"unsupported spatial shape expression {expr!r}")

    return int(ev(ast.parse(expr.strip(), mode="eval")))


def fake_spatial_shape(shape: Sequence[Any], n: int = 1, p: int = 1, any_: int = 1) -> tuple[int, ...]:
    """``["16*n", "16*n"]`` with ``n=2`` -> ``(32, 32)``; integers stay, ``"*"`` becomes ``any_``."""
    dims = []
    for dim in shape:
        if isinstance(dim, int):
            dims.append(dim)
        elif str(dim).strip() == "*":
            dims.append(any_)
        else:
            dims.append(_evaluate(str(dim), {"n": n, "p": p}))
    return tuple(dims)


@dataclass(frozen=True)
class IOSpec:
    """The first input and first output of ``network_data_format``."""

    input_channels: int
    input_shape: tuple[Any, ...]
    input_dtype: torch.dtype
    output_key: str
    output_channels: int
    output_shape: tuple[Any, ...]
    output_dtype: torch.dtype

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any]) -> IOSpec:
        fmt = meta["network_data_format"]
        (_, inp), (out_key, out) = next(iter(fmt["inputs"].items())), next(iter(fmt["outputs"].items()))
        return cls(int(inp["num_channels"]), tuple(inp["spatial_shape"]), torch_dtype(inp.get("dtype", "float32")),
                   str(out_key), int(out["num_channels"]), tuple(out["spatial_shape"]),
                   torch_dtype(out.get("dtype", "float32")))

    def input(self, batch: int = 1, n: int = 1, seed: int = 0) -> torch.Tensor:
        """A reproducible random input in [0, 1)."""
        generator = torch.Generator().manual_seed(seed)
        shape = (batch, self.input_channels, *fake_spatial_shape(self.input_shape, n=n))
        return torch.rand(shape, generator=generator).to(self.input_dtype)


io_spec = IOSpec.from_metadata


def primary_output(output: Any, key: str) -> tuple[torch.Tensor, str]:
    """The tensor the metadata's first output describes, and a note when it had to be picked from a dict/tuple."""
    if isinstance(output, torch.Tensor):
        return output, ""
    if isinstance(output, Mapping):
        if isinstance(output.get(key), torch.Tensor):
            return output[key], ""
        for name, value in output.items():
            if isinstance(value, torch.Tensor):
                return value, f"output is a dict; checked its '{name}'"
    if isinstance(output, (tuple, list)):
        for i, value in enumerate(output):
            if isinstance(value, torch.Tensor):
                return value, f"output is a {type(output).__name__}; checked item {i}"
    raise ValueError(f"the network returned {type(output).__name__}, not a tensor")


def check_in_out(network: torch.nn.Module, spec: IOSpec, n: int = 2, label: str = "in/out") -> Check:
    """Forward one random input shaped as the metadata says; PASS when the output has the declared
    channels, dtype and (where the metadata gives as many dims as the output has) spatial shape."""
    x = spec.input(batch=1, n=n)
    try:
        with torch.inference_mode():
            out, note = primary_output(network(x), spec.output_key)
    except Exception as exc:
        return Check(label, "FAIL", f"forward of {tuple(x.shape)} failed: {type(exc).__name__}: {str(exc)[:200]}")
    problems = []
    if out.ndim < 2 or out.shape[1] != spec.output_channels:
        problems.append(f"output shape {tuple(out.shape)}: expected {spec.output_channels} channel(s)")
    if out.dtype != spec.output_dtype:
        problems.append(f"output dtype {out.dtype}, metadata says {spec.output_dtype}")
    if len(spec.output_shape) == out.ndim - 2:
        expected = fake_spatial_shape(spec.output_shape, n=n, any_=-1)
        if any(e != -1 and e != s for e, s in zip(expected, out.shape[2:], strict=True)):
            problems.append(f"output spatial shape {tuple(out.shape[2:])}, metadata says {expected}")
    detail = f"{tuple(x.shape)} -> {tuple(out.shape)} {str(out.dtype).removeprefix('torch.')}"
    if note:
        detail += f" ({note})"
    return Check(label, "FAIL" if problems else "PASS", "; ".join(problems) if problems else detail)


def _tensors(output: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return {prefix or "output": output}
    if isinstance(output, Mapping):
        items = output.items()
    elif isinstance(output, (tuple, list)):
        items = enumerate(output)
    else:
        return {}
    found: dict[str, torch.Tensor] = {}
    for key, value in items:
        found.update(_tensors(value, f"{prefix}.{key}" if prefix else str(key)))
    return found


def _mask(out: torch.Tensor, threshold: float) -> torch.Tensor:
    if out.ndim >= 2 and out.shape[1] > 1:
        return out.argmax(1)
    return torch.sigmoid(out.float()) > threshold


def compare_outputs(eager: torch.nn.Module, scripted: torch.nn.Module, x: torch.Tensor, key: str,
                    threshold: float = 0.5, atol: float = 1e-4, label: str = "TorchScript vs PyTorch") -> Check:
    """PASS when every output tensor of ``scripted`` is within ``atol`` of ``eager``'s on ``x`` and the
    thresholded masks (sigmoid > threshold; argmax for several channels) of the primary output are identical."""
    try:
        with torch.inference_mode():
            a, b = eager(x), scripted(x)
        ta, tb = _tensors(a), _tensors(b)
        if set(ta) != set(tb):
            return Check(label, "FAIL", f"different outputs: PyTorch {sorted(ta)}, TorchScript {sorted(tb)}")
        diffs = {k: (ta[k].float() - tb[k].float()).abs().max().item() if ta[k].shape == tb[k].shape else math.inf
                 for k in ta}
        masks_equal = torch.equal(_mask(primary_output(a, key)[0], threshold),
                                  _mask(primary_output(b, key)[0], threshold))
    except Exception as exc:
        return Check(label, "FAIL", f"forward of {tuple(x.shape)} failed: {type(exc).__name__}: {str(exc)[:200]}")
    worst = max(diffs.values(), default=0.0)
    ok = worst <= atol and masks_equal
    detail = (f"max |diff| {worst:.2e} (tolerance {atol:g}) on {tuple(x.shape)}; "
              f"thresholded masks {'identical' if masks_equal else 'DIFFER'}")
    if not ok and len(diffs) > 1:
        detail += "; per output: " + ", ".join(f"{k} {v:.2e}" for k, v in diffs.items())
    return Check(label, "PASS" if ok else "FAIL", detail)
