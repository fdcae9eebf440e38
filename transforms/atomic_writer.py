"""Atomic file writes: a temp file in the target's folder, flushed to disk, then ``os.replace``.

The one implementation of the project (``evaluation.atomic_io`` re-exports it; it lives in ``transforms``,
the lowest layer, because ``transforms`` imports neither ``evaluation`` nor ``pipeline`` and this module is
carried into bundles for MONAI-only recipients, so it uses the standard library and MONAI alone).
A reader (or a run killed at any point, even by SIGKILL or a power cut) sees either the previous
file or the complete new one, never a partial file, and no temp file is left behind on error.
An OS error (disk full, read-only folder) is raised as an ``OSError`` that names the target file.
:func:`check_writable_folder` tests a folder before a long computation that ends in writing there.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from monai.config import PathLike
from monai.data import NibabelWriter

__all__ = ["AtomicNibabelWriter", "atomic_path", "atomic_write_bytes", "atomic_write_text", "check_writable_folder"]


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once at import: os.umask can only be read by setting it


def _fsync(path: str | os.PathLike, missing_ok: bool = False) -> None:
    """Flush ``path`` (a file, or a folder to make a rename durable) to disk; folders that cannot be opened
    (e.g. on Windows) are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if missing_ok:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not missing_ok:
            raise
    finally:
        os.close(fd)


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` naming the target ``path`` (not the temp file, or no file at all)."""
    return OSError(exc.errno, exc.strerror, str(path)) if exc.strerror else exc


@contextmanager
def atomic_path(path: str | os.PathLike, keep_suffix: bool = False) -> Iterator[Path]:
    """A temp path in ``path``'s folder (created if needed) to write to; on leaving the block without error it is
    flushed to disk and renamed to ``path``, on error removed.

    ``keep_suffix``: the temp name ends with ``path``'s name (``.<random>.tmp.<name>``), for writers that choose
    the format from the suffix (nibabel compresses ``.nii.gz``); else it is ``.<name>.<random>.tmp``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        prefix, suffix = (".", f".tmp.{path.name}") if keep_suffix else (f".{path.name}.", ".tmp")
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise _naming(exc, path) from exc
    tmp = Path(name)
    try:
        yield tmp
        _fsync(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
        _fsync(path.parent, missing_ok=True)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise _naming(exc, path) from exc
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (creating the folder); returns the path."""
    with atomic_path(path) as tmp, os.fdopen(os.open(tmp, os.O_WRONLY | os.O_TRUNC), "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write_bytes` of UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_writable_folder(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and prove a file can be created in it; raises ``OSError`` naming it."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write_test.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OSError(exc.errno, f"{exc.strerror} (output folder not writable)", str(folder)) from exc
    return folder


class AtomicNibabelWriter(NibabelWriter):
    """``NibabelWriter`` that writes through :func:`atomic_path`: never a half-written mask.

    An interrupted run (killed process, full disk) leaves either the previous file or none, never a
    truncated ``.nii.gz`` that a later resume would take as done. The temporary name keeps the
    ``.nii.gz`` suffix so that nibabel still compresses. Use it as ``SaveImage(d)(writer=AtomicNibabelWriter)``.
    """

    def write(self, filename: PathLike, verbose: bool = False, **obj_kwargs) -> None:
        with atomic_path(filename, keep_suffix=True) as tmp:
            super().write(tmp, verbose=verbose, **obj_kwargs)
