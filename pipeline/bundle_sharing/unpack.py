"""Unpack a bundle zip into a folder safely, then check the unpacked files against their checksums."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.bundle_sharing.archive import ArchiveLimits, safe_extract
from pipeline.bundle_sharing.checksums import ChecksumDiff, compare_checksums, parse_checksums
from pipeline.bundle_sharing.layout import CHECKSUMS_FILE, MANIFEST_FILE, bundle_files

__all__ = ["UnpackResult", "unpack_bundle"]


@dataclass
class UnpackResult:
    out: Path
    files: list[str]
    checksums: ChecksumDiff | None  # None: the archive has no checksums.sha256

    @property
    def ok(self) -> bool:
        return self.checksums is not None and self.checksums.ok

    def summary(self) -> str:
        head = f"unpacked {len(self.files)} files -> {self.out}"
        if self.checksums is None:
            return f"{head}\n  WARNING: no {CHECKSUMS_FILE} in the archive; files not checked"
        if self.checksums.ok:
            return f"{head}\n  checksums: {self.checksums.matched} files match {CHECKSUMS_FILE}"
        return "\n".join([head, "  checksums FAILED:", *(f"    {p}" for p in self.checksums.problems())])


def unpack_bundle(zip_path: str | os.PathLike, out: str | os.PathLike, limits: ArchiveLimits | None = None
                  ) -> UnpackResult:
    """Extract with :func:`.archive.safe_extract` (refuses unsafe members before writing anything; ``out``
    must not exist or be empty and becomes the bundle folder; ``limits``: :class:`.archive.ArchiveLimits`), then
    compare with ``checksums.sha256``."""
    out = Path(out)
    files = safe_extract(zip_path, out, limits=limits)
    listing = out / CHECKSUMS_FILE
    if not listing.is_file():
        return UnpackResult(out, files, None)
    expected = parse_checksums(listing.read_text(encoding="utf-8"), str(listing))
    present = bundle_files(out) + ([MANIFEST_FILE] if (out / MANIFEST_FILE).is_file() else [])
    return UnpackResult(out, files, compare_checksums(out, expected, present))
