"""Export a bundle's segmentation models to ONNX (``models/model_<name>.onnx`` beside ``model_<name>.pt``).

:func:`export_onnx` exports one network with ``torch.onnx.export`` (the ``torch.export``-based
exporter; the TorchScript one cannot export the MFE's adaptive pooling to 1/2/3/6 bins) with a dynamic
batch axis; the spatial size stays fixed (pyramid pooling bins depend on it). The file is one
self-contained ``.onnx`` (weights inside), written atomically, and records in its metadata what it
was made from (:data:`SOURCE_KEYS`): the SHA-256 of the ``.pt`` weights, the network's config values
and the slice size, so a loader can tell an export that no longer matches its weights
(:func:`stale_reason`) and fall back to PyTorch instead of running old weights.

:func:`export_bundle_onnx` exports every ``models/model_<name>.pt`` of a bundle (the ship/pack step
calls it; re-run it whenever weights are replaced)::

    python -m pipeline.inference.onnx_export bundles/dmg_mscg_segmentation          # all models
    python -m pipeline.inference.onnx_export bundles/dmg_mscg_segmentation --name t2
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import warnings
from collections.abc import Iterable, Mapping
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import torch

from pipeline.checkpoint_io import sha256_file
from transforms.atomic_writer import atomic_write_bytes

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "SOURCE_KEYS", "expected_source", "export_bundle_onnx", "export_onnx",
           "onnx_file_for",
           "read_onnx_metadata", "stale_reason"]

INPUT_NAME, OUTPUT_NAME = "image", "logits"
OPSET = 18
SOURCE_KEYS = ("dmg.source_sha256", "dmg.network", "dmg.spatial_size")
NETWORK_CONFIG_IDS = ("variant", "features")
logger = logging.getLogger(__name__)


def onnx_file_for(weights: str | os.PathLike) -> Path:
    """``models/model_t2.pt`` -> ``models/model_t2.onnx``."""
    return Path(weights).with_suffix(".onnx")


def export_onnx(network: torch.nn.Module, out: str | os.PathLike, spatial_size: int | tuple[int, int],
                in_channels: int = 1, metadata: Mapping[str, str] | None = None, opset: int = OPSET) -> Path:
    """Export a 2D ``network`` (``(B, in_channels, H, W)`` -> logits) to ``out`` with a dynamic batch axis."""
    import onnx

    try:  # the torch.export-based exporter (dynamo=True) writes the graph with onnxscript
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise RuntimeError("ONNX export needs onnxscript (torch.onnx.export builds the graph with it): "
                           "pip install onnxscript") from exc

    h, w = (spatial_size, spatial_size) if isinstance(spatial_size, int) else spatial_size
    example = torch.zeros(2, in_channels, int(h), int(w))  # batch 2: a batch of 1 would be specialised away
    network = network.eval()
    with torch.no_grad(), warnings.catch_warnings(), redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        program = torch.onnx.export(network, (example,), None, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                                    opset_version=opset, dynamo=True, external_data=False, verbose=False)
    proto = program.model_proto
    for key, value in (metadata or {}).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = str(key), str(value)
    onnx.checker.check_model(proto)
    return atomic_write_bytes(out, proto.SerializeToString())


def read_onnx_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (without loading its weights into a session)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def source_metadata(weights: str | os.PathLike, network_config: Mapping[str, Any], spatial_size: int) -> dict[str, str]:
    """What an export is made from (:data:`SOURCE_KEYS`)."""
    return {"dmg.source_sha256": sha256_file(weights),
            "dmg.network": json.dumps(dict(network_config), sort_keys=True),
            "dmg.spatial_size": str(int(spatial_size))}


def expected_source(weights: str | os.PathLike, parser: Any) -> dict[str, str]:
    """:func:`source_metadata` of ``weights`` with a config (``ConfigParser``) already set to their model name;
    without a ``spatial_size`` in the config, the slice size is not compared."""
    spatial_size = int(parser.get_parsed_content("spatial_size")) if "spatial_size" in parser else None
    expected = source_metadata(weights, network_config(parser), spatial_size or 0)
    if spatial_size is None:
        expected.pop("dmg.spatial_size")
    return expected


def stale_reason(onnx_file: str | os.PathLike, expected: Mapping[str, str]) -> str | None:
    """Why ``onnx_file`` does not match ``expected`` (:func:`source_metadata` of the current weights and
    config), or ``None`` when it does."""
    try:
        found = read_onnx_metadata(onnx_file)
    except Exception as exc:  # onnx raises its own types for a corrupt file
        return f"{onnx_file}: unreadable ONNX file ({type(exc).__name__})"
    what = {"dmg.source_sha256": "was exported from other weights (re-export it)",
            "dmg.network": "was exported for another network_def",
            "dmg.spatial_size": "was exported for another spatial_size"}
    for key, text in what.items():
        if key in expected and found.get(key) != expected[key]:
            return f"{Path(onnx_file).name} {text}: it records {found.get(key, 'nothing')}, " \
                   f"the bundle has {expected[key][:80]}"
    return None


def network_config(parser: Any) -> dict[str, Any]:
    """The config values the network is built from (``variant``, ``features``), as parsed."""
    return {k: parser.get_parsed_content(k) for k in NETWORK_CONFIG_IDS if k in parser}


def export_bundle_onnx(bundle_dir: str | os.PathLike, names: Iterable[str] | None = None,
                       out_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Export ``models/model_<name>.pt`` of a segmentation bundle (all, or ``names``) to ``model_<name>.onnx``
    in ``out_dir`` (default: the bundle's ``models/``). Returns ``{name: onnx file}``; raises on failure."""
    from pipeline.bundle_trust.trust import use_bundle_code

    with use_bundle_code(bundle_dir):  # the bundle's carried scripts/ that its network_def names
        return _export_bundle_onnx(Path(bundle_dir), names, out_dir)


def _export_bundle_onnx(bundle: Path, names: Iterable[str] | None, out_dir: str | os.PathLike | None) -> dict[str, Path]:
    from pipeline.inference.bundle_models import config_in_channels, inference_config_for, load_pytorch_model

    models = bundle / "models"
    wanted = None if names is None else set(names)
    weights = sorted(p for p in models.glob("model_*.pt") if wanted is None or p.stem[6:] in wanted)
    if wanted is not None and wanted - {p.stem[6:] for p in weights}:
        raise FileNotFoundError(f"no weights for {sorted(wanted - {p.stem[6:] for p in weights})} in {models}")
    exported: dict[str, Path] = {}
    for path in weights:
        name = path.stem[len("model_"):]
        parser = inference_config_for(bundle, name)
        spatial_size = int(parser.get_parsed_content("spatial_size"))
        network = load_pytorch_model(bundle, name, path)
        out = Path(out_dir or models) / onnx_file_for(path).name
        export_onnx(network, out, spatial_size, config_in_channels(parser),
                    metadata=source_metadata(path, network_config(parser), spatial_size))
        exported[name] = out
    return exported


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.inference.onnx_export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bundle", help="segmentation bundle folder")
    parser.add_argument("--name", action="append", default=None, help="model name (t2, flair, t1c); default: all")
    args = parser.parse_args(argv)
    try:
        for name, path in export_bundle_onnx(args.bundle, args.name).items():
            print(f"{name}: {path}")
    except (ValueError, FileNotFoundError) as exc:
        print(f"onnx_export: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
