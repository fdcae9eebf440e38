"""``dmg bundle ship BUNDLE_DIR --checkpoint CKPT [--checkpoint CKPT ...]``: put trained weights into a bundle,
then ship it.

In order, and nothing is written before steps 1 and 2 pass:

1. the network weights of ``CKPT`` (a bare state dict or a training checkpoint with a ``network`` /
   ``model`` / ``generator`` / ``state_dict`` entry, loaded with ``weights_only=True``) are loaded strictly into
   the inference config's ``network_def`` for model ``name`` (default: the value of the config id that names
   the weights, ``sequence``), so weights of another width or configuration are refused with the reason.
   Several checkpoints are the members of an ensemble network (the H3K27M bundle's
   :class:`~pipeline.networks.H3K27MEnsembleNet`, e.g. the five cross-validation fold models): their state dicts
   are combined in the given order (:func:`~pipeline.networks.ensemble_state_dict`), and the config's
   ``ensemble_size`` must equal their number;
2. ``metadata.json``'s fixed ``network_data_format`` spatial shapes are set to the config's ``spatial_size``
   (``"16*n"``-style shapes are left alone), the image input's ``num_channels`` to the config's ``in_channels``
   when it has one (a model reading several sequences), and MONAI's ``verify_net_in_out`` runs with the MONAI Model Zoo's
   defaults (as its ``ci/verify_bundle.py`` calls it) on that metadata;
3. the weights are written as ``models/model_<name>.pt`` (a plain state dict) and the metadata, atomically;
4. :func:`~pipeline.bundle_sharing.ship.ship_bundle` regenerates the rest: TorchScript exports with the current
   ``metadata.json`` embedded, ``models/model.pt`` / ``model.ts`` (the zoo's default model), ONNX exports.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from monai.bundle import ConfigParser

from pipeline.bundle_sharing.ship import ShipResult, pretty_format_json, ship_bundle
from pipeline.bundle_trust.trust import require_safe_bundle, use_bundle_code
from pipeline.checkpoint_io import INFERENCE_CONFIG, load_state_dict
from pipeline.inference.bundle_models import load_pytorch_model, metadata_of, model_name_id, read_inference_config
from pipeline.networks.h3k27m_ensemble import ensemble_state_dict
from transforms.atomic_writer import atomic_path, atomic_write_text

__all__ = ["install_checkpoint", "ship_checkpoint", "sync_input_channels", "sync_spatial_shapes"]

Checkpoints = str | os.PathLike | Sequence[str | os.PathLike]
"""One checkpoint file, or the files of an ensemble's members in order."""


def sync_spatial_shapes(metadata: dict, spatial_size: int) -> list[str]:
    """Set every fixed (all-integer) ``spatial_shape`` of ``metadata['network_data_format']`` to
    ``[spatial_size] * len``; returns the entries changed (``inputs.image`` ...)."""
    changed = []
    for side in ("inputs", "outputs"):
        for key, entry in metadata.get("network_data_format", {}).get(side, {}).items():
            shape = entry.get("spatial_shape")
            if shape and all(isinstance(s, int) for s in shape) and shape != [spatial_size] * len(shape):
                entry["spatial_shape"] = [spatial_size] * len(shape)
                changed.append(f"{side}.{key}")
    return changed


def sync_input_channels(metadata: dict, in_channels: int) -> list[str]:
    """Set ``num_channels`` of the ``image`` input of ``metadata['network_data_format']`` to ``in_channels``
    (a model reading several sequences); returns the entries changed."""
    entry = metadata.get("network_data_format", {}).get("inputs", {}).get("image")
    if entry is None or entry.get("num_channels") == in_channels:
        return []
    entry["num_channels"] = in_channels
    return ["inputs.image.num_channels"]


def _default_name(bundle: Path) -> str:
    parser = read_inference_config(bundle)
    key = model_name_id(parser)
    if key is None:
        raise ValueError(f"{bundle}/configs/inference.json: model_file names no model id; give the model name")
    return str(parser.get_parsed_content(key))


