"""SHA-256 checksum manifest of a bundle in ``sha256sum`` format (``<hex>  <relative posix path>``).

``cd BUNDLE && sha256sum -c checksums.sha256`` checks it without this package.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.checkpoint_io import sha256_file

__all__ = ["ChecksumDiff", "compare_checksums", "format_checksums", "parse_checksums"]

_LINE = re.compile(r"^(?P<digest>[0-9a-fA-F]{64}) [ *](?P<path>.+)$")


def format_checksums(digests: Mapping[str, str]) -> str:
    """``sha256sum`` text, one line a file, sorted by path."""
    return "".join(f"{digests[p]}  {p}\n" for p in sorted(digests))


def _check_relpath(path: str) -> str | None:
    """Why ``path`` is not a safe relative POSIX path, or ``None``."""
    if not path or path.startswith("/") or re.match(r"^[A-Za-z]:", path) or "\\" in path:
        return "not a relative POSIX path"
    if any(part in ("", ".", "..") for part in path.split("/")):
        return "empty, '.' or '..' path component"
    return None


def parse_checksums(text: str, source: str = "checksums.sha256") -> dict[str, str]:
    """Path -> lower-case hex digest; a malformed line, an unsafe path or a duplicate raises ``ValueError``."""
    digests: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        match = _LINE.match(line)
        if not match:
            raise ValueError(f"{source} line {number}: not '<sha256>  <path>': {line[:120]!r}")
        path = match["path"]
        problem = _check_relpath(path)
        if problem:
            raise ValueError(f"{source} line {number}: {path!r}: {problem}")
        if path in digests:
            raise ValueError(f"{source} line {number}: {path!r} listed twice")
        digests[path] = match["digest"].lower()
    return digests


@dataclass
class ChecksumDiff:
    """Files listed but absent, present but not listed, and present with another digest."""

    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    matched: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.extra or self.mismatched)

    def problems(self) -> list[str]:
        return ([f"{p}: checksum mismatch (modified or corrupt)" for p in self.mismatched]
                + [f"{p}: listed in the checksums but missing" for p in self.missing]
                + [f"{p}: not listed in the checksums (extra file)" for p in self.extra])


def compare_checksums(root: str | os.PathLike, expected: Mapping[str, str], present: Iterable[str]) -> ChecksumDiff:
    """Compare the files ``present`` (relative paths under ``root``) with the ``expected`` digests."""
    root = Path(root)
    present = set(present)
    diff = ChecksumDiff(missing=sorted(set(expected) - present), extra=sorted(present - set(expected)))
    for path in sorted(set(expected) & present):
        if sha256_file(root / path) == expected[path]:
            diff.matched += 1
        else:
            diff.mismatched.append(path)
    return diff
