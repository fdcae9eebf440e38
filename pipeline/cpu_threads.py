"""Thread counts from the CPUs this process may really use, and OpenMP that sleeps instead of spinning.

``os.cpu_count()`` counts the machine's cores; a container or a job scheduler usually grants fewer
(an affinity mask from ``taskset``/Slurm, a cgroup CPU quota from Docker/Kubernetes ``--cpus``).
PyTorch and ONNX Runtime start one worker per counted core, and OpenMP workers *spin* (busy-wait)
between parallel regions: on a machine where another process holds a core, the spinning workers
steal time from the one doing the work, and a run that takes 14 s alone took 65 s beside one
competing process (issue 15).

* :func:`usable_cpus`: ``len(os.sched_getaffinity(0))``, capped by the cgroup quota (v2 ``cpu.max``,
  v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``, rounded up), at least 1;
* :func:`configure_process_threads`: call it first thing in a process (before ``import torch``
  if possible): sets ``OMP_WAIT_POLICY=PASSIVE`` (GNU OpenMP then never spins) and
  ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` to :func:`usable_cpus` unless the user set them, and
  ``torch.set_num_threads`` when torch is already imported. The wait policy is read once, when
  OpenMP starts (at ``import torch``); a process that imported torch before the call keeps
  spinning and gets a warning (set ``OMP_WAIT_POLICY=PASSIVE`` in its environment instead).

The ``dmg`` command line calls :func:`configure_process_threads` at start-up; a bundle run can add
``"$pipeline.cpu_threads.configure_process_threads()"`` to its ``initialize`` list (thread count only;
the wait policy then needs the environment variable). This module imports nothing heavy.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from pathlib import Path

__all__ = ["cgroup_cpu_limit", "configure_process_threads", "usable_cpus"]

logger = logging.getLogger(__name__)
CGROUP_ROOT = Path("/sys/fs/cgroup")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _cgroup_dirs(root: Path) -> list[Path]:
    """This process's cgroup folders (v2 unified path, and the v1 ``cpu`` controller path), deepest first."""
    dirs: list[Path] = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        rel = path.strip().lstrip("/")
        if controllers == "":  # v2
            dirs.append(root / rel)
        elif "cpu" in controllers.split(","):  # v1
            for name in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
                dirs.append(root / name / rel)
                dirs.append(root / name)
    dirs.append(root)
    return dirs


def cgroup_cpu_limit(root: str | os.PathLike = CGROUP_ROOT) -> float | None:
    """CPUs granted by the cgroup quota (e.g. ``1.5``), or ``None`` without a quota (``max`` / ``-1``)."""
    root = Path(root)
    for folder in _cgroup_dirs(root):
        try:
            quota, period = (folder / "cpu.max").read_text().split()[:2]
            if quota == "max":
                return None
            return int(quota) / int(period)
        except (OSError, ValueError):
            pass
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
            return None if quota <= 0 else quota / period
        except (OSError, ValueError):
            continue
    return None


def usable_cpus(root: str | os.PathLike = CGROUP_ROOT) -> int:
    """CPUs this process may run on: its affinity mask, capped by the cgroup quota (rounded up), at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        count = os.cpu_count() or 1
    quota = cgroup_cpu_limit(root)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)


def configure_process_threads(threads: int | None = None, environ: dict | None = None) -> int:
    """Set the OpenMP wait policy and thread counts for this process (see the module docstring).

    ``threads``: the intra-op thread count (default: ``OMP_NUM_THREADS`` when the user set it, else
    :func:`usable_cpus`). Returns the count used. Child processes inherit the environment.
    """
    env = os.environ if environ is None else environ
    user_threads = env.get("OMP_NUM_THREADS", "").strip()
    if threads is None:
        threads = int(user_threads) if user_threads.isdigit() and int(user_threads) > 0 else usable_cpus()
    policy_was_set = "OMP_WAIT_POLICY" in env
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    for name in THREAD_VARIABLES:
        env.setdefault(name, str(threads))
    torch = sys.modules.get("torch")
    if torch is not None and environ is None:
        torch.set_num_threads(threads)
        if not policy_was_set:
            logger.warning("torch was imported before the OpenMP wait policy was set: its workers may spin on "
                           "a busy machine; start the process with OMP_WAIT_POLICY=PASSIVE")
    return threads