def _verify_shapes(bundle: Path, metadata: dict) -> None:
    """``verify_net_in_out`` as the zoo's ``verify_data_shape`` calls it, with ``metadata`` as metadata.json."""
    from monai.bundle import verify_net_in_out

    with tempfile.TemporaryDirectory() as tmp:
        meta_file = Path(tmp) / "metadata.json"
        meta_file.write_text(json.dumps(metadata), encoding="utf-8")
        try:
            verify_net_in_out(net_id="network_def", meta_file=str(meta_file),
                              config_file=str(bundle / "configs" / "inference.json"), bundle_root=str(bundle))
        except Exception as exc:  # MONAI raises ValueError, AttributeError (dict output), RuntimeError (shapes)
            raise ValueError(f"{bundle}: network_def fails verify_net_in_out with the Model Zoo's defaults "
                             f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from exc


def _as_list(checkpoint: Checkpoints) -> list[Path]:
    files = [Path(checkpoint)] if isinstance(checkpoint, (str, os.PathLike)) else [Path(c) for c in checkpoint]
    if not files:
        raise ValueError("no checkpoint given")
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"checkpoint {file} does not exist")
    return files


def _describe(files: list[Path]) -> str:
    return " + ".join(map(str, files))


def _weights(bundle: Path, parser: ConfigParser, files: list[Path]) -> Mapping[str, torch.Tensor]:
    """The state dict to load into the bundle's ``network_def``: one checkpoint's network weights, or the
    ensemble state dict of several (``ValueError`` when their number is not the config's ``ensemble_size``)."""
    size = int(parser.get_parsed_content("ensemble_size")) if "ensemble_size" in parser else 1
    if len(files) != size:
        raise ValueError(f"{len(files)} checkpoint(s) given, but {bundle / INFERENCE_CONFIG} has "
                         f"ensemble_size {size}: set ensemble_size to {len(files)} there, or give {size}")
    if size == 1:
        return load_state_dict(files[0])
    return ensemble_state_dict([load_state_dict(f) for f in files])


def install_checkpoint(bundle_dir: str | os.PathLike, checkpoint: Checkpoints,
                       name: str | None = None) -> tuple[Path, list[str]]:
    """Steps 1-3 of the module docstring; returns ``(models/model_<name>.pt, metadata entries changed)``."""
    bundle = Path(bundle_dir)
    files = _as_list(checkpoint)
    require_safe_bundle(bundle)  # network_def is instantiated below
    name = name or _default_name(bundle)
    with use_bundle_code(bundle):
        parser = read_inference_config(bundle)
        network = load_pytorch_model(bundle, name, _weights(bundle, parser, files), source=_describe(files))
        metadata = metadata_of(bundle)
        changed = sync_spatial_shapes(metadata, int(parser.get_parsed_content("spatial_size")))
        if "in_channels" in parser:
            changed += sync_input_channels(metadata, int(parser.get_parsed_content("in_channels")))
        _verify_shapes(bundle, metadata)
    target = bundle / "models" / f"model_{name}.pt"
    with atomic_path(target) as tmp:
        torch.save({k: v.detach().cpu() for k, v in network.state_dict().items()}, tmp)
    if changed:
        atomic_write_text(bundle / "configs" / "metadata.json", pretty_format_json(json.dumps(metadata)))
    return target, changed


def ship_checkpoint(bundle_dir: str | os.PathLike, checkpoint: Checkpoints,
                    name: str | None = None) -> ShipResult:
    """Install ``checkpoint`` (one file, or an ensemble's member files) as model ``name`` of the bundle, then
    :func:`ship_bundle` (see the module docstring)."""
    files = _as_list(checkpoint)
    weights, changed = install_checkpoint(bundle_dir, files, name)
    result = ship_bundle(bundle_dir)
    result.exported.insert(0, f"models/{weights.name} from {_describe(files)}"
                              + (f"; metadata shapes set to the config's ({', '.join(changed)})"
                                 if changed else ""))
    return result
