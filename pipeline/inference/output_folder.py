"""The output folder of ``dmg segment``: who may write into it, and one run at a time.

* :func:`check_output_folder` refuses a folder that holds any of the cohort's input images or
  reference labels (predictions would shadow or, with ``--overwrite``, replace the ground truth)
  and a folder holding files ``dmg segment`` does not write (masks ``*_<sequence>_seg.nii.gz`` of
  a recorded run, ``segment_report.csv``, ``segment_model_<sequence>.json``, its lock, and the
  hidden ``.*.tmp`` files of an interrupted atomic write).
* :class:`OutputFolderLock` is a lock file per folder (``.dmg_segment.lock``: pid, host, start
  time, command), created atomically with its content. A second run into the folder is refused
  with the holder's details; a lock left by a dead process on this host is taken over.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from transforms.vocabulary import prediction_sequence

__all__ = ["LOCK_NAME", "FolderInUseError", "OutputFolderLock", "check_output_folder"]

LOCK_NAME = ".dmg_segment.lock"


class FolderInUseError(RuntimeError):
    """Another live run holds the folder's lock."""


def _inside(path: Path, folder: Path) -> bool:
    return folder == path or folder in path.parents


def _real(path: str | os.PathLike) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):  # a symlink loop: that patient's problem, reported when it is read
        return Path(os.path.abspath(path))


def _ours(name: str, records: bool) -> bool:
    if name in ("segment_report.csv", LOCK_NAME):
        return True
    if name.startswith(".") and name.endswith(".tmp"):  # an interrupted atomic write
        return True
    if name.startswith("segment_model_") and name.endswith(".json"):
        return True
    return records and prediction_sequence(name) is not None


def check_output_folder(folder: str | os.PathLike, cohort_files: Iterable[str]) -> None:
    """Raise ValueError when ``folder`` holds cohort inputs or files that ``dmg segment`` did not write."""
    folder = _real(folder)
    held = sorted({str(f) for f in cohort_files if f and _inside(_real(f), folder)})
    if held:
        shown = ", ".join(held[:3]) + (f" and {len(held) - 3} more" if len(held) > 3 else "")
        raise ValueError(f"--out {folder} holds the cohort's own input images or reference labels ({shown}): "
                         "masks are never written among them; choose another --out")
    if not folder.is_dir():
        return
    names = sorted(p.name for p in folder.iterdir())
    records = any(n.startswith("segment_model_") and n.endswith(".json") for n in names)
    foreign = [n for n in names if not _ours(n, records)]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise ValueError(f"--out {folder} holds files dmg segment did not write ({shown}); "
                         "choose an empty or new folder, or one an earlier dmg segment run wrote")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class OutputFolderLock:
    """``with OutputFolderLock(folder): ...``: hold ``folder/.dmg_segment.lock`` for one run (module docstring)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.holder = {"pid": os.getpid(), "host": socket.gethostname(),
                       "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": " ".join(sys.argv)}
        self.held = False

    def _read(self, path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}

    def _create(self) -> bool:
        """Create the lock with our content in one step (write a temp file, hard-link it); False if it exists."""
        tmp = self.path.with_name(f".{LOCK_NAME}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.holder) + "\n")
        try:
            os.link(tmp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def _stale(self, holder: dict) -> bool:
        return holder.get("host") == self.holder["host"] and isinstance(holder.get("pid"), int) \
            and not _alive(holder["pid"])

    def _take_over(self, holder: dict) -> bool:
        """Move a dead run's lock aside; put it back (False) if another run replaced it meanwhile."""
        grave = self.path.with_name(f".{LOCK_NAME}.stale.{os.getpid()}.tmp")
        try:
            os.rename(self.path, grave)
        except FileNotFoundError:
            return True
        moved = self._read(grave)
        if moved != holder:  # a live run took it over first: give it back
            try:
                os.link(grave, self.path)
            except FileExistsError:
                pass
            grave.unlink(missing_ok=True)
            return False
        grave.unlink(missing_ok=True)
        return True

    def acquire(self) -> None:
        for _ in range(3):
            if self._create():
                self.held = True
                return
            holder = self._read(self.path)
            if holder is None:
                continue  # released meanwhile
            if holder and self._stale(holder) and self._take_over(holder):
                continue
            break
        holder = self._read(self.path) or {}
        who = (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"
               if holder else "an unreadable lock")
        raise FolderInUseError(f"{self.path.parent} is in use by another dmg segment run ({who}; lock file "
                               f"{self.path}): wait for it to finish, or delete the lock file if that run is gone")

    def release(self) -> None:
        if self.held and self._read(self.path) == self.holder:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> OutputFolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
