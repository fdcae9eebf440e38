"""Zip archives of bundles: deterministic atomic writing and a safe extraction.

The zip holds one top folder named after the bundle (as the MONAI model zoo's zips do), so a plain
``unzip`` gives a bundle folder. :func:`safe_extract` checks every member *before* writing anything
and refuses absolute paths, ``..`` components, backslashes, symbolic links and other special files,
encrypted members, duplicate names (also names equal up to case) and a file that is also a folder;
each error names the member. :class:`ArchiveLimits` (total uncompressed size, member count, compression
ratio) are checked from the archive's directory before anything is written; a member whose header
understates its size cannot write more (``zipfile`` stops at the declared size, then fails its CRC check). Extraction
goes to a temporary folder next to the target, which is then renamed into place, so a failure (e.g. a CRC
error) leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from transforms.atomic_writer import atomic_path

__all__ = ["ArchiveLimitError", "ArchiveLimits", "CorruptArchiveError", "UnsafeArchiveError", "bundle_prefix",
           "check_limits", "check_members", "safe_extract", "write_zip"]

ZIP_DATE = (1980, 1, 1, 0, 0, 0)
STORED_SUFFIXES = (".pt", ".ts", ".pth", ".zip", ".gz")  # already zip archives or compressed
METADATA_MEMBER = "configs/metadata.json"


class UnsafeArchiveError(ValueError):
    """A member of the archive would be written outside the target folder, or is not a plain file or folder."""


class CorruptArchiveError(ValueError):
    """A member of the archive cannot be read back intact (CRC error, truncated archive)."""


class ArchiveLimitError(UnsafeArchiveError):
    """The archive would expand beyond :class:`ArchiveLimits` (a zip bomb, or simply too big)."""


@dataclass(frozen=True)
class ArchiveLimits:
    """What a bundle archive may expand to. The defaults fit a bundle of 2D/3D models with room to spare
    (the MONAI Model Zoo caps each file at 25 MB; this project's bundle is ~30 MB)."""

    max_total_bytes: int = 2 * 1024**3
    """Total uncompressed size of all members."""
    max_members: int = 10_000
    max_ratio: float = 200.0
    """Largest uncompressed/compressed size ratio of a member (and of the whole archive); deflate reaches
    ~1000 only on degenerate data, text configs ~5-20, weights are stored."""
    ratio_min_bytes: int = 1024**2
    """Members smaller than this are not held to ``max_ratio`` (a small repetitive config may compress well)."""


def check_limits(infos: list[zipfile.ZipInfo], limits: ArchiveLimits, source: str = "archive") -> None:
    """Raise :class:`ArchiveLimitError` when the archive's directory exceeds ``limits``."""
    if len(infos) > limits.max_members:
        raise ArchiveLimitError(f"refusing {source}: {len(infos)} members, more than the limit of {limits.max_members}")
    total = sum(i.file_size for i in infos)
    for info in infos:
        if info.file_size >= limits.ratio_min_bytes and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise ArchiveLimitError(f"refusing {source}: member {info.filename!r} expands {info.file_size / 1e6:.1f} MB "
                                    f"from {info.compress_size / 1e6:.2f} MB (ratio "
                                    f"{info.file_size / max(info.compress_size, 1):.0f}, limit {limits.max_ratio:g})")
    packed = sum(i.compress_size for i in infos)
    if total >= limits.ratio_min_bytes and total > limits.max_ratio * max(packed, 1):
        raise ArchiveLimitError(f"refusing {source}: it expands {total / 1e6:.1f} MB from {packed / 1e6:.2f} MB "
                                f"(ratio {total / max(packed, 1):.0f}, limit {limits.max_ratio:g})")
    if total > limits.max_total_bytes:
        raise ArchiveLimitError(f"refusing {source}: it expands to {total:,} bytes, more than the limit of "
                                f"{limits.max_total_bytes:,} bytes")


def _member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if "\x00" in name:
        return "NUL byte in the name"
    if "\\" in name:
        return "backslash in the name (Windows path separator)"
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in name.rstrip("/").split("/"):
        return "'..' path component (would land outside the target folder)"
    if info.flag_bits & 0x1:
        return "encrypted member"
    mode = info.external_attr >> 16
    if info.create_system == 3 and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        kind = "symbolic link" if stat.S_ISLNK(mode) else "special file"
        return f"{kind} (only plain files and folders are extracted)"
    return None


def check_members(archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, str]]:
    """Every member with its normalised relative path (folders end with ``/``); raises
    :class:`UnsafeArchiveError` naming the first unsafe member."""
    checked: list[tuple[zipfile.ZipInfo, str]] = []
    seen: dict[str, str] = {}
    files: set[str] = set()
    for info in archive.infolist():
        problem = _member_problem(info)
        if problem:
            raise UnsafeArchiveError(f"refusing to extract member {info.filename!r}: {problem}")
        parts = [p for p in info.filename.split("/") if p not in ("", ".")]
        if not parts:
            raise UnsafeArchiveError(f"refusing to extract member {info.filename!r}: empty path")
        path = "/".join(parts) + ("/" if info.is_dir() else "")
        key = path.rstrip("/").casefold()
        if key in seen:
            raise UnsafeArchiveError(f"refusing to extract member {info.filename!r}: duplicate of member "
                                     f"{seen[key]!r} (same path, or same up to case)")
        seen[key] = info.filename
        if not info.is_dir():
            files.add(key)
        checked.append((info, path))
    for info, path in checked:
        parts = path.rstrip("/").casefold().split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in files:
                raise UnsafeArchiveError(f"refusing to extract member {info.filename!r}: its folder "
                                         f"{'/'.join(path.split('/')[:i])!r} is also a file in the archive")
    return checked


