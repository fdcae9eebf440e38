"""Checks of a bundle's ``configs/metadata.json`` that need no network access.

``monai.bundle.verify_metadata`` downloads the JSON schema named in the metadata and validates with
``jsonschema``; a hospital machine often cannot download. These checks cover what a recipient relies on:
the required keys, a ``network_data_format`` with inputs and outputs that :mod:`.model_checks` can read
(validated with ``jsonschema`` against :data:`NETWORK_DATA_FORMAT_SCHEMA`, the part of the Model Zoo
schema they need, plus dtypes PyTorch knows), versions that parse, and MONAI / PyTorch versions that match
the installed ones (major.minor; a mismatch is a WARN). :func:`bundle_runner_check` says whether
``python -m monai.bundle run`` can start here (it needs ``fire``, which MONAI does not install).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

import jsonschema
import monai
import torch
from packaging.version import InvalidVersion, Version

from pipeline.bundle_sharing.report import Check

__all__ = ["NETWORK_DATA_FORMAT_SCHEMA", "REQUIRED_KEYS", "bundle_runner_check", "check_metadata", "torch_dtype"]

REQUIRED_KEYS = ("version", "monai_version", "pytorch_version", "name", "task", "network_data_format")
VERSION_KEYS = ("version", "monai_version", "pytorch_version")

_TENSOR_SCHEMA = {"type": "object", "required": ["num_channels", "spatial_shape"],
                  "properties": {"num_channels": {"type": "integer"}, "spatial_shape": {"type": "array"},
                                 "dtype": {"type": "string"}}}
NETWORK_DATA_FORMAT_SCHEMA = {
    "type": "object",
    "required": ["inputs", "outputs"],
    "properties": {side: {"type": "object", "minProperties": 1, "additionalProperties": _TENSOR_SCHEMA}
                   for side in ("inputs", "outputs")},
}
"""JSON schema of ``network_data_format``: what :class:`.model_checks.IOSpec` reads of each input and output."""


def torch_dtype(name: Any) -> torch.dtype:
    """``"float32"`` / ``"torch.float32"`` -> ``torch.float32``; anything else raises ``ValueError``."""
    dtype = getattr(torch, str(name).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def _io_problems(fmt: Any) -> list[str]:
    """``network_data_format`` against :data:`NETWORK_DATA_FORMAT_SCHEMA` (``jsonschema``), then each dtype."""
    validator = jsonschema.Draft202012Validator(NETWORK_DATA_FORMAT_SCHEMA)
    problems = [f"{'.'.join(['network_data_format', *map(str, error.absolute_path)])}: {error.message}"
                for error in sorted(validator.iter_errors(fmt), key=lambda e: list(map(str, e.absolute_path)))]
    if problems:
        return problems
    for side in ("inputs", "outputs"):
        for key, spec in fmt[side].items():
            try:
                torch_dtype(spec.get("dtype", "float32"))
            except ValueError as exc:
                problems.append(f"network_data_format.{side}.{key}.dtype: {exc}")
    return problems


def bundle_runner_check() -> Check:
    """Whether ``python -m monai.bundle run`` can start here: MONAI's command line is built on ``fire``, an
    optional MONAI dependency that ``pip install monai`` does not bring (the bundles pin it in their metadata)."""
    if importlib.util.find_spec("fire") is None:
        return Check("monai.bundle run", "WARN", "fire is not installed: python -m monai.bundle run stops at "
                                                 "'import fire' (pip install fire)")
    return Check("monai.bundle run", "PASS", "fire installed (python -m monai.bundle needs it)")


def _major_minor(text: str) -> tuple[int, int]:
    release = Version(str(text)).release
    return release[0], (release[1] if len(release) > 1 else 0)


def check_metadata(meta: Any, installed: Mapping[str, str] | None = None) -> list[Check]:
    """Checks of a parsed metadata.json; ``installed`` (``{"monai_version": ..., "pytorch_version": ...}``)
    defaults to the running MONAI and PyTorch."""
    if not isinstance(meta, Mapping):
        return [Check("metadata", "FAIL", "metadata.json is not a JSON object")]
    installed = installed or {"monai_version": monai.__version__, "pytorch_version": torch.__version__}
    checks = []
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    checks.append(Check("metadata: required keys", "FAIL" if missing else "PASS",
                        f"missing: {', '.join(missing)}" if missing else ", ".join(REQUIRED_KEYS)))
    if "network_data_format" in meta:
        problems = _io_problems(meta["network_data_format"])
        checks.append(Check("metadata: network_data_format", "FAIL" if problems else "PASS",
                            "; ".join(problems) if problems else
                            f"inputs {', '.join(meta['network_data_format']['inputs'])}; "
                            f"outputs {', '.join(meta['network_data_format']['outputs'])}"))
    bad = []
    for key in VERSION_KEYS:
        if key in meta:
            try:
                Version(str(meta[key]))
            except InvalidVersion:
                bad.append(f"{key}={meta[key]!r}")
    present = [k for k in VERSION_KEYS if k in meta]
    checks.append(Check("metadata: versions parse", "FAIL" if bad else "PASS",
                        f"not a version: {', '.join(bad)}" if bad else
                        ", ".join(f"{k} {meta[k]}" for k in present)))
    for key, label in (("monai_version", "MONAI"), ("pytorch_version", "PyTorch")):
        if key not in meta or f"{key}={meta[key]!r}" in bad:
            continue
        want, have = _major_minor(meta[key]), _major_minor(installed[key])
        status = "PASS" if want == have else "WARN"
        detail = f"bundle {meta[key]}, installed {installed[key]}"
        checks.append(Check(f"metadata: {label} version", status,
                            detail if status == "PASS" else f"{detail} (major.minor differ)"))
    changelog = meta.get("changelog")
    if isinstance(changelog, Mapping) and "version" in meta and str(meta["version"]) not in changelog:
        checks.append(Check("metadata: changelog", "WARN", f"no changelog entry for version {meta['version']}"))
    return checks
