"""Checks of a bundle's ``configs/metadata.json`` that need no network access.

``monai.bundle.verify_metadata`` downloads the JSON schema named in the metadata; a hospital machine
often cannot. These checks cover what a recipient relies on: the required keys, a
``network_data_format`` with inputs and outputs that :mod:`.model_checks` can read, versions that
parse, and MONAI / PyTorch versions that match the installed ones (major.minor; a mismatch is a WARN).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import monai
import torch
from packaging.version import InvalidVersion, Version

from pipeline.bundle_sharing.report import Check

__all__ = ["REQUIRED_KEYS", "check_metadata", "torch_dtype"]

REQUIRED_KEYS = ("version", "monai_version", "pytorch_version", "name", "task", "network_data_format")
VERSION_KEYS = ("version", "monai_version", "pytorch_version")


def torch_dtype(name: Any) -> torch.dtype:
    """``"float32"`` / ``"torch.float32"`` -> ``torch.float32``; anything else raises ``ValueError``."""
    dtype = getattr(torch, str(name).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dtype


def _io_problems(fmt: Any) -> list[str]:
    if not isinstance(fmt, Mapping):
        return ["network_data_format is not an object"]
    problems = []
    for side in ("inputs", "outputs"):
        entries = fmt.get(side)
        if not isinstance(entries, Mapping) or not entries:
            problems.append(f"network_data_format.{side} is missing or empty")
            continue
        for key, spec in entries.items():
            where = f"network_data_format.{side}.{key}"
            if not isinstance(spec, Mapping):
                problems.append(f"{where} is not an object")
                continue
            if not isinstance(spec.get("num_channels"), int):
                problems.append(f"{where}.num_channels is missing or not an integer")
            if not isinstance(spec.get("spatial_shape"), list):
                problems.append(f"{where}.spatial_shape is missing or not a list")
            try:
                torch_dtype(spec.get("dtype", "float32"))
            except ValueError as exc:
                problems.append(f"{where}.dtype: {exc}")
    return problems


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