def bundle_prefix(paths: list[str]) -> str:
    """The bundle's top folder inside the archive (``"name/"``), or ``""`` when the bundle is at the root.

    Raises ``ValueError`` when no ``configs/metadata.json`` is found at either place.
    """
    files = {p for p in paths if not p.endswith("/")}
    if METADATA_MEMBER in files:
        return ""
    tops = {p.split("/", 1)[0] for p in paths}
    if len(tops) == 1:
        top = tops.pop()
        if f"{top}/{METADATA_MEMBER}" in files:
            return top + "/"
    raise ValueError(f"not a bundle archive: no {METADATA_MEMBER} at its root or in a single top folder")


def safe_extract(zip_path: str | os.PathLike, dest: str | os.PathLike,
                 limits: ArchiveLimits | None = None) -> list[str]:
    """Extract the bundle in ``zip_path`` into folder ``dest`` (created; must not exist or be empty).

    The bundle's top folder is stripped, so ``dest`` becomes the bundle folder. Returns the relative
    paths of the extracted files. Raises :class:`UnsafeArchiveError` (and :class:`ArchiveLimitError` beyond
    ``limits``, default :class:`ArchiveLimits`) before writing anything,
    :class:`CorruptArchiveError` on a member that does not read back intact (nothing is left behind),
    ``ValueError`` for a non-zip or non-bundle file or a non-empty ``dest``.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    if not zip_path.is_file():
        raise FileNotFoundError(f"archive {zip_path} does not exist")
    if not zipfile.is_zipfile(zip_path):
        raise ValueError(f"{zip_path} is not a zip archive")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ValueError(f"output folder {dest} exists and is not an empty folder")
    with zipfile.ZipFile(zip_path) as archive:
        check_limits(archive.infolist(), limits or ArchiveLimits(), str(zip_path))
        members = check_members(archive)
        prefix = bundle_prefix([path for _, path in members])
        dest.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".unpack", dir=dest.parent))
        extracted: list[str] = []
        try:
            staging.chmod(0o755)  # mkdtemp makes it private; the bundle folder should not be
            root = staging.resolve()
            for info, path in members:
                if not path.startswith(prefix) or path == prefix:
                    continue
                rel = path[len(prefix):]
                target = (staging / rel).resolve()
                if root not in target.parents:  # belt and braces: the checks above already rule this out
                    raise UnsafeArchiveError(f"refusing to extract member {info.filename!r}: outside the target")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with archive.open(info) as src, open(target, "wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
                except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
                    raise CorruptArchiveError(f"member {info.filename!r} of {zip_path} is corrupt: {exc}") from exc
                extracted.append(rel)
            if dest.exists():
                dest.rmdir()
            os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return sorted(extracted)


def write_zip(out: str | os.PathLike, files: Mapping[str, str | os.PathLike | bytes], prefix: str = "") -> Path:
    """Write ``{relative path: source file or bytes}`` to zip ``out`` atomically (``transforms.atomic_writer``).

    Members are ``prefix + path`` in sorted order with a fixed timestamp and mode, so the same inputs give
    the same archive. Weights (``.pt``, ``.ts``) are stored, everything else deflated.
    """
    out = Path(out)
    with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w") as archive:
        for rel in sorted(files):
            info = zipfile.ZipInfo(prefix + rel, date_time=ZIP_DATE)
            info.external_attr = (stat.S_IFREG | 0o644) << 16
            info.create_system = 3
            info.compress_type = zipfile.ZIP_STORED if rel.endswith(STORED_SUFFIXES) else zipfile.ZIP_DEFLATED
            source = files[rel]
            if isinstance(source, bytes):
                archive.writestr(info, source)
            else:
                with open(source, "rb") as src, archive.open(info, "w", force_zip64=True) as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
    return out
