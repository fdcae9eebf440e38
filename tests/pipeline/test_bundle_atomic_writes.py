"""One atomic writer: bundle zips and the carried code write through transforms.atomic_writer (fsync before the
rename, the umask's mode, nothing left behind on failure)."""

from __future__ import annotations

import os
import zipfile

import pytest

from pipeline.bundle_sharing import archive
from pipeline.bundle_trust.carried_code import carried_files, write_carried_code
from transforms import atomic_writer


def test_write_zip_reaches_the_disk_before_the_rename_with_the_umask_mode(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic_writer.os, "fsync", lambda fd: (events.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(atomic_writer.os, "replace", lambda a, b: (events.append("replace"), real_replace(a, b))[1])
    (tmp_path / "w.pt").write_bytes(b"\0" * 100)
    out = archive.write_zip(tmp_path / "out" / "b.zip", {"configs/a.json": b"{}", "models/w.pt": tmp_path / "w.pt"},
                            prefix="b/")
    assert events == ["fsync", "replace", "fsync"]
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # mkstemp's 0600 is not kept
    with zipfile.ZipFile(out) as z:
        assert z.namelist() == ["b/configs/a.json", "b/models/w.pt"]


def test_a_failed_write_zip_keeps_the_old_archive_and_leaves_no_temp(tmp_path):
    target = tmp_path / "b.zip"
    target.write_bytes(b"old")
    with pytest.raises(FileNotFoundError):
        archive.write_zip(target, {"a.txt": b"x", "b.bin": tmp_path / "missing.bin"})
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["b.zip"]


def test_carried_code_is_written_through_the_atomic_writer(tmp_path, monkeypatch):
    written = []
    real = atomic_writer.atomic_path

    def spy(path, *args, **kwargs):
        written.append(os.fspath(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(atomic_writer, "atomic_path", spy)
    files = write_carried_code(tmp_path)
    assert sorted(os.path.relpath(p, tmp_path) for p in written) == sorted(files) == sorted(carried_files())
    assert not list(tmp_path.rglob("*.tmp"))
