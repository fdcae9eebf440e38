"""What belongs to a shared bundle: the files that are packed, and the weights under ``models/``.

A packed bundle is the bundle folder minus run outputs (``runs/``, ``eval/``, ``predictions/`` at
the top level), caches (``__pycache__``, ``*.pyc``), temporary files (``*.tmp``) and hidden
files (``.gitkeep``, ``.DS_Store`` ...), plus generated files at its top level:
``bundle_manifest.json``, ``checksums.sha256`` and, when signed, ``checksums.sha256.sig``. Paths are relative POSIX paths.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from pipeline.checkpoint_io import model_file_kind

__all__ = [
    "CHECKSUMS_FILE",
    "GENERATED_FILES",
    "MANIFEST_FILE",
    "MODEL_NAME",
    "ModelFiles",
    "bundle_files",
    "find_models",
    "is_packed_path",
]

CHECKSUMS_FILE = "checksums.sha256"
MANIFEST_FILE = "bundle_manifest.json"
SIGNATURE_FILE = "checksums.sha256.sig"  # see .signing
GENERATED_FILES = frozenset({CHECKSUMS_FILE, MANIFEST_FILE, SIGNATURE_FILE})
EXCLUDED_TOP_DIRS = frozenset({"runs", "eval", "predictions"})
EXCLUDED_DIRS = frozenset({"__pycache__"})
EXCLUDED_SUFFIXES = (".tmp", ".pyc")
MODEL_NAME = re.compile(r"^model_(?P<name>[A-Za-z0-9][A-Za-z0-9_.+-]*)\.(?P<ext>pt|ts)$")


def _is_packed_dir(parts: list[str]) -> bool:
    if parts and parts[0] in EXCLUDED_TOP_DIRS:
        return False
    return not any(p in EXCLUDED_DIRS or p.startswith(".") for p in parts)


def is_packed_path(relpath: str) -> bool:
    """Whether the bundle file at ``relpath`` (POSIX, relative) is shipped (generated files excluded)."""
    parts = relpath.split("/")
    if relpath in GENERATED_FILES or not _is_packed_dir(parts[:-1]):
        return False
    return not (parts[-1].startswith(".") or parts[-1].endswith(EXCLUDED_SUFFIXES))


def bundle_files(root: str | os.PathLike) -> list[str]:
    """Sorted relative POSIX paths of the files of bundle folder ``root`` that are shipped.

    Symbolic links to files count as the file they point to; a symbolic link to a folder is refused.
    """
    root = Path(root)
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        base = [] if here == root else here.relative_to(root).as_posix().split("/")
        kept = []
        for d in sorted(dirnames):
            if not _is_packed_dir([*base, d]):
                continue
            if (here / d).is_symlink():
                raise ValueError(f"{here / d} is a symbolic link to a folder; copy the folder into the bundle")
            kept.append(d)
        dirnames[:] = kept
        for f in filenames:
            rel = "/".join([*base, f])
            if is_packed_path(rel) and (here / f).is_file():
                found.append(rel)
    return sorted(found)


@dataclass
class ModelFiles:
    """The weights of one model of a bundle: ``models/model_<name>.pt`` and/or its TorchScript export."""

    name: str
    pytorch: Path | None = None
    torchscript: Path | None = None

    def kinds(self) -> str:
        return " + ".join(k for k, p in (("PyTorch", self.pytorch), ("TorchScript", self.torchscript)) if p)


def find_models(root: str | os.PathLike) -> dict[str, ModelFiles]:
    """``models/model_<name>.pt`` (a state dict) and ``models/model_<name>.ts`` by name.

    A ``.pt`` that is a TorchScript archive counts as the TorchScript model when there is no ``.ts``.
    """
    models: dict[str, ModelFiles] = {}
    folder = Path(root) / "models"
    if not folder.is_dir():
        return models
    for path in sorted(folder.iterdir()):
        match = MODEL_NAME.match(path.name)
        if not match or not path.is_file():
            continue
        entry = models.setdefault(match["name"], ModelFiles(match["name"]))
        if match["ext"] == "ts":
            entry.torchscript = path
        elif model_file_kind(path) == "torchscript":
            entry.torchscript = entry.torchscript or path
        else:
            entry.pytorch = path
    return models
