"""The networks behind a bundle's weights: ``network_def`` of ``configs/inference.json`` for one model name.

The model name (``t2`` in ``models/model_t2.pt``) is bound to the config id that the config's own
``model_file`` is built from (``@sequence`` in both bundles; a received bundle may use another id), so
``network_def`` is built exactly as ``monai.bundle run`` builds it for those weights. That id is read from the
syntax tree of the ``model_file`` expression (:func:`pipeline.bundle_trust.config_allowlist.parse_expression`),
which is never evaluated: the bundle may come from elsewhere.
"""

from __future__ import annotations

import ast
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.data import save_net_with_metadata

from pipeline.bundle_trust.config_allowlist import parse_expression, referenced_id
from pipeline.checkpoint_io import INFERENCE_CONFIG, load_state_dict
from transforms.atomic_writer import atomic_write_bytes

__all__ = ["build_network", "config_in_channels", "export_torchscript", "inference_config_for", "load_pytorch_model", "metadata_of",
           "model_name_id", "read_inference_config"]

MODEL_FILE_PREFIX = "model_"
"""Weights are ``models/model_<name>.pt``: the reference right after this text in ``model_file`` names them."""


def read_inference_config(bundle_dir: str | os.PathLike, **overrides: Any) -> ConfigParser:
    """``BUNDLE/configs/inference.json`` with ``bundle_root`` set to ``bundle_dir`` (plus ``overrides``)."""
    config_file = Path(bundle_dir) / INFERENCE_CONFIG
    if not config_file.is_file():
        raise FileNotFoundError(f"bundle config {config_file} does not exist")
    parser = ConfigParser()
    parser.read_config(str(config_file))
    parser.update({"bundle_root": str(bundle_dir), **overrides})
    return parser


def model_name_id(parser: ConfigParser) -> str | None:
    """The config id that names the weights (``"$... '/models/model_' + @sequence + '.pt'"`` -> ``"sequence"``,
    also as an f-string); ``"sequence"`` when the config has one and ``model_file`` does not say; else ``None``."""
    raw = parser.get("model_file")
    found = _id_after_prefix(raw) if isinstance(raw, str) and raw.startswith("$") else None
    if found is not None:
        return found
    return "sequence" if "sequence" in parser else None


def _id_after_prefix(expression: str) -> str | None:
    """The reference that follows a text ending in :data:`MODEL_FILE_PREFIX` in a string built with ``+`` or
    an f-string; ``None`` when there is none (or the expression is not Python)."""
    try:
        tree, refs = parse_expression(expression)
    except ValueError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Expr):
        return None
    parts = _string_parts(tree.body[0].value)
    for before, after in zip(parts, parts[1:]):
        if isinstance(before, ast.Constant) and isinstance(before.value, str) \
                and before.value.endswith(MODEL_FILE_PREFIX) and referenced_id(after, refs) is not None:
            return referenced_id(after, refs)
    return None


def _string_parts(node: ast.expr) -> list[ast.expr]:
    """The operands of ``a + b + c`` or the pieces of an f-string, in order; else ``[node]``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _string_parts(node.left) + _string_parts(node.right)
    if isinstance(node, ast.JoinedStr):
        return [v.value if isinstance(v, ast.FormattedValue) else v for v in node.values]
    return [node]


def inference_config_for(bundle_dir: str | os.PathLike, name: str) -> ConfigParser:
    """:func:`read_inference_config` with the id of :func:`model_name_id` set to model ``name``, as
    ``monai.bundle run`` would see it for ``models/model_<name>.pt``."""
    parser = read_inference_config(bundle_dir)
    key = model_name_id(parser)
    if key is not None:
        parser[key] = name
    return parser


def config_in_channels(parser: ConfigParser) -> int:
    """The network's input channels the config declares (``in_channels``: one per sequence it reads); 1 without."""
    return int(parser.get_parsed_content("in_channels")) if "in_channels" in parser else 1


def build_network(bundle_dir: str | os.PathLike, name: str) -> torch.nn.Module:
    """``network_def`` of the bundle's inference config for model ``name`` (randomly initialised, eval mode)."""
    parser = inference_config_for(bundle_dir, name)
    if "network_def" not in parser:
        raise ValueError(f"{Path(bundle_dir) / INFERENCE_CONFIG} has no network_def")
    network = parser.get_parsed_content("network_def")
    if not isinstance(network, torch.nn.Module):
        raise ValueError(f"network_def of {Path(bundle_dir) / INFERENCE_CONFIG} is not a torch.nn.Module")
    return network.eval()


def load_pytorch_model(bundle_dir: str | os.PathLike, name: str,
                       weights: str | os.PathLike | Mapping[str, torch.Tensor], source: str | None = None
                       ) -> torch.nn.Module:
    """``network_def`` for ``name`` with the state dict in ``weights`` (a file, read with
    ``torch.load(weights_only=True)``, or a state dict already loaded, named ``source`` in messages), strict;
    ``ValueError`` with the reason when the weights do not load or do not fit."""
    state_dict = weights if isinstance(weights, Mapping) else load_state_dict(weights)
    source = source or str(weights)
    network = build_network(bundle_dir, name)
    try:
        network.load_state_dict(state_dict)
    except RuntimeError as exc:
        first = " ".join(str(exc).splitlines()[:2])[:300]
        raise ValueError(f"{source}: the weights do not fit the bundle's network_def ({first}); inference.json "
                         "must describe the shipped network (e.g. its 'features')") from exc
    return network.eval()


def export_torchscript(bundle_dir: str | os.PathLike, name: str, weights: str | os.PathLike,
                       out: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> Path:
    """Script the network of ``weights`` with ``torch.jit.script`` and save it to ``out`` as
    ``monai.bundle ckpt_export`` does (metadata and inference.json as extra files), atomically. The archive is
    written to memory first, so its inner folder is ``archive`` whatever the file is called. Raises on failure."""
    network = load_pytorch_model(bundle_dir, name, weights)
    scripted = torch.jit.script(network)
    config = (Path(bundle_dir) / INFERENCE_CONFIG).read_bytes()
    buffer = io.BytesIO()
    save_net_with_metadata(scripted, buffer, include_config_vals=True,
                           meta_values=dict(metadata or {}), more_extra_files={"inference.json": config})
    return atomic_write_bytes(out, buffer.getvalue())


def metadata_of(bundle_dir: str | os.PathLike) -> dict:
    """The parsed ``configs/metadata.json`` (``ValueError`` naming the file when it is not valid JSON)."""
    path = Path(bundle_dir) / "configs" / "metadata.json"
    if not path.is_file():
        raise FileNotFoundError(f"bundle metadata {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
