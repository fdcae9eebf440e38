"""The networks behind a bundle's weights: ``network_def`` of ``configs/inference.json`` for one model name.

The model name (``t2`` in ``models/model_t2.pt``) is bound to the config id that the config's own
``model_file`` is built from (``@sequence`` in the segmentation bundle, ``@config_name`` in the H3K27M
one), so ``network_def`` is built exactly as ``monai.bundle run`` builds it for those weights.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.data import save_net_with_metadata

from pipeline.inference.model import INFERENCE_CONFIG
from pipeline.inference.model import _state_dict as checkpoint_state_dict

__all__ = ["build_network", "export_torchscript", "load_pytorch_model", "metadata_of", "model_name_id",
           "read_inference_config"]

_NAME_ID = re.compile(r"model_'\s*\+\s*@(?P<id>[A-Za-z_][\w#]*)")


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
    """The config id that names the weights (``"$... '/models/model_' + @sequence + '.pt'"`` -> ``"sequence"``);
    ``"sequence"`` when the config has one and ``model_file`` does not say; else ``None``."""
    raw = parser.get("model_file")
    match = _NAME_ID.search(raw) if isinstance(raw, str) else None
    if match:
        return match["id"]
    return "sequence" if "sequence" in parser else None


def build_network(bundle_dir: str | os.PathLike, name: str) -> torch.nn.Module:
    """``network_def`` of the bundle's inference config for model ``name`` (randomly initialised, eval mode)."""
    parser = read_inference_config(bundle_dir)
    key = model_name_id(parser)
    if key is not None:
        parser[key] = name
    if "network_def" not in parser:
        raise ValueError(f"{Path(bundle_dir) / INFERENCE_CONFIG} has no network_def")
    network = parser.get_parsed_content("network_def")
    if not isinstance(network, torch.nn.Module):
        raise ValueError(f"network_def of {Path(bundle_dir) / INFERENCE_CONFIG} is not a torch.nn.Module")
    return network.eval()


def load_pytorch_model(bundle_dir: str | os.PathLike, name: str, weights: str | os.PathLike) -> torch.nn.Module:
    """``network_def`` for ``name`` with the state dict in ``weights`` (``torch.load(weights_only=True)``,
    strict); ``ValueError`` with the reason when the weights do not load or do not fit."""
    try:
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{weights}: cannot load the weights ({type(exc).__name__}: {str(exc)[:200]})") from exc
    network = build_network(bundle_dir, name)
    try:
        network.load_state_dict(checkpoint_state_dict(checkpoint, Path(weights)))
    except RuntimeError as exc:
        first = " ".join(str(exc).splitlines()[:2])[:300]
        raise ValueError(f"{weights}: the weights do not fit the bundle's network_def ({first}); inference.json "
                         "must describe the shipped network (e.g. its 'features')") from exc
    return network.eval()


def export_torchscript(bundle_dir: str | os.PathLike, name: str, weights: str | os.PathLike,
                       out: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> Path:
    """Script the network of ``weights`` with ``torch.jit.script`` and save it to ``out`` as
    ``monai.bundle ckpt_export`` does (metadata and inference.json as extra files). Raises on failure."""
    network = load_pytorch_model(bundle_dir, name, weights)
    scripted = torch.jit.script(network)
    config = (Path(bundle_dir) / INFERENCE_CONFIG).read_bytes()
    save_net_with_metadata(scripted, str(out), include_config_vals=True,
                           meta_values=dict(metadata or {}), more_extra_files={"inference.json": config})
    return Path(out)


def metadata_of(bundle_dir: str | os.PathLike) -> dict:
    """The parsed ``configs/metadata.json`` (``ValueError`` naming the file when it is not valid JSON)."""
    path = Path(bundle_dir) / "configs" / "metadata.json"
    if not path.is_file():
        raise FileNotFoundError(f"bundle metadata {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
